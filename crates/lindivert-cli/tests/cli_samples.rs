//! The `lindivert webfilter|streamdump` samples on real TCP connections, in throw-away
//! network namespaces joined by a veth pair (client and lindivert in `a`, servers in `b`).
//! Needs root (skipped otherwise).

mod cli_common;
#[path = "../../lindivert/tests/common/mod.rs"]
mod common;

use cli_common::BIN;
use common::{require_root, Netns, Pair};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A lindivert child process, killed (by its pid) if the test fails before it ends.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        Proc(Some(cli_common::spawn(args)))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Wait until a lindivert table exists in `ns` (the command's handle is open).
    fn wait_open(&mut self, ns: &Netns) {
        cli_common::wait_open(ns, self.child())
    }

    /// SIGTERM, then the output (the command must exit within 10 s).
    fn terminate(mut self) -> Output {
        cli_common::terminate(self.0.take().unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP server thread inside a namespace: accepts connections one at a time and runs
/// `handle` on each; returns what `handle` returned, in order.
struct Server<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<T>>>,
}

impl<T: Send + 'static> Server<T> {
    fn start(
        ns: &Netns,
        at: SocketAddr,
        handle: impl Fn(TcpStream, SocketAddr) -> T + Send + 'static,
    ) -> Server<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let l = TcpListener::bind(at).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let mut got = Vec::new();
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, peer)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        got.push(handle(s, peer));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            got
        });
        rx.recv().unwrap();
        Server {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nreal content";

/// What the HTTP server saw on one connection: the request, or the error of reading it.
fn http_handle(mut s: TcpStream, _: SocketAddr) -> Result<Vec<u8>, ErrorKind> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof),
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.kind()),
        }
    }
    s.write_all(RESPONSE).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    // wait for the client to close
    let _ = s.read(&mut buf);
    Ok(req)
}

/// One HTTP request from a fresh connection; everything read until EOF, and the error that
/// ended the read, if any.
fn http_get(to: SocketAddr, request: &str) -> (Vec<u8>, Option<ErrorKind>) {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

fn block_page() -> String {
    let body = "<!doctype html>\n\
        <html><head><title>BLOCKED!</title></head>\n\
        <body><h1>BLOCKED!</h1><hr><p>This URL has been blocked!</p>\
        <p><small>lindivert webfilter</small></p></body></html>\n";
    format!(
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/html\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn webfilter_blocks_blacklisted_urls_and_passes_the_rest() {
    require_root!();
    let pair = Pair::new();
    let list = TempFile(
        std::env::temp_dir().join(format!("lindivert_blacklist_{}.txt", std::process::id())),
    );
    std::fs::write(
        &list.0,
        "# test blacklist\nblocked.example/private\n  other.test  \n",
    )
    .unwrap();
    let server = Server::start(&pair.b, SocketAddr::from((pair.b_ip, 80)), http_handle);
    let server6 = Server::start(&pair.b, SocketAddr::from((pair.b_ip6, 80)), http_handle);
    let mut wf = Proc::spawn(&[
        "webfilter",
        list.0.to_str().unwrap(),
        "--netns",
        &pair.a.name,
    ]);
    wf.wait_open(&pair.a);
    let to = SocketAddr::from((pair.b_ip, 80));
    let requests = [
        "GET /private/x HTTP/1.1\r\nHost: blocked.example\r\nAccept: */*\r\n\r\n",
        "GET /public HTTP/1.1\r\nHost: blocked.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: www.other.test\r\n\r\n",
        "GET /private/x HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
    ];
    let to6 = SocketAddr::from((pair.b_ip6, 80));
    let (replies, reply6) = pair.a.run(move || {
        let v4: Vec<_> = requests.iter().map(|r| http_get(to, r)).collect();
        let v6 = http_get(to6, "GET /v6 HTTP/1.1\r\nHost: Other.Test.\r\n\r\n");
        (v4, v6)
    });
    // give the server a moment to see the last close, then stop it
    std::thread::sleep(Duration::from_millis(200));
    let seen = server.finish();
    let seen6 = server6.finish();
    let out = wf.terminate();
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        text,
        "ADD blocked.example/private\n\
         ADD other.test/\n\
         OPENED WinDivert\n\
         URL blocked.example/private/x: BLOCKED!\n\
         URL blocked.example/public: allowed\n\
         URL www.other.test/: BLOCKED!\n\
         URL allowed.example/private/x: allowed\n\
         URL other.test/v6: BLOCKED!\n",
        "stderr: {err}"
    );
    // the client: the block page, then EOF (the injected FIN; the server's reset to the
    // client's ACK of the page comes a round trip later)
    let page = block_page();
    for i in [0, 2] {
        let (body, e) = &replies[i];
        assert_eq!(String::from_utf8_lossy(body), page, "reply {i}");
        assert_eq!(*e, None, "reply {i}: the FIN ends the page");
    }
    assert_eq!(
        (String::from_utf8_lossy(&reply6.0).into_owned(), reply6.1),
        (page.clone(), None)
    );
    for i in [1, 3] {
        assert_eq!(replies[i], (RESPONSE.to_vec(), None), "reply {i}");
    }
    // the server: a reset instead of the blocked requests, the allowed ones unchanged
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], Err(ErrorKind::ConnectionReset));
    assert_eq!(seen[1], Ok(requests[1].as_bytes().to_vec()));
    assert_eq!(seen[2], Err(ErrorKind::ConnectionReset));
    assert_eq!(seen[3], Ok(requests[3].as_bytes().to_vec()));
    assert_eq!(seen6, vec![Err(ErrorKind::ConnectionReset)]);
    assert!(pair
        .a
        .tables()
        .iter()
        .all(|t| !t.name.starts_with("lindivert_")));
}

