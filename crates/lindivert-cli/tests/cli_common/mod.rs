//! Running the `lindivert` binary in the CLI tests: start it, wait until its handle is
//! open, stop it with SIGTERM and collect its output.
#![allow(dead_code)]

use crate::common::Netns;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lindivert");

/// Start `lindivert ARGS...` with stdout and stderr piped.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lindivert")
}

/// Wait until a lindivert table exists in `ns` (the command's handle is open).
pub fn wait_open(ns: &Netns, child: &mut Child) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if ns.tables().iter().any(|t| t.name.starts_with("lindivert_")) {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut e = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut e);
            panic!("lindivert exited early ({st}): {e}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the handle did not open within 10 s");
}

/// SIGTERM, then the output (the command must exit within 10 s).
pub fn terminate(child: Child) -> Output {
    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    wait_output(child, Duration::from_secs(10))
}

/// The output of `child` once it has exited; killed (and the test failed) after `limit`.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "lindivert did not exit in time; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
