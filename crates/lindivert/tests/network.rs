//! NETWORK-layer divert, modify, drop and re-inject of real packets, in throw-away network
//! namespaces joined by a veth pair. Needs root; skipped (with a message) otherwise.

mod common;

use common::{kernel_queued, open_in, require_root, tcp_server_in_b, udp_exchange, Echo, Pair};
use lindivert::{Address, Error, Flags, Handle, Layer, Param};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn payloads(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{tag}-{i:04}").into_bytes())
        .collect()
}

/// Run `f` on every diverted packet in a background thread until stopped.
fn serve(
    h: Arc<Handle>,
    mut f: impl FnMut(&Handle, &mut [u8], &Address) + Send + 'static,
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

/// Run `f` on every diverted packet (see [`serve`]) while `body` runs; stop and join after.
fn serving<R>(
    h: &Arc<Handle>,
    f: impl FnMut(&Handle, &mut [u8], &Address) + Send + 'static,
    body: impl FnOnce() -> R,
) -> R {
    let (stop, t) = serve(h.clone(), f);
    let r = body();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    r
}

/// Send every diverted packet on unchanged while `body` runs; also returns the address of
/// each packet seen, in order.
fn passthrough_recording<R>(h: &Arc<Handle>, body: impl FnOnce() -> R) -> (R, Vec<Address>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Address>::new()));
    let seen2 = seen.clone();
    let r = serving(
        h,
        move |h, p, a| {
            seen2.lock().unwrap().push(*a);
            pass(h, p, a);
        },
        body,
    );
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (r, seen)
}

/// Send a diverted packet on unchanged.
fn pass(h: &Handle, p: &mut [u8], a: &Address) {
    h.send(p, a).unwrap();
}

/// `udp_exchange` from namespace a to `b_ip:port`.
fn exchange_to_b(pair: &Pair, port: u16, sent: Vec<Vec<u8>>, timeout: Duration) -> Vec<Vec<u8>> {
    udp_exchange(&pair.a, SocketAddr::from((pair.b_ip, port)), sent, timeout)
}

/// An IPv4/UDP packet carrying `payload`, checksums left zero (for the library to fill in).
fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28 + payload.len()];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.0.octets());
    p[16..20].copy_from_slice(&dst.0.octets());
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
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
    let sent = payloads(20, "pass");
    let (replies, seen) = passthrough_recording(&h, || {
        exchange_to_b(&pair, 7001, sent.clone(), Duration::from_secs(2))
    });
    assert_eq!(replies, sent, "every datagram must come back unchanged");
    let got = echo.finish();
    assert_eq!(got, sent);
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
    let blocked = exchange_to_b(&pair, 7101, payloads(3, "drop"), Duration::from_millis(300));
    let open = exchange_to_b(&pair, 7102, payloads(3, "keep"), Duration::from_secs(2));
    assert!(blocked.is_empty(), "DROP handle let {blocked:?} through");
    assert_eq!(open.len(), 3, "non-matching traffic must pass");
    assert!(h.stats().received >= 3);
    drop(h);
    let after = exchange_to_b(&pair, 7101, payloads(2, "after"), Duration::from_secs(2));
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
    let rewrite = |h: &Handle, p: &mut [u8], a: &Address| {
        // upper-case the payload (same length), checksums must be repaired by the library
        let off = 28;
        for b in &mut p[off..] {
            b.make_ascii_uppercase();
        }
        let mut a = *a;
        a.udp_checksum = false;
        h.send(p, &a).unwrap();
    };
    let replies = serving(&h, rewrite, || {
        exchange_to_b(&pair, 7201, payloads(5, "rewrite"), Duration::from_secs(2))
    });
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
    let replies = exchange_to_b(
        &pair,
        7401,
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
    let p = udp_packet((pair.a_ip, 40000), (pair.b_ip, 7501), payload);
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
    let check_v6 = move |h: &Handle, p: &mut [u8], a: &Address| {
        if !a.ipv6 || p[0] >> 4 != 6 {
            v6b.store(false, Ordering::Relaxed);
        }
        h.send(p, a).unwrap();
    };
    let sent = payloads(5, "six");
    let replies = serving(&h, check_v6, || {
        udp_exchange(
            &pair.a,
            SocketAddr::from((pair.b_ip6, 7902)),
            sent.clone(),
            Duration::from_secs(2),
        )
    });
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
    let sent = payloads(4, "lo");
    let (replies, seen) = passthrough_recording(&h, || {
        udp_exchange(
            &pair.a,
            SocketAddr::from(([127, 0, 0, 1], 7903)),
            sent.clone(),
            Duration::from_secs(2),
        )
    });
    assert_eq!(replies, sent);
    assert_eq!(echo.finish(), sent);
    assert_eq!(seen.len(), 8, "request and reply, each once");
    assert!(seen.iter().all(|a| a.outbound && a.loopback));
}

