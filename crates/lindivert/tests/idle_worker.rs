//! The handle's worker thread while the application waits in `recv` (or, with feature
//! `tokio`, a task awaits `async_io::Async::recv`): it sleeps instead of waking every few
//! milliseconds, and still takes over once the application stops receiving. Its own test
//! binary, its tests one at a time: the only handle (and worker thread) of the process.
//! Needs root; skipped (with a message) otherwise.

mod common;

use common::{require_root, Pair};
use lindivert::{Error, Flags, Handle, OpenOptions};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests count the wake-ups of every worker thread of the process: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Voluntary context switches of the worker thread(s) of this process so far.
fn worker_switches() -> u64 {
    let mut n = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != "lindivert-pump" {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

#[test]
fn worker_sleeps_while_the_application_waits_and_takes_over_after() {
    require_root!();
    worker_sleeps_while(|h| {
        let mut buf = [0u8; 2048];
        h.recv_timeout(&mut buf, Some(Duration::from_millis(1800)))
            .map(|_| ())
    });
}

#[cfg(feature = "tokio")]
#[test]
fn worker_sleeps_while_a_task_awaits_and_takes_over_after() {
    require_root!();
    worker_sleeps_while(|h| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let q = lindivert::async_io::Async::new(h.queue(0).unwrap())?;
            let mut buf = [0u8; 2048];
            // the timeout drops the waiting future: its wait ends as a returning recv's does
            match tokio::time::timeout(Duration::from_millis(1800), q.recv(&mut buf)).await {
                Ok(r) => r.map(|_| ()),
                Err(_) => Err(Error::Timeout),
            }
        })
    });
}

/// `wait` (on another thread) waits for 1.8 s on the handle and finds nothing; meanwhile
/// the worker must sleep, and once the wait is over take over again.
fn worker_sleeps_while(wait: impl FnOnce(&Handle) -> Result<(), Error> + Send) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pair = Pair::new();
    // SNIFF: while the application does not receive, the worker is what lets the
    // originals pass (it reads the queue and accepts them at once)
    let h = OpenOptions::new("outbound and udp.DstPort == 9320")
        .flags(Flags::SNIFF)
        .netns_path(pair.a.path())
        .open()
        .expect("open handle");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| wait(&h));
        std::thread::sleep(Duration::from_millis(500));
        let before = worker_switches();
        std::thread::sleep(Duration::from_secs(1));
        let woke = worker_switches() - before;
        // napping BUSY_NS (5 ms) at a time it woke ~200 times a second; treating the queue
        // as unattended, every 50 ms (20); now it sleeps until the wait ends (at most 1 s,
        // then a look and a nap: 1 or 2 in this second)
        assert!(woke <= 5, "the worker woke {woke} times in 1 s of waiting");
        assert!(matches!(waiter.join().unwrap(), Err(Error::Timeout)));
    });
    // the application has stopped receiving: the worker takes over and the originals pass
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = pair.b.spawn(move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 9320)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(2);
        let mut got = 0;
        while got < 10 && Instant::now() < end {
            if s.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        (got, Instant::now())
    });
    rx.recv().unwrap();
    let to = SocketAddr::from((pair.b_ip, 9320));
    let sent = pair.a.run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..10 {
            s.send_to(format!("late-{i}").as_bytes(), to).unwrap();
        }
        Instant::now()
    });
    let (got, done) = receiver.join().unwrap();
    assert_eq!(got, 10, "every original passes");
    let took = done.saturating_duration_since(sent);
    assert!(
        took < Duration::from_millis(60),
        "the originals took {took:?} to pass without a receiving application"
    );
}
