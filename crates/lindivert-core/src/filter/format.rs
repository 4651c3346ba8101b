//! The decompiler (`WinDivertHelperFormatFilter`): turns a filter object back into readable
//! filter text that compiles to an equivalent filter.
//!
//! # How
//!
//! The object is a decision DAG whose nodes are tests. The compiler builds it in
//! continuation-passing style: `A and B` compiles `A` with "true → B, false → the `and`'s
//! false exit", `A or B` compiles `A` with "true → the `or`'s true exit, false → B", and
//! `(C? T: E)` compiles `C` with "true → T, false → E". So every sub-expression is a region
//! of the DAG with one entry and two exits, and nodes are shared only through exits.
//!
//! The decompiler inverts this. To print the region entered at node `e` whose exits are
//! `s` (true) and `f` (false), it
//! 1. prints `(T? …: …)` directly when the two successors of `e` lead to disjoint regions
//!    (and simplifies it to `T and …`, `T or …`, `T`, … when a successor is an exit);
//! 2. otherwise looks for a *closed* sub-region entered only at one node `x` such that
//!    the rest has exits `{x, f}` (`P and Q`), `{x, s}` (`P or Q`) or, with a second closed
//!    region at `y`, exits `{x, y}` (`(P? Q: R)`), and recurses;
//! 3. if no such split exists, duplicates the shared nodes (still exact).
//!
//! Results are memoised per `(entry, true exit, false exit)`. For objects shaped like the
//! compiler's output nothing is duplicated: the text has at most one test per reachable
//! object test (a property test checks this).
//!
//! # Semantics kept
//!
//! A test on a field whose header is absent (or an out-of-bounds array access) is false for
//! every operator, and `not F op v` in the language only flips the operator. So the Boolean
//! negation of a test is printed with a negated operator only for the fields that have a
//! value in every evaluation (`zero`, `event`, `timestamp`, `outbound`, `inbound`,
//! `loopback`, `impostor`); otherwise it stays a conditional such as
//! `(tcp.DstPort = 80? false: true)`. Tests the object already holds are printed as they
//! are (`not tcp.Syn` *is* the test `tcp.Syn == 0`), so this only matters where the DAG
//! itself negates a test.
//!
//! # Fallback
//!
//! When the text would need more than [`MAX_TESTS`] tests (pathological sharing), when a
//! test cannot be written in the language (an array index the compiler rejects), or when the
//! object is malformed, the result is the object's own `@WinDiv_…` text (see
//! [`super::object::encode`]), which the compiler also accepts and which denotes exactly the
//! same filter (for tests that satisfy [`super::object::is_encodable`], as every compiled or
//! decoded test does).

use std::collections::HashMap;
use std::rc::Rc;

use super::fields::{macro_value, Field};
use super::ir::{Jump, Object, Op, Test, Value, MAX_TESTS};
use super::object;
use crate::packet::addr::{format_ipv4, format_ipv6};
use crate::types::Layer;

/// Formats a constant as the decompiler prints it for `field` at `layer`:
/// * `ip.SrcAddr`/`ip.DstAddr`: dotted IPv4 (`10.0.0.1`) for IPv4-mapped values;
/// * `ipv6.SrcAddr`/`ipv6.DstAddr`/`localAddr`/`remoteAddr`: compressed lower-case IPv6,
///   IPv4-mapped values as plain dotted IPv4 (see [`format_ipv6`]);
/// * `layer`: `NETWORK` … `REFLECT`;
/// * `event`: the macro name valid at `layer` (`PACKET`, `ESTABLISHED`, `CONNECT`, `OPEN`,
///   `CLOSE`, …);
/// * `packet*`, `tcp.Payload*`, `udp.Payload*`, `ip.Id` and the checksums: lower-case `0x`
///   hex;
/// * everything else (and any value the forms above cannot show): decimal.
///
/// A negative value gets a leading `-`. Every output is a valid value in the filter
/// language at `layer` and denotes exactly `value`.
pub fn format_value(field: Field, value: Value, layer: Layer) -> String {
    let sign = if value.neg && value.mag != 0 { "-" } else { "" };
    let mag = value.mag;
    let body = match field {
        _ if !sign.is_empty() => None,
        Field::IpSrcAddr | Field::IpDstAddr if mag >> 32 == 0xFFFF => Some(format_ipv4(mag as u32)),
        Field::Ipv6SrcAddr | Field::Ipv6DstAddr | Field::LocalAddr | Field::RemoteAddr => {
            Some(format_ipv6(mag))
        }
        Field::Layer => u32::try_from(mag)
            .ok()
            .and_then(Layer::from_u32)
            .map(|l| l.macro_name().to_string()),
        Field::Event => u32::try_from(mag)
            .ok()
            .and_then(|v| event_macro(v, layer))
            .map(str::to_string),
        _ => None,
    };
    let body = body.unwrap_or_else(|| {
        if is_hex_field(field) {
            format!("0x{mag:x}")
        } else {
            mag.to_string()
        }
    });
    format!("{sign}{body}")
}

/// Whether the decompiler prints this field's constants in hex.
fn is_hex_field(field: Field) -> bool {
    field.is_array()
        || matches!(
            field,
            Field::IpId
                | Field::IpChecksum
                | Field::TcpChecksum
                | Field::UdpChecksum
                | Field::IcmpChecksum
                | Field::Icmpv6Checksum
        )
}

/// The event macro with value `v` that expands at `layer`, if any.
fn event_macro(v: u32, layer: Layer) -> Option<&'static str> {
    const EVENTS: [&str; 9] = [
        "PACKET",
        "ESTABLISHED",
        "DELETED",
        "BIND",
        "CONNECT",
        "LISTEN",
        "ACCEPT",
        "CLOSE",
        "OPEN",
    ];
    EVENTS
        .iter()
        .copied()
        .find(|name| macro_value(name, layer) == Some(Some(v)))
}

/// Whether `field` is printed as `X` / `not X` when compared `==`/`!=` with 0 or 1.
fn is_boolean_like(field: Field) -> bool {
    field == Field::Zero || field.is_bool()
}

/// Formats one test as the decompiler prints it: `X` / `not X` for Boolean-like fields
/// compared with 0 or 1, otherwise `field op value` with the operators ` = `, ` != `,
/// ` < `, ` <= `, ` > `, ` >= ` and array indexes in byte form (`packet32[-4b]`,
/// `packet[10b]`). The text compiles back to a test with the same outcome on every
/// packet.
pub fn format_test(test: &Test, layer: Layer) -> String {
    let name = test.field.name();
    let v = test.value;
    if is_boolean_like(test.field) && !v.neg && v.mag <= 1 {
        match test.op {
            Op::Eq | Op::Neq => {
                let truthy = (test.op == Op::Eq) == (v.mag == 1);
                return if truthy {
                    name.to_string()
                } else {
                    format!("not {name}")
                };
            }
            _ => {}
        }
    }
    let index = if test.field.is_array() {
        format!("[{}b]", test.index)
    } else {
        String::new()
    };
    format!(
        "{name}{index} {} {}",
        test.op.symbol(),
        format_value(test.field, v, layer)
    )
}

/// Whether the compiler accepts the test's array index in the byte form we print.
fn index_printable(test: &Test) -> bool {
    if !test.field.is_array() {
        return true;
    }
    let size = i64::from(test.field.word_size());
    let idx = i64::from(test.index);
    if idx >= 0 {
        idx <= 65535 - size
    } else {
        size <= -idx && -idx <= 65535
    }
}

/// Whether `not test` in the language is the Boolean negation of `test`: true only for the
/// fields whose value comes from the address flags and therefore exists for every packet
/// and event. Header fields (absent header), arrays (out of bounds) and even header-less
/// packet or layer-data fields (an evaluation without a packet, or with another layer's
/// data, makes every test on them false) keep the conditional form.
fn negation_exact(field: Field) -> bool {
    matches!(
        field,
        Field::Zero
            | Field::Event
            | Field::Timestamp
            | Field::Outbound
            | Field::Inbound
            | Field::Loopback
            | Field::Impostor
    )
}

/// A decompiled expression.
#[derive(Debug)]
enum Expr {
    Const(bool),
    Test(Test),
    And(Vec<E>),
    Or(Vec<E>),
    Cond(E, E, E),
}

