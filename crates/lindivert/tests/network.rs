//! NETWORK-layer divert, modify, drop and re-inject of real packets, in throw-away network
//! namespaces joined by a veth pair. Needs root; skipped (with a message) otherwise.

mod common;

use common::{privileged, udp_exchange, Echo, Pair};
use lindivert::{Address, Error, Flags, Handle, Layer, OpenOptions, Param};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

macro_rules! require_root {
    () => {
        if !privileged() {
            eprintln!("skipped: needs root and the `ip` tool");
            return;
        }
    };
}

fn open_in(pair: &Pair, filter: &str, flags: Flags) -> Handle {
    OpenOptions::new(filter)
        .flags(flags)
        .netns_path(pair.a.path())
        .open()
        .expect("open handle")
}

fn payloads(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{tag}-{i:04}").into_bytes())
        .collect()
}

/// Run `f` on every diverted packet in a background thread until stopped.
fn serve(
    h: Arc<Handle>,
    mut f: impl FnMut(&Handle, &mut Vec<u8>, &Address) + Send + 'static,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 70000];
        while !s2.load(Ordering::Relaxed) {
            match h.recv_timeout(&mut buf, Some(Duration::from_millis(50))) {
                Ok((n, addr)) => {
                    let mut p = buf[..n].to_vec();
                    f(&h, &mut p, &addr);
                }
                Err(Error::Timeout) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
    });
    (stop, t)
}

#[test]
fn passthrough_udp_and_address_fields() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7001);
    let h = Arc::new(open_in(
        &pair,
        "outbound and udp.DstPort == 7001",
        Flags::NONE,
    ));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Address>::new()));
    let seen2 = seen.clone();
    let (stop, t) = serve(h.clone(), move |h, p, a| {
        seen2.lock().unwrap().push(*a);
        h.send(p, a).unwrap();
    });
    let to = SocketAddr::from((pair.b_ip, 7001));
    let sent = payloads(20, "pass");
    let replies = udp_exchange(&pair.a, to, sent.clone(), Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(replies, sent, "every datagram must come back unchanged");
    let got = echo.finish();
    assert_eq!(got, sent);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len(),
        20,
        "each outbound datagram diverted exactly once"
    );
    for a in seen.iter() {
        assert!(a.outbound && !a.loopback && !a.ipv6 && !a.sniffed);
        assert_eq!(a.layer, Layer::Network);
        assert!(a.network_data().unwrap().if_idx > 1);
        assert!(a.timestamp > 0);
    }
    let st = h.stats();
    assert_eq!(st.received, 20);
    assert_eq!(st.sent, 20);
    assert_eq!(st.expired, 0);
}

#[test]
fn drop_flag_blocks_only_matching_traffic() {
    require_root!();
    let pair = Pair::new();
    let _e1 = Echo::start(&pair.b, 7101);
    let _e2 = Echo::start(&pair.b, 7102);
    let h = open_in(&pair, "udp.DstPort == 7101", Flags::DROP);
    let blocked = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7101)),
        payloads(3, "drop"),
        Duration::from_millis(300),
    );
    let open = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7102)),
        payloads(3, "keep"),
        Duration::from_secs(2),
    );
    assert!(blocked.is_empty(), "DROP handle let {blocked:?} through");
    assert_eq!(open.len(), 3, "non-matching traffic must pass");
    assert!(h.stats().received >= 3);
    drop(h);
    let after = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7101)),
        payloads(2, "after"),
        Duration::from_secs(2),
    );
    assert_eq!(after.len(), 2, "traffic must flow again after close");
}

#[test]
fn payload_rewrite_reaches_the_receiver() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7201);
    let h = Arc::new(open_in(
        &pair,
        "outbound and udp.DstPort == 7201",
        Flags::NONE,
    ));
    let (stop, t) = serve(h.clone(), |h, p, a| {
        // upper-case the payload (same length), checksums must be repaired by the library
        let off = 28;
        for b in &mut p[off..] {
            b.make_ascii_uppercase();
        }
        let mut a = *a;
        a.udp_checksum = false;
        h.send(p, &a).unwrap();
    });
    let replies = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7201)),
        payloads(5, "rewrite"),
        Duration::from_secs(2),
    );
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let got = echo.finish();
    assert_eq!(
        got,
        payloads(5, "REWRITE"),
        "receiver must see the rewritten bytes"
    );
    assert_eq!(replies, payloads(5, "REWRITE"));
}

#[test]
fn close_reinjects_queued_packets() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7301);
    let h = open_in(&pair, "outbound and udp.DstPort == 7301", Flags::NONE);
    let to = SocketAddr::from((pair.b_ip, 7301));
    let client = pair.a.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"held", to).unwrap();
        let mut b = [0u8; 100];
        s.recv_from(&mut b).map(|(n, _)| b[..n].to_vec()).ok()
    });
    let mut buf = vec![0u8; 2000];
    let (n, _addr) = h
        .recv_timeout(&mut buf, Some(Duration::from_secs(2)))
        .expect("packet diverted");
    assert!(n > 28);
    std::thread::sleep(Duration::from_millis(200));
    h.close().unwrap(); // not sent: close must re-inject it
    assert_eq!(client.join().unwrap().as_deref(), Some(&b"held"[..]));
    assert_eq!(echo.finish(), vec![b"held".to_vec()]);
}

