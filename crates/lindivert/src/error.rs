//! The library's error type.
//!
//! Every fallible operation of the crate returns [`Error`]. Its variants name the
//! WinDivert error a C caller would get (the C ABI in `lindivert-ffi` maps them to
//! `GetLastError`-style errno values), and the causes Linux adds: a missing capability
//! ([`Error::PermissionDenied`], with the capability to grant) or kernel feature
//! ([`Error::MissingKernelFeature`], with the config option to enable). Netlink failures
//! that have no clearer meaning are [`Error::Netlink`] (request name and errno), other
//! system errors [`Error::Io`]. The enum is `#[non_exhaustive]`: match with a `_` arm.
//!
//! ```
//! use lindivert::Error;
//!
//! fn describe(e: &Error) -> &'static str {
//!     match e {
//!         Error::InvalidFilter { .. } | Error::InvalidParameter(_) => "fix the call",
//!         Error::PermissionDenied { .. } => "run with CAP_NET_ADMIN",
//!         Error::MissingKernelFeature { .. } => "the kernel cannot do this",
//!         Error::Timeout => "nothing arrived in time",
//!         Error::NoData | Error::Closed => "the handle is shut down",
//!         _ => "system error",
//!     }
//! }
//! let e = Error::InvalidFilter { message: "unknown field".into(), position: 4 };
//! assert_eq!(describe(&e), "fix the call");
//! assert_eq!(e.to_string(), "invalid filter at byte 4: unknown field");
//! ```

use crate::sys::bpf::BpfError;
use crate::sys::nfnl::NlError;
use std::fmt;
use std::io;

/// Everything that can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The filter does not compile (WinDivert: ERROR_INVALID_PARAMETER).
    InvalidFilter {
        /// What is wrong.
        message: String,
        /// Byte position in the filter text.
        position: usize,
    },
    /// A bad layer, priority, flag combination, parameter, address or buffer
    /// (WinDivert: ERROR_INVALID_PARAMETER).
    InvalidParameter(String),
    /// The caller lacks a capability (WinDivert: ERROR_ACCESS_DENIED).
    PermissionDenied {
        /// The capability needed, e.g. `CAP_NET_ADMIN`.
        capability: &'static str,
        /// What was being done.
        operation: String,
    },
    /// The kernel lacks a feature the library needs.
    MissingKernelFeature {
        /// The feature (with its kernel config option where known).
        feature: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The buffer is too small for the next packet (WinDivert: ERROR_INSUFFICIENT_BUFFER).
    InsufficientBuffer {
        /// Bytes needed.
        needed: usize,
    },
    /// Nothing more to receive after `shutdown(Recv)`, or sending after `shutdown(Send)`
    /// (WinDivert: ERROR_NO_DATA).
    NoData,
    /// A send with `impostor` set would decrement the TTL/hop limit to 0
    /// (WinDivert: ERROR_HOST_UNREACHABLE).
    HopLimitExceeded,
    /// A receive timed out.
    Timeout,
    /// The handle is closed.
    Closed,
    /// A netlink request failed.
    Netlink(NlError),
    /// Another system error.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidFilter { message, position } => {
                write!(f, "invalid filter at byte {position}: {message}")
            }
            Error::InvalidParameter(m) => write!(f, "invalid parameter: {m}"),
            Error::PermissionDenied {
                capability,
                operation,
            } => write!(f, "{operation}: permission denied (needs {capability})"),
            Error::MissingKernelFeature { feature, source } => {
                write!(f, "the kernel lacks {feature}: {source}")
            }
            Error::InsufficientBuffer { needed } => {
                write!(f, "buffer too small: the packet needs {needed} bytes")
            }
            Error::NoData => f.write_str("no data (the handle was shut down)"),
            Error::HopLimitExceeded => {
                f.write_str("the impostor packet's TTL/hop limit would reach 0 (host unreachable)")
            }
            Error::Timeout => f.write_str("timed out"),
            Error::Closed => f.write_str("the handle is closed"),
            Error::Netlink(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::MissingKernelFeature { source, .. } => Some(source),
            Error::Netlink(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl Error {
    /// Map a failed bpf() call (creating a map, loading a program: `what`) to a clear error.
    pub(crate) fn from_bpf(what: &str, e: BpfError) -> Error {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) if !matches!(e, BpfError::Verifier { .. }) => {
                Error::PermissionDenied {
                    capability: "CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN)",
                    operation: what.to_string(),
                }
            }
            _ => Error::Io(io::Error::other(format!("{what}: {e}"))),
        }
    }

    /// Map a failed netlink request to a clear error.
    pub(crate) fn from_netlink(e: NlError) -> Error {
        match e.errno {
            libc::EPERM | libc::EACCES if !e.what.contains("nfqueue") => Error::PermissionDenied {
                capability: "CAP_NET_ADMIN",
                operation: e.what,
            },
            libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT => Error::MissingKernelFeature {
                feature: "nfnetlink (CONFIG_NETFILTER_NETLINK)",
                source: e.io(),
            },
            libc::ENOENT | libc::EOPNOTSUPP if e.what.contains("NFQUEUE") => {
                Error::MissingKernelFeature {
                    feature: "the xtables NFQUEUE target through nf_tables compat (CONFIG_NFT_COMPAT, CONFIG_NETFILTER_XT_TARGET_NFQUEUE)",
                    source: e.io(),
                }
            }
            libc::EOPNOTSUPP | libc::EINVAL if e.what.contains("NEWTABLE") => {
                Error::MissingKernelFeature {
                    feature: "nftables owner tables (NFT_TABLE_F_OWNER, Linux >= 5.12, CONFIG_NF_TABLES_INET)",
                    source: e.io(),
                }
            }
            libc::ENOENT if e.what.contains("NEWCHAIN") || e.what.contains("NEWTABLE") => {
                Error::MissingKernelFeature {
                    feature: "nf_tables inet family (CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET)",
                    source: e.io(),
                }
            }
            libc::EINVAL | libc::ENOENT if e.what.contains("nfqueue") => {
                Error::MissingKernelFeature {
                    feature: "nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE)",
                    source: e.io(),
                }
            }
            _ => Error::Netlink(e),
        }
    }
}
