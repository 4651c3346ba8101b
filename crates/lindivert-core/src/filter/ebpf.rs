//! The eBPF back end: the in-kernel packet prefilter.
//!
//! [`prefilter_program`] turns a filter [`Object`] into a `BPF_PROG_TYPE_SOCKET_FILTER`
//! program for the compat xtables `bpf` match (revision 1, mode 2 = program fd). At the
//! netfilter hooks `skb->data` is the IP header, so the program reads the packet with
//! `BPF_LD_ABS`/`BPF_LD_IND` at offsets relative to the IP header and `skb->len` from the
//! `__sk_buff` context (offset 0).
//!
//! # Contract
//!
//! The program returns non-zero ("may match") whenever the exact evaluator could accept the
//! packet for some address consistent with the [`PrefilterContext`], and 0 only when no such
//! address exists. It is exact for tests on packet fields and on address fields the context
//! fixes; everything the kernel cannot know here (`timestamp`, `random*`, `ifIdx`,
//! `subIfIdx`, `impostor`, and `loopback`/direction fields the context leaves open) is
//! *unknown*, and the program accepts if either outcome of such a test could lead to ACCEPT.
//! Packets the program cannot parse the way the user-space parser does (IP length different
//! from `skb->len`, more than [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers, a truncated
//! fragment header, a bad version) also give "may match": user space re-checks every packet.
//!
//! # How unknown tests are handled
//!
//! The object is a forward-only decision DAG. The generator walks *sets* of DAG nodes: a set
//! `S` stands for "ACCEPT is reachable from some node of `S`". The smallest node of a set is
//! evaluated first; a test with a known outcome just follows its edge, an unknown test adds
//! both successors to the set, and a packet test becomes one eBPF block branching to the two
//! successor sets. Sets only ever move forward, so the result is again a loop-free program;
//! without unknown tests every set is a single node and the program mirrors the DAG. The
//! number of sets is bounded ([`MAX_STATES`]); past that bound the program answers "may
//! match" (still sound).
//!
//! # Testing without the kernel
//!
//! [`run_socket_filter`] interprets the generated programs the way the kernel runs them
//! under the xtables match; the unit tests compare it with the exact evaluator on random
//! objects, and the privileged tests (`crates/lindivert/tests/ebpf_prefilter.rs`) compare it
//! with `BPF_PROG_TEST_RUN`.
//!
//! # Registers and stack
//!
//! `r6` = context (required by `LD_ABS`/`LD_IND`), `r7` = transport header offset, `r8` =
//! payload offset (IP + extension + transport headers), `r9` = packet length. The stack holds
//! the IP version, final protocol, transport kind and fragment flags. `r0`–`r5` are scratch
//! (every packet load clobbers them).

use std::collections::{HashMap, VecDeque};

use super::fields::Field;
use super::ir::{Jump, Object, Op, Test, Value};
use crate::types::Layer;

// ---------------------------------------------------------------------------------------
// Instruction encoding
// ---------------------------------------------------------------------------------------

/// Instruction classes, sizes, modes and operations of the eBPF instruction set
/// (`<linux/bpf_common.h>`, `<linux/bpf.h>`).
pub mod code {
    /// Class: legacy packet loads (`LD_ABS`, `LD_IND`) and `LD_IMM64`.
    pub const LD: u8 = 0x00;
    /// Class: load from memory into a register.
    pub const LDX: u8 = 0x01;
    /// Class: store an immediate to memory.
    pub const ST: u8 = 0x02;
    /// Class: store a register to memory.
    pub const STX: u8 = 0x03;
    /// Class: 32-bit arithmetic.
    pub const ALU: u8 = 0x04;
    /// Class: 64-bit jumps, calls and exit.
    pub const JMP: u8 = 0x05;
    /// Class: jumps comparing the low 32 bits.
    pub const JMP32: u8 = 0x06;
    /// Class: 64-bit arithmetic.
    pub const ALU64: u8 = 0x07;

    /// Size: 32 bits.
    pub const W: u8 = 0x00;
    /// Size: 16 bits.
    pub const H: u8 = 0x08;
    /// Size: 8 bits.
    pub const B: u8 = 0x10;
    /// Size: 64 bits.
    pub const DW: u8 = 0x18;

    /// Mode: immediate.
    pub const IMM: u8 = 0x00;
    /// Mode: packet load at an absolute offset.
    pub const ABS: u8 = 0x20;
    /// Mode: packet load at register + offset.
    pub const IND: u8 = 0x40;
    /// Mode: memory access.
    pub const MEM: u8 = 0x60;

    /// Source: the immediate.
    pub const K: u8 = 0x00;
    /// Source: the source register.
    pub const X: u8 = 0x08;

    /// ALU: `dst += src`.
    pub const ADD: u8 = 0x00;
    /// ALU: `dst -= src`.
    pub const SUB: u8 = 0x10;
    /// ALU: `dst *= src`.
    pub const MUL: u8 = 0x20;
    /// ALU: `dst |= src`.
    pub const OR: u8 = 0x40;
    /// ALU: `dst &= src`.
    pub const AND: u8 = 0x50;
    /// ALU: `dst <<= src`.
    pub const LSH: u8 = 0x60;
    /// ALU: `dst >>= src` (logical).
    pub const RSH: u8 = 0x70;
    /// ALU: `dst ^= src`.
    pub const XOR: u8 = 0xa0;
    /// ALU: `dst = src`.
    pub const MOV: u8 = 0xb0;

    /// Jump: always.
    pub const JA: u8 = 0x00;
    /// Jump: `==`.
    pub const JEQ: u8 = 0x10;
    /// Jump: unsigned `>`.
    pub const JGT: u8 = 0x20;
    /// Jump: unsigned `>=`.
    pub const JGE: u8 = 0x30;
    /// Jump: `dst & src != 0`.
    pub const JSET: u8 = 0x40;
    /// Jump: `!=`.
    pub const JNE: u8 = 0x50;
    /// Jump: signed `>`.
    pub const JSGT: u8 = 0x60;
    /// Jump: signed `>=`.
    pub const JSGE: u8 = 0x70;
    /// Call a helper.
    pub const CALL: u8 = 0x80;
    /// Return `r0`.
    pub const EXIT: u8 = 0x90;
    /// Jump: unsigned `<`.
    pub const JLT: u8 = 0xa0;
    /// Jump: unsigned `<=`.
    pub const JLE: u8 = 0xb0;
    /// Jump: signed `<`.
    pub const JSLT: u8 = 0xc0;
    /// Jump: signed `<=`.
    pub const JSLE: u8 = 0xd0;
}

/// An eBPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    /// The read-only frame pointer.
    R10,
}

