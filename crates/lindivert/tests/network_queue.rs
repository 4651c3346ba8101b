//! NETWORK layer, second part: the in-kernel eBPF prefilter, the handle's worker (traffic
//! that does not match never waits for the application), WinDivert's queue semantics
//! (QUEUE_LENGTH drops the oldest) and impostor sends. Needs root; skipped otherwise.

mod common;

use common::{kernel_queue_now, kernel_queued, require_root, udp_exchange, Echo, Pair};
use lindivert::{Error, Handle, OpenOptions, Param};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open_in(pair: &Pair, opts: OpenOptions) -> Handle {
    opts.netns_path(pair.a.path()).open().expect("open handle")
}

fn tagged(n: usize, first: u8, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut v = vec![first];
            v.extend_from_slice(format!("{tag}-{i:04}").as_bytes());
            v
        })
        .collect()
}

#[test]
fn ebpf_prefilter_keeps_non_matching_payloads_in_the_kernel() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 5555);
    let h = open_in(
        &pair,
        OpenOptions::new("udp.DstPort == 5555 and udp.Payload[0] == 0x41"),
    );
    assert!(h.ebpf_prefilter(), "the eBPF prefilter must be attached");
    let to = SocketAddr::from((pair.b_ip, 5555));
    // 'B' packets: same port, other first byte: never queued, echoed at once
    let other = udp_exchange(&pair.a, to, tagged(5, b'B', "b"), Duration::from_secs(2));
    assert_eq!(other.len(), 5);
    assert_eq!(
        kernel_queued(&pair, h.queue_num()),
        0,
        "packets that cannot match must not leave the kernel"
    );
    // 'A' packets are diverted: nobody re-injects them, so no echo; the kernel queued them
    let mine = udp_exchange(
        &pair.a,
        to,
        tagged(3, b'A', "a"),
        Duration::from_millis(100),
    );
    assert!(mine.is_empty());
    assert_eq!(kernel_queued(&pair, h.queue_num()), 3);
    let mut buf = vec![0u8; 2000];
    for _ in 0..3 {
        let (n, _) = h
            .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
            .unwrap();
        assert_eq!(buf[28], b'A', "{:?}", &buf[..n]);
    }
    // the same filter without the eBPF match: the native port match alone queues all of
    // them, and the worker accepts the non-matching ones without any recv
    let h2 = open_in(
        &pair,
        OpenOptions::new("udp.DstPort == 5555 and udp.Payload[0] == 0x41")
            .priority(10)
            .ebpf_prefilter(false),
    );
    assert!(!h2.ebpf_prefilter());
    let other = udp_exchange(&pair.a, to, tagged(4, b'C', "c"), Duration::from_secs(2));
    assert_eq!(
        other.len(),
        4,
        "non-matching packets must flow without recv"
    );
    assert_eq!(kernel_queued(&pair, h2.queue_num()), 4);
}

#[test]
fn queue_length_overflow_drops_the_oldest() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7501);
    let h = open_in(&pair, OpenOptions::new("outbound and udp.DstPort == 7501"));
    h.set_param(Param::QueueLength, 32).unwrap();
    assert!(h.set_param(Param::QueueLength, 31).is_err());
    udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7501)),
        tagged(40, b'Q', "q"),
        Duration::from_millis(1),
    );
    // the worker queues while the application is idle
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = vec![0u8; 2000];
    let mut got = Vec::new();
    while let Ok((n, a)) = h.recv_timeout(&mut buf, Some(Duration::from_millis(200))) {
        got.push(buf[28..n].to_vec());
        h.send(&buf[..n], &a).unwrap();
    }
    assert_eq!(got.len(), 32);
    assert_eq!(
        got[0],
        b"Qq-0008".to_vec(),
        "the oldest 8 must be the ones dropped"
    );
    assert_eq!(h.stats().dropped, 8);
    drop(h);
    assert_eq!(echo.finish().len(), 32);
}

#[test]
fn queue_size_counts_bytes_and_drops_the_oldest() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 7502);
    let h = open_in(&pair, OpenOptions::new("outbound and udp.DstPort == 7502"));
    h.set_param(Param::QueueSize, 65535).unwrap();
    assert!(h.set_param(Param::QueueSize, 65534).is_err());
    // 10 packets of 28 + 10000 bytes: at most 6 fit in 65535 bytes with the overhead
    let big: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10000]).collect();
    udp_exchange(
        &pair.a,
        SocketAddr::from((pair.b_ip, 7502)),
        big,
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = vec![0u8; 70000];
    let mut first = Vec::new();
    while let Ok((_n, _a)) = h.recv_timeout(&mut buf, Some(Duration::from_millis(200))) {
        first.push(buf[28]);
    }
    let fit = 65535 / (10028 + lindivert::handle::PACKET_OVERHEAD);
    assert_eq!(first.len(), fit);
    assert_eq!(first[0] as usize, 10 - fit);
    assert_eq!(h.stats().dropped as usize, 10 - fit);
}

