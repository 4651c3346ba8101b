//! The filter tokenizer (WinDivert's `WinDivertTokenizeFilter`), with byte positions.
//!
//! Lexical rules (FILTER.md §2):
//! * whitespace is space, `\t`, `\n`, `\r`, `\f` and `\v`;
//! * punctuation `(` `)` `[` `]` `-` `?` `:` (a `:` directly followed by another `:` starts a
//!   word instead, as in `::1`);
//! * operators `=`/`==`, `!=`, `<`, `<=`, `>`, `>=`, `!`, `&&`, `||` (a single `&` or `|` is a
//!   bad token);
//! * words: a maximal run of `[A-Za-z0-9._:]` (plus `_`, needed by `NETWORK_FORWARD`) of at
//!   most 39 characters. A single trailing `:` is given back to the input, so `(x? y: z)`
//!   works when the colon is glued to `y`; a trailing `::` is kept.
//!
//! A word is resolved, first match wins, as: a symbol (case-sensitive keywords `and` `or`
//! `not`, `true`/`false`, field names, macros), the byte marker `b`, a decimal number (a
//! directly following `b`, as in `55b`, yields a number and a byte marker), a lower-case `0x`
//! hex number, an IPv4 literal (the IPv4-mapped value `::ffff:a.b.c.d`) or an IPv6 literal.
//!
//! Two WinDivert quirks are kept on purpose: a standalone `b` word is dropped (WinDivert
//! overwrites it with the next token, so `packet[10 b]` means `packet[10]`), and `0x` alone is
//! the number 0.
//!
//! Differences from WinDivert, all about error *positions* only: positions always point at
//! the first byte of the offending token (WinDivert reports one byte past a bad character,
//! the second character of a single `&`/`|`, and one byte early for a bad word whose trailing
//! `:` was given back). An embedded NUL byte is a bad token here; in C it ends the string.

use super::error::{ErrorKind, FilterError};
use super::fields::{macro_value, Field};
use crate::packet::addr;
use crate::types::Layer;

/// Longest word (WinDivert's `TOKEN_MAXLEN` − 1).
pub const MAX_WORD_LEN: usize = 39;

/// Most tokens a filter may have (WinDivert's token array holds `5 × 256 − 1` entries, and it
/// stops when fewer than two are free, so at most 1277 tokens plus the end marker).
pub const MAX_TOKENS: usize = 1278;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// `[`.
    SquareOpen,
    /// `]`.
    SquareClose,
    /// `-`.
    Minus,
    /// `?`.
    Question,
    /// `:`.
    Colon,
    /// `==` or `=`.
    Eq,
    /// `!=`.
    Neq,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `not` or `!`.
    Not,
    /// `and` or `&&`.
    And,
    /// `or` or `||`.
    Or,
    /// The constant test `true`.
    True,
    /// The constant test `false`.
    False,
    /// A field name valid for the layer.
    Field(Field),
    /// A macro that is not valid for the layer, such as `CONNECT` at NETWORK (kept as a word;
    /// the parser rejects it, as WinDivert does).
    Macro(&'static str),
    /// A number: decimal, `0x` hex, IPv4 (mapped) or IPv6 literal, or a macro valid for the
    /// layer.
    Number(u128),
    /// The byte-index marker `b` that directly follows a decimal number (`packet[3b]`).
    Bytes,
    /// The end of the filter.
    End,
}

/// A token and where it is in the filter text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The kind (and value).
    pub kind: TokenKind,
    /// Byte offset of the token's first character.
    pub pos: usize,
    /// Length in bytes (0 for [`TokenKind::End`]).
    pub len: usize,
}

const MACROS: [&str; 20] = [
    "TRUE",
    "FALSE",
    "TCP",
    "UDP",
    "ICMP",
    "ICMPV6",
    "PACKET",
    "ESTABLISHED",
    "DELETED",
    "BIND",
    "CONNECT",
    "LISTEN",
    "ACCEPT",
    "CLOSE",
    "OPEN",
    "NETWORK",
    "NETWORK_FORWARD",
    "FLOW",
    "SOCKET",
    "REFLECT",
];

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0C | 0x0B)
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'_')
}

