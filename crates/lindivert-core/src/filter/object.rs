//! The `@WinDiv_…` text form of a filter object, in both directions, byte-compatible with
//! WinDivert 2.2 (`WinDivertSerializeFilter` / `WinDivertDeserializeFilter`).
//!
//! ```text
//! object  := "@WinDiv_" NUM(version = 0) NUM(n) test{n} [NUL]
//! test    := "_" NUM(field) NUM(test) NUM(neg) NUM(arg0) extra LABEL(success) LABEL(failure)
//! extra   := NUM(arg1) NUM(arg2) NUM(arg3)   ipv6.SrcAddr, ipv6.DstAddr, localAddr, remoteAddr
//!          | NUM(arg1)                       endpointId, parentEndpointId, timestamp
//!          | NUM(index + 65535)              the 9 array fields (wrapping 32-bit arithmetic)
//!          | ε                               otherwise
//! LABEL   := "A" (accept) | "X" (reject) | "L" NUM(test index)
//! NUM(v)  := base-32 digits of the 32-bit v, most significant first, without leading zero
//!            digits; non-final digits from "0-9A-V", the final digit from "W-Za-z+="
//! ```
//!
//! How a [`Value`] maps to WinDivert's `arg[4]` words (`arg[0]` least significant):
//! * the 128-bit address fields: all four words of the magnitude;
//! * `ip.SrcAddr`/`ip.DstAddr`: the value is IPv4-mapped (`0xFFFF_xxxx_xxxx`); only `arg0`
//!   (the IPv4 address) is written and `arg1 = 0xFFFF` is restored on load;
//! * `endpointId`, `parentEndpointId`, `timestamp`: the low 64 bits (`arg0`, `arg1`);
//! * array fields: `arg0` is the 32-bit constant and the test's signed byte index travels as
//!   `index + 65535`;
//! * every other field: `arg0`, the low 32 bits.
//!
//! The sign always travels separately as `neg` (`priority == -5` is `neg = 1, arg0 = 5`).
//! Bits a field kind does not carry are not written, so only objects whose tests satisfy
//! [`is_encodable`] survive `decode(encode(o))` unchanged (every object the compiler emits
//! does).

use super::error::{ErrorKind, FilterError};
use super::fields::Field;
use super::ir::{Jump, Object, Op, Test, Value, MAX_TESTS};
use crate::types::Layer;

/// The magic prefix of an object string.
pub const MAGIC: &str = "@WinDiv_";

/// The longest object string WinDivert produces, its NUL included
/// (`WINDIVERT_OBJECT_MAXLEN` = 8 + 4 + 2 + 256 × 40 + 1).
pub const MAX_OBJECT_LEN: usize = 8 + 4 + 2 + MAX_TESTS * 40 + 1;

/// The non-final digits (value 0..=31).
const DIGITS: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
/// The final digits (value 0..=31).
const FINAL_DIGITS: &[u8; 32] = b"WXYZabcdefghijklmnopqrstuvwxyz+=";

/// How a field's constant is laid out in the object words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 128-bit address: arg0..arg3.
    Addr128,
    /// `ip.SrcAddr`/`ip.DstAddr`: arg0, with arg1 = 0xFFFF implied.
    Ipv4Addr,
    /// 64-bit value: arg0, arg1.
    Wide64,
    /// Array field: arg0 and the index.
    Array,
    /// Everything else: arg0.
    Plain,
}

fn kind(field: Field) -> Kind {
    match field {
        Field::Ipv6SrcAddr | Field::Ipv6DstAddr | Field::LocalAddr | Field::RemoteAddr => {
            Kind::Addr128
        }
        Field::IpSrcAddr | Field::IpDstAddr => Kind::Ipv4Addr,
        Field::EndpointId | Field::ParentEndpointId | Field::Timestamp => Kind::Wide64,
        f if f.is_array() => Kind::Array,
        _ => Kind::Plain,
    }
}

/// The IPv4-mapped prefix `::ffff:0:0` of `ip.SrcAddr`/`ip.DstAddr` values.
const IPV4_MAPPED: u128 = 0xFFFF_0000_0000;

