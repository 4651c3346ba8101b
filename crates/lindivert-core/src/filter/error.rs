//! Filter compile errors: WinDivert's error kinds with a message and a byte position.

use core::fmt;

/// WinDivert's filter error kinds (`WINDIVERT_ERROR_*`), with their numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorKind {
    /// Out of memory.
    NoMemory = 1,
    /// Filter expression too deep.
    TooDeep = 2,
    /// Filter expression too long.
    TooLong = 3,
    /// Filter expression contains a bad token.
    BadToken = 4,
    /// Filter expression contains a bad token for layer.
    BadTokenForLayer = 5,
    /// Filter expression parse error.
    UnexpectedToken = 6,
    /// Filter expression array index is out-of-bounds.
    IndexOob = 7,
    /// Filter object buffer is too short.
    OutputTooShort = 8,
    /// Filter object is invalid.
    BadObject = 9,
    /// Internal assertion failed.
    AssertionFailed = 10,
}

impl ErrorKind {
    /// WinDivert's message for this kind (`errorStr`).
    pub const fn message(self) -> &'static str {
        match self {
            ErrorKind::NoMemory => "Out of memory",
            ErrorKind::TooDeep => "Filter expression too deep",
            ErrorKind::TooLong => "Filter expression too long",
            ErrorKind::BadToken => "Filter expression contains a bad token",
            ErrorKind::BadTokenForLayer => "Filter expression contains a bad token for layer",
            ErrorKind::UnexpectedToken => "Filter expression parse error",
            ErrorKind::IndexOob => "Filter expression array index is out-of-bounds",
            ErrorKind::OutputTooShort => "Filter object buffer is too short",
            ErrorKind::BadObject => "Filter object is invalid",
            ErrorKind::AssertionFailed => "Internal assertion failed",
        }
    }

    /// WinDivert's symbolic name (`WINDIVERT_ERROR_BAD_TOKEN`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::NoMemory => "WINDIVERT_ERROR_NO_MEMORY",
            ErrorKind::TooDeep => "WINDIVERT_ERROR_TOO_DEEP",
            ErrorKind::TooLong => "WINDIVERT_ERROR_TOO_LONG",
            ErrorKind::BadToken => "WINDIVERT_ERROR_BAD_TOKEN",
            ErrorKind::BadTokenForLayer => "WINDIVERT_ERROR_BAD_TOKEN_FOR_LAYER",
            ErrorKind::UnexpectedToken => "WINDIVERT_ERROR_UNEXPECTED_TOKEN",
            ErrorKind::IndexOob => "WINDIVERT_ERROR_INDEX_OOB",
            ErrorKind::OutputTooShort => "WINDIVERT_ERROR_OUTPUT_TOO_SHORT",
            ErrorKind::BadObject => "WINDIVERT_ERROR_BAD_OBJECT",
            ErrorKind::AssertionFailed => "WINDIVERT_ERROR_ASSERTION_FAILED",
        }
    }
}

/// A filter compile error: the kind, the byte position of the offending token in the filter
/// text (0 when there is none), and a detail that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The WinDivert error kind.
    pub kind: ErrorKind,
    /// Byte offset in the filter text.
    pub pos: usize,
    /// What exactly was wrong (for people; WinDivert's fixed message is `kind.message()`).
    pub detail: String,
}

impl FilterError {
    /// A new error.
    pub fn new(kind: ErrorKind, pos: usize, detail: impl Into<String>) -> FilterError {
        FilterError {
            kind,
            pos,
            detail: detail.into(),
        }
    }

    /// The error rendered with the filter text and a caret under the position:
    ///
    /// ```text
    /// error: Filter expression contains a bad token: unknown field `tcp.Dstport` at byte 0
    ///   tcp.Dstport == 80
    ///   ^
    /// ```
    pub fn render(&self, filter: &str) -> String {
        let line: String = filter
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let col = filter
            .get(..self.pos.min(filter.len()))
            .map(|s| s.chars().count())
            .unwrap_or(0);
        format!("error: {self}\n  {line}\n  {}^", " ".repeat(col))
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        write!(f, " at byte {}", self.pos)
    }
}

impl std::error::Error for FilterError {}
