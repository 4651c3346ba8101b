//! Benchmark of the event layers (used by `bench/events.sh`; root): inside the network
//! namespace given as the first argument,
//! 1. the cost of `connect()` (UDP, no handshake) and `bind()` per call with no handle and
//!    with a SOCKET handle whose filter matches nothing;
//! 2. how many FLOW and SOCKET events per second are delivered without loss for N TCP
//!    connections made as fast as possible.
//!
//! Usage: `events_bench NETNS_PATH [N]`.

use lindivert::core::{Event, Flags};
use lindivert::flow::FlowOptions;
use lindivert::socket::SocketOptions;
use lindivert::sys::netns::NetNs;
use lindivert::Error;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn per_call(n: u32, f: impl Fn(u32)) -> f64 {
    // warm up
    for i in 0..n / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn connect_udp(_: u32) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect("127.0.0.1:9").unwrap();
}

fn bind_udp(_: u32) {
    let _s = UdpSocket::bind("127.0.0.1:0").unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: events_bench NETNS_PATH [N]")
        .clone();
    let n: u32 = args.get(2).map_or(20000, |s| s.parse().unwrap());
    let ns = NetNs::open(&path).unwrap();
    ns.enter_current_thread().unwrap();

    // 1. syscall cost, alternating runs to share the machine's noise.
    let (mut c0, mut c1, mut b0, mut b1) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        c0.push(per_call(n, connect_udp));
        b0.push(per_call(n, bind_udp));
        let h = SocketOptions::new("remotePort == 1 and localPort == 1")
            .flags(Flags::SNIFF | Flags::RECV_ONLY)
            .netns_path(&path)
            .open()
            .unwrap();
        c1.push(per_call(n, connect_udp));
        b1.push(per_call(n, bind_udp));
        drop(h);
    }
    let (c0, c1, b0, b1) = (median(c0), median(c1), median(b0), median(b1));
    println!("socket+connect(UDP) ns/call: none {c0:.0}  SOCKET handle (no match) {c1:.0}  ratio {:.3}  added {:.0} ns", c1 / c0, c1 - c0);
    println!("socket+bind(UDP)    ns/call: none {b0:.0}  SOCKET handle (no match) {b1:.0}  ratio {:.3}  added {:.0} ns", b1 / b0, b1 - b0);

    // 2. event rate: N TCP connections as fast as possible.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = std::thread::spawn(move || {
        for _ in 0..n {
            let _ = l.accept();
        }
    });
    let flow = FlowOptions::new(&format!("tcp and outbound and remotePort == {port}"))
        .netns_path(&path)
        .open()
        .unwrap();
    let sock = SocketOptions::new(&format!("event == CONNECT and remotePort == {port}"))
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(&path)
        .open()
        .unwrap();
    let done = AtomicBool::new(false);
    let t = Instant::now();
    // Read concurrently, as a real consumer does.
    let fr = std::thread::scope(|s| {
        let fj = s.spawn(|| {
            let mut k = 0u32;
            let mut last = Instant::now();
            loop {
                match flow.recv_timeout(Some(Duration::from_millis(500))) {
                    Ok(a) if a.event == Event::FlowEstablished => {
                        k += 1;
                        last = Instant::now();
                    }
                    Ok(_) => {}
                    Err(Error::Timeout) if done.load(Ordering::Acquire) => break,
                    Err(Error::Timeout) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (k, last)
        });
        let sj = s.spawn(|| {
            let mut k = 0u32;
            let mut last = Instant::now();
            loop {
                match sock.recv_timeout(Some(Duration::from_millis(500))) {
                    Ok(_) => {
                        k += 1;
                        last = Instant::now();
                    }
                    Err(Error::Timeout) if done.load(Ordering::Acquire) => break,
                    Err(Error::Timeout) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (k, last)
        });
        for _ in 0..n {
            let _ = TcpStream::connect(("127.0.0.1", port)).unwrap();
        }
        let gen = t.elapsed();
        done.store(true, Ordering::Release);
        (fj.join().unwrap(), sj.join().unwrap(), gen)
    });
    acceptor.join().unwrap();
    let ((fk, flast), (sk, slast), gen) = fr;
    let rate = |k: u32, last: Instant| k as f64 / (last - t).as_secs_f64().max(1e-9);
    println!(
        "generated {n} TCP connections in {:.3}s ({:.0}/s)",
        gen.as_secs_f64(),
        n as f64 / gen.as_secs_f64()
    );
    println!(
        "FLOW   ESTABLISHED events: {fk}/{n} received, loss {:.2}%, {:.0} events/s",
        100.0 * (n - fk.min(n)) as f64 / n as f64,
        rate(fk, flast)
    );
    println!(
        "SOCKET CONNECT     events: {sk}/{n} received, loss {:.2}%, {:.0} events/s",
        100.0 * (n - sk.min(n)) as f64 / n as f64,
        rate(sk, slast)
    );
}
