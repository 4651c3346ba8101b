//! The in-tree filter vectors (`tests/data/vectors.jsonl`, see `tests/data/README.md`),
//! written from FILTER.md independently of WinDivert's own test suite.
//!
//! Every evaluation line is checked three ways, each of which must give `expected`:
//! 1. the compiled filter (`Filter::compile` + `matches_packet`, and `matches_event` for the
//!    layers without packets);
//! 2. the filter rebuilt from its object text (`object::encode` → `Filter::compile`);
//! 3. the filter recompiled from the decompiled text (`format::format` → `Filter::compile`).
//!
//! Every error line must fail to compile with the given kind and byte position. All
//! mismatches are collected and listed before the test fails.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use lindivert_core::filter::{format, object, ErrorKind, Filter};
use lindivert_core::{Address, Event, Flags, FlowData, Layer, LayerData, NetworkData, ReflectData};
use serde_json::Value as Json;

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.jsonl")
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() & 1 == 1 {
        return Err(format!("odd hex length {}", s.len()));
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn kind_name(k: ErrorKind) -> &'static str {
    k.name().trim_start_matches("WINDIVERT_ERROR_")
}

fn layer_of(v: &Json) -> Result<Layer, String> {
    v.as_str()
        .and_then(Layer::parse)
        .ok_or_else(|| format!("bad layer {v}"))
}

fn event_of(v: Option<&Json>, layer: Layer) -> Result<Event, String> {
    let Some(v) = v else {
        return Ok(match layer {
            Layer::Network | Layer::NetworkForward => Event::NetworkPacket,
            Layer::Flow => Event::FlowEstablished,
            Layer::Socket => Event::SocketBind,
            Layer::Reflect => Event::ReflectOpen,
        });
    };
    if let Some(n) = v.as_u64() {
        return u8::try_from(n)
            .ok()
            .and_then(Event::from_u8)
            .ok_or_else(|| format!("bad event {n}"));
    }
    let name = v.as_str().ok_or_else(|| format!("bad event {v}"))?;
    (0..=Event::MAX)
        .filter_map(Event::from_u8)
        .find(|e| e.macro_name() == name && e.valid_for(layer))
        .ok_or_else(|| format!("event {name} does not exist at {layer}"))
}

fn u64_of(a: &Json, key: &str) -> Result<u64, String> {
    match a.get(key) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be an unsigned integer")),
    }
}

fn addr_of(a: &Json, key: &str) -> Result<Ipv6Addr, String> {
    match a.get(key).and_then(|v| v.as_str()) {
        None => Ok(Ipv6Addr::UNSPECIFIED),
        Some(s) => s.parse().map_err(|e| format!("`{key}`: {e}")),
    }
}

fn is_v4_mapped(a: Ipv6Addr) -> bool {
    a.to_ipv4_mapped().is_some()
}

/// The address of a vector line. Missing keys are 0/false; `event` defaults to the layer's
/// first event (PACKET, ESTABLISHED, BIND, OPEN); `ipv6` follows the packet's IP version at
/// NETWORK/NETWORK_FORWARD and the local (else remote) address at FLOW/SOCKET.
fn address(layer: Layer, a: &Json, packet: &[u8]) -> Result<Address, String> {
    let flag = |k: &str| a.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut addr = Address::network(flag("outbound"));
    addr.layer = layer;
    addr.event = event_of(a.get("event"), layer)?;
    addr.loopback = flag("loopback");
    addr.impostor = flag("impostor");
    addr.timestamp = match a.get("timestamp") {
        None => 0,
        Some(v) => v.as_i64().ok_or("`timestamp` must be an i64")?,
    };
    let u32_of = |k: &str| -> Result<u32, String> {
        u32::try_from(u64_of(a, k)?).map_err(|_| format!("`{k}` is out of range"))
    };
    addr.data = match layer {
        Layer::Network | Layer::NetworkForward => {
            addr.ipv6 = packet.first().map(|b| b >> 4) == Some(6);
            LayerData::Network(NetworkData {
                if_idx: u32_of("if_idx")?,
                sub_if_idx: u32_of("sub_if_idx")?,
            })
        }
        Layer::Flow | Layer::Socket => {
            let d = FlowData {
                endpoint_id: u64_of(a, "endpoint_id")?,
                parent_endpoint_id: u64_of(a, "parent_endpoint_id")?,
                process_id: u32_of("process_id")?,
                local_addr: addr_of(a, "local_addr")?,
                remote_addr: addr_of(a, "remote_addr")?,
                local_port: u16::try_from(u64_of(a, "local_port")?).map_err(|e| e.to_string())?,
                remote_port: u16::try_from(u64_of(a, "remote_port")?).map_err(|e| e.to_string())?,
                protocol: u8::try_from(u64_of(a, "protocol")?).map_err(|e| e.to_string())?,
            };
            let probe = if d.local_addr.is_unspecified() {
                d.remote_addr
            } else {
                d.local_addr
            };
            addr.ipv6 = match a.get("ipv6") {
                Some(v) => v.as_bool().unwrap_or(false),
                None => !is_v4_mapped(probe),
            };
            if layer == Layer::Flow {
                LayerData::Flow(d)
            } else {
                LayerData::Socket(d)
            }
        }
        Layer::Reflect => {
            let reflect_layer = match a.get("reflect_layer") {
                None => Layer::Network,
                Some(v) => match v.as_u64() {
                    Some(n) => u32::try_from(n)
                        .ok()
                        .and_then(Layer::from_u32)
                        .ok_or("bad reflect_layer")?,
                    None => layer_of(v)?,
                },
            };
            let priority = match a.get("priority") {
                None => 0,
                Some(v) => v
                    .as_i64()
                    .and_then(|p| i16::try_from(p).ok())
                    .ok_or("bad priority")?,
            };
            LayerData::Reflect(ReflectData {
                timestamp: a
                    .get("reflect_timestamp")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
                process_id: u32_of("process_id")?,
                layer: reflect_layer,
                flags: Flags::NONE,
                priority,
            })
        }
    };
    Ok(addr)
}

