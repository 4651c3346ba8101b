//! SOCKET layer integration tests (root required): events with PIDs and tuples, blocking in
//! the kernel, SNIFF, namespace isolation and cleanup. Every test works in its own network
//! namespace; the handle's programs are attached at the cgroup-v2 root but only act on that
//! namespace.

mod common;

use common::{mapped, Netns};
use lindivert::core::filter::ebpf_sock::Hook;
use lindivert::core::{Event, Flags};
use lindivert::socket::{SocketHandle, SocketOptions};
use lindivert::sys::cgroup;
use lindivert::{Address, Error};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn require_root() {
    assert!(
        common::privileged(),
        "the SOCKET layer tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and `ip`"
    );
}

fn open(ns: &Netns, filter: &str, flags: Flags) -> SocketHandle {
    SocketOptions::new(filter)
        .flags(flags | Flags::RECV_ONLY)
        .netns_path(ns.path())
        .open()
        .unwrap_or_else(|e| panic!("open {filter:?}: {e}"))
}

/// Every event until nothing arrived for `idle`.
fn drain(h: &SocketHandle, idle: Duration) -> Vec<Address> {
    common::drain(|t| h.recv_timeout(t), idle)
}

struct Want {
    event: Event,
    protocol: u8,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

fn find<'a>(evs: &'a [Address], w: &Want) -> Option<&'a Address> {
    evs.iter().find(|a| {
        let f = a.flow_data().unwrap();
        a.event == w.event
            && f.protocol == w.protocol
            && w.local
                .is_none_or(|l| f.local_port == l.port() && f.local_addr == mapped(l.ip()))
            && w.remote
                .is_none_or(|r| f.remote_port == r.port() && f.remote_addr == mapped(r.ip()))
    })
}

fn expect(evs: &[Address], w: Want) -> &Address {
    let a = find(evs, &w).unwrap_or_else(|| {
        panic!(
            "no {:?} proto {} local {:?} remote {:?} in {evs:#?}",
            w.event, w.protocol, w.local, w.remote
        )
    });
    let f = a.flow_data().unwrap();
    assert_eq!(a.outbound, a.event != Event::SocketAccept, "{a:?}");
    assert_eq!(f.process_id, std::process::id(), "{a:?}");
    assert_ne!(a.timestamp, 0);
    a
}

