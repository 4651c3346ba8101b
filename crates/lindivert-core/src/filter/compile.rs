//! From AST to filter object: check, simplify, flatten (WinDivert's `WinDivertSimplifyTest`,
//! `WinDivertFlattenExpr` and `WinDivertEmitFilter`), plus the object validation of
//! WinDivert's driver, an optimiser, and the filter-flags analysis.
//!
//! # Flattening
//!
//! Exactly WinDivert's post-order walk with continuation labels (FILTER.md §9 steps 4–5):
//! `A and B` flattens B with (succ, fail) then A with (label(B), fail); `A or B` flattens B
//! then A with (succ, label(B)); `(C? T: E)` flattens E, then T, then C. Tests are labelled in
//! allocation order, the entry is the label the root returns, and the object lists the tests
//! from the entry label downwards, so every jump goes forward. Hence the object — and its
//! `@WinDiv_…` text — is WinDivert's for every filter where WinDivert's simplifier is not
//! buggy.
//!
//! # Simplification (what is folded, and why)
//!
//! A test whose outcome is the same for every value the field can take is *folded*:
//! always-false becomes the constant FALSE; always-true becomes `header == 1` for a field
//! that needs a header (`tcp.DstPort >= 0` is `tcp`), the constant TRUE for a header-less
//! field, and stays an array test for an array field (an out-of-bounds access is false at run
//! time, so `packet[1000] >= 0` must not become TRUE). Folded tests disappear and their
//! continuation is used directly. Which tests are folded:
//!
//! 1. Tests whose constant WinDivert's *driver* would refuse (outside the field's range, an
//!    `event` that cannot occur at the layer, a negative constant on an array field) are
//!    always folded, using the values the field can really take: `ip.TOS == 300` and
//!    `icmp.Code == 0x777` are FALSE, `event != OPEN` at SOCKET is TRUE, `tcp.SeqNum > -1` is
//!    `tcp`, `packet32[0] < 0x100000000` is `packet32[0] >= 0`. WinDivert 2.2.2 instead either
//!    emits them (and `WinDivertOpen` then fails) or, for always-false tests, wrongly emits
//!    "header absent" (`icmp == 0`). No such filter is a compile error here.
//! 2. Other tests are folded as WinDivert's simplifier folds them (its per-field ranges,
//!    with `ip.TOS` corrected to 0..255), so the objects stay byte-identical to WinDivert's.
//!    In particular `loopback`, `impostor`, `icmp.Body`, `icmpv6.Body`, `tcp.SeqNum`,
//!    `tcp.AckNum` and `packet32` are not simplified when their constant is in range, and
//!    `event` uses the range 0..9 (so `event == PACKET` stays a test, as in WinDivert).
//!
//! The optimiser ([`optimize`]) then works on a copy used only for evaluation, so
//! [`crate::filter::Filter::object`] keeps WinDivert's exact shape.

use super::error::{ErrorKind, FilterError};
use super::fields::{Field, Range};
use super::ir::{Jump, Object, Op, Test, Value, MAX_TESTS};
use super::parser::{parse_reusing, Ast, Node, NodeId, Subject, TestNode, MAX_INDEX};
use crate::types::{Event, Layer};
use core::cell::Cell;
use core::cmp::Ordering;
use core::fmt;

/// Compile filter text (not an `@WinDiv_…` object) to its WinDivert object.
pub fn compile_text(text: &str, layer: Layer) -> Result<Object, FilterError> {
    thread_local! {
        /// The node buffer of the last parse on this thread, for the next one.
        static NODES: Cell<Vec<Node>> = const { Cell::new(Vec::new()) };
    }
    /// Larger buffers are not kept.
    const KEEP_NODES: usize = 1024;
    let buf = NODES.with(Cell::take);
    let ast = parse_reusing(text, layer, buf)?;
    let obj = compile_ast(&ast, layer);
    if ast.nodes.capacity() <= KEEP_NODES {
        NODES.with(|c| c.set(ast.nodes));
    }
    obj
}

/// Simplify and flatten a parsed filter into its WinDivert object.
pub fn compile_ast(ast: &Ast, layer: Layer) -> Result<Object, FilterError> {
    let tests = ast
        .nodes
        .iter()
        .filter(|n| matches!(n, Node::Test(_)))
        .count();
    let mut fl = Flattener {
        ast,
        layer,
        tests: Vec::with_capacity(tests.min(MAX_TESTS)),
    };
    let entry = fl.flatten(ast.root, Label::Accept, Label::Reject)?;
    Ok(fl.emit(entry))
}

// ---------------------------------------------------------------------------------------
// Simplification.

/// The result of simplifying one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simplified {
    /// The test always has this outcome.
    Const(bool),
    /// A test to emit (possibly rewritten).
    Test {
        /// The field.
        field: Field,
        /// The comparison.
        op: Op,
        /// The constant.
        value: Value,
        /// Array byte index (0 otherwise).
        index: i32,
    },
}

fn range_bounds(r: Range) -> (Value, Value) {
    let hi = if r.full_u128 {
        Value::pos(u128::MAX)
    } else {
        Value::from_i128(r.hi)
    };
    (Value::from_i128(r.lo), hi)
}

/// The outcome of `x op v` for every `x` in `[lo, hi]`, if it is the same for all of them.
pub fn decide(op: Op, v: Value, lo: Value, hi: Value) -> Option<bool> {
    let vl = v.cmp_signed(&lo);
    let vh = v.cmp_signed(&hi);
    let point = lo.cmp_signed(&hi) == Ordering::Equal;
    decide_ord(op, vl, vh, point)
}

/// [`decide`] for a non-negative `v` and the bounds of `r`, without building signed values.
#[inline]
fn decide_pos(op: Op, v: u128, r: Range) -> Option<bool> {
    let vl = match u128::try_from(r.lo) {
        Ok(lo) => v.cmp(&lo),
        Err(_) => Ordering::Greater,
    };
    let (vh, point) = if r.full_u128 {
        (v.cmp(&u128::MAX), false)
    } else {
        let vh = match u128::try_from(r.hi) {
            Ok(hi) => v.cmp(&hi),
            Err(_) => Ordering::Greater,
        };
        (vh, r.lo == r.hi)
    };
    decide_ord(op, vl, vh, point)
}