#[test]
fn queue_time_expiry_drops_and_counts() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7401);
    let h = open_in(&pair, "outbound and udp.DstPort == 7401", Flags::NONE);
    h.set_param(Param::QueueTime, 100).unwrap();
    assert_eq!(h.get_param(Param::QueueTime), 100);
    assert!(h.set_param(Param::QueueTime, 99).is_err());
    assert_eq!(h.get_param(Param::VersionMajor), 2);
    let replies = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7401)),
        payloads(1, "expire"),
        Duration::from_millis(50),
    );
    assert!(replies.is_empty());
    let mut buf = vec![0u8; 2000];
    let (_n, _a) = h
        .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert!(matches!(
        h.recv_timeout(&mut buf, Some(Duration::from_millis(10))),
        Err(Error::Timeout)
    ));
    assert_eq!(h.stats().expired, 1);
    drop(h);
    assert!(
        echo.finish().is_empty(),
        "an expired packet must never arrive"
    );
}

#[test]
fn injected_new_packet_is_delivered_and_not_rediverted() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7501);
    let h = open_in(&pair, "outbound and udp.DstPort == 7501", Flags::NONE);
    // a UDP packet from a to b:7501 built by hand, checksums left to the library
    let payload = b"injected";
    let mut p = vec![0u8; 28 + payload.len()];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&pair.a_ip.octets());
    p[16..20].copy_from_slice(&pair.b_ip.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&7501u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    let addr = Address::network(true);
    assert_eq!(h.send(&p, &addr).unwrap(), p.len());
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 2000];
    // our own injection must not come back to us
    assert!(matches!(
        h.recv_timeout(&mut buf, Some(Duration::from_millis(300))),
        Err(Error::Timeout)
    ));
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if h.stats().injected == 1 {
            break;
        }
    }
    assert_eq!(h.stats().injected, 1);
    drop(h);
    assert_eq!(echo.finish(), vec![payload.to_vec()]);
}

#[test]
fn bad_filter_and_parameters_are_reported() {
    let e = Handle::open("udp and nonsense == 1", Layer::Network, 0, Flags::NONE).unwrap_err();
    assert!(
        matches!(e, Error::InvalidFilter { position: 8, .. }),
        "{e:?}"
    );
    let e = Handle::open("true", Layer::Network, 0, Flags::SNIFF | Flags::DROP).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter(_)), "{e:?}");
    let e = Handle::open("true", Layer::Network, 30001, Flags::NONE).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter(_)), "{e:?}");
    let e = Handle::open("true", Layer::Flow, 0, Flags::SNIFF | Flags::RECV_ONLY).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter(_)), "{e:?}");
}

#[test]
fn ipv6_udp_passthrough() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7902);
    let h = Arc::new(open_in(&pair, "ipv6 and udp.DstPort == 7902", Flags::NONE));
    let v6 = Arc::new(AtomicBool::new(true));
    let v6b = v6.clone();
    let (stop, t) = serve(h.clone(), move |h, p, a| {
        if !a.ipv6 || p[0] >> 4 != 6 {
            v6b.store(false, Ordering::Relaxed);
        }
        h.send(p, a).unwrap();
    });
    let sent = payloads(5, "six");
    let replies = udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip6, 7902)),
        sent.clone(),
        Duration::from_secs(2),
    );
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(replies, sent);
    assert_eq!(echo.finish(), sent);
    assert!(v6.load(Ordering::Relaxed));
    // only the requests match (the replies have SrcPort 7902)
    assert_eq!(h.stats().received, 5);
}

#[test]
fn loopback_packets_are_diverted_once_as_outbound() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.a, 7903);
    let h = Arc::new(open_in(
        &pair,
        "udp.DstPort == 7903 or udp.SrcPort == 7903",
        Flags::NONE,
    ));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Address>::new()));
    let seen2 = seen.clone();
    let (stop, t) = serve(h.clone(), move |h, p, a| {
        seen2.lock().unwrap().push(*a);
        h.send(p, a).unwrap();
    });
    let sent = payloads(4, "lo");
    let replies = udp_exchange(
        &pair.a,
        SocketAddr::from(([127, 0, 0, 1], 7903)),
        sent.clone(),
        Duration::from_secs(2),
    );
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(replies, sent);
    assert_eq!(echo.finish(), sent);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8, "request and reply, each once");
    assert!(seen.iter().all(|a| a.outbound && a.loopback));
}

#[test]
fn tcp_stream_passthrough_with_gso() {
    require_root!();
    use std::io::{Read, Write};
    let pair = Pair::new();
    let server = pair.b.spawn(|| {
        let l = std::net::TcpListener::bind("0.0.0.0:7904").unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut total = Vec::new();
        s.read_to_end(&mut total).unwrap();
        total
    });
    std::thread::sleep(Duration::from_millis(100));
    let h = Arc::new(open_in(
        &pair,
        "tcp.DstPort == 7904 or tcp.SrcPort == 7904",
        Flags::NONE,
    ));
    let big = Arc::new(AtomicBool::new(false));
    let big2 = big.clone();
    let (stop, t) = serve(h.clone(), move |h, p, a| {
        if p.len() > 1500 {
            big2.store(true, Ordering::Relaxed);
        }
        h.send(p, a).unwrap();
    });
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d2 = data.clone();
    let b_ip = pair.b_ip;
    let started = Instant::now();
    pair.a.run(move || {
        let mut s = std::net::TcpStream::connect((b_ip, 7904)).unwrap();
        s.write_all(&d2).unwrap();
    });
    let got = server.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream corrupted");
    eprintln!(
        "tcp 4 MB through the handle: {:.1} Mbit/s (debug build), GSO super-packets seen: {}",
        data.len() as f64 * 8.0 / secs / 1e6,
        big.load(Ordering::Relaxed)
    );
}
