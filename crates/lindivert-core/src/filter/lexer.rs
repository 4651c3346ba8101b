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
use super::fields::{
    lookup_symbol_hashed, macro_value_at, symbol_hash_seed, symbol_hash_step, Field, Symbol,
    KEYWORDS, MACROS,
};
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

/// Byte classes: [`SPACE`] and [`WORD`] bits.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0C | 0x0B) {
            t[c] |= SPACE;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_') {
            t[c] |= WORD;
        }
        c += 1;
    }
    t
};
const SPACE: u8 = 1;
const WORD: u8 = 2;

#[inline(always)]
fn is_space(c: u8) -> bool {
    CLASS[usize::from(c)] & SPACE != 0
}

#[inline(always)]
fn is_word_char(c: u8) -> bool {
    CLASS[usize::from(c)] & WORD != 0
}

/// Tokenize `text` for `layer`. The last token is always [`TokenKind::End`].
pub fn tokenize(text: &str, layer: Layer) -> Result<Vec<Token>, FilterError> {
    let mut lexer = Lexer::new(text, layer);
    let mut toks: Vec<Token> = Vec::with_capacity(text.len() / 4 + 2);
    loop {
        let t = lexer.next_token()?;
        toks.push(t);
        if t.kind == TokenKind::End {
            return Ok(toks);
        }
    }
}

/// The tokenizer as a stream: [`Lexer::next_token`] yields the tokens [`tokenize`] returns,
/// one at a time, then [`TokenKind::End`] forever (or the error `tokenize` would return).
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    layer: Layer,
    /// Next byte to look at.
    i: usize,
    /// Tokens produced so far (for the [`MAX_TOKENS`] limit).
    count: usize,
    /// The byte marker of a `55b` word, produced right after its number.
    pending: Option<Token>,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `text`.
    pub fn new(text: &'a str, layer: Layer) -> Lexer<'a> {
        Lexer {
            text,
            layer,
            i: 0,
            count: 0,
            pending: None,
        }
    }

    /// The next token.
    pub fn next_token(&mut self) -> Result<Token, FilterError> {
        if let Some(t) = self.pending.take() {
            self.count += 1;
            return Ok(t);
        }
        let s = self.text.as_bytes();
        loop {
            let mut i = self.i;
            while i < s.len() && is_space(s[i]) {
                i += 1;
            }
            self.i = i;
            let start = i;
            if self.count >= MAX_TOKENS {
                return Err(too_many_tokens(start));
            }
            let Some(&c) = s.get(i) else {
                self.count += 1;
                return Ok(Token {
                    kind: TokenKind::End,
                    pos: start,
                    len: 0,
                });
            };
            let next = s.get(i + 1).copied();
            let (kind, len) = match c {
                b'(' => (TokenKind::Open, 1),
                b')' => (TokenKind::Close, 1),
                b'[' => (TokenKind::SquareOpen, 1),
                b']' => (TokenKind::SquareClose, 1),
                b'-' => (TokenKind::Minus, 1),
                b'?' => (TokenKind::Question, 1),
                b'!' if next == Some(b'=') => (TokenKind::Neq, 2),
                b'!' => (TokenKind::Not, 1),
                b'=' if next == Some(b'=') => (TokenKind::Eq, 2),
                b'=' => (TokenKind::Eq, 1),
                b'<' if next == Some(b'=') => (TokenKind::Le, 2),
                b'<' => (TokenKind::Lt, 1),
                b'>' if next == Some(b'=') => (TokenKind::Ge, 2),
                b'>' => (TokenKind::Gt, 1),
                b':' if next != Some(b':') => (TokenKind::Colon, 1),
                b'&' | b'|' => {
                    if next != Some(c) {
                        return Err(single_amp_or_pipe(c, start));
                    }
                    let kind = if c == b'&' {
                        TokenKind::And
                    } else {
                        TokenKind::Or
                    };
                    (kind, 2)
                }
                _ => {
                    if !is_word_char(c) {
                        return Err(bad_char(self.text, start));
                    }
                    match self.word(start)? {
                        Some(t) => {
                            self.count += 1;
                            return Ok(t);
                        }
                        // A dropped `b`: go on with the next word.
                        None => continue,
                    }
                }
            };
            self.i = start + len;
            self.count += 1;
            return Ok(Token {
                kind,
                pos: start,
                len,
            });
        }
    }

    /// The word at `start` (its first byte is a word character): its token, or `None` for a
    /// dropped `b`. A `55b` word leaves its byte marker in `pending`.
    fn word(&mut self, start: usize) -> Result<Option<Token>, FilterError> {
        let s = self.text.as_bytes();
        let limit = s.len().min(start + MAX_WORD_LEN + 1);
        let window = s.get(start..limit).unwrap_or(&[]);
        // The symbol hash of the word; numbers (a leading digit) are never symbols.
        let mut hash = 0u32;
        let symbolic = !s[start].is_ascii_digit();
        let mut n = 0usize;
        if symbolic {
            hash = symbol_hash_seed();
            for &c in window {
                if !is_word_char(c) {
                    break;
                }
                hash = symbol_hash_step(hash, c);
                n += 1;
            }
        } else {
            n = window
                .iter()
                .position(|&c| !is_word_char(c))
                .unwrap_or(window.len());
        }
        let mut end = start + n;
        if n > MAX_WORD_LEN {
            return Err(word_too_long(start));
        }
        // Give back a single trailing ':' (but keep a trailing "::").
        if n >= 2 && s[end - 1] == b':' && s[end - 2] != b':' {
            end -= 1;
            if symbolic {
                hash = s[start..end]
                    .iter()
                    .fold(symbol_hash_seed(), |h, &c| symbol_hash_step(h, c));
            }
        }
        self.i = end;
        // Words are ASCII, so slicing on these byte offsets is on char boundaries.
        let word = self.text.get(start..end).unwrap_or("");
        let len = end - start;
        Ok(match resolve_word(word, hash, self.layer, start)? {
            Word::Token(kind) => Some(Token {
                kind,
                pos: start,
                len,
            }),
            Word::NumberBytes(v) => {
                self.pending = Some(Token {
                    kind: TokenKind::Bytes,
                    pos: end - 1,
                    len: 1,
                });
                Some(Token {
                    kind: TokenKind::Number(v),
                    pos: start,
                    len: len - 1,
                })
            }
            Word::Dropped => None,
        })
    }
}