fn events_round_trip(v6: bool) {
    require_root();
    let ns = Netns::new(if v6 { "sock6" } else { "sock4" });
    let h = open(&ns, "true", Flags::SNIFF);
    let lo: IpAddr = if v6 {
        "::1".parse().unwrap()
    } else {
        "127.0.0.1".parse().unwrap()
    };
    let (tcp_addr, client_local, udp_addr, udp_client) = ns.run(move || {
        let l = TcpListener::bind((lo, 7001)).unwrap();
        let c = TcpStream::connect((lo, 7001)).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let client_local = c.local_addr().unwrap();
        drop(s);
        drop(c);
        drop(l);
        let u = UdpSocket::bind((lo, 7002)).unwrap();
        let uc = UdpSocket::bind((lo, 0)).unwrap();
        uc.send_to(b"x", (lo, 7002)).unwrap();
        uc.send_to(b"y", (lo, 7002)).unwrap();
        uc.connect((lo, 7002)).unwrap();
        let ucl = uc.local_addr().unwrap();
        drop(uc);
        drop(u);
        (
            SocketAddr::new(lo, 7001),
            client_local,
            SocketAddr::new(lo, 7002),
            ucl,
        )
    });
    let evs = drain(&h, Duration::from_millis(500));
    for a in &evs {
        assert!(h.filter().matches_event(a));
        assert_eq!(a.ipv6, v6, "{a:?}");
        assert!(a.loopback, "{a:?}");
        assert!(a.sniffed);
    }
    let bind = expect(
        &evs,
        Want {
            event: Event::SocketBind,
            protocol: 6,
            local: Some(tcp_addr),
            remote: None,
        },
    );
    assert_eq!(bind.flow_data().unwrap().remote_port, 0);
    let listen = expect(
        &evs,
        Want {
            event: Event::SocketListen,
            protocol: 6,
            local: Some(tcp_addr),
            remote: None,
        },
    );
    let lf = *listen.flow_data().unwrap();
    assert_eq!(lf.remote_addr, Ipv6Addr::UNSPECIFIED);
    assert_eq!(lf.endpoint_id, bind.flow_data().unwrap().endpoint_id);
    let conn = expect(
        &evs,
        Want {
            event: Event::SocketConnect,
            protocol: 6,
            local: None,
            remote: Some(tcp_addr),
        },
    );
    // CONNECT shows the address before connect(): the client was not bound (port 0), and
    // its implicit bind gives no BIND event.
    assert_eq!(conn.flow_data().unwrap().local_port, 0, "{conn:?}");
    assert!(
        !evs.iter().any(|a| a.event == Event::SocketBind
            && a.flow_data().unwrap().local_port == client_local.port()),
        "{evs:#?}"
    );
    let acc = expect(
        &evs,
        Want {
            event: Event::SocketAccept,
            protocol: 6,
            local: Some(tcp_addr),
            remote: Some(client_local),
        },
    );
    assert_eq!(acc.flow_data().unwrap().parent_endpoint_id, lf.endpoint_id);
    assert_ne!(acc.flow_data().unwrap().endpoint_id, lf.endpoint_id);
    // CLOSE: the listener, the accepted socket and the client.
    let cl = evs
        .iter()
        .find(|a| {
            a.event == Event::SocketClose && a.flow_data().unwrap().endpoint_id == lf.endpoint_id
        })
        .unwrap_or_else(|| panic!("no CLOSE of the listener in {evs:#?}"));
    let cf = cl.flow_data().unwrap();
    assert_eq!((cf.local_addr, cf.local_port), (mapped(lo), 7001));
    assert_eq!((cf.remote_addr, cf.remote_port), (Ipv6Addr::UNSPECIFIED, 0));
    assert_eq!(cf.process_id, std::process::id());
    assert!(cl.sniffed && cl.outbound);
    expect(
        &evs,
        Want {
            event: Event::SocketClose,
            protocol: 6,
            local: Some(tcp_addr),
            remote: Some(client_local),
        },
    );
    expect(
        &evs,
        Want {
            event: Event::SocketClose,
            protocol: 6,
            local: Some(client_local),
            remote: Some(tcp_addr),
        },
    );
    // UDP.
    expect(
        &evs,
        Want {
            event: Event::SocketBind,
            protocol: 17,
            local: Some(udp_addr),
            remote: None,
        },
    );
    let sends: Vec<_> = evs
        .iter()
        .filter(|a| {
            let f = a.flow_data().unwrap();
            a.event == Event::SocketConnect && f.protocol == 17 && f.remote_port == 7002
        })
        .collect();
    // One CONNECT for the two sendto() (deduplicated), one for connect().
    assert_eq!(sends.len(), 2, "{sends:#?}");
    expect(
        &evs,
        Want {
            event: Event::SocketClose,
            protocol: 17,
            local: Some(udp_client),
            remote: Some(udp_addr),
        },
    );
}

#[test]
fn events_ipv4() {
    events_round_trip(false);
}

#[test]
fn events_ipv6() {
    events_round_trip(true);
}

#[test]
fn blocking_bind_and_connect() {
    require_root();
    let ns = Netns::new("sockblk");
    let h = open(
        &ns,
        "(event == BIND and localPort == 7101) or (event == CONNECT and remotePort == 7102)",
        Flags::NONE,
    );
    ns.run(|| {
        let e = TcpListener::bind("127.0.0.1:7101").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let e = UdpSocket::bind("[::1]:7101").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let ok = TcpListener::bind("127.0.0.1:7103").unwrap();
        let c = TcpStream::connect("127.0.0.1:7103").unwrap();
        drop(c);
        drop(ok);
        let e = TcpStream::connect("127.0.0.1:7102").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = u.connect("127.0.0.1:7102").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let e = u.send_to(b"x", "127.0.0.1:7102").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        u.send_to(b"x", "127.0.0.1:7104").unwrap();
    });
    let evs = drain(&h, Duration::from_millis(300));
    for a in &evs {
        assert!(!a.sniffed, "{a:?}");
        assert!(h.filter().matches_event(a), "{a:?}");
    }
    expect(
        &evs,
        Want {
            event: Event::SocketBind,
            protocol: 6,
            local: Some("127.0.0.1:7101".parse().unwrap()),
            remote: None,
        },
    );
    expect(
        &evs,
        Want {
            event: Event::SocketBind,
            protocol: 17,
            local: Some("[::1]:7101".parse().unwrap()),
            remote: None,
        },
    );
    for proto in [6, 17] {
        expect(
            &evs,
            Want {
                event: Event::SocketConnect,
                protocol: proto,
                local: None,
                remote: Some("127.0.0.1:7102".parse().unwrap()),
            },
        );
    }
    assert!(evs
        .iter()
        .all(|a| a.flow_data().unwrap().local_port != 7103
            && a.flow_data().unwrap().remote_port != 7104));
    // After close, the same operations work again.
    drop(h);
    ns.run(|| {
        TcpListener::bind("127.0.0.1:7101").unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(b"x", "127.0.0.1:7102").unwrap();
    });
}