/// A shared expression with its number of tests (saturating).
#[derive(Debug)]
struct Node {
    expr: Expr,
    tests: usize,
}

type E = Rc<Node>;

fn mk(expr: Expr) -> E {
    let tests = match &expr {
        Expr::Const(_) => 0,
        Expr::Test(_) => 1,
        Expr::And(v) | Expr::Or(v) => v.iter().fold(0usize, |a, e| a.saturating_add(e.tests)),
        Expr::Cond(c, t, e) => c.tests.saturating_add(t.tests).saturating_add(e.tests),
    };
    Rc::new(Node { expr, tests })
}

fn konst(b: bool) -> E {
    mk(Expr::Const(b))
}

fn as_const(e: &E) -> Option<bool> {
    match e.expr {
        Expr::Const(b) => Some(b),
        _ => None,
    }
}

/// `a and b`, folded and flattened.
fn and(a: E, b: E) -> E {
    match (as_const(&a), as_const(&b)) {
        (Some(false), _) | (_, Some(false)) => return konst(false),
        (Some(true), _) => return b,
        (_, Some(true)) => return a,
        _ => {}
    }
    let mut items = Vec::new();
    for x in [a, b] {
        match &x.expr {
            Expr::And(v) => items.extend(v.iter().cloned()),
            _ => items.push(x),
        }
    }
    mk(Expr::And(items))
}

/// `a or b`, folded and flattened.
fn or(a: E, b: E) -> E {
    match (as_const(&a), as_const(&b)) {
        (Some(true), _) | (_, Some(true)) => return konst(true),
        (Some(false), _) => return b,
        (_, Some(false)) => return a,
        _ => {}
    }
    let mut items = Vec::new();
    for x in [a, b] {
        match &x.expr {
            Expr::Or(v) => items.extend(v.iter().cloned()),
            _ => items.push(x),
        }
    }
    mk(Expr::Or(items))
}

/// The exact Boolean negation of `e`, if it can be written without conditionals being
/// introduced (every negated test must have an exact negated operator).
fn negate(e: &E) -> Option<E> {
    Some(match &e.expr {
        Expr::Const(b) => konst(!b),
        Expr::Test(t) => {
            if !negation_exact(t.field) {
                return None;
            }
            mk(Expr::Test(Test {
                op: t.op.negate(),
                ..*t
            }))
        }
        Expr::And(v) => {
            let mut acc = negate(v.first()?)?;
            for x in &v[1..] {
                acc = or(acc, negate(x)?);
            }
            acc
        }
        Expr::Or(v) => {
            let mut acc = negate(v.first()?)?;
            for x in &v[1..] {
                acc = and(acc, negate(x)?);
            }
            acc
        }
        Expr::Cond(c, t, f) => cond(c.clone(), negate(t)?, negate(f)?),
    })
}

/// Whether two expressions are known to be equal (the same node, or equal constants).
fn same(a: &E, b: &E) -> bool {
    Rc::ptr_eq(a, b) || matches!((as_const(a), as_const(b)), (Some(x), Some(y)) if x == y)
}

/// `(c? t: e)`, simplified.
fn cond(c: E, t: E, e: E) -> E {
    if let Some(b) = as_const(&c) {
        return if b { t } else { e };
    }
    if same(&t, &e) {
        return t;
    }
    // (c? x: (c2? x: e2)) is (c or c2? x: e2).
    if let Expr::Cond(c2, t2, e2) = &e.expr {
        if same(&t, t2) {
            return cond(or(c, c2.clone()), t, e2.clone());
        }
    }
    // (c? (c2? t2: x): x) is (c and c2? t2: x).
    if let Expr::Cond(c2, t2, e2) = &t.expr {
        if same(e2, &e) {
            return cond(and(c, c2.clone()), t2.clone(), e);
        }
    }
    match (as_const(&t), as_const(&e)) {
        (Some(true), Some(false)) => c,
        (_, Some(false)) => and(c, t),
        (Some(true), _) => or(c, e),
        (Some(false), _) => match negate(&c) {
            Some(nc) => and(nc, e),
            None => mk(Expr::Cond(c, t, e)),
        },
        (_, Some(true)) => match negate(&c) {
            Some(nc) => or(nc, t),
            None => mk(Expr::Cond(c, t, e)),
        },
        _ => mk(Expr::Cond(c, t, e)),
    }
}

/// A set of test indexes (at most [`MAX_TESTS`]).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Bits([u64; 4]);

impl Bits {
    fn has(&self, i: usize) -> bool {
        i < 256 && self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn set(&mut self, i: usize) {
        if i < 256 {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }
    fn and(self, o: Bits) -> Bits {
        Bits(core::array::from_fn(|k| self.0[k] & o.0[k]))
    }
    fn minus(self, o: Bits) -> Bits {
        Bits(core::array::from_fn(|k| self.0[k] & !o.0[k]))
    }
    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
    fn iter(self) -> impl Iterator<Item = usize> {
        (0..256).filter(move |&i| self.has(i))
    }
}

/// Work budget of the split search (node visits); past it, shared nodes are duplicated.
const SPLIT_WORK: u64 = 50_000_000;

struct Decompiler<'a> {
    tests: &'a [Test],
    memo: HashMap<(Jump, Jump, Jump), E>,
    work: u64,
}

fn node(j: Jump) -> Option<usize> {
    match j {
        Jump::Test(k) => Some(usize::from(k)),
        _ => None,
    }
}

impl Decompiler<'_> {
    /// The nodes reachable from `e` without passing through the exits `s` and `f`.
    fn region(&mut self, e: Jump, s: Jump, f: Jump) -> Bits {
        let mut r = Bits::default();
        let Some(start) = node(e) else { return r };
        if e == s || e == f {
            return r;
        }
        r.set(start);
        for i in start..self.tests.len() {
            if !r.has(i) {
                continue;
            }
            self.work += 1;
            let t = &self.tests[i];
            for j in [t.success, t.failure] {
                if j != s && j != f {
                    if let Some(k) = node(j) {
                        r.set(k);
                    }
                }
            }
        }
        r
    }