#[cold]
#[inline(never)]
fn too_many_tokens(pos: usize) -> FilterError {
    FilterError::new(
        ErrorKind::TooLong,
        pos,
        format!("more than {} tokens", MAX_TOKENS - 1),
    )
}

#[cold]
#[inline(never)]
fn single_amp_or_pipe(c: u8, pos: usize) -> FilterError {
    let op = if c == b'&' { "&&" } else { "||" };
    FilterError::new(
        ErrorKind::BadToken,
        pos,
        format!("a single `{}` is not an operator; write `{op}`", c as char),
    )
}

#[cold]
#[inline(never)]
fn bad_char(text: &str, pos: usize) -> FilterError {
    FilterError::new(
        ErrorKind::BadToken,
        pos,
        format!("unexpected character {}", describe_char(text, pos)),
    )
}

#[cold]
#[inline(never)]
fn word_too_long(pos: usize) -> FilterError {
    FilterError::new(
        ErrorKind::BadToken,
        pos,
        format!("a word is longer than {MAX_WORD_LEN} characters"),
    )
}

enum Word {
    Token(TokenKind),
    NumberBytes(u128),
    Dropped,
}

/// Resolve a word; `hash` is its symbol hash (unused when it starts with a digit).
fn resolve_word(word: &str, hash: u32, layer: Layer, pos: usize) -> Result<Word, FilterError> {
    let b = word.as_bytes();
    let first = b.first().copied().unwrap_or(0);
    // 1. The symbol table (no symbol starts with a digit).
    if !first.is_ascii_digit() {
        match lookup_symbol_hashed(word, hash) {
            Some(Symbol::Keyword(k)) => {
                return Ok(Word::Token(match k {
                    0 => TokenKind::And,
                    1 => TokenKind::Or,
                    2 => TokenKind::Not,
                    3 => TokenKind::True,
                    _ => TokenKind::False,
                }))
            }
            Some(Symbol::Field(field)) => {
                if !field.valid_for(layer) {
                    return Err(field_not_for_layer(word, field, layer, pos));
                }
                return Ok(Word::Token(TokenKind::Field(field)));
            }
            Some(Symbol::Macro(i)) => {
                return Ok(Word::Token(match macro_value_at(i, layer) {
                    Some(v) => TokenKind::Number(u128::from(v)),
                    None => TokenKind::Macro(MACROS[usize::from(i)]),
                }))
            }
            None => {}
        }
        // 2. The byte marker.
        if word == "b" {
            return Ok(Word::Dropped);
        }
    } else {
        // 3. Decimal, with an optional `b` suffix.
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if let Some(v) = parse_decimal(&b[..digits]) {
            match &b[digits..] {
                b"" => return Ok(Word::Token(TokenKind::Number(v))),
                b"b" => return Ok(Word::NumberBytes(v)),
                _ => {}
            }
        }
        // 4. Hex: lower-case `0x` then hex digits (WinDivert accepts `0x` alone as 0).
        if let Some(hex) = b.strip_prefix(b"0x") {
            if let Some(v) = parse_hex(hex) {
                return Ok(Word::Token(TokenKind::Number(v)));
            }
        }
    }
    if b.contains(&b'.') {
        // 5. IPv4, as the IPv4-mapped IPv6 value.
        if let Some(v4) = parse_ipv4_bytes(b) {
            return Ok(Word::Token(TokenKind::Number(
                0xFFFF_0000_0000 | u128::from(v4),
            )));
        }
        // 6. IPv6 (with an IPv4 tail).
        if let Some(v6) = addr::parse_ipv6(word) {
            return Ok(Word::Token(TokenKind::Number(v6)));
        }
    } else if let Some(v6) = parse_ipv6_groups(b) {
        // 6. IPv6 (an IPv4 literal has dots).
        return Ok(Word::Token(TokenKind::Number(v6)));
    }
    Err(bad_word(word, pos))
}