fn try_connect(addr: &str) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(1500))
}

#[test]
fn blocking_listen_and_accept() {
    require_root();
    let ns = Netns::new("socklsn");
    let h = open(
        &ns,
        "(event == LISTEN and localPort == 7201) or (event == ACCEPT and localPort == 7202 and remotePort != 7299)",
        Flags::NONE,
    );
    ns.run(|| {
        // listen() itself succeeds.
        let l1 = TcpListener::bind("127.0.0.1:7201").unwrap();
        let l2 = TcpListener::bind("127.0.0.1:7202").unwrap();
        let l3 = TcpListener::bind("127.0.0.1:7203").unwrap();
        let e = try_connect("127.0.0.1:7201").unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
            "{e}"
        );
        let e = try_connect("127.0.0.1:7202").unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
            "{e}"
        );
        // Not matched: another listener, and an ACCEPT from the excluded remote port.
        try_connect("127.0.0.1:7203").unwrap();
        let sock = socket_bound_to(7299);
        sock.connect_timeout(
            &"127.0.0.1:7202".parse().unwrap(),
            Duration::from_millis(1500),
        )
        .unwrap();
        drop((l1, l2, l3));
    });
    let evs = drain(&h, Duration::from_millis(300));
    let l = expect(
        &evs,
        Want {
            event: Event::SocketListen,
            protocol: 6,
            local: Some("127.0.0.1:7201".parse().unwrap()),
            remote: None,
        },
    );
    assert!(!l.sniffed);
    let acc: Vec<_> = evs
        .iter()
        .filter(|a| a.event == Event::SocketAccept)
        .collect();
    // One report per blocked connection attempt (SYN retransmissions are deduplicated).
    assert_eq!(acc.len(), 1, "{acc:#?}");
    let a = acc[0];
    let f = a.flow_data().unwrap();
    assert_eq!(f.local_port, 7202);
    assert_eq!(f.process_id, std::process::id());
    assert_ne!(f.parent_endpoint_id, 0);
    // The refused connection never exists: no endpoint.
    assert_eq!(f.endpoint_id, 0);
    assert!(!a.outbound);
}

/// A TCP socket bound to 127.0.0.1:`port`, ready to connect.
fn socket_bound_to(port: u16) -> Socket {
    Socket::bound(port)
}

/// A TCP client socket bound to a chosen port (std cannot bind before connecting).
struct Socket {
    sock: socket2::Socket,
}

impl Socket {
    fn bound(port: u16) -> Socket {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        sock.bind(&local.into()).expect("bind");
        Socket { sock }
    }

    fn connect_timeout(self, addr: &SocketAddr, t: Duration) -> std::io::Result<TcpStream> {
        assert!(addr.is_ipv4(), "IPv4 only");
        self.sock.set_write_timeout(Some(t))?;
        self.sock.connect(&(*addr).into())?;
        Ok(self.sock.into())
    }
}