/// One eBPF instruction, the kernel's `struct bpf_insn` (8 bytes: `code`, `dst_reg:4`,
/// `src_reg:4`, `off: s16`, `imm: s32`). `LD_IMM64` takes two of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// Destination register (0..=10).
    pub dst: u8,
    /// Source register (0..=10), or a pseudo-source for `LD_IMM64` and calls.
    pub src: u8,
    /// Signed offset: jump distance in instructions or memory offset in bytes.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its raw parts.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The kernel layout on a little-endian machine: `dst_reg` in the low nibble of byte 1.
    pub fn to_le_bytes(self) -> [u8; 8] {
        let o = self.off.to_le_bytes();
        let i = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | ((self.src & 0x0f) << 4),
            o[0],
            o[1],
            i[0],
            i[1],
            i[2],
            i[3],
        ]
    }

    /// The kernel layout on a big-endian machine: `dst_reg` in the high nibble of byte 1.
    pub fn to_be_bytes(self) -> [u8; 8] {
        let o = self.off.to_be_bytes();
        let i = self.imm.to_be_bytes();
        [
            self.code,
            ((self.dst & 0x0f) << 4) | (self.src & 0x0f),
            o[0],
            o[1],
            i[0],
            i[1],
            i[2],
            i[3],
        ]
    }

    /// The kernel layout for this machine (what `BPF_PROG_LOAD` expects).
    pub fn to_ne_bytes(self) -> [u8; 8] {
        if cfg!(target_endian = "big") {
            self.to_be_bytes()
        } else {
            self.to_le_bytes()
        }
    }

    /// `dst = imm` (64-bit, sign-extended immediate).
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(code::ALU64 | code::MOV | code::K, dst as u8, 0, 0, imm)
    }

    /// `dst = src` (64-bit).
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(
            code::ALU64 | code::MOV | code::X,
            dst as u8,
            src as u8,
            0,
            0,
        )
    }

    /// `dst op= imm` (64-bit; `op` is one of the ALU operations in [`code`]).
    pub const fn alu64_imm(op: u8, dst: Reg, imm: i32) -> Insn {
        Insn::new(code::ALU64 | op | code::K, dst as u8, 0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub const fn alu64_reg(op: u8, dst: Reg, src: Reg) -> Insn {
        Insn::new(code::ALU64 | op | code::X, dst as u8, src as u8, 0, 0)
    }

    /// `dst op= imm` (32-bit; the result is zero-extended).
    pub const fn alu32_imm(op: u8, dst: Reg, imm: i32) -> Insn {
        Insn::new(code::ALU | op | code::K, dst as u8, 0, 0, imm)
    }

    /// `dst = *(size *)(src + off)`.
    pub const fn ldx_mem(size: u8, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(code::LDX | size | code::MEM, dst as u8, src as u8, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn stx_mem(size: u8, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(code::STX | size | code::MEM, dst as u8, src as u8, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn st_mem(size: u8, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(code::ST | size | code::MEM, dst as u8, 0, off, imm)
    }

    /// `r0 = ntoh(*(size *)(skb->data + imm))`; `r6` must hold the context. Out-of-bounds
    /// loads end the program with return value 0.
    pub const fn ld_abs(size: u8, imm: i32) -> Insn {
        Insn::new(code::LD | size | code::ABS, 0, 0, 0, imm)
    }

    /// `r0 = ntoh(*(size *)(skb->data + src + imm))`; `r6` must hold the context.
    pub const fn ld_ind(size: u8, src: Reg, imm: i32) -> Insn {
        Insn::new(code::LD | size | code::IND, 0, src as u8, 0, imm)
    }

    /// `dst = imm64` (two instructions).
    pub const fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        [
            Insn::new(
                code::LD | code::DW | code::IMM,
                dst as u8,
                0,
                0,
                imm as u32 as i32,
            ),
            Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
        ]
    }

    /// `if dst op imm goto +off` (64-bit compare, immediate sign-extended).
    pub const fn jmp_imm(op: u8, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(code::JMP | op | code::K, dst as u8, 0, off, imm)
    }

    /// `if dst op src goto +off` (64-bit compare).
    pub const fn jmp_reg(op: u8, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(code::JMP | op | code::X, dst as u8, src as u8, off, 0)
    }

    /// `if (u32)dst op (u32)imm goto +off`.
    pub const fn jmp32_imm(op: u8, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(code::JMP32 | op | code::K, dst as u8, 0, off, imm)
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(code::JMP | code::JA, 0, 0, off, 0)
    }

    /// Call helper function number `helper`.
    pub const fn call(helper: i32) -> Insn {
        Insn::new(code::JMP | code::CALL, 0, 0, 0, helper)
    }

    /// Return `r0`.
    pub const fn exit() -> Insn {
        Insn::new(code::JMP | code::EXIT, 0, 0, 0, 0)
    }

    /// Whether this is a jump with a 16-bit offset (not a call or exit).
    pub const fn is_jump(&self) -> bool {
        let class = self.code & 0x07;
        let op = self.code & 0xf0;
        (class == code::JMP || class == code::JMP32) && op != code::CALL && op != code::EXIT
    }
}

// ---------------------------------------------------------------------------------------
// Assembler
// ---------------------------------------------------------------------------------------

/// A jump target of an [`Asm`], bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(u32);

/// Why [`Asm::finish`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsmError {
    /// A label was used but never bound.
    UnboundLabel,
    /// A label was bound twice.
    LabelBoundTwice,
    /// A jump is farther than a 16-bit offset reaches.
    JumpTooFar,
}

impl core::fmt::Display for AsmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AsmError::UnboundLabel => "eBPF assembler: label used but never bound",
            AsmError::LabelBoundTwice => "eBPF assembler: label bound twice",
            AsmError::JumpTooFar => "eBPF assembler: jump offset exceeds 16 bits",
        })
    }
}

impl std::error::Error for AsmError {}

/// A small eBPF assembler: emits instructions, and resolves jumps to labels in
/// [`Asm::finish`].
#[derive(Debug, Default, Clone)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
    error: Option<AsmError>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label((self.labels.len() - 1) as u32)
    }

    /// Bind `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        match self.labels.get_mut(l.0 as usize) {
            Some(slot @ None) => *slot = Some(self.insns.len()),
            _ => self.error = Some(AsmError::LabelBoundTwice),
        }
    }

    /// Append one instruction.
    pub fn emit(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// Append a jump instruction whose offset will point at `target`.
    pub fn jump_to(&mut self, insn: Insn, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.insns.push(insn);
    }

    /// `goto target`.
    pub fn ja(&mut self, target: Label) {
        self.jump_to(Insn::ja(0), target);
    }

    /// `if dst op imm goto target` (64-bit).
    pub fn jmp_imm(&mut self, op: u8, dst: Reg, imm: i32, target: Label) {
        self.jump_to(Insn::jmp_imm(op, dst, imm, 0), target);
    }

    /// `if dst op src goto target` (64-bit).
    pub fn jmp_reg(&mut self, op: u8, dst: Reg, src: Reg, target: Label) {
        self.jump_to(Insn::jmp_reg(op, dst, src, 0), target);
    }

    /// `if (u32)dst op (u32)imm goto target`.
    pub fn jmp32_imm(&mut self, op: u8, dst: Reg, imm: i32, target: Label) {
        self.jump_to(Insn::jmp32_imm(op, dst, imm, 0), target);
    }

    /// The number of instructions emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Resolve every jump and return the program.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        for &(at, l) in &self.fixups {
            let target = self
                .labels
                .get(l.0 as usize)
                .copied()
                .flatten()
                .ok_or(AsmError::UnboundLabel)?;
            let rel = target as i64 - at as i64 - 1;
            let off = i16::try_from(rel).map_err(|_| AsmError::JumpTooFar)?;
            if let Some(insn) = self.insns.get_mut(at) {
                insn.off = off;
            }
        }
        Ok(self.insns)
    }
}

// ---------------------------------------------------------------------------------------
// Prefilter context
// ---------------------------------------------------------------------------------------

/// Which way the packets the program sees are going (which netfilter hook it serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Locally generated (OUTPUT): `outbound` = 1.
    Outbound,
    /// Locally delivered (INPUT): `inbound` = 1.
    Inbound,
    /// Forwarded (FORWARD): direction fields are not known.
    Forward,
    /// Not fixed by the hook: direction fields are unknown.
    Unknown,
}

/// What the hook running the prefilter knows about every packet it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefilterContext {
    /// The handle's layer. Only NETWORK and NETWORK_FORWARD carry packets; for other layers
    /// the program always answers "may match".
    pub layer: Layer,
    /// The packets' direction.
    pub direction: Direction,
    /// `Some(4)` or `Some(6)` when the chain only sees that IP version (an `ip`/`ip6`
    /// family table); `None` for `inet`.
    pub ip_version: Option<u8>,
    /// `Some(b)` when every packet's `loopback` flag is known to be `b`.
    pub loopback: Option<bool>,
}

impl PrefilterContext {
    /// A context for `layer` and `direction`, with IP version and loopback unknown.
    pub const fn new(layer: Layer, direction: Direction) -> PrefilterContext {
        PrefilterContext {
            layer,
            direction,
            ip_version: None,
            loopback: None,
        }
    }
}

/// The program's return value for "the packet may match".
pub const MAY_MATCH: i32 = 1;

/// At most this many IPv6 extension headers are walked; a packet with more gets "may match".
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// At most this many distinct node sets become eBPF blocks; further ones answer "may match".
pub const MAX_STATES: usize = 1024;

/// Soft limit on the program length: past it, new blocks answer "may match". Keeps every
/// jump within the 16-bit offset range and the verifier's work small.
pub const SOFT_MAX_INSNS: usize = 20_000;

// Stack slots (offsets from r10).
const SLOT_VER: i16 = -8;
const SLOT_PROTO: i16 = -16;
const SLOT_KIND: i16 = -24;
const SLOT_FRAG: i16 = -32;
const SLOT_FOFF: i16 = -40;
const SLOT_TMP: i16 = -48;
const SLOTS: [i16; 6] = [
    SLOT_VER, SLOT_PROTO, SLOT_KIND, SLOT_FRAG, SLOT_FOFF, SLOT_TMP,
];

// Transport kinds stored in SLOT_KIND.
const KIND_NONE: i32 = 0;
const KIND_TCP: i32 = 1;
const KIND_UDP: i32 = 2;
const KIND_ICMP: i32 = 3;
const KIND_ICMPV6: i32 = 4;

/// The program that always answers `ret`.
pub fn constant_program(ret: i32) -> Vec<Insn> {
    vec![Insn::mov64_imm(Reg::R0, ret), Insn::exit()]
}

/// Generate the socket-filter prefilter for `obj` at a hook described by `ctx`.
///
/// The program returns [`MAY_MATCH`] if the packet may match and 0 if it cannot (see the
/// module docs for the exact contract). It never fails: an invalid object, or one too large
/// to encode, gives the program that always answers "may match".
pub fn prefilter_program(obj: &Object, ctx: PrefilterContext) -> Vec<Insn> {
    if !ctx.layer.is_network() || !object_is_valid(obj) {
        return constant_program(MAY_MATCH);
    }
    let plans: Vec<Plan> = obj.tests.iter().map(|t| plan_test(t, &ctx)).collect();
    let mut g = Gen {
        tests: &obj.tests,
        plans: &plans,
        asm: Asm::new(),
        states: HashMap::new(),
        queue: VecDeque::new(),
        accept: Label(0),
        reject: Label(0),
    };
    g.accept = g.asm.label();
    g.reject = g.asm.label();
    let mut start = [0u64; 4];
    set_bit(&mut start, 0);
    let entry = match g.normalize(start) {
        Norm::Accept => return constant_program(MAY_MATCH),
        Norm::Reject => return constant_program(0),
        Norm::Set(s) => s,
    };
    emit_prologue(&mut g.asm, &ctx, g.accept);
    let entry_label = g.state_label(entry);
    g.asm.ja(entry_label);
    while let Some((set, label)) = g.queue.pop_front() {
        g.asm.bind(label);
        g.emit_state(set);
    }
    g.asm.bind(g.accept);
    g.asm.emit(Insn::mov64_imm(Reg::R0, MAY_MATCH));
    g.asm.emit(Insn::exit());
    g.asm.bind(g.reject);
    g.asm.emit(Insn::mov64_imm(Reg::R0, 0));
    g.asm.emit(Insn::exit());
    match g.asm.finish() {
        Ok(p) => remove_unreachable(p).unwrap_or_else(|| constant_program(MAY_MATCH)),
        Err(_) => constant_program(MAY_MATCH),
    }
}

