//! Runs the README's examples against real traffic in a throw-away namespace: the Rust
//! examples (`examples/uppercase.rs`, and with feature `tokio` `examples/async_uppercase.rs`,
//! built by `cargo test`) and the Python one
//! (`examples/python/uppercase.py`, pydivert on liblindivert.so).
//!
//! The Python part needs `LINDIVERT_PYTHON` (a python with pydivert 4.0.1 installed, which
//! `scripts/test.sh` prepares); without it, it says so and is not counted, unless
//! `LINDIVERT_REQUIRE_ALL=1` (set by `scripts/test.sh`), which turns that into a failure.
mod common;

use common::Netns;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn profile_dir() -> PathBuf {
    // target/<profile>/deps/readme_examples-HASH → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("profile dir")
        .to_path_buf()
}

/// Start `cmd` inside `ns`, wait until it prints `ready`.
fn start_ready(ns: &Netns, cmd: &[&str], envs: &[(&str, String)]) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name]).args(cmd);
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn example");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready", "example did not start: {line:?}");
    child
}

/// Send `hello` over UDP inside `ns` to 127.0.0.1:port and return what arrives.
fn exchange(ns: &Netns, port: u16) -> Vec<u8> {
    ns.run(move || {
        let rx = UdpSocket::bind(("127.0.0.1", port)).expect("bind receiver");
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello lindivert", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rx.recv_from(&mut buf).expect("datagram delivered");
        buf[..n].to_vec()
    })
}

fn finish(mut child: Child) {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "example exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("example did not exit after handling its packet");
}

#[test]
fn rust_example_uppercases_udp_payload() {
    assert!(common::privileged(), "this test needs root and iproute2");
    let bin = profile_dir().join("examples").join("uppercase");
    assert!(bin.exists(), "{} not built", bin.display());
    let ns = Netns::new("readme_rs");
    let child = start_ready(&ns, &[bin.to_str().unwrap(), "7777", "1"], &[]);
    assert_eq!(exchange(&ns, 7777), b"HELLO LINDIVERT");
    finish(child);
    assert!(ns.tables().is_empty(), "rules left behind");
}

#[cfg(feature = "tokio")]
#[test]
fn rust_tokio_example_uppercases_udp_payload() {
    assert!(common::privileged(), "this test needs root and iproute2");
    let bin = profile_dir().join("examples").join("async_uppercase");
    assert!(bin.exists(), "{} not built", bin.display());
    let ns = Netns::new("readme_rs_async");
    let child = start_ready(&ns, &[bin.to_str().unwrap(), "7780", "1"], &[]);
    assert_eq!(exchange(&ns, 7780), b"HELLO LINDIVERT");
    finish(child);
    assert!(ns.tables().is_empty(), "rules left behind");
}

#[test]
fn python_example_uppercases_udp_payload() {
    assert!(common::privileged(), "this test needs root and iproute2");
    let Ok(python) = std::env::var("LINDIVERT_PYTHON") else {
        assert!(
            std::env::var("LINDIVERT_REQUIRE_ALL").is_err(),
            "LINDIVERT_PYTHON is not set (scripts/test.sh sets it)"
        );
        eprintln!("python example not run: LINDIVERT_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let lib = profile_dir().join("liblindivert.so");
    assert!(lib.exists(), "{} not built", lib.display());
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/uppercase.py");
    let ns = Netns::new("readme_py");
    let child = start_ready(
        &ns,
        &[&python, script.to_str().unwrap(), "7778", "1"],
        &[("PYDIVERT_EBPFDIVERT_LIB", lib.display().to_string())],
    );
    assert_eq!(exchange(&ns, 7778), b"HELLO LINDIVERT");
    finish(child);
    assert!(ns.tables().is_empty(), "rules left behind");
}

#[test]
fn c_example_uppercases_udp_payload() {
    assert!(common::privileged(), "this test needs root and iproute2");
    let dir = profile_dir();
    let lib = dir.join("liblindivert.so");
    assert!(lib.exists(), "{} not built", lib.display());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = dir.join("readme-uppercase-c");
    let out = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-o"])
        .arg(&bin)
        .arg(root.join("examples/c/uppercase.c"))
        .arg("-I")
        .arg(root.join("crates/lindivert-ffi/include"))
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-llindivert")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = Netns::new("readme_c");
    let child = start_ready(&ns, &[bin.to_str().unwrap(), "7779", "1"], &[]);
    assert_eq!(exchange(&ns, 7779), b"HELLO LINDIVERT");
    finish(child);
    assert!(ns.tables().is_empty(), "rules left behind");
}
