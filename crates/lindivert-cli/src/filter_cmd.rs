//! `lindivert filter check|compile|format|eval`.

use crate::args::{Args, CliError};
use lindivert_core::filter::{self, Filter};
use lindivert_core::{Address, Layer, LayerData, NetworkData};
use std::io::{BufRead, Write};
use std::process::ExitCode;

const EVAL_FLAGS: &[&str] = &[
    "--outbound",
    "--inbound",
    "--loopback",
    "--impostor",
    "--batch",
];
const EVAL_OPTS: &[&str] = &["--layer", "--if-idx", "--sub-if-idx"];

pub fn run(argv: &[String]) -> Result<ExitCode, CliError> {
    let Some(sub) = argv.first() else {
        return Err(CliError::usage(
            "filter: missing subcommand (check, compile, format, eval)",
        ));
    };
    let rest = &argv[1..];
    match sub.as_str() {
        "check" => {
            let a = Args::parse(rest, &["--layer"], &[])?;
            let text = one_positional(&a, "FILTER")?;
            match Filter::compile(text, a.layer()?) {
                Ok(_) => {
                    println!("ok");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{}", e.render(text));
                    Ok(ExitCode::from(1))
                }
            }
        }
        "compile" => {
            let a = Args::parse(rest, &["--layer"], &[])?;
            let text = one_positional(&a, "FILTER")?;
            let f = compile_or_report(text, a.layer()?)?;
            println!("{}", filter::object::encode(f.object()));
            Ok(ExitCode::SUCCESS)
        }
        "format" => {
            let a = Args::parse(rest, &["--layer"], &[])?;
            let text = one_positional(&a, "FILTER_OR_OBJECT")?;
            let layer = a.layer()?;
            let f = compile_or_report(text, layer)?;
            println!("{}", filter::format::format(f.object(), layer));
            Ok(ExitCode::SUCCESS)
        }
        "eval" => {
            let a = Args::parse(rest, EVAL_OPTS, EVAL_FLAGS)?;
            if a.flag("--batch") {
                if !a.positional.is_empty() {
                    return Err(CliError::usage(
                        "eval --batch takes no positional arguments",
                    ));
                }
                return batch();
            }
            let layer = a.layer()?;
            let (text, hex) = match a.positional.as_slice() {
                [text, hex] => (text, hex.clone()),
                // The event layers have no packet: PACKET_HEX may be left out.
                [text] if !layer.is_network() => (text, String::new()),
                _ => return Err(CliError::usage("eval needs FILTER and PACKET_HEX")),
            };
            if a.flag("--outbound") && a.flag("--inbound") {
                return Err(CliError::usage(
                    "--outbound and --inbound exclude each other",
                ));
            }
            let req = EvalRequest {
                filter: text.clone(),
                packet_hex: hex,
                layer,
                outbound: a.flag("--outbound"),
                loopback: a.flag("--loopback"),
                impostor: a.flag("--impostor"),
                if_idx: a.number("--if-idx", 0u32)?,
                sub_if_idx: a.number("--sub-if-idx", 0u32)?,
            };
            match evaluate(&req) {
                Ok(r) => {
                    println!("{r}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(EvalFailure::Filter(e)) => {
                    println!("{}", e.render(text));
                    Ok(ExitCode::from(1))
                }
                Err(EvalFailure::Other(m)) => Err(CliError::failed(m)),
            }
        }
        other => Err(CliError::usage(format!(
            "filter: unknown subcommand `{other}`"
        ))),
    }
}

fn one_positional<'a>(a: &'a Args, what: &str) -> Result<&'a str, CliError> {
    match a.positional.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::usage(format!("missing {what}"))),
        _ => Err(CliError::usage(format!(
            "expected one {what} (quote the filter as a single argument)"
        ))),
    }
}

fn compile_or_report(text: &str, layer: Layer) -> Result<Filter, CliError> {
    Filter::compile(text, layer).map_err(|e| CliError::failed(e.render(text)))
}

/// One evaluation request (the command line, or one line of `--batch`).
pub struct EvalRequest {
    pub filter: String,
    pub packet_hex: String,
    pub layer: Layer,
    pub outbound: bool,
    pub loopback: bool,
    pub impostor: bool,
    pub if_idx: u32,
    pub sub_if_idx: u32,
}