/// Drop the instructions no path reaches (the kernel refuses programs that have any) and
/// re-aim the jumps (16-bit offsets). `None` if the program is malformed (a jump out of
/// range).
pub fn remove_unreachable(prog: Vec<Insn>) -> Option<Vec<Insn>> {
    let n = prog.len();
    let mut reach = vec![false; n];
    let mut work = vec![0usize];
    while let Some(i) = work.pop() {
        if i >= n {
            return None;
        }
        if reach[i] {
            continue;
        }
        reach[i] = true;
        let insn = prog[i];
        let class = insn.code & 0x07;
        let op = insn.code & 0xf0;
        if insn.code == code::LD | code::DW | code::IMM {
            // The second half of a 64-bit immediate load.
            if i + 1 >= n {
                return None;
            }
            reach[i + 1] = true;
            work.push(i + 2);
            continue;
        }
        if (class == code::JMP || class == code::JMP32) && op == code::EXIT {
            continue;
        }
        if insn.is_jump() {
            let t = i as i64 + 1 + insn.off as i64;
            work.push(usize::try_from(t).ok()?);
            if op == code::JA {
                continue;
            }
        }
        work.push(i + 1);
    }
    let mut new_idx = vec![0usize; n];
    let mut k = 0;
    for i in 0..n {
        new_idx[i] = k;
        if reach[i] {
            k += 1;
        }
    }
    let mut out = Vec::with_capacity(k);
    for (i, insn) in prog.iter().enumerate() {
        if !reach[i] {
            continue;
        }
        let mut insn = *insn;
        if insn.is_jump() {
            let t = (i as i64 + 1 + insn.off as i64) as usize;
            let rel = new_idx[t] as i64 - new_idx[i] as i64 - 1;
            insn.off = i16::try_from(rel).ok()?;
        }
        out.push(insn);
    }
    Some(out)
}

fn object_is_valid(obj: &Object) -> bool {
    let n = obj.tests.len();
    if n == 0 || n > super::ir::MAX_TESTS {
        return false;
    }
    obj.tests.iter().enumerate().all(|(i, t)| {
        [t.success, t.failure].iter().all(|j| match *j {
            Jump::Accept | Jump::Reject => true,
            Jump::Test(k) => (k as usize) > i && (k as usize) < n,
        })
    })
}

// ---------------------------------------------------------------------------------------
// Test plans: what each test compiles to
// ---------------------------------------------------------------------------------------

/// Where a loaded packet value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// The IP header (`LD_ABS`).
    Ip,
    /// The transport header (`LD_IND` from r7).
    L4,
}

/// Code that leaves a 32-bit value in r0 (may clobber r1–r5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loader {
    /// A header field: load, then `>> shift`, then `& mask` (mask 0 = none).
    Field {
        base: Base,
        size: u8,
        off: i32,
        shift: i32,
        mask: i32,
    },
    /// A stack slot.
    Slot(i16),
    /// 1 if the stack slot equals the constant, else 0.
    SlotIs(i16, i32),
    /// The packet length (r9).
    Len,
    /// The payload length (r9 - r8).
    PayloadLen,
    /// `packet*[idx]`, bounds already checked.
    PacketWord { size: u8, idx: i32 },
    /// `tcp.Payload*[idx]` / `udp.Payload*[idx]`, bounds already checked.
    PayloadWord { size: u8, idx: i32 },
    /// `localPort`/`remotePort`: TCP/UDP: the source (`src_port`) or destination port;
    /// ICMP/ICMPv6: the type if `icmp_type`, else 0; other protocols: 0.
    Port { src_port: bool, icmp_type: bool },
}

/// One 32-bit word of a field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Const(u32),
    Load(Loader),
}

/// A run-time precondition; when it fails the test is false (Rule 1 and Rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The IP version slot equals this.
    Version(i32),
    /// The transport kind slot equals this.
    Kind(i32),
    /// `packet*[idx]` of `size` bytes lies inside the packet.
    PacketBounds { idx: i32, size: i32 },
    /// The payload word lies inside the payload.
    PayloadBounds { idx: i32, size: i32 },
}

/// What one test compiles to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// The outcome is fixed at compile time.
    Known(bool),
    /// The outcome cannot be known in the kernel.
    Unknown,
    /// Check the guards, then compare the value (words least significant first).
    Run {
        guards: Vec<Guard>,
        words: [Word; 4],
    },
    /// Different plans for IPv4 and IPv6 packets.
    ByVersion(Box<Plan>, Box<Plan>),
}

impl Plan {
    fn is_runtime(&self) -> bool {
        matches!(self, Plan::Run { .. } | Plan::ByVersion(..))
    }
}

/// The value of a field, before it is compared.
enum FieldVal {
    Const(u128),
    /// The test is false for every packet (an array index that is always out of bounds).
    Never,
    Unknown,
    Run {
        guards: Vec<Guard>,
        words: [Word; 4],
    },
    ByVersion(Box<FieldVal>, Box<FieldVal>),
}

fn scalar(guards: Vec<Guard>, l: Loader) -> FieldVal {
    FieldVal::Run {
        guards,
        words: [
            Word::Load(l),
            Word::Const(0),
            Word::Const(0),
            Word::Const(0),
        ],
    }
}

fn field_load(base: Base, size: u8, off: i32, shift: i32, mask: i32) -> Loader {
    Loader::Field {
        base,
        size,
        off,
        shift,
        mask,
    }
}

fn ip4(size: u8, off: i32, shift: i32, mask: i32) -> FieldVal {
    scalar(
        vec![Guard::Version(4)],
        field_load(Base::Ip, size, off, shift, mask),
    )
}

fn ip6(size: u8, off: i32, shift: i32, mask: i32) -> FieldVal {
    scalar(
        vec![Guard::Version(6)],
        field_load(Base::Ip, size, off, shift, mask),
    )
}

fn l4(kind: i32, size: u8, off: i32, shift: i32, mask: i32) -> FieldVal {
    scalar(
        vec![Guard::Kind(kind)],
        field_load(Base::L4, size, off, shift, mask),
    )
}

/// IPv4 address at `off`, IPv4-mapped (`::ffff:a.b.c.d`).
fn ip4_addr(off: i32) -> [Word; 4] {
    [
        Word::Load(field_load(Base::Ip, code::W, off, 0, 0)),
        Word::Const(0xffff),
        Word::Const(0),
        Word::Const(0),
    ]
}

/// IPv6 address at `off` (most significant word first in the packet).
fn ip6_addr(off: i32) -> [Word; 4] {
    [
        Word::Load(field_load(Base::Ip, code::W, off + 12, 0, 0)),
        Word::Load(field_load(Base::Ip, code::W, off + 8, 0, 0)),
        Word::Load(field_load(Base::Ip, code::W, off + 4, 0, 0)),
        Word::Load(field_load(Base::Ip, code::W, off, 0, 0)),
    ]
}

/// The outbound flag as the context fixes it.
fn outbound_known(ctx: &PrefilterContext) -> Option<bool> {
    if ctx.layer != Layer::Network {
        return None;
    }
    match ctx.direction {
        Direction::Outbound => Some(true),
        Direction::Inbound => Some(false),
        Direction::Forward | Direction::Unknown => None,
    }
}

