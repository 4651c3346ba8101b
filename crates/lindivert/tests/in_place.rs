//! Zero-copy receive (`Handle::recv_with`) and busy-poll: every verdict on real traffic in throw-away
//! namespaces, GSO super-packets changed in place, bad arguments, re-entrant calls and a
//! panicking callback. Needs root; skipped (with a message) otherwise.

mod common;

use common::{open_in, require_root, tcp_server_in_b, Echo, Pair};
use lindivert::{Address, Error, Flags, Handle, OpenOptions, Param, Verdict};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Send `payloads` from namespace a to `b_ip:port` without waiting for replies.
fn send_all(pair: &Pair, port: u16, payloads: &[Vec<u8>]) {
    let to = SocketAddr::from((pair.b_ip, port));
    let payloads = payloads.to_vec();
    pair.a.run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for p in payloads {
            s.send_to(&p, to).unwrap();
        }
    });
}

/// Offset of the UDP payload in an IPv4 packet.
fn udp_payload(p: &mut [u8]) -> &mut [u8] {
    let ihl = (p[0] & 0x0f) as usize * 4;
    &mut p[ihl + 8..]
}

/// Give the last re-injected datagrams time to arrive, then stop `echo`.
fn settle(echo: Echo) -> Vec<Vec<u8>> {
    std::thread::sleep(Duration::from_millis(300));
    echo.finish()
}

#[test]
fn every_verdict_on_real_traffic() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 9301);
    let h = open_in(&pair, "outbound and udp.DstPort == 9301", Flags::NONE);
    let sent: Vec<Vec<u8>> = (0..8)
        .map(|i| format!("inplace-{i}").into_bytes())
        .collect();
    send_all(&pair, 9301, &sent);

    // 0,4: Accept; 1,5: Modified (upper case); 2,6: Drop; 3,7: Keep (sent later)
    let mut kept: Vec<(Vec<u8>, Address)> = Vec::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen < 8 && Instant::now() < deadline {
        let r = h.recv_with(255, Some(Duration::from_millis(200)), |p, a| {
            let body = String::from_utf8_lossy(udp_payload(p)).to_string();
            let i: usize = body.rsplit('-').next().unwrap().parse().unwrap();
            assert!(a.outbound && !a.sniffed && a.timestamp > 0);
            match i % 4 {
                0 => Verdict::Accept,
                1 => {
                    udp_payload(p).make_ascii_uppercase();
                    a.udp_checksum = false;
                    Verdict::Modified
                }
                2 => Verdict::Drop,
                _ => {
                    kept.push((p.to_vec(), *a));
                    Verdict::Keep
                }
            }
        });
        match r {
            Ok(n) => seen += n,
            Err(Error::Timeout) => {}
            Err(e) => panic!("recv_with: {e}"),
        }
    }
    assert_eq!(seen, 8, "every datagram shown once");
    assert_eq!(kept.len(), 2);
    // the kept packets are still queued in the kernel: a send finds them by address
    std::thread::sleep(Duration::from_millis(100));
    for (p, a) in &kept {
        assert_eq!(h.send(p, a).unwrap(), p.len());
    }
    let st = h.stats();
    assert_eq!((st.received, st.sent, st.injected), (8, 6, 0));
    let got = settle(echo);
    let mut got: Vec<String> = got
        .into_iter()
        .map(|g| String::from_utf8(g).unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "INPLACE-1",
            "INPLACE-5",
            "inplace-0",
            "inplace-3",
            "inplace-4",
            "inplace-7"
        ],
        "accepted unchanged, modified in upper case, dropped absent, kept after their send"
    );
}

