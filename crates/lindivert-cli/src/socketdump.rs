//! `lindivert socketdump [FILTER] [--block]`: WinDivert's socketdump sample, one line per
//! SOCKET event with the process id and name. Also the shared event formatting helpers of
//! `flowtrack` and `ctl`.

use crate::args::{Args, CliError};
use lindivert::core::filter::Filter;
use lindivert::socket::SocketOptions;
use lindivert::{Address, Error, Flags, Layer};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::process::ExitCode;

/// `/var/run/netns/NAME` for `--netns NAME` (a path is used as it is).
pub(crate) fn netns_path(a: &Args) -> Option<String> {
    a.option("--netns").map(|n| {
        if n.contains('/') {
            n.to_string()
        } else {
            format!("/var/run/netns/{n}")
        }
    })
}

/// The filter argument (default `true`), checked for `layer`.
pub(crate) fn filter_arg(a: &Args, layer: Layer, index: usize) -> Result<String, CliError> {
    let f = a
        .positional
        .get(index)
        .cloned()
        .unwrap_or_else(|| "true".to_string());
    if a.positional.len() > index + 1 {
        return Err(CliError::usage(format!(
            "unexpected argument `{}`",
            a.positional[index + 1]
        )));
    }
    Filter::compile(&f, layer)
        .map_err(|e| CliError::failed(format!("error: invalid filter\n{}", e.render(&f))))?;
    Ok(f)
}

/// The process name (`/proc/PID/comm`), `???` when unknown.
pub(crate) fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "???".to_string())
}

/// An address as WinDivert prints it (IPv4-mapped addresses as dotted IPv4).
pub(crate) fn ip(a: Ipv6Addr) -> String {
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4).to_string(),
        None => a.to_string(),
    }
}

/// `TCP`, `UDP`, `ICMP`, `ICMPV6` or the number.
pub(crate) fn protocol(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPV6".into(),
        n => n.to_string(),
    }
}

/// Print one line per event from `recv` until it has no more data or `count` events
/// (0 = no limit) have been printed.
pub(crate) fn print_events(
    mut recv: impl FnMut() -> Result<Address, Error>,
    count: u64,
    line: fn(&Address) -> String,
) -> Result<ExitCode, CliError> {
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        match recv() {
            Ok(ev) => {
                let _ = writeln!(out, "{}", line(&ev));
                let _ = out.flush();
                n += 1;
                if count != 0 && n >= count {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(Error::NoData) => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(CliError::failed(format!("failed to read event: {e}"))),
        }
    }
}

/// One socketdump line.
pub(crate) fn socket_line(a: &Address) -> String {
    let f = a.flow_data().copied().unwrap_or_default();
    let mut s = format!(
        "{} pid={} program={} endpoint={} parent={} protocol={}",
        a.event,
        f.process_id,
        comm(f.process_id),
        f.endpoint_id,
        f.parent_endpoint_id,
        protocol(f.protocol)
    );
    if f.local_port != 0 || !f.local_addr.is_unspecified() {
        s += &format!(" local=[{}]:{}", ip(f.local_addr), f.local_port);
    }
    if f.remote_port != 0 || !f.remote_addr.is_unspecified() {
        s += &format!(" remote=[{}]:{}", ip(f.remote_addr), f.remote_port);
    }
    s
}

pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(argv, &["--netns", "--priority", "--count"], &["--block"])?;
    let filter = filter_arg(&a, Layer::Socket, 0)?;
    let priority: i64 = a.number("--priority", 1121)?;
    let count: u64 = a.number("--count", 0)?;
    let block = a.flag("--block");
    let mut o = SocketOptions::new(&filter)
        .priority(priority as i16)
        .flags(if block {
            Flags::RECV_ONLY
        } else {
            Flags::SNIFF | Flags::RECV_ONLY
        });
    if let Some(p) = netns_path(&a) {
        o = o.netns_path(p);
    }
    let h = o.open().map_err(|e| {
        CliError::failed(format!(
            "error: failed to open the lindivert SOCKET handle: {e}"
        ))
    })?;
    print_events(|| h.recv(), count, socket_line)
}
