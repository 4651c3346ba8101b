//! Handle lifetime: rules never outlive the handle, even after `kill -9`; what happens to
//! other handles' queued packets when a handle goes away; priorities chain handles.

mod common;

use common::{require_root, udp_exchange, Echo, Netns, Pair};
use lindivert::{Error, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Not a test on its own: the child process of `kill_9_restores_traffic_and_removes_table`.
/// Opens a divert handle in the namespace named by `LINDIVERT_TEST_NETNS`, prints READY and
/// holds every packet without ever sending it.
#[test]
#[ignore]
fn child_diverter() {
    let Ok(path) = std::env::var("LINDIVERT_TEST_NETNS") else {
        return;
    };
    let h = OpenOptions::new("outbound and udp.DstPort == 7601")
        .netns_path(path)
        .open()
        .expect("child open");
    println!("READY {} {}", std::process::id(), h.table_name());
    let mut buf = vec![0u8; 70000];
    loop {
        let _ = h.recv_timeout(&mut buf, Some(Duration::from_millis(100)));
    }
}

#[test]
fn kill_9_restores_traffic_and_removes_table() {
    require_root!();
    let pair = Pair::new();
    let _echo = Echo::start(&pair.b, 7601);
    let to = SocketAddr::from((pair.b_ip, 7601));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_diverter",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LINDIVERT_TEST_NETNS", pair.a.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let table = loop {
        let l = lines.next().expect("child output").unwrap();
        // the harness prints "test child_diverter ... " on the same line
        if let Some(i) = l.find("READY ") {
            break l[i + 6..].split_whitespace().nth(1).unwrap().to_string();
        }
    };
    let tables = pair.a.tables();
    assert!(
        tables
            .iter()
            .any(|t| t.name == table && t.owner.is_some() && t.flags & 2 != 0),
        "owner table {table} missing: {tables:?}"
    );
    let held = udp_exchange(
        &pair.a,
        to,
        vec![b"held".to_vec()],
        Duration::from_millis(300),
    );
    assert!(held.is_empty(), "the child diverts and never sends");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    let mut ok = false;
    while killed.elapsed() < Duration::from_secs(1) {
        let r = udp_exchange(
            &pair.a,
            to,
            vec![b"free".to_vec()],
            Duration::from_millis(100),
        );
        if r == vec![b"free".to_vec()] {
            ok = true;
            break;
        }
    }
    assert!(ok, "traffic not restored within 1 s of kill -9");
    let tables = pair.a.tables();
    assert!(
        !tables.iter().any(|t| t.name.starts_with("lindivert_")),
        "tables left behind: {tables:?}"
    );
}

#[test]
fn table_is_gone_after_close_and_root_namespace_untouched() {
    require_root!();
    let ns = Netns::new("t");
    let root_before = lindivert::nftables::list_tables().unwrap();
    let h = OpenOptions::new("tcp")
        .netns_path(ns.path())
        .open()
        .unwrap();
    let name = h.table_name().to_string();
    assert!(ns.tables().iter().any(|t| t.name == name));
    assert_eq!(lindivert::nftables::list_tables().unwrap(), root_before);
    h.close().unwrap();
    assert!(!ns.tables().iter().any(|t| t.name == name));
}

/// Kernel fact (6.18): unregistering any netfilter hook in a namespace (which deleting a base
/// chain does) drops every packet waiting in every nfqueue of that namespace
/// (`nf_queue_nf_hook_drop`). So closing one handle drops the packets another handle holds.
/// This test pins the behaviour down so that a kernel change (or a design that avoids it)
/// is noticed.
#[test]
fn closing_one_handle_flushes_packets_held_by_another() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7701);
    let holder = OpenOptions::new("outbound and udp.DstPort == 7701")
        .netns_path(pair.a.path())
        .open()
        .unwrap();
    let to = SocketAddr::from((pair.b_ip, 7701));
    let _ = udp_exchange(&pair.a, to, vec![b"x".to_vec()], Duration::from_millis(50));
    let mut buf = vec![0u8; 2000];
    let (n, addr) = holder
        .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    let other = OpenOptions::new("tcp")
        .netns_path(pair.a.path())
        .open()
        .unwrap();
    other.close().unwrap();
    // the held packet is gone from the kernel queue: our verdict names an unknown id
    holder.send(&buf[..n], &addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(holder);
    let got = echo.finish();
    assert!(
        got.is_empty(),
        "the kernel no longer flushes other queues on hook removal: {got:?}"
    );
}

#[test]
fn higher_priority_sees_first_and_reinjection_reaches_lower() {
    require_root!();
    let pair = Pair::new();
    let echo = Echo::start(&pair.b, 7801);
    let filter = "outbound and udp.DstPort == 7801";
    let low = OpenOptions::new(filter)
        .priority(-10)
        .netns_path(pair.a.path())
        .open()
        .unwrap();
    let high = OpenOptions::new(filter)
        .priority(10)
        .netns_path(pair.a.path())
        .open()
        .unwrap();
    let to = SocketAddr::from((pair.b_ip, 7801));
    let client = pair.a.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"chain", to).unwrap();
        let mut b = [0u8; 100];
        s.recv_from(&mut b).map(|(n, _)| b[..n].to_vec()).ok()
    });
    let mut buf = vec![0u8; 2000];
    assert!(matches!(
        low.recv_timeout(&mut buf, Some(Duration::from_millis(200))),
        Err(Error::Timeout)
    ));
    let (n, a) = high
        .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    // modify at the high priority; the low priority handle must see the modified packet
    buf[28] = b'C';
    let mut a2 = a;
    a2.udp_checksum = false;
    high.send(&buf[..n], &a2).unwrap();
    let (n2, a3) = low
        .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(&buf[28..n2], b"Chain");
    low.send(&buf[..n2], &a3).unwrap();
    assert_eq!(client.join().unwrap().as_deref(), Some(&b"Chain"[..]));
    // an injected (new) packet from the high handle is seen by the low one, not by itself
    let mut p = buf[..n2].to_vec();
    p[28] = b'N';
    p[4] ^= 0x55; // other IP id: not a queued packet
    let mut ai = a3;
    ai.udp_checksum = false;
    ai.ip_checksum = false;
    high.send(&p, &ai).unwrap();
    assert_eq!(high.stats().injected, 1);
    let (n3, a4) = low
        .recv_timeout(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(&buf[28..n3], b"Nhain");
    assert!(matches!(
        high.recv_timeout(&mut buf[..0].to_vec(), Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    low.send(&buf[..n3], &a4).unwrap();
    drop(low);
    drop(high);
    let got = echo.finish();
    assert_eq!(got, vec![b"Chain".to_vec(), b"Nhain".to_vec()]);
}
