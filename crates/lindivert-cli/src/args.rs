//! A small argument parser: positional arguments plus `--flag` and `--key VALUE` options.

use lindivert_core::Layer;

/// A command-line error: a message and an exit status.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
    pub show_usage: bool,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
            show_usage: true,
        }
    }
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
            show_usage: false,
        }
    }
}

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<String>,
    pub flags: Vec<String>,
    pub options: Vec<(String, String)>,
}

impl Args {
    /// Parse `argv` given the option names that take a value. `--` ends option parsing.
    pub fn parse(argv: &[String], valued: &[&str], boolean: &[&str]) -> Result<Args, CliError> {
        let mut out = Args::default();
        let mut i = 0;
        let mut only_positional = false;
        while i < argv.len() {
            let a = &argv[i];
            if !only_positional && a == "--" {
                only_positional = true;
            } else if !only_positional && a.starts_with('-') && a.len() > 1 && !looks_negative(a) {
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                };
                if valued.contains(&name.as_str()) {
                    let v = match inline {
                        Some(v) => v,
                        None => {
                            i += 1;
                            argv.get(i)
                                .cloned()
                                .ok_or_else(|| CliError::usage(format!("{name} needs a value")))?
                        }
                    };
                    out.options.push((name, v));
                } else if boolean.contains(&name.as_str()) && inline.is_none() {
                    out.flags.push(name);
                } else {
                    return Err(CliError::usage(format!("unknown option `{a}`")));
                }
            } else {
                out.positional.push(a.clone());
            }
            i += 1;
        }
        Ok(out)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn layer(&self) -> Result<Layer, CliError> {
        match self.option("--layer") {
            None => Ok(Layer::Network),
            Some(s) => Layer::parse(s).ok_or_else(|| {
                CliError::usage(format!(
                    "unknown layer `{s}` (network, network_forward, flow, socket, reflect)"
                ))
            }),
        }
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, CliError> {
        match self.option(name) {
            None => Ok(default),
            Some(s) => parse_number(s)
                .and_then(|v| v.to_string().parse::<T>().ok())
                .ok_or_else(|| CliError::usage(format!("{name}: `{s}` is not a valid number"))),
        }
    }
}

fn looks_negative(a: &str) -> bool {
    a.len() > 1 && a[1..].chars().all(|c| c.is_ascii_digit())
}

/// Parse a decimal or `0x` hexadecimal integer, possibly negative.
pub fn parse_number(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(h, 16).ok()?
    } else {
        body.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}