#[test]
fn tcp_stream_passthrough_with_gso() {
    require_root!();
    let pair = Pair::new();
    let transfer = tcp_server_in_b(&pair, 7904);
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
    let started = Instant::now();
    let got = transfer(data.clone());
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

#[test]
fn native_prefilter_keeps_other_ports_in_the_kernel() {
    require_root!();
    let pair = Pair::new();
    let _e1 = Echo::start(&pair.b, 8001);
    let _e2 = Echo::start(&pair.b, 8002);
    let h = Arc::new(open_in(
        &pair,
        "outbound and udp.DstPort == 8001",
        Flags::NONE,
    ));
    let (other, mine) = serving(&h, pass, || {
        let other = exchange_to_b(&pair, 8002, payloads(5, "other"), Duration::from_secs(2));
        let mine = exchange_to_b(&pair, 8001, payloads(3, "mine"), Duration::from_secs(2));
        (other, mine)
    });
    assert_eq!((other.len(), mine.len()), (5, 3));
    assert_eq!(
        kernel_queued(&pair, h.queue_num()),
        3,
        "only matching packets may leave the kernel"
    );
}

#[test]
fn sniff_copies_without_holding() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 8101);
    let h = open_in(
        &pair,
        "udp.DstPort == 8101",
        Flags::SNIFF | Flags::RECV_ONLY,
    );
    // nobody calls recv while the traffic flows: SNIFF must not hold anything
    let replies = exchange_to_b(&pair, 8101, payloads(4, "sniff"), Duration::from_secs(2));
    assert_eq!(replies.len(), 4);
    let mut buf = vec![0u8; 65536];
    let mut addrs = Vec::new();
    let used = h
        .recv_batch(&mut buf, &mut addrs, 255, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(addrs.len(), 4, "all copies in one batch");
    assert!(addrs.iter().all(|a| a.sniffed && a.outbound));
    assert_eq!(used, 4 * (28 + 10));
    assert!(matches!(
        h.send(&buf[..38], &addrs[0]),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn batch_recv_and_send_with_reordering() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 8201);
    let h = open_in(&pair, "outbound and udp.DstPort == 8201", Flags::NONE);
    let to = SocketAddr::from((pair.b_ip, 8201));
    let client = pair.a.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for p in payloads(6, "batch") {
            s.send_to(&p, to).unwrap();
        }
    });
    client.join().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut addrs = Vec::new();
    let mut used = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while addrs.len() < 6 && Instant::now() < deadline {
        used += h
            .recv_batch(
                &mut buf[used..],
                &mut addrs,
                255,
                Some(Duration::from_secs(1)),
            )
            .unwrap();
    }
    assert_eq!(addrs.len(), 6);
    // send them back in reverse order, as one batch
    let pkts: Vec<&[u8]> = buf[..used].chunks(38).collect();
    let mut out = Vec::new();
    let mut out_addrs = Vec::new();
    for (i, p) in pkts.iter().enumerate().rev() {
        out.extend_from_slice(p);
        out_addrs.push(addrs[i]);
    }
    assert_eq!(h.send_batch(&out, &out_addrs).unwrap(), out.len());
    std::thread::sleep(Duration::from_millis(200));
    let st = h.stats();
    assert_eq!((st.received, st.sent, st.injected), (6, 6, 0));
    drop(h);
    let mut got = echo.finish();
    assert_eq!(got.len(), 6);
    got.sort();
    assert_eq!(got, payloads(6, "batch"));
}