#[test]
fn sniff_never_blocks() {
    require_root();
    let ns = Netns::new("socksniff");
    let h = open(&ns, "true", Flags::SNIFF);
    ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:7301").unwrap();
        let c = TcpStream::connect("127.0.0.1:7301").unwrap();
        let _ = l.accept().unwrap();
        drop(c);
        let u = UdpSocket::bind("127.0.0.1:7302").unwrap();
        u.send_to(b"x", "127.0.0.1:7303").unwrap();
    });
    let evs = drain(&h, Duration::from_millis(300));
    for ev in [
        Event::SocketBind,
        Event::SocketConnect,
        Event::SocketListen,
        Event::SocketAccept,
    ] {
        assert!(
            evs.iter().any(|a| a.event == ev),
            "{ev:?} missing: {evs:#?}"
        );
    }
    assert!(evs.iter().all(|a| a.sniffed));
}

#[test]
fn other_namespaces_are_not_reported() {
    require_root();
    let ns = Netns::new("sockiso");
    let other = Netns::new("sockoth");
    // A blocking handle in `ns`: nothing in `other` is blocked or reported.
    let h = open(&ns, "localPort == 7401 or remotePort == 7401", Flags::NONE);
    other.run(|| {
        let l = TcpListener::bind("127.0.0.1:7401").unwrap();
        let c = TcpStream::connect("127.0.0.1:7401").unwrap();
        drop((l, c));
    });
    assert!(drain(&h, Duration::from_millis(300)).is_empty());
    ns.run(|| {
        let e = TcpListener::bind("127.0.0.1:7401").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    });
    let evs = drain(&h, Duration::from_millis(300));
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_eq!(evs[0].event, Event::SocketBind);
    // The calling thread's namespace (the test's) is not the handle's either.
    assert_ne!(cgroup::current_netns_cookie().unwrap(), h.netns_cookie());
}

#[test]
fn programs_and_links_are_gone_after_drop() {
    require_root();
    let ns = Netns::new("sockdrop");
    let h = open(&ns, "true", Flags::NONE);
    let att = h.attachments();
    let hooks: Vec<Hook> = att.iter().map(|a| a.0).collect();
    for want in Hook::ALL {
        assert!(hooks.contains(&want), "{want:?} not attached: {hooks:?}");
    }
    let progs: Vec<u32> = att.iter().map(|a| a.1).collect();
    let links: Vec<u32> = att.iter().map(|a| a.2).collect();
    assert!(progs.iter().all(|&p| p != 0) && links.iter().all(|&l| l != 0));
    let live = cgroup::prog_ids().unwrap();
    assert!(progs.iter().all(|p| live.contains(p)));
    ns.run(|| {
        assert_eq!(
            TcpListener::bind("127.0.0.1:7501")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EPERM)
        );
    });
    drop(h);
    let t0 = Instant::now();
    loop {
        let lp = cgroup::prog_ids().unwrap();
        let ll = cgroup::link_ids().unwrap();
        if progs.iter().all(|p| !lp.contains(p)) && links.iter().all(|l| !ll.contains(l)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "programs or links still present after drop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.run(|| {
        TcpListener::bind("127.0.0.1:7501").unwrap();
    });
}

#[test]
fn shutdown_recv_stops_blocking_and_drains() {
    require_root();
    let ns = Netns::new("sockshut");
    let h = open(&ns, "event == BIND and localPort == 7601", Flags::NONE);
    ns.run(|| {
        assert!(TcpListener::bind("127.0.0.1:7601").is_err());
    });
    h.shutdown(lindivert::Shutdown::Recv).unwrap();
    ns.run(|| {
        TcpListener::bind("127.0.0.1:7601").unwrap();
    });
    let a = h.recv_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(a.event, Event::SocketBind);
    assert!(matches!(
        h.recv_timeout(Some(Duration::from_millis(100))),
        Err(Error::NoData)
    ));
}

#[test]
fn invalid_flags_and_filters_are_refused() {
    require_root();
    // SOCKET requires RECV_ONLY (WinDivert).
    assert!(matches!(
        SocketHandle::open("true", 0, Flags::SNIFF),
        Err(Error::InvalidParameter(_))
    ));
    assert!(matches!(
        SocketHandle::open("tcp.DstPort == 80", 0, Flags::RECV_ONLY),
        Err(Error::InvalidFilter { .. })
    ));
}

