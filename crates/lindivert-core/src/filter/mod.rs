//! The WinDivert filter language.
//!
//! Pipeline: text → [`lexer`] tokens (with byte positions) → [`parser`] AST →
//! check (fields and macros valid for the layer, ranges, indexes) → [`ir`] object (at most
//! 256 tests, a forward-only decision DAG) → optimiser → back ends:
//! * [`eval`]: the evaluator over a parsed packet and an [`crate::Address`];
//! * [`object`]: the `@WinDiv_…` object text, both directions (WinDivert 2.2 compatible);
//! * [`format`]: decompiles an object to readable filter text.
//!
//! Deliberate differences from WinDivert 2.2.2 are listed in `docs/DIFFERENCES.md`.

pub mod error;
pub mod fields;
pub mod ir;

pub use error::{ErrorKind, FilterError};
pub use fields::Field;
pub use ir::{Jump, Object, Op, Test, Value};