fn field_value(t: &Test, ctx: &PrefilterContext) -> FieldVal {
    use code::{B, H, W};
    use Field as F;
    let out = outbound_known(ctx);
    match t.field {
        F::Zero => FieldVal::Const(0),
        F::Event => FieldVal::Const(0),
        F::Outbound => out.map_or(FieldVal::Unknown, |o| FieldVal::Const(o as u128)),
        F::Inbound => out.map_or(FieldVal::Unknown, |o| FieldVal::Const(!o as u128)),
        F::Loopback => ctx
            .loopback
            .map_or(FieldVal::Unknown, |l| FieldVal::Const(l as u128)),
        F::IfIdx
        | F::SubIfIdx
        | F::Impostor
        | F::Timestamp
        | F::Random8
        | F::Random16
        | F::Random32
        | F::ProcessId
        | F::EndpointId
        | F::ParentEndpointId
        | F::Layer
        | F::Priority => FieldVal::Unknown,
        F::Ip | F::Ipv6 => {
            let v = if t.field == F::Ip { 4 } else { 6 };
            match ctx.ip_version {
                Some(k @ (4 | 6)) => FieldVal::Const((k == v) as u128),
                _ => scalar(vec![], Loader::SlotIs(SLOT_VER, v as i32)),
            }
        }
        F::Tcp => scalar(vec![], Loader::SlotIs(SLOT_KIND, KIND_TCP)),
        F::Udp => scalar(vec![], Loader::SlotIs(SLOT_KIND, KIND_UDP)),
        F::Icmp if ctx.ip_version == Some(6) => FieldVal::Const(0),
        F::Icmpv6 if ctx.ip_version == Some(4) => FieldVal::Const(0),
        // The kind slot is only ever ICMP for IPv4 and ICMPv6 for IPv6 packets.
        F::Icmp => scalar(vec![], Loader::SlotIs(SLOT_KIND, KIND_ICMP)),
        F::Icmpv6 => scalar(vec![], Loader::SlotIs(SLOT_KIND, KIND_ICMPV6)),
        F::Fragment => scalar(vec![], Loader::Slot(SLOT_FRAG)),
        F::Protocol => scalar(vec![], Loader::Slot(SLOT_PROTO)),
        F::Length => scalar(vec![], Loader::Len),

        F::IpHdrLength => ip4(B, 0, 0, 0x0f),
        F::IpTos => ip4(B, 1, 0, 0),
        F::IpLength => ip4(H, 2, 0, 0),
        F::IpId => ip4(H, 4, 0, 0),
        F::IpDf => ip4(H, 6, 14, 1),
        F::IpMf => ip4(H, 6, 13, 1),
        F::IpFragOff => ip4(H, 6, 0, 0x1fff),
        F::IpTtl => ip4(B, 8, 0, 0),
        F::IpProtocol => ip4(B, 9, 0, 0),
        F::IpChecksum => ip4(H, 10, 0, 0),
        F::IpSrcAddr => FieldVal::Run {
            guards: vec![Guard::Version(4)],
            words: ip4_addr(12),
        },
        F::IpDstAddr => FieldVal::Run {
            guards: vec![Guard::Version(4)],
            words: ip4_addr(16),
        },

        F::Ipv6TrafficClass => ip6(H, 0, 4, 0xff),
        F::Ipv6FlowLabel => ip6(W, 0, 0, 0x000f_ffff),
        F::Ipv6Length => ip6(H, 4, 0, 0),
        F::Ipv6NextHdr => ip6(B, 6, 0, 0),
        F::Ipv6HopLimit => ip6(B, 7, 0, 0),
        F::Ipv6SrcAddr => FieldVal::Run {
            guards: vec![Guard::Version(6)],
            words: ip6_addr(8),
        },
        F::Ipv6DstAddr => FieldVal::Run {
            guards: vec![Guard::Version(6)],
            words: ip6_addr(24),
        },

        F::IcmpType => l4(KIND_ICMP, B, 0, 0, 0),
        F::IcmpCode => l4(KIND_ICMP, B, 1, 0, 0),
        F::IcmpChecksum => l4(KIND_ICMP, H, 2, 0, 0),
        F::IcmpBody => l4(KIND_ICMP, W, 4, 0, 0),
        F::Icmpv6Type => l4(KIND_ICMPV6, B, 0, 0, 0),
        F::Icmpv6Code => l4(KIND_ICMPV6, B, 1, 0, 0),
        F::Icmpv6Checksum => l4(KIND_ICMPV6, H, 2, 0, 0),
        F::Icmpv6Body => l4(KIND_ICMPV6, W, 4, 0, 0),

        F::TcpSrcPort => l4(KIND_TCP, H, 0, 0, 0),
        F::TcpDstPort => l4(KIND_TCP, H, 2, 0, 0),
        F::TcpSeqNum => l4(KIND_TCP, W, 4, 0, 0),
        F::TcpAckNum => l4(KIND_TCP, W, 8, 0, 0),
        F::TcpHdrLength => l4(KIND_TCP, B, 12, 4, 0x0f),
        F::TcpUrg => l4(KIND_TCP, B, 13, 5, 1),
        F::TcpAck => l4(KIND_TCP, B, 13, 4, 1),
        F::TcpPsh => l4(KIND_TCP, B, 13, 3, 1),
        F::TcpRst => l4(KIND_TCP, B, 13, 2, 1),
        F::TcpSyn => l4(KIND_TCP, B, 13, 1, 1),
        F::TcpFin => l4(KIND_TCP, B, 13, 0, 1),
        F::TcpWindow => l4(KIND_TCP, H, 14, 0, 0),
        F::TcpChecksum => l4(KIND_TCP, H, 16, 0, 0),
        F::TcpUrgPtr => l4(KIND_TCP, H, 18, 0, 0),
        F::TcpPayloadLength => scalar(vec![Guard::Kind(KIND_TCP)], Loader::PayloadLen),

        F::UdpSrcPort => l4(KIND_UDP, H, 0, 0, 0),
        F::UdpDstPort => l4(KIND_UDP, H, 2, 0, 0),
        F::UdpLength => l4(KIND_UDP, H, 4, 0, 0),
        F::UdpChecksum => l4(KIND_UDP, H, 6, 0, 0),
        F::UdpPayloadLength => scalar(vec![Guard::Kind(KIND_UDP)], Loader::PayloadLen),

        F::LocalAddr | F::RemoteAddr => match out {
            None => FieldVal::Unknown,
            Some(o) => {
                // localAddr = outbound ? src : dst; remoteAddr = outbound ? dst : src.
                let src = (t.field == F::LocalAddr) == o;
                let (o4, o6) = if src { (12, 8) } else { (16, 24) };
                FieldVal::ByVersion(
                    Box::new(FieldVal::Run {
                        guards: vec![],
                        words: ip4_addr(o4),
                    }),
                    Box::new(FieldVal::Run {
                        guards: vec![],
                        words: ip6_addr(o6),
                    }),
                )
            }
        },
        F::LocalPort | F::RemotePort => match out {
            None => FieldVal::Unknown,
            Some(o) => {
                let local = t.field == F::LocalPort;
                scalar(
                    vec![],
                    Loader::Port {
                        src_port: local == o,
                        // ICMP type: localPort when outbound, remotePort when inbound.
                        icmp_type: local == o,
                    },
                )
            }
        },

        F::Packet | F::Packet16 | F::Packet32 => {
            let size = t.field.word_size() as i32;
            match array_index(t.index, size) {
                None => FieldVal::Never,
                Some(idx) => scalar(
                    vec![Guard::PacketBounds { idx, size }],
                    Loader::PacketWord {
                        size: size_code(size),
                        idx,
                    },
                ),
            }
        }
        F::TcpPayload
        | F::TcpPayload16
        | F::TcpPayload32
        | F::UdpPayload
        | F::UdpPayload16
        | F::UdpPayload32 => {
            let size = t.field.word_size() as i32;
            let kind = if t.field.needs() == Some(super::fields::Header::Tcp) {
                KIND_TCP
            } else {
                KIND_UDP
            };
            match array_index(t.index, size) {
                None => FieldVal::Never,
                Some(idx) => scalar(
                    vec![Guard::Kind(kind), Guard::PayloadBounds { idx, size }],
                    Loader::PayloadWord {
                        size: size_code(size),
                        idx,
                    },
                ),
            }
        }
    }
}

/// The signed byte offset of an array access, or `None` if it is out of bounds for every
/// packet (`[-i]` with `i < size`, or beyond any IP packet).
fn array_index(idx: i32, size: i32) -> Option<i32> {
    const LIMIT: i32 = 0x2_0000;
    if idx < 0 {
        if idx < -LIMIT || -idx < size {
            return None;
        }
    } else if idx > LIMIT {
        return None;
    }
    Some(idx)
}

fn size_code(size: i32) -> u8 {
    match size {
        1 => code::B,
        2 => code::H,
        _ => code::W,
    }
}

/// Compare a 129-bit value (non-negative `v`) with the constant.
fn compare_static(v: u128, c: &Value, op: Op) -> bool {
    let ord = Value::pos(v).cmp_signed(c);
    op_holds(op, ord)
}

fn op_holds(op: Op, ord: core::cmp::Ordering) -> bool {
    use core::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Neq => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
    }
}

fn plan_test(t: &Test, ctx: &PrefilterContext) -> Plan {
    plan_value(field_value(t, ctx), t, ctx)
}

fn plan_value(v: FieldVal, t: &Test, ctx: &PrefilterContext) -> Plan {
    match v {
        FieldVal::Const(x) => Plan::Known(compare_static(x, &t.value, t.op)),
        FieldVal::Unknown => Plan::Unknown,
        FieldVal::Never => Plan::Known(false),
        FieldVal::ByVersion(v4, v6) => {
            let p4 = plan_value(*v4, t, ctx);
            let p6 = plan_value(*v6, t, ctx);
            match ctx.ip_version {
                Some(4) => p4,
                Some(6) => p6,
                _ => {
                    if p4 == Plan::Unknown || p6 == Plan::Unknown {
                        Plan::Unknown
                    } else if p4 == p6 && !p4.is_runtime() {
                        p4
                    } else {
                        Plan::ByVersion(Box::new(p4), Box::new(p6))
                    }
                }
            }
        }
        FieldVal::Run { guards, words } => {
            let mut kept = Vec::with_capacity(guards.len());
            for g in guards {
                match (g, ctx.ip_version) {
                    (Guard::Version(v), Some(k)) if k == 4 || k == 6 => {
                        if v != k as i32 {
                            return Plan::Known(false);
                        }
                    }
                    (Guard::Kind(KIND_ICMP), Some(6)) | (Guard::Kind(KIND_ICMPV6), Some(4)) => {
                        return Plan::Known(false)
                    }
                    _ => kept.push(g),
                }
            }
            if kept.is_empty() && words.iter().all(|w| matches!(w, Word::Const(_))) {
                return Plan::Known(compare_static(words_value(&words), &t.value, t.op));
            }
            Plan::Run {
                guards: kept,
                words,
            }
        }
    }
}

fn words_value(words: &[Word; 4]) -> u128 {
    words.iter().rev().fold(0u128, |acc, w| {
        let x = match w {
            Word::Const(c) => *c,
            Word::Load(_) => 0,
        };
        (acc << 32) | x as u128
    })
}

// ---------------------------------------------------------------------------------------
// Prologue: parse the headers the way the user-space parser does
// ---------------------------------------------------------------------------------------