/// Whether `test` is carried unchanged by the object text: its constant fits the words its
/// field kind serialises (see the module documentation), it is not a negative zero, and its
/// index is 0 unless the field is an array field.
pub fn is_encodable(test: &Test) -> bool {
    let v = test.value;
    if v.neg && v.mag == 0 {
        return false;
    }
    let k = kind(test.field);
    if k != Kind::Array && test.index != 0 {
        return false;
    }
    match k {
        Kind::Addr128 => true,
        Kind::Ipv4Addr => v.mag & !0xFFFF_FFFF == IPV4_MAPPED,
        Kind::Wide64 => v.mag >> 64 == 0,
        Kind::Array | Kind::Plain => v.mag >> 32 == 0,
    }
}

/// Appends WinDivert's base-32 encoding of `v`.
fn put_num(out: &mut String, v: u32) {
    // Seven digits: 2 bits, then six groups of 5 bits.
    let digits: [u8; 7] = core::array::from_fn(|i| ((v >> (5 * (6 - i))) & 0x1F) as u8);
    let first = digits.iter().position(|&d| d != 0).unwrap_or(6);
    for (i, &d) in digits.iter().enumerate().skip(first) {
        let alphabet = if i == 6 { FINAL_DIGITS } else { DIGITS };
        out.push(char::from(alphabet[usize::from(d)]));
    }
}

fn put_label(out: &mut String, j: Jump) {
    match j {
        Jump::Accept => out.push('A'),
        Jump::Reject => out.push('X'),
        Jump::Test(k) => {
            out.push('L');
            put_num(out, u32::from(k));
        }
    }
}

/// Serialises an object to its `@WinDiv_…` text, exactly as `WinDivertHelperCompileFilter`
/// writes it (without the terminating NUL of the C string; append `'\0'` for the form
/// REFLECT events carry).
///
/// Only the words WinDivert writes for each field are emitted (see the module
/// documentation); tests that are not [`is_encodable`] lose their other bits. The test
/// count is written as a full number, so a 256-test object encodes correctly (WinDivert
/// 2.2.2 truncates it to 8 bits).
pub fn encode(obj: &Object) -> String {
    let mut out = String::with_capacity(MAGIC.len() + 4 + obj.tests.len() * 16);
    out.push_str(MAGIC);
    put_num(&mut out, 0);
    put_num(&mut out, u32::try_from(obj.tests.len()).unwrap_or(u32::MAX));
    for t in &obj.tests {
        let w = t.value.words();
        out.push('_');
        put_num(&mut out, u32::from(t.field.id()));
        put_num(&mut out, t.op as u32);
        put_num(&mut out, u32::from(t.value.neg));
        put_num(&mut out, w[0]);
        match kind(t.field) {
            Kind::Addr128 => {
                put_num(&mut out, w[1]);
                put_num(&mut out, w[2]);
                put_num(&mut out, w[3]);
            }
            Kind::Wide64 => put_num(&mut out, w[1]),
            Kind::Array => put_num(&mut out, t.index.wrapping_add(0xFFFF) as u32),
            Kind::Ipv4Addr | Kind::Plain => {}
        }
        put_label(&mut out, t.success);
        put_label(&mut out, t.failure);
    }
    out
}

/// A byte cursor over the object text.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

fn bad(pos: usize, detail: impl Into<String>) -> FilterError {
    FilterError::new(ErrorKind::BadObject, pos, detail)
}