pub enum EvalFailure {
    Filter(filter::FilterError),
    Other(String),
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if let Some((i, c)) = digits
        .iter()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(format!("packet hex: invalid digit `{c}` at {i}"));
    }
    if digits.len() & 1 == 1 {
        return Err(format!(
            "packet hex has an odd number of digits ({})",
            digits.len()
        ));
    }
    // Every digit is an ASCII hex digit (checked above), so to_digit cannot fail.
    Ok(digits
        .chunks_exact(2)
        .map(|p| (p[0].to_digit(16).unwrap_or(0) * 16 + p[1].to_digit(16).unwrap_or(0)) as u8)
        .collect())
}

pub fn evaluate(req: &EvalRequest) -> Result<bool, EvalFailure> {
    let f = Filter::compile(&req.filter, req.layer).map_err(EvalFailure::Filter)?;
    let packet = decode_hex(&req.packet_hex).map_err(EvalFailure::Other)?;
    let mut addr = Address::network(req.outbound);
    addr.layer = req.layer;
    addr.loopback = req.loopback;
    addr.impostor = req.impostor;
    addr.event = default_event(req.layer);
    addr.data = match req.layer {
        Layer::Network | Layer::NetworkForward => LayerData::Network(NetworkData {
            if_idx: req.if_idx,
            sub_if_idx: req.sub_if_idx,
        }),
        Layer::Flow => LayerData::Flow(Default::default()),
        Layer::Socket => LayerData::Socket(Default::default()),
        Layer::Reflect => LayerData::Reflect(lindivert_core::ReflectData {
            timestamp: 0,
            process_id: 0,
            layer: Layer::Network,
            flags: lindivert_core::Flags::NONE,
            priority: 0,
        }),
    };
    if req.layer.is_network() {
        addr.ipv6 = packet.first().map(|b| b >> 4) == Some(6);
        f.matches_packet(&packet, &addr)
            .map_err(|e| EvalFailure::Other(e.to_string()))
    } else {
        if !packet.is_empty() {
            return Err(EvalFailure::Other(format!(
                "the {} layer has no packet data: pass an empty PACKET_HEX",
                req.layer
            )));
        }
        Ok(f.matches_event(&addr))
    }
}

fn default_event(layer: Layer) -> lindivert_core::Event {
    use lindivert_core::Event;
    match layer {
        Layer::Network | Layer::NetworkForward => Event::NetworkPacket,
        Layer::Flow => Event::FlowEstablished,
        Layer::Socket => Event::SocketBind,
        Layer::Reflect => Event::ReflectOpen,
    }
}

fn batch_line(line: &str) -> String {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return format!("error: invalid JSON: {e}"),
    };
    let Some(obj) = v.as_object() else {
        return "error: each line must be a JSON object".to_string();
    };
    let get_bool = |k: &str| obj.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let get_u32 = |k: &str| -> Result<u32, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`{k}` must be an integer 0..=4294967295")),
        }
    };
    let Some(filter) = obj.get("filter").and_then(|v| v.as_str()) else {
        return "error: missing string `filter`".to_string();
    };
    let layer = match obj.get("layer") {
        None | Some(serde_json::Value::Null) => Layer::Network,
        Some(v) => match v.as_str().and_then(Layer::parse) {
            Some(l) => l,
            None => return format!("error: unknown layer {v}"),
        },
    };
    let (if_idx, sub_if_idx) = match (get_u32("if_idx"), get_u32("sub_if_idx")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return format!("error: {e}"),
    };
    let req = EvalRequest {
        filter: filter.to_string(),
        packet_hex: obj
            .get("packet")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string(),
        layer,
        outbound: get_bool("outbound"),
        loopback: get_bool("loopback"),
        impostor: get_bool("impostor"),
        if_idx,
        sub_if_idx,
    };
    match evaluate(&req) {
        Ok(r) => r.to_string(),
        Err(EvalFailure::Filter(e)) => format!("error: {e}"),
        Err(EvalFailure::Other(m)) => format!("error: {m}"),
    }
}

fn batch() -> Result<ExitCode, CliError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| CliError::failed(format!("reading stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", batch_line(&line))
            .map_err(|e| CliError::failed(format!("writing stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| CliError::failed(format!("writing stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
