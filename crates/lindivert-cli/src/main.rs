//! `lindivert`: the command-line tool. The WinDivert samples as subcommands, and filter tools.

mod args;
mod common;
mod ctl;
mod filter_cmd;
mod flowtrack;
mod network_cmd;
mod pcapng;
mod socketdump;
mod streamdump;
mod webfilter;

use std::process::ExitCode;

const USAGE: &str = "\
lindivert: WinDivert for Linux

usage:
  lindivert filter check FILTER [--layer L]
  lindivert filter compile FILTER [--layer L]
  lindivert filter format FILTER_OR_OBJECT [--layer L]
  lindivert filter eval FILTER [PACKET_HEX] [--layer L] [--outbound|--inbound] [--loopback]
                        [--impostor] [--if-idx N] [--sub-if-idx N]
  lindivert filter eval --batch        (JSON lines on stdin, one result line each)
  lindivert netdump [FILTER] [--priority N] [-w FILE.pcapng] [--count N] [-q] [--netns NAME]
  lindivert netfilter FILTER [--priority N] [--netns NAME]
  lindivert passthru [FILTER] [--threads N] [--batch N] [--priority N] [--duration S] [--copy]
                     [--busy-poll US] [--work-us US] [--spread flow|cpu] [--netns NAME]
  lindivert flowtrack [FILTER] [--udp-timeout S] [--lines] [--count N] [--netns NAME]
  lindivert socketdump [FILTER] [--block] [--count N] [--netns NAME]
  lindivert ctl (list|watch|kill PID) [FILTER] [--netns NAME]
  lindivert webfilter BLACKLIST... [--priority N] [--netns NAME]
  lindivert streamdump PORT [--proxy-port N] [--alt-port N] [--priority N] [--netns NAME]

layers: network (default), network_forward, flow, socket, reflect
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &argv[1..];
    let result = match cmd.as_str() {
        "filter" => filter_cmd::run(rest),
        "netdump" => network_cmd::netdump(rest),
        "netfilter" => network_cmd::netfilter(rest),
        "passthru" => network_cmd::passthru(rest),
        "webfilter" => webfilter::run(rest),
        "streamdump" => streamdump::run(rest),
        "flowtrack" => flowtrack::run(rest),
        "socketdump" => socketdump::run(rest),
        "ctl" => ctl::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "--version" | "-V" => {
            println!("lindivert {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        other => Err(args::CliError::usage(format!("unknown command `{other}`"))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lindivert: {}", e.message);
            if e.show_usage {
                eprint!("\n{USAGE}");
            }
            ExitCode::from(e.code)
        }
    }
}
