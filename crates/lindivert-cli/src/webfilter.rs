//! `webfilter`: the WinDivert `webfilter` sample, an HTTP URL blacklist.
//!
//! It diverts outbound TCP segments to port 80 that carry data
//! (`outbound and !loopback and tcp.DstPort == 80 and tcp.PayloadLength > 0`), reads the
//! request line and the `Host` header of each, and looks `host/path` up in the blacklists.
//! An allowed request is re-injected unchanged. A blocked one hijacks the connection, in the
//! sample's order:
//!
//! 1. a RST+ACK to the server, with the client's sequence numbers (on Linux this send takes
//!    the place of the queued request: same flow, so the request segment leaves as the RST);
//! 2. the block page to the client, as if from the server (`seq` = the client's `ack`,
//!    `ack` = the client's `seq` + payload length), injected inbound, with FIN set: the
//!    client sees the end of the response right after it.
//!
//! Output (as the sample's, without colours): `ADD <domain>/<uri>` for every blacklist
//! entry, `OPENED WinDivert` once the handle is open, and `URL <host>/<uri>: BLOCKED!` or
//! `URL <host>/<uri>: allowed` per parsed request.
//!
//! Differences from the sample, on purpose:
//! - IPv6 is handled as well as IPv4 (the sample filters on `ip`);
//! - a domain entry matches the domain itself and its subdomains only, at a dot boundary
//!   (`example.com` matches `www.example.com` but not `badexample.com`, which the sample's
//!   reversed-prefix search also matched); hosts are compared case-insensitively and a port
//!   in the `Host` header is ignored;
//! - any request method and HTTP/1.x version are parsed, and the `Host` header may be
//!   anywhere in the headers of the segment (the sample wanted `GET`/`POST`, `HTTP/1.1` and
//!   `Host` right after the request line); the request must still start a segment;
//! - blacklist files are read line by line, with `#` comments; each line may hold several
//!   whitespace-separated entries as in the sample's format. No `GROW` lines (no fixed array);
//! - the block page answers `403 Forbidden` with a `Content-Length` (the sample sent `200 OK`);
//! - the page segment carries the FIN (PSH+ACK+FIN) instead of a separate FIN+ACK after it.
//!   On Linux an injected packet with a local destination is processed synchronously
//!   (through `lo`): the client ACKs the page at once, the already reset server answers that
//!   ACK with a RST over the veth/loopback path, and that RST reached the client before a
//!   separate FIN could, so the client saw "connection reset" instead of the end of the page.

use crate::args::{Args, CliError};
use crate::common::{
    close_handle, netns_path, open_handle, priority, recv_packet, send_addr, signals, stop_flag,
    tcp_segment, ACK, FIN, MTU_MAX, PSH, RST,
};
use lindivert::core::packet::{parse, ParsedPacket};
use lindivert::{Flags, OpenOptions};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

/// The sample's filter (IPv4 and IPv6 here).
pub const FILTER: &str = "outbound and !loopback and tcp.DstPort == 80 and tcp.PayloadLength > 0";

const BLOCK_BODY: &str = "<!doctype html>\n\
<html><head><title>BLOCKED!</title></head>\n\
<body><h1>BLOCKED!</h1><hr><p>This URL has been blocked!</p>\
<p><small>lindivert webfilter</small></p></body></html>\n";

/// The HTTP response sent to the client of a blocked request.
pub fn block_page() -> String {
    format!(
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/html\r\n\
         Content-Length: {}\r\n\r\n{BLOCK_BODY}",
        BLOCK_BODY.len()
    )
}

// ---------------------------------------------------------------------------------------
// the blacklist

/// Blacklist entries: a domain (lower case, no trailing dot) and a URI prefix (without the
/// leading `/`; empty = every path).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Blacklist {
    entries: Vec<(String, String)>,
}