#[test]
fn shutdown_recv_drains_then_reports_no_data() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 8301);
    let h = open_in(&pair, "outbound and udp.DstPort == 8301", Flags::NONE);
    let to = SocketAddr::from((pair.b_ip, 8301));
    let _ = udp_exchange(&pair.a, to, payloads(2, "sd"), Duration::from_millis(50));
    h.shutdown(lindivert::Shutdown::Recv).unwrap();
    // new traffic passes untouched now
    let r = udp_exchange(&pair.a, to, payloads(2, "new"), Duration::from_secs(2));
    assert_eq!(r, payloads(2, "new"));
    let mut buf = vec![0u8; 2000];
    let mut n = 0;
    loop {
        match h.recv_timeout(&mut buf, Some(Duration::from_secs(1))) {
            Ok((len, a)) => {
                n += 1;
                h.send(&buf[..len], &a).unwrap();
            }
            Err(Error::NoData) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        n, 2,
        "packets queued before the shutdown are still delivered"
    );
    h.shutdown(lindivert::Shutdown::Send).unwrap();
    assert!(matches!(
        h.send(&buf[..38], &Address::network(true)),
        Err(Error::NoData)
    ));
}

#[test]
fn inbound_injection_of_a_new_packet() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.a, 8401); // the receiver is local to the handle
    let h = open_in(&pair, "inbound and udp.DstPort == 8401", Flags::NONE);
    // a packet "from b" to a's address, injected inbound
    let payload = b"from-outside";
    let p = udp_packet((pair.b_ip, 40001), (pair.a_ip, 8401), payload);
    h.send(&p, &Address::network(false)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0u8; 2000];
    assert!(
        matches!(
            h.recv_timeout(&mut buf, Some(Duration::from_millis(100))),
            Err(Error::Timeout)
        ),
        "the handle must not see its own injection"
    );
    drop(h);
    assert_eq!(echo.finish(), vec![payload.to_vec()]);
}

#[test]
fn handle_fd_is_pollable() {
    require_root!();
    use std::os::fd::AsFd;
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 8501);
    let h = open_in(&pair, "outbound and udp.DstPort == 8501", Flags::NONE);
    let poll = |ms: u64| {
        let readable =
            lindivert::sys::poll::wait_readable(h.as_fd(), Some(Duration::from_millis(ms)))
                .expect("poll the handle");
        i32::from(readable)
    };
    assert_eq!(poll(50), 0, "nothing queued yet");
    let _ = exchange_to_b(&pair, 8501, payloads(3, "poll"), Duration::from_millis(20));
    let mut buf = vec![0u8; 2000];
    for _ in 0..3 {
        assert_eq!(poll(1000), 1, "readable while packets wait");
        let (n, a) = h.recv_timeout(&mut buf, Some(Duration::ZERO)).unwrap();
        h.send(&buf[..n], &a).unwrap();
    }
    assert_eq!(poll(50), 0, "drained");
    // after shutdown(Recv) the descriptor stays readable, so a poller finds the end
    std::thread::scope(|s| {
        let poller = s.spawn(|| poll(2000));
        std::thread::sleep(Duration::from_millis(100));
        h.shutdown(lindivert::Shutdown::Recv).unwrap();
        assert_eq!(
            poller.join().unwrap(),
            1,
            "a waiting poll wakes at shutdown"
        );
    });
    assert_eq!(poll(0), 1, "and stays readable");
    assert!(matches!(
        h.recv_timeout(&mut buf, Some(Duration::ZERO)),
        Err(Error::NoData)
    ));
}

/// Not a correctness test: `cargo test --release -p lindivert --test network bench_ --
/// --ignored --nocapture` prints TCP throughput over the veth pair with and without a
/// pass-through handle (same run, so the ratio is what counts).
#[test]
#[ignore]
fn bench_tcp_passthrough_ratio() {
    require_root!();
    use std::io::{Read, Write};
    let mb: usize = std::env::var("LINDIVERT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let pair = Pair::new();
    let run = |port: u16| -> f64 {
        let server = pair.b.spawn(move || {
            let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0usize;
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break total;
                }
                total += n;
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let b_ip = pair.b_ip;
        let t0 = Instant::now();
        pair.a.run(move || {
            let mut s = std::net::TcpStream::connect((b_ip, port)).unwrap();
            let chunk = vec![0x5au8; 1 << 20];
            for _ in 0..mb {
                s.write_all(&chunk).unwrap();
            }
        });
        let total = server.join().unwrap();
        assert_eq!(total, mb << 20);
        total as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9
    };
    let base = run(8701);
    let h = Arc::new(open_in(
        &pair,
        "tcp.DstPort == 8702 or tcp.SrcPort == 8702",
        Flags::NONE,
    ));
    let diverted = serving(&h, pass, || run(8702));
    eprintln!(
        "TCP {mb} MB: no divert {base:.2} Gbit/s, pass-through handle {diverted:.2} Gbit/s = {:.0}%; {} packets diverted",
        100.0 * diverted / base,
        h.stats().received
    );
}
