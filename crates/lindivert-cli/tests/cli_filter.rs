//! `lindivert filter check|compile|format|eval` end to end, through the built binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_lindivert");

/// IPv4 TCP 10.0.0.1:49152 → 93.184.216.34:80, PSH|ACK, 16 bytes of payload.
const TCP4: &str = "45100038beef400040063be50a0000015db8d822c000005001020304a0b0c0d05018721006620000474554202f20485454502f312e310d0a";
/// IPv4 UDP 192.168.1.2:5353 → 8.8.8.8:53 (IHL 6).
const UDP4: &str =
    "4600002c010200000111e404c0a80102080808080101010014e9003500146b3cdeadbeef0102030405060708";
/// IPv6 TCP SYN 2001:db8::1:50000 → 2001:db8::2:443.
const TCP6: &str = "6ab123450018064020010db800000000000000000000000120010db8000000000000000000000002c35001bbffffffff000000006002ffff77a60000020405b4";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("runs the lindivert binary")
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs the lindivert binary");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writes stdin");
    child.wait_with_output().expect("waits")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `filter eval` with extra options; returns the printed result.
fn eval(filter: &str, packet: &str, opts: &[&str]) -> String {
    let mut args = vec!["filter", "eval", filter, packet];
    args.extend_from_slice(opts);
    let o = run(&args);
    assert!(
        o.status.success(),
        "eval {filter:?} {opts:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o).trim().to_string()
}

#[test]
fn check_ok() {
    for (f, layer) in [
        ("tcp.DstPort == 80", "network"),
        (
            "outbound and !loopback and (tcp.DstPort == 80 or udp.DstPort == 53)",
            "network",
        ),
        ("ifIdx == 1", "network_forward"),
        ("event == ESTABLISHED and processId == 1", "flow"),
        ("event == CONNECT", "socket"),
        ("layer == SOCKET and priority < 0", "reflect"),
        ("@WinDiv_WX_1dWW2mAX", "network"),
    ] {
        let o = run(&["filter", "check", f, "--layer", layer]);
        assert_eq!(stdout(&o), "ok\n", "{f} at {layer}: {}", stderr(&o));
        assert_eq!(o.status.code(), Some(0));
    }
}

/// The error output is `error: …`, the filter indented by two spaces, and a caret under the
/// error's column; the exit status is 1.
#[test]
fn check_error_caret() {
    for (f, layer, col, what) in [
        ("tcp and (udp or Tcp)", "network", 16, "bad token"),
        ("not (tcp)", "network", 4, "parse error"),
        ("tcp.DstPort == 80 & udp", "network", 18, "bad token"),
        ("processId == 1", "network", 0, "bad token for layer"),
        (
            "true and outbound",
            "network_forward",
            9,
            "bad token for layer",
        ),
        ("tcp.DstPort == 80", "flow", 0, "bad token for layer"),
        ("packet16[32767] == 1", "network", 9, "out-of-bounds"),
        ("tcp and", "network", 7, "parse error"),
        ("tcp\tand\tTcp", "network", 8, "bad token"),
        ("ip or é", "network", 6, "bad token"),
        ("é == 1 or Ip", "network", 0, "bad token"),
        ("@WinDiv_XX_1dWW2mAX", "network", 8, "object is invalid"),
    ] {
        let o = run(&["filter", "check", f, "--layer", layer]);
        assert_eq!(o.status.code(), Some(1), "{f}: {}", stdout(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{f}: {out}");
        assert!(lines[0].starts_with("error: "), "{f}: {out}");
        assert!(lines[0].contains(what), "{f}: {out}");
        assert_eq!(lines[1], format!("  {}", f.replace('\t', " ")), "{f}");
        assert_eq!(lines[2], format!("  {}^", " ".repeat(col)), "{f}: {out}");
        // The caret is under a character of the filter, or just after it (end of input).
        assert!(col <= f.chars().count(), "{f}: caret past the end");
    }
}

#[test]
fn check_usage_errors() {
    let o = run(&["filter", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["filter", "check", "tcp", "--layer", "ethernet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown layer"), "{}", stderr(&o));
    let o = run(&["filter", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn compile_prints_object() {
    let o = run(&["filter", "compile", "tcp.DstPort == 80"]);
    assert_eq!(stdout(&o), "@WinDiv_WX_1dWW2mAX\n");
    assert!(o.status.success());
    // The worked example of FILTER.md §11.2 (a real WinDivert output).
    let o = run(&[
        "filter",
        "compile",
        "remoteAddr=142.251.43.14 and remotePort=80",
    ]);
    assert_eq!(stdout(&o), "@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX\n");
    // An object compiles to itself.
    let o = run(&["filter", "compile", "@WinDiv_WX_1dWW2mAX"]);
    assert_eq!(stdout(&o), "@WinDiv_WX_1dWW2mAX\n");
    // Errors go to stderr with the caret, exit status 1.
    let o = run(&["filter", "compile", "tcp.DstPort == 80 &"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(err.contains("bad token"), "{err}");
    assert!(err.contains(&format!("  {}^", " ".repeat(18))), "{err}");
    // Layer-specific.
    let o = run(&["filter", "compile", "event == OPEN", "--layer", "reflect"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("@WinDiv_WX_"), "{}", stdout(&o));
    let o = run(&["filter", "compile", "event == OPEN"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn format_object_and_text() {
    let o = run(&[
        "filter",
        "format",
        "@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "remoteAddr = 142.251.43.14 and remotePort = 80\n"
    );
    let o = run(&["filter", "format", "@WinDiv_WX_1dWW2mAX"]);
    assert_eq!(stdout(&o), "tcp.DstPort = 80\n");
    // Text formats to equivalent text, which compiles to the same object.
    let f = "not tcp.Syn or (udp? udp.DstPort == 53: icmp)";
    let o = run(&["filter", "format", f]);
    assert!(o.status.success());
    let text = stdout(&o).trim().to_string();
    let a = run(&["filter", "compile", f]);
    let b = run(&["filter", "compile", &text]);
    assert_eq!(stdout(&a), stdout(&b), "{f} → {text}");
    // The layer matters for macros.
    let o = run(&[
        "filter",
        "format",
        "event == CLOSE and layer == FLOW",
        "--layer",
        "reflect",
    ]);
    assert_eq!(stdout(&o), "event = CLOSE and layer = FLOW\n");
    // Bad objects are errors.
    let o = run(&["filter", "format", "@WinDiv_WX_1dWW2m"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn eval_direction() {
    // Without a direction flag the packet is inbound.
    assert_eq!(eval("outbound", TCP4, &[]), "false");
    assert_eq!(eval("inbound", TCP4, &[]), "true");
    assert_eq!(eval("outbound", TCP4, &["--outbound"]), "true");
    assert_eq!(eval("inbound", TCP4, &["--outbound"]), "false");
    assert_eq!(eval("inbound", TCP4, &["--inbound"]), "true");
    // localPort/remotePort follow the direction.
    assert_eq!(eval("localPort == 49152", TCP4, &["--outbound"]), "true");
    assert_eq!(eval("localPort == 80", TCP4, &["--inbound"]), "true");
    assert_eq!(eval("remoteAddr == 10.0.0.1", TCP4, &["--inbound"]), "true");
    let o = run(&["filter", "eval", "tcp", TCP4, "--outbound", "--inbound"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn eval_flags_and_indexes() {
    assert_eq!(eval("loopback", TCP4, &[]), "false");
    assert_eq!(eval("loopback", TCP4, &["--loopback"]), "true");
    assert_eq!(eval("impostor", TCP4, &[]), "false");
    assert_eq!(eval("impostor", TCP4, &["--impostor"]), "true");
    assert_eq!(eval("ifIdx == 5", TCP4, &[]), "false");
    assert_eq!(eval("ifIdx == 5", TCP4, &["--if-idx", "5"]), "true");
    assert_eq!(eval("ifIdx == 5", TCP4, &["--if-idx=5"]), "true");
    assert_eq!(
        eval("ifIdx == 4294967295", TCP4, &["--if-idx", "0xffffffff"]),
        "true"
    );
    assert_eq!(eval("subIfIdx == 9", TCP4, &["--sub-if-idx", "9"]), "true");
    assert_eq!(eval("subIfIdx == 9", TCP4, &["--if-idx", "9"]), "false");
    for bad in ["-1", "4294967296", "x"] {
        let o = run(&["filter", "eval", "ifIdx == 1", TCP4, "--if-idx", bad]);
        assert_eq!(o.status.code(), Some(2), "--if-idx {bad}");
    }
}

#[test]
fn eval_layers() {
    // NETWORK_FORWARD: the packet fields and ifIdx, but no direction fields.
    assert_eq!(
        eval(
            "ifIdx == 2 and tcp.DstPort == 80",
            TCP4,
            &["--layer", "network_forward", "--if-idx", "2"]
        ),
        "true"
    );
    let o = run(&[
        "filter",
        "eval",
        "outbound",
        TCP4,
        "--layer",
        "network_forward",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("for layer"), "{}", stdout(&o));
    // IPv6 packets set the address's IPv6 flag.
    assert_eq!(
        eval("ipv6 and tcp.Syn and tcp.DstPort == 443", TCP6, &[]),
        "true"
    );
    assert_eq!(eval("ip", TCP6, &[]), "false");
    // The event layers take no packet (empty, or left out).
    assert_eq!(
        eval("event == ESTABLISHED", "", &["--layer", "flow"]),
        "true"
    );
    assert_eq!(eval("event == BIND", "", &["--layer", "socket"]), "true");
    assert_eq!(eval("event == OPEN", "", &["--layer", "reflect"]), "true");
    let o = run(&["filter", "eval", "event == OPEN", "--layer", "reflect"]);
    assert_eq!(stdout(&o), "true\n", "{}", stderr(&o));
    let o = run(&["filter", "eval", "tcp", TCP4, "--layer", "flow"]);
    assert_eq!(o.status.code(), Some(1), "a packet at FLOW");
    let o = run(&["filter", "eval", "tcp"]);
    assert_eq!(o.status.code(), Some(2), "no packet at NETWORK");
    // Bad packets are errors, never panics.
    for bad in ["45", "zz", "4g", "aé0", "é", "450"] {
        let o = run(&["filter", "eval", "tcp", bad]);
        assert_eq!(o.status.code(), Some(1), "packet {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("lindivert: "), "{}", stderr(&o));
    }
    // Whitespace inside the hex is ignored.
    assert_eq!(
        eval("udp.DstPort == 53", &UDP4.replace("0111", "01 11"), &[]),
        "true"
    );
    // A filter error prints the caret like `check` and exits 1.
    let o = run(&["filter", "eval", "tcp.DstPort = = 80", TCP4]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("  {}^", " ".repeat(14))),
        "{}",
        stdout(&o)
    );
}

#[test]
fn eval_batch() {
    let lines = [
        format!(r#"{{"filter": "tcp.DstPort == 80", "packet": "{TCP4}"}}"#),
        format!(r#"{{"filter": "udp", "packet": "{TCP4}"}}"#),
        format!(
            r#"{{"filter": "outbound and ifIdx == 3", "packet": "{TCP4}", "outbound": true, "if_idx": 3}}"#
        ),
        format!(
            r#"{{"filter": "inbound and subIfIdx == 2 and loopback and impostor", "packet": "{UDP4}", "sub_if_idx": 2, "loopback": true, "impostor": true}}"#
        ),
        // Missing packet at NETWORK.
        r#"{"filter": "tcp"}"#.to_string(),
        // Other layers, no packet.
        r#"{"filter": "event == ESTABLISHED", "layer": "flow"}"#.to_string(),
        r#"{"filter": "event == CLOSE", "layer": "reflect"}"#.to_string(),
        format!(
            r#"{{"filter": "ifIdx == 7", "layer": "network_forward", "packet": "{TCP4}", "if_idx": 7}}"#
        ),
        // Bad JSON, not an object, missing filter, bad filter, bad layer, bad packet.
        "{not json".to_string(),
        "[1, 2]".to_string(),
        r#"{"packet": "45"}"#.to_string(),
        format!(r#"{{"filter": "tcp.Dstport == 80", "packet": "{TCP4}"}}"#),
        r#"{"filter": "tcp", "layer": "ethernet"}"#.to_string(),
        r#"{"filter": "tcp", "packet": "aé0"}"#.to_string(),
        format!(r#"{{"filter": "tcp", "packet": "{TCP4}", "if_idx": -1}}"#),
        // Blank lines are skipped; the next line still gets its answer in order.
        String::new(),
        format!(r#"{{"filter": "ipv6", "packet": "{TCP6}"}}"#),
    ];
    let input = lines.join("\n") + "\n";
    let o = run_stdin(&["filter", "eval", "--batch"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let got: Vec<&str> = out.lines().collect();
    let want_prefix = [
        "true",
        "false",
        "true",
        "true",
        "error: ",
        "true",
        "false",
        "true",
        "error: invalid JSON",
        "error: ",
        "error: missing string `filter`",
        "error: Filter expression contains a bad token",
        "error: unknown layer",
        "error: packet hex",
        "error: ",
        "true",
    ];
    assert_eq!(got.len(), want_prefix.len(), "{out}");
    for (i, (g, w)) in got.iter().zip(want_prefix).enumerate() {
        if w.starts_with("error") {
            assert!(
                g.starts_with(w),
                "line {i}: {g:?} does not start with {w:?}"
            );
        } else {
            assert_eq!(*g, w, "line {i}");
        }
    }
    // Positional arguments are not allowed with --batch.
    let o = run_stdin(&["filter", "eval", "--batch", "tcp"], "");
    assert_eq!(o.status.code(), Some(2));
}