fn emit_prologue(a: &mut Asm, ctx: &PrefilterContext, may: Label) {
    use code::*;
    use Reg::*;
    a.emit(Insn::mov64_reg(R6, R1));
    for s in SLOTS {
        a.emit(Insn::st_mem(DW, R10, s, 0));
    }
    // r9 = skb->len
    a.emit(Insn::ldx_mem(W, R9, R6, 0));
    a.jmp_imm(JLT, R9, 20, may);
    a.emit(Insn::ld_abs(B, 0));
    a.emit(Insn::alu64_imm(RSH, R0, 4));
    let v4 = a.label();
    let v6 = a.label();
    let have_l3 = a.label();
    let no_l4 = a.label();
    let body = a.label();
    let want4 = ctx.ip_version != Some(6);
    let want6 = ctx.ip_version != Some(4);
    if want4 {
        a.jmp_imm(JEQ, R0, 4, v4);
    }
    if want6 {
        a.jmp_imm(JEQ, R0, 6, v6);
    }
    a.ja(may);

    if want4 {
        a.bind(v4);
        a.emit(Insn::st_mem(DW, R10, SLOT_VER, 4));
        // r7 = IHL * 4, at least 20, at most the packet.
        a.emit(Insn::ld_abs(B, 0));
        a.emit(Insn::alu64_imm(AND, R0, 0x0f));
        a.jmp_imm(JLT, R0, 5, may);
        a.emit(Insn::alu64_imm(LSH, R0, 2));
        a.emit(Insn::mov64_reg(R7, R0));
        // Total length must equal skb->len.
        a.emit(Insn::ld_abs(H, 2));
        a.jmp_reg(JNE, R0, R9, may);
        a.jmp_reg(JGT, R7, R9, may);
        // Fragment flags.
        a.emit(Insn::ld_abs(H, 6));
        a.emit(Insn::mov64_reg(R1, R0));
        a.emit(Insn::alu64_imm(AND, R1, 0x1fff));
        a.emit(Insn::stx_mem(DW, R10, R1, SLOT_FOFF));
        a.emit(Insn::alu64_imm(AND, R0, 0x3fff));
        let not_frag = a.label();
        a.jmp_imm(JEQ, R0, 0, not_frag);
        a.emit(Insn::st_mem(DW, R10, SLOT_FRAG, 1));
        a.bind(not_frag);
        a.emit(Insn::ld_abs(B, 9));
        a.emit(Insn::mov64_reg(R8, R0));
        a.ja(have_l3);
    }

    if want6 {
        a.bind(v6);
        a.jmp_imm(JLT, R9, 40, may);
        a.emit(Insn::ld_abs(H, 4));
        a.emit(Insn::alu64_imm(ADD, R0, 40));
        a.jmp_reg(JNE, R0, R9, may);
        a.emit(Insn::st_mem(DW, R10, SLOT_VER, 6));
        a.emit(Insn::ld_abs(B, 6));
        a.emit(Insn::mov64_reg(R8, R0));
        a.emit(Insn::mov64_imm(R7, 40));
        // Walk the extension headers; r7 = offset, r8 = next header.
        for k in 0..=MAX_IPV6_EXT_HEADERS {
            let last = k == MAX_IPV6_EXT_HEADERS;
            let opt = a.label();
            let ah = a.label();
            let frag = a.label();
            let adv = a.label();
            a.emit(Insn::mov64_reg(R1, R9));
            a.emit(Insn::alu64_reg(SUB, R1, R7));
            a.jmp_imm(JLT, R1, 2, have_l3);
            let (t_frag, t_ah, t_opt) = if last {
                (may, may, may)
            } else {
                (frag, ah, opt)
            };
            a.jmp_imm(JEQ, R8, 44, t_frag);
            a.jmp_imm(JEQ, R8, 51, t_ah);
            for h in [0, 43, 60, 135] {
                a.jmp_imm(JEQ, R8, h, t_opt);
            }
            a.ja(have_l3);
            if last {
                break;
            }
            // Hop-by-hop, routing, destination options, mobility: (len + 1) * 8.
            a.bind(opt);
            a.emit(Insn::ld_ind(B, R7, 1));
            a.emit(Insn::alu64_imm(ADD, R0, 1));
            a.emit(Insn::alu64_imm(LSH, R0, 3));
            a.ja(adv);
            // Authentication header: (len + 2) * 4.
            a.bind(ah);
            a.emit(Insn::ld_ind(B, R7, 1));
            a.emit(Insn::alu64_imm(ADD, R0, 2));
            a.emit(Insn::alu64_imm(LSH, R0, 2));
            a.ja(adv);
            // Fragment header: 8 bytes; a truncated one is left to user space.
            a.bind(frag);
            a.jmp_imm(JLT, R1, 8, may);
            a.emit(Insn::st_mem(DW, R10, SLOT_FRAG, 1));
            a.emit(Insn::ld_ind(H, R7, 2));
            a.emit(Insn::alu64_imm(AND, R0, 0xfff8));
            a.emit(Insn::stx_mem(DW, R10, R0, SLOT_FOFF));
            a.emit(Insn::mov64_imm(R0, 8));
            // Advance if the header fits: r8 = its next header, r7 += its length.
            a.bind(adv);
            a.emit(Insn::stx_mem(DW, R10, R0, SLOT_TMP));
            a.emit(Insn::mov64_reg(R1, R9));
            a.emit(Insn::alu64_reg(SUB, R1, R7));
            a.jmp_reg(JLT, R1, R0, have_l3);
            a.emit(Insn::ld_ind(B, R7, 0));
            a.emit(Insn::mov64_reg(R8, R0));
            a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_TMP));
            a.emit(Insn::alu64_reg(ADD, R7, R0));
            // A non-first fragment ends the walk.
            a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_FOFF));
            a.jmp_imm(JNE, R0, 0, have_l3);
        }
    }

    // r7 = transport offset, r8 = final protocol.
    a.bind(have_l3);
    a.emit(Insn::stx_mem(DW, R10, R8, SLOT_PROTO));
    a.emit(Insn::mov64_reg(R8, R7));
    a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_FOFF));
    a.jmp_imm(JNE, R0, 0, no_l4);
    // r1 = bytes after the IP headers.
    a.emit(Insn::mov64_reg(R1, R9));
    a.emit(Insn::alu64_reg(SUB, R1, R7));
    a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_PROTO));
    let tcp = a.label();
    let udp = a.label();
    let icmp = a.label();
    let icmp6 = a.label();
    a.jmp_imm(JEQ, R0, 6, tcp);
    a.jmp_imm(JEQ, R0, 17, udp);
    a.jmp_imm(JEQ, R0, 1, icmp);
    a.jmp_imm(JEQ, R0, 58, icmp6);
    a.ja(no_l4);

    a.bind(tcp);
    a.jmp_imm(JLT, R1, 20, no_l4);
    a.emit(Insn::ld_ind(B, R7, 12));
    a.emit(Insn::alu64_imm(RSH, R0, 4));
    a.jmp_imm(JLT, R0, 5, no_l4);
    a.emit(Insn::alu64_imm(LSH, R0, 2));
    a.emit(Insn::alu64_reg(ADD, R8, R0));
    let clipped = a.label();
    a.jmp_reg(JLE, R8, R9, clipped);
    a.emit(Insn::mov64_reg(R8, R9));
    a.bind(clipped);
    a.emit(Insn::st_mem(DW, R10, SLOT_KIND, KIND_TCP));
    a.ja(body);

    a.bind(udp);
    a.jmp_imm(JLT, R1, 8, no_l4);
    a.emit(Insn::alu64_imm(ADD, R8, 8));
    a.emit(Insn::st_mem(DW, R10, SLOT_KIND, KIND_UDP));
    a.ja(body);

    for (label, ver, kind) in [(icmp, 4, KIND_ICMP), (icmp6, 6, KIND_ICMPV6)] {
        a.bind(label);
        a.jmp_imm(JLT, R1, 8, no_l4);
        a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_VER));
        a.jmp_imm(JNE, R0, ver, no_l4);
        a.emit(Insn::alu64_imm(ADD, R8, 8));
        a.emit(Insn::st_mem(DW, R10, SLOT_KIND, kind));
        a.ja(body);
    }

    a.bind(no_l4);
    a.emit(Insn::mov64_reg(R8, R7));
    a.emit(Insn::st_mem(DW, R10, SLOT_KIND, KIND_NONE));
    a.bind(body);
}

// ---------------------------------------------------------------------------------------
// The decision DAG over node sets
// ---------------------------------------------------------------------------------------

type Set = [u64; 4];

fn set_bit(s: &mut Set, i: usize) {
    if let Some(w) = s.get_mut(i / 64) {
        *w |= 1u64 << (i % 64);
    }
}

fn clear_bit(s: &mut Set, i: usize) {
    if let Some(w) = s.get_mut(i / 64) {
        *w &= !(1u64 << (i % 64));
    }
}

fn min_bit(s: &Set) -> Option<usize> {
    s.iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
}

enum Norm {
    Accept,
    Reject,
    Set(Set),
}

struct Gen<'a> {
    tests: &'a [Test],
    plans: &'a [Plan],
    asm: Asm,
    states: HashMap<Set, Label>,
    queue: VecDeque<(Set, Label)>,
    accept: Label,
    reject: Label,
}