/// [`decide`] from `v` compared with the bounds and whether the range is one value.
#[inline]
fn decide_ord(op: Op, vl: Ordering, vh: Ordering, point: bool) -> Option<bool> {
    let outside = vl == Ordering::Less || vh == Ordering::Greater;
    match op {
        Op::Eq | Op::Neq => {
            let eq = if outside {
                Some(false)
            } else if point {
                Some(true)
            } else {
                None
            };
            if op == Op::Eq {
                eq
            } else {
                eq.map(|b| !b)
            }
        }
        Op::Lt if vh == Ordering::Greater => Some(true),
        Op::Lt if vl != Ordering::Greater => Some(false),
        Op::Le if vh != Ordering::Less => Some(true),
        Op::Le if vl == Ordering::Less => Some(false),
        Op::Gt if vh != Ordering::Less => Some(false),
        Op::Gt if vl == Ordering::Less => Some(true),
        Op::Ge if vh == Ordering::Greater => Some(false),
        Op::Ge if vl != Ordering::Greater => Some(true),
        _ => None,
    }
}

/// The constants WinDivert's driver accepts for a field (FILTER.md §10), before the
/// per-layer `event` check.
pub fn driver_range(field: Field) -> Range {
    match field {
        Field::Zero => Field::Inbound.range(),
        Field::Loopback | Field::Impostor => Field::IfIdx.range(),
        f => f.range(),
    }
}

/// The range WinDivert's simplifier uses for a field, or `None` for the fields it never
/// simplifies (`ip.TOS` corrected to 0..255).
fn simplifier_range(field: Field) -> Option<Range> {
    match field {
        Field::Loopback
        | Field::Impostor
        | Field::IcmpBody
        | Field::Icmpv6Body
        | Field::TcpSeqNum
        | Field::TcpAckNum
        | Field::Packet32 => None,
        f => Some(f.range()),
    }
}

/// The events that occur at a layer, as an inclusive range.
fn layer_events(layer: Layer) -> (u8, u8) {
    match layer {
        Layer::Network | Layer::NetworkForward => (0, 0),
        Layer::Flow => (1, 2),
        Layer::Socket => (3, 7),
        Layer::Reflect => (8, 9),
    }
}

/// Why WinDivert's driver would refuse this constant for `field` at `layer`, if it would.
pub fn driver_refusal(field: Field, value: Value, layer: Layer) -> Option<String> {
    if value.neg && value.mag == 0 {
        return Some("negative zero".to_string());
    }
    if field.is_array() && value.neg {
        return Some(format!(
            "negative constant on the array field `{}`",
            field.name()
        ));
    }
    let (lo, hi) = range_bounds(driver_range(field));
    if value.cmp_signed(&lo) == Ordering::Less || value.cmp_signed(&hi) == Ordering::Greater {
        return Some(format!(
            "constant {} out of the range of `{}`",
            show(value),
            field.name()
        ));
    }
    if field == Field::Event {
        let ok = u8::try_from(value.mag)
            .ok()
            .and_then(Event::from_u8)
            .is_some_and(|e| e.valid_for(layer));
        if !ok {
            return Some(format!(
                "event {} never occurs at the {layer} layer",
                value.mag
            ));
        }
    }
    None
}

fn show(v: Value) -> String {
    format!("{}{:#x}", if v.neg { "-" } else { "" }, v.mag)
}

/// Simplify one test for `layer` (see the module documentation).
#[inline(never)]
pub fn simplify(test: &TestNode, layer: Layer) -> Simplified {
    let (field, index) = match test.subject {
        Subject::True => {
            let one = Value::pos(1);
            return Simplified::Const(decide(test.op, test.value, one, one).unwrap_or(false));
        }
        Subject::False => {
            let zero = Value::pos(0);
            return Simplified::Const(decide(test.op, test.value, zero, zero).unwrap_or(false));
        }
        Subject::Field(f) => (f, 0),
        Subject::Array { field, index } => (field, index),
    };
    simplify_field(field, test.op, test.value, index, layer)
}

fn simplify_field(field: Field, op: Op, value: Value, index: i32, layer: Layer) -> Simplified {
    let keep = Simplified::Test {
        field,
        op,
        value,
        index,
    };
    // Fast path: a non-negative constant within the driver's range (the common case) is
    // never refused (the `event` checks depend on the layer: they take the slow path).
    let fast = !value.neg && field != Field::Event && {
        let r = driver_range(field);
        u128::try_from(r.lo).map_or(true, |lo| value.mag >= lo)
            && (r.full_u128 || u128::try_from(r.hi).is_ok_and(|hi| value.mag <= hi))
    };
    let refused = !fast && driver_refusal(field, value, layer).is_some();
    let decided = if fast {
        simplifier_range(field).and_then(|r| decide_pos(op, value.mag, r))
    } else if refused {
        // Decide with the values the field can really take at this layer.
        let (lo, hi) = if field == Field::Event {
            let (a, b) = layer_events(layer);
            (Value::pos(u128::from(a)), Value::pos(u128::from(b)))
        } else {
            range_bounds(field.range())
        };
        decide(op, value, lo, hi)
    } else {
        simplifier_range(field).and_then(|r| {
            let (lo, hi) = range_bounds(r);
            decide(op, value, lo, hi)
        })
    };
    match decided {
        None => keep,
        Some(false) => Simplified::Const(false),
        Some(true) if field.is_array() => {
            if refused {
                Simplified::Test {
                    field,
                    op: Op::Ge,
                    value: Value::pos(0),
                    index,
                }
            } else {
                keep
            }
        }
        Some(true) => match field.needs() {
            Some(h) => Simplified::Test {
                field: h.presence_field(),
                op: Op::Eq,
                value: Value::pos(1),
                index: 0,
            },
            None => Simplified::Const(true),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Flattening.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Accept,
    Reject,
    Test(u16),
}

impl Label {
    /// The label as a jump that still names a label (fixed up by [`Flattener::emit`]).
    fn as_jump(self) -> Jump {
        match self {
            Label::Accept => Jump::Accept,
            Label::Reject => Jump::Reject,
            Label::Test(l) => Jump::Test(l),
        }
    }
}

struct Flattener<'a> {
    ast: &'a Ast,
    layer: Layer,
    /// The tests in allocation (label) order; their `Jump::Test`s hold labels.
    tests: Vec<Test>,
}

impl Flattener<'_> {
    fn flatten(&mut self, id: NodeId, succ: Label, fail: Label) -> Result<Label, FilterError> {
        let node =
            self.ast.nodes.get(id as usize).copied().ok_or_else(|| {
                FilterError::new(ErrorKind::AssertionFailed, 0, "dangling AST node")
            })?;
        match node {
            Node::And(a, b) => {
                let lb = self.flatten(b, succ, fail)?;
                self.flatten(a, lb, fail)
            }
            Node::Or(a, b) => {
                let lb = self.flatten(b, succ, fail)?;
                self.flatten(a, succ, lb)
            }
            Node::Cond(c, t, e) => {
                let le = self.flatten(e, succ, fail)?;
                let lt = self.flatten(t, succ, fail)?;
                self.flatten(c, lt, le)
            }
            Node::Test(t) => match simplify(&t, self.layer) {
                Simplified::Const(true) => Ok(succ),
                Simplified::Const(false) => Ok(fail),
                Simplified::Test {
                    field,
                    op,
                    value,
                    index,
                } => {
                    if self.tests.len() >= MAX_TESTS {
                        return Err(FilterError::new(
                            ErrorKind::TooLong,
                            t.pos,
                            format!("more than {MAX_TESTS} tests after simplification"),
                        ));
                    }
                    self.tests.push(Test {
                        field,
                        op,
                        value,
                        index,
                        success: succ.as_jump(),
                        failure: fail.as_jump(),
                    });
                    Ok(Label::Test((self.tests.len() - 1) as u16))
                }
            },
        }
    }

    /// The object: the tests from the entry label down to label 0 (every jump goes to a
    /// lower label, so forward in the object); tests allocated after the entry are dropped.
    fn emit(self, entry: Label) -> Object {
        let root = match entry {
            Label::Accept => return Object::constant(true),
            Label::Reject => return Object::constant(false),
            Label::Test(l) => l,
        };
        let mut tests = self.tests;
        tests.truncate(usize::from(root) + 1);
        tests.reverse();
        let jump = |j: Jump| match j {
            Jump::Test(k) => Jump::Test(root - k),
            other => other,
        };
        for t in &mut tests {
            t.success = jump(t.success);
            t.failure = jump(t.failure);
        }
        Object { tests }
    }
}

