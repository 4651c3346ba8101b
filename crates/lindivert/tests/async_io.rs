//! The tokio API (`lindivert::async_io`, feature `tokio`): receives that wait in a task
//! without blocking the runtime's thread, for real packets and events in throw-away
//! namespaces. Each test runs a current-thread runtime on its own thread and fails if that
//! runtime does not finish in time: a receive that blocked the only thread, or one that was
//! never woken, stalls it. Needs root; skipped (with a message) otherwise. Built without the
//! feature, the file is one test that fails when `LINDIVERT_REQUIRE_ALL` is set (as
//! `scripts/test.sh` does, which runs `cargo test --all-features`).

mod common;

#[cfg(not(feature = "tokio"))]
#[test]
fn built_with_the_tokio_feature_when_everything_must_run() {
    assert!(
        std::env::var("LINDIVERT_REQUIRE_ALL").is_err(),
        "the async tests need feature `tokio` (cargo test --all-features)"
    );
    eprintln!("async tests not built: feature `tokio` is off");
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::common::{open_in, Netns, Pair};
    use lindivert::async_io::Async;
    use lindivert::core::Event;
    use lindivert::flow::FlowOptions;
    use lindivert::reflect::ReflectOptions;
    use lindivert::socket::SocketOptions;
    use lindivert::{Error, Flags, OpenOptions, Shutdown, Verdict};
    use std::net::{SocketAddr, UdpSocket as StdUdp};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::net::UdpSocket;

    /// Run `body` on a fresh current-thread runtime (I/O and timers on) on its own thread;
    /// panic if it has not returned within `limit`.
    fn on_runtime<T: Send + 'static>(
        limit: Duration,
        body: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
    ) -> T {
        on_runtime_with(0, limit, body)
    }

    /// [`on_runtime`] on a multi-thread runtime of `workers` threads (0: current-thread).
    fn on_runtime_with<T: Send + 'static>(
        workers: usize,
        limit: Duration,
        body: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = match workers {
                0 => tokio::runtime::Builder::new_current_thread(),
                n => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n);
                    b
                }
            }
            .enable_all()
            .build()
            .expect("tokio runtime");
            let _ = tx.send(body(&rt));
        });
        match rx.recv_timeout(limit) {
            Ok(v) => v,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                "the runtime did not finish within {limit:?}: a receive blocked its thread or was \
                 never woken"
            ),
            Err(e) => panic!("the runtime's thread failed: {e}"),
        }
    }

    /// A non-blocking UDP socket bound to `addr` inside `ns` (for `UdpSocket::from_std`).
    fn udp_in(ns: &Netns, addr: &str) -> StdUdp {
        let addr = addr.to_string();
        ns.run(move || {
            let s = StdUdp::bind(addr).expect("bind");
            s.set_nonblocking(true).unwrap();
            // room for a whole burst: a receiver task of a busy runtime may fall behind
            // (the default buffer holds 256 of these datagrams)
            use std::os::fd::AsFd;
            lindivert::sys::netlink::setsockopt_int(
                s.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                4 << 20,
            )
            .expect("SO_RCVBUFFORCE");
            s
        })
    }

    /// UDP receive-buffer overflows so far in `ns` (`RcvbufErrors`).
    fn rcvbuf_errors(ns: &Netns) -> u64 {
        ns.run(|| {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
            let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
            let (names, values) = (rows[0].split_whitespace(), rows[1].split_whitespace());
            names
                .zip(values)
                .find(|(n, _)| *n == "RcvbufErrors")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        })
    }

    /// CPU time of the calling thread so far.
    fn thread_cpu() -> Duration {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
    }

    /// Send `payload(0..n)` from `tx` to `dst`, as fast as the socket takes them.
    async fn send_all(tx: &UdpSocket, dst: SocketAddr, n: usize) {
        for i in 0..n {
            tx.send_to(&payload(i), dst).await.unwrap();
        }
    }

    /// Datagrams arriving at `rx`, counted until `n` or until none came for 5 s.
    async fn count_arrivals(rx: &UdpSocket, n: usize) -> usize {
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf)).await {
                Ok(Ok(_)) => got += 1,
                _ => break,
            }
        }
        got
    }

    fn payload(i: usize) -> Vec<u8> {
        format!("async-{i:04}").into_bytes()
    }

    #[test]
    fn recv_in_a_task_lets_the_runtime_send_the_packets_it_waits_for() {
        crate::common::require_root!();
        let pair = Pair::new();
        let handle = open_in(&pair, "outbound and udp.DstPort == 7601", Flags::NONE);
        let tx = udp_in(&pair.a, "0.0.0.0:0");
        let rx = udp_in(&pair.b, "0.0.0.0:7601");
        let dst = SocketAddr::from((pair.b_ip, 7601));
        const N: usize = 20;
        let (got, diverted) = on_runtime(Duration::from_secs(20), move |rt| {
            rt.block_on(async move {
                let h = Async::new(handle).expect("register with the reactor");
                let tx = UdpSocket::from_std(tx).unwrap();
                let rx = UdpSocket::from_std(rx).unwrap();
                // the diverter starts first and waits; the sender runs on the same (only)
                // thread, so it sends only if the waiting recv gave the thread back
                let divert = async {
                    let mut buf = vec![0u8; 2048];
                    for _ in 0..N {
                        let (n, mut addr) = h.recv(&mut buf).await?;
                        buf[28..n].make_ascii_uppercase();
                        addr.udp_checksum = false;
                        h.send(&buf[..n], &addr)?;
                    }
                    Ok::<usize, Error>(h.stats().received as usize)
                };
                let send = async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    for i in 0..N {
                        tx.send_to(&payload(i), dst).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                };
                let receive = async {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 2048];
                    while got.len() < N {
                        match tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf)).await
                        {
                            Ok(Ok(n)) => got.push(buf[..n].to_vec()),
                            _ => break,
                        }
                    }
                    got
                };
                let (diverted, (), got) = tokio::join!(divert, send, receive);
                (got, diverted)
            })
        });
        let want: Vec<Vec<u8>> = (0..N).map(|i| payload(i).to_ascii_uppercase()).collect();
        assert_eq!(got, want, "the receiver must get every packet, rewritten");
        assert_eq!(diverted.expect("async recv/send"), N);
    }

    #[test]
    fn burst_through_a_queue_in_place_and_a_dropped_recv_future_loses_nothing() {
        crate::common::require_root!();
        let pair = Pair::new();
        let handle = open_in(&pair, "outbound and udp.DstPort == 7602", Flags::NONE);
        let tx = udp_in(&pair.a, "0.0.0.0:0");
        let rx = udp_in(&pair.b, "0.0.0.0:7602");
        let dst = SocketAddr::from((pair.b_ip, 7602));
        const N: usize = 300;
        let (timed_out, got, seen) = on_runtime(Duration::from_secs(30), move |rt| {
            rt.block_on(async move {
                let q = Async::new(handle.queue(0).unwrap()).expect("register");
                // nothing to receive yet: the future is dropped by the timeout, having slept
                // (not spun) in the meantime
                let mut buf = [0u8; 2048];
                let cpu = thread_cpu();
                let timed_out = tokio::time::timeout(Duration::from_millis(200), q.recv(&mut buf))
                    .await
                    .is_err();
                let spent = thread_cpu() - cpu;
                assert!(
                    spent < Duration::from_millis(40),
                    "waiting 200 ms took {spent:?} of CPU"
                );
                let tx = UdpSocket::from_std(tx).unwrap();
                let rx = UdpSocket::from_std(rx).unwrap();
                let divert = async {
                    let mut seen = 0;
                    while seen < N {
                        seen += q
                            .recv_with(64, |_p, _a| Verdict::Accept)
                            .await
                            .expect("recv_with");
                    }
                    seen
                };
                let send = send_all(&tx, dst, N);
                let receive = count_arrivals(&rx, N);
                let (seen, (), got) = tokio::join!(divert, send, receive);
                (timed_out, got, seen)
            })
        });
        assert!(timed_out, "recv must wait while nothing is diverted");
        assert_eq!(seen, N, "the callback must see every packet");
        assert_eq!(got, N, "every packet must reach the receiver");
    }

    #[test]
    fn tasks_of_a_multi_thread_runtime_share_one_handle() {
        crate::common::require_root!();
        let pair = Pair::new();
        let handle = open_in(&pair, "outbound and udp.DstPort == 7608", Flags::NONE);
        let tx = udp_in(&pair.a, "0.0.0.0:0");
        let rx = udp_in(&pair.b, "0.0.0.0:7608");
        let dst = SocketAddr::from((pair.b_ip, 7608));
        const N: usize = 400;
        const TASKS: usize = 4;
        let (got, per_task) = on_runtime_with(2, Duration::from_secs(30), move |rt| {
            rt.block_on(async move {
                let h = Arc::new(Async::new(handle).expect("register"));
                let passed = Arc::new(AtomicUsize::new(0));
                let workers: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let (h, passed) = (h.clone(), passed.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            let mut mine = 0;
                            while passed.load(Ordering::SeqCst) < N {
                                // a bounded wait, to see the others' count once all is done
                                let wait = Duration::from_millis(200);
                                match tokio::time::timeout(wait, h.recv(&mut buf)).await {
                                    Ok(Ok((n, addr))) => {
                                        h.send(&buf[..n], &addr).expect("send");
                                        mine += 1;
                                        passed.fetch_add(1, Ordering::SeqCst);
                                    }
                                    Ok(Err(e)) => panic!("recv: {e}"),
                                    Err(_) => {}
                                }
                            }
                            mine
                        })
                    })
                    .collect();
                let tx = UdpSocket::from_std(tx).unwrap();
                let rx = UdpSocket::from_std(rx).unwrap();
                let send = send_all(&tx, dst, N);
                let receive = count_arrivals(&rx, N);
                let ((), got) = tokio::join!(send, receive);
                let mut per_task = Vec::new();
                for w in workers {
                    per_task.push(w.await.expect("worker task"));
                }
                (got, per_task)
            })
        });
        assert_eq!(
            got,
            N,
            "every packet must reach the receiver (its buffer overflowed {} times)",
            rcvbuf_errors(&pair.b)
        );
        assert_eq!(
            per_task.iter().sum::<usize>(),
            N,
            "each packet passed once: {per_task:?}"
        );
    }

    #[test]
    fn shutdown_wakes_a_waiting_recv_with_no_data() {
        crate::common::require_root!();
        let pair = Pair::new();
        let handle = open_in(&pair, "outbound and udp.DstPort == 7603", Flags::NONE);
        let (r, waited) = on_runtime(Duration::from_secs(10), move |rt| {
            rt.block_on(async move {
                let h = Async::new(handle).expect("register");
                let start = Instant::now();
                let recv = async {
                    let mut buf = [0u8; 2048];
                    h.recv(&mut buf).await
                };
                let stop = async {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    h.shutdown(Shutdown::Recv).unwrap();
                };
                let (r, ()) = tokio::join!(recv, stop);
                (r.map(|(n, _)| n), start.elapsed())
            })
        });
        assert!(matches!(r, Err(Error::NoData)), "got {r:?}");
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
            "recv returned after {waited:?}"
        );
    }

    #[test]
    fn reflect_socket_and_flow_events_arrive_in_tasks() {
        crate::common::require_root!();
        let ns = Netns::new("async_ev");
        let path = ns.path();
        let reflect = ReflectOptions::new("event == OPEN and priority == 321")
            .netns_path(&path)
            .open()
            .expect("open REFLECT");
        let flow = FlowOptions::new("udp and remotePort == 7607")
            .flags(Flags::SNIFF | Flags::RECV_ONLY)
            .netns_path(&path)
            .open()
            .expect("open FLOW");
        let socket = SocketOptions::new("event == BIND and localPort == 7604")
            .flags(Flags::SNIFF | Flags::RECV_ONLY)
            .netns_path(&path)
            .open()
            .expect("open SOCKET");
        // bind in the namespace from another thread once both tasks wait
        let binder = ns.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            let s = StdUdp::bind("127.0.0.1:7604").expect("bind 7604");
            let _peer = StdUdp::bind("127.0.0.1:7607").expect("bind 7607");
            s.send_to(b"flow", "127.0.0.1:7607").expect("send");
            s
        });
        let (opened, bound, flowed) = on_runtime(Duration::from_secs(15), move |rt| {
            rt.block_on(async move {
                let r = Async::new(reflect).expect("register REFLECT");
                let s = Async::new(socket).expect("register SOCKET");
                let f = Async::new(flow).expect("register FLOW");
                let open_one = async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    OpenOptions::new("udp.DstPort == 7605")
                        .priority(321)
                        .flags(Flags::SNIFF)
                        .netns_path(&path)
                        .open()
                        .expect("open NETWORK")
                };
                let (opened, bound, flowed, h) =
                    tokio::join!(r.recv(), s.recv(), f.recv(), open_one);
                drop(h);
                (opened, bound, flowed)
            })
        });
        let _bound_socket = binder.join().unwrap();
        let (_, a) = opened.expect("REFLECT event");
        assert_eq!(a.event, Event::ReflectOpen);
        let d = a.reflect_data().unwrap();
        assert_eq!((d.priority, d.process_id), (321, std::process::id()));
        let b = bound.expect("SOCKET event");
        assert_eq!(b.event, Event::SocketBind);
        let f = b.flow_data().unwrap();
        assert_eq!((f.local_port, f.process_id), (7604, std::process::id()));
        let e = flowed.expect("FLOW event");
        assert_eq!(e.event, Event::FlowEstablished);
        let f = e.flow_data().unwrap();
        assert_eq!((f.local_port, f.remote_port), (7604, 7607));
    }

    #[test]
    fn outside_a_runtime_registering_is_an_error_not_a_panic() {
        crate::common::require_root!();
        let pair = Pair::new();
        let handle = open_in(&pair, "udp.DstPort == 7606", Flags::SNIFF);
        match Async::new(handle) {
            Err(Error::Io(e)) => assert!(e.to_string().contains("tokio runtime"), "{e}"),
            other => panic!("expected an I/O error, got {:?}", other.map(|_| ())),
        }
    }
}
