//! Test support: throw-away network namespaces with `lo` up, veth pairs between them, and
//! threads that run inside a namespace. Everything is removed on drop; names carry the pid.
#![allow(dead_code)]

use lindivert::sys::netns::NetNs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the tests can run here (root + `ip`).
pub fn privileged() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && Command::new("ip").arg("-V").output().is_ok()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("ldt_{tag}_{}", unique());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        ip(&v);
    }

    /// Run `f` on a thread inside the namespace and wait for it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetNs::named(&self.name).unwrap().run(f).unwrap()
    }

    /// Spawn a thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns = NetNs::named(&self.name).unwrap();
        std::thread::spawn(move || {
            ns.enter_current_thread().unwrap();
            f()
        })
    }

    /// The nftables tables of this namespace.
    pub fn tables(&self) -> Vec<lindivert::nftables::TableInfo> {
        self.run(|| lindivert::nftables::list_tables().unwrap())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: `a` has 10.77.N.1/24 and fd77:N::1/64, `b` .2 / ::2.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
    pub a_ip6: std::net::Ipv6Addr,
    pub b_ip6: std::net::Ipv6Addr,
}

impl Pair {
    pub fn new() -> Pair {
        let a = Netns::new("a");
        let b = Netns::new("b");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let va = format!("lda{}", unique().replace('_', ""));
        let vb = format!("ldb{}", unique().replace('_', ""));
        let va = &va[..va.len().min(15)];
        let vb = &vb[..vb.len().min(15)];
        ip(&[
            "link", "add", va, "netns", &a.name, "type", "veth", "peer", "name", vb, "netns",
            &b.name,
        ]);
        let a_ip = Ipv4Addr::new(10, 77, n as u8, 1);
        let b_ip = Ipv4Addr::new(10, 77, n as u8, 2);
        a.ip(&["addr", "add", &format!("{a_ip}/24"), "dev", va]);
        b.ip(&["addr", "add", &format!("{b_ip}/24"), "dev", vb]);
        a.ip(&[
            "addr",
            "add",
            &format!("fd77:{n}::1/64"),
            "dev",
            va,
            "nodad",
        ]);
        b.ip(&[
            "addr",
            "add",
            &format!("fd77:{n}::2/64"),
            "dev",
            vb,
            "nodad",
        ]);
        a.ip(&["link", "set", va, "up"]);
        b.ip(&["link", "set", vb, "up"]);
        let a_ip6 = format!("fd77:{n}::1").parse().unwrap();
        let b_ip6 = format!("fd77:{n}::2").parse().unwrap();
        Pair {
            a,
            b,
            a_ip,
            b_ip,
            a_ip6,
            b_ip6,
        }
    }
}

/// A UDP echo server on `port` inside `ns`; it records every payload it got.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Echo {
    pub fn start(ns: &Netns, port: u16) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let sock = UdpSocket::bind(("::", port)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
            got
        });
        rx.recv().unwrap();
        Echo {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and return what was received.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// From inside `ns`, send each payload to `to` and collect the echoes (each waited for up to
/// `wait`). Returns the replies received.
pub fn udp_exchange(
    ns: &Netns,
    to: SocketAddr,
    payloads: Vec<Vec<u8>>,
    wait: Duration,
) -> Vec<Vec<u8>> {
    ns.run(move || {
        let any = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let sock = UdpSocket::bind(any).unwrap();
        sock.set_read_timeout(Some(wait)).unwrap();
        let mut replies = Vec::new();
        let mut buf = [0u8; 65536];
        for p in payloads {
            sock.send_to(&p, to).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                replies.push(buf[..n].to_vec());
            }
        }
        replies
    })
}

/// Skip the rest of a test (with a message) unless [`privileged`].
#[allow(unused_macros)]
macro_rules! require_root {
    () => {
        if !$crate::common::privileged() {
            eprintln!("skipped: needs root and the `ip` tool");
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_root;

/// Packets the kernel has queued to nfnetlink `queue` so far (its last packet id), read
/// inside `pair.a`.
pub fn kernel_queued(pair: &Pair, queue: u16) -> u64 {
    pair.a.run(move || {
        let s = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
            .unwrap_or_default();
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|v| v.len() >= 8 && v[0].parse::<u16>().ok() == Some(queue))
            .map(|v| v[7].parse().unwrap())
            .unwrap_or(0)
    })
}

/// Every event `recv_timeout` returns until nothing arrived for `idle`.
pub fn drain(
    mut recv_timeout: impl FnMut(Option<Duration>) -> Result<lindivert::Address, lindivert::Error>,
    idle: Duration,
) -> Vec<lindivert::Address> {
    let mut out = Vec::new();
    loop {
        match recv_timeout(Some(idle)) {
            Ok(a) => out.push(a),
            Err(lindivert::Error::Timeout) => return out,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// `ip` as an IPv6 address (IPv4 mapped), as the FLOW and SOCKET layers report addresses.
pub fn mapped(ip: std::net::IpAddr) -> std::net::Ipv6Addr {
    match ip {
        std::net::IpAddr::V4(v) => v.to_ipv6_mapped(),
        std::net::IpAddr::V6(v) => v,
    }
}
