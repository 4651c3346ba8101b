//! NETWORK_FORWARD: packets routed through a namespace are diverted there.

mod common;

use common::{privileged, udp_exchange, Echo, Netns};
use lindivert::{Error, Flags, Layer, OpenOptions};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn veth(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str) {
    let ok = Command::new("ip")
        .args([
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    a.ip(&["addr", "add", a_ip, "dev", a_if]);
    b.ip(&["addr", "add", b_ip, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

#[test]
fn forwarded_packets_are_diverted_and_modified() {
    if !privileged() {
        eprintln!("skipped: needs root and the `ip` tool");
        return;
    }
    // client (10.78.1.1) -- router (10.78.1.2 | 10.78.2.2) -- server (10.78.2.1)
    let client = Netns::new("c");
    let router = Netns::new("r");
    let server = Netns::new("s");
    let tag = std::process::id() % 100000;
    veth(
        &client,
        &format!("fc{tag}"),
        "10.78.1.1/24",
        &router,
        &format!("fr{tag}"),
        "10.78.1.2/24",
    );
    veth(
        &server,
        &format!("fs{tag}"),
        "10.78.2.1/24",
        &router,
        &format!("fq{tag}"),
        "10.78.2.2/24",
    );
    client.ip(&["route", "add", "default", "via", "10.78.1.2"]);
    server.ip(&["route", "add", "default", "via", "10.78.2.2"]);
    router.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap());
    let echo = Echo::start(&server, 8601);
    let to: SocketAddr = "10.78.2.1:8601".parse().unwrap();
    assert_eq!(
        udp_exchange(&client, to, vec![b"plain".to_vec()], Duration::from_secs(2)).len(),
        1,
        "routing works without a handle"
    );
    let h = OpenOptions::new("udp.DstPort == 8601")
        .layer(Layer::NetworkForward)
        .flags(Flags::NONE)
        .netns_path(router.path())
        .open()
        .unwrap();
    let sender = client.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"fwd", to).unwrap();
        let mut b = [0u8; 100];
        s.recv_from(&mut b).map(|(n, _)| b[..n].to_vec()).ok()
    });
    let mut buf = vec![0u8; 2000];
    let (n, mut a) = h
        .recv_timeout(&mut buf, Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(a.layer, Layer::NetworkForward);
    assert!(!a.outbound && !a.loopback);
    assert!(
        a.network_data().unwrap().if_idx > 1,
        "IfIdx = the outgoing interface"
    );
    buf[28..n].make_ascii_uppercase();
    a.udp_checksum = false;
    h.send(&buf[..n], &a).unwrap();
    assert_eq!(sender.join().unwrap().as_deref(), Some(&b"FWD"[..]));
    assert!(matches!(
        h.recv_timeout(&mut buf, Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    drop(h);
    assert_eq!(echo.finish(), vec![b"plain".to_vec(), b"FWD".to_vec()]);
}