#[test]
fn impostor_send_decrements_ttl_and_refuses_zero() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7503);
    let h = open_in(&pair, OpenOptions::new("outbound and udp.DstPort == 7503"));
    let t = {
        let a = pair.a.name.clone();
        let to = SocketAddr::from((pair.b_ip, 7503));
        std::thread::spawn(move || {
            let ns = lindivert::sys::netns::NetNs::named(&a).unwrap();
            ns.run(move || {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.send_to(b"ttl-one", to).unwrap();
                s.send_to(b"ttl-ok", to).unwrap();
            })
            .unwrap()
        })
    };
    let mut buf = vec![0u8; 2000];
    let (n, mut a) = h
        .recv_timeout(&mut buf, Some(Duration::from_secs(2)))
        .unwrap();
    let mut p = buf[..n].to_vec();
    p[8] = 1; // TTL 1: an impostor send would make it 0
    a.impostor = true;
    a.ip_checksum = false;
    assert!(matches!(h.send(&p, &a), Err(Error::HopLimitExceeded)));
    let (n, mut a) = h
        .recv_timeout(&mut buf, Some(Duration::from_secs(2)))
        .unwrap();
    a.impostor = true;
    h.send(&buf[..n], &a).unwrap();
    t.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(h);
    let got = echo.finish();
    assert!(got.contains(&b"ttl-ok".to_vec()), "{got:?}");
}