/// [`addr::parse_ipv4`] in one pass: four `.`-separated parts of decimal digits (at least
/// one), each at most 255 (leading zeros allowed).
fn parse_ipv4_bytes(b: &[u8]) -> Option<u32> {
    let (mut addr, mut dots, mut part, mut digits) = (0u32, 0u32, 0u32, 0u32);
    for &c in b {
        if c == b'.' {
            if digits == 0 || dots == 3 {
                return None;
            }
            dots += 1;
            addr = addr << 8 | part;
            (part, digits) = (0, 0);
        } else if c.is_ascii_digit() {
            part = part * 10 + u32::from(c - b'0');
            if part > 255 {
                return None;
            }
            digits += 1;
        } else {
            return None;
        }
    }
    (digits != 0 && dots == 3).then_some(addr << 8 | part)
}

/// [`addr::parse_ipv6`] for a word without a `.` (so without an IPv4 tail), without
/// allocating: 8 groups of 1 to 4 hex digits (either case) separated by `:`, or fewer (at
/// most 7) with one `::` standing for the zero groups left out.
fn parse_ipv6_groups(b: &[u8]) -> Option<u128> {
    let mut groups = [0u16; 8];
    let mut n = 0usize;
    // Where the `::` is: the number of groups before it.
    let mut gap: Option<usize> = None;
    let mut i = 0usize;
    if b.starts_with(b"::") {
        gap = Some(0);
        i = 2;
    }
    while i < b.len() {
        // A group: 1 to 4 hex digits.
        let start = i;
        let mut v = 0u16;
        while let Some(d) = b.get(i).and_then(|&c| char::from(c).to_digit(16)) {
            if i - start == 4 {
                return None;
            }
            v = v << 4 | d as u16;
            i += 1;
        }
        if i == start || n == 8 {
            return None;
        }
        groups[n] = v;
        n += 1;
        match b.get(i) {
            None => break,
            Some(b':') => i += 1,
            Some(_) => return None,
        }
        if b.get(i) == Some(&b':') {
            if gap.is_some() {
                return None;
            }
            gap = Some(n);
            i += 1;
        } else if i == b.len() {
            // A trailing single `:`: an empty group.
            return None;
        }
    }
    let (left, right) = match gap {
        Some(g) if n <= 7 => (g, n - g),
        None if n == 8 => (8, 0),
        _ => return None,
    };
    let mut value = 0u128;
    for (k, g) in groups[..left].iter().enumerate() {
        value |= u128::from(*g) << (112 - 16 * k);
    }
    for (k, g) in groups[left..n].iter().enumerate() {
        value |= u128::from(*g) << (16 * (right - 1 - k));
    }
    Some(value)
}

