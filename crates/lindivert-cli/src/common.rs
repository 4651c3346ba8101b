//! Helpers shared by the NETWORK-layer sample commands (`netdump`, `netfilter`,
//! `passthru`, `webfilter`, `streamdump`): option checks, opening the handle, the signal
//! flag, receiving, and building reply packets.

use crate::args::{Args, CliError};
use lindivert::core::packet::{calc_checksums, ChecksumFlags};
use lindivert::sys::signal::TermSignals;
use lindivert::{Address, Error, Handle, OpenOptions};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest packet a handle delivers.
pub(crate) const MTU_MAX: usize = 40 + 0xFFFF;

pub(crate) const FIN: u8 = 0x01;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// Check `--priority` (-30000..=30000), with a default.
pub(crate) fn priority(a: &Args, default: i64) -> Result<i16, CliError> {
    let p: i64 = a.number("--priority", default)?;
    if !(-30000..=30000).contains(&p) {
        return Err(CliError::usage(
            "error: invalid priority value (-30000..30000)",
        ));
    }
    Ok(p as i16)
}

/// The `/var/run/netns/NAME` path of the network namespace `ns`, checked to exist.
pub(crate) fn netns_dir(ns: &str) -> Result<String, CliError> {
    let path = format!("/var/run/netns/{ns}");
    if !std::path::Path::new(&path).exists() {
        return Err(CliError::failed(format!(
            "no network namespace named `{ns}` ({path} does not exist)"
        )));
    }
    Ok(path)
}

/// The `/var/run/netns/NAME` path of `--netns NAME`, checked to exist.
pub(crate) fn netns_path(a: &Args) -> Result<Option<String>, CliError> {
    a.option("--netns").map(netns_dir).transpose()
}

/// Open a diverting NETWORK handle with the options `o`, in the network namespace at
/// `netns` if one is given.
pub(crate) fn open_handle(o: OpenOptions, netns: Option<&str>) -> Result<Handle, CliError> {
    let o = match netns {
        Some(p) => o.netns_path(p),
        None => o,
    };
    o.open().map_err(|e| {
        CliError::failed(match e {
            Error::PermissionDenied { .. } => format!(
                "failed to open the divert handle: {e}\n(run as root, or grant CAP_NET_ADMIN \
                 and CAP_NET_RAW)"
            ),
            e => format!("failed to open the divert handle: {e}"),
        })
    })
}

/// Close the handle at the end of a command.
pub(crate) fn close_handle(h: Handle) -> Result<ExitCode, CliError> {
    h.close()
        .map_err(|e| CliError::failed(format!("closing the handle: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT/SIGTERM as a flag (block them before any thread starts, then call
/// [`stop_flag`]).
pub(crate) fn signals() -> Result<TermSignals, CliError> {
    TermSignals::new().map_err(|e| CliError::failed(format!("signalfd: {e}")))
}

/// Wait for SIGINT/SIGTERM in the background; the flag turns true on either.
pub(crate) fn stop_flag(sig: TermSignals) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        if let Ok(Some(_)) = sig.wait(None) {
            s2.store(true, Ordering::Release);
        }
    });
    stop
}

/// Receive one packet into `buf`, waiting up to 100 ms: `None` on a timeout or an error
/// (with a warning), so that the caller can look at its stop flag again.
pub(crate) fn recv_packet(h: &Handle, buf: &mut [u8]) -> Option<(usize, Address)> {
    match h.recv_timeout(buf, Some(Duration::from_millis(100))) {
        Ok(r) => Some(r),
        Err(Error::Timeout) => None,
        Err(e) => {
            eprintln!("warning: failed to read packet ({e})");
            None
        }
    }
}

/// `addr` for a packet whose checksums are all correct, in direction `outbound`.
pub(crate) fn send_addr(addr: &Address, outbound: bool) -> Address {
    let mut a = *addr;
    a.outbound = outbound;
    a.impostor = false;
    a.ip_checksum = true;
    a.tcp_checksum = true;
    a.udp_checksum = true;
    a
}

/// An IP header from `src` to `dst` (IPv4 if both are IPv4, else IPv6 with IPv4 addresses
/// mapped), TTL/hop limit 64, carrying `payload_len` bytes of protocol `proto`; IPv4
/// identification and flags zero, checksum left to `calc_checksums`.
pub(crate) fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, payload_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&v6(s));
            h[24..40].copy_from_slice(&v6(d));
            h
        }
    }
}

/// A 20-byte TCP header without options (checksum left to `calc_checksums`).
pub(crate) fn tcp_header(
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&src_port.to_be_bytes());
    t[2..4].copy_from_slice(&dst_port.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t
}

/// A TCP segment (IPv4 with DF or IPv6, TTL/hop limit 64), checksums filled.
pub(crate) fn tcp_segment(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ip_header(src.0, dst.0, 6, 20 + payload.len());
    if p.len() == 20 {
        p[6] = 0x40; // DF
    }
    p.extend_from_slice(&tcp_header(src.1, dst.1, seq, ack, flags, window));
    p.extend_from_slice(payload);
    let _ = calc_checksums(&mut p, ChecksumFlags::NONE);
    p
}