#[test]
fn descriptor_polls_queued_events() {
    require_root();
    let ns = Netns::new("sockfd");
    let h = open(&ns, "tcp and localPort == 7701", Flags::SNIFF);
    let fd = std::os::fd::AsFd::as_fd(&h);
    let readable = |t: Duration| lindivert::sys::poll::wait_readable(fd, Some(t)).unwrap();
    assert!(!readable(Duration::from_millis(100)));
    // BIND, LISTEN and CLOSE wait in the ring buffer; the first receive takes them all.
    ns.run(|| drop(TcpListener::bind("127.0.0.1:7701").unwrap()));
    std::thread::sleep(Duration::from_millis(100));
    let mut n = 0;
    while readable(Duration::from_millis(if n == 0 { 2000 } else { 0 })) {
        match h.recv_timeout(Some(Duration::ZERO)) {
            Ok(_) => n += 1,
            Err(e) => panic!("readable, but {e}"),
        }
    }
    assert_eq!(n, 3, "every queued event is announced");
    h.shutdown(lindivert::core::Shutdown::Recv).unwrap();
    assert!(readable(Duration::ZERO));
}

/// Not a test on its own: the child process of `kill_9_removes_programs_and_unblocks`.
/// Opens a blocking SOCKET handle (`LDT_SOCKET_KILL_HELPER` = `NETNS_PATH|FILTER`), prints
/// `READY <pid> progs=<id,...> links=<id,...>` and holds the handle until stdin closes (so it
/// never outlives the test) or it is killed.
#[test]
#[ignore]
fn kill_9_helper() {
    let Ok(spec) = std::env::var("LDT_SOCKET_KILL_HELPER") else {
        return;
    };
    let (path, filter) = spec.split_once('|').unwrap();
    let h = SocketOptions::new(filter)
        .flags(Flags::RECV_ONLY)
        .netns_path(path)
        .open()
        .expect("helper open");
    let att = h.attachments();
    let progs: Vec<u32> = att.iter().map(|a| a.1).collect();
    let links: Vec<u32> = att.iter().map(|a| a.2).collect();
    println!(
        "READY {} progs={} links={}",
        std::process::id(),
        common::join_ids(&progs),
        common::join_ids(&links)
    );
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    drop(h);
}

#[test]
fn kill_9_removes_programs_and_unblocks() {
    if std::env::var("LDT_SOCKET_KILL_HELPER").is_ok() {
        return;
    }
    require_root();
    let ns = Netns::new("sockkill");
    let (mut child, ready) = common::start_helper(
        "kill_9_helper",
        "LDT_SOCKET_KILL_HELPER",
        &format!("{}|event == BIND and localPort == 7801", ns.path()),
    );
    let pid = child.0.id();
    let f: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{ready}");
    assert_eq!(f[0], pid.to_string(), "{ready}");
    let progs = common::parse_ids(f[1].strip_prefix("progs=").unwrap());
    let links = common::parse_ids(f[2].strip_prefix("links=").unwrap());
    assert!(!progs.is_empty() && progs.len() == links.len(), "{ready}");
    assert!(
        progs.iter().chain(&links).all(|&i| i != 0),
        "unknown id: {ready}"
    );
    // The ids are the child's own descriptors, and live in the kernel.
    let (fp, fl) = common::fdinfo_bpf_ids(pid);
    assert!(progs.iter().all(|p| fp.contains(p)), "{ready} vs {fp:?}");
    assert!(links.iter().all(|l| fl.contains(l)), "{ready} vs {fl:?}");
    let (lp, ll) = (cgroup::prog_ids().unwrap(), cgroup::link_ids().unwrap());
    assert!(progs.iter().all(|p| lp.contains(p)));
    assert!(links.iter().all(|l| ll.contains(l)));
    // The child's handle blocks the bind in the namespace.
    ns.run(|| {
        let e = TcpListener::bind("127.0.0.1:7801").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    });

    // kill -9 by pid; its stdin stays open, so only the kill can end the child.
    let killed = Instant::now();
    common::kill_9(&mut child);
    let limit = Duration::from_secs(1);
    loop {
        if ns.run(|| TcpListener::bind("127.0.0.1:7801").is_ok()) {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "bind still refused {:?} after kill -9",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::wait_bpf_ids_gone(&progs, &links, killed, limit);
    eprintln!(
        "unblocked and cleaned up {:?} after kill -9",
        killed.elapsed()
    );
}