impl Gen<'_> {
    /// Add a jump target to `s`; true if it is ACCEPT.
    fn add(s: &mut Set, j: Jump) -> bool {
        match j {
            Jump::Accept => true,
            Jump::Reject => false,
            Jump::Test(k) => {
                set_bit(s, k as usize);
                false
            }
        }
    }

    /// Resolve compile-time tests at the front of the set.
    fn normalize(&self, mut s: Set) -> Norm {
        loop {
            let Some(m) = min_bit(&s) else {
                return Norm::Reject;
            };
            let (Some(t), Some(p)) = (self.tests.get(m), self.plans.get(m)) else {
                return Norm::Accept;
            };
            match p {
                Plan::Known(b) => {
                    clear_bit(&mut s, m);
                    if Self::add(&mut s, if *b { t.success } else { t.failure }) {
                        return Norm::Accept;
                    }
                }
                Plan::Unknown => {
                    clear_bit(&mut s, m);
                    if Self::add(&mut s, t.success) || Self::add(&mut s, t.failure) {
                        return Norm::Accept;
                    }
                }
                Plan::Run { .. } | Plan::ByVersion(..) => return Norm::Set(s),
            }
        }
    }

    fn state_label(&mut self, s: Set) -> Label {
        if let Some(l) = self.states.get(&s) {
            return *l;
        }
        if self.states.len() >= MAX_STATES || self.asm.len() >= SOFT_MAX_INSNS {
            return self.accept;
        }
        let l = self.asm.label();
        self.states.insert(s, l);
        self.queue.push_back((s, l));
        l
    }

    fn norm_label(&mut self, n: Norm) -> Label {
        match n {
            Norm::Accept => self.accept,
            Norm::Reject => self.reject,
            Norm::Set(s) => self.state_label(s),
        }
    }

    fn successor(&mut self, rest: Set, j: Jump) -> Label {
        let mut s = rest;
        if Self::add(&mut s, j) {
            return self.accept;
        }
        let n = self.normalize(s);
        self.norm_label(n)
    }

    fn emit_state(&mut self, s: Set) {
        let Some(m) = min_bit(&s) else {
            self.asm.ja(self.reject);
            return;
        };
        let (Some(t), Some(p)) = (self.tests.get(m).copied(), self.plans.get(m)) else {
            self.asm.ja(self.accept);
            return;
        };
        let p = p.clone();
        let mut rest = s;
        clear_bit(&mut rest, m);
        let succ = self.successor(rest, t.success);
        let fail = self.successor(rest, t.failure);
        emit_plan(&mut self.asm, &p, &t, succ, fail, self.accept);
    }
}

// ---------------------------------------------------------------------------------------
// Test code
// ---------------------------------------------------------------------------------------

fn emit_plan(a: &mut Asm, p: &Plan, t: &Test, succ: Label, fail: Label, may: Label) {
    use code::*;
    match p {
        Plan::Known(true) => a.ja(succ),
        Plan::Known(false) => a.ja(fail),
        // Never reached: unknown tests are resolved into node sets. Stay sound anyway.
        Plan::Unknown => a.ja(may),
        Plan::ByVersion(p4, p6) => {
            let l6 = a.label();
            a.emit(Insn::ldx_mem(DW, Reg::R0, Reg::R10, SLOT_VER));
            a.jmp_imm(JEQ, Reg::R0, 6, l6);
            emit_plan(a, p4, t, succ, fail, may);
            a.bind(l6);
            emit_plan(a, p6, t, succ, fail, may);
        }
        Plan::Run { guards, words } => {
            for g in guards {
                emit_guard(a, *g, fail);
            }
            emit_compare(a, words, &t.value, t.op, succ, fail);
        }
    }
}

fn emit_guard(a: &mut Asm, g: Guard, fail: Label) {
    use code::*;
    use Reg::*;
    match g {
        Guard::Version(v) => {
            a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_VER));
            a.jmp_imm(JNE, R0, v, fail);
        }
        Guard::Kind(k) => {
            a.emit(Insn::ldx_mem(DW, R0, R10, SLOT_KIND));
            a.jmp_imm(JNE, R0, k, fail);
        }
        Guard::PacketBounds { idx, size } => {
            if idx >= 0 {
                // idx + size <= len
                a.jmp_imm(JLT, R9, idx + size, fail);
            } else {
                // len + idx >= 0 (and -idx >= size, checked at compile time)
                a.jmp_imm(JLT, R9, -idx, fail);
            }
        }
        Guard::PayloadBounds { idx, size } => {
            if idx >= 0 {
                // start + idx + size <= end
                a.emit(Insn::mov64_reg(R1, R8));
                a.emit(Insn::alu64_imm(ADD, R1, idx + size));
                a.jmp_reg(JGT, R1, R9, fail);
            } else {
                // end + idx >= start
                a.emit(Insn::mov64_reg(R1, R9));
                a.emit(Insn::alu64_imm(ADD, R1, idx));
                a.jmp_reg(JSLT, R1, R8, fail);
            }
        }
    }
}

fn emit_load(a: &mut Asm, l: Loader) {
    use code::*;
    use Reg::*;
    match l {
        Loader::Field {
            base,
            size,
            off,
            shift,
            mask,
        } => {
            match base {
                Base::Ip => a.emit(Insn::ld_abs(size, off)),
                Base::L4 => a.emit(Insn::ld_ind(size, R7, off)),
            }
            if shift != 0 {
                a.emit(Insn::alu64_imm(RSH, R0, shift));
            }
            if mask != 0 {
                a.emit(Insn::alu64_imm(AND, R0, mask));
            }
        }
        Loader::Slot(s) => a.emit(Insn::ldx_mem(DW, R0, R10, s)),
        Loader::SlotIs(s, k) => {
            let done = a.label();
            a.emit(Insn::ldx_mem(DW, R1, R10, s));
            a.emit(Insn::mov64_imm(R0, 0));
            a.jmp_imm(JNE, R1, k, done);
            a.emit(Insn::mov64_imm(R0, 1));
            a.bind(done);
        }
        Loader::Len => a.emit(Insn::mov64_reg(R0, R9)),
        Loader::PayloadLen => {
            a.emit(Insn::mov64_reg(R0, R9));
            a.emit(Insn::alu64_reg(SUB, R0, R8));
        }
        Loader::PacketWord { size, idx } => {
            if idx >= 0 {
                a.emit(Insn::ld_abs(size, idx));
            } else {
                a.emit(Insn::mov64_reg(R1, R9));
                a.emit(Insn::alu64_imm(ADD, R1, idx));
                a.emit(Insn::ld_ind(size, R1, 0));
            }
        }
        Loader::PayloadWord { size, idx } => {
            if idx >= 0 {
                a.emit(Insn::ld_ind(size, R8, idx));
            } else {
                a.emit(Insn::mov64_reg(R1, R9));
                a.emit(Insn::alu64_imm(ADD, R1, idx));
                a.emit(Insn::ld_ind(size, R1, 0));
            }
        }
        Loader::Port {
            src_port,
            icmp_type,
        } => {
            let ports = a.label();
            let icmp = a.label();
            let done = a.label();
            a.emit(Insn::ldx_mem(DW, R1, R10, SLOT_KIND));
            a.jmp_imm(JEQ, R1, KIND_TCP, ports);
            a.jmp_imm(JEQ, R1, KIND_UDP, ports);
            a.jmp_imm(JEQ, R1, KIND_ICMP, icmp);
            a.jmp_imm(JEQ, R1, KIND_ICMPV6, icmp);
            a.emit(Insn::mov64_imm(R0, 0));
            a.ja(done);
            a.bind(ports);
            a.emit(Insn::ld_ind(H, R7, if src_port { 0 } else { 2 }));
            a.ja(done);
            a.bind(icmp);
            if icmp_type {
                a.emit(Insn::ld_ind(B, R7, 0));
            } else {
                a.emit(Insn::mov64_imm(R0, 0));
            }
            a.bind(done);
        }
    }
}

/// Compare the value `words` (least significant first) with `c`, jumping to `succ` if
/// `value op c` holds and to `fail` otherwise.
fn emit_compare(a: &mut Asm, words: &[Word; 4], c: &Value, op: Op, succ: Label, fail: Label) {
    use code::*;
    use core::cmp::Ordering;
    let target = |ord: Ordering| if op_holds(op, ord) { succ } else { fail };
    if c.neg && c.mag != 0 {
        // Every field value here is non-negative.
        a.ja(target(Ordering::Greater));
        return;
    }
    let cw = c.words();
    // The last word that needs a run-time load gets the direct comparison.
    let last_load = (0..4).find(|&k| matches!(words[k], Word::Load(_)));
    for k in (0..4).rev() {
        match words[k] {
            Word::Const(x) => {
                if x != cw[k] {
                    a.ja(target(x.cmp(&cw[k])));
                    return;
                }
            }
            Word::Load(l) => {
                emit_load(a, l);
                let imm = cw[k] as i32;
                let (lt, gt) = (target(Ordering::Less), target(Ordering::Greater));
                if Some(k) == last_load {
                    let below_equal = words[..k]
                        .iter()
                        .zip(&cw[..k])
                        .all(|(w, c)| *w == Word::Const(*c));
                    if below_equal {
                        // The remaining words are equal: one direct comparison decides.
                        let jop = match op {
                            Op::Eq => JEQ,
                            Op::Neq => JNE,
                            Op::Lt => JLT,
                            Op::Le => JLE,
                            Op::Gt => JGT,
                            Op::Ge => JGE,
                        };
                        a.jmp32_imm(jop, Reg::R0, imm, succ);
                        a.ja(fail);
                        return;
                    }
                }
                if lt == gt {
                    a.jmp32_imm(JNE, Reg::R0, imm, lt);
                } else {
                    a.jmp32_imm(JGT, Reg::R0, imm, gt);
                    a.jmp32_imm(JLT, Reg::R0, imm, lt);
                }
            }
        }
    }
    a.ja(target(Ordering::Equal));
}