// ---------------------------------------------------------------------------------------
// Validation of objects from outside.

/// Check an object as WinDivert's driver does (FILTER.md §10): 1 to 256 tests, every field
/// valid for the layer, jumps strictly forward (or ACCEPT/REJECT), constants in the field's
/// range, `event` constants that can occur at the layer, array indexes within ±65575 and
/// non-negative array constants, no negative zero, no index on a non-array field.
/// Errors are BAD_OBJECT with position 0 and a detail naming the test.
pub fn validate_object(obj: &Object, layer: Layer) -> Result<(), FilterError> {
    let bad = |detail: String| FilterError::new(ErrorKind::BadObject, 0, detail);
    let n = obj.tests.len();
    if n == 0 || n > MAX_TESTS {
        return Err(bad(format!(
            "an object has 1 to {MAX_TESTS} tests, this one has {n}"
        )));
    }
    for (i, t) in obj.tests.iter().enumerate() {
        if !t.field.valid_for(layer) {
            return Err(bad(format!(
                "test {i}: field `{}` is not available at the {layer} layer",
                t.field.name()
            )));
        }
        for j in [t.success, t.failure] {
            if let Jump::Test(k) = j {
                let k = usize::from(k);
                if k <= i || k >= n {
                    return Err(bad(format!(
                        "test {i}: jump to {k} does not go forward within the {n} tests"
                    )));
                }
            }
        }
        if let Some(why) = driver_refusal(t.field, t.value, layer) {
            return Err(bad(format!("test {i}: {why}")));
        }
        if t.field.is_array() {
            if i128::from(t.index).unsigned_abs() > MAX_INDEX {
                return Err(bad(format!(
                    "test {i}: array index {} is beyond ±{MAX_INDEX}",
                    t.index
                )));
            }
        } else if t.index != 0 {
            return Err(bad(format!(
                "test {i}: index {} on the non-array field `{}`",
                t.index,
                t.field.name()
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Optimisation.

/// A semantically equivalent, usually smaller object for evaluation:
/// * a test whose two jumps agree is skipped (tests have no side effects);
/// * identical tests with identical (already merged) continuations are merged, bottom-up,
///   so identical sub-DAGs are shared;
/// * unreachable tests are removed.
///
/// Jumps still go forward: a test is only ever replaced by an identical *later* one, and
/// the kept tests keep their relative order. Objects that break the forward-jump rule are
/// returned unchanged (validate them first).
pub fn optimize(obj: &Object) -> Object {
    let mut tests = Vec::new();
    match optimize_with(&obj.tests, &mut tests) {
        Optimized::Tests => Object { tests },
        Optimized::Constant(c) => Object::constant(c),
        Optimized::Unchanged => obj.clone(),
    }
}

/// What [`optimize_with`] made of the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Optimized {
    /// The optimised tests were emitted.
    Tests,
    /// The filter is this constant (nothing was emitted).
    Constant(bool),
    /// The tests break the forward-jump rule or the size limits: use them as they are
    /// (nothing was emitted).
    Unchanged,
}

/// Where [`optimize_with`] puts the optimised tests.
pub(crate) trait TestSink {
    /// Called once, first, with the number of tests that follow.
    fn count(&mut self, n: usize);
    /// Called with each test, in order.
    fn emit(&mut self, t: Test);
}

impl TestSink for Vec<Test> {
    fn count(&mut self, n: usize) {
        self.reserve_exact(n);
    }
    fn emit(&mut self, t: Test) {
        self.push(t);
    }
}

/// [`optimize`] without building an object: the tests go to `sink`.
pub(crate) fn optimize_with(tests: &[Test], sink: &mut impl TestSink) -> Optimized {
    let n = tests.len();
    if n == 0 || n > MAX_TESTS {
        return Optimized::Unchanged;
    }
    for (i, t) in tests.iter().enumerate() {
        for j in [t.success, t.failure] {
            if let Jump::Test(k) = j {
                if usize::from(k) <= i || usize::from(k) >= n {
                    return Optimized::Unchanged;
                }
            }
        }
    }
    // Small objects (the common case) work in small arrays.
    if n <= SMALL {
        if already_optimal(tests) {
            sink.count(n);
            for t in tests {
                sink.emit(*t);
            }
            return Optimized::Tests;
        }
        optimize_n::<SMALL, 1>(tests, sink)
    } else {
        optimize_n::<MAX_TESTS, { 2 * MAX_TESTS }>(tests, sink)
    }
}

/// Whether the optimiser would give back these (at most [`SMALL`], checked) tests
/// unchanged: every test reachable from the first, no test with equal jumps, no two equal
/// tests (same test and jumps). Then every test is its own canonical test, by induction
/// from the last one, and the renumbering is the identity.
fn already_optimal(tests: &[Test]) -> bool {
    let mut reached = [false; SMALL];
    reached[0] = true;
    for (i, t) in tests.iter().enumerate() {
        if !reached[i] || t.success == t.failure {
            return false;
        }
        for j in [t.success, t.failure] {
            if let Jump::Test(k) = j {
                reached[usize::from(k)] = true;
            }
        }
        if tests[..i].contains(t) {
            return false;
        }
    }
    true
}

/// Below this many tests, duplicates are found by a linear search instead of a hash table.
const SMALL: usize = 16;

fn jump_code(j: Jump) -> u64 {
    match j {
        Jump::Accept => 0x1_0000,
        Jump::Reject => 0x2_0000,
        Jump::Test(k) => u64::from(k),
    }
}

/// A hash of a test with its resolved jumps (a multiply-rotate mix; the keys come from the
/// filter text, and a bad distribution only costs probes in a 512-slot table).
fn test_hash(t: &Test, s: Jump, f: Jump) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, v: u64| (h.rotate_left(23) ^ v).wrapping_mul(K);
    let mut h = mix(
        0,
        u64::from(t.field.id())
            | (t.op as u64) << 8
            | u64::from(t.value.neg) << 16
            | u64::from(t.index as u32) << 32,
    );
    h = mix(h, t.value.mag as u64);
    h = mix(h, (t.value.mag >> 64) as u64);
    mix(h, jump_code(s) | jump_code(f) << 20)
}

/// The optimiser for objects of at most `N` tests (`tests` are checked: forward jumps,
/// `1..=N` of them). Duplicates are found in a hash table of `T` slots (a power of two
/// larger than `N`), or by a linear search when `N <= SMALL`.
fn optimize_n<const N: usize, const T: usize>(
    tests: &[Test],
    sink: &mut impl TestSink,
) -> Optimized {
    let n = tests.len();
    // alias[i]: where a jump to test i really goes (test i itself when it is kept).
    let mut alias = [Jump::Reject; N];
    // The resolved jumps of the kept tests.
    let mut jumps = [(Jump::Reject, Jump::Reject); N];
    // Kept tests so far (the small case searches them; the large case hashes them).
    let mut canon = [0u16; N];
    let mut n_canon = 0usize;
    let mut table = [0u16; T];
    let resolve = |alias: &[Jump; N], j: Jump| match j {
        Jump::Test(k) => alias[usize::from(k)],
        other => other,
    };
    let same = |a: &Test, b: &Test| {
        a.field == b.field && a.op == b.op && a.value == b.value && a.index == b.index
    };
    for i in (0..n).rev() {
        let t = &tests[i];
        let s = resolve(&alias, t.success);
        let f = resolve(&alias, t.failure);
        if s == f {
            alias[i] = s;
            continue;
        }
        let dup = if N <= SMALL {
            canon[..n_canon]
                .iter()
                .map(|&j| usize::from(j))
                .find(|&j| jumps[j] == (s, f) && same(&tests[j], t))
        } else {
            let mut h = (test_hash(t, s, f) >> 32) as usize & (T - 1);
            loop {
                match usize::from(table[h]) {
                    0 => {
                        table[h] = i as u16 + 1;
                        break None;
                    }
                    k => {
                        let j = k - 1;
                        if jumps[j] == (s, f) && same(&tests[j], t) {
                            break Some(j);
                        }
                        h = (h + 1) & (T - 1);
                    }
                }
            }
        };
        if let Some(j) = dup {
            alias[i] = Jump::Test(j as u16);
            continue;
        }
        canon[n_canon] = i as u16;
        n_canon += 1;
        alias[i] = Jump::Test(i as u16);
        jumps[i] = (s, f);
    }
    let entry = match alias[0] {
        Jump::Accept => return Optimized::Constant(true),
        Jump::Reject => return Optimized::Constant(false),
        Jump::Test(k) => usize::from(k),
    };
    // Keep the tests reachable from the entry, in order. The kept tests are the canonical
    // ones (alias[i] == i), and every resolved jump goes to one.
    const UNREACHED: u16 = u16::MAX;
    let mut new_index = [UNREACHED; N];
    new_index[entry] = 0;
    let mut kept = 0u16;
    for i in entry..n {
        if new_index[i] == UNREACHED {
            continue;
        }
        new_index[i] = kept;
        kept += 1;
        let (s, f) = jumps[i];
        for j in [s, f] {
            if let Jump::Test(k) = j {
                let k = usize::from(k);
                if new_index[k] == UNREACHED {
                    new_index[k] = 0;
                }
            }
        }
    }
    sink.count(usize::from(kept));
    let renum = |j: Jump| match j {
        Jump::Test(k) => Jump::Test(new_index[usize::from(k)]),
        other => other,
    };
    for i in entry..n {
        if new_index[i] == UNREACHED {
            continue;
        }
        let (s, f) = jumps[i];
        sink.emit(Test {
            success: renum(s),
            failure: renum(f),
            ..tests[i]
        });
    }
    Optimized::Tests
}

// ---------------------------------------------------------------------------------------
// Filter flags.

/// What a filter can match, so the kernel layer installs only the hooks it needs
/// (WinDivert's `WINDIVERT_FILTER_FLAG_*`, from `WinDivertAnalyzeFilter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FilterFlags(u64);

impl FilterFlags {
    /// Nothing: the filter never matches (an inject-only handle).
    pub const NONE: FilterFlags = FilterFlags(0);
    /// It can match inbound packets (NETWORK, NETWORK_FORWARD).
    pub const INBOUND: FilterFlags = FilterFlags(0x10);
    /// It can match outbound packets (NETWORK, NETWORK_FORWARD).
    pub const OUTBOUND: FilterFlags = FilterFlags(0x20);
    /// It can match IPv4 (every layer but REFLECT).
    pub const IP: FilterFlags = FilterFlags(0x40);
    /// It can match IPv6 (every layer but REFLECT).
    pub const IPV6: FilterFlags = FilterFlags(0x80);
    /// FLOW: it can match DELETED events.
    pub const EVENT_FLOW_DELETED: FilterFlags = FilterFlags(0x100);
    /// SOCKET: it can match BIND events.
    pub const EVENT_SOCKET_BIND: FilterFlags = FilterFlags(0x200);
    /// SOCKET: it can match CONNECT events.
    pub const EVENT_SOCKET_CONNECT: FilterFlags = FilterFlags(0x400);
    /// SOCKET: it can match LISTEN events.
    pub const EVENT_SOCKET_LISTEN: FilterFlags = FilterFlags(0x800);
    /// SOCKET: it can match ACCEPT events.
    pub const EVENT_SOCKET_ACCEPT: FilterFlags = FilterFlags(0x1000);
    /// SOCKET: it can match CLOSE events.
    pub const EVENT_SOCKET_CLOSE: FilterFlags = FilterFlags(0x2000);

    const NAMES: [(FilterFlags, &'static str); 10] = [
        (FilterFlags::INBOUND, "INBOUND"),
        (FilterFlags::OUTBOUND, "OUTBOUND"),
        (FilterFlags::IP, "IP"),
        (FilterFlags::IPV6, "IPV6"),
        (FilterFlags::EVENT_FLOW_DELETED, "EVENT_FLOW_DELETED"),
        (FilterFlags::EVENT_SOCKET_BIND, "EVENT_SOCKET_BIND"),
        (FilterFlags::EVENT_SOCKET_CONNECT, "EVENT_SOCKET_CONNECT"),
        (FilterFlags::EVENT_SOCKET_LISTEN, "EVENT_SOCKET_LISTEN"),
        (FilterFlags::EVENT_SOCKET_ACCEPT, "EVENT_SOCKET_ACCEPT"),
        (FilterFlags::EVENT_SOCKET_CLOSE, "EVENT_SOCKET_CLOSE"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Flags from raw bits.
    pub const fn from_bits_retain(bits: u64) -> FilterFlags {
        FilterFlags(bits)
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: FilterFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The socket-event flag for `event`, if it has one (`EVENT_FLOW_ESTABLISHED` has none:
    /// established flows are always hooked).
    pub const fn for_event(event: Event) -> FilterFlags {
        match event {
            Event::FlowDeleted => FilterFlags::EVENT_FLOW_DELETED,
            Event::SocketBind => FilterFlags::EVENT_SOCKET_BIND,
            Event::SocketConnect => FilterFlags::EVENT_SOCKET_CONNECT,
            Event::SocketListen => FilterFlags::EVENT_SOCKET_LISTEN,
            Event::SocketAccept => FilterFlags::EVENT_SOCKET_ACCEPT,
            Event::SocketClose => FilterFlags::EVENT_SOCKET_CLOSE,
            _ => FilterFlags::NONE,
        }
    }
}

impl core::ops::BitOr for FilterFlags {
    type Output = FilterFlags;
    fn bitor(self, rhs: FilterFlags) -> FilterFlags {
        FilterFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for FilterFlags {
    fn bitor_assign(&mut self, rhs: FilterFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for FilterFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in FilterFlags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0x3FF0;
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
            first = false;
        }
        if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Facts assumed about a packet or event while asking whether a filter can accept.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    outbound: Option<bool>,
    family: Option<Family>,
    event: Option<u8>,
}

/// The outcome of a test under `facts`, if the facts decide it.
fn known(t: &Test, facts: &Facts) -> Option<bool> {
    use Field::*;
    let fam = facts.family;
    if let (Some(h), Some(fam)) = (t.field.needs(), fam) {
        use super::fields::Header;
        let absent = match fam {
            Family::V4 => matches!(h, Header::Ipv6 | Header::Icmpv6),
            Family::V6 => matches!(h, Header::Ip | Header::Icmp),
        };
        if absent {
            return Some(false);
        }
    }
    let v: u8 = match t.field {
        Zero => 0,
        Ip => u8::from(fam? == Family::V4),
        Ipv6 => u8::from(fam? == Family::V6),
        Icmp if fam == Some(Family::V6) => 0,
        Icmpv6 if fam == Some(Family::V4) => 0,
        Outbound => u8::from(facts.outbound?),
        Inbound => u8::from(!facts.outbound?),
        Event => facts.event?,
        _ => return None,
    };
    Some(compare(Value::pos(u128::from(v)), t.op, t.value))
}

/// `x op v` with WinDivert's signed 129-bit comparison.
pub fn compare(x: Value, op: Op, v: Value) -> bool {
    let c = x.cmp_signed(&v);
    match op {
        Op::Eq => c == Ordering::Equal,
        Op::Neq => c != Ordering::Equal,
        Op::Lt => c == Ordering::Less,
        Op::Le => c != Ordering::Greater,
        Op::Gt => c == Ordering::Greater,
        Op::Ge => c != Ordering::Less,
    }
}

/// The filter flags of an object compiled for `layer` (FILTER.md §9 step 6).
///
/// Like WinDivert's analysis it asks whether ACCEPT is reachable when some fields are fixed
/// and every other test may go either way, but it fixes related fields together
/// (`inbound = 1` with `outbound = 0`; `ip = 1` with `ipv6 = 0`, `icmpv6 = 0` and every
/// `ipv6.*`/`icmpv6.*` test false), so it is sound and at least as precise: WinDivert sets
/// IP for `ipv6.DstAddr == ::1`, this does not.
///
/// Every question (the unconstrained one, each direction, each address family and each
/// event) is answered in the same backward pass over the tests, one bit per question
/// (WinDivert's `WinDivertCondExecFilter`, generalised to several facts).
pub fn analyze(obj: &Object, layer: Layer) -> FilterFlags {
    // Question 0 has no facts: if ACCEPT is unreachable, the filter matches nothing.
    let mut facts = [Facts::default(); 10];
    let mut flags = [FilterFlags::NONE; 10];
    let mut q = 1;
    let mut ask = |f: Facts, flag: FilterFlags| {
        facts[q] = f;
        flags[q] = flag;
        q += 1;
    };
    if layer.is_network() {
        for (outbound, flag) in [(false, FilterFlags::INBOUND), (true, FilterFlags::OUTBOUND)] {
            ask(
                Facts {
                    outbound: Some(outbound),
                    ..Facts::default()
                },
                flag,
            );
        }
    }
    if layer != Layer::Reflect {
        for (fam, flag) in [
            (Family::V4, FilterFlags::IP),
            (Family::V6, FilterFlags::IPV6),
        ] {
            ask(
                Facts {
                    family: Some(fam),
                    ..Facts::default()
                },
                flag,
            );
        }
    }
    let events: &[Event] = match layer {
        Layer::Flow => &[Event::FlowDeleted],
        Layer::Socket => &[
            Event::SocketBind,
            Event::SocketConnect,
            Event::SocketListen,
            Event::SocketAccept,
            Event::SocketClose,
        ],
        _ => &[],
    };
    for &e in events {
        ask(
            Facts {
                event: Some(e as u8),
                ..Facts::default()
            },
            FilterFlags::for_event(e),
        );
    }
    let accept = can_accept(&obj.tests, &facts[..q]);
    if accept & 1 == 0 {
        return FilterFlags::NONE;
    }
    let mut out = FilterFlags::NONE;
    for (b, &flag) in flags[..q].iter().enumerate().skip(1) {
        if accept >> b & 1 != 0 {
            out |= flag;
        }
    }
    out
}

/// For each of `facts` (bit `b` for `facts[b]`), whether ACCEPT may be reachable under
/// those facts, every other test being unknown.
fn can_accept(tests: &[Test], facts: &[Facts]) -> u16 {
    let n = tests.len();
    let all: u16 = (1u16 << facts.len()) - 1;
    if n == 0 {
        return all;
    }
    let mut small = [0u16; MAX_TESTS];
    let mut large = Vec::new();
    let result: &mut [u16] = if n <= MAX_TESTS {
        &mut small[..n]
    } else {
        large.resize(n, 0);
        &mut large
    };
    for i in (0..n).rev() {
        let t = &tests[i];
        let r = |j: Jump| match j {
            Jump::Accept => all,
            Jump::Reject => 0,
            Jump::Test(k) => {
                let k = usize::from(k);
                if k > i && k < n {
                    result[k]
                } else {
                    all
                }
            }
        };
        let (s, f) = (r(t.success), r(t.failure));
        let mut m = s & f;
        let mut differ = s ^ f;
        while differ != 0 {
            let b = differ.trailing_zeros();
            differ &= differ - 1;
            let bit = match known(t, &facts[b as usize]) {
                Some(true) => s >> b & 1,
                Some(false) => f >> b & 1,
                None => 1,
            };
            m |= bit << b;
        }
        result[i] = m;
    }
    result[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Object {
        compile_text(s, Layer::Network).unwrap()
    }

    fn t(field: Field, op: Op, v: u128, s: Jump, f: Jump) -> Test {
        Test {
            field,
            op,
            value: Value::pos(v),
            index: 0,
            success: s,
            failure: f,
        }
    }

    use Jump::{Accept as A, Reject as X};

    #[test]
    fn flatten_examples() {
        // `tcp.DstPort == 80` → @WinDiv_WX_1dWW2mAX
        assert_eq!(
            obj("tcp.DstPort == 80"),
            Object {
                tests: vec![t(Field::TcpDstPort, Op::Eq, 80, A, X)]
            }
        );
        // `remoteAddr=142.251.43.14 and remotePort=80` → @WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX
        assert_eq!(
            obj("remoteAddr=142.251.43.14 and remotePort=80"),
            Object {
                tests: vec![
                    t(
                        Field::RemoteAddr,
                        Op::Eq,
                        0xFFFF_8EFB_2B0E,
                        Jump::Test(1),
                        X
                    ),
                    t(Field::RemotePort, Op::Eq, 80, A, X),
                ]
            }
        );
        // or: A with (succ, label(B))
        assert_eq!(
            obj("tcp or udp"),
            Object {
                tests: vec![
                    t(Field::Tcp, Op::Neq, 0, A, Jump::Test(1)),
                    t(Field::Udp, Op::Neq, 0, A, X),
                ]
            }
        );
        // conditional: E, T, C.
        assert_eq!(
            obj("(tcp? udp: icmp)"),
            Object {
                tests: vec![
                    t(Field::Tcp, Op::Neq, 0, Jump::Test(1), Jump::Test(2)),
                    t(Field::Udp, Op::Neq, 0, A, X),
                    t(Field::Icmp, Op::Neq, 0, A, X),
                ]
            }
        );
    }

    #[test]
    fn constants_fold() {
        assert_eq!(obj("true"), Object::constant(true));
        assert_eq!(obj("false"), Object::constant(false));
        assert_eq!(obj("true == 1 and not false"), Object::constant(true));
        assert_eq!(obj("(true? true: true)"), Object::constant(true));
        assert_eq!(obj("(false? false: false)"), Object::constant(false));
        // WinDivert still emits the test whose two jumps agree; the optimiser removes it.
        let o = obj("false or tcp and false");
        assert_eq!(o.tests.len(), 1);
        assert_eq!(o.constant_result(), Some(false));
        assert_eq!(optimize(&o), Object::constant(false));
        assert_eq!(obj("zero == 0"), Object::constant(true));
        assert_eq!(obj("zero"), Object::constant(false));
        assert_eq!(obj("true > 0"), Object::constant(true));
        // `tcp and true` is just `tcp`.
        assert_eq!(obj("tcp and true"), obj("tcp"));
        // WinDivert keeps the unreachable test of a folded conditional…
        assert_eq!(
            obj("(true? tcp: udp)"),
            Object {
                tests: vec![
                    t(Field::Tcp, Op::Neq, 0, A, X),
                    t(Field::Udp, Op::Neq, 0, A, X),
                ]
            }
        );
        // …but drops tests allocated after the entry.
        assert_eq!(obj("(false? tcp: udp)"), obj("udp"));
    }

    #[test]
    fn simplifier_fixed_behaviour() {
        // Always-false: constant FALSE (WinDivert 2.2.2: `icmp == 0`).
        assert_eq!(obj("icmp.Code == 0x777"), Object::constant(false));
        assert_eq!(obj("ip.DstAddr < 0.0.0.0"), Object::constant(false));
        assert_eq!(obj("ip.Protocol == 999"), Object::constant(false));
        assert_eq!(obj("ip.TOS == 300"), Object::constant(false));
        // Always-true on a header field: the header test.
        let ip1 = Object {
            tests: vec![t(Field::Ip, Op::Eq, 1, A, X)],
        };
        assert_eq!(obj("ip.TOS != 300"), ip1);
        assert_eq!(obj("ip.TOS < 256"), ip1);
        assert_eq!(obj("ip.DstAddr >= 0.0.0.0"), ip1);
        let tcp1 = Object {
            tests: vec![t(Field::Tcp, Op::Eq, 1, A, X)],
        };
        assert_eq!(obj("tcp.DstPort >= 0"), tcp1);
        assert_eq!(obj("tcp.SeqNum > -1"), tcp1);
        assert_eq!(obj("tcp.SeqNum < 0x100000000"), tcp1);
        assert_eq!(obj("tcp.SeqNum == 0x100000000"), Object::constant(false));
        // In range: not simplified, as WinDivert.
        assert_eq!(
            obj("tcp.SeqNum >= 0"),
            Object {
                tests: vec![t(Field::TcpSeqNum, Op::Ge, 0, A, X)]
            }
        );
        assert_eq!(
            obj("loopback == 5"),
            Object {
                tests: vec![t(Field::Loopback, Op::Eq, 5, A, X)]
            }
        );
        // Header-less fields fold to constants.
        assert_eq!(obj("length >= 20"), Object::constant(true));
        assert_eq!(obj("length < 20"), Object::constant(false));
        assert_eq!(obj("localPort <= 65535"), Object::constant(true));
        assert_eq!(
            obj("timestamp >= -0x8000000000000000"),
            Object::constant(true)
        );
        assert_eq!(
            obj("timestamp > 0x7fffffffffffffff"),
            Object::constant(false)
        );
        assert_eq!(obj("ipv6.FlowLabel > 0xfffff"), Object::constant(false));
    }

    #[test]
    fn arrays_never_fold_to_true() {
        let ge0 = |f: Field, index: i32| Object {
            tests: vec![Test {
                index,
                ..t(f, Op::Ge, 0, A, X)
            }],
        };
        assert_eq!(obj("packet[1000] >= 0"), ge0(Field::Packet, 1000));
        assert_eq!(obj("tcp.Payload[1000] >= 0"), ge0(Field::TcpPayload, 1000));
        assert_eq!(obj("packet[3] < 256"), ge0(Field::Packet, 3));
        assert_eq!(obj("packet[3] > -1"), ge0(Field::Packet, 3));
        assert_eq!(obj("packet32[-1] != 0x100000000"), ge0(Field::Packet32, -4));
        assert_eq!(
            obj("packet[3] <= 255"),
            Object {
                tests: vec![Test {
                    index: 3,
                    ..t(Field::Packet, Op::Le, 255, A, X)
                }]
            }
        );
        // Impossible constants fold to FALSE.
        assert_eq!(obj("packet[0] > 255"), Object::constant(false));
        assert_eq!(obj("packet[0] == -1"), Object::constant(false));
        assert_eq!(obj("packet32[0] == 0x100000000"), Object::constant(false));
        assert_eq!(obj("udp.Payload16[0] < 0"), Object::constant(false));
    }

    #[test]
    fn event_constants() {
        let at = |s: &str, l: Layer| compile_text(s, l).unwrap();
        // Valid for the layer: kept, as WinDivert.
        assert_eq!(
            at("event == PACKET", Layer::Network),
            Object {
                tests: vec![t(Field::Event, Op::Eq, 0, A, X)]
            }
        );
        // Not valid for the layer: decided.
        assert_eq!(at("event == 5", Layer::Network), Object::constant(false));
        assert_eq!(at("event != 5", Layer::Network), Object::constant(true));
        assert_eq!(at("event != 8", Layer::Socket), Object::constant(true));
        assert_eq!(at("event < 8", Layer::Socket), Object::constant(true));
        assert_eq!(at("event < 1", Layer::Socket), Object::constant(false));
        assert_eq!(at("event > 9", Layer::Reflect), Object::constant(false));
        assert_eq!(
            at("event < 5", Layer::Socket),
            Object {
                tests: vec![t(Field::Event, Op::Lt, 5, A, X)]
            }
        );
        for l in Layer::ALL {
            for op in ["==", "!=", "<", "<=", ">", ">="] {
                for v in 0..12 {
                    let o = at(&format!("event {op} {v}"), l);
                    assert!(validate_object(&o, l).is_ok(), "event {op} {v} at {l}");
                }
            }
        }
    }

    #[test]
    fn too_many_tests() {
        let f = |n: usize| {
            (0..n)
                .map(|i| format!("tcp.DstPort == {i}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        assert_eq!(obj(&f(256)).tests.len(), 256);
        let e = compile_text(&f(257), Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLong);
        // The 257th allocated test is the first one written (post-order).
        assert_eq!(e.pos, 0);
        // Folded tests do not count.
        let g = format!("{} or {}", f(256), vec!["true"; 100].join(" or "));
        assert!(compile_text(&g, Layer::Network).is_ok());
    }

    #[test]
    fn validation() {
        let good = obj("tcp.DstPort == 80 and outbound");
        assert!(validate_object(&good, Layer::Network).is_ok());
        assert_eq!(
            validate_object(&good, Layer::NetworkForward)
                .unwrap_err()
                .kind,
            ErrorKind::BadObject
        );
        let mut bad = good.clone();
        bad.tests[0].success = Jump::Test(0);
        assert!(validate_object(&bad, Layer::Network).is_err());
        let mut bad = good.clone();
        bad.tests[0].success = Jump::Test(2);
        assert!(validate_object(&bad, Layer::Network).is_err());
        let mut bad = good.clone();
        bad.tests[0].value = Value::pos(65536);
        assert!(validate_object(&bad, Layer::Network).is_err());
        let mut bad = good.clone();
        bad.tests[0].value = Value { neg: true, mag: 0 };
        assert!(validate_object(&bad, Layer::Network).is_err());
        let mut bad = good.clone();
        bad.tests[0].index = 1;
        assert!(validate_object(&bad, Layer::Network).is_err());
        assert!(validate_object(&Object { tests: vec![] }, Layer::Network).is_err());
        let arr = obj("packet[-65535] == 1");
        assert!(validate_object(&arr, Layer::Network).is_ok());
        let mut bad = arr.clone();
        bad.tests[0].index = -65576;
        assert!(validate_object(&bad, Layer::Network).is_err());
        bad.tests[0].index = 65575;
        assert!(validate_object(&bad, Layer::Network).is_ok());
        bad.tests[0].value = Value { neg: true, mag: 1 };
        assert!(validate_object(&bad, Layer::Network).is_err());
        let ev = obj("event == 0");
        assert!(validate_object(&ev, Layer::Network).is_ok());
        assert!(validate_object(&ev, Layer::Socket).is_err());
        // WinDivert's eth_layer branch emits `zero == 1` for FALSE: accepted.
        let z = Object {
            tests: vec![t(Field::Zero, Op::Eq, 1, A, X)],
        };
        assert!(validate_object(&z, Layer::Network).is_ok());
        let too_many = Object {
            tests: vec![t(Field::Tcp, Op::Eq, 1, A, X); 257],
        };
        assert!(validate_object(&too_many, Layer::Network).is_err());
    }

    #[test]
    fn optimizer() {
        // The dead test of a folded conditional goes.
        let o = optimize(&obj("(true? tcp: udp)"));
        assert_eq!(o, obj("tcp"));
        // Identical tails are shared.
        let o = optimize(&obj("(tcp? udp: icmp and udp) or (ip and udp)"));
        assert!(o.tests.len() < obj("(tcp? udp: icmp and udp) or (ip and udp)").tests.len());
        // Tests whose jumps agree are skipped.
        assert_eq!(optimize(&obj("tcp or true")), Object::constant(true));
        assert_eq!(optimize(&obj("(tcp? true: true)")), Object::constant(true));
        assert_eq!(optimize(&obj("tcp and udp")), obj("tcp and udp"));
    }

    #[test]
    fn flags() {
        let fl = |s: &str, l: Layer| analyze(&compile_text(s, l).unwrap(), l);
        let all =
            FilterFlags::INBOUND | FilterFlags::OUTBOUND | FilterFlags::IP | FilterFlags::IPV6;
        assert_eq!(fl("true", Layer::Network), all);
        assert_eq!(fl("false", Layer::Network), FilterFlags::NONE);
        assert_eq!(fl("tcp.DstPort == 80", Layer::Network), all);
        assert_eq!(
            fl("outbound and tcp", Layer::Network),
            FilterFlags::OUTBOUND | FilterFlags::IP | FilterFlags::IPV6
        );
        assert_eq!(
            fl("not outbound", Layer::Network),
            FilterFlags::INBOUND | FilterFlags::IP | FilterFlags::IPV6
        );
        assert_eq!(
            fl("inbound and ip", Layer::Network),
            FilterFlags::INBOUND | FilterFlags::IP
        );
        assert_eq!(
            fl("ipv6.DstAddr == ::1", Layer::Network),
            FilterFlags::INBOUND | FilterFlags::OUTBOUND | FilterFlags::IPV6
        );
        assert_eq!(
            fl("icmp.Type == 8", Layer::Network),
            FilterFlags::INBOUND | FilterFlags::OUTBOUND | FilterFlags::IP
        );
        assert_eq!(
            fl("true", Layer::Flow),
            FilterFlags::IP | FilterFlags::IPV6 | FilterFlags::EVENT_FLOW_DELETED
        );
        assert_eq!(
            fl("event == ESTABLISHED and ip", Layer::Flow),
            FilterFlags::IP
        );
        assert_eq!(
            fl("event == CONNECT or event == ACCEPT", Layer::Socket),
            FilterFlags::IP
                | FilterFlags::IPV6
                | FilterFlags::EVENT_SOCKET_CONNECT
                | FilterFlags::EVENT_SOCKET_ACCEPT
        );
        assert_eq!(fl("true", Layer::Reflect), FilterFlags::NONE);
        assert_eq!(fl("tcp", Layer::NetworkForward), all);
        assert_eq!(
            FilterFlags::from_bits_retain(0x30).to_string(),
            "INBOUND|OUTBOUND"
        );
    }

    #[test]
    fn worst_case_nesting_fits_a_small_stack() {
        // The deepest inputs the limits allow compile on a default 2 MiB thread stack, even
        // in a debug build (release builds need about 256 KiB).
        let deep = format!("{}tcp{}", "(".repeat(340), ")".repeat(340));
        let and_chain = vec!["true"; 639].join(" and ");
        let or_chain = vec!["true"; 639].join(" or ");
        let mixed = format!("{}{}{}", "(tcp and ".repeat(200), "udp", ")".repeat(200));
        let h = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for text in [deep, and_chain, or_chain, mixed] {
                    let r = crate::filter::Filter::compile(&text, Layer::Network);
                    assert!(
                        r.is_ok() || r.as_ref().is_err_and(|e| e.kind == ErrorKind::TooLong),
                        "{r:?}"
                    );
                }
            })
            .unwrap();
        h.join().unwrap();
    }

    #[test]
    fn decide_table() {
        let v = Value::pos;
        let (lo, hi) = (v(0), v(255));
        assert_eq!(decide(Op::Eq, v(256), lo, hi), Some(false));
        assert_eq!(decide(Op::Neq, v(256), lo, hi), Some(true));
        assert_eq!(decide(Op::Eq, v(3), lo, hi), None);
        assert_eq!(decide(Op::Lt, v(256), lo, hi), Some(true));
        assert_eq!(decide(Op::Lt, v(0), lo, hi), Some(false));
        assert_eq!(decide(Op::Le, v(255), lo, hi), Some(true));
        assert_eq!(decide(Op::Le, Value::from_i128(-1), lo, hi), Some(false));
        assert_eq!(decide(Op::Gt, v(255), lo, hi), Some(false));
        assert_eq!(decide(Op::Gt, Value::from_i128(-1), lo, hi), Some(true));
        assert_eq!(decide(Op::Ge, v(256), lo, hi), Some(false));
        assert_eq!(decide(Op::Ge, v(0), lo, hi), Some(true));
        assert_eq!(decide(Op::Ge, v(1), lo, hi), None);
    }
}
