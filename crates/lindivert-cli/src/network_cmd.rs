//! The NETWORK-layer samples of WinDivert as subcommands: `netdump` (sniff and print, or
//! write pcapng), `netfilter` (block, answering TCP with RST and UDP with ICMP port
//! unreachable) and `passthru` (re-inject everything, counting; the benchmark harness).

use crate::args::{Args, CliError};
use crate::common::{
    close_handle, ip_header, netns_dir, open_handle, priority, recv_packet, send_addr, signals,
    stop_flag, tcp_header, ACK, MTU_MAX, RST,
};
use crate::pcapng::PcapngWriter;
use lindivert::core::filter::Filter;
use lindivert::core::packet::{calc_checksums, hash_packet, parse, ChecksumFlags, ParsedPacket};
use lindivert::handle::QueueRef;
use lindivert::sys::time::{monotonic_ns, realtime_ns};
use lindivert::{Address, Error, Flags, Handle, Layer, OpenOptions, Param, Verdict};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options every network command takes.
struct Common {
    filter: String,
    priority: i16,
    netns: Option<String>,
}

fn common(a: &Args, default_filter: Option<&str>) -> Result<Common, CliError> {
    let filter = match (a.positional.first(), default_filter) {
        (Some(f), _) => f.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(CliError::usage("missing FILTER")),
    };
    if a.positional.len() > 1 {
        return Err(CliError::usage(format!(
            "unexpected argument `{}`",
            a.positional[1]
        )));
    }
    let priority = priority(a, 0)?;
    // a filter error is shown with its position marked
    if let Err(e) = Filter::compile(&filter, Layer::Network) {
        return Err(CliError::failed(format!(
            "invalid filter\n{}",
            e.render(&filter)
        )));
    }
    Ok(Common {
        filter,
        priority,
        netns: a.option("--netns").map(str::to_string),
    })
}

fn open(c: &Common, flags: Flags) -> Result<Handle, CliError> {
    open_with(c, flags, |o| o)
}

fn open_with(
    c: &Common,
    flags: Flags,
    more: impl FnOnce(OpenOptions) -> OpenOptions,
) -> Result<Handle, CliError> {
    let netns = c.netns.as_deref().map(netns_dir).transpose()?;
    let o = OpenOptions::new(&c.filter)
        .priority(c.priority)
        .flags(flags);
    open_handle(more(o), netns.as_deref())
}

// ---------------------------------------------------------------------------------------
// netdump

/// `netdump [FILTER] [--priority N] [-w FILE.pcapng] [--netns NAME] [--count N]`
pub fn netdump(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(
        argv,
        &["--priority", "-w", "--netns", "--count"],
        &["-q", "--quiet"],
    )?;
    let c = common(&a, Some("true"))?;
    let count: u64 = a.number("--count", 0)?;
    let quiet = a.flag("-q") || a.flag("--quiet");
    let sig = signals()?;
    let h = open(&c, Flags::SNIFF | Flags::FRAGMENTS)?;
    for (p, v, what) in [
        (Param::QueueLength, 16384, "length"),
        (Param::QueueTime, 16000, "time"),
        (Param::QueueSize, 33554432, "size"),
    ] {
        h.set_param(p, v).map_err(|e| {
            CliError::failed(format!("error: failed to set packet queue {what} ({e})"))
        })?;
    }
    let mut pcap = match a.option("-w") {
        Some(path) => {
            let f = std::fs::File::create(path)
                .map_err(|e| CliError::failed(format!("{path}: {e}")))?;
            Some(
                PcapngWriter::new(BufWriter::new(f), "lindivert netdump")
                    .map_err(|e| CliError::failed(format!("{path}: {e}")))?,
            )
        }
        None => None,
    };
    let stop = stop_flag(sig);
    let base = monotonic_ns();
    let to_realtime = realtime_ns() - base;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; MTU_MAX];
    let mut seen = 0u64;
    while !stop.load(Ordering::Acquire) && (count == 0 || seen < count) {
        let (n, addr) = match h.recv_timeout(&mut buf, Some(Duration::from_millis(100))) {
            Ok(r) => r,
            Err(Error::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(e) => {
                eprintln!("warning: failed to read packet ({e})");
                continue;
            }
        };
        seen += 1;
        let pkt = &buf[..n];
        if let Some(w) = pcap.as_mut() {
            let ts = (addr.timestamp + to_realtime).max(0) as u64;
            if let Err(e) = w.write_packet(ts, pkt, addr.outbound) {
                return Err(CliError::failed(format!("writing the capture: {e}")));
            }
        }
        if !quiet {
            let _ = out.write_all(format_packet(pkt, &addr, base).as_bytes());
        }
    }
    let _ = out.flush();
    if let Some(mut w) = pcap {
        w.flush()
            .map_err(|e| CliError::failed(format!("writing the capture: {e}")))?;
    }
    close_handle(h)
}

