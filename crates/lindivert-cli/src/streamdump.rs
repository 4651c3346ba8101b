//! `streamdump`: the WinDivert `streamdump` sample. TCP connections from this host to port
//! PORT are turned, by rewriting packets, into connections to a local proxy that prints the
//! stream in both directions and relays it to the real server.
//!
//! The packet trick (the sample's, kept on Linux), for a client `C:c` connecting to `S:P`
//! (PORT = P, proxy port = X, alternative port = A):
//!
//! - outbound `C:c → S:P` is *reflected*: the addresses are swapped and the destination
//!   port becomes X, giving `S:c → C:X`, injected inbound. The proxy listening on X accepts
//!   a connection whose peer address is the original destination `S`;
//! - outbound `C:X → S:c` (the proxy's side of it) is reflected back as `S:P → C:c`, so the
//!   client sees its server answer;
//! - the proxy connects to `S:A`; outbound packets to port A are redirected to P
//!   (`C:e → S:P`) and the server's answers `S:P → C:e` get source port A again, so they
//!   reach the proxy's socket.
//!
//! Linux specifics:
//!
//! - The handle injects rewritten packets as new packets through a raw socket carrying its
//!   injection mark (its own chains skip them); one with a local destination, like every
//!   reflected packet, is routed through `lo` and delivered to the local TCP stack. The
//!   kernel does not re-check the (foreign) source address there.
//! - A server on this host (loopback traffic): Linux shows loopback packets at the output
//!   hook only (the handle's input chains skip `lo`), so the server's answers to the proxy,
//!   `L:P → L:e`, are caught as *outbound loopback* packets, not inbound as on a remote
//!   server; both get source port A. Outbound non-loopback packets from port P (a local
//!   server answering remote clients) are left alone.
//! - The proxy keeps the sample's port-A detour for its upstream connection. Marking that
//!   socket with the handle's injection mark (`SO_MARK`, which the handle's chains skip)
//!   would let it connect to P directly, but the mark must be set before `connect`, which
//!   the standard library cannot do, and this crate has no unsafe code.
//! - The library gives a rewritten packet a new identity (other addresses/ports), so its
//!   original stays in the kernel queue until QUEUE_TIME and is then dropped (WinDivert
//!   drops a received packet that is not sent back at once). QUEUE_TIME is set to 250 ms to
//!   keep that short; TCP small queues count those originals, which caps the throughput of
//!   one connection at a few MB/s, plenty for a tool that prints every chunk.
//! - GSO super-packets are turned off for the handle (every packet is rewritten and
//!   re-injected through the raw socket).
//! - With `--netns`, the handle, the proxy's listener and its upstream connections all live
//!   in that namespace.
//!
//! Output: one line per chunk read by the proxy, `[<client port, at least 4 digits>] ` and
//! the chunk's first 65 bytes (non-printable bytes as `.`), then `...` if the chunk was
//! longer. A chunk is printed before it is relayed, so the lines of a request/response
//! exchange come in order. On a terminal, client-to-server chunks are green and
//! server-to-client chunks red, as in the sample; plain text otherwise.

use crate::args::{Args, CliError};
use crate::common::{
    close_handle, netns_path, open_handle, priority, recv_packet, send_addr, signals, stop_flag,
    MTU_MAX,
};
use lindivert::core::packet::{calc_checksums, parse, ChecksumFlags};
use lindivert::sys::netns::NetNs;
use lindivert::{Address, Flags, OpenOptions, Param};
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The longest piece of a chunk printed.
const MAX_LINE: usize = 65;

/// The ports of one streamdump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// PORT, the diverted destination port.
    pub port: u16,
    /// The local proxy's port.
    pub proxy: u16,
    /// The port the proxy connects to (redirected to PORT).
    pub alt: u16,
}

impl Ports {
    /// The sample's defaults: proxy 34010 (34011 if PORT is 34010), alternative 43010
    /// (43011 if PORT is 43010).
    pub fn new(port: u16, proxy: Option<u16>, alt: Option<u16>) -> Ports {
        Ports {
            port,
            proxy: proxy.unwrap_or(if port == 34010 { 34011 } else { 34010 }),
            alt: alt.unwrap_or(if port == 43010 { 43011 } else { 43010 }),
        }
    }

    /// The handle's filter.
    pub fn filter(&self) -> String {
        let Ports { port, proxy, alt } = *self;
        format!(
            "tcp and (outbound and (tcp.DstPort == {port} or tcp.SrcPort == {proxy} or \
             tcp.DstPort == {alt} or loopback and tcp.SrcPort == {port}) or \
             inbound and tcp.SrcPort == {port})"
        )
    }
}

