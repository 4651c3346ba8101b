//! `lindivert flowtrack [FILTER]`: WinDivert's flowtrack sample. On a terminal, a live
//! table of the open flows (process id, program, protocol, local ----> remote), redrawn
//! every second; otherwise one line per ESTABLISHED/DELETED event.

use crate::args::{Args, CliError};
use crate::socketdump::{comm, filter_arg, ip, netns_path, print_events};
use lindivert::core::address::FlowData;
use lindivert::core::Event;
use lindivert::flow::FlowOptions;
use lindivert::{Address, Error, Layer};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn prot(p: u8) -> String {
    match p {
        6 => "TCP    ".into(),
        17 => "UDP    ".into(),
        1 => "ICMP   ".into(),
        58 => "ICMPV6 ".into(),
        n => format!("{n:<6} "),
    }
}

fn flow_text(f: &FlowData, outbound: bool) -> String {
    format!(
        "{}:{} {} {}:{}",
        ip(f.local_addr),
        f.local_port,
        if outbound { "---->" } else { "<----" },
        ip(f.remote_addr),
        f.remote_port
    )
}

/// One line per event (stdout is not a terminal).
pub(crate) fn flow_line(a: &Address) -> String {
    let f = a.flow_data().copied().unwrap_or_default();
    format!(
        "{} pid={} program={} protocol={} flow={} endpoint={} parent={}",
        a.event,
        f.process_id,
        comm(f.process_id),
        prot(f.protocol).trim_end(),
        flow_text(&f, a.outbound),
        f.endpoint_id,
        f.parent_endpoint_id
    )
}

pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let a = Args::parse(
        argv,
        &["--netns", "--priority", "--count", "--udp-timeout"],
        &["--lines"],
    )?;
    let filter = filter_arg(&a, Layer::Flow, 0)?;
    let priority: i64 = a.number("--priority", 776)?;
    let count: u64 = a.number("--count", 0)?;
    let udp_timeout: u64 = a.number("--udp-timeout", 60)?;
    let mut o = FlowOptions::new(&filter)
        .priority(priority as i16)
        .udp_timeout(Duration::from_secs(udp_timeout));
    if let Some(p) = netns_path(&a) {
        o = o.netns_path(p);
    }
    let h = o.open().map_err(|e| {
        CliError::failed(format!(
            "error: failed to open the lindivert FLOW handle: {e}"
        ))
    })?;
    let table_mode = std::io::stdout().is_terminal() && !a.flag("--lines");
    if !table_mode {
        return print_events(|| h.recv(), count, flow_line);
    }
    let flows: Arc<Mutex<Vec<Address>>> = Arc::new(Mutex::new(Vec::new()));
    let f2 = Arc::clone(&flows);
    let reader = std::thread::spawn(move || -> Result<(), Error> {
        loop {
            let ev = h.recv()?;
            let mut v = f2.lock().unwrap_or_else(|p| p.into_inner());
            match ev.event {
                Event::FlowEstablished => v.push(ev),
                _ => v.retain(|e| e.flow_data() != ev.flow_data()),
            }
        }
    });
    loop {
        if reader.is_finished() {
            return match reader.join() {
                Ok(Err(e)) => Err(CliError::failed(format!("failed to read event: {e}"))),
                _ => Ok(ExitCode::SUCCESS),
            };
        }
        let rows = 40usize;
        let mut s = String::from(
            "\x1b[H\x1b[2J\x1b[7mPID        PROGRAM              PROT   FLOW\x1b[0m\n",
        );
        let v = flows.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (i, e) in v.iter().enumerate() {
            if i + 1 >= rows && v.len() > rows {
                s += "...\n";
                break;
            }
            let f = e.flow_data().copied().unwrap_or_default();
            let name: String = comm(f.process_id).chars().take(20).collect();
            s += &format!(
                "{:<10} {:<20} {}{}\n",
                f.process_id,
                name,
                prot(f.protocol),
                flow_text(&f, e.outbound)
            );
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        drop(out);
        std::thread::sleep(Duration::from_secs(1));
    }
}
