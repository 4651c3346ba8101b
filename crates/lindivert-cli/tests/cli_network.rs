//! The `lindivert netdump|netfilter|passthru` commands on real traffic, in throw-away network
//! namespaces joined by a veth pair. Needs root (skipped otherwise) and, for the pcapng
//! check, `tshark`.

mod cli_common;
#[path = "../../lindivert/tests/common/mod.rs"]
mod common;

use cli_common::{spawn, terminate, wait_open, wait_output, BIN};
use common::{require_root, udp_exchange, Echo, Netns, Pair};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn ns_cmd(ns: &Netns, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn netdump_prints_real_traffic_and_writes_pcapng() {
    require_root!();
    let pair = Pair::new();
    let file =
        std::env::temp_dir().join(format!("lindivert_netdump_{}.pcapng", std::process::id()));
    let file_s = file.to_str().unwrap().to_string();
    let mut child = spawn(&[
        "netdump",
        "icmp",
        "--netns",
        &pair.a.name,
        "-w",
        &file_s,
        "--count",
        "2",
    ]);
    wait_open(&pair.a, &mut child);
    let ping = ns_cmd(
        &pair.a,
        &["ping", "-c", "1", "-W", "2", &pair.b_ip.to_string()],
    );
    assert!(
        ping.status.success(),
        "a SNIFF handle must not block traffic"
    );
    let out = wait_output(child, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "");
    assert!(
        lines[1].starts_with("Packet [Timestamp=")
            && lines[1].contains(", Direction=outbound IfIdx=")
            && lines[1].contains(" SubIfIdx=0 Loopback=0 Hash=0x"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("IPv4 [Version=4 HdrLength=5 TOS=0 Length=84 Id=0x")
            && lines[2].ends_with(&format!("SrcAddr={} DstAddr={}]", pair.a_ip, pair.b_ip)),
        "{text}"
    );
    assert!(
        lines[3].starts_with("ICMP [Type=8 Code=0 Checksum=0x"),
        "{text}"
    );
    assert!(
        lines[5].starts_with("\t45") && lines[5].len() == 41,
        "{text}"
    );
    assert!(text.contains("Direction=inbound"), "{text}");
    assert!(text.contains("ICMP [Type=0 Code=0"), "{text}");

    let tshark = Command::new("tshark")
        .args([
            "-r",
            &file_s,
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "icmp.type",
        ])
        .output();
    let tshark = match tshark {
        Ok(o) => o,
        Err(e) => panic!(
            "tshark is needed to check the pcapng file ({e}); install it (Debian/Ubuntu: \
             apt-get install tshark; .ci/run does)"
        ),
    };
    let _ = std::fs::remove_file(&file);
    assert!(
        tshark.status.success(),
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let t = String::from_utf8(tshark.stdout).unwrap();
    assert_eq!(
        t.lines().collect::<Vec<_>>(),
        vec![
            format!("{}\t8", pair.a_ip).as_str(),
            format!("{}\t0", pair.b_ip).as_str()
        ],
        "tshark read: {t}"
    );
}

#[test]
fn netfilter_refuses_tcp_with_rst_and_udp_with_icmp() {
    require_root!();
    let pair = Pair::new();
    let mut child = spawn(&[
        "netfilter",
        "tcp.DstPort == 9100 or udp.DstPort == 9101 or udp.DstPort == 9102",
        "--netns",
        &pair.a.name,
    ]);
    wait_open(&pair.a, &mut child);
    let (b4, b6) = (pair.b_ip, pair.b_ip6);
    let (tcp, udp, udp6) = pair.a.run(move || {
        let tcp = std::net::TcpStream::connect_timeout(
            &SocketAddr::from((b4, 9100)),
            Duration::from_secs(3),
        )
        .map(|_| ())
        .map_err(|e| e.kind());
        let udp_refused = |bind: &str, to: SocketAddr| {
            let u = std::net::UdpSocket::bind(bind).unwrap();
            u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            u.connect(to).unwrap();
            u.send(b"x").unwrap();
            u.recv(&mut [0u8; 16]).map(|_| ()).map_err(|e| e.kind())
        };
        (
            tcp,
            udp_refused("0.0.0.0:0", SocketAddr::from((b4, 9101))),
            udp_refused("[::]:0", SocketAddr::from((b6, 9102))),
        )
    });
    let out = terminate(child);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tcp, Err(std::io::ErrorKind::ConnectionRefused), "{text}");
    assert_eq!(udp, Err(std::io::ErrorKind::ConnectionRefused), "{text}");
    assert_eq!(udp6, Err(std::io::ErrorKind::ConnectionRefused), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "BLOCK ip.SrcAddr={} ip.DstAddr={} tcp.SrcPort=",
            pair.a_ip, pair.b_ip
        )) && lines[0].ends_with("tcp.DstPort=9100 tcp.Flags=[SYN] "),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("BLOCK ip.SrcAddr=") && l.ends_with("udp.DstPort=9101 ")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("ip.DstAddr={} ", pair.b_ip6))
                && l.ends_with("udp.DstPort=9102 ")),
        "{text}"
    );
}

