//! Error reporting: WinDivert's `GetLastError()` codes, kept per thread
//! (`WinDivertGetLastError`), with the closest `errno` set alongside, and the `-errno`
//! convention of the libebpfdivert ABI.

use std::cell::Cell;
use std::ffi::CStr;

use lindivert_core::filter::ErrorKind;

use crate::sys;

/// `ERROR_SUCCESS`.
pub const ERROR_SUCCESS: u32 = 0;
/// `ERROR_FILE_NOT_FOUND`.
pub const ERROR_FILE_NOT_FOUND: u32 = 2;
/// `ERROR_TOO_MANY_OPEN_FILES`.
pub const ERROR_TOO_MANY_OPEN_FILES: u32 = 4;
/// `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// `ERROR_INVALID_HANDLE`.
pub const ERROR_INVALID_HANDLE: u32 = 6;
/// `ERROR_NOT_ENOUGH_MEMORY`.
pub const ERROR_NOT_ENOUGH_MEMORY: u32 = 8;
/// `ERROR_BAD_COMMAND`.
pub const ERROR_BAD_COMMAND: u32 = 22;
/// `ERROR_GEN_FAILURE`.
pub const ERROR_GEN_FAILURE: u32 = 31;
/// `ERROR_NOT_SUPPORTED`.
pub const ERROR_NOT_SUPPORTED: u32 = 50;
/// `ERROR_INVALID_PARAMETER`.
pub const ERROR_INVALID_PARAMETER: u32 = 87;
/// `ERROR_INSUFFICIENT_BUFFER`.
pub const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
/// `ERROR_NO_DATA`.
pub const ERROR_NO_DATA: u32 = 232;
/// `ERROR_HOST_UNREACHABLE`.
pub const ERROR_HOST_UNREACHABLE: u32 = 1232;
/// `ERROR_TIMEOUT` (non-blocking receive with nothing queued; a Linux extension).
pub const ERROR_TIMEOUT: u32 = 1460;

thread_local! {
    static LAST: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's last error.
pub fn last() -> u32 {
    LAST.with(|c| c.get())
}

/// Record a success (last error 0; `errno` untouched).
pub fn clear() {
    LAST.with(|c| c.set(ERROR_SUCCESS));
}

/// A failure: the Windows code and the errno that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    /// The WinDivert (Windows) error code.
    pub code: u32,
    /// The closest errno.
    pub errno: i32,
}

/// Results of the entry points' safe bodies.
pub type R<T> = Result<T, Fail>;

impl Fail {
    /// A failure with `code` and its default errno.
    pub const fn code(code: u32) -> Fail {
        Fail {
            code,
            errno: errno_for(code),
        }
    }

    /// `ERROR_INVALID_PARAMETER` / `EINVAL`.
    pub const fn param() -> Fail {
        Fail::code(ERROR_INVALID_PARAMETER)
    }

    /// `ERROR_INVALID_HANDLE` / `EBADF`.
    pub const fn handle() -> Fail {
        Fail::code(ERROR_INVALID_HANDLE)
    }

    /// `ERROR_INSUFFICIENT_BUFFER` / `ENOBUFS`.
    pub const fn buffer() -> Fail {
        Fail::code(ERROR_INSUFFICIENT_BUFFER)
    }

    /// Record this failure as the thread's last error and set `errno`.
    pub fn record(self) {
        LAST.with(|c| c.set(self.code));
        sys::set_errno(self.errno);
    }
}

/// The errno used for a Windows code (the table in `lindivert.h`).
pub const fn errno_for(code: u32) -> i32 {
    match code {
        ERROR_SUCCESS => 0,
        ERROR_FILE_NOT_FOUND => libc::ENOENT,
        ERROR_TOO_MANY_OPEN_FILES => libc::EMFILE,
        ERROR_ACCESS_DENIED => libc::EPERM,
        ERROR_INVALID_HANDLE => libc::EBADF,
        ERROR_NOT_ENOUGH_MEMORY => libc::ENOMEM,
        ERROR_BAD_COMMAND => libc::ESHUTDOWN,
        ERROR_NOT_SUPPORTED => libc::EOPNOTSUPP,
        ERROR_INVALID_PARAMETER => libc::EINVAL,
        ERROR_INSUFFICIENT_BUFFER => libc::ENOBUFS,
        ERROR_NO_DATA => libc::ESHUTDOWN,
        ERROR_HOST_UNREACHABLE => libc::EHOSTUNREACH,
        ERROR_TIMEOUT => libc::EAGAIN,
        _ => libc::EIO,
    }
}