#[test]
fn gso_stream_rewritten_in_place() {
    require_root!();
    let pair = Pair::new();
    let transfer = tcp_server_in_b(&pair, 9302);
    let h = Arc::new(open_in(
        &pair,
        "tcp.DstPort == 9302 or tcp.SrcPort == 9302",
        Flags::NONE,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (h2, stop2) = (h.clone(), stop.clone());
    let worker = std::thread::spawn(move || {
        let mut biggest = 0usize;
        while !stop2.load(Ordering::Relaxed) {
            let r = h2.recv_with(64, Some(Duration::from_millis(50)), |p, a| {
                biggest = biggest.max(p.len());
                let ihl = (p[0] & 0x0f) as usize * 4;
                let doff = (p[ihl + 12] >> 4) as usize * 4;
                if !a.outbound || p.len() == ihl + doff {
                    return Verdict::Accept;
                }
                p[ihl + doff..].make_ascii_uppercase();
                a.tcp_checksum = false;
                Verdict::Modified
            });
            match r {
                Ok(_) | Err(Error::Timeout) => {}
                Err(e) => panic!("recv_with: {e}"),
            }
        }
        biggest
    });
    let text: Vec<u8> = (0..3_000_000u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz .,"[(i % 29) as usize])
        .collect();
    let got = transfer(text.clone());
    stop.store(true, Ordering::Relaxed);
    let biggest = worker.join().unwrap();
    assert_eq!(got.len(), text.len());
    assert!(
        got == text.to_ascii_uppercase(),
        "stream must arrive upper-cased and intact"
    );
    assert!(
        biggest > 1500,
        "GSO super-packets must reach the callback whole (largest {biggest})"
    );
}

#[test]
fn sniff_handle_modified_injects_a_copy() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 9303);
    let h = open_in(&pair, "outbound and udp.DstPort == 9303", Flags::SNIFF);
    send_all(&pair, 9303, &[b"sniffed".to_vec()]);
    let n = h
        .recv_with(8, Some(Duration::from_secs(2)), |p, a| {
            assert!(a.sniffed);
            udp_payload(p).make_ascii_uppercase();
            a.udp_checksum = false;
            Verdict::Modified
        })
        .unwrap();
    assert_eq!(n, 1);
    let mut got = settle(echo);
    got.sort();
    assert_eq!(
        got,
        [b"SNIFFED".to_vec(), b"sniffed".to_vec()],
        "the original passed by itself, the changed copy was injected"
    );
    assert_eq!(h.stats().injected, 1);
}

#[test]
fn bad_arguments_and_reentrant_calls_fail_cleanly() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 9304);
    let h = open_in(&pair, "outbound and udp.DstPort == 9304", Flags::NONE);
    for max in [0, 256] {
        assert!(matches!(
            h.recv_with(max, Some(Duration::ZERO), |_, _| Verdict::Accept),
            Err(Error::InvalidParameter(_))
        ));
    }
    assert!(matches!(
        h.recv_with(1, Some(Duration::from_millis(50)), |_, _| Verdict::Accept),
        Err(Error::Timeout)
    ));
    let ro = OpenOptions::new("udp.DstPort == 9399")
        .flags(Flags::RECV_ONLY)
        .netns_path(pair.a.path())
        .open()
        .unwrap();
    assert!(matches!(
        ro.recv_with(1, Some(Duration::ZERO), |_, _| Verdict::Accept),
        Err(Error::InvalidParameter(_))
    ));

    send_all(&pair, 9304, &[b"reentrant".to_vec()]);
    let mut inner = Vec::new();
    let n = h
        .recv_with(1, Some(Duration::from_secs(2)), |p, a| {
            let mut buf = [0u8; 100];
            inner.push(h.send(p, a).map(|_| ()));
            inner.push(h.recv_timeout(&mut buf, Some(Duration::ZERO)).map(|_| ()));
            // parameters may change inside (the queue's lock is held: no deadlock)
            h.set_param(Param::QueueLength, 64).unwrap();
            h.set_param(Param::QueueTime, 500).unwrap();
            Verdict::Accept
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(h.get_param(Param::QueueLength), 64);
    assert_eq!(h.get_param(Param::QueueTime), 500);
    assert!(
        inner
            .iter()
            .all(|r| matches!(r, Err(Error::InvalidParameter(m)) if m.contains("recv_with"))),
        "send/recv inside the callback must fail, not deadlock: {inner:?}"
    );
    let got = settle(echo);
    assert_eq!(
        got,
        [b"reentrant".to_vec()],
        "the Accept verdict still applies"
    );
}

#[test]
fn panicking_callback_loses_no_packet() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 9305);
    let h = open_in(&pair, "outbound and udp.DstPort == 9305", Flags::NONE);
    send_all(&pair, 9305, &[b"survivor".to_vec()]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.recv_with(1, Some(Duration::from_secs(2)), |_, _| -> Verdict {
            panic!("callback bug")
        })
    }));
    assert!(r.is_err(), "the panic reaches the caller");
    // the same thread may use the handle again; the packet is shown again
    let mut again = Vec::new();
    let n = h
        .recv_with(1, Some(Duration::from_secs(2)), |p, _| {
            again = udp_payload(p).to_vec();
            Verdict::Accept
        })
        .unwrap();
    assert_eq!((n, again.as_slice()), (1, &b"survivor"[..]));
    let got = settle(echo);
    assert_eq!(got, [b"survivor".to_vec()]);
}

