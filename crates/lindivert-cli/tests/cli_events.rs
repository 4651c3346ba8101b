//! CLI tests of the event samples (root required): `ctl list` and `socketdump`, each in a
//! throw-away network namespace.

use lindivert::core::{Event, Flags};
use lindivert::reflect::ReflectOptions;
use lindivert::socket::SocketOptions;
use lindivert::sys::netns::NetNs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static N: AtomicU32 = AtomicU32::new(0);

struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "ldc_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let ns = Ns(name);
        assert!(Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        ns
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lindivert")
}

#[test]
fn ctl_list_shows_open_handles() {
    let ns = Ns::new();
    let _h = SocketOptions::new("remotePort == 443 and tcp")
        .priority(12)
        .flags(Flags::SNIFF | Flags::RECV_ONLY)
        .netns_path(ns.path())
        .open()
        .unwrap();
    let out = Command::new(bin())
        .args(["ctl", "list", "--netns", &ns.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let l = lines[0];
    assert!(l.starts_with("OPEN time="), "{l}");
    assert!(l.contains(&format!(" pid={} ", std::process::id())), "{l}");
    assert!(
        l.contains(" layer=SOCKET flags=SNIFF|RECV_ONLY priority=12 "),
        "{l}"
    );
    assert!(l.contains("filter=\"") && l.contains("443"), "{l}");
    // kill refuses a process without a handle.
    let out = Command::new(bin())
        .args(["ctl", "kill", "1", "--netns", &ns.0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // An empty namespace lists nothing.
    drop(_h);
    let out = Command::new(bin())
        .args(["ctl", "list", "--netns", &ns.0])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn socketdump_prints_bind_with_pid() {
    let ns = Ns::new();
    let watch = ReflectOptions::new("layer == SOCKET")
        .netns_path(ns.path())
        .open()
        .unwrap();
    let mut child = Command::new(bin())
        .args([
            "socketdump",
            "localPort == 7201",
            "--count",
            "1",
            "--netns",
            &ns.0,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its handle is open (REFLECT sees it).
    let (_, a) = watch.recv_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(a.event, Event::ReflectOpen);
    assert_eq!(a.reflect_data().unwrap().process_id, child.id());
    let nsh = NetNs::named(&ns.0).unwrap();
    nsh.run(|| {
        let _s = std::net::UdpSocket::bind("127.0.0.1:7201").unwrap();
    })
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        line.starts_with(&format!("BIND pid={} program=", std::process::id())),
        "{line}"
    );
    assert!(
        line.contains("protocol=UDP local=[127.0.0.1]:7201"),
        "{line}"
    );
    // Its handle is closed again.
    let (_, c) = watch.recv_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(c.event, Event::ReflectClose);
}

/// The client of `flowtrack_prints_flows_with_pid`: connect, print the local port, send,
/// close, then stay alive (so `/proc/PID/comm` still names it) until stdin closes.
const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
c.sendall(b"hi"); c.close()
sys.stdin.read()
"#;

/// `KEY=VALUE` fields of a `flowtrack --lines` line after the event name (`flow=` spans
/// three words: `LOCAL ----> REMOTE`).
fn flow_fields(line: &str) -> (String, Vec<(String, String)>) {
    let (event, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (before, after) = rest
        .split_once(" flow=")
        .unwrap_or_else(|| panic!("no flow= in {line:?}"));
    let w: Vec<&str> = after.split(' ').collect();
    assert!(w.len() >= 3, "{line:?}");
    let mut f: Vec<(String, String)> = before
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    f.push(("flow".into(), w[..3].join(" ")));
    for kv in &w[3..] {
        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        f.push((k.to_string(), v.to_string()));
    }
    (event.to_string(), f)
}

/// A child this test started: SIGKILLed (by its pid) and reaped on drop if still running.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[test]
fn flowtrack_prints_flows_with_pid() {
    let ns = Ns::new();
    let watch = ReflectOptions::new("layer == FLOW")
        .netns_path(ns.path())
        .open()
        .unwrap();
    let mut child = Reap(
        Command::new(bin())
            .args([
                "flowtrack",
                "--lines",
                "--count",
                "4",
                "--netns",
                &ns.0,
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait until its handle is open (REFLECT sees it).
    let (_, a) = watch.recv_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(a.event, Event::ReflectOpen);
    assert_eq!(a.reflect_data().unwrap().process_id, child.0.id());
    // The server: a thread of this process in the namespace (its flow's pid is ours).
    let nsh = NetNs::named(&ns.0).unwrap();
    let listener = nsh
        .run(|| std::net::TcpListener::bind("127.0.0.1:7202").unwrap())
        .unwrap();
    // The client: python3 in the namespace (`ip netns exec` execs, so the pid is python's).
    listener.set_nonblocking(true).unwrap();
    // Its stdin is a pipe: if this test fails, the pipe closes and python exits.
    let mut py = Reap(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "python3", "-c", TCP_CLIENT, "7202"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cpid = py.0.id();
    let t0 = std::time::Instant::now();
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(t0.elapsed() < Duration::from_secs(5), "no connection");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut got).unwrap();
    assert_eq!(got, b"hi");
    drop(s);
    drop(listener);
    let mut cport = String::new();
    BufReader::new(py.0.stdout.take().unwrap())
        .read_line(&mut cport)
        .unwrap();
    let cport: u16 = cport.trim().parse().unwrap();
    // python is still alive (reading stdin): its name as flowtrack sees it.
    let py_comm = std::fs::read_to_string(format!("/proc/{cpid}/comm")).unwrap();
    assert!(py_comm.starts_with("python"), "{py_comm}");
    // flowtrack exits after 4 lines.
    let t0 = std::time::Instant::now();
    while child.0.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = child.0.try_wait().unwrap().is_some();
    if !exited {
        let _ = child.0.kill();
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut text).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    let status = child.0.wait().unwrap();
    drop(py.0.stdin.take());
    assert!(py.0.wait().unwrap().success());
    eprintln!("{text}");
    assert!(
        exited && status.success(),
        "flowtrack did not exit by itself within 5 s ({status}); stdout: {text} stderr: {err}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let me = std::process::id();
    let my_comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let client_flow = format!("127.0.0.1:{cport} ----> 127.0.0.1:7202");
    let server_flow = format!("127.0.0.1:7202 <---- 127.0.0.1:{cport}");
    let expect = |event: &str, pid: u32, program: &str, flow: &str| -> (usize, String, String) {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("{event} ")) && l.contains(flow))
            .unwrap_or_else(|| panic!("no {event} {flow} in:\n{text}"));
        let (ev, f) = flow_fields(lines[i]);
        assert_eq!(ev, event);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["pid", "program", "protocol", "flow", "endpoint", "parent"],
            "{}",
            lines[i]
        );
        assert_eq!(f[0].1, pid.to_string(), "{}", lines[i]);
        assert_eq!(f[1].1, program, "{}", lines[i]);
        assert_eq!(f[2].1, "TCP", "{}", lines[i]);
        assert_eq!(f[3].1, flow, "{}", lines[i]);
        assert_ne!(f[4].1, "0", "{}", lines[i]);
        (i, f[4].1.clone(), f[5].1.clone())
    };
    let (ce, c_ep, c_parent) = expect("ESTABLISHED", cpid, py_comm.trim_end(), &client_flow);
    let (cd, c_ep2, c_parent2) = expect("DELETED", cpid, py_comm.trim_end(), &client_flow);
    let (se, s_ep, s_parent) = expect("ESTABLISHED", me, my_comm.trim_end(), &server_flow);
    let (sd, s_ep2, s_parent2) = expect("DELETED", me, my_comm.trim_end(), &server_flow);
    assert!(ce < cd && se < sd, "{text}");
    assert_eq!((&c_ep, &c_parent), (&c_ep2, &c_parent2), "{text}");
    assert_eq!((&s_ep, &s_parent), (&s_ep2, &s_parent2), "{text}");
    assert_ne!(c_ep, s_ep, "{text}");
    // Outbound: no parent; inbound: the listener.
    assert_eq!(c_parent, "0", "{text}");
    assert_ne!(s_parent, "0", "{text}");
    assert_ne!(cpid, me);
    let (_, c) = watch.recv_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(c.event, Event::ReflectClose);
}