/// Floods `to` from inside `pair.a` over 40 sockets (each socket's send buffer alone would
/// stall the sender long before the kernel queue fills) until `stop`.
fn flood(pair: &Pair, to: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    pair.a.spawn(move || {
        let socks: Vec<_> = (0..40)
            .map(|_| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for s in &socks {
                if s.send_to(b"flood", to).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
}

#[test]
fn kernel_queue_stays_near_queue_length_under_overload() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 7504);
    let h = open_in(&pair, OpenOptions::new("outbound and udp.DstPort == 7504"));
    h.set_param(Param::QueueLength, 64).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(&pair, SocketAddr::from((pair.b_ip, 7504)), stop.clone());
    // a slow application: one packet per millisecond, far below the offered rate
    let mut buf = vec![0u8; 2000];
    let mut peak = 0;
    let mut handled = 0;
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        if let Ok((n, a)) = h.recv_timeout(&mut buf, Some(Duration::from_millis(100))) {
            h.send(&buf[..n], &a).unwrap();
            handled += 1;
        }
        peak = peak.max(kernel_queue_now(&pair, h.queue_num()).0);
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let (_, kernel_dropped) = kernel_queue_now(&pair, h.queue_num());
    // QUEUE_LENGTH waiting plus one step (256) of room for held packets and unsent verdicts
    assert!(
        peak <= 64 + 256,
        "kernel queue reached {peak} packets with QUEUE_LENGTH 64"
    );
    assert!(
        peak > 64,
        "the flood must back up in the kernel (peak {peak})"
    );
    assert!(
        sent > 10_000 && handled > 50,
        "sent {sent}, handled {handled}"
    );
    assert!(kernel_dropped > 0);
    assert!(h.stats().dropped >= kernel_dropped);
}

#[test]
fn held_packets_raise_the_kernel_limit_and_none_is_lost() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7505);
    let h = open_in(&pair, OpenOptions::new("outbound and udp.DstPort == 7505"));
    h.set_param(Param::QueueLength, 32).unwrap();
    const N: usize = 700;
    let to = SocketAddr::from((pair.b_ip, 7505));
    let sender = pair.a.spawn(move || {
        // held packets still count against their socket's send buffer: spread them
        let socks: Vec<_> = (0..10)
            .map(|_| std::net::UdpSocket::bind("0.0.0.0:0").unwrap())
            .collect();
        for i in 0..N {
            socks[i / 70]
                .send_to(format!("held-{i:04}").as_bytes(), to)
                .unwrap();
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    // hold every packet (no send) while more arrive: 700 held is far above the limit a
    // QUEUE_LENGTH of 32 starts with (32 + 256)
    let mut held = Vec::new();
    let mut buf = vec![0u8; 2000];
    while held.len() < N {
        match h.recv_timeout(&mut buf, Some(Duration::from_secs(2))) {
            Ok((n, a)) => held.push((buf[..n].to_vec(), a)),
            Err(e) => panic!("after {} packets: {e}", held.len()),
        }
    }
    sender.join().unwrap();
    assert_eq!(h.stats().dropped, 0);
    let (queued, _) = kernel_queue_now(&pair, h.queue_num());
    assert!(
        queued >= N as u64,
        "{queued} packets in the kernel queue, {:?}",
        h.stats()
    );
    for (i, (p, a)) in held.iter().enumerate() {
        h.send(p, a).unwrap();
        if i % 50 == 49 {
            // the echo's receive buffer is the default one
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.stats().injected, 0, "every send must find its original");
    assert_eq!(kernel_queue_now(&pair, h.queue_num()).0, 0);
    drop(h);
    let got = echo.finish();
    assert_eq!(got.len(), N);
    assert_eq!(got[N - 1], format!("held-{:04}", N - 1).into_bytes());
}

/// Reads every queue of `h` (a thread each) until `stop`, accepting everything; returns,
/// per queue, the client-side UDP port of every packet (source port outbound, destination
/// port inbound).
fn client_ports_per_queue(h: &Handle, stop: &AtomicBool) -> Vec<Vec<u16>> {
    std::thread::scope(|s| {
        let readers: Vec<_> = h
            .split()
            .into_iter()
            .map(|q| {
                s.spawn(move || {
                    let mut ports = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        let r = q.recv_with(64, Some(Duration::from_millis(20)), |pkt, addr| {
                            // IPv4's header length, or IPv6's fixed 40 bytes (no extensions)
                            let hl = if pkt[0] >> 4 == 6 {
                                40
                            } else {
                                usize::from(pkt[0] & 0x0f) * 4
                            };
                            let at = if addr.outbound { hl } else { hl + 2 };
                            ports.push(u16::from_be_bytes([pkt[at], pkt[at + 1]]));
                            lindivert::Verdict::Accept
                        });
                        match r {
                            Ok(_) | Err(Error::Timeout) => {}
                            Err(e) => panic!("recv_with: {e}"),
                        }
                    }
                    ports
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// `flows` UDP flows (2/3 IPv4, 1/3 IPv6) through a handle with `queues` queues spread by
/// flow, 3 round trips each: every flow, both directions, in exactly one queue, and every
/// queue used.
fn check_flow_spread(pair: &Pair, queues: u16, flows: usize) {
    let h = open_in(
        pair,
        OpenOptions::new("udp.DstPort == 5570 or udp.SrcPort == 5570").queues(queues),
    );
    assert_eq!(h.split().len(), usize::from(queues));
    let stop = AtomicBool::new(false);
    let (per_queue, replies) = std::thread::scope(|s| {
        let reader = s.spawn(|| client_ports_per_queue(&h, &stop));
        // dual-stack sockets all bound at once: distinct source ports
        let replies: Vec<usize> = pair.a.run(|| {
            let socks: Vec<std::net::UdpSocket> = (0..flows)
                .map(|_| std::net::UdpSocket::bind("[::]:0").unwrap())
                .collect();
            let mut buf = [0u8; 256];
            let mut replies = Vec::new();
            for (i, sock) in socks.iter().enumerate() {
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let dst = if i % 3 < 2 {
                    SocketAddr::from((pair.b_ip.to_ipv6_mapped(), 5570))
                } else {
                    SocketAddr::from((pair.b_ip6, 5570))
                };
                let mut ok = 0;
                for k in 0..3 {
                    let msg = format!("f{i}-{k}");
                    sock.send_to(msg.as_bytes(), dst).unwrap();
                    if matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == msg.as_bytes())
                    {
                        ok += 1;
                    }
                }
                replies.push(ok);
            }
            replies
        });
        stop.store(true, Ordering::Release);
        (reader.join().unwrap(), replies)
    });
    assert!(
        replies.iter().all(|&n| n == 3),
        "{queues} queues, replies per flow: {replies:?}"
    );
    let mut seen = std::collections::HashMap::<u16, (usize, usize)>::new();
    for (qi, ports) in per_queue.iter().enumerate() {
        for &p in ports {
            let e = seen.entry(p).or_insert((qi, 0));
            assert_eq!(e.0, qi, "flow of port {p} seen in queues {} and {qi}", e.0);
            e.1 += 1;
        }
    }
    assert_eq!(seen.len(), flows, "{seen:?}");
    assert!(
        seen.values().all(|&(_, n)| n == 6),
        "3 out + 3 in per flow: {seen:?}"
    );
    // a queue left without any flow: at most 5 × (4/5)^60 ≈ 1e-5 for the sizes used here
    assert!(
        per_queue.iter().all(|ports| !ports.is_empty()),
        "{queues} queues, packets per queue: {:?}",
        per_queue.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn flow_spread_keeps_each_connection_in_one_queue() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 5570);
    let to = SocketAddr::from((pair.b_ip, 5570));
    // 2 queues: one hash; 5: a tree of chains, uneven halves (2 + 3)
    check_flow_spread(&pair, 2, 24);
    check_flow_spread(&pair, 5, 60);

    // by CPU: traffic flows too (which queue a packet takes depends on the CPU)
    let h = open_in(
        &pair,
        OpenOptions::new("udp.DstPort == 5570 or udp.SrcPort == 5570")
            .queues(2)
            .spread(lindivert::Spread::Cpu),
    );
    let stop = AtomicBool::new(false);
    let (per_queue, replies) = std::thread::scope(|s| {
        let reader = s.spawn(|| client_ports_per_queue(&h, &stop));
        let r = udp_exchange(&pair.a, to, tagged(5, b'G', "g"), Duration::from_secs(2));
        stop.store(true, Ordering::Release);
        (reader.join().unwrap(), r)
    });
    assert_eq!(replies.len(), 5);
    assert_eq!(per_queue.iter().map(Vec::len).sum::<usize>(), 10);
}