/// Evaluates `f`; for the layers without packets also checks that `matches_event` agrees.
fn eval(f: &Filter, bytes: &[u8], addr: &Address) -> Result<bool, String> {
    let r = f.matches_packet(bytes, addr).map_err(|e| e.to_string())?;
    if !addr.layer.is_network() && f.matches_event(addr) != r {
        return Err("matches_event disagrees with matches_packet".into());
    }
    Ok(r)
}

/// Runs one line; returns the mismatches found (empty when it passes).
fn run_line(v: &Json) -> Result<Vec<String>, String> {
    let filter = v["filter"].as_str().ok_or("missing `filter`")?;
    let layer = layer_of(&v["layer"])?;
    if let Some(kind) = v.get("error") {
        let kind = kind.as_str().ok_or("`error` must be a string")?;
        let pos = v["pos"].as_u64().ok_or("missing `pos`")? as usize;
        return Ok(match Filter::compile(filter, layer) {
            Ok(_) => vec![format!(
                "compiler: expected {kind} at {pos}, but it compiled"
            )],
            Err(e) if kind_name(e.kind) != kind || e.pos != pos => vec![format!(
                "compiler: expected {kind} at {pos}, got {} at {} ({e})",
                kind_name(e.kind),
                e.pos
            )],
            Err(_) => vec![],
        });
    }
    let expected = v["expected"].as_bool().ok_or("missing `expected`")?;
    let bytes = match v.get("packet").and_then(|p| p.as_str()) {
        Some(h) => hex(h)?,
        None => Vec::new(),
    };
    let addr = address(layer, &v["address"], &bytes)?;
    let mut bad = Vec::new();
    let f = match Filter::compile(filter, layer) {
        Ok(f) => f,
        Err(e) => return Ok(vec![format!("compiler: does not compile: {e}")]),
    };
    match eval(&f, &bytes, &addr) {
        Ok(r) if r == expected => {}
        Ok(r) => bad.push(format!("evaluator: gave {r}")),
        Err(e) => bad.push(format!("evaluator: {e}")),
    }
    let text = object::encode(f.object());
    match Filter::compile(&text, layer) {
        Err(e) => bad.push(format!("object: `{text}` does not decode: {e}")),
        Ok(g) => {
            if g.object() != f.object() {
                bad.push(format!("object: `{text}` decodes to another object"));
            }
            match eval(&g, &bytes, &addr) {
                Ok(r) if r == expected => {}
                Ok(r) => bad.push(format!("object: `{text}` gave {r}")),
                Err(e) => bad.push(format!("object: {e}")),
            }
        }
    }
    let formatted = format::format(f.object(), layer);
    match Filter::compile(&formatted, layer) {
        Err(e) => bad.push(format!("format: `{formatted}` does not compile: {e}")),
        Ok(h) => match eval(&h, &bytes, &addr) {
            Ok(r) if r == expected => {}
            Ok(r) => bad.push(format!("format: `{formatted}` gave {r}")),
            Err(e) => bad.push(format!("format: {e}")),
        },
    }
    Ok(bad)
}

#[test]
fn own_vectors() {
    let path = data_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (mut cases, mut evals, mut errors) = (0, 0, 0);
    let mut failures = Vec::new();
    // Lines marked `known_bug` document a reported bug: they are listed, not failed, and
    // fail once they pass (so that the mark gets removed).
    let mut known = Vec::new();
    let mut differences = std::collections::BTreeMap::<String, usize>::new();
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Json = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("line {lineno}: invalid JSON: {e}"));
                continue;
            }
        };
        cases += 1;
        if v.get("error").is_some() {
            errors += 1;
        } else {
            evals += 1;
        }
        if let Some(d) = v.get("difference").and_then(|d| d.as_str()) {
            *differences.entry(d.to_string()).or_default() += 1;
        }
        let filter = v["filter"].as_str().unwrap_or("");
        let shown: String = filter.chars().take(100).collect();
        let ctx = format!(
            "line {lineno} [{} {}{}] `{shown}`",
            v["layer"].as_str().unwrap_or("?"),
            v.get("packet_name").and_then(|p| p.as_str()).unwrap_or("-"),
            v.get("difference")
                .and_then(|d| d.as_str())
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
        );
        let known_bug = v.get("known_bug").and_then(|k| k.as_str());
        match (run_line(&v), known_bug) {
            (Ok(bad), None) => failures.extend(bad.into_iter().map(|b| format!("{ctx}: {b}"))),
            (Ok(bad), Some(bug)) if !bad.is_empty() => {
                known.push(format!("{ctx}: {bug}: {}", bad.join("; ")));
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{ctx}: passes now: remove its `known_bug` mark"))
            }
            (Err(e), _) => failures.push(format!("{ctx}: malformed vector: {e}")),
        }
    }
    println!(
        "own vectors: {cases} cases ({evals} evaluations × 3 ways, {errors} compile errors), \
         differences pinned: {differences:?}, {} mismatches, {} known bugs",
        failures.len(),
        known.len()
    );
    if !known.is_empty() {
        println!("KNOWN BUGS ({}):\n{}", known.len(), known.join("\n"));
    }
    assert!(cases >= 250, "expected at least 250 vectors, found {cases}");
    for d in ["F1", "F2", "F3", "F4", "F5", "F6", "F7"] {
        assert!(differences.contains_key(d), "no vector pins difference {d}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