#[test]
fn passthru_keeps_traffic_flowing_and_counts() {
    require_root!();
    // in place (recv_with); copied out and back (--copy) with busy-poll and the queues
    // spread by CPU; with 3 ms of work per packet (--work-us: each of the 20 sequential
    // exchanges crosses the divert twice)
    for (port, extra, at_least) in [
        (7600u16, &[][..], Duration::ZERO),
        (
            7601,
            &["--copy", "--busy-poll", "200", "--spread", "cpu"][..],
            Duration::ZERO,
        ),
        (7602, &["--work-us", "3000"][..], Duration::from_millis(120)),
    ] {
        let pair = Pair::new();
        let _echo = Echo::start(&pair.b, port);
        let mut args = vec![
            "passthru",
            "udp",
            "--threads",
            "2",
            "--batch",
            "16",
            "--netns",
            &pair.a.name,
        ];
        args.extend_from_slice(extra);
        let mut child = spawn(&args);
        wait_open(&pair.a, &mut child);
        let payloads: Vec<Vec<u8>> = (0..20).map(|i| format!("p{i}").into_bytes()).collect();
        let t0 = Instant::now();
        let replies = udp_exchange(
            &pair.a,
            SocketAddr::from((pair.b_ip, port)),
            payloads.clone(),
            Duration::from_secs(2),
        );
        let took = t0.elapsed();
        assert_eq!(replies, payloads, "{extra:?}");
        assert!(took >= at_least, "{extra:?}: 20 exchanges in {took:?}");
        let out = terminate(child);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // 20 requests out + 20 replies in
        let n: u64 = text
            .strip_prefix("passthru: ")
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output: {text}"));
        assert_eq!(n, 40, "{extra:?}: {text}");
        assert!(text.contains(" packets, "), "{text}");
        // the handle is gone after the graceful exit
        assert!(pair
            .a
            .tables()
            .iter()
            .all(|t| !t.name.starts_with("lindivert_")));
    }
}

#[test]
fn passthru_duration_and_bad_filter() {
    require_root!();
    let pair = Pair::new();
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args([
            "passthru",
            "true",
            "--duration",
            "0.5",
            "--netns",
            &pair.a.name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("passthru: "));

    let out = Command::new(BIN)
        .args(["netdump", "tcp.Dstport == 80", "--netns", &pair.a.name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid filter") && err.contains("\n  ^"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["netdump", "true", "--netns", "no_such_namespace_k2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no network namespace named"));

    // out-of-range options: usage error (exit 2) naming the bound
    for (opt, value, says) in [
        ("--busy-poll", "20000", "--busy-poll 20000: at most 10000"),
        ("--work-us", "2000000", "--work-us 2000000: at most 1000000"),
        (
            "--spread",
            "both",
            "--spread both: `flow` (by connection, default) or `cpu`",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["passthru", opt, value, "--netns", &pair.a.name])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
}
