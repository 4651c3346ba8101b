//! REFLECT layer and handle registry integration tests (root required). Each test works in
//! its own network namespace; "another process" is this test binary re-executed as a helper
//! (`helper_process` with `LDT_REFLECT_HELPER` set) that opens a SOCKET handle there.

mod common;

use common::Netns;
use lindivert::core::filter::{object, Filter};
use lindivert::core::{Event, Flags, Layer, Shutdown};
use lindivert::reflect::{ReflectHandle, ReflectOptions};
use lindivert::registry::{self, HandleInfo, Registration};
use lindivert::socket::SocketOptions;
use lindivert::sys::netns::NetNs;
use lindivert::{Address, Error};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn require_root() {
    assert!(common::privileged(), "the REFLECT tests need root and `ip`");
}

/// The helper: open a SOCKET handle in the namespace given in the environment, say READY,
/// and keep it until stdin closes (then close it gracefully) or the process is killed.
#[test]
fn helper_process() {
    let Ok(spec) = std::env::var("LDT_REFLECT_HELPER") else {
        return;
    };
    let (ns, rest) = spec.split_once('|').unwrap();
    let (prio, filter) = rest.split_once('|').unwrap();
    let h = SocketOptions::new(filter)
        .priority(prio.parse().unwrap())
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(ns)
        .open()
        .unwrap();
    println!("READY");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(h);
    println!("CLOSED");
}

struct Helper {
    child: Child,
}

impl Helper {
    fn start(ns: &Netns, priority: i16, filter: &str) -> Helper {
        let mut child = Command::new("/proc/self/exe")
            .args([
                "helper_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "LDT_REFLECT_HELPER",
                format!("{}|{priority}|{filter}", ns.path()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "helper died early");
            if line.trim_end().ends_with("READY") {
                break;
            }
        }
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
        });
        Helper { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Close stdin: the helper closes its handle and exits.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        self.child.wait().unwrap();
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reflect(ns: &Netns, filter: &str) -> ReflectHandle {
    ReflectOptions::new(filter)
        .netns_path(ns.path())
        .open()
        .unwrap()
}

fn next(h: &ReflectHandle, within: Duration) -> (Vec<u8>, Address) {
    h.recv_timeout(Some(within))
        .unwrap_or_else(|e| panic!("no REFLECT event within {within:?}: {e}"))
}

fn expected_object(filter: &str, layer: Layer) -> Vec<u8> {
    let mut v = object::encode(Filter::compile(filter, layer).unwrap().object()).into_bytes();
    v.push(0);
    v
}

#[test]
fn sees_other_process_open_and_close() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("refl1");
    let r = reflect(&ns, "true");
    assert!(matches!(
        r.recv_timeout(Some(Duration::from_millis(300))),
        Err(Error::Timeout)
    ));
    let filter = "remotePort == 4444 or event == CLOSE";
    let helper = Helper::start(&ns, 77, filter);
    let (obj, a) = next(&r, Duration::from_secs(2));
    assert_eq!(a.layer, Layer::Reflect);
    assert_eq!(a.event, Event::ReflectOpen);
    let d = *a.reflect_data().unwrap();
    assert_eq!(d.process_id, helper.pid());
    assert_eq!(d.layer, Layer::Socket);
    assert_eq!(d.priority, 77);
    assert_eq!(d.flags, Flags::SNIFF | Flags::RECV_ONLY);
    assert!(d.timestamp > 0 && d.timestamp <= a.timestamp);
    assert_eq!(obj, expected_object(filter, Layer::Socket));
    // graceful close
    let pid = helper.pid();
    helper.finish();
    let (obj2, c) = next(&r, Duration::from_secs(2));
    assert_eq!(c.event, Event::ReflectClose);
    assert_eq!(c.reflect_data().unwrap().process_id, pid);
    assert_eq!(obj2, obj);
    assert!(registry::list(Some(&NetNs::named(&ns.name).unwrap()))
        .unwrap()
        .is_empty());
}

#[test]
fn close_within_one_second_after_kill9() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("refl2");
    let r = reflect(&ns, "true");
    let helper = Helper::start(&ns, -5, "udp");
    let (_, a) = next(&r, Duration::from_secs(2));
    assert_eq!(a.event, Event::ReflectOpen);
    let pid = helper.pid();
    let t0 = Instant::now();
    helper.kill9();
    let (_, c) = next(&r, Duration::from_secs(1));
    let dt = t0.elapsed();
    assert_eq!(c.event, Event::ReflectClose);
    assert_eq!(c.reflect_data().unwrap().process_id, pid);
    eprintln!("CLOSE after kill -9 reported in {dt:?}");
    assert!(dt < Duration::from_secs(1));
}

