//! `lindivert ctl list|watch|kill PID [FILTER]`: WinDivert's windivertctl on the REFLECT
//! layer. `list` prints the open handles (OPEN events until NoData after an immediate
//! shutdown), `watch` prints OPEN and CLOSE live, `kill PID` SIGKILLs a process that owns a
//! handle (after checking that it has one).

use crate::args::{Args, CliError};
use crate::socketdump::{filter_arg, netns_path};
use lindivert::core::address::ReflectData;
use lindivert::core::filter::{format, object};
use lindivert::core::Event;
use lindivert::reflect::ReflectOptions;
use lindivert::sys::time::monotonic_ns;
use lindivert::{Address, Error, Flags, Layer, Shutdown};
use std::io::Write;
use std::process::ExitCode;

fn flags_text(f: Flags) -> String {
    let names = [
        (Flags::SNIFF, "SNIFF"),
        (Flags::DROP, "DROP"),
        (Flags::RECV_ONLY, "RECV_ONLY"),
        (Flags::SEND_ONLY, "SEND_ONLY"),
        (Flags::NO_INSTALL, "NO_INSTALL"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

fn filter_text(obj: &[u8], layer: Layer) -> String {
    let s = String::from_utf8_lossy(obj);
    let s = s.trim_end_matches('\0');
    match object::decode(s, layer) {
        Ok(o) => format::format(&o, layer),
        Err(_) => s.to_string(),
    }
}

fn exe(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "???".into())
}

/// One windivertctl line.
pub(crate) fn line(tag: &str, obj: &[u8], a: &Address, start: i64) -> String {
    let d: ReflectData = *a.reflect_data().expect("reflect data");
    format!(
        "{tag} time={:.3}s pid={} exe={} layer={} flags={} priority={} filter=\"{}\"",
        (d.timestamp - start) as f64 / 1e9,
        d.process_id,
        exe(d.process_id),
        d.layer.macro_name(),
        flags_text(d.flags),
        d.priority,
        filter_text(obj, d.layer)
    )
}

pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(argv, &["--netns"], &[])?;
    let Some(cmd) = a.positional.first().cloned() else {
        return Err(CliError::usage("ctl needs list, watch or kill PID"));
    };
    let (kill, findex) = match cmd.as_str() {
        "list" | "watch" => (None, 1),
        "kill" => {
            let pid: u32 = a
                .positional
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| CliError::usage("ctl kill needs a PID"))?;
            (Some(pid), 2)
        }
        other => return Err(CliError::usage(format!("unknown ctl command `{other}`"))),
    };
    let filter = filter_arg(&a, Layer::Reflect, findex)?;
    let mut o = ReflectOptions::new(&filter).priority(-333);
    if let Some(p) = netns_path(&a) {
        o = o.netns_path(p);
    }
    let h = o.open().map_err(|e| {
        CliError::failed(format!(
            "error: failed to open the lindivert REFLECT handle: {e}"
        ))
    })?;
    let watch = cmd == "watch";
    if !watch {
        h.shutdown(Shutdown::Both)
            .map_err(|e| CliError::failed(e.to_string()))?;
    }
    let start = monotonic_ns();
    let mut out = std::io::stdout().lock();
    let mut found = false;
    loop {
        let (obj, addr) = match h.recv() {
            Ok(x) => x,
            Err(Error::NoData) => break,
            Err(e) => return Err(CliError::failed(format!("failed to read event: {e}"))),
        };
        let pid = addr.reflect_data().map_or(0, |d| d.process_id);
        match (kill, addr.event) {
            (Some(k), Event::ReflectOpen) if pid == k => {
                let _ = writeln!(out, "{}", line("KILL", &obj, &addr, start));
                found = true;
            }
            (Some(_), _) => {}
            (None, Event::ReflectOpen) => {
                let _ = writeln!(out, "{}", line("OPEN", &obj, &addr, start));
            }
            (None, _) if watch => {
                let _ = writeln!(out, "{}", line("CLOSE", &obj, &addr, start));
            }
            _ => {}
        }
        let _ = out.flush();
    }
    if let Some(pid) = kill {
        if !found {
            return Err(CliError::failed(format!(
                "error: process {pid} has no open lindivert handle"
            )));
        }
        lindivert::sys::process::kill(pid, lindivert::sys::process::SIGKILL)
            .map_err(|e| CliError::failed(format!("error: failed to kill process {pid}: {e}")))?;
    }
    Ok(ExitCode::SUCCESS)
}
