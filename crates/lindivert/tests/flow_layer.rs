//! FLOW layer integration tests (root required): TCP and UDP flows with the PIDs of both
//! ends, IPv4 and IPv6, UDP expiry, namespace isolation. Servers and clients are `python3`
//! processes started with `ip netns exec` (which execs, so the child's PID is python's).

mod common;

use common::{mapped, Netns};
use lindivert::core::{Event, Flags};
use lindivert::flow::{FlowHandle, FlowOptions};
use lindivert::{Address, Error};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn require_root() {
    assert!(
        common::privileged(),
        "the FLOW tests need root, `ip` and python3"
    );
}

const TCP_SERVER: &str = r#"
import socket, sys
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((a, p)); s.listen(5)
print("READY", flush=True)
c, _ = s.accept()
while c.recv(100): pass
c.close(); s.close()
"#;

const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print(c.getsockname()[1], flush=True)
c.sendall(b"hi"); c.close()
"#;

const UDP_SERVER: &str = r#"
import socket, sys, time
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((a, p))
print("READY", flush=True)
d, peer = s.recvfrom(100); s.sendto(d, peer)
time.sleep(float(sys.argv[3]))
"#;

const UDP_CLIENT: &str = r#"
import socket, sys, time
a, p = sys.argv[1], int(sys.argv[2])
c = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"x", (a, p))
print(c.getsockname()[1], flush=True)
c.recvfrom(100)
time.sleep(float(sys.argv[3]))
"#;