/// CPU time this thread has used (ns), from /proc/thread-self/schedstat.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("schedstat")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("cpu time")
}

/// An empty receive with `h`: (CPU time used, wall time) for a 60 ms timeout.
fn empty_receive(h: &Handle) -> (Duration, Duration) {
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    let r = h.recv_with(1, Some(Duration::from_millis(60)), |_, _| Verdict::Accept);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    (Duration::from_nanos(thread_cpu_ns() - c0), t0.elapsed())
}

#[test]
fn busy_poll_receives_and_rejects_bad_values() {
    require_root!();
    let pair = Pair::new();
    let open = |filter: &str, d: Duration| {
        OpenOptions::new(filter)
            .busy_poll(d)
            .netns_path(pair.a.path())
            .open()
    };
    assert!(matches!(
        open("udp.DstPort == 9307", Duration::from_millis(11)),
        Err(Error::InvalidParameter(m)) if m.contains("busy_poll")
    ));
    let echo = Echo::start(&pair.b, 9306);
    let h = open(
        "outbound and udp.DstPort == 9306",
        Duration::from_millis(10),
    )
    .unwrap();
    let plain = open("outbound and udp.DstPort == 9308", Duration::ZERO).unwrap();
    assert_eq!(
        (h.busy_poll(), plain.busy_poll()),
        (Duration::from_millis(10), Duration::ZERO)
    );
    assert!(matches!(
        plain.set_busy_poll(Duration::from_millis(11)),
        Err(Error::InvalidParameter(_))
    ));
    assert_eq!(
        plain.busy_poll(),
        Duration::ZERO,
        "a refused value changes nothing"
    );

    // empty queue: the busy-polling receive spends CPU for about 10 ms, then sleeps; the
    // plain one sleeps at once; both keep to their timeout
    let (cpu, wall) = empty_receive(&h);
    let (plain_cpu, plain_wall) = empty_receive(&plain);
    for w in [wall, plain_wall] {
        assert!(
            w >= Duration::from_millis(60) && w < Duration::from_millis(200),
            "timeout kept: {w:?}"
        );
    }
    assert!(
        cpu >= Duration::from_millis(2),
        "busy-poll must poll before sleeping (used {cpu:?} of CPU)"
    );
    assert!(cpu < Duration::from_millis(40), "then sleep ({cpu:?})");
    assert!(
        plain_cpu < Duration::from_millis(3),
        "without busy-poll a receive sleeps at once ({plain_cpu:?})"
    );

    // traffic passes through a busy-polling receive
    send_all(&pair, 9306, &[b"polled".to_vec()]);
    let n = h
        .recv_with(1, Some(Duration::from_secs(2)), |_, _| Verdict::Accept)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(settle(echo), [b"polled".to_vec()]);
}