impl Reader<'_> {
    /// Reads one byte, or fails with "unexpected end" naming what was expected.
    fn next(&mut self, what: &str) -> Result<u8, FilterError> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(bad(self.pos, format!("unexpected end of object in {what}"))),
        }
    }

    /// Reads a number of at most `max_digits` digits, like `WinDivertDeserializeNumber`.
    /// Returns the value and the position of its first digit.
    fn num(&mut self, max_digits: usize, what: &str) -> Result<(u32, usize), FilterError> {
        let start = self.pos;
        let mut val: u32 = 0;
        for _ in 0..max_digits {
            if val & 0xF800_0000 != 0 {
                return Err(bad(self.pos, format!("{what} does not fit 32 bits")));
            }
            let at = self.pos;
            let c = self.next(what)?;
            let (digit, last) = decode_digit(c).ok_or_else(|| {
                bad(
                    at,
                    format!("invalid digit {} in {what}", char::from(c).escape_default()),
                )
            })?;
            val = (val << 5) | u32::from(digit);
            if last {
                return Ok((val, start));
            }
        }
        Err(bad(
            self.pos,
            format!("{what} has more than {max_digits} digit(s)"),
        ))
    }

    /// Reads a jump label of test `i` of `n`.
    fn label(&mut self, i: usize, n: usize, what: &str) -> Result<Jump, FilterError> {
        let at = self.pos;
        match self.next(what)? {
            b'A' => Ok(Jump::Accept),
            b'X' => Ok(Jump::Reject),
            b'L' => {
                let (k, _) = self.num(2, what)?;
                let k = k as usize;
                if k > MAX_TESTS {
                    return Err(bad(at, format!("{what} {k} exceeds {MAX_TESTS}")));
                }
                if k <= i || k >= n {
                    return Err(bad(
                        at,
                        format!(
                            "{what} of test {i} jumps to test {k}; jumps must go forward to \
                             a test below {n}"
                        ),
                    ));
                }
                Ok(Jump::Test(k as u16))
            }
            c => Err(bad(
                at,
                format!(
                    "invalid {what} {}; expected A, X or L",
                    char::from(c).escape_default()
                ),
            )),
        }
    }
}

/// A digit's value and whether it is a final digit.
fn decode_digit(c: u8) -> Option<(u8, bool)> {
    match c {
        b'0'..=b'9' => Some((c - b'0', false)),
        b'A'..=b'V' => Some((c - b'A' + 10, false)),
        b'W'..=b'Z' => Some((c - b'W', true)),
        b'a'..=b'z' => Some((c - b'a' + 4, true)),
        b'+' => Some((30, true)),
        b'=' => Some((31, true)),
        _ => None,
    }
}