impl Blacklist {
    /// Add the entries of one file's text; returns the entries added, as `domain/uri`.
    ///
    /// An entry is `domain[/uri-prefix]`; it must start with `-` or an alphanumeric
    /// character and the domain is `[A-Za-z0-9.-]+` (at most 4096 characters); other
    /// tokens are skipped. `#` starts a comment up to the end of the line.
    pub fn add_text(&mut self, text: &str) -> Vec<String> {
        let mut added = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            for tok in line.split_whitespace() {
                let Some(first) = tok.chars().next() else {
                    continue;
                };
                if !(first == '-' || first.is_ascii_alphanumeric()) {
                    continue;
                }
                let end = tok
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                    .unwrap_or(tok.len());
                let (domain, rest) = tok.split_at(end);
                let uri = match rest.strip_prefix('/') {
                    Some(u) => u,
                    None if rest.is_empty() => "",
                    None => continue,
                };
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                if domain.is_empty() || domain.len() > 4096 {
                    continue;
                }
                added.push(format!("{domain}/{uri}"));
                self.entries.push((domain, uri.to_string()));
            }
        }
        added
    }

    /// Whether `host` (already normalised: lower case, no trailing dot, no port) with the
    /// path `uri` (without its leading `/`) is blacklisted.
    pub fn matches(&self, host: &str, uri: &str) -> bool {
        self.entries.iter().any(|(d, u)| {
            let host_ok = host == d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.');
            host_ok && uri.starts_with(u.as_str())
        })
    }
}

/// The host (normalised) and the URI (without the leading `/`) of an HTTP/1.x request at
/// the start of `payload`, if it parses.
pub fn parse_request(payload: &[u8]) -> Option<(String, String)> {
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        // a request line and headers are ASCII; the body may be anything
        Err(e) => std::str::from_utf8(&payload[..e.valid_up_to()]).ok()?,
    };
    let mut lines = text.split("\r\n");
    let request = lines.next()?;
    let mut parts = request.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let uri = target.strip_prefix('/')?;
    let mut host = None;
    // only complete header lines (the last piece may be cut by the segment's end)
    let complete = text.matches("\r\n").count();
    for line in lines.take(complete.saturating_sub(1)) {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = Some(value.trim());
                break;
            }
        }
    }
    let host = host?;
    // drop a port (not inside an IPv6 literal) and a trailing dot ("Nice try...")
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, uri.to_string()))
}

/// The packets that hijack a blocked request `p`: the RST to the server, and the block page
/// with FIN to the client.
pub fn hijack(p: &ParsedPacket<'_>) -> Option<[Vec<u8>; 2]> {
    let t = p.tcp()?;
    let client = (p.src_addr(), t.src_port());
    let server = (p.dst_addr(), t.dst_port());
    let seq = t.seq_number();
    let ack = t.ack_number();
    let page = block_page();
    let reset = tcp_segment(client, server, seq, ack, RST | ACK, 0, &[]);
    let next = seq.wrapping_add(p.payload_len as u32);
    let body = tcp_segment(
        server,
        client,
        ack,
        next,
        PSH | ACK | FIN,
        8192,
        page.as_bytes(),
    );
    Some([reset, body])
}

