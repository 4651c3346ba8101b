//! liblindivert: lindivert's C ABI.
//!
//! * [`api`]: the WinDivert 2.2 API of `include/lindivert.h` (`WinDivertOpen` ...
//!   `WinDivertHelper*`), with WinDivert's names, types and error codes
//!   (`WinDivertGetLastError`, `errno` set alongside), plus `WinDivertGetFd`;
//! * [`ebpf`]: the libebpfdivert ABI (`ebpfdivert_*`) that pydivert's Linux backend loads,
//!   so `PYDIVERT_EBPFDIVERT_LIB=liblindivert.so` runs pydivert on lindivert.
//!
//! Safety: `unsafe` appears only in the `extern "C"` entry points and in [`sys`] (pointer
//! helpers with documented contracts). Every entry point checks its arguments (NULL
//! pointers, lengths, handles through a registry of live handles, see [`divert`]) and runs
//! its body under `catch_unwind`, so no panic crosses the C boundary.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod divert;
pub mod ebpf;
pub mod error;
pub mod helpers;
pub mod sys;

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use error::{Fail, ERROR_GEN_FAILURE, R};

/// C `BOOL`.
pub type Bool = c_int;
/// `TRUE`.
pub const TRUE: Bool = 1;
/// `FALSE`.
pub const FALSE: Bool = 0;

/// Run a body that returns a value, recording its failure (`fallback` returned then); a
/// panic is an `ERROR_GEN_FAILURE`.
fn run<T>(fallback: T, f: impl FnOnce() -> R<T>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => {
            error::clear();
            v
        }
        Ok(Err(fail)) => {
            fail.record();
            fallback
        }
        Err(_) => {
            Fail::code(ERROR_GEN_FAILURE).record();
            fallback
        }
    }
}

/// Run a `BOOL` body.
fn run_bool(f: impl FnOnce() -> R<()>) -> Bool {
    run(FALSE, || f().map(|()| TRUE))
}

/// Run a libebpfdivert body: its value, or `-errno` on failure.
fn run_errno(f: impl FnOnce() -> R<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => {
            error::clear();
            v
        }
        Ok(Err(fail)) => {
            fail.record();
            -fail.errno
        }
        Err(_) => {
            let f = Fail::code(ERROR_GEN_FAILURE);
            f.record();
            -f.errno
        }
    }
}