/// Rewrite a diverted packet in place (addresses, ports, direction; checksums filled).
/// Returns false if the packet is left as it was.
pub fn rewrite(pkt: &mut [u8], addr: &mut Address, ports: &Ports) -> bool {
    let Some(p) = parse(pkt) else { return false };
    let Some((sp, dp)) = p.tcp().map(|t| (t.src_port(), t.dst_port())) else {
        return false;
    };
    let (off, version) = (p.transport_offset, p.version);
    let swap = |pkt: &mut [u8]| {
        let (a, len) = if version == 4 { (12, 4) } else { (8, 16) };
        let (s, d) = pkt[a..a + 2 * len].split_at_mut(len);
        s.swap_with_slice(d);
    };
    let set_port = |pkt: &mut [u8], at: usize, v: u16| {
        pkt[off + at..off + at + 2].copy_from_slice(&v.to_be_bytes());
    };
    if addr.outbound && dp == ports.port {
        // client -> server: reflect to the proxy
        swap(pkt);
        set_port(pkt, 2, ports.proxy);
        addr.outbound = false;
    } else if addr.outbound && sp == ports.proxy {
        // proxy -> client: reflect back, as from the server
        swap(pkt);
        set_port(pkt, 0, ports.port);
        addr.outbound = false;
    } else if addr.outbound && dp == ports.alt {
        // proxy -> server
        set_port(pkt, 2, ports.port);
    } else if sp == ports.port && (!addr.outbound || addr.loopback) {
        // server -> proxy
        set_port(pkt, 0, ports.alt);
    } else {
        return false;
    }
    let _ = calc_checksums(pkt, ChecksumFlags::NONE);
    *addr = send_addr(addr, addr.outbound);
    true
}

/// One printed line for a chunk.
pub fn chunk_line(tag: u16, chunk: &[u8]) -> String {
    let shown: String = chunk
        .iter()
        .take(MAX_LINE)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!(
        "[{tag:04}] {shown}{}",
        if chunk.len() > MAX_LINE { "..." } else { "" }
    )
}

fn print_chunk(tag: u16, chunk: &[u8], to_client: bool, color: bool) {
    let line = chunk_line(tag, chunk);
    let mut out = std::io::stdout().lock();
    let _ = if color {
        let (head, text) = line.split_at(line.find(' ').map_or(0, |i| i + 1));
        let c = if to_client { 31 } else { 32 };
        writeln!(out, "{head}\x1b[{c}m{text}\x1b[0m")
    } else {
        writeln!(out, "{line}")
    };
    let _ = out.flush();
}

/// Copy `from` to `to`, printing every chunk, until EOF (then half-close `to`) or an error
/// (then close both).
fn relay(mut from: TcpStream, mut to: TcpStream, tag: u16, to_client: bool, color: bool) {
    let mut buf = vec![0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                print_chunk(tag, &buf[..n], to_client, color);
                if let Err(e) = to.write_all(&buf[..n]) {
                    eprintln!("warning: failed to relay data ({e})");
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        a => a,
    }
}

/// One proxied connection: connect to the original destination's port A, relay both ways.
fn serve(client: TcpStream, peer: SocketAddr, ports: Ports, ns: Option<Arc<NetNs>>, color: bool) {
    if let Some(ns) = &ns {
        if let Err(e) = ns.enter_current_thread() {
            eprintln!("warning: failed to enter the network namespace ({e})");
            return;
        }
    }
    let dst = SocketAddr::new(unmap(peer.ip()), ports.alt);
    let server = match TcpStream::connect_timeout(&dst, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: failed to connect to {} port {} ({e})",
                dst.ip(),
                ports.port
            );
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        eprintln!("warning: failed to duplicate a socket");
        return;
    };
    let tag = peer.port();
    let up = std::thread::spawn(move || relay(c2, s2, tag, false, color));
    relay(server, client, tag, true, color);
    let _ = up.join();
}

fn listen(ports: &Ports, ns: Option<&NetNs>) -> Result<TcpListener, CliError> {
    let bind = move || {
        TcpListener::bind(("::", ports.proxy))
            .or_else(|_| TcpListener::bind(("0.0.0.0", ports.proxy)))
    };
    let r = match ns {
        Some(ns) => ns.run(bind).map_err(|e| CliError::failed(format!("{e}")))?,
        None => bind(),
    };
    r.map_err(|e| {
        CliError::failed(format!(
            "error: failed to bind the proxy to port {} ({e})",
            ports.proxy
        ))
    })
}

fn port_option(a: &Args, name: &str) -> Result<Option<u16>, CliError> {
    match a.option(name) {
        None => Ok(None),
        Some(_) => {
            let v: u32 = a.number(name, 0)?;
            match u16::try_from(v) {
                Ok(p) if p != 0 => Ok(Some(p)),
                _ => Err(CliError::usage(format!(
                    "{name}: not a port number (1..65535)"
                ))),
            }
        }
    }
}