/// `webfilter BLACKLIST... [--priority N] [--netns NAME]`
pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(argv, &["--priority", "--netns"], &[])?;
    if a.positional.is_empty() {
        return Err(CliError::usage("missing BLACKLIST file"));
    }
    let prio = priority(&a, 404)?;
    let netns = netns_path(&a)?;
    let mut list = Blacklist::default();
    for f in &a.positional {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::failed(format!(
                "error: failed to open blacklist file \"{f}\" ({e})"
            ))
        })?;
        for e in list.add_text(&text) {
            println!("ADD {e}");
        }
    }
    let sig = signals()?;
    let h = open_handle(
        OpenOptions::new(FILTER)
            .priority(prio)
            .flags(Flags::NONE)
            .gso(true),
        netns.as_deref(),
    )?;
    println!("OPENED WinDivert");
    let stop = stop_flag(sig);
    let mut buf = vec![0u8; MTU_MAX];
    while !stop.load(Ordering::Acquire) {
        let Some((n, addr)) = recv_packet(&h, &mut buf) else {
            continue;
        };
        let pkt = &buf[..n];
        let verdict = parse(pkt).and_then(|p| {
            let (host, uri) = parse_request(p.payload())?;
            let blocked = list.matches(&host, &uri);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "URL {host}/{uri}: {}",
                if blocked { "BLOCKED!" } else { "allowed" }
            );
            let _ = out.flush();
            if blocked {
                hijack(&p)
            } else {
                None
            }
        });
        let Some([reset, page]) = verdict else {
            if let Err(e) = h.send(pkt, &addr) {
                eprintln!("warning: failed to reinject packet ({e})");
            }
            continue;
        };
        if let Err(e) = h.send(&reset, &send_addr(&addr, true)) {
            eprintln!("warning: failed to send reset packet ({e})");
        }
        if let Err(e) = h.send(&page, &send_addr(&addr, false)) {
            eprintln!("warning: failed to send block page packet ({e})");
        }
    }
    close_handle(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn blacklist_entries_and_matching() {
        let mut b = Blacklist::default();
        let added = b.add_text(
            "# a comment example.net\nExample.COM\nads.test/banner  -x.org/a/b\n\
             _bad.org\nfoo.org?q\n\nmirror.test./path\n",
        );
        assert_eq!(
            added,
            vec![
                "example.com/",
                "ads.test/banner",
                "-x.org/a/b",
                "mirror.test/path"
            ]
        );
        assert_eq!(b.entries.len(), 4);
        assert!(b.matches("example.com", ""));
        assert!(b.matches("www.example.com", "index.html"));
        assert!(!b.matches("badexample.com", ""));
        assert!(!b.matches("example.net", ""));
        assert!(b.matches("ads.test", "banner/1.png"));
        assert!(!b.matches("ads.test", "index.html"));
        assert!(b.matches("mirror.test", "path"));
        assert!(!b.matches("mirror.test", "pat"));
    }

    #[test]
    fn request_parsing() {
        assert_eq!(
            parse_request(b"GET /a/b?c HTTP/1.1\r\nHost: WWW.Example.com.\r\n\r\n"),
            Some(("www.example.com".into(), "a/b?c".into()))
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.0\r\nUser-Agent: x\r\nhost: h.test:80\r\n\r\nbody"),
            Some(("h.test".into(), "".into()))
        );
        // no Host, a header cut by the segment end, not HTTP
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            None
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: exam"), None);
        assert_eq!(parse_request(b"hello world\r\n"), None);
        assert_eq!(
            parse_request(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            None
        );
        // the Host of the headers only, not of the body
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nA: b\r\n\r\nHost: evil\r\n"),
            None
        );
    }

    #[test]
    fn hijack_packets() {
        let req = b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n";
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let pkt = tcp_segment((c, 40000), (s, 80), 1000, 5000, PSH | ACK, 500, req);
        let p = parse(&pkt).unwrap();
        let [reset, page] = hijack(&p).unwrap();
        let r = parse(&reset).unwrap();
        let rt = r.tcp().unwrap();
        assert_eq!((r.src_addr(), r.dst_addr()), (c, s));
        assert_eq!((rt.src_port(), rt.dst_port()), (40000, 80));
        assert_eq!(
            (rt.seq_number(), rt.ack_number(), rt.flags()),
            (1000, 5000, 0x14)
        );
        let g = parse(&page).unwrap();
        let gt = g.tcp().unwrap();
        assert_eq!((g.src_addr(), g.dst_addr()), (s, c));
        assert_eq!((gt.src_port(), gt.dst_port()), (80, 40000));
        let next = 1000 + req.len() as u32;
        assert_eq!(
            (gt.seq_number(), gt.ack_number(), gt.flags()),
            (5000, next, 0x19)
        );
        assert_eq!(g.payload(), block_page().as_bytes());
        for x in [&reset, &page] {
            let st = lindivert::core::packet::verify_checksums(x).unwrap();
            assert!(st.all_valid());
        }
        // IPv6 too
        let c6: IpAddr = "fd00::1".parse().unwrap();
        let s6: IpAddr = "fd00::2".parse().unwrap();
        let pkt = tcp_segment((c6, 40000), (s6, 80), 7, 9, PSH | ACK, 500, req);
        let [_, page] = hijack(&parse(&pkt).unwrap()).unwrap();
        let g = parse(&page).unwrap();
        assert_eq!((g.version, g.src_addr(), g.dst_addr()), (6, s6, c6));
        assert!(lindivert::core::packet::verify_checksums(&page)
            .unwrap()
            .all_valid());
    }

    #[test]
    fn page_has_its_length() {
        let p = block_page();
        let (head, body) = p.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<h1>BLOCKED!</h1>"));
    }
}