#[test]
fn preexisting_first_then_nodata_and_reflect_never_reported() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("refl3");
    let other_reflect = reflect(&ns, "true");
    let own = SocketOptions::new("tcp")
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(ns.path())
        .open()
        .unwrap();
    let helper = Helper::start(&ns, 3, "remotePort == 53");
    // ctl list: shutdown at once, then read until NoData.
    let r = reflect(&ns, "true");
    r.shutdown(Shutdown::Both).unwrap();
    let mut got = Vec::new();
    loop {
        match r.recv_timeout(Some(Duration::from_secs(2))) {
            Ok(e) => got.push(e),
            Err(Error::NoData) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut pids: Vec<u32> = got
        .iter()
        .map(|(_, a)| {
            assert_eq!(a.event, Event::ReflectOpen);
            assert_eq!(a.reflect_data().unwrap().layer, Layer::Socket);
            a.reflect_data().unwrap().process_id
        })
        .collect();
    pids.sort();
    let mut want = vec![std::process::id(), helper.pid()];
    want.sort();
    assert_eq!(pids, want);
    // A filtered REFLECT handle.
    let only = reflect(&ns, &format!("processId == {}", helper.pid()));
    let (obj, a) = next(&only, Duration::from_secs(1));
    assert_eq!(a.reflect_data().unwrap().process_id, helper.pid());
    assert_eq!(obj, expected_object("remotePort == 53", Layer::Socket));
    assert!(matches!(
        only.recv_timeout(Some(Duration::from_millis(300))),
        Err(Error::Timeout)
    ));
    drop(own);
    drop(other_reflect);
    drop(helper);
}

#[test]
fn registry_holds_large_objects() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("refl4");
    let netns = NetNs::named(&ns.name).unwrap();
    let r = reflect(&ns, "true");
    let object: String = (0..10255)
        .map(|i| (b'A' + (i % 26) as u8) as char)
        .collect();
    let info = HandleInfo::now(
        Layer::Network,
        -30000,
        Flags::SNIFF | Flags::FRAGMENTS,
        object.clone(),
    );
    let t0 = Instant::now();
    let reg = Registration::create(Some(&netns), &info).unwrap();
    let create = t0.elapsed();
    let t1 = Instant::now();
    let list = registry::list(Some(&netns)).unwrap();
    let listing = t1.elapsed();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].info, info);
    assert_eq!(list[0].table, reg.table());
    let (obj, a) = next(&r, Duration::from_secs(1));
    assert_eq!(obj.len(), 10256);
    assert_eq!(&obj[..10255], object.as_bytes());
    assert_eq!(a.reflect_data().unwrap().priority, -30000);
    assert_eq!(a.reflect_data().unwrap().layer, Layer::Network);
    eprintln!("10255-byte object: register {create:?}, list {listing:?}");
    drop(reg);
    let (_, c) = next(&r, Duration::from_secs(1));
    assert_eq!(c.event, Event::ReflectClose);
    assert!(registry::list(Some(&netns)).unwrap().is_empty());
}

#[test]
fn network_handles_are_reported_with_their_filter() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("refl_net");
    let r = reflect(&ns, "event == OPEN or event == CLOSE");
    let filter = "outbound and tcp.DstPort == 8443";
    let h = lindivert::OpenOptions::new(filter)
        .priority(1234)
        .flags(Flags::SNIFF)
        .netns_path(ns.path())
        .open()
        .unwrap();
    let (obj, a) = next(&r, Duration::from_secs(2));
    assert_eq!(a.event, Event::ReflectOpen);
    let d = *a.reflect_data().unwrap();
    assert_eq!(d.layer, Layer::Network);
    assert_eq!(d.priority, 1234);
    assert_eq!(d.flags, Flags::SNIFF);
    assert_eq!(d.process_id, std::process::id());
    assert_eq!(obj, expected_object(filter, Layer::Network));
    h.close().unwrap();
    let (obj2, c) = next(&r, Duration::from_secs(2));
    assert_eq!(c.event, Event::ReflectClose);
    assert_eq!(c.reflect_data().unwrap().priority, 1234);
    assert_eq!(obj2, obj);
}

fn readable(h: &ReflectHandle, within: Duration) -> bool {
    lindivert::sys::poll::wait_readable(std::os::fd::AsFd::as_fd(h), Some(within)).unwrap()
}

#[test]
fn descriptor_polls_queued_notified_and_killed() {
    if std::env::var("LDT_REFLECT_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("reflfd");
    let first = Helper::start(&ns, 1, "tcp");
    let second = Helper::start(&ns, 2, "udp");
    // Two OPEN events are queued at open: readable until both are read.
    let r = reflect(&ns, "true");
    for _ in 0..2 {
        assert!(readable(&r, Duration::ZERO));
        let (_, a) = r.recv_timeout(Some(Duration::ZERO)).unwrap();
        assert_eq!(a.event, Event::ReflectOpen);
    }
    assert!(matches!(
        r.recv_timeout(Some(Duration::ZERO)),
        Err(Error::Timeout)
    ));
    // A notification makes it readable.
    let third = Helper::start(&ns, 3, "icmp");
    assert!(readable(&r, Duration::from_secs(2)));
    let (_, a) = next(&r, Duration::ZERO);
    assert_eq!(a.event, Event::ReflectOpen);
    assert_eq!(a.reflect_data().unwrap().priority, 3);
    // kill -9 is found by the re-list timer, also when the handle is only polled.
    let pid = first.pid();
    let t0 = Instant::now();
    first.kill9();
    let mut close = None;
    while close.is_none() && t0.elapsed() < Duration::from_secs(1) {
        if readable(&r, Duration::from_millis(50)) {
            close = r.recv_timeout(Some(Duration::ZERO)).ok();
        }
    }
    let (_, c) = close.expect("CLOSE within 1 s by polling");
    assert_eq!(c.event, Event::ReflectClose);
    assert_eq!(c.reflect_data().unwrap().process_id, pid);
    // After shutdown(Recv): readable, and the receive fails at once.
    r.shutdown(Shutdown::Recv).unwrap();
    assert!(readable(&r, Duration::ZERO));
    assert!(matches!(
        r.recv_timeout(Some(Duration::ZERO)),
        Err(Error::NoData)
    ));
    drop((second, third));
}