/// Decimal digits (all `0-9`) as a `u128`; `None` on overflow. Empty is 0.
#[inline]
fn parse_decimal(digits: &[u8]) -> Option<u128> {
    // 19 digits always fit a u64.
    let (head, tail) = digits.split_at(digits.len().min(19));
    let v = head.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
    if tail.is_empty() {
        return Some(u128::from(v));
    }
    let mut w = u128::from(v);
    for &c in tail {
        w = w.checked_mul(10)?.checked_add(u128::from(c - b'0'))?;
    }
    Some(w)
}

/// Hex digits (either case) as a `u128`; `None` if a byte is not a hex digit or on
/// overflow. Empty is 0.
#[inline]
fn parse_hex(digits: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        if v >> 124 != 0 {
            return None;
        }
        v = v << 4 | u128::from(d);
    }
    Some(v)
}

#[cold]
#[inline(never)]
fn field_not_for_layer(word: &str, field: Field, layer: Layer, pos: usize) -> FilterError {
    FilterError::new(
        ErrorKind::BadTokenForLayer,
        pos,
        format!(
            "field `{word}` is not available at the {layer} layer (valid at: {})",
            valid_layers(field)
        ),
    )
}

#[cold]
#[inline(never)]
fn bad_word(word: &str, pos: usize) -> FilterError {
    FilterError::new(ErrorKind::BadToken, pos, bad_word_detail(word))
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
    KEYWORDS
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
    fn ipv4_bytes_agree_with_parse_ipv4() {
        let alphabet = [b'0', b'1', b'2', b'5', b'9', b'.', b'x'];
        let mut words: Vec<Vec<u8>> = vec![vec![]];
        let mut all = vec![vec![]];
        for _ in 0..7 {
            let mut next = Vec::new();
            for w in &words {
                for &c in &alphabet {
                    let mut v = w.clone();
                    v.push(c);
                    next.push(v);
                }
            }
            all.extend(next.iter().cloned());
            words = next;
        }
        for w in [
            "10.0.0.0",
            "10.255.255.255",
            "255.255.255.256",
            "1.2.3.4.5",
            "001.002.003.0000000004",
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4:",
        ] {
            all.push(w.as_bytes().to_vec());
        }
        for w in all {
            let s = std::str::from_utf8(&w).unwrap();
            assert_eq!(parse_ipv4_bytes(&w), addr::parse_ipv4(s), "{s:?}");
        }
    }

    #[test]
    fn ipv6_groups_agree_with_parse_ipv6() {
        // Every word of up to 7 characters over a small alphabet, then longer samples.
        let alphabet = [b'0', b'1', b'f', b'A', b'g', b':'];
        let mut words: Vec<Vec<u8>> = vec![vec![]];
        let mut all = Vec::new();
        for _ in 0..7 {
            let mut next = Vec::new();
            for w in &words {
                for &c in &alphabet {
                    let mut v = w.clone();
                    v.push(c);
                    next.push(v);
                }
            }
            all.extend(next.iter().cloned());
            words = next;
        }
        for w in [
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "1::2:3:4:5:6:7",
            "1::2:3:4:5:6:7:8",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "1:2:3:4:5:6::",
            "ffff:FFFF:0:0:12345:0:0:0",
            "ffff:FFFF:0:0:1234:0:0:0",
            "fe80::1:2",
            "fe80::1::2",
            "fe80:::1",
            "::ffff",
            "::",
            ":",
            "",
        ] {
            all.push(w.as_bytes().to_vec());
        }
        for w in all {
            let s = std::str::from_utf8(&w).unwrap();
            assert_eq!(parse_ipv6_groups(&w), addr::parse_ipv6(s), "{s:?}");
        }
    }

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
