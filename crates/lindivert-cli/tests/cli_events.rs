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
