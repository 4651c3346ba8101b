//! The intermediate representation: WinDivert's filter object, a forward-only chain of at
//! most 256 tests with success and failure jumps (a decision DAG).
//!
//! Test 0 is the entry point; every jump goes to a later test, or to ACCEPT or REJECT, so
//! evaluation always terminates.

use super::fields::Field;

/// Maximum number of tests in a filter object (`WINDIVERT_FILTER_MAXLEN`).
pub const MAX_TESTS: usize = 256;

/// A comparison operator (WinDivert's `test` codes 0..5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// `==` (also written `=`).
    Eq = 0,
    /// `!=`.
    Neq = 1,
    /// `<`.
    Lt = 2,
    /// `<=`.
    Le = 3,
    /// `>`.
    Gt = 4,
    /// `>=`.
    Ge = 5,
}

impl Op {
    /// The operator for WinDivert's numeric code.
    pub const fn from_code(c: u32) -> Option<Op> {
        Some(match c {
            0 => Op::Eq,
            1 => Op::Neq,
            2 => Op::Lt,
            3 => Op::Le,
            4 => Op::Gt,
            5 => Op::Ge,
            _ => return None,
        })
    }

    /// The negated operator (`not F == v` is `F != v`, `not F < v` is `F >= v`, ...).
    pub const fn negate(self) -> Op {
        match self {
            Op::Eq => Op::Neq,
            Op::Neq => Op::Eq,
            Op::Lt => Op::Ge,
            Op::Le => Op::Gt,
            Op::Gt => Op::Le,
            Op::Ge => Op::Lt,
        }
    }

    /// The operator's text as the formatter prints it (`=`, `!=`, `<`, `<=`, `>`, `>=`).
    pub const fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Neq => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A signed 129-bit constant: a sign and a 128-bit magnitude, as WinDivert compares them.
/// "Negative zero" is never produced: `neg` implies `mag != 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Value {
    /// The constant is negative.
    pub neg: bool,
    /// The magnitude.
    pub mag: u128,
}

impl Value {
    /// A non-negative value.
    pub const fn pos(mag: u128) -> Value {
        Value { neg: false, mag }
    }

    /// A value from an `i128`.
    pub const fn from_i128(v: i128) -> Value {
        if v < 0 {
            Value {
                neg: true,
                mag: v.unsigned_abs(),
            }
        } else {
            Value {
                neg: false,
                mag: v as u128,
            }
        }
    }

    /// Compare two signed values.
    pub fn cmp_signed(&self, other: &Value) -> core::cmp::Ordering {
        use core::cmp::Ordering;
        let a_neg = self.neg && self.mag != 0;
        let b_neg = other.neg && other.mag != 0;
        match (a_neg, b_neg) {
            (false, false) => self.mag.cmp(&other.mag),
            (true, true) => other.mag.cmp(&self.mag),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }

    /// The value as WinDivert's `arg[4]` words (`[0]` least significant).
    pub const fn words(&self) -> [u32; 4] {
        [
            self.mag as u32,
            (self.mag >> 32) as u32,
            (self.mag >> 64) as u32,
            (self.mag >> 96) as u32,
        ]
    }
}

/// Where a test jumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jump {
    /// The filter matches.
    Accept,
    /// The filter does not match.
    Reject,
    /// Continue with the test at this index (always greater than the current one).
    Test(u16),
}

/// One test: `field op value`, then a jump on success and one on failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Test {
    /// The field.
    pub field: Field,
    /// The comparison.
    pub op: Op,
    /// The constant.
    pub value: Value,
    /// For array fields, the signed byte offset: `>= 0` from the region start, `< 0` from
    /// the region end (`packet32[-1]` is `-4`). 0 for other fields.
    pub index: i32,
    /// The jump when the test holds.
    pub success: Jump,
    /// The jump when it does not.
    pub failure: Jump,
}

/// A compiled filter object: `tests[0]` is the entry; jumps only go forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Object {
    /// The tests, 1..=256 of them.
    pub tests: Vec<Test>,
}

impl Object {
    /// The object of a constant filter (`true` or `false`): one test `zero == 0` whose two
    /// jumps both go to ACCEPT or REJECT, as WinDivert emits it.
    pub fn constant(result: bool) -> Object {
        let j = if result { Jump::Accept } else { Jump::Reject };
        Object {
            tests: vec![Test {
                field: Field::Zero,
                op: Op::Eq,
                value: Value::pos(0),
                index: 0,
                success: j,
                failure: j,
            }],
        }
    }

    /// If the object always gives the same result, that result.
    pub fn constant_result(&self) -> Option<bool> {
        // Walk every reachable path: constant iff all reachable terminal jumps agree.
        let mut seen_accept = false;
        let mut seen_reject = false;
        let mut reachable = vec![false; self.tests.len()];
        if reachable.is_empty() {
            return None;
        }
        reachable[0] = true;
        for i in 0..self.tests.len() {
            if !reachable[i] {
                continue;
            }
            let t = &self.tests[i];
            for j in [t.success, t.failure] {
                match j {
                    Jump::Accept => seen_accept = true,
                    Jump::Reject => seen_reject = true,
                    Jump::Test(k) => {
                        if let Some(r) = reachable.get_mut(k as usize) {
                            *r = true;
                        }
                    }
                }
            }
        }
        match (seen_accept, seen_reject) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }
}