/// C's `%.{prec}g`.
pub fn fmt_g(x: f64, prec: usize) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x == 0.0 { "0".into() } else { x.to_string() };
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, x);
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{x:.decimals$}"))
    }
}

fn addr_text(a: IpAddr) -> String {
    a.to_string()
}

/// One packet in netdump's format (a blank line first; no colours; TOS and FlowLabel
/// printed as the real values).
pub fn format_packet(pkt: &[u8], addr: &Address, base_ns: i64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let secs = (addr.timestamp - base_ns) as f64 / 1e9;
    let (if_idx, sub_if_idx) = addr
        .network_data()
        .map(|n| (n.if_idx, n.sub_if_idx))
        .unwrap_or((0, 0));
    let _ = writeln!(
        s,
        "\nPacket [Timestamp={}, Direction={} IfIdx={} SubIfIdx={} Loopback={} Hash=0x{:016X}]",
        fmt_g(secs, 8),
        if addr.outbound { "outbound" } else { "inbound" },
        if_idx,
        sub_if_idx,
        u8::from(addr.loopback),
        hash_packet(pkt, 0)
    );
    match parse(pkt) {
        Some(p) => headers(&mut s, &p),
        None => s.push_str("warning: junk packet\n"),
    }
    for line in pkt.chunks(20) {
        s.push_str("\n\t");
        for b in line {
            let _ = write!(s, "{b:02X}");
        }
    }
    for line in pkt.chunks(40) {
        s.push_str("\n\t");
        s.extend(line.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
    }
    s.push('\n');
    s
}

fn headers(s: &mut String, p: &ParsedPacket<'_>) {
    use std::fmt::Write as _;
    if let Some(ip) = p.ipv4() {
        let b = p.bytes;
        let _ = writeln!(
            s,
            "IPv4 [Version={} HdrLength={} TOS={} Length={} Id=0x{:04X} Reserved={} DF={} MF={} \
             FragOff={} TTL={} Protocol={} Checksum=0x{:04X} SrcAddr={} DstAddr={}]",
            ip.version(),
            ip.ihl(),
            ip.tos(),
            ip.total_len(),
            ip.ident(),
            u8::from(ip.reserved_flag()),
            u8::from(ip.dont_frag()),
            u8::from(ip.more_frags()),
            u16::from_be_bytes([b[6], b[7]]) & 0x1FFF,
            ip.ttl(),
            ip.protocol(),
            ip.checksum(),
            addr_text(ip.src_addr().into()),
            addr_text(ip.dst_addr().into()),
        );
    }
    if let Some(ip) = p.ipv6() {
        let _ = writeln!(
            s,
            "IPv6 [Version={} TrafficClass={} FlowLabel={} Length={} NextHdr={} HopLimit={} \
             SrcAddr={} DstAddr={}]",
            ip.version(),
            ip.traffic_class(),
            ip.flow_label(),
            ip.payload_len(),
            ip.next_header(),
            ip.hop_limit(),
            addr_text(ip.src_addr().into()),
            addr_text(ip.dst_addr().into()),
        );
    }
    if let Some(h) = p.icmp() {
        let _ = writeln!(
            s,
            "ICMP [Type={} Code={} Checksum=0x{:04X} Body=0x{:08X}]",
            h.msg_type(),
            h.code(),
            h.checksum(),
            h.body()
        );
    }
    if let Some(h) = p.icmpv6() {
        let _ = writeln!(
            s,
            "ICMPV6 [Type={} Code={} Checksum=0x{:04X} Body=0x{:08X}]",
            h.msg_type(),
            h.code(),
            h.checksum(),
            h.body()
        );
    }
    if let Some(t) = p.tcp() {
        let raw = p.transport_bytes();
        let f = t.flags();
        let _ = writeln!(
            s,
            "TCP [SrcPort={} DstPort={} SeqNum={} AckNum={} HdrLength={} Reserved1={} \
             Reserved2={} Urg={} Ack={} Psh={} Rst={} Syn={} Fin={} Window={} \
             Checksum=0x{:04X} UrgPtr={}]",
            t.src_port(),
            t.dst_port(),
            t.seq_number(),
            t.ack_number(),
            t.data_offset(),
            raw[12] & 0x0F,
            raw[13] >> 6,
            (f >> 5) & 1,
            (f >> 4) & 1,
            (f >> 3) & 1,
            (f >> 2) & 1,
            (f >> 1) & 1,
            f & 1,
            t.window(),
            t.checksum(),
            t.urgent_ptr()
        );
    }
    if let Some(u) = p.udp() {
        let _ = writeln!(
            s,
            "UDP [SrcPort={} DstPort={} Length={} Checksum=0x{:04X}]",
            u.src_port(),
            u.dst_port(),
            u.length(),
            u.checksum()
        );
    }
}

// ---------------------------------------------------------------------------------------
// netfilter

/// `netfilter FILTER [--priority N] [--netns NAME]`
pub fn netfilter(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(argv, &["--priority", "--netns"], &[])?;
    let c = common(&a, None)?;
    let sig = signals()?;
    let h = open(&c, Flags::NONE)?;
    let stop = stop_flag(sig);
    let stdout = io::stdout();
    let mut buf = vec![0u8; MTU_MAX];
    while !stop.load(Ordering::Acquire) {
        let Some((n, addr)) = recv_packet(&h, &mut buf) else {
            continue;
        };
        let Some(p) = parse(&buf[..n]) else { continue };
        let (line, reply) = block(&p);
        {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Some((mut r, what)) = reply {
            let _ = calc_checksums(&mut r, ChecksumFlags::NONE);
            if let Err(e) = h.send(&r, &send_addr(&addr, !addr.outbound)) {
                eprintln!("warning: failed to send {what} ({e})");
            }
        }
    }
    close_handle(h)
}

/// The BLOCK line for a packet and the reply to inject (with its name for warnings).
pub fn block(p: &ParsedPacket<'_>) -> (String, Option<(Vec<u8>, &'static str)>) {
    let mut line = format!(
        "BLOCK ip.SrcAddr={} ip.DstAddr={} ",
        p.src_addr(),
        p.dst_addr()
    );
    let v6 = p.version == 6;
    let mut reply = None;
    if let Some(h) = p.icmp() {
        line += &format!("icmp.Type={} icmp.Code={} ", h.msg_type(), h.code());
    } else if let Some(h) = p.icmpv6() {
        line += &format!("icmpv6.Type={} icmpv6.Code={} ", h.msg_type(), h.code());
    } else if let Some(t) = p.tcp() {
        line += &format!(
            "tcp.SrcPort={} tcp.DstPort={} tcp.Flags=",
            t.src_port(),
            t.dst_port()
        );
        let f = t.flags();
        for (bit, name) in [
            (0x01, "[FIN]"),
            (0x04, "[RST]"),
            (0x20, "[URG]"),
            (0x02, "[SYN]"),
            (0x08, "[PSH]"),
            (0x10, "[ACK]"),
        ] {
            if f & bit != 0 {
                line += name;
            }
        }
        line.push(' ');
        if f & 0x05 == 0 {
            let r = tcp_reset(p);
            reply = Some((r, if v6 { "TCP (IPV6) reset" } else { "TCP reset" }));
        }
    } else if let Some(u) = p.udp() {
        line += &format!("udp.SrcPort={} udp.DstPort={} ", u.src_port(), u.dst_port());
        reply = Some((
            port_unreachable(p),
            if v6 { "ICMPv6 message" } else { "ICMP message" },
        ));
    }
    (line, reply)
}

/// An IP header for a reply from `p`'s destination to its source, carrying `payload_len`
/// bytes of protocol `proto` (checksums left to `calc_checksums`).
fn reply_ip(p: &ParsedPacket<'_>, proto: u8, payload_len: usize) -> Vec<u8> {
    let mut h = ip_header(p.dst_addr(), p.src_addr(), proto, payload_len);
    if h.len() == 20 {
        h[4..6].copy_from_slice(&0xDEADu16.to_be_bytes());
    }
    h
}

/// TCP RST+ACK back to the sender of `p` (as netfilter.c builds it).
fn tcp_reset(p: &ParsedPacket<'_>) -> Vec<u8> {
    let t = p.tcp().expect("tcp");
    let mut pkt = reply_ip(p, 6, 20);
    let f = t.flags();
    let seq = if f & 0x10 != 0 { t.ack_number() } else { 0 };
    let ack = if f & 0x02 != 0 {
        t.seq_number().wrapping_add(1)
    } else {
        t.seq_number().wrapping_add(p.payload_len as u32)
    };
    pkt.extend_from_slice(&tcp_header(
        t.dst_port(),
        t.src_port(),
        seq,
        ack,
        RST | ACK,
        0,
    ));
    pkt
}

/// ICMP (type 3 code 3) / ICMPv6 (type 1 code 4) port unreachable back to the sender of
/// `p`, quoting the original IP header + 8 bytes (IPv6: the first 40 + 20 bytes, as far as
/// the packet has them).
fn port_unreachable(p: &ParsedPacket<'_>) -> Vec<u8> {
    let (proto, ty, code, quote) = if p.version == 4 {
        (1u8, 3u8, 3u8, p.transport_offset + 8)
    } else {
        (58, 1, 4, 60)
    };
    let quoted = &p.bytes[..quote.min(p.bytes.len())];
    let mut pkt = reply_ip(p, proto, 8 + quoted.len());
    pkt.extend_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    pkt.extend_from_slice(quoted);
    pkt
}

// ---------------------------------------------------------------------------------------
// passthru

/// `passthru [FILTER] [--threads N] [--batch N] [--priority N] [--duration S] [--netns NAME]
/// [--copy] [--busy-poll US] [--work-us US] [--spread flow|cpu]`: re-injects in place
/// (`recv_with`, no copy); `--copy` uses `recv`/`send` batches; `--busy-poll` sets
/// [`OpenOptions::busy_poll`]; `--spread` sets [`OpenOptions::spread`]; `--work-us` keeps
/// the thread busy that long per packet before re-injecting it (a stand-in for an
/// application's own per-packet work, to measure how `--threads` scales).
pub fn passthru(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(
        argv,
        &[
            "--threads",
            "--batch",
            "--priority",
            "--duration",
            "--netns",
            "--busy-poll",
            "--work-us",
            "--spread",
        ],
        &["--copy"],
    )?;
    let c = common(&a, Some("true"))?;
    let copy = a.flag("--copy");
    let threads: usize = a.number("--threads", 1)?;
    if !(1..=64).contains(&threads) {
        return Err(CliError::usage("error: invalid number of threads (1..64)"));
    }
    let batch: usize = a.number("--batch", 1)?;
    if !(1..=255).contains(&batch) {
        return Err(CliError::usage("error: invalid batch size (1..255)"));
    }
    let busy_poll: u64 = a.number("--busy-poll", 0)?;
    if busy_poll > lindivert::handle::BUSY_POLL_MAX.as_micros() as u64 {
        return Err(CliError::usage(format!(
            "error: --busy-poll {busy_poll}: at most {} microseconds",
            lindivert::handle::BUSY_POLL_MAX.as_micros()
        )));
    }
    let work_us: u64 = a.number("--work-us", 0)?;
    if work_us > WORK_US_MAX {
        return Err(CliError::usage(format!(
            "error: --work-us {work_us}: at most {WORK_US_MAX} microseconds per packet"
        )));
    }
    let work = Duration::from_micros(work_us);
    let spread = match a.option("--spread") {
        None | Some("flow") => lindivert::Spread::Flow,
        Some("cpu") => lindivert::Spread::Cpu,
        Some(other) => {
            return Err(CliError::usage(format!(
                "error: --spread {other}: `flow` (by connection, default) or `cpu`"
            )))
        }
    };
    let duration = match a.option("--duration") {
        None => None,
        Some(s) => match s.parse::<f64>() {
            Ok(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d)),
            _ => {
                return Err(CliError::usage(format!(
                    "--duration: `{s}` is not a positive number of seconds"
                )))
            }
        },
    };
    let sig = signals()?;
    // one nfnetlink queue per thread (spread by flow or CPU), each thread reading its own
    let h = Arc::new(open_with(&c, Flags::NONE, |o| {
        o.queues(threads as u16)
            .spread(spread)
            .busy_poll(Duration::from_micros(busy_poll))
    })?);
    let stop = Arc::new(AtomicBool::new(false));
    let packets = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (h, stop, packets, bytes) =
                (h.clone(), stop.clone(), packets.clone(), bytes.clone());
            std::thread::spawn(move || {
                let q = h.queue(i).expect("one queue per thread");
                if copy {
                    passthru_copy(&q, batch, work, &stop, &packets, &bytes)
                } else {
                    passthru_inplace(&q, batch, work, &stop, &packets, &bytes)
                }
            })
        })
        .collect();
    loop {
        let wait = match duration {
            Some(d) => match d.checked_sub(started.elapsed()) {
                Some(left) => left,
                None => break,
            },
            None => Duration::from_secs(3600),
        };
        match sig.wait(Some(wait)) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => {
                eprintln!("warning: waiting for signals: {e}");
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
        }
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        let _ = w.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let close = match Arc::try_unwrap(h) {
        Ok(h) => h.close(),
        Err(_) => Ok(()),
    };
    let (p, b) = (
        packets.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    println!(
        "passthru: {p} packets, {b} bytes in {secs:.3} s ({:.0} packets/s, {:.1} Mbit/s)",
        p as f64 / secs,
        b as f64 * 8.0 / secs / 1e6
    );
    close.map_err(|e| CliError::failed(format!("closing the handle: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// The largest `--work-us`.
const WORK_US_MAX: u64 = 1_000_000;

/// Keeps the thread busy for `work` (no sleep: the point is to use the CPU).
fn busy_work(work: Duration) {
    if work.is_zero() {
        return;
    }
    let t = Instant::now();
    while t.elapsed() < work {
        std::hint::spin_loop();
    }
}

/// Every packet re-injected as it is, without copying it out (`recv_with`).
fn passthru_inplace(
    h: &QueueRef<'_>,
    batch: usize,
    work: Duration,
    stop: &AtomicBool,
    packets: &AtomicU64,
    bytes: &AtomicU64,
) {
    let (mut p, mut b) = (0u64, 0u64);
    while !stop.load(Ordering::Acquire) {
        let r = h.recv_with(batch, Some(Duration::from_millis(100)), |pkt, _addr| {
            busy_work(work);
            p += 1;
            b += pkt.len() as u64;
            Verdict::Accept
        });
        match r {
            Ok(_) | Err(Error::Timeout) => {}
            Err(Error::Closed) | Err(Error::NoData) => break,
            Err(e) => eprintln!("warning: failed to read packet ({e})"),
        }
        if p >= 4096 {
            packets.fetch_add(std::mem::take(&mut p), Ordering::Relaxed);
            bytes.fetch_add(std::mem::take(&mut b), Ordering::Relaxed);
        }
    }
    packets.fetch_add(p, Ordering::Relaxed);
    bytes.fetch_add(b, Ordering::Relaxed);
}

/// Every packet copied out with `recv_batch` and back with `send_batch`.
fn passthru_copy(
    h: &QueueRef<'_>,
    batch: usize,
    work: Duration,
    stop: &AtomicBool,
    packets: &AtomicU64,
    bytes: &AtomicU64,
) {
    let mut buf = vec![0u8; (batch * 1500).max(MTU_MAX)];
    let mut addrs: Vec<Address> = Vec::with_capacity(batch);
    while !stop.load(Ordering::Acquire) {
        addrs.clear();
        let n = match h.recv_batch(
            &mut buf,
            &mut addrs,
            batch,
            Some(Duration::from_millis(100)),
        ) {
            Ok(n) => n,
            Err(Error::Timeout) => continue,
            Err(Error::Closed) | Err(Error::NoData) => break,
            Err(e) => {
                eprintln!("warning: failed to read packet ({e})");
                continue;
            }
        };
        for _ in 0..addrs.len() {
            busy_work(work);
        }
        if let Err(e) = h.send_batch(&buf[..n], &addrs) {
            eprintln!("warning: failed to reinject packet ({e})");
            continue;
        }
        packets.fetch_add(addrs.len() as u64, Ordering::Relaxed);
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lindivert::core::packet::Transport;

    #[test]
    fn printf_g() {
        assert_eq!(fmt_g(0.0, 8), "0");
        assert_eq!(fmt_g(1.5, 8), "1.5");
        assert_eq!(fmt_g(0.123456789, 8), "0.12345679");
        assert_eq!(fmt_g(12345.678912, 8), "12345.679");
        assert_eq!(fmt_g(0.00001234, 8), "1.234e-05");
        assert_eq!(fmt_g(123456789.0, 8), "1.2345679e+08");
        assert_eq!(fmt_g(99999999.9, 8), "1e+08");
        assert_eq!(fmt_g(2.0, 8), "2");
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2,
            0x16, 0x2e, 0, 0, 0, 0,
        ];
        b.extend_from_slice(payload);
        let l = b.len() as u16;
        b[2..4].copy_from_slice(&l.to_be_bytes());
        b[24..26].copy_from_slice(&(l - 20).to_be_bytes());
        calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
        b
    }

    #[test]
    fn netdump_format() {
        let pkt = udp4(b"hi");
        let mut a = Address::network(true);
        a.timestamp = 1_500_000_000;
        let s = format_packet(&pkt, &a, 0);
        let lines: Vec<&str> = s.split('\n').collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with(
            "Packet [Timestamp=1.5, Direction=outbound IfIdx=0 SubIfIdx=0 Loopback=0 Hash=0x"
        ));
        assert!(lines[2].starts_with(
            "IPv4 [Version=4 HdrLength=5 TOS=0 Length=30 Id=0x1234 Reserved=0 DF=1 MF=0 \
             FragOff=0 TTL=64 Protocol=17 Checksum=0x"
        ));
        assert!(lines[2].ends_with("SrcAddr=10.0.0.1 DstAddr=10.0.0.2]"));
        assert!(lines[3].starts_with("UDP [SrcPort=1234 DstPort=5678 Length=10 Checksum=0x"));
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\t4500001E1234"));
        assert_eq!(lines[5].len(), 1 + 40);
        assert_eq!(lines[6].len(), 1 + 20);
        assert!(lines[7].starts_with("\tE") && lines[7].ends_with("hi"));
        assert_eq!(lines[7].len(), 1 + 30);
        assert_eq!(lines[8], "");
    }

    #[test]
    fn netfilter_replies() {
        let pkt = udp4(b"hello");
        let p = parse(&pkt).unwrap();
        let (line, reply) = block(&p);
        assert_eq!(
            line,
            "BLOCK ip.SrcAddr=10.0.0.1 ip.DstAddr=10.0.0.2 udp.SrcPort=1234 udp.DstPort=5678 "
        );
        let (mut r, _) = reply.unwrap();
        calc_checksums(&mut r, ChecksumFlags::NONE).unwrap();
        let rp = parse(&r).unwrap();
        assert_eq!(rp.src_addr().to_string(), "10.0.0.2");
        let icmp = rp.icmp().unwrap();
        assert_eq!((icmp.msg_type(), icmp.code()), (3, 3));
        assert_eq!(rp.payload_len, 28);
        assert!(matches!(rp.transport, Transport::Icmp));
    }
}