/// `streamdump PORT [--proxy-port N] [--alt-port N] [--priority N] [--netns NAME]`
pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(
        argv,
        &["--proxy-port", "--alt-port", "--priority", "--netns"],
        &[],
    )?;
    let port = match a.positional.as_slice() {
        [p] => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(CliError::usage(format!("error: invalid port `{p}`"))),
        },
        [] => return Err(CliError::usage("missing PORT")),
        [_, x, ..] => return Err(CliError::usage(format!("unexpected argument `{x}`"))),
    };
    let ports = Ports::new(
        port,
        port_option(&a, "--proxy-port")?,
        port_option(&a, "--alt-port")?,
    );
    if ports.proxy == ports.port || ports.alt == ports.port || ports.alt == ports.proxy {
        return Err(CliError::usage(
            "error: PORT, the proxy port and the alternative port must differ",
        ));
    }
    let prio = priority(&a, 123)?;
    let netns = netns_path(&a)?;
    let ns = match &netns {
        Some(p) => {
            Some(Arc::new(NetNs::open(p).map_err(|e| {
                CliError::failed(format!("network namespace {p}: {e}"))
            })?))
        }
        None => None,
    };
    let sig = signals()?;
    let listener = listen(&ports, ns.as_deref())?;
    let h = open_handle(
        OpenOptions::new(&ports.filter())
            .priority(prio)
            .flags(Flags::NONE)
            .gso(false),
        netns.as_deref(),
    )?;
    h.set_param(Param::QueueTime, 250)
        .map_err(|e| CliError::failed(format!("error: failed to set packet queue time ({e})")))?;
    let color = std::io::stdout().is_terminal();
    {
        let ns = ns.clone();
        std::thread::spawn(move || loop {
            match listener.accept() {
                Ok((client, peer)) => {
                    let ns = ns.clone();
                    std::thread::spawn(move || serve(client, peer, ports, ns, color));
                }
                Err(e) => {
                    eprintln!("warning: failed to accept a connection ({e})");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
    }
    let stop = stop_flag(sig);
    let mut buf = vec![0u8; MTU_MAX];
    while !stop.load(Ordering::Acquire) {
        let Some((n, mut addr)) = recv_packet(&h, &mut buf) else {
            continue;
        };
        let pkt = &mut buf[..n];
        if parse(pkt).is_none() {
            eprintln!("warning: failed to parse packet");
        }
        rewrite(pkt, &mut addr, &ports);
        if let Err(e) = h.send(pkt, &addr) {
            eprintln!("warning: failed to send packet ({e})");
        }
    }
    close_handle(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{tcp_segment, ACK, PSH};

    fn ports_of(pkt: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
        let p = parse(pkt).unwrap();
        let t = p.tcp().unwrap();
        (p.src_addr(), t.src_port(), p.dst_addr(), t.dst_port())
    }

    #[test]
    fn the_four_rewrites() {
        let ports = Ports::new(7000, None, None);
        assert_eq!((ports.proxy, ports.alt), (34010, 43010));
        assert_eq!(Ports::new(34010, None, None).proxy, 34011);
        assert_eq!(Ports::new(43010, None, None).alt, 43011);
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let case = |src, dst, outbound: bool, loopback: bool| {
            let mut pkt = tcp_segment(src, dst, 1, 2, PSH | ACK, 100, b"data");
            let mut a = Address::network(outbound);
            a.loopback = loopback;
            let changed = rewrite(&mut pkt, &mut a, &ports);
            assert!(lindivert::core::packet::verify_checksums(&pkt)
                .unwrap()
                .all_valid());
            (changed, ports_of(&pkt), a.outbound)
        };
        assert_eq!(
            case((c, 5555), (s, 7000), true, false),
            (true, (s, 5555, c, 34010), false)
        );
        assert_eq!(
            case((c, 34010), (s, 5555), true, false),
            (true, (s, 7000, c, 5555), false)
        );
        assert_eq!(
            case((c, 6666), (s, 43010), true, false),
            (true, (c, 6666, s, 7000), true)
        );
        assert_eq!(
            case((s, 7000), (c, 6666), false, false),
            (true, (s, 43010, c, 6666), false)
        );
        // loopback server answers are outbound on Linux
        assert_eq!(
            case((c, 7000), (c, 6666), true, true),
            (true, (c, 43010, c, 6666), true)
        );
        // a local server on PORT answering a remote client: untouched
        assert_eq!(
            case((c, 7000), (s, 6666), true, false),
            (false, (c, 7000, s, 6666), true)
        );
        // IPv6
        let c6: IpAddr = "fd00::1".parse().unwrap();
        let s6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(
            case((c6, 5555), (s6, 7000), true, false),
            (true, (s6, 5555, c6, 34010), false)
        );
    }

    #[test]
    fn filter_compiles() {
        let f = Ports::new(7000, None, None).filter();
        lindivert::core::filter::Filter::compile(&f, lindivert::Layer::Network).unwrap();
    }

    #[test]
    fn chunk_lines() {
        assert_eq!(chunk_line(80, b"hi\r\n"), "[0080] hi..");
        assert_eq!(chunk_line(54321, b"x"), "[54321] x");
        let long = [b'a'; 70];
        assert_eq!(
            chunk_line(1234, &long),
            format!("[1234] {}...", "a".repeat(65))
        );
    }
}