/// Tokenize `text` for `layer`. The last token is always [`TokenKind::End`].
pub fn tokenize(text: &str, layer: Layer) -> Result<Vec<Token>, FilterError> {
    let s = text.as_bytes();
    let mut toks: Vec<Token> = Vec::new();
    let mut i = 0usize;
    loop {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        let start = i;
        if toks.len() >= MAX_TOKENS {
            return Err(FilterError::new(
                ErrorKind::TooLong,
                start,
                format!("more than {} tokens", MAX_TOKENS - 1),
            ));
        }
        let Some(&c) = s.get(i) else {
            toks.push(Token {
                kind: TokenKind::End,
                pos: start,
                len: 0,
            });
            return Ok(toks);
        };
        let next = s.get(i + 1).copied();
        let punct = |kind, len| Token {
            kind,
            pos: start,
            len,
        };
        let tok = match c {
            b'(' => Some(punct(TokenKind::Open, 1)),
            b')' => Some(punct(TokenKind::Close, 1)),
            b'[' => Some(punct(TokenKind::SquareOpen, 1)),
            b']' => Some(punct(TokenKind::SquareClose, 1)),
            b'-' => Some(punct(TokenKind::Minus, 1)),
            b'?' => Some(punct(TokenKind::Question, 1)),
            b'!' if next == Some(b'=') => Some(punct(TokenKind::Neq, 2)),
            b'!' => Some(punct(TokenKind::Not, 1)),
            b'=' if next == Some(b'=') => Some(punct(TokenKind::Eq, 2)),
            b'=' => Some(punct(TokenKind::Eq, 1)),
            b'<' if next == Some(b'=') => Some(punct(TokenKind::Le, 2)),
            b'<' => Some(punct(TokenKind::Lt, 1)),
            b'>' if next == Some(b'=') => Some(punct(TokenKind::Ge, 2)),
            b'>' => Some(punct(TokenKind::Gt, 1)),
            b':' if next != Some(b':') => Some(punct(TokenKind::Colon, 1)),
            b'&' | b'|' => {
                if next != Some(c) {
                    let op = if c == b'&' { "&&" } else { "||" };
                    return Err(FilterError::new(
                        ErrorKind::BadToken,
                        start,
                        format!("a single `{}` is not an operator; write `{op}`", c as char),
                    ));
                }
                let kind = if c == b'&' {
                    TokenKind::And
                } else {
                    TokenKind::Or
                };
                Some(punct(kind, 2))
            }
            _ => None,
        };
        if let Some(tok) = tok {
            i += tok.len;
            toks.push(tok);
            continue;
        }
        if !is_word_char(c) {
            return Err(FilterError::new(
                ErrorKind::BadToken,
                start,
                format!("unexpected character {}", describe_char(text, start)),
            ));
        }
        // A word.
        let mut end = start;
        while end < s.len() && is_word_char(s[end]) {
            end += 1;
            if end - start > MAX_WORD_LEN {
                return Err(FilterError::new(
                    ErrorKind::BadToken,
                    start,
                    format!("a word is longer than {MAX_WORD_LEN} characters"),
                ));
            }
        }
        // Give back a single trailing ':' (but keep a trailing "::").
        if end - start >= 2 && s[end - 1] == b':' && s[end - 2] != b':' {
            end -= 1;
        }
        i = end;
        // Words are ASCII, so slicing on these byte offsets is on char boundaries.
        let word = text.get(start..end).unwrap_or("");
        let len = end - start;
        let tok = |kind| Token {
            kind,
            pos: start,
            len,
        };
        match resolve_word(word, layer, start)? {
            Word::Token(kind) => toks.push(tok(kind)),
            Word::NumberBytes(v) => {
                toks.push(Token {
                    kind: TokenKind::Number(v),
                    pos: start,
                    len: len - 1,
                });
                toks.push(Token {
                    kind: TokenKind::Bytes,
                    pos: end - 1,
                    len: 1,
                });
            }
            Word::Dropped => {}
        }
    }
}

enum Word {
    Token(TokenKind),
    NumberBytes(u128),
    Dropped,
}