// ---------------------------------------------------------------------------------------
// A reference interpreter (for tests without the kernel)
// ---------------------------------------------------------------------------------------

/// Why [`run_socket_filter`] stopped without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterpError {
    /// An instruction the interpreter does not implement, at this index.
    Unsupported(usize),
    /// A register read before it was written (or after a packet load clobbered it).
    Uninitialized(usize),
    /// A memory access outside the stack or the context's `len` field.
    BadAccess(usize),
    /// A jump out of the program, or running past its end.
    BadJump(usize),
    /// More than a million instructions executed.
    TooManySteps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Undef,
    Scalar(u64),
    Ctx,
    /// The frame pointer plus an offset.
    Stack(i64),
}

/// Run a socket-filter program on `packet` the way the kernel runs it under the xtables
/// `bpf` match (`skb->data` = `packet`, `skb->len` = its length) and return `r0`.
///
/// Implements exactly the instructions the generators of this module emit: 32- and 64-bit
/// ALU (`add sub mul or and lsh rsh xor mov`), 64- and 32-bit conditional jumps, stack
/// loads and stores, the context's `len` field, `LD_ABS`/`LD_IND` (an out-of-bounds packet
/// load ends the program with 0, as in the kernel) and `exit`. Packet loads clobber
/// `r1`–`r5`, and reading a clobbered register is an error, as the verifier would reject it.
pub fn run_socket_filter(prog: &[Insn], packet: &[u8]) -> Result<u64, InterpError> {
    use code::*;
    let mut regs = [Val::Undef; 11];
    regs[1] = Val::Ctx;
    regs[10] = Val::Stack(0);
    let mut stack = [0u8; 512];
    let mut pc = 0usize;
    let mut steps = 0u32;
    let scalar = |regs: &[Val; 11], r: u8, pc: usize| -> Result<u64, InterpError> {
        match regs.get(r as usize) {
            Some(Val::Scalar(v)) => Ok(*v),
            _ => Err(InterpError::Uninitialized(pc)),
        }
    };
    loop {
        steps += 1;
        if steps > 1_000_000 {
            return Err(InterpError::TooManySteps);
        }
        let insn = *prog.get(pc).ok_or(InterpError::BadJump(pc))?;
        let class = insn.code & 0x07;
        let (dst, src) = (insn.dst as usize, insn.src);
        if dst > 10 || src > 10 {
            return Err(InterpError::Unsupported(pc));
        }
        let mut next = pc + 1;
        match class {
            ALU | ALU64 => {
                let op = insn.code & 0xf0;
                if op == MOV && insn.code & X != 0 && class == ALU64 {
                    // Pointers (context, frame) may be copied.
                    regs[dst] = regs[src as usize];
                    if regs[dst] == Val::Undef {
                        return Err(InterpError::Uninitialized(pc));
                    }
                } else {
                    let rhs = if insn.code & X != 0 {
                        scalar(&regs, src, pc)?
                    } else if class == ALU64 {
                        insn.imm as i64 as u64
                    } else {
                        insn.imm as u32 as u64
                    };
                    let lhs = if op == MOV {
                        0
                    } else {
                        scalar(&regs, insn.dst, pc)?
                    };
                    let bits = if class == ALU64 { 64 } else { 32 };
                    let v = match op {
                        ADD => lhs.wrapping_add(rhs),
                        SUB => lhs.wrapping_sub(rhs),
                        MUL => lhs.wrapping_mul(rhs),
                        OR => lhs | rhs,
                        AND => lhs & rhs,
                        XOR => lhs ^ rhs,
                        LSH => lhs.checked_shl((rhs % bits) as u32).unwrap_or(0),
                        RSH if class == ALU64 => lhs >> (rhs % 64),
                        RSH => (lhs as u32 >> (rhs % 32)) as u64,
                        MOV => rhs,
                        _ => return Err(InterpError::Unsupported(pc)),
                    };
                    regs[dst] = Val::Scalar(if class == ALU { v as u32 as u64 } else { v });
                }
            }
            JMP | JMP32 => {
                let op = insn.code & 0xf0;
                match op {
                    EXIT => return scalar(&regs, 0, pc),
                    CALL => return Err(InterpError::Unsupported(pc)),
                    _ => {}
                }
                let taken = if op == JA {
                    true
                } else {
                    let a = scalar(&regs, insn.dst, pc)?;
                    let b = if insn.code & X != 0 {
                        scalar(&regs, src, pc)?
                    } else {
                        insn.imm as i64 as u64
                    };
                    let (a, b) = if class == JMP32 {
                        (a as u32 as u64, b as u32 as u64)
                    } else {
                        (a, b)
                    };
                    let (sa, sb) = if class == JMP32 {
                        (a as u32 as i32 as i64, b as u32 as i32 as i64)
                    } else {
                        (a as i64, b as i64)
                    };
                    match op {
                        JEQ => a == b,
                        JNE => a != b,
                        JGT => a > b,
                        JGE => a >= b,
                        JLT => a < b,
                        JLE => a <= b,
                        JSET => a & b != 0,
                        JSGT => sa > sb,
                        JSGE => sa >= sb,
                        JSLT => sa < sb,
                        JSLE => sa <= sb,
                        _ => return Err(InterpError::Unsupported(pc)),
                    }
                };
                if taken {
                    let t = pc as i64 + 1 + insn.off as i64;
                    next = usize::try_from(t).map_err(|_| InterpError::BadJump(pc))?;
                }
            }
            LD => {
                let mode = insn.code & 0xe0;
                let size = match insn.code & 0x18 {
                    B => 1,
                    H => 2,
                    W => 4,
                    _ => return Err(InterpError::Unsupported(pc)),
                };
                let base = match mode {
                    ABS => 0,
                    IND => scalar(&regs, src, pc)? as i64,
                    _ => return Err(InterpError::Unsupported(pc)),
                };
                if regs[6] != Val::Ctx {
                    return Err(InterpError::BadAccess(pc));
                }
                let off = (base as i32 as i64).wrapping_add(insn.imm as i64);
                let bytes = usize::try_from(off)
                    .ok()
                    .and_then(|o| packet.get(o..o.checked_add(size)?));
                let Some(bytes) = bytes else {
                    return Ok(0);
                };
                let v = bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
                regs[0] = Val::Scalar(v);
                for r in &mut regs[1..=5] {
                    *r = Val::Undef;
                }
            }
            LDX | ST | STX => {
                let size = match insn.code & 0x18 {
                    B => 1usize,
                    H => 2,
                    W => 4,
                    _ => 8,
                };
                if insn.code & 0xe0 != MEM {
                    return Err(InterpError::Unsupported(pc));
                }
                let base_reg = if class == LDX { src as usize } else { dst };
                match regs[base_reg] {
                    Val::Ctx if class == LDX && insn.off == 0 && size == 4 => {
                        regs[dst] = Val::Scalar(packet.len() as u64);
                    }
                    Val::Stack(fp) => {
                        let addr = fp + insn.off as i64;
                        let start = usize::try_from(512 + addr)
                            .ok()
                            .filter(|s| addr < 0 && s + size <= 512)
                            .ok_or(InterpError::BadAccess(pc))?;
                        let cell = &mut stack[start..start + size];
                        if class == LDX {
                            let v = cell
                                .iter()
                                .rev()
                                .fold(0u64, |acc, b| (acc << 8) | *b as u64);
                            regs[dst] = Val::Scalar(v);
                        } else {
                            let v = if class == ST {
                                insn.imm as i64 as u64
                            } else {
                                scalar(&regs, src, pc)?
                            };
                            for (i, b) in cell.iter_mut().enumerate() {
                                *b = (v >> (8 * i)) as u8;
                            }
                        }
                    }
                    _ => return Err(InterpError::BadAccess(pc)),
                }
            }
            _ => return Err(InterpError::Unsupported(pc)),
        }
        pc = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_instructions_like_the_kernel() {
        // r0 = 1  (BPF_ALU64 | BPF_MOV | BPF_K = 0xb7)
        assert_eq!(
            Insn::mov64_imm(Reg::R0, 1).to_le_bytes(),
            [0xb7, 0x00, 0, 0, 1, 0, 0, 0]
        );
        // exit (0x95)
        assert_eq!(Insn::exit().to_le_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // r6 = r1 (0xbf, dst 6, src 1 -> 0x16)
        assert_eq!(
            Insn::mov64_reg(Reg::R6, Reg::R1).to_le_bytes(),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        // r0 = ntohs(*(u16 *)(skb->data + 22))  (BPF_LD | BPF_ABS | BPF_H = 0x28)
        assert_eq!(
            Insn::ld_abs(code::H, 22).to_le_bytes(),
            [0x28, 0, 0, 0, 22, 0, 0, 0]
        );
        // r0 = *(u8 *)(skb->data + r7 + 12)  (BPF_LD | BPF_IND | BPF_B = 0x50, src 7)
        assert_eq!(
            Insn::ld_ind(code::B, Reg::R7, 12).to_le_bytes(),
            [0x50, 0x70, 0, 0, 12, 0, 0, 0]
        );
        // if r9 < 20 goto -3  (BPF_JMP | BPF_JLT | BPF_K = 0xa5)
        assert_eq!(
            Insn::jmp_imm(code::JLT, Reg::R9, 20, -3).to_le_bytes(),
            [0xa5, 0x09, 0xfd, 0xff, 20, 0, 0, 0]
        );
        // if (u32)r0 != 0xffffffff goto +2  (BPF_JMP32 | BPF_JNE | BPF_K = 0x56)
        assert_eq!(
            Insn::jmp32_imm(code::JNE, Reg::R0, -1, 2).to_le_bytes(),
            [0x56, 0x00, 2, 0, 0xff, 0xff, 0xff, 0xff]
        );
        // *(u64 *)(r10 - 8) = r1  (BPF_STX | BPF_MEM | BPF_DW = 0x7b, dst 10, src 1)
        assert_eq!(
            Insn::stx_mem(code::DW, Reg::R10, Reg::R1, -8).to_le_bytes(),
            [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]
        );
        // r9 = *(u32 *)(r6 + 0)  (BPF_LDX | BPF_MEM | BPF_W = 0x61)
        assert_eq!(
            Insn::ldx_mem(code::W, Reg::R9, Reg::R6, 0).to_le_bytes(),
            [0x61, 0x69, 0, 0, 0, 0, 0, 0]
        );
        // r1 = 0x1122334455667788 (0x18, then the high half)
        let [lo, hi] = Insn::ld_imm64(Reg::R1, 0x1122_3344_5566_7788);
        assert_eq!(lo.to_le_bytes(), [0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(hi.to_le_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        // call 26 (bpf_skb_load_bytes)
        assert_eq!(Insn::call(26).to_le_bytes(), [0x85, 0, 0, 0, 26, 0, 0, 0]);
        // big-endian layout swaps the register nibbles and the multi-byte fields
        assert_eq!(
            Insn::jmp_imm(code::JLT, Reg::R9, 20, -3).to_be_bytes(),
            [0xa5, 0x90, 0xff, 0xfd, 0, 0, 0, 20]
        );
    }

    #[test]
    fn assembler_resolves_labels() {
        let mut a = Asm::new();
        let l = a.label();
        let back = a.label();
        a.bind(back);
        a.jmp_imm(code::JEQ, Reg::R0, 0, l);
        a.emit(Insn::mov64_imm(Reg::R0, 1));
        a.ja(back);
        a.bind(l);
        a.emit(Insn::exit());
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 2);
        assert_eq!(p[2].off, -3);

        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::UnboundLabel));
    }

    #[test]
    fn constant_objects_give_constant_programs() {
        let ctx = PrefilterContext::new(Layer::Network, Direction::Outbound);
        assert_eq!(
            prefilter_program(&Object::constant(true), ctx),
            constant_program(MAY_MATCH)
        );
        assert_eq!(
            prefilter_program(&Object::constant(false), ctx),
            constant_program(0)
        );
        let bad = Object { tests: vec![] };
        assert_eq!(prefilter_program(&bad, ctx), constant_program(MAY_MATCH));
        let flow = PrefilterContext::new(Layer::Flow, Direction::Unknown);
        assert_eq!(
            prefilter_program(&Object::constant(false), flow),
            constant_program(MAY_MATCH)
        );
    }

    fn test(field: Field, op: Op, v: u128, s: Jump, f: Jump) -> Test {
        Test {
            field,
            op,
            value: Value::pos(v),
            index: 0,
            success: s,
            failure: f,
        }
    }

    #[test]
    fn unknown_tests_fold_into_sets() {
        // (random8 < 10 ? tcp : udp): both branches stay possible.
        let obj = Object {
            tests: vec![
                test(Field::Random8, Op::Lt, 10, Jump::Test(1), Jump::Test(2)),
                test(Field::Tcp, Op::Neq, 0, Jump::Accept, Jump::Reject),
                test(Field::Udp, Op::Neq, 0, Jump::Accept, Jump::Reject),
            ],
        };
        let ctx = PrefilterContext::new(Layer::Network, Direction::Outbound);
        let p = prefilter_program(&obj, ctx);
        assert!(p.len() > 10);
        // outbound and not outbound -> never.
        let obj = Object {
            tests: vec![
                test(Field::Outbound, Op::Eq, 1, Jump::Test(1), Jump::Reject),
                test(Field::Outbound, Op::Eq, 0, Jump::Accept, Jump::Reject),
            ],
        };
        assert_eq!(prefilter_program(&obj, ctx), constant_program(0));
        let unknown = PrefilterContext::new(Layer::Network, Direction::Unknown);
        assert_eq!(
            prefilter_program(&obj, unknown),
            constant_program(MAY_MATCH)
        );
    }

    // ---- differential: generated programs (interpreted) vs the exact evaluator ----

    use crate::filter::Filter;
    use crate::Address;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// Four of WinDivert's test packets: ICMP, UDP over IPv4, TCP and UDP-with-extension
    /// headers over IPv6.
    const PACKETS: [&str; 4] = [
        "450000541234400040010e650a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
        "450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001",
        "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307",
        "60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101",
    ];

    const FIELDS: &[Field] = &[
        Field::Zero,
        Field::Outbound,
        Field::Inbound,
        Field::Loopback,
        Field::Impostor,
        Field::IfIdx,
        Field::Random8,
        Field::Ip,
        Field::Ipv6,
        Field::Icmp,
        Field::Tcp,
        Field::Udp,
        Field::Icmpv6,
        Field::Fragment,
        Field::Protocol,
        Field::Length,
        Field::IpTtl,
        Field::IpSrcAddr,
        Field::IpDstAddr,
        Field::Ipv6SrcAddr,
        Field::Ipv6NextHdr,
        Field::IcmpType,
        Field::Icmpv6Type,
        Field::TcpDstPort,
        Field::TcpSyn,
        Field::TcpPayloadLength,
        Field::UdpSrcPort,
        Field::UdpPayloadLength,
        Field::LocalAddr,
        Field::RemoteAddr,
        Field::LocalPort,
        Field::RemotePort,
        Field::Packet,
        Field::Packet16,
        Field::Packet32,
        Field::TcpPayload,
        Field::UdpPayload16,
        Field::UdpPayload32,
    ];

    const VALUES: &[u128] = &[
        0,
        1,
        4,
        6,
        8,
        17,
        23,
        53,
        58,
        64,
        0x45,
        0x60,
        4660,
        43690,
        50046,
        0xffff_0a00_0001,
        0xffff_0808_0808,
        1,
        0x1234_5678_0001_0000_0000_0000_aabb_ccdd,
    ];

    /// A value inside the field's range (so the object passes the driver's checks).
    fn in_range(field: Field, v: u128) -> u128 {
        let r = field.range();
        let (lo, hi) = (r.lo.max(0) as u128, r.hi_u128());
        if v < lo || v > hi {
            lo + v % (hi - lo + 1)
        } else {
            v
        }
    }

    fn arb_test(i: usize, n: usize) -> impl Strategy<Value = Test> {
        let jump = move |x: usize| match x % (n - i + 1) {
            0 => Jump::Accept,
            1 => Jump::Reject,
            k => Jump::Test((i + k - 1) as u16),
        };
        (
            0..FIELDS.len(),
            0u32..6,
            0..VALUES.len(),
            -70i32..70,
            any::<usize>(),
            any::<usize>(),
        )
            .prop_map(move |(f, op, v, idx, s, fl)| {
                let field = FIELDS[f];
                let index = if field.is_array() {
                    if idx < 0 {
                        idx - 4
                    } else {
                        idx
                    }
                } else {
                    0
                };
                Test {
                    field,
                    op: Op::from_code(op).unwrap_or(Op::Eq),
                    value: Value::pos(in_range(field, VALUES[v])),
                    index,
                    success: jump(s),
                    failure: jump(fl),
                }
            })
    }

    fn arb_object() -> impl Strategy<Value = Object> {
        (1usize..12).prop_flat_map(|n| {
            (0..n)
                .map(|i| arb_test(i, n))
                .collect::<Vec<_>>()
                .prop_map(|tests| Object { tests })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn interpreted_prefilter_is_sound_and_precise(obj in arb_object()) {
            let filter = Filter::from_object(obj.clone(), Layer::Network)
                .map_err(|e| TestCaseError::fail(format!("invalid object: {e:?}")))?;
            for (ctx_dir, outbound) in [(Direction::Outbound, true), (Direction::Inbound, false)] {
                let ctx = PrefilterContext {
                    layer: Layer::Network,
                    direction: ctx_dir,
                    ip_version: None,
                    loopback: Some(false),
                };
                let prog = prefilter_program(&obj, ctx);
                let uses_unknown = obj.tests.iter().any(|t| {
                    matches!(t.field, Field::Impostor | Field::IfIdx | Field::Random8)
                });
                for h in PACKETS {
                    let pkt = hex(h);
                    let got = run_socket_filter(&prog, &pkt).map_err(|e| {
                        TestCaseError::fail(format!("{e:?}"))
                    })? != 0;
                    let mut any = false;
                    for impostor in [false, true] {
                        for ts in [0i64, 77, 1 << 33] {
                            let mut a = Address::network(outbound);
                            a.ipv6 = pkt[0] >> 4 == 6;
                            a.impostor = impostor;
                            a.timestamp = ts;
                            let exact = filter.matches_packet(&pkt, &a).unwrap_or(false);
                            prop_assert!(!exact || got, "unsound: {:?} {:?} {}", obj, ctx, h);
                            any |= exact;
                        }
                    }
                    if !uses_unknown {
                        prop_assert_eq!(got, any, "imprecise: {:?} {:?} {}", obj, ctx, h);
                    }
                }
            }
        }
    }
}