/// A TCP echo server's connection: echo until EOF; returns the peer.
fn echo_handle(mut s: TcpStream, peer: SocketAddr) -> SocketAddr {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    peer
}

/// Connect to `to`, send each line and read its echo; returns the client's local address
/// and the echoes.
fn echo_lines(to: SocketAddr, lines: &[String]) -> (SocketAddr, Vec<String>) {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    let local = s.local_addr().unwrap();
    let mut echoes = Vec::new();
    for l in lines {
        s.write_all(l.as_bytes()).unwrap();
        let mut back = vec![0u8; l.len()];
        s.read_exact(&mut back).unwrap();
        echoes.push(String::from_utf8(back).unwrap());
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    (local, echoes)
}

fn expected_dump(port: u16, lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        let shown: String = l
            .bytes()
            .take(65)
            .map(|b| if b == b'\n' { '.' } else { b as char })
            .collect();
        let more = if l.len() > 65 { "..." } else { "" };
        let line = format!("[{port:04}] {shown}{more}\n");
        // once client -> server, once back
        s.push_str(&line);
        s.push_str(&line);
    }
    s
}

fn test_lines() -> Vec<String> {
    vec![
        "hello\n".to_string(),
        "lindivert streamdump\n".to_string(),
        format!("{}\n", "0123456789".repeat(8)),
    ]
}

#[test]
fn streamdump_proxies_and_prints_a_remote_stream() {
    require_root!();
    let pair = Pair::new();
    let port = 7710;
    let server = Server::start(&pair.b, SocketAddr::from((pair.b_ip, port)), echo_handle);
    let mut sd = Proc::spawn(&["streamdump", &port.to_string(), "--netns", &pair.a.name]);
    sd.wait_open(&pair.a);
    let lines = test_lines();
    let to = SocketAddr::from((pair.b_ip, port));
    let l2 = lines.clone();
    let (local, echoes) = pair.a.run(move || echo_lines(to, &l2));
    assert_eq!(echoes, lines);
    // another port is not touched
    let other = Server::start(
        &pair.b,
        SocketAddr::from((pair.b_ip, port + 1)),
        echo_handle,
    );
    let one = vec!["direct\n".to_string()];
    let to2 = SocketAddr::from((pair.b_ip, port + 1));
    let o2 = one.clone();
    let (local2, echoes2) = pair.a.run(move || echo_lines(to2, &o2));
    assert_eq!(echoes2, one);
    std::thread::sleep(Duration::from_millis(300));
    let peers = server.finish();
    let peers2 = other.finish();
    let out = sd.terminate();
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text, expected_dump(local.port(), &lines), "stderr: {err}");
    // the server's client was the proxy (same host, another port)
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].ip(), IpAddr::from(pair.a_ip));
    assert_ne!(peers[0].port(), local.port());
    assert_eq!(peers2, vec![local2]);
}

#[test]
fn streamdump_proxies_a_loopback_stream() {
    require_root!();
    let ns = Netns::new("sdlo");
    let port = 7720;
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Server::start(&ns, at, echo_handle);
    let mut sd = Proc::spawn(&[
        "streamdump",
        &port.to_string(),
        "--proxy-port",
        "35000",
        "--netns",
        &ns.name,
    ]);
    sd.wait_open(&ns);
    let lines = test_lines();
    let l2 = lines.clone();
    let (local, echoes) = ns.run(move || echo_lines(at, &l2));
    assert_eq!(echoes, lines);
    std::thread::sleep(Duration::from_millis(300));
    let peers = server.finish();
    let out = sd.terminate();
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text, expected_dump(local.port(), &lines), "stderr: {err}");
    assert_eq!(peers.len(), 1);
    assert_ne!(peers[0].port(), local.port());
}

#[test]
fn sample_usage_errors() {
    for (args, msg) in [
        (&["webfilter"][..], "missing BLACKLIST"),
        (&["streamdump"][..], "missing PORT"),
        (&["streamdump", "0"][..], "invalid port"),
        (
            &["streamdump", "80", "--proxy-port", "80"][..],
            "must differ",
        ),
        (
            &["streamdump", "80", "--proxy-port", "70000"][..],
            "not a port",
        ),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(msg), "{args:?}: {e}");
    }
    let out = Command::new(BIN)
        .args(["webfilter", "/nonexistent/list.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("failed to open blacklist file \"/nonexistent/list.txt\""));
}