/// Parses `@WinDiv_…` object text for `layer`, enforcing every limit of WinDivert's
/// deserialiser:
/// * the magic `@WinDiv_`, a version of at most 4 digits equal to 0, a test count of at
///   most 2 digits in `1..=256`;
/// * per test: field ≤ 2 digits and ≤ 85, test ≤ 2 digits and ≤ 5, neg 1 digit and ≤ 1,
///   every argument ≤ 7 digits and within 32 bits, labels `A`, `X` or `L` + ≤ 2 digits
///   with a target ≤ 256, strictly forward and below the test count;
/// * after the last test, nothing but an optional single NUL.
///
/// In addition each field must be valid for `layer` (as WinDivert's driver checks) and a
/// constant may not be a negative zero.
///
/// Every violation is an error of kind [`ErrorKind::BadObject`] whose position is the byte
/// offset of the offending character (the text length for a premature end). Never panics.
pub fn decode(text: &str, layer: Layer) -> Result<Object, FilterError> {
    let mut r = Reader {
        bytes: text.as_bytes(),
        pos: 0,
    };
    for &m in MAGIC.as_bytes() {
        let at = r.pos;
        if r.next("the magic @WinDiv_")? != m {
            return Err(bad(at, "not a filter object: expected the magic @WinDiv_"));
        }
    }
    let (version, at) = r.num(4, "the version")?;
    if version != 0 {
        return Err(bad(at, format!("unsupported object version {version}")));
    }
    let (n, at) = r.num(2, "the test count")?;
    let n = n as usize;
    if n == 0 || n > MAX_TESTS {
        return Err(bad(at, format!("test count {n} outside 1..={MAX_TESTS}")));
    }
    let mut tests = Vec::with_capacity(n);
    for i in 0..n {
        let at = r.pos;
        if r.next("a test")? != b'_' {
            return Err(bad(at, format!("expected `_` at the start of test {i}")));
        }
        let (id, at) = r.num(2, "the field")?;
        let field = Field::from_id(id).ok_or_else(|| bad(at, format!("unknown field id {id}")))?;
        if !field.valid_for(layer) {
            return Err(bad(
                at,
                format!("field {} is not valid at layer {layer}", field.name()),
            ));
        }
        let (code, at) = r.num(2, "the test")?;
        let op = Op::from_code(code)
            .ok_or_else(|| bad(at, format!("unknown test (operator) code {code}")))?;
        let (neg, neg_at) = r.num(1, "the sign")?;
        if neg > 1 {
            return Err(bad(neg_at, format!("sign flag {neg} is not 0 or 1")));
        }
        let (arg0, _) = r.num(7, "an argument")?;
        let mut words = [arg0, 0, 0, 0];
        let mut index = 0i32;
        match kind(field) {
            Kind::Addr128 => {
                for w in &mut words[1..] {
                    *w = r.num(7, "an argument")?.0;
                }
            }
            Kind::Wide64 => words[1] = r.num(7, "an argument")?.0,
            Kind::Ipv4Addr => words[1] = 0xFFFF,
            Kind::Array => index = (r.num(7, "the array index")?.0 as i32).wrapping_sub(0xFFFF),
            Kind::Plain => {}
        }
        let mag = crate::packet::addr::ipv6_from_words(words);
        if neg == 1 && mag == 0 {
            return Err(bad(neg_at, "negative zero constant"));
        }
        let success = r.label(i, n, "success label")?;
        let failure = r.label(i, n, "failure label")?;
        tests.push(Test {
            field,
            op,
            value: Value { neg: neg == 1, mag },
            index,
            success,
            failure,
        });
    }
    match r.bytes.get(r.pos..) {
        Some([]) | Some([0]) | None => Ok(Object { tests }),
        Some([0, ..]) => Err(bad(r.pos + 1, "content after the terminating NUL")),
        Some(_) => Err(bad(r.pos, "trailing content after the last test")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn test(field: Field, op: Op, value: Value, index: i32, s: Jump, f: Jump) -> Test {
        Test {
            field,
            op,
            value,
            index,
            success: s,
            failure: f,
        }
    }

    fn num(v: u32) -> String {
        let mut s = String::new();
        put_num(&mut s, v);
        s
    }

    #[test]
    fn numbers() {
        assert_eq!(num(0), "W");
        assert_eq!(num(1), "X");
        assert_eq!(num(31), "=");
        assert_eq!(num(32), "1W");
        assert_eq!(num(80), "2m");
        assert_eq!(num(62), "1+");
        assert_eq!(num(256), "8W");
        assert_eq!(num(0xFFFF), "1VV=");
        assert_eq!(num(0x8EFB_2B0E), "27FMAOk");
        assert_eq!(num(u32::MAX), "3VVVVV=");
        for v in [0, 1, 31, 32, 1023, 1024, 0x7FFF_FFFF, 0x8000_0000, u32::MAX] {
            let s = num(v);
            let mut r = Reader {
                bytes: s.as_bytes(),
                pos: 0,
            };
            assert_eq!(r.num(7, "n").unwrap().0, v);
            assert_eq!(r.pos, s.len());
        }
        // Non-canonical leading zeros are accepted, as by WinDivert.
        let mut r = Reader {
            bytes: b"00X",
            pos: 0,
        };
        assert_eq!(r.num(7, "n").unwrap().0, 1);
        // 2^32 does not fit.
        let mut r = Reader {
            bytes: b"400000W",
            pos: 0,
        };
        assert!(r.num(7, "n").is_err());
    }

    fn tcp_dst_80() -> Object {
        Object {
            tests: vec![test(
                Field::TcpDstPort,
                Op::Eq,
                Value::pos(80),
                0,
                Jump::Accept,
                Jump::Reject,
            )],
        }
    }

    fn remote_example() -> Object {
        Object {
            tests: vec![
                test(
                    Field::RemoteAddr,
                    Op::Eq,
                    Value::pos(0xFFFF_8EFB_2B0E),
                    0,
                    Jump::Test(1),
                    Jump::Reject,
                ),
                test(
                    Field::RemotePort,
                    Op::Eq,
                    Value::pos(80),
                    0,
                    Jump::Accept,
                    Jump::Reject,
                ),
            ],
        }
    }

    #[test]
    fn worked_examples() {
        let o = tcp_dst_80();
        assert_eq!(encode(&o), "@WinDiv_WX_1dWW2mAX");
        assert_eq!(decode("@WinDiv_WX_1dWW2mAX", Layer::Network), Ok(o.clone()));
        assert_eq!(decode("@WinDiv_WX_1dWW2mAX\0", Layer::Network), Ok(o));

        let o = remote_example();
        let text = "@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX";
        assert_eq!(encode(&o), text);
        assert_eq!(decode(text, Layer::Network), Ok(o));
        let o81 = decode("@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2nAX", Layer::Network).unwrap();
        assert_eq!(o81.tests[1].value, Value::pos(81));
    }

    #[test]
    fn value_layouts() {
        let cases = [
            // priority == -5: neg with the magnitude in arg0.
            (
                test(
                    Field::Priority,
                    Op::Eq,
                    Value::from_i128(-5),
                    0,
                    Jump::Accept,
                    Jump::Reject,
                ),
                Layer::Reflect,
                "@WinDiv_WX_2bWXbAX",
            ),
            // ip.DstAddr == 10.0.0.1: only arg0.
            (
                test(
                    Field::IpDstAddr,
                    Op::Eq,
                    Value::pos(0xFFFF_0A00_0001),
                    0,
                    Jump::Accept,
                    Jump::Reject,
                ),
                Layer::Network,
                "@WinDiv_WX_sWW50000XAX",
            ),
            // timestamp < -2^40: 64-bit magnitude in arg0/arg1.
            (
                test(
                    Field::Timestamp,
                    Op::Lt,
                    Value::from_i128(-(1 << 40)),
                    0,
                    Jump::Accept,
                    Jump::Reject,
                ),
                Layer::Flow,
                "@WinDiv_WX_2nYXW8WAX",
            ),
            // packet32[-4b] == 0x01020304: the index travels as index + 65535.
            (
                test(
                    Field::Packet32,
                    Op::Eq,
                    Value::pos(0x0102_0304),
                    -4,
                    Jump::Accept,
                    Jump::Reject,
                ),
                Layer::Network,
                "@WinDiv_WX_2fWWG40Oa1VVxAX",
            ),
            // packet[70000] uses a 32-bit index too (out of bounds, but representable).
            (
                test(
                    Field::Packet,
                    Op::Ge,
                    Value::pos(0),
                    -70_000,
                    Jump::Accept,
                    Jump::Reject,
                ),
                Layer::Network,
                "@WinDiv_WX_2dbWW3VVVRKlAX",
            ),
        ];
        for (t, layer, text) in cases {
            let o = Object { tests: vec![t] };
            assert!(is_encodable(&t));
            assert_eq!(encode(&o), text, "{t:?}");
            assert_eq!(decode(text, layer), Ok(o));
        }
    }

    #[test]
    fn decode_errors() {
        let l = Layer::Network;
        let cases: &[(&str, Option<usize>)] = &[
            ("", Some(0)),
            ("@", Some(1)),
            ("@WinDiv", Some(7)),
            ("@windiv_WX_1dWW2mAX", Some(1)),
            ("@WinDiv_XX_1dWW2mAX", Some(8)),      // version 1
            ("@WinDiv_0000WX_1dWW2mAX", Some(12)), // version: 5 digits
            ("@WinDiv_000WX_1dWW2mAX", None),      // version: 4 digits is fine...
            ("@WinDiv_WW", Some(9)),               // 0 tests
            ("@WinDiv_W8X", Some(9)),              // 257 tests
            ("@WinDiv_W00X", Some(11)),            // count: 3 digits
            ("@WinDiv_WX-1dWW2mAX", Some(10)),
            ("@WinDiv_WX_2xWW2mAX", Some(11)),           // field 87
            ("@WinDiv_WX_2wWWWAX", Some(11)),            // field 86
            ("@WinDiv_WX_1dcW2mAX", Some(13)),           // test 8
            ("@WinDiv_WX_1dW0X2mAX", Some(15)),          // neg: 2 digits
            ("@WinDiv_WX_1dWY2mAX", Some(14)),           // neg 2
            ("@WinDiv_WX_1dWX2mAX", None),               // fine (negative 80)
            ("@WinDiv_WX_1dWXWAX", Some(14)),            // negative zero
            ("@WinDiv_WX_1dWW00000002mAX", Some(22)),    // arg: 8 digits
            ("@WinDiv_WX_1dWW2mA", Some(18)),            // missing failure label
            ("@WinDiv_WX_1dWW2mAB", Some(18)),           // bad label
            ("@WinDiv_WX_1dWW2mALX", Some(18)),          // label 1 with 1 test
            ("@WinDiv_WX_1dWW2mAX ", Some(19)),          // trailing content
            ("@WinDiv_WX_1dWW2mAX\0\0", Some(20)),       // two NULs
            ("@WinDiv_WX_1dWW2mAX\0x", Some(20)),        // content after NUL
            ("@WinDiv_WY_1dWW2mLWX_1dWW2mAX", Some(17)), // backward (self) jump
            ("@WinDiv_WY_1dWW2mLYX_1dWW2mAX", Some(17)), // jump beyond n
            ("@WinDiv_WY_1dWW2mL8XX_1dWW2mAX", Some(17)), // label 257
            ("@WinDiv_WY_1dWW2mL000XX", Some(20)),       // label 3 digits
            ("@WinDiv_WX_1dWW2mAXé", Some(19)),
            ("@WinDiv_WX_1é", Some(12)),
        ];
        let mut wrong = Vec::new();
        for &(text, pos) in cases {
            let r = decode(text, l);
            match (pos, r) {
                (None, Ok(_)) => {}
                (Some(p), Err(e)) if e.kind == ErrorKind::BadObject && e.pos == p => {
                    assert!(!e.detail.is_empty());
                }
                (p, r) => wrong.push(format!("{text:?}: expected {p:?}, got {r:?}")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn decode_checks_layer() {
        // processId (60) is not valid at NETWORK.
        let o = Object {
            tests: vec![test(
                Field::ProcessId,
                Op::Eq,
                Value::pos(4),
                0,
                Jump::Accept,
                Jump::Reject,
            )],
        };
        let text = encode(&o);
        assert_eq!(decode(&text, Layer::Flow), Ok(o));
        let e = decode(&text, Layer::Network).unwrap_err();
        assert_eq!((e.kind, e.pos), (ErrorKind::BadObject, 11));
        assert!(e.detail.contains("processId"), "{e}");
        // tcp.DstPort is not valid at FLOW.
        let e = decode("@WinDiv_WX_1dWW2mAX", Layer::Flow).unwrap_err();
        assert_eq!(e.pos, 11);
    }

    #[test]
    fn constant_and_max_objects() {
        for r in [true, false] {
            let o = Object::constant(r);
            let text = encode(&o);
            assert_eq!(
                text,
                if r {
                    "@WinDiv_WX_WWWWAA"
                } else {
                    "@WinDiv_WX_WWWWXX"
                }
            );
            for layer in Layer::ALL {
                assert_eq!(decode(&text, layer), Ok(o.clone()));
            }
        }
        // 256 tests, each jumping to the next.
        let tests: Vec<Test> = (0..MAX_TESTS)
            .map(|i| {
                let next = if i + 1 < MAX_TESTS {
                    Jump::Test(i as u16 + 1)
                } else {
                    Jump::Accept
                };
                test(
                    Field::Ipv6SrcAddr,
                    Op::Ge,
                    Value::pos(u128::MAX),
                    0,
                    next,
                    Jump::Reject,
                )
            })
            .collect();
        let o = Object { tests };
        let text = encode(&o);
        assert!(text.len() < MAX_OBJECT_LEN);
        assert!(text.starts_with("@WinDiv_W8W_"));
        assert_eq!(decode(&text, Layer::Network), Ok(o));
    }

    fn arb_field(layer: Layer) -> impl Strategy<Value = Field> {
        let fields: Vec<Field> = Field::ALL
            .iter()
            .copied()
            .filter(|f| f.valid_for(layer))
            .collect();
        proptest::sample::select(fields)
    }

    fn arb_layer() -> impl Strategy<Value = Layer> {
        proptest::sample::select(Layer::ALL.to_vec())
    }

    /// A random test valid for `layer` at position `i` of `n`, encodable.
    fn arb_test(layer: Layer, i: usize, n: usize) -> impl Strategy<Value = Test> {
        let jump = move || {
            prop_oneof![
                Just(Jump::Accept),
                Just(Jump::Reject),
                ((i + 1)..=n).prop_map(move |k| if k >= n {
                    Jump::Accept
                } else {
                    Jump::Test(k as u16)
                }),
            ]
        };
        (
            arb_field(layer),
            0u32..6,
            any::<bool>(),
            any::<u128>(),
            any::<i32>(),
            jump(),
            jump(),
        )
            .prop_map(|(field, op, neg, mag, index, success, failure)| {
                let mag = match kind(field) {
                    Kind::Addr128 => mag,
                    Kind::Ipv4Addr => IPV4_MAPPED | (mag & 0xFFFF_FFFF),
                    Kind::Wide64 => mag & u128::from(u64::MAX),
                    Kind::Array | Kind::Plain => mag & 0xFFFF_FFFF,
                };
                Test {
                    field,
                    op: Op::from_code(op).unwrap_or(Op::Eq),
                    value: Value {
                        neg: neg && mag != 0,
                        mag,
                    },
                    index: if field.is_array() { index } else { 0 },
                    success,
                    failure,
                }
            })
    }

    pub(crate) fn arb_object() -> impl Strategy<Value = (Layer, Object)> {
        (arb_layer(), 1usize..=24).prop_flat_map(|(layer, n)| {
            let tests: Vec<_> = (0..n).map(|i| arb_test(layer, i, n)).collect();
            tests.prop_map(move |tests| (layer, Object { tests }))
        })
    }

    proptest! {
        #[test]
        fn round_trip((layer, o) in arb_object()) {
            prop_assert!(o.tests.iter().all(is_encodable));
            let text = encode(&o);
            prop_assert_eq!(decode(&text, layer), Ok(o.clone()));
            let mut with_nul = text.clone();
            with_nul.push('\0');
            prop_assert_eq!(decode(&with_nul, layer), Ok(o));
            prop_assert!(text.is_ascii());
            prop_assert!(text.len() < MAX_OBJECT_LEN);
        }

        #[test]
        fn decode_never_panics(s in ".{0,64}", layer in arb_layer()) {
            let _ = decode(&s, layer);
            let _ = decode(&format!("@WinDiv_{s}"), layer);
        }

        #[test]
        fn decode_mutations_never_panic(
            (layer, o) in arb_object(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut bytes = encode(&o).into_bytes();
            for (at, b, what) in edits {
                let at = at % (bytes.len() + 1);
                let b = b & 0x7F; // keep it ASCII, hence valid UTF-8
                match what {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => {}
                }
            }
            let s = String::from_utf8(bytes).unwrap_or_default();
            match decode(&s, layer) {
                Ok(obj) => {
                    // Whatever decodes is well formed and re-encodes to an equivalent text.
                    prop_assert!(!obj.tests.is_empty() && obj.tests.len() <= MAX_TESTS);
                    prop_assert_eq!(decode(&encode(&obj), layer), Ok(obj));
                }
                Err(e) => {
                    prop_assert_eq!(e.kind, ErrorKind::BadObject);
                    prop_assert!(e.pos <= s.len());
                }
            }
        }
    }
}