fn resolve_word(word: &str, layer: Layer, pos: usize) -> Result<Word, FilterError> {
    // 1. The symbol table.
    match word {
        "and" => return Ok(Word::Token(TokenKind::And)),
        "or" => return Ok(Word::Token(TokenKind::Or)),
        "not" => return Ok(Word::Token(TokenKind::Not)),
        "true" => return Ok(Word::Token(TokenKind::True)),
        "false" => return Ok(Word::Token(TokenKind::False)),
        _ => {}
    }
    if let Some(field) = Field::from_name(word) {
        if !field.valid_for(layer) {
            return Err(FilterError::new(
                ErrorKind::BadTokenForLayer,
                pos,
                format!(
                    "field `{word}` is not available at the {layer} layer (valid at: {})",
                    valid_layers(field)
                ),
            ));
        }
        return Ok(Word::Token(TokenKind::Field(field)));
    }
    if let Some(m) = macro_value(word, layer) {
        return Ok(Word::Token(match m {
            Some(v) => TokenKind::Number(u128::from(v)),
            None => TokenKind::Macro(MACROS.iter().copied().find(|n| *n == word).unwrap_or("?")),
        }));
    }
    // 2. The byte marker.
    if word == "b" {
        return Ok(Word::Dropped);
    }
    // 3. Decimal, with an optional `b` suffix.
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        if let Some(v) = parse_radix(&word[..digits], 10) {
            match &word[digits..] {
                "" => return Ok(Word::Token(TokenKind::Number(v))),
                "b" => return Ok(Word::NumberBytes(v)),
                _ => {}
            }
        }
    }
    // 4. Hex: lower-case `0x` then hex digits (WinDivert accepts `0x` alone as 0).
    if let Some(hex) = word.strip_prefix("0x") {
        if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(v) = parse_radix(hex, 16) {
                return Ok(Word::Token(TokenKind::Number(v)));
            }
        }
    }
    // 5. IPv4, as the IPv4-mapped IPv6 value.
    if let Some(v4) = addr::parse_ipv4(word) {
        return Ok(Word::Token(TokenKind::Number(
            0xFFFF_0000_0000 | u128::from(v4),
        )));
    }
    // 6. IPv6.
    if let Some(v6) = addr::parse_ipv6(word) {
        return Ok(Word::Token(TokenKind::Number(v6)));
    }
    Err(FilterError::new(
        ErrorKind::BadToken,
        pos,
        bad_word_detail(word),
    ))
}

/// Parse digits in `radix` into a `u128`; `None` on overflow. An empty string is 0.
fn parse_radix(digits: &str, radix: u32) -> Option<u128> {
    let mut v: u128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        v = v
            .checked_mul(u128::from(radix))?
            .checked_add(u128::from(d))?;
    }
    Some(v)
}