/// The Windows code for an errno from the system.
fn code_for_errno(e: i32) -> u32 {
    match e {
        libc::ENOENT => ERROR_FILE_NOT_FOUND,
        libc::EMFILE | libc::ENFILE => ERROR_TOO_MANY_OPEN_FILES,
        libc::EPERM | libc::EACCES => ERROR_ACCESS_DENIED,
        libc::EBADF => ERROR_INVALID_HANDLE,
        libc::ENOMEM => ERROR_NOT_ENOUGH_MEMORY,
        libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT => ERROR_NOT_SUPPORTED,
        libc::EINVAL => ERROR_INVALID_PARAMETER,
        libc::EHOSTUNREACH | libc::ENETUNREACH => ERROR_HOST_UNREACHABLE,
        libc::EAGAIN | libc::ETIMEDOUT => ERROR_TIMEOUT,
        _ => ERROR_GEN_FAILURE,
    }
}

impl From<&lindivert::Error> for Fail {
    fn from(e: &lindivert::Error) -> Fail {
        use lindivert::Error as E;
        match e {
            E::InvalidFilter { .. } | E::InvalidParameter(_) => Fail::param(),
            E::PermissionDenied { .. } => Fail::code(ERROR_ACCESS_DENIED),
            E::MissingKernelFeature { source, .. } => Fail {
                code: ERROR_NOT_SUPPORTED,
                errno: source.raw_os_error().unwrap_or(libc::EOPNOTSUPP),
            },
            E::InsufficientBuffer { .. } => Fail::buffer(),
            E::NoData => Fail::code(ERROR_NO_DATA),
            E::HopLimitExceeded => Fail::code(ERROR_HOST_UNREACHABLE),
            E::Timeout => Fail::code(ERROR_TIMEOUT),
            E::Closed => Fail::code(ERROR_BAD_COMMAND),
            E::Netlink(n) => Fail {
                code: code_for_errno(n.errno),
                errno: n.errno,
            },
            E::Io(io) => match io.raw_os_error() {
                Some(n) => Fail {
                    code: code_for_errno(n),
                    errno: n,
                },
                None => Fail::code(ERROR_GEN_FAILURE),
            },
            _ => Fail::code(ERROR_GEN_FAILURE),
        }
    }
}

impl From<lindivert::Error> for Fail {
    fn from(e: lindivert::Error) -> Fail {
        Fail::from(&e)
    }
}

/// WinDivert's fixed message for a filter error kind, as a static C string
/// (`WinDivertHelperCompileFilter`'s `errorStr`).
pub fn kind_message(kind: ErrorKind) -> &'static CStr {
    match kind {
        ErrorKind::NoMemory => c"Out of memory",
        ErrorKind::TooDeep => c"Filter expression too deep",
        ErrorKind::TooLong => c"Filter expression too long",
        ErrorKind::BadToken => c"Filter expression contains a bad token",
        ErrorKind::BadTokenForLayer => c"Filter expression contains a bad token for layer",
        ErrorKind::UnexpectedToken => c"Filter expression parse error",
        ErrorKind::IndexOob => c"Filter expression array index is out-of-bounds",
        ErrorKind::OutputTooShort => c"Filter object buffer is too short",
        ErrorKind::BadObject => c"Filter object is invalid",
        ErrorKind::AssertionFailed => c"Internal assertion failed",
    }
}

/// Message of a static string for `strerror`-like calls: `errno`'s text, kept for the life
/// of the process (one allocation per distinct errno).
pub fn errno_message(e: i32) -> &'static CStr {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static CACHE: Mutex<BTreeMap<i32, &'static CStr>> = Mutex::new(BTreeMap::new());
    let e = e.checked_abs().unwrap_or(0);
    let mut map = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(e).or_insert_with(|| {
        let text = match e {
            0 => "Success".to_string(),
            _ => {
                let s = std::io::Error::from_raw_os_error(e).to_string();
                // "Invalid argument (os error 22)" -> "Invalid argument"
                match s.rfind(" (os error") {
                    Some(i) => s[..i].to_string(),
                    None => s,
                }
            }
        };
        let c = std::ffi::CString::new(text).unwrap_or_default();
        Box::leak(c.into_boxed_c_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_messages_match_core() {
        for k in [
            ErrorKind::NoMemory,
            ErrorKind::TooDeep,
            ErrorKind::TooLong,
            ErrorKind::BadToken,
            ErrorKind::BadTokenForLayer,
            ErrorKind::UnexpectedToken,
            ErrorKind::IndexOob,
            ErrorKind::OutputTooShort,
            ErrorKind::BadObject,
            ErrorKind::AssertionFailed,
        ] {
            assert_eq!(kind_message(k).to_str().unwrap(), k.message());
        }
    }

    #[test]
    fn errno_messages_are_stable() {
        let a = errno_message(libc::EINVAL);
        let b = errno_message(-libc::EINVAL);
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(a.to_str().unwrap(), "Invalid argument");
        assert_eq!(errno_message(i32::MIN).to_str().unwrap(), "Success");
    }

    #[test]
    fn every_code_has_an_errno() {
        for c in [2, 4, 5, 6, 8, 22, 50, 87, 122, 232, 1232, 1460] {
            assert_ne!(errno_for(c), 0);
            assert_ne!(errno_for(c), libc::EIO, "{c}");
        }
    }
}