/// A receiver in namespace b on `port`: the arrival time of each datagram, by the number
/// its payload starts with, until `n` arrived or 5 s passed.
fn arrivals(pair: &Pair, port: u16, n: usize) -> std::thread::JoinHandle<Vec<Option<Instant>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = pair.b.spawn(move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tx.send(()).unwrap();
        let mut at = vec![None; n];
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(5);
        while at.iter().any(Option::is_none) && Instant::now() < end {
            if let Ok(k) = s.recv(&mut buf) {
                let i: usize = String::from_utf8_lossy(&buf[..k])
                    .split('-')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                if i < n && at[i].is_none() {
                    at[i] = Some(Instant::now());
                }
            }
        }
        at
    });
    rx.recv().unwrap();
    t
}

/// A handle on b's `port` with `n` numbered datagrams from a buffered in it (the handle's
/// worker reads them while the application is idle), and b's [`arrivals`] on that port.
fn held_burst(
    port: u16,
    n: usize,
) -> (Pair, Handle, std::thread::JoinHandle<Vec<Option<Instant>>>) {
    let pair = Pair::new();
    let rx = arrivals(&pair, port, n);
    let h = open_in(
        &pair,
        &format!("outbound and udp.DstPort == {port}"),
        Flags::NONE,
    );
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| format!("{i}-held").into_bytes()).collect();
    send_all(&pair, port, &payloads);
    std::thread::sleep(Duration::from_millis(300));
    (pair, h, rx)
}

/// The number a datagram of [`held_burst`] carries (`p`: its IPv4 packet).
fn burst_index(p: &mut [u8]) -> usize {
    let body = String::from_utf8_lossy(udp_payload(p)).to_string();
    body.split('-').next().unwrap().parse().unwrap()
}

/// Every datagram arrived within 40 ms of being `released` (by a callback or a send).
fn assert_prompt(released: &[Option<Instant>], arrived: &[Option<Instant>], by: &str) {
    for (i, (r, a)) in released.iter().zip(arrived).enumerate() {
        let (r, a) = (r.unwrap(), a.expect("every datagram arrives"));
        let late = a.saturating_duration_since(r);
        assert!(
            late < Duration::from_millis(40),
            "datagram {i} arrived {late:?} after {by}"
        );
    }
}

/// A callback that takes 10 ms per packet, over a burst buffered before the call: each
/// verdict goes out as the callback gives it, not after the whole burst (which held the
/// first one back for the other 19 callbacks, about 190 ms).
#[test]
fn slow_callback_gets_each_verdict_out_without_waiting_for_the_burst() {
    require_root!();
    const N: usize = 20;
    let (_pair, h, rx) = held_burst(9310, N);
    let mut given = vec![None; N];
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen < N && Instant::now() < deadline {
        match h.recv_with(255, Some(Duration::from_millis(500)), |p, _| {
            std::thread::sleep(Duration::from_millis(10));
            given[burst_index(p)] = Some(Instant::now());
            Verdict::Accept
        }) {
            Ok(n) => seen += n,
            Err(Error::Timeout) => {}
            Err(e) => panic!("recv_with: {e}"),
        }
    }
    assert_eq!(seen, N);
    assert_prompt(&given, &rx.join().unwrap(), "its callback returned");
    assert_eq!((h.stats().received, h.stats().sent), (N as u64, N as u64));
}

/// The same with `recv`, 3 ms of work, `send` (less than the few milliseconds after which
/// the handle's worker takes over an idle application's verdicts): each send's verdict goes
/// out with that send, not when the application has worked through the burst.
#[test]
fn slow_application_between_recv_and_send_gets_each_verdict_out() {
    require_root!();
    const N: usize = 30;
    let (_pair, h, rx) = held_burst(9311, N);
    let mut sent_at = vec![None; N];
    let mut buf = vec![0u8; 2048];
    for _ in 0..N {
        let (n, a) = h
            .recv_timeout(&mut buf, Some(Duration::from_secs(2)))
            .expect("a buffered datagram");
        std::thread::sleep(Duration::from_millis(3));
        let i = burst_index(&mut buf[..n]);
        h.send(&buf[..n], &a).unwrap();
        sent_at[i] = Some(Instant::now());
    }
    assert_prompt(&sent_at, &rx.join().unwrap(), "its send");
}