    /// The distinct jump targets leaving `p` (up to 4 are collected).
    fn exits(&mut self, p: Bits) -> Vec<Jump> {
        let mut out: Vec<Jump> = Vec::with_capacity(4);
        for i in p.iter() {
            self.work += 1;
            let t = &self.tests[i];
            for j in [t.success, t.failure] {
                let inside = node(j).is_some_and(|k| p.has(k));
                if !inside && !out.contains(&j) {
                    out.push(j);
                    if out.len() > 3 {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// The expression of the region entered at `e` whose true exit is `s` and false exit
    /// is `f`.
    fn expr(&mut self, e: Jump, s: Jump, f: Jump) -> E {
        if e == s {
            return konst(true);
        }
        if e == f {
            return konst(false);
        }
        let Some(i) = node(e) else {
            // Not reachable for well-formed regions; a terminal means what it says.
            return konst(e == Jump::Accept);
        };
        if let Some(x) = self.memo.get(&(e, s, f)) {
            return x.clone();
        }
        let t = self.tests[i];
        let (a, b) = (t.success, t.failure);
        let result = if a == b {
            self.expr(a, s, f)
        } else {
            let ra = self.region(a, s, f);
            let rb = self.region(b, s, f);
            let split = if ra.and(rb).is_empty() {
                None
            } else {
                self.split(e, s, f)
            };
            match split {
                Some(x) => x,
                None => {
                    let ta = self.expr(a, s, f);
                    let tb = self.expr(b, s, f);
                    cond(mk(Expr::Test(t)), ta, tb)
                }
            }
        };
        self.memo.insert((e, s, f), result.clone());
        result
    }

    /// Splits the region at `e` into a part and closed sub-regions (see the module docs).
    fn split(&mut self, e: Jump, s: Jump, f: Jump) -> Option<E> {
        if self.work > SPLIT_WORK {
            return None;
        }
        let start = node(e)?;
        let region = self.region(e, s, f);
        // Closed candidates: sub-regions entered only at their first node.
        let mut closed: Vec<(usize, Bits)> = Vec::new();
        for x in region.iter().filter(|&x| x != start) {
            let rx = self.region(Jump::Test(x as u16), s, f);
            let is_closed = region.minus(rx).iter().all(|y| {
                let t = &self.tests[y];
                [t.success, t.failure]
                    .iter()
                    .all(|&j| !node(j).is_some_and(|k| rx.has(k) && k != x))
            });
            self.work += 256;
            if is_closed {
                closed.push((x, rx));
            }
        }
        // `P and Q`, `P or Q`, or an irrelevant `P`.
        for &(x, rx) in &closed {
            let xj = Jump::Test(x as u16);
            let ex = self.exits(region.minus(rx));
            let has = |j: Jump| ex.contains(&j);
            if ex.len() == 2 && has(xj) && has(f) {
                let p = self.expr(e, xj, f);
                let q = self.expr(xj, s, f);
                return Some(and(p, q));
            }
            if ex.len() == 2 && has(xj) && has(s) {
                let p = self.expr(e, s, xj);
                let q = self.expr(xj, s, f);
                return Some(or(p, q));
            }
            if ex.len() == 1 && has(xj) {
                return Some(self.expr(xj, s, f));
            }
        }
        // `(P? Q: R)` with disjoint closed regions at Q and R.
        for (ix, &(x, rx)) in closed.iter().enumerate() {
            for &(y, ry) in &closed[ix + 1..] {
                if self.work > SPLIT_WORK {
                    return None;
                }
                if !rx.and(ry).is_empty() {
                    continue;
                }
                let (xj, yj) = (Jump::Test(x as u16), Jump::Test(y as u16));
                let ex = self.exits(region.minus(rx).minus(ry));
                if ex.len() == 2 && ex.contains(&xj) && ex.contains(&yj) {
                    let c = self.expr(e, xj, yj);
                    let q = self.expr(xj, s, f);
                    let r = self.expr(yj, s, f);
                    return Some(cond(c, q, r));
                }
            }
        }
        None
    }
}

/// Whether the object is well formed: 1..=256 tests, every jump forward and in range.
fn well_formed(obj: &Object) -> bool {
    let n = obj.tests.len();
    (1..=MAX_TESTS).contains(&n)
        && obj.tests.iter().enumerate().all(|(i, t)| {
            [t.success, t.failure]
                .iter()
                .all(|&j| !node(j).is_some_and(|k| k <= i || k >= n))
        })
}

/// Where an expression is printed, for parenthesisation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    And,
    Or,
}

fn print(e: &E, ctx: Ctx, layer: Layer, out: &mut String) {
    match &e.expr {
        Expr::Const(b) => out.push_str(if *b { "true" } else { "false" }),
        Expr::Test(t) => out.push_str(&format_test(t, layer)),
        Expr::And(v) | Expr::Or(v) => {
            let is_and = matches!(e.expr, Expr::And(_));
            let (joiner, inner, clash) = if is_and {
                (" and ", Ctx::And, Ctx::Or)
            } else {
                (" or ", Ctx::Or, Ctx::And)
            };
            let paren = ctx == clash;
            if paren {
                out.push('(');
            }
            for (k, x) in v.iter().enumerate() {
                if k > 0 {
                    out.push_str(joiner);
                }
                print(x, inner, layer, out);
            }
            if paren {
                out.push(')');
            }
        }
        Expr::Cond(c, t, f) => {
            out.push('(');
            print(c, Ctx::Top, layer, out);
            out.push_str("? ");
            print(t, Ctx::Top, layer, out);
            // A `:` glued to the last word joins it (`:` is a word character): `1::` would
            // lex as the word `1:::`, and a 39-character IPv6 literal would become a word
            // over the 39-character limit. Separate the colon in those cases.
            let last_word = out
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_'))
                .count();
            if out.ends_with(':') || last_word >= 39 {
                out.push(' ');
            }
            out.push_str(": ");
            print(f, Ctx::Top, layer, out);
            out.push(')');
        }
    }
}

/// Decompiles `obj` (for `layer`) to filter text that compiles to an equivalent filter:
/// `and`/`or`/`(c? t: e)` are rebuilt from the DAG (see the module documentation), tests are
/// printed by [`format_test`], an `or` inside an `and` is parenthesised and vice versa, and a
/// constant filter prints as `true` or `false`.
///
/// Falls back to the object's `@WinDiv_…` text when no equivalent readable text within
/// [`MAX_TESTS`] tests (and the parser's nesting budget) exists, or when the object is
/// malformed. A field that is not valid at `layer` is printed anyway (no text can express
/// it there). Never panics.
pub fn format(obj: &Object, layer: Layer) -> String {
    if !well_formed(obj) {
        return object::encode(obj);
    }
    if let Some(b) = obj.constant_result() {
        return b.to_string();
    }
    let mut d = Decompiler {
        tests: &obj.tests,
        memo: HashMap::new(),
        work: 0,
    };
    let e = d.expr(Jump::Test(0), Jump::Accept, Jump::Reject);
    if e.tests > MAX_TESTS
        || has_unprintable(&e, &mut Vec::new())
        || parse_cost(&e, Ctx::Top) > MAX_PARSE_COST
    {
        return object::encode(obj);
    }
    let mut out = String::new();
    print(&e, Ctx::Top, layer, &mut out);
    out
}

/// The most recursion budget the printed text may need from the parser (WinDivert's budget
/// is 1024: 3 per parenthesis level, 1 per `or` operand), with a margin.
const MAX_PARSE_COST: usize = 1000;

/// The parser recursion budget the printed form of `e` needs (see [`MAX_PARSE_COST`]).
fn parse_cost(e: &E, ctx: Ctx) -> usize {
    match &e.expr {
        Expr::Const(_) | Expr::Test(_) => 0,
        Expr::And(v) => {
            let paren = if ctx == Ctx::Or { 3 } else { 0 };
            paren + v.iter().map(|x| parse_cost(x, Ctx::And)).max().unwrap_or(0)
        }
        Expr::Or(v) => {
            let paren = if ctx == Ctx::And { 3 } else { 0 };
            let inner = v
                .iter()
                .enumerate()
                .map(|(k, x)| k + parse_cost(x, Ctx::Or))
                .max()
                .unwrap_or(0);
            paren + inner
        }
        Expr::Cond(c, t, f) => {
            3 + [c, t, f]
                .iter()
                .map(|x| parse_cost(x, Ctx::Top))
                .max()
                .unwrap_or(0)
        }
    }
}

/// Whether a test in `e` cannot be written in the language (checked once per shared node).
fn has_unprintable(e: &E, seen: &mut Vec<*const Node>) -> bool {
    let p = Rc::as_ptr(e);
    if seen.contains(&p) {
        return false;
    }
    seen.push(p);
    match &e.expr {
        Expr::Const(_) => false,
        Expr::Test(t) => !index_printable(t),
        Expr::And(v) | Expr::Or(v) => v.iter().any(|x| has_unprintable(x, seen)),
        Expr::Cond(c, t, f) => [c, t, f].iter().any(|x| has_unprintable(x, seen)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::fields::Header;
    use crate::packet::addr::{parse_ipv4, parse_ipv6};
    use proptest::prelude::*;

    // ----- A small independent model of the language, for the tests -----

    /// A filter AST.
    #[derive(Debug, Clone)]
    enum P {
        Const(bool),
        Test(Field, Op, Value, i32),
        And(Box<P>, Box<P>),
        Or(Box<P>, Box<P>),
        Cond(Box<P>, Box<P>, Box<P>),
    }

    fn t(field: Field, op: Op, v: i128) -> P {
        P::Test(field, op, Value::from_i128(v), 0)
    }
    fn and_(a: P, b: P) -> P {
        P::And(Box::new(a), Box::new(b))
    }
    fn or_(a: P, b: P) -> P {
        P::Or(Box::new(a), Box::new(b))
    }
    fn cond_(c: P, a: P, b: P) -> P {
        P::Cond(Box::new(c), Box::new(a), Box::new(b))
    }

    /// WinDivert's continuation-passing flattening (FILTER.md §9 step 4-5), without folding.
    fn compile(p: &P) -> Object {
        #[derive(Clone, Copy)]
        enum L {
            A,
            R,
            N(usize),
        }
        fn flat(p: &P, s: L, f: L, stack: &mut Vec<(Test, L, L)>) -> L {
            match p {
                P::Const(true) => s,
                P::Const(false) => f,
                P::Test(field, op, value, index) => {
                    let test = Test {
                        field: *field,
                        op: *op,
                        value: *value,
                        index: *index,
                        success: Jump::Accept,
                        failure: Jump::Accept,
                    };
                    stack.push((test, s, f));
                    L::N(stack.len() - 1)
                }
                P::And(a, b) => {
                    let lb = flat(b, s, f, stack);
                    flat(a, lb, f, stack)
                }
                P::Or(a, b) => {
                    let lb = flat(b, s, f, stack);
                    flat(a, s, lb, stack)
                }
                P::Cond(c, a, b) => {
                    let le = flat(b, s, f, stack);
                    let lt = flat(a, s, f, stack);
                    flat(c, lt, le, stack)
                }
            }
        }
        let mut stack = Vec::new();
        let root = match flat(p, L::A, L::R, &mut stack) {
            L::A => return Object::constant(true),
            L::R => return Object::constant(false),
            L::N(r) => r,
        };
        let jump = |l: L| match l {
            L::A => Jump::Accept,
            L::R => Jump::Reject,
            L::N(k) => Jump::Test((root - k) as u16),
        };
        let tests = (0..=root)
            .map(|i| {
                let (test, s, f) = stack[root - i];
                Test {
                    success: jump(s),
                    failure: jump(f),
                    ..test
                }
            })
            .collect();
        Object { tests }
    }

    /// A tokenizer and parser for the printed text (independent of the real compiler).
    fn parse(text: &str, layer: Layer) -> Result<P, String> {
        let mut toks: Vec<String> = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        let word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'_');
        while i < b.len() {
            let c = b[i];
            if c == b' ' {
                i += 1;
            } else if c == b':' && b.get(i + 1) != Some(&b':') {
                toks.push(":".into());
                i += 1;
            } else if word(c) {
                let st = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                if i - st >= 2 && b[i - 1] == b':' && b[i - 2] != b':' {
                    i -= 1;
                }
                let w = &text[st..i];
                if w.len() > 39 {
                    return Err(format!("word too long: {w}"));
                }
                toks.push(w.into());
            } else {
                let two = text.get(i..i + 2).unwrap_or("");
                if matches!(two, "!=" | "<=" | ">=" | "==") {
                    toks.push(two.into());
                    i += 2;
                } else if b"()[]-?=<>".contains(&c) {
                    toks.push((c as char).to_string());
                    i += 1;
                } else {
                    return Err(format!("bad char at {i} in {text}"));
                }
            }
        }
        let mut parser = Parser {
            toks,
            pos: 0,
            layer,
        };
        let p = parser.or_expr()?;
        if parser.pos != parser.toks.len() {
            return Err(format!("leftover tokens in {text}"));
        }
        Ok(p)
    }

    struct Parser {
        toks: Vec<String>,
        pos: usize,
        layer: Layer,
    }

    impl Parser {
        fn peek(&self) -> &str {
            self.toks.get(self.pos).map(|s| s.as_str()).unwrap_or("")
        }
        fn eat(&mut self, s: &str) -> Result<(), String> {
            if self.peek() == s {
                self.pos += 1;
                Ok(())
            } else {
                Err(format!("expected {s}, got {:?}", self.peek()))
            }
        }
        fn or_expr(&mut self) -> Result<P, String> {
            let a = self.and_expr()?;
            if self.peek() == "or" {
                self.pos += 1;
                return Ok(or_(a, self.or_expr()?));
            }
            Ok(a)
        }
        fn and_expr(&mut self) -> Result<P, String> {
            let mut a = self.arg()?;
            while self.peek() == "and" {
                self.pos += 1;
                a = and_(a, self.arg()?);
            }
            Ok(a)
        }
        fn arg(&mut self) -> Result<P, String> {
            match self.peek() {
                "(" => {
                    self.pos += 1;
                    let c = self.or_expr()?;
                    if self.peek() == "?" {
                        self.pos += 1;
                        let a = self.or_expr()?;
                        self.eat(":")?;
                        let b = self.or_expr()?;
                        self.eat(")")?;
                        return Ok(cond_(c, a, b));
                    }
                    self.eat(")")?;
                    Ok(c)
                }
                "true" => {
                    self.pos += 1;
                    Ok(P::Const(true))
                }
                "false" => {
                    self.pos += 1;
                    Ok(P::Const(false))
                }
                _ => self.test(),
            }
        }
        fn number(&mut self) -> Result<u128, String> {
            let w = self.peek().to_string();
            self.pos += 1;
            if let Some(m) = macro_value(&w, self.layer) {
                return m.map(u128::from).ok_or(format!("macro {w} invalid here"));
            }
            if let Some(h) = w.strip_prefix("0x") {
                return u128::from_str_radix(h, 16).map_err(|e| e.to_string());
            }
            if let Ok(v) = w.parse::<u128>() {
                return Ok(v);
            }
            if let Some(v) = parse_ipv4(&w) {
                return Ok(0xFFFF_0000_0000 | u128::from(v));
            }
            parse_ipv6(&w).ok_or(format!("bad number {w}"))
        }
        fn test(&mut self) -> Result<P, String> {
            let mut nots = 0;
            while self.peek() == "not" {
                nots += 1;
                self.pos += 1;
            }
            let name = self.peek().to_string();
            let field = Field::from_name(&name).ok_or(format!("unknown field {name}"))?;
            if !field.valid_for(self.layer) {
                return Err(format!("{name} not valid for layer"));
            }
            self.pos += 1;
            let mut index = 0i32;
            if field.is_array() {
                self.eat("[")?;
                let neg = self.peek() == "-";
                if neg {
                    self.pos += 1;
                }
                let w = self.peek().to_string();
                self.pos += 1;
                let (digits, bytes) = match w.strip_suffix('b') {
                    Some(d) => (d, true),
                    None => (w.as_str(), false),
                };
                let n: i32 = digits.parse().map_err(|_| format!("bad index {w}"))?;
                let n = if bytes {
                    n
                } else {
                    n * field.word_size() as i32
                };
                let size = field.word_size() as i32;
                if (!neg && n > 65535 - size) || (neg && (n < size || n > 65535)) {
                    return Err(format!("index out of bounds {w}"));
                }
                index = if neg { -n } else { n };
                self.eat("]")?;
            }
            let op = match self.peek() {
                "=" | "==" => Some(Op::Eq),
                "!=" => Some(Op::Neq),
                "<" => Some(Op::Lt),
                "<=" => Some(Op::Le),
                ">" => Some(Op::Gt),
                ">=" => Some(Op::Ge),
                _ => None,
            };
            let (op, value) = match op {
                Some(op) => {
                    self.pos += 1;
                    let neg = self.peek() == "-";
                    if neg {
                        self.pos += 1;
                    }
                    let mag = self.number()?;
                    (
                        op,
                        Value {
                            neg: neg && mag != 0,
                            mag,
                        },
                    )
                }
                None => (Op::Neq, Value::pos(0)),
            };
            let op = if nots % 2 == 1 { op.negate() } else { op };
            Ok(P::Test(field, op, value, index))
        }
    }

    /// A random evaluation context: header presence, field values and array contents.
    #[derive(Debug, Clone)]
    struct Env {
        headers: Vec<Header>,
        values: HashMap<Field, Value>,
        arrays: HashMap<(Field, i32), Option<u32>>,
    }

    fn eval_test(env: &Env, field: Field, op: Op, c: Value, index: i32) -> bool {
        if let Some(h) = field.needs() {
            if !env.headers.contains(&h) {
                return false;
            }
        }
        let v = if field.is_array() {
            match env.arrays.get(&(field, index)).copied().flatten() {
                Some(v) => Value::pos(u128::from(v)),
                None => return false,
            }
        } else {
            env.values.get(&field).copied().unwrap_or_default()
        };
        let o = v.cmp_signed(&c);
        match op {
            Op::Eq => o.is_eq(),
            Op::Neq => o.is_ne(),
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Gt => o.is_gt(),
            Op::Ge => o.is_ge(),
        }
    }

    fn eval_p(p: &P, env: &Env) -> bool {
        match p {
            P::Const(b) => *b,
            P::Test(f, op, v, i) => eval_test(env, *f, *op, *v, *i),
            P::And(a, b) => eval_p(a, env) && eval_p(b, env),
            P::Or(a, b) => eval_p(a, env) || eval_p(b, env),
            P::Cond(c, a, b) => {
                if eval_p(c, env) {
                    eval_p(a, env)
                } else {
                    eval_p(b, env)
                }
            }
        }
    }

    fn eval_obj(o: &Object, env: &Env) -> bool {
        let mut i = 0usize;
        loop {
            let Some(t) = o.tests.get(i) else {
                return false;
            };
            let j = if eval_test(env, t.field, t.op, t.value, t.index) {
                t.success
            } else {
                t.failure
            };
            match j {
                Jump::Accept => return true,
                Jump::Reject => return false,
                Jump::Test(k) => i = usize::from(k),
            }
        }
    }

    fn count_tests(p: &P) -> usize {
        match p {
            P::Const(_) => 0,
            P::Test(..) => 1,
            P::And(a, b) | P::Or(a, b) => count_tests(a) + count_tests(b),
            P::Cond(c, a, b) => count_tests(c) + count_tests(a) + count_tests(b),
        }
    }

    fn reachable(o: &Object) -> usize {
        let mut r = vec![false; o.tests.len()];
        r[0] = true;
        for i in 0..o.tests.len() {
            if r[i] {
                for j in [o.tests[i].success, o.tests[i].failure] {
                    if let Jump::Test(k) = j {
                        r[usize::from(k)] = true;
                    }
                }
            }
        }
        r.iter().filter(|&&x| x).count()
    }

    /// Formats `o`, parses the text back (or decodes the object fallback) and checks that
    /// both agree on every given context.
    fn check_equivalent(o: &Object, layer: Layer, envs: &[Env]) -> Result<String, String> {
        let text = format(o, layer);
        if text.starts_with('@') {
            let back = object::decode(&text, layer).map_err(|e| e.to_string())?;
            if &back != o {
                return Err(format!("object fallback differs: {text}"));
            }
            return Ok(text);
        }
        let p = parse(&text, layer)?;
        let o2 = compile(&p);
        for env in envs {
            let want = eval_obj(o, env);
            if eval_p(&p, env) != want || eval_obj(&o2, env) != want {
                return Err(format!("{text}: differs on {env:?}"));
            }
        }
        Ok(text)
    }

    // ----- Hand-built objects -----

    fn obj(tests: &[(Field, Op, i128, i32, Jump, Jump)]) -> Object {
        Object {
            tests: tests
                .iter()
                .map(|&(field, op, v, index, success, failure)| Test {
                    field,
                    op,
                    value: Value::from_i128(v),
                    index,
                    success,
                    failure,
                })
                .collect(),
        }
    }

    use Jump::{Accept as A, Reject as R};
    const fn l(k: u16) -> Jump {
        Jump::Test(k)
    }
    const N: Layer = Layer::Network;

    #[test]
    fn worked_examples() {
        let o = object::decode("@WinDiv_WX_1dWW2mAX", N).unwrap();
        assert_eq!(format(&o, N), "tcp.DstPort = 80");
        let o = object::decode("@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX", N).unwrap();
        assert_eq!(
            format(&o, N),
            "remoteAddr = 142.251.43.14 and remotePort = 80"
        );
        assert_eq!(format(&Object::constant(true), N), "true");
        assert_eq!(format(&Object::constant(false), Layer::Reflect), "false");
    }

    #[test]
    fn doc_examples() {
        use Field::*;
        let cases: Vec<(P, &str)> = vec![
            (
                and_(
                    and_(t(Outbound, Op::Neq, 0), t(Loopback, Op::Eq, 0)),
                    or_(t(TcpDstPort, Op::Eq, 80), t(UdpDstPort, Op::Eq, 53)),
                ),
                "outbound and not loopback and (tcp.DstPort = 80 or udp.DstPort = 53)",
            ),
            (
                and_(t(Inbound, Op::Eq, 1), t(TcpSyn, Op::Neq, 0)),
                "inbound and tcp.Syn",
            ),
            (
                and_(
                    and_(t(Outbound, Op::Neq, 0), t(TcpPayloadLength, Op::Gt, 0)),
                    t(TcpDstPort, Op::Eq, 80),
                ),
                "outbound and tcp.PayloadLength > 0 and tcp.DstPort = 80",
            ),
            (
                or_(
                    and_(t(Tcp, Op::Neq, 0), t(TcpSrcPort, Op::Le, 1023)),
                    and_(t(Udp, Op::Neq, 0), t(UdpSrcPort, Op::Ge, 60000)),
                ),
                "(tcp and tcp.SrcPort <= 1023) or (udp and udp.SrcPort >= 60000)",
            ),
            (
                and_(
                    or_(t(Tcp, Op::Neq, 0), t(Udp, Op::Neq, 0)),
                    or_(t(LocalPort, Op::Eq, 53), t(RemotePort, Op::Eq, 53)),
                ),
                "(tcp or udp) and (localPort = 53 or remotePort = 53)",
            ),
            (
                cond_(
                    and_(t(Tcp, Op::Neq, 0), t(TcpSyn, Op::Eq, 1)),
                    t(TcpWindow, Op::Lt, 100),
                    t(IpTtl, Op::Gt, 3),
                ),
                "(tcp and tcp.Syn? tcp.Window < 100: ip.TTL > 3)",
            ),
            (
                cond_(t(TcpDstPort, Op::Eq, 80), P::Const(false), P::Const(true)),
                "(tcp.DstPort = 80? false: true)",
            ),
            (
                cond_(t(RemotePort, Op::Eq, 80), P::Const(false), P::Const(true)),
                "(remotePort = 80? false: true)",
            ),
            (
                cond_(t(Timestamp, Op::Lt, -80), P::Const(false), P::Const(true)),
                "timestamp >= -80",
            ),
            (
                cond_(
                    or_(t(Outbound, Op::Eq, 1), t(Loopback, Op::Eq, 1)),
                    P::Const(false),
                    t(Icmp, Op::Neq, 0),
                ),
                "not outbound and not loopback and icmp",
            ),
            (
                cond_(
                    or_(t(Ip, Op::Eq, 1), t(Ipv6, Op::Eq, 1)),
                    P::Const(false),
                    t(Icmp, Op::Neq, 0),
                ),
                "(ip or ipv6? false: icmp)",
            ),
            (
                cond_(t(TcpSyn, Op::Eq, 1), P::Const(false), t(Udp, Op::Eq, 1)),
                "(tcp.Syn? false: udp)",
            ),
            (
                cond_(
                    t(Inbound, Op::Eq, 1),
                    t(TcpDstPort, Op::Ge, 1024),
                    P::Const(true),
                ),
                "not inbound or tcp.DstPort >= 1024",
            ),
            (
                cond_(
                    t(Tcp, Op::Eq, 1),
                    t(TcpDstPort, Op::Ge, 1024),
                    P::Const(true),
                ),
                "(tcp? tcp.DstPort >= 1024: true)",
            ),
            (
                cond_(
                    t(TcpRst, Op::Eq, 1),
                    t(TcpDstPort, Op::Ge, 1024),
                    P::Const(true),
                ),
                "(tcp.Rst? tcp.DstPort >= 1024: true)",
            ),
            (
                and_(
                    t(Impostor, Op::Eq, 0),
                    cond_(
                        t(Fragment, Op::Eq, 1),
                        t(Length, Op::Gt, 1000),
                        t(Length, Op::Lt, 60),
                    ),
                ),
                "not impostor and (fragment? length > 1000: length < 60)",
            ),
        ];
        for (p, want) in cases {
            let o = compile(&p);
            assert_eq!(format(&o, N), want, "{p:?}");
            check_equivalent(&o, N, &envs_for(&o, 5, 200)).unwrap();
            assert_eq!(
                count_tests(&parse(want, N).unwrap()),
                o.tests.len(),
                "{want}"
            );
        }
    }

    #[test]
    fn values() {
        let cases: Vec<(Layer, Field, Op, i128, i32, &str)> = vec![
            (
                N,
                Field::Packet32,
                Op::Eq,
                0x0102_0304,
                -4,
                "packet32[-4b] = 0x1020304",
            ),
            (N, Field::Packet, Op::Neq, 0xAB, 10, "packet[10b] != 0xab"),
            (
                N,
                Field::TcpPayload16,
                Op::Ge,
                0,
                0,
                "tcp.Payload16[0b] >= 0x0",
            ),
            (
                N,
                Field::UdpPayload,
                Op::Lt,
                7,
                -1,
                "udp.Payload[-1b] < 0x7",
            ),
            (N, Field::IpId, Op::Eq, 0x1234, 0, "ip.Id = 0x1234"),
            (
                N,
                Field::IpChecksum,
                Op::Neq,
                0xBEEF,
                0,
                "ip.Checksum != 0xbeef",
            ),
            (N, Field::TcpChecksum, Op::Eq, 0, 0, "tcp.Checksum = 0x0"),
            (
                N,
                Field::Icmpv6Checksum,
                Op::Eq,
                1,
                0,
                "icmpv6.Checksum = 0x1",
            ),
            (
                N,
                Field::IpSrcAddr,
                Op::Ge,
                0xFFFF_0A00_0001,
                0,
                "ip.SrcAddr >= 10.0.0.1",
            ),
            (
                N,
                Field::Ipv6DstAddr,
                Op::Eq,
                0x2001_0db8 << 96 | 1,
                0,
                "ipv6.DstAddr = 2001:db8::1",
            ),
            (N, Field::LocalAddr, Op::Eq, 1, 0, "localAddr = ::1"),
            (
                N,
                Field::RemoteAddr,
                Op::Le,
                0xFFFF_7F00_0001,
                0,
                "remoteAddr <= 127.0.0.1",
            ),
            (N, Field::Event, Op::Eq, 0, 0, "event = PACKET"),
            (N, Field::Event, Op::Eq, 5, 0, "event = 5"),
            (Layer::Flow, Field::Event, Op::Eq, 2, 0, "event = DELETED"),
            (
                Layer::Socket,
                Field::Event,
                Op::Neq,
                4,
                0,
                "event != CONNECT",
            ),
            (Layer::Socket, Field::Event, Op::Eq, 7, 0, "event = CLOSE"),
            (Layer::Reflect, Field::Event, Op::Eq, 9, 0, "event = CLOSE"),
            (Layer::Reflect, Field::Event, Op::Eq, 8, 0, "event = OPEN"),
            (Layer::Reflect, Field::Layer, Op::Eq, 3, 0, "layer = SOCKET"),
            (
                Layer::Reflect,
                Field::Layer,
                Op::Eq,
                1,
                0,
                "layer = NETWORK_FORWARD",
            ),
            (Layer::Reflect, Field::Layer, Op::Gt, 7, 0, "layer > 7"),
            (
                Layer::Reflect,
                Field::Priority,
                Op::Eq,
                -5,
                0,
                "priority = -5",
            ),
            (
                Layer::Reflect,
                Field::ProcessId,
                Op::Eq,
                4,
                0,
                "processId = 4",
            ),
            (
                Layer::Flow,
                Field::Timestamp,
                Op::Lt,
                -(1 << 40),
                0,
                "timestamp < -1099511627776",
            ),
            (
                Layer::Flow,
                Field::EndpointId,
                Op::Eq,
                1 << 40,
                0,
                "endpointId = 1099511627776",
            ),
            (N, Field::TcpDstPort, Op::Gt, -1, 0, "tcp.DstPort > -1"),
            (N, Field::TcpSyn, Op::Eq, 1, 0, "tcp.Syn"),
            (N, Field::TcpSyn, Op::Eq, 0, 0, "not tcp.Syn"),
            (N, Field::TcpSyn, Op::Neq, 1, 0, "not tcp.Syn"),
            (N, Field::IpDf, Op::Neq, 0, 0, "ip.DF"),
            (N, Field::Inbound, Op::Gt, 0, 0, "inbound > 0"),
            (N, Field::Zero, Op::Eq, 1, 0, "zero"),
            (N, Field::TcpAck, Op::Eq, 2, 0, "tcp.Ack = 2"),
            (N, Field::Protocol, Op::Eq, 6, 0, "protocol = 6"),
        ];
        for (layer, field, op, v, index, want) in cases {
            let test = Test {
                field,
                op,
                value: Value::from_i128(v),
                index,
                success: A,
                failure: R,
            };
            assert_eq!(format_test(&test, layer), want);
            // A one-test object prints the same, and the text reads back to the test.
            let o = Object { tests: vec![test] };
            assert_eq!(format(&o, layer), want);
            if is_boolean_like(field) {
                check_equivalent(&o, layer, &envs_for(&o, 3, 50)).unwrap();
                continue;
            }
            match parse(want, layer).unwrap() {
                P::Test(f, op2, v2, i2) => {
                    assert_eq!((f, op2, v2, i2), (field, op, test.value, index), "{want}");
                }
                p => panic!("{want}: {p:?}"),
            }
        }
    }

    #[test]
    fn format_value_forms() {
        let v = |x: i128| Value::from_i128(x);
        assert_eq!(format_value(Field::IpSrcAddr, v(5), N), "5");
        assert_eq!(format_value(Field::IpSrcAddr, v(-5), N), "-5");
        assert_eq!(format_value(Field::Ipv6SrcAddr, v(-1), N), "-1");
        assert_eq!(format_value(Field::Packet, v(-16), N), "-0x10");
        assert_eq!(
            format_value(Field::RemoteAddr, Value::pos(u128::MAX), N),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(
            format_value(Field::TcpSeqNum, Value::pos(u128::MAX), N),
            u128::MAX.to_string()
        );
        assert_eq!(format_value(Field::Event, v(3), N), "3");
        assert_eq!(format_value(Field::Event, v(3), Layer::Socket), "BIND");
        assert_eq!(format_value(Field::Event, v(-3), Layer::Socket), "-3");
        assert_eq!(format_value(Field::Layer, v(4), Layer::Reflect), "REFLECT");
    }

    #[test]
    fn ternary_colon_after_address() {
        let o = compile(&cond_(
            t(Field::Tcp, Op::Eq, 1),
            P::Test(Field::LocalAddr, Op::Eq, Value::pos(1 << 112), 0),
            t(Field::Udp, Op::Eq, 1),
        ));
        let text = format(&o, N);
        assert_eq!(text, "(tcp? localAddr = 1:: : udp)");
        check_equivalent(&o, N, &envs_for(&o, 9, 100)).unwrap();
        let o = compile(&cond_(
            t(Field::Tcp, Op::Eq, 1),
            P::Test(Field::LocalAddr, Op::Eq, Value::pos(0xFFFF_0A00_0001), 0),
            t(Field::Udp, Op::Eq, 1),
        ));
        assert_eq!(format(&o, N), "(tcp? localAddr = 10.0.0.1: udp)");
    }

    #[test]
    fn shared_nodes_and_negation_traps() {
        // n0: tcp.DstPort == 80 ? REJECT : ACCEPT  -- a real Boolean negation.
        let o = obj(&[(Field::TcpDstPort, Op::Eq, 80, 0, R, A)]);
        assert_eq!(format(&o, N), "(tcp.DstPort = 80? false: true)");
        // An address flag negates exactly.
        let o = obj(&[(Field::Event, Op::Lt, 1, 0, R, A)]);
        assert_eq!(format(&o, N), "event >= 1");
        let o = obj(&[(Field::Outbound, Op::Eq, 1, 0, R, A)]);
        assert_eq!(format(&o, N), "not outbound");
        // A header-less packet field does not (no packet, no value).
        let o = obj(&[(Field::RemotePort, Op::Lt, 80, 0, R, A)]);
        assert_eq!(format(&o, N), "(remotePort < 80? false: true)");
        // An array test does not (out of bounds is false for every operator).
        let o = obj(&[(Field::Packet, Op::Eq, 1, 3, R, A)]);
        assert_eq!(format(&o, N), "(packet[3b] = 0x1? false: true)");
        // Unreachable tests are ignored.
        let o = obj(&[
            (Field::Tcp, Op::Eq, 1, 0, A, l(2)),
            (Field::Udp, Op::Eq, 1, 0, A, R),
            (Field::Icmp, Op::Eq, 1, 0, A, R),
        ]);
        assert_eq!(format(&o, N), "tcp or icmp");
        // Both jumps to the same place: the test does not matter.
        let o = obj(&[
            (Field::TcpSyn, Op::Eq, 1, 0, l(1), l(1)),
            (Field::Udp, Op::Eq, 1, 0, A, R),
        ]);
        assert_eq!(format(&o, N), "udp");
        // A node shared by two parents that no and/or/?: shape explains: duplicated.
        //   n0: a ? n1 : n2;  n1: b ? n3 : REJECT;  n2: c ? ACCEPT : n3;  n3: d ? ACCEPT : REJECT
        let o = obj(&[
            (Field::Tcp, Op::Eq, 1, 0, l(1), l(2)),
            (Field::TcpSyn, Op::Eq, 1, 0, l(3), R),
            (Field::Udp, Op::Eq, 1, 0, A, l(3)),
            (Field::IpTtl, Op::Gt, 5, 0, A, R),
        ]);
        let text = format(&o, N);
        assert_eq!(text, "(tcp? tcp.Syn and ip.TTL > 5: udp or ip.TTL > 5)");
        let envs = envs_for(&o, 7, 300);
        check_equivalent(&o, N, &envs).unwrap();
    }

    #[test]
    fn fallbacks() {
        // Malformed objects print as their object text.
        let bad = obj(&[(Field::Tcp, Op::Eq, 1, 0, l(0), R)]);
        assert!(format(&bad, N).starts_with("@WinDiv_"));
        assert_eq!(format(&Object { tests: vec![] }, N), "@WinDiv_WW");
        // An index the compiler rejects (packet32[-1b]).
        let o = obj(&[(Field::Packet32, Op::Eq, 1, -1, A, R)]);
        let text = format(&o, N);
        assert_eq!(object::decode(&text, N), Ok(o));
        // A chain of diamonds whose shared nodes no and/or/?: shape explains: duplicating
        // them would need 2^10 copies, so the object text is printed instead.
        let k = 10u16;
        let mut tests = Vec::new();
        for d in 0..k {
            let next = if d + 1 < k { l(3 * d + 3) } else { A };
            let v = i128::from(d);
            tests.push((Field::TcpDstPort, Op::Eq, v, 0, l(3 * d + 1), l(3 * d + 2)));
            tests.push((Field::TcpSrcPort, Op::Eq, v, 0, next, R));
            tests.push((Field::UdpDstPort, Op::Eq, v, 0, A, next));
        }
        let o = obj(&tests);
        let text = format(&o, N);
        assert!(
            text.starts_with("@WinDiv_"),
            "{}",
            &text[..80.min(text.len())]
        );
        assert_eq!(object::decode(&text, N), Ok(o));
        // Three diamonds still print, with duplication.
        let o = obj(&tests[tests.len() - 9..]
            .iter()
            .map(|&(f, op, v, i, s, fl)| {
                let shift = |j: Jump| match j {
                    Jump::Test(x) => l(x - (3 * k - 9)),
                    other => other,
                };
                (f, op, v, i, shift(s), shift(fl))
            })
            .collect::<Vec<_>>());
        let text = format(&o, N);
        assert!(!text.starts_with('@'), "{text}");
        check_equivalent(&o, N, &envs_for(&o, 11, 300)).unwrap();
    }

    #[test]
    fn ladders_nest_without_duplication() {
        // n_i: tcp.DstPort == i ? n_{i+1} : n_{i+2} (past the end: ACCEPT, then REJECT).
        let ladder = |n: u16| {
            let j = |k: u16| {
                if k < n {
                    l(k)
                } else if k == n {
                    A
                } else {
                    R
                }
            };
            let tests: Vec<_> = (0..n)
                .map(|i| {
                    (
                        Field::TcpDstPort,
                        Op::Eq,
                        i128::from(i),
                        0,
                        j(i + 1),
                        j(i + 2),
                    )
                })
                .collect();
            obj(&tests)
        };
        for n in [3u16, 10, 60] {
            let o = ladder(n);
            let text = check_equivalent(&o, N, &envs_for(&o, 13, 400)).unwrap();
            assert!(!text.starts_with('@'));
            assert_eq!(count_tests(&parse(&text, N).unwrap()), usize::from(n));
        }
        // 250 nested levels still fit the parser's recursion budget.
        let o = ladder(250);
        let text = check_equivalent(&o, N, &envs_for(&o, 17, 100)).unwrap();
        assert!(!text.starts_with('@'));
    }

    #[test]
    fn parse_cost_estimate() {
        let leaf = || mk(Expr::Test(Object::constant(true).tests[0]));
        let mut e = leaf();
        for _ in 0..400 {
            e = mk(Expr::Cond(leaf(), e, leaf()));
        }
        assert_eq!(parse_cost(&e, Ctx::Top), 1200);
        let or3 = mk(Expr::Or(vec![leaf(), leaf(), leaf()]));
        assert_eq!(parse_cost(&or3, Ctx::Top), 2);
        let and = mk(Expr::And(vec![leaf(), or3]));
        assert_eq!(parse_cost(&and, Ctx::Top), 5);
    }

    // ----- Property tests -----

    /// Deterministic pseudo-random contexts that hit the object's constants.
    fn envs_for(o: &Object, seed: u64, count: usize) -> Vec<Env> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let headers = [
            Header::Ip,
            Header::Ipv6,
            Header::Icmp,
            Header::Icmpv6,
            Header::Tcp,
            Header::Udp,
        ];
        (0..count)
            .map(|_| {
                let mut env = Env {
                    headers: headers.iter().copied().filter(|_| rnd() % 3 != 0).collect(),
                    values: HashMap::new(),
                    arrays: HashMap::new(),
                };
                for t in &o.tests {
                    let pick = |r: u64| -> Value {
                        let c = t.value;
                        match r % 5 {
                            0 => c,
                            1 => Value::from_i128(0),
                            2 => {
                                if c.neg {
                                    Value {
                                        neg: true,
                                        mag: c.mag - 1,
                                    }
                                } else {
                                    Value::pos(c.mag.wrapping_add(1))
                                }
                            }
                            3 => {
                                if c.neg {
                                    Value {
                                        neg: true,
                                        mag: c.mag.saturating_add(1),
                                    }
                                } else if c.mag == 0 {
                                    Value::pos(0)
                                } else {
                                    Value::pos(c.mag - 1)
                                }
                            }
                            _ => Value::pos(u128::from(r >> 8)),
                        }
                    };
                    let r = rnd();
                    if t.field.is_array() {
                        let v = if r % 4 == 0 {
                            None
                        } else {
                            Some(clamp(t.field, pick(r >> 2)).mag as u32)
                        };
                        env.arrays.insert((t.field, t.index), v);
                    } else if r % 2 == 0 || !env.values.contains_key(&t.field) {
                        let v = clamp(t.field, pick(r >> 1));
                        env.values.insert(t.field, v);
                    }
                }
                // Presence fields agree with the headers (the real compiler may rewrite a
                // test into one on its header's presence).
                for h in headers {
                    let present = env.headers.contains(&h);
                    env.values
                        .insert(h.presence_field(), Value::pos(u128::from(present)));
                }
                env
            })
            .collect()
    }

    /// `v` forced into the field's value range.
    fn clamp(field: Field, v: Value) -> Value {
        let r = field.range();
        if r.full_u128 {
            return if v.neg { Value::pos(0) } else { v };
        }
        let x = match i128::try_from(v.mag) {
            Ok(m) if v.neg => -m,
            Ok(m) => m,
            Err(_) if v.neg => i128::MIN,
            Err(_) => i128::MAX,
        };
        Value::from_i128(x.clamp(r.lo, r.hi))
    }

    // ----- Round trips through the real compiler -----

    fn real_compile(text: &str, layer: Layer) -> Result<Object, String> {
        crate::filter::Filter::compile(text, layer)
            .map(|f| f.into_object())
            .map_err(|e| e.render(text))
    }

    /// Formats `o`, recompiles the text with the real compiler and compares both objects on
    /// the contexts.
    fn check_real(o: &Object, layer: Layer, envs: &[Env]) -> Result<String, String> {
        let text = format(o, layer);
        let o2 = real_compile(&text, layer)?;
        for env in envs {
            if eval_obj(o, env) != eval_obj(&o2, env) {
                return Err(format!("{text}: differs on {env:?}\n{o2:?}"));
            }
        }
        Ok(text)
    }

    #[test]
    fn real_compiler_round_trip() {
        let corpus: &[(&str, Layer)] = &[
            ("true", N),
            ("false", N),
            ("tcp.DstPort == 80", N),
            ("remoteAddr=142.251.43.14 and remotePort=80", N),
            (
                "outbound and !loopback and (tcp.DstPort == 80 or udp.DstPort == 53)",
                N,
            ),
            ("inbound and tcp.Syn", N),
            (
                "outbound and tcp.PayloadLength > 0 and tcp.DstPort == 80",
                N,
            ),
            ("(tcp.DstPort == 80? false: true)", N),
            (
                "(tcp.Syn? tcp.Window < 100: ip.TTL > 3) or (udp and udp.Length >= 9)",
                N,
            ),
            ("not tcp.DstPort == 80 and (ip or ipv6)", N),
            ("(ip or ipv6? false: icmp)", N),
            ("(remotePort == 80? false: true) and not outbound", N),
            (
                "packet32[-1] == 0x01020304 or packet[10b] = 7 or tcp.Payload16[2] > 5",
                N,
            ),
            ("udp.Payload[-3b] != 0 and udp.Payload32[0] < 1000", N),
            ("ip.SrcAddr >= 10.0.0.0 and ip.SrcAddr <= 10.255.255.255", N),
            (
                "ipv6.DstAddr == 2001:db8::1 or localAddr == ::1 or remoteAddr = 1::",
                N,
            ),
            ("(tcp? localAddr == 1:: : udp)", N),
            (
                "ip.Id == 0xBEEF or ip.Checksum != 0 or tcp.Checksum < 0x10",
                N,
            ),
            ("(tcp? udp: icmp)", N),
            (
                "(tcp and (udp or icmp)? (ipv6? inbound: outbound): loopback or impostor)",
                N,
            ),
            (
                "ifIdx == 3 and subIfIdx > 0 and random8 < 128",
                Layer::NetworkForward,
            ),
            ("length > 1000 and fragment", Layer::NetworkForward),
            (
                "event == ESTABLISHED and processId == 4 and tcp",
                Layer::Flow,
            ),
            (
                "(endpointId > 7? localPort == 80: remotePort != 443)",
                Layer::Socket,
            ),
            (
                "event == CONNECT or event == CLOSE or event == BIND",
                Layer::Socket,
            ),
            (
                "layer == SOCKET and priority < -10 and event == OPEN",
                Layer::Reflect,
            ),
            (
                "timestamp > -5 and (event == CLOSE? processId == 1: processId == 2)",
                Layer::Reflect,
            ),
        ];
        for &(text, layer) in corpus {
            let o = real_compile(text, layer).unwrap();
            let envs = envs_for(&o, 23, 200);
            let printed = check_real(&o, layer, &envs).unwrap();
            assert!(!printed.starts_with('@'), "{text} -> {printed}");
        }
    }

    fn arb_test_p() -> impl Strategy<Value = P> {
        use Field::*;
        let fields = vec![
            Tcp,
            Udp,
            Ip,
            Inbound,
            Outbound,
            TcpSyn,
            TcpAck,
            IpDf,
            TcpDstPort,
            UdpSrcPort,
            IpTtl,
            RemotePort,
            LocalPort,
            Protocol,
            Length,
            Packet,
            Packet16,
            TcpPayload,
            UdpPayload32,
            IpSrcAddr,
            RemoteAddr,
            Ipv6DstAddr,
            IcmpType,
            Random8,
            IfIdx,
        ];
        (
            proptest::sample::select(fields),
            0u32..6,
            0i128..4,
            any::<bool>(),
            0i32..6,
        )
            .prop_map(|(field, op, v, neg_idx, idx)| {
                let op = Op::from_code(op).unwrap_or(Op::Eq);
                let value = match field {
                    Field::IpSrcAddr => Value::pos(0xFFFF_0A00_0000 + v as u128),
                    Field::RemoteAddr | Field::Ipv6DstAddr => Value::pos(v as u128 * 3),
                    _ if field.is_bool() => Value::pos((v & 1) as u128),
                    _ => Value::from_i128(v + 78),
                };
                let index = if field.is_array() {
                    let size = field.word_size() as i32;
                    if neg_idx {
                        -(idx + size)
                    } else {
                        idx
                    }
                } else {
                    0
                };
                P::Test(field, op, value, index)
            })
    }

    fn arb_p() -> impl Strategy<Value = P> {
        let leaf = prop_oneof![
            10 => arb_test_p(),
            1 => any::<bool>().prop_map(P::Const),
        ];
        leaf.prop_recursive(6, 48, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and_(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or_(a, b)),
                (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| cond_(c, a, b)),
            ]
        })
    }

    /// Random well-formed DAGs over a few fields (arbitrary sharing).
    fn arb_dag() -> impl Strategy<Value = Object> {
        (1usize..=40).prop_flat_map(|n| {
            let tests: Vec<_> = (0..n)
                .map(|i| {
                    let jump = move || {
                        prop_oneof![
                            1 => Just(Jump::Accept),
                            1 => Just(Jump::Reject),
                            4 => ((i + 1)..=n).prop_map(move |k| if k >= n {
                                Jump::Reject
                            } else {
                                Jump::Test(k as u16)
                            }),
                        ]
                    };
                    (arb_test_p(), jump(), jump()).prop_map(|(p, s, f)| match p {
                        P::Test(field, op, value, index) => Test {
                            field,
                            op,
                            value,
                            index,
                            success: s,
                            failure: f,
                        },
                        _ => unreachable!(),
                    })
                })
                .collect();
            tests.prop_map(|tests| Object { tests })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn compiled_filters_round_trip(p in arb_p(), seed in any::<u64>()) {
            let o = compile(&p);
            let envs = envs_for(&o, seed, 64);
            let text = check_equivalent(&o, N, &envs).map_err(TestCaseError::fail)?;
            // Compiler-shaped objects decompile without duplication or fallback.
            prop_assert!(!text.starts_with('@'), "{}", text);
            let back = parse(&text, N).map_err(TestCaseError::fail)?;
            if o.constant_result().is_none() {
                prop_assert!(count_tests(&back) <= reachable(&o), "{}", text);
            }
            // The source itself agrees with its object (sanity of the model).
            for env in &envs {
                prop_assert_eq!(eval_p(&p, env), eval_obj(&o, env));
            }
        }

        #[test]
        fn arbitrary_dags_are_equivalent(o in arb_dag(), seed in any::<u64>()) {
            let envs = envs_for(&o, seed, 64);
            check_equivalent(&o, N, &envs).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn real_compiler_accepts_and_agrees(p in arb_p(), seed in any::<u64>()) {
            let o = compile(&p);
            let envs = envs_for(&o, seed, 48);
            check_real(&o, N, &envs).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn real_compiler_agrees_on_dags(o in arb_dag(), seed in any::<u64>()) {
            let envs = envs_for(&o, seed, 48);
            check_real(&o, N, &envs).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn decoded_objects_never_panic((layer, o) in crate::filter::object::tests::arb_object()) {
            let text = format(&o, layer);
            prop_assert!(!text.is_empty());
        }
    }
}

#[cfg(test)]
mod colon_tests {
    use crate::filter::Filter;
    use crate::types::Layer;

    #[test]
    fn full_ipv6_literal_before_conditional_colon_recompiles() {
        let text = "(inbound? (zero != 1? ipv6.SrcAddr == 1771:a682:1ea2:1bf1:a87e:12b8:1000:1000 : zero) : not ip.HdrLength)";
        let f = Filter::compile(text, Layer::Network).unwrap();
        let formatted = super::format(f.object(), Layer::Network);
        let back = Filter::compile(&formatted, Layer::Network);
        assert!(back.is_ok(), "{formatted}: {:?}", back.err());
    }
}