fn valid_layers(field: Field) -> String {
    Layer::ALL
        .iter()
        .filter(|l| field.valid_for(**l))
        .map(|l| l.macro_name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_char(text: &str, pos: usize) -> String {
    match text.get(pos..).and_then(|t| t.chars().next()) {
        Some('\0') => "NUL".to_string(),
        Some(c) if c.is_control() => format!("{:?}", c),
        Some(c) => format!("`{c}`"),
        None => "(invalid UTF-8)".to_string(),
    }
}

/// Every word of the symbol table, for suggestions.
fn symbols() -> impl Iterator<Item = &'static str> {
    ["and", "or", "not", "true", "false"]
        .into_iter()
        .chain(Field::ALL.iter().map(|f| f.name()))
        .chain(MACROS.iter().copied())
}

fn bad_word_detail(word: &str) -> String {
    if let Some(s) = symbols().find(|s| s.eq_ignore_ascii_case(word)) {
        let what = if Field::from_name(s).is_some() {
            "field"
        } else {
            "word"
        };
        return format!("unknown {what} `{word}` (names are case-sensitive: did you mean `{s}`?)");
    }
    if word.starts_with("0X") {
        return format!("bad number `{word}` (hex numbers start with a lower-case `0x`)");
    }
    if word.bytes().next().is_some_and(|b| b.is_ascii_digit()) || word.contains(':') {
        if word.bytes().all(|b| b.is_ascii_digit()) {
            return format!("number `{word}` does not fit in 128 bits");
        }
        if let Some(hex) = word.strip_prefix("0x") {
            if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return format!("number `{word}` does not fit in 128 bits");
            }
        }
        return format!("`{word}` is neither a number nor an IPv4/IPv6 address");
    }
    if let Some((head, _)) = word.split_once('.') {
        if Field::ALL
            .iter()
            .any(|f| f.name().split_once('.').is_some_and(|(h, _)| h == head))
        {
            return format!("unknown field `{word}`");
        }
    }
    format!("unknown word `{word}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        tokenize(s, Layer::Network)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn err(s: &str, layer: Layer) -> (ErrorKind, usize) {
        let e = tokenize(s, layer).unwrap_err();
        (e.kind, e.pos)
    }

    use TokenKind::*;

    #[test]
    fn punctuation_and_operators() {
        assert_eq!(
            kinds("( ) [ ] - ? : = == != < <= > >= ! && || and or not"),
            vec![
                Open,
                Close,
                SquareOpen,
                SquareClose,
                Minus,
                Question,
                Colon,
                Eq,
                Eq,
                Neq,
                Lt,
                Le,
                Gt,
                Ge,
                Not,
                And,
                Or,
                And,
                Or,
                Not,
                End
            ]
        );
        assert_eq!(
            kinds("!!!tcp"),
            vec![Not, Not, Not, Field(super::Field::Tcp), End]
        );
    }

    #[test]
    fn positions() {
        let t = tokenize("  tcp.DstPort ==\t80", Layer::Network).unwrap();
        assert_eq!((t[0].pos, t[0].len), (2, 11));
        assert_eq!((t[1].pos, t[1].len), (14, 2));
        assert_eq!((t[2].pos, t[2].len), (17, 2));
        assert_eq!(t[3].kind, End);
        assert_eq!(t[3].pos, 19);
    }

    #[test]
    fn single_amp_or_pipe_is_bad() {
        assert_eq!(err("tcp & udp", Layer::Network), (ErrorKind::BadToken, 4));
        assert_eq!(err("tcp | udp", Layer::Network), (ErrorKind::BadToken, 4));
        assert_eq!(err("tcp &", Layer::Network), (ErrorKind::BadToken, 4));
    }

    #[test]
    fn bad_characters() {
        assert_eq!(err("tcp @", Layer::Network), (ErrorKind::BadToken, 4));
        assert_eq!(err("tcp\0", Layer::Network), (ErrorKind::BadToken, 3));
        assert_eq!(err("é", Layer::Network), (ErrorKind::BadToken, 0));
        assert_eq!(err("tcp == 1,", Layer::Network), (ErrorKind::BadToken, 8));
    }

    #[test]
    fn word_length_limit() {
        let w39 = "9".repeat(39);
        assert_eq!(err(&w39, Layer::Network), (ErrorKind::BadToken, 0)); // > 2^128
        let w39 = format!("0x{}", "0".repeat(37));
        assert_eq!(kinds(&w39), vec![Number(0), End]);
        let w40 = format!("0x{}", "0".repeat(38));
        let e = tokenize(&format!("tcp and {w40}"), Layer::Network).unwrap_err();
        assert_eq!((e.kind, e.pos), (ErrorKind::BadToken, 8));
        assert!(e.detail.contains("longer than 39"));
    }

    #[test]
    fn trailing_colon_given_back() {
        assert_eq!(
            kinds("(tcp? udp: icmp)"),
            vec![
                Open,
                Field(super::Field::Tcp),
                Question,
                Field(super::Field::Udp),
                Colon,
                Field(super::Field::Icmp),
                Close,
                End
            ]
        );
        // `::` at the end is kept: `1::` is an IPv6 literal.
        assert_eq!(kinds("1::"), vec![Number(1u128 << 112), End]);
        // A colon glued on both sides makes one (bad) word.
        assert_eq!(
            err("tcp.Ack:tcp.Fin", Layer::Network).0,
            ErrorKind::BadToken
        );
        // `: :` are two colons.
        assert_eq!(kinds(": :"), vec![Colon, Colon, End]);
        // `::1` and `::`.
        assert_eq!(kinds("::1 ::"), vec![Number(1), Number(0), End]);
    }

    #[test]
    fn symbols_are_case_sensitive() {
        let e = tokenize("Tcp", Layer::Network).unwrap_err();
        assert_eq!((e.kind, e.pos), (ErrorKind::BadToken, 0));
        assert!(e.detail.contains("did you mean `tcp`"), "{}", e.detail);
        let e = tokenize("tcp.Dstport == 80", Layer::Network).unwrap_err();
        assert!(
            e.detail.contains("unknown field `tcp.Dstport`"),
            "{}",
            e.detail
        );
        assert_eq!(err("AND", Layer::Network).0, ErrorKind::BadToken);
        // `TCP` is the macro 6.
        assert_eq!(kinds("TCP"), vec![Number(6), End]);
    }

    #[test]
    fn fields_and_layers() {
        assert_eq!(
            err("tcp and processId == 4", Layer::Network),
            (ErrorKind::BadTokenForLayer, 8)
        );
        assert_eq!(
            err("outbound", Layer::NetworkForward).0,
            ErrorKind::BadTokenForLayer
        );
        assert!(tokenize("processId == 4", Layer::Flow).is_ok());
        assert_eq!(
            err("tcp.DstPort", Layer::Reflect).0,
            ErrorKind::BadTokenForLayer
        );
    }

    #[test]
    fn macros() {
        assert_eq!(kinds("PACKET"), vec![Number(0), End]);
        assert_eq!(kinds("CONNECT"), vec![Macro("CONNECT"), End]);
        assert_eq!(
            kinds("SOCKET NETWORK_FORWARD"),
            vec![Number(3), Number(1), End]
        );
        let t: Vec<_> = tokenize("CLOSE", Layer::Socket)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(t, vec![Number(7), End]);
        let t: Vec<_> = tokenize("CLOSE OPEN", Layer::Reflect)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(t, vec![Number(9), Number(8), End]);
    }

    #[test]
    fn bytes_marker_quirks() {
        // `55b` is a number and a byte marker.
        let t = tokenize("packet[55b]", Layer::Network).unwrap();
        assert_eq!(t[2].kind, Number(55));
        assert_eq!((t[2].pos, t[2].len), (7, 2));
        assert_eq!(t[3].kind, Bytes);
        assert_eq!((t[3].pos, t[3].len), (9, 1));
        // A standalone `b` is dropped (WinDivert overwrites it).
        assert_eq!(
            kinds("packet[10 b]"),
            vec![
                Field(super::Field::Packet),
                SquareOpen,
                Number(10),
                SquareClose,
                End
            ]
        );
        assert_eq!(kinds("b"), vec![End]);
        // `0x10b` is hex 0x10b.
        assert_eq!(kinds("0x10b"), vec![Number(0x10b), End]);
        // `55bb` is nothing.
        assert_eq!(err("55bb", Layer::Network).0, ErrorKind::BadToken);
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("0 80 007"),
            vec![Number(0), Number(80), Number(7), End]
        );
        assert_eq!(kinds("0xFFff 0x"), vec![Number(0xFFFF), Number(0), End]);
        let e = tokenize("0X10", Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadToken);
        assert!(e.detail.contains("lower-case"));
        assert_eq!(
            kinds("340282366920938463463374607431768211455"),
            vec![Number(u128::MAX), End]
        );
        assert_eq!(
            kinds("0xffffffffffffffffffffffffffffffff"),
            vec![Number(u128::MAX), End]
        );
        // 2^128 overflows.
        let e = tokenize("340282366920938463463374607431768211456", Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadToken);
        assert!(e.detail.contains("128 bits"), "{}", e.detail);
        assert_eq!(err("0x1g", Layer::Network).0, ErrorKind::BadToken);
    }

    #[test]
    fn addresses() {
        assert_eq!(kinds("10.0.0.1"), vec![Number(0xFFFF_0A00_0001), End]);
        assert_eq!(kinds("::ffff:8.8.4.4"), vec![Number(0xFFFF_0808_0404), End]);
        assert_eq!(
            kinds("::0:ffff:8.8.4.4"),
            vec![Number(0xFFFF_0808_0404), End]
        );
        assert_eq!(kinds("::8.8.4.4"), vec![Number(0x0808_0404), End]);
        assert_eq!(
            kinds("1234:5678:1::aabb:ccdd"),
            vec![Number(0x1234_5678_0001_0000_0000_0000_aabb_ccdd), End]
        );
        assert_eq!(kinds("0:0:0:0:0:0:0:1"), vec![Number(1), End]);
        assert_eq!(kinds("abcd::1"), vec![Number(0xabcd << 112 | 1), End]);
        assert_eq!(err("1.2.3.256", Layer::Network).0, ErrorKind::BadToken);
        assert_eq!(err("1:2::3:4.5.6.7", Layer::Network).0, ErrorKind::BadToken);
        assert_eq!(err("abcd", Layer::Network).0, ErrorKind::BadToken);
    }

    #[test]
    fn token_limit() {
        // 1277 tokens plus the end marker are fine; 1278 are too many.
        let ok = vec!["tcp"; 1277].join(" ");
        assert!(tokenize(&ok, Layer::Network).is_ok());
        let bad = vec!["tcp"; 1278].join(" ");
        let e = tokenize(&bad, Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLong);
        assert_eq!(e.pos, 1278 * 4 - 1);
        // Dropped `b`s do not count.
        let ok = format!("{} {}", vec!["tcp"; 1277].join(" "), ["b"; 10].join(" "));
        assert!(tokenize(&ok, Layer::Network).is_ok());
    }
}
