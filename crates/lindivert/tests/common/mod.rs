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

/// A NETWORK handle with `filter` and `flags`, opened in `pair.a`.
pub fn open_in(pair: &Pair, filter: &str, flags: lindivert::Flags) -> lindivert::Handle {
    lindivert::OpenOptions::new(filter)
        .flags(flags)
        .netns_path(pair.a.path())
        .open()
        .expect("open handle")
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

/// The numbers of nfnetlink `queue`'s line in `/proc/net/netfilter/nfnetlink_queue`, read
/// inside `pair.a`: queue, portid, queue_total, copy_mode, copy_range, queue_dropped,
/// user_dropped, id_sequence (all 0 if the queue is not bound).
fn queue_row(pair: &Pair, queue: u16) -> [u64; 8] {
    pair.a.run(move || {
        let s = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
            .unwrap_or_default();
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|v| v.len() >= 8 && v[0].parse::<u16>().ok() == Some(queue))
            .map(|v| std::array::from_fn(|i| v[i].parse().unwrap()))
            .unwrap_or([0; 8])
    })
}

/// Packets the kernel has queued to nfnetlink `queue` so far (its last packet id), read
/// inside `pair.a`.
pub fn kernel_queued(pair: &Pair, queue: u16) -> u64 {
    queue_row(pair, queue)[7]
}

/// Packets in nfnetlink `queue` right now and packets the kernel dropped because the queue
/// was full (`queue_total`, `queue_dropped`), read inside `pair.a`.
pub fn kernel_queue_now(pair: &Pair, queue: u16) -> (u64, u64) {
    let r = queue_row(pair, queue);
    (r[2], r[5])
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

/// The BPF program and link ids a process holds descriptors of (`prog_id:` and `link_id:`
/// in `/proc/PID/fdinfo/*`).
pub fn fdinfo_bpf_ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let s = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        for l in s.lines() {
            if let Some(v) = l.strip_prefix("prog_id:") {
                progs.push(v.trim().parse().unwrap());
            } else if let Some(v) = l.strip_prefix("link_id:") {
                links.push(v.trim().parse().unwrap());
            }
        }
    }
    (progs, links)
}

/// `1,2,3` (or the empty string) as numbers.
pub fn parse_ids(v: &str) -> Vec<u32> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Comma-separated ids (the inverse of [`parse_ids`]).
pub fn join_ids(v: &[u32]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A child process a test started; SIGKILLed (by its pid) and reaped on drop if it is
/// still running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Re-run this test binary as a helper: only the (ignored) test `name`, with `env_key` =
/// `env_val`, stdin and stdout piped. Waits for the helper's `READY ...` line and returns the
/// child and the text after `READY `. The helper should exit when its stdin closes.
pub fn start_helper(name: &str, env_key: &str, env_val: &str) -> (KillOnDrop, String) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                name,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env_key, env_val)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    // The harness prints "test NAME ... " on the same line.
    let ready = loop {
        let l = lines
            .next()
            .expect("the helper exited before READY")
            .unwrap();
        if let Some(i) = l.find("READY ") {
            break l[i + 6..].to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, ready)
}

/// `kill -9 PID` of the child `c`, then reap it; asserts it died of SIGKILL.
pub fn kill_9(c: &mut KillOnDrop) {
    // Not reaped yet, so the pid cannot have been reused.
    let pid = c.0.id().to_string();
    let st = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(st.success(), "kill -9 {pid}: {st}");
    let st = c.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(9),
        "{st}"
    );
}

/// Wait up to `limit` until none of `progs` / `links` exists in the kernel; the time it
/// took, or a panic naming what is left.
pub fn wait_bpf_ids_gone(progs: &[u32], links: &[u32], since: std::time::Instant, limit: Duration) {
    loop {
        let (lp, ll) = (
            lindivert::sys::cgroup::prog_ids().unwrap(),
            lindivert::sys::cgroup::link_ids().unwrap(),
        );
        let left_p: Vec<u32> = progs.iter().copied().filter(|p| lp.contains(p)).collect();
        let left_l: Vec<u32> = links.iter().copied().filter(|l| ll.contains(l)).collect();
        if left_p.is_empty() && left_l.is_empty() {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "programs {left_p:?} / links {left_l:?} still present {:?} after kill -9",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP server on `port` in `pair.b` that reads one connection to its end; returns a
/// function that connects from `pair.a`, writes `data`, closes, and returns what the server
/// read. Divert between the two calls.
#[allow(dead_code)]
pub fn tcp_server_in_b(pair: &Pair, port: u16) -> impl FnOnce(Vec<u8>) -> Vec<u8> + '_ {
    use std::io::{Read, Write};
    let server = pair.b.spawn(move || {
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut total = Vec::new();
        s.read_to_end(&mut total).unwrap();
        total
    });
    std::thread::sleep(Duration::from_millis(100));
    let b_ip = pair.b_ip;
    move |data: Vec<u8>| {
        pair.a.run(move || {
            let mut s = std::net::TcpStream::connect((b_ip, port)).unwrap();
            s.write_all(&data).unwrap();
        });
        server.join().unwrap()
    }
}