struct Py {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Py {
    fn start(ns: &Netns, script: &str, args: &[&str]) -> Py {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Py { child, out }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        assert!(
            self.out.read_line(&mut l).unwrap() > 0,
            "python child ended early"
        );
        l.trim().to_string()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait(mut self) {
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open(ns: &Netns, filter: &str, udp_timeout: Duration) -> FlowHandle {
    FlowOptions::new(filter)
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(ns.path())
        .udp_timeout(udp_timeout)
        .open()
        .unwrap_or_else(|e| panic!("open {filter:?}: {e}"))
}

/// Every event until nothing arrived for `idle`.
fn drain(h: &FlowHandle, idle: Duration) -> Vec<Address> {
    common::drain(|t| h.recv_timeout(t), idle)
}

fn find(
    evs: &[Address],
    event: Event,
    outbound: bool,
    proto: u8,
    lport: u16,
    rport: u16,
) -> Address {
    *evs.iter()
        .find(|a| {
            let f = a.flow_data().unwrap();
            a.event == event
                && a.outbound == outbound
                && f.protocol == proto
                && f.local_port == lport
                && f.remote_port == rport
        })
        .unwrap_or_else(|| {
            panic!("no {event:?} out={outbound} proto {proto} {lport}->{rport} in {evs:#?}")
        })
}

fn tcp_flows(v6: bool) {
    require_root();
    let ns = Netns::new(if v6 { "flow6" } else { "flow4" });
    let h = open(&ns, "true", Duration::from_secs(1));
    let lo: IpAddr = if v6 { "::1" } else { "127.0.0.1" }.parse().unwrap();
    let a = lo.to_string();
    let mut server = Py::start(&ns, TCP_SERVER, &[&a, "7101"]);
    assert_eq!(server.line(), "READY");
    let mut client = Py::start(&ns, TCP_CLIENT, &[&a, "7101"]);
    let cport: u16 = client.line().parse().unwrap();
    let (spid, cpid) = (server.pid(), client.pid());
    client.wait();
    server.wait();
    let evs = drain(&h, Duration::from_millis(500));
    for e in &evs {
        assert!(h.filter().matches_event(e));
        assert_eq!(e.ipv6, v6, "{e:?}");
        assert!(e.loopback && e.sniffed);
        let f = e.flow_data().unwrap();
        assert_eq!(f.local_addr, mapped(lo));
        assert_eq!(f.remote_addr, mapped(lo));
    }
    let out = find(&evs, Event::FlowEstablished, true, 6, cport, 7101);
    let inb = find(&evs, Event::FlowEstablished, false, 6, 7101, cport);
    let out_d = find(&evs, Event::FlowDeleted, true, 6, cport, 7101);
    let inb_d = find(&evs, Event::FlowDeleted, false, 6, 7101, cport);
    let (fo, fi) = (out.flow_data().unwrap(), inb.flow_data().unwrap());
    assert_eq!(fo.process_id, cpid, "outbound flow pid");
    assert_eq!(fi.process_id, spid, "inbound flow pid");
    assert_ne!(fo.endpoint_id, 0);
    assert_ne!(fi.endpoint_id, fo.endpoint_id);
    assert_eq!(fo.parent_endpoint_id, 0);
    assert_ne!(fi.parent_endpoint_id, 0, "inbound: the listener's cookie");
    assert_eq!(out_d.flow_data().unwrap(), fo);
    assert_eq!(inb_d.flow_data().unwrap(), fi);
    assert!(out_d.timestamp >= out.timestamp && inb_d.timestamp >= inb.timestamp);
    assert_eq!(evs.len(), 4, "{evs:#?}");
}

#[test]
fn tcp_outbound_and_inbound_ipv4() {
    tcp_flows(false);
}

#[test]
fn tcp_outbound_and_inbound_ipv6() {
    tcp_flows(true);
}

fn udp_flow(v6: bool) {
    require_root();
    let ns = Netns::new(if v6 { "uflow6" } else { "uflow4" });
    let h = open(&ns, "udp", Duration::from_secs(1));
    let lo: IpAddr = if v6 { "::1" } else { "127.0.0.1" }.parse().unwrap();
    let a = lo.to_string();
    let mut server = Py::start(&ns, UDP_SERVER, &[&a, "7102", "4"]);
    assert_eq!(server.line(), "READY");
    let mut client = Py::start(&ns, UDP_CLIENT, &[&a, "7102", "4"]);
    let cport: u16 = client.line().parse().unwrap();
    let t0 = Instant::now();
    let evs = drain(&h, Duration::from_millis(300));
    let out = find(&evs, Event::FlowEstablished, true, 17, cport, 7102);
    let inb = find(&evs, Event::FlowEstablished, false, 17, 7102, cport);
    assert_eq!(out.flow_data().unwrap().process_id, client.pid());
    assert_eq!(inb.flow_data().unwrap().process_id, server.pid());
    assert_eq!(
        evs.len(),
        2,
        "the reply belongs to existing flows: {evs:#?}"
    );
    // Both processes stay alive: the flows end by inactivity.
    let evs = drain(&h, Duration::from_millis(1500));
    let dt = t0.elapsed();
    let od = find(&evs, Event::FlowDeleted, true, 17, cport, 7102);
    let id = find(&evs, Event::FlowDeleted, false, 17, 7102, cport);
    assert_eq!(od.flow_data().unwrap(), out.flow_data().unwrap());
    assert_eq!(id.flow_data().unwrap(), inb.flow_data().unwrap());
    assert!(dt < Duration::from_secs(3), "expiry took {dt:?}");
    assert!(od.timestamp - out.timestamp >= 1_000_000_000);
    assert_eq!(evs.len(), 2, "{evs:#?}");
}

#[test]
fn udp_flow_and_expiry_ipv4() {
    udp_flow(false);
}

#[test]
fn udp_flow_and_expiry_ipv6() {
    udp_flow(true);
}

#[test]
fn udp_flow_deleted_when_socket_closes() {
    require_root();
    let ns = Netns::new("uflowc");
    let h = open(&ns, "udp and event == DELETED", Duration::from_secs(30));
    let mut server = Py::start(&ns, UDP_SERVER, &["127.0.0.1", "7103", "0"]);
    assert_eq!(server.line(), "READY");
    let mut client = Py::start(&ns, UDP_CLIENT, &["127.0.0.1", "7103", "0"]);
    let cport: u16 = client.line().parse().unwrap();
    client.wait();
    server.wait();
    let evs = drain(&h, Duration::from_millis(500));
    find(&evs, Event::FlowDeleted, true, 17, cport, 7103);
    find(&evs, Event::FlowDeleted, false, 17, 7103, cport);
    assert_eq!(evs.len(), 2, "{evs:#?}");
}

#[test]
fn filter_and_namespace_isolation() {
    require_root();
    let ns = Netns::new("flowa");
    let other = Netns::new("flowb");
    let h = open(&ns, "tcp and remotePort == 7105", Duration::from_secs(1));
    // Traffic in the other namespace is invisible.
    let mut s = Py::start(&other, TCP_SERVER, &["127.0.0.1", "7105"]);
    assert_eq!(s.line(), "READY");
    let mut c = Py::start(&other, TCP_CLIENT, &["127.0.0.1", "7105"]);
    c.line();
    c.wait();
    s.wait();
    // In our namespace: only the outbound side matches (its remote port is 7105).
    let mut s = Py::start(&ns, TCP_SERVER, &["127.0.0.1", "7105"]);
    assert_eq!(s.line(), "READY");
    let mut c = Py::start(&ns, TCP_CLIENT, &["127.0.0.1", "7105"]);
    let cport: u16 = c.line().parse().unwrap();
    c.wait();
    s.wait();
    let evs = drain(&h, Duration::from_millis(500));
    find(&evs, Event::FlowEstablished, true, 6, cport, 7105);
    find(&evs, Event::FlowDeleted, true, 6, cport, 7105);
    assert_eq!(evs.len(), 2, "{evs:#?}");
}

fn readable(h: &FlowHandle, within: Duration) -> bool {
    lindivert::sys::poll::wait_readable(std::os::fd::AsFd::as_fd(h), Some(within)).unwrap()
}

/// Receive without waiting: what a poller does once the descriptor is readable.
fn try_recv(h: &FlowHandle) -> Option<Address> {
    match h.recv_timeout(Some(Duration::ZERO)) {
        Ok(a) => Some(a),
        Err(Error::Timeout) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn descriptor_polls_queued_events() {
    require_root();
    let ns = Netns::new("flowfd1");
    let h = open(&ns, "tcp", Duration::from_secs(1));
    assert!(!readable(&h, Duration::from_millis(100)));
    let mut server = Py::start(&ns, TCP_SERVER, &["127.0.0.1", "7106"]);
    assert_eq!(server.line(), "READY");
    let mut client = Py::start(&ns, TCP_CLIENT, &["127.0.0.1", "7106"]);
    client.line();
    client.wait();
    server.wait();
    std::thread::sleep(Duration::from_millis(100));
    // Four records wait in the ring buffer; the first receive takes them all.
    assert!(readable(&h, Duration::from_secs(2)));
    let mut evs = vec![try_recv(&h).unwrap()];
    while evs.len() < 4 {
        assert!(
            readable(&h, Duration::ZERO),
            "queued events must keep the descriptor readable ({} read)",
            evs.len()
        );
        evs.push(try_recv(&h).expect("readable, so an event"));
    }
    assert!(try_recv(&h).is_none());
    assert!(!readable(&h, Duration::from_millis(200)), "{evs:#?}");
    // After shutdown(Recv) it is readable: the receive fails at once.
    h.shutdown(lindivert::core::Shutdown::Recv).unwrap();
    assert!(readable(&h, Duration::ZERO));
    assert!(matches!(
        h.recv_timeout(Some(Duration::ZERO)),
        Err(Error::NoData)
    ));
}

#[test]
fn descriptor_polls_udp_expiry() {
    require_root();
    let ns = Netns::new("flowfd2");
    let h = open(&ns, "udp", Duration::from_millis(400));
    let mut server = Py::start(&ns, UDP_SERVER, &["127.0.0.1", "7107", "3"]);
    assert_eq!(server.line(), "READY");
    let mut client = Py::start(&ns, UDP_CLIENT, &["127.0.0.1", "7107", "3"]);
    client.line();
    // Poll, then receive without waiting: the DELETED events of the expired flows come
    // although no packet arrives (the descriptor includes the expiry timer).
    let t0 = Instant::now();
    let mut evs = Vec::new();
    while evs.len() < 4 && t0.elapsed() < Duration::from_secs(3) {
        if readable(&h, Duration::from_millis(100)) {
            evs.extend(try_recv(&h));
        }
    }
    let est = evs.iter().filter(|a| a.event == Event::FlowEstablished);
    let del = evs.iter().filter(|a| a.event == Event::FlowDeleted);
    assert_eq!((est.count(), del.count()), (2, 2), "{evs:#?}");
    // Nothing tracked any more: the timer is disarmed.
    assert!(try_recv(&h).is_none());
    assert!(!readable(&h, Duration::from_millis(600)));
}

#[test]
fn preexisting_listener_and_connection() {
    require_root();
    let ns = Netns::new("flowpre");
    // A listener and a connection that exist before the handle is opened.
    let (l, old_c, old_s) = ns.run(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:7108").unwrap();
        let c = std::net::TcpStream::connect("127.0.0.1:7108").unwrap();
        let (s, _) = l.accept().unwrap();
        (l, c, s)
    });
    let h = open(&ns, "tcp", Duration::from_secs(1));
    let c = ns.run(|| std::net::TcpStream::connect("127.0.0.1:7108").unwrap());
    let cport = c.local_addr().unwrap().port();
    let (s, _) = l.accept().unwrap();
    drop((old_c, old_s, c, s));
    let evs = drain(&h, Duration::from_millis(500));
    let out = find(&evs, Event::FlowEstablished, true, 6, cport, 7108);
    let inb = find(&evs, Event::FlowEstablished, false, 6, 7108, cport);
    assert_eq!(out.flow_data().unwrap().process_id, std::process::id());
    // Accepted on a listener that was listening before the open: no process, no parent.
    let fi = inb.flow_data().unwrap();
    assert_eq!((fi.process_id, fi.parent_endpoint_id), (0, 0), "{inb:?}");
    find(&evs, Event::FlowDeleted, true, 6, cport, 7108);
    find(&evs, Event::FlowDeleted, false, 6, 7108, cport);
    // The connection established before the open ends without a DELETED.
    assert_eq!(evs.len(), 4, "{evs:#?}");
}

/// Not a test on its own: the child process of `kill_9_removes_flow_programs_and_links`.
/// Opens a FLOW handle in the namespace `LDT_FLOW_KILL_HELPER` names, prints
/// `READY <pid> hooks=<n> progs=<id,...> links=<id,...>` (the BPF objects it holds
/// descriptors of) and keeps the handle until stdin closes or it is killed.
#[test]
#[ignore]
fn kill_9_flow_helper() {
    let Ok(path) = std::env::var("LDT_FLOW_KILL_HELPER") else {
        return;
    };
    let h = FlowOptions::new("true")
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(path)
        .open()
        .expect("helper open");
    let (mut progs, mut links) = common::fdinfo_bpf_ids(std::process::id());
    // A link's fdinfo names its program too.
    progs.sort_unstable();
    progs.dedup();
    links.sort_unstable();
    links.dedup();
    println!(
        "READY {} hooks={} progs={} links={}",
        std::process::id(),
        h.hooks().len(),
        common::join_ids(&progs),
        common::join_ids(&links)
    );
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    drop(h);
}

#[test]
fn kill_9_removes_flow_programs_and_links() {
    if std::env::var("LDT_FLOW_KILL_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("flowkill");
    let (mut child, ready) =
        common::start_helper("kill_9_flow_helper", "LDT_FLOW_KILL_HELPER", &ns.path());
    let f: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(f.len(), 4, "{ready}");
    assert_eq!(f[0], child.0.id().to_string(), "{ready}");
    let hooks: usize = f[1].strip_prefix("hooks=").unwrap().parse().unwrap();
    let progs = common::parse_ids(f[2].strip_prefix("progs=").unwrap());
    let links = common::parse_ids(f[3].strip_prefix("links=").unwrap());
    // "true" needs every hook: one program and one link each.
    assert_eq!(
        hooks,
        lindivert::core::filter::ebpf_flow::FlowHook::ALL.len()
    );
    assert_eq!((progs.len(), links.len()), (hooks, hooks), "{ready}");
    let (lp, ll) = (
        lindivert::sys::cgroup::prog_ids().unwrap(),
        lindivert::sys::cgroup::link_ids().unwrap(),
    );
    assert!(progs.iter().all(|p| lp.contains(p)), "{ready}");
    assert!(links.iter().all(|l| ll.contains(l)), "{ready}");
    let killed = Instant::now();
    common::kill_9(&mut child);
    common::wait_bpf_ids_gone(&progs, &links, killed, Duration::from_secs(1));
    eprintln!(
        "FLOW programs and links gone {:?} after kill -9",
        killed.elapsed()
    );
}
