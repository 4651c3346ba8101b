//! The `bpf(2)` system call: load programs, run them on test data, and manage maps.
//!
//! Every file descriptor the kernel returns for a BPF object is already close-on-exec (the
//! kernel creates them with `O_CLOEXEC`), so a forked and exec'd child never inherits a
//! program or map. Each wrapper passes exactly the part of `union bpf_attr` its command
//! uses; every byte of those structures is an explicit, zero-initialised field (the kernel
//! rejects non-zero bytes after the last field it knows for a command).

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use lindivert_core::filter::ebpf::Insn;

/// The license every lindivert program is loaded with. It is GPL-compatible, so GPL-only
/// helpers stay available.
pub const LICENSE: &CStr = c"Dual MIT/GPL";

/// Default size of the verifier log buffer that [`prog_load_with`] allocates on failure.
pub const DEFAULT_LOG_SIZE: usize = 1 << 20;

/// The kernel's limit on program length for privileged loaders (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const MAX_INSNS: usize = 1_000_000;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// A BPF program type (`enum bpf_prog_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgType(pub u32);

impl ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: socket filters and the xtables `bpf` match.
    #[doc(alias = "BPF_PROG_TYPE_SOCKET_FILTER")]
    pub const SOCKET_FILTER: ProgType = ProgType(1);
    /// `BPF_PROG_TYPE_SCHED_CLS`: tc classifiers.
    #[doc(alias = "BPF_PROG_TYPE_SCHED_CLS")]
    pub const SCHED_CLS: ProgType = ProgType(3);
    /// `BPF_PROG_TYPE_CGROUP_SKB`: cgroup ingress/egress packet filters.
    #[doc(alias = "BPF_PROG_TYPE_CGROUP_SKB")]
    pub const CGROUP_SKB: ProgType = ProgType(8);
    /// `BPF_PROG_TYPE_CGROUP_SOCK`: socket create/release and post-bind hooks.
    #[doc(alias = "BPF_PROG_TYPE_CGROUP_SOCK")]
    pub const CGROUP_SOCK: ProgType = ProgType(9);
    /// `BPF_PROG_TYPE_SOCK_OPS`: TCP socket operations.
    #[doc(alias = "BPF_PROG_TYPE_SOCK_OPS")]
    pub const SOCK_OPS: ProgType = ProgType(13);
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`: bind/connect/sendmsg hooks.
    #[doc(alias = "BPF_PROG_TYPE_CGROUP_SOCK_ADDR")]
    pub const CGROUP_SOCK_ADDR: ProgType = ProgType(18);
}

/// A BPF map type (`enum bpf_map_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapType(pub u32);

impl MapType {
    /// `BPF_MAP_TYPE_HASH`.
    #[doc(alias = "BPF_MAP_TYPE_HASH")]
    pub const HASH: MapType = MapType(1);
    /// `BPF_MAP_TYPE_ARRAY` (keys are `u32` indexes).
    #[doc(alias = "BPF_MAP_TYPE_ARRAY")]
    pub const ARRAY: MapType = MapType(2);
    /// `BPF_MAP_TYPE_RINGBUF` (no keys or values; `max_entries` is the byte size, a power
    /// of two and a multiple of the page size).
    #[doc(alias = "BPF_MAP_TYPE_RINGBUF")]
    pub const RINGBUF: MapType = MapType(27);

    /// Per-CPU types, whose values are `value_size × CPUs` bytes: not supported by [`Map`].
    const PER_CPU: [u32; 4] = [5, 6, 10, 21];
}

/// Flag for [`Map::update`]: create or replace.
pub const BPF_ANY: u64 = 0;
/// Flag for [`Map::update`]: create only.
pub const BPF_NOEXIST: u64 = 1;
/// Flag for [`Map::update`]: replace only.
pub const BPF_EXIST: u64 = 2;

/// What went wrong in a `bpf()` call.
#[derive(Debug)]
pub enum BpfError {
    /// The system call failed.
    Syscall {
        /// The command (`BPF_MAP_CREATE`, ...).
        call: &'static str,
        /// The error the kernel returned.
        source: io::Error,
    },
    /// `BPF_PROG_LOAD` refused the program; the verifier's log explains why.
    Verifier {
        /// The error the kernel returned (usually `EINVAL` or `EACCES`).
        source: io::Error,
        /// The verifier log (possibly truncated; empty if no log was requested).
        log: String,
    },
    /// The arguments could not be passed to the kernel (sizes, lengths, empty program).
    InvalidArgument(&'static str),
}

impl BpfError {
    /// The `errno` of a failed system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            BpfError::Syscall { source, .. } | BpfError::Verifier { source, .. } => {
                source.raw_os_error()
            }
            BpfError::InvalidArgument(_) => None,
        }
    }
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BpfError::Syscall { call, source } => write!(f, "bpf({call}) failed: {source}"),
            BpfError::Verifier { source, log } => {
                write!(f, "bpf(BPF_PROG_LOAD) failed: {source}")?;
                if !log.is_empty() {
                    write!(f, "; verifier log:\n{log}")?;
                }
                Ok(())
            }
            BpfError::InvalidArgument(what) => write!(f, "invalid bpf() argument: {what}"),
        }
    }
}

impl std::error::Error for BpfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BpfError::Syscall { source, .. } | BpfError::Verifier { source, .. } => Some(source),
            BpfError::InvalidArgument(_) => None,
        }
    }
}

impl From<BpfError> for io::Error {
    fn from(e: BpfError) -> io::Error {
        match e {
            BpfError::Syscall { source, .. } => source,
            BpfError::Verifier { source, log } => io::Error::new(
                source.kind(),
                format!("BPF program rejected: {source}; verifier log:\n{log}"),
            ),
            BpfError::InvalidArgument(what) => io::Error::new(io::ErrorKind::InvalidInput, what),
        }
    }
}

/// The part of `union bpf_attr` used by `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The part of `union bpf_attr` used by `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// The part of `union bpf_attr` used by `BPF_MAP_CREATE`, up to `map_ifindex`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
}

/// The part of `union bpf_attr` used by the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

// The layouts above must match the kernel's exactly (no implicit padding).
const _: () = assert!(core::mem::size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(core::mem::size_of::<TestRunAttr>() == 80);
const _: () = assert!(core::mem::size_of::<MapCreateAttr>() == 48);
const _: () = assert!(core::mem::size_of::<MapElemAttr>() == 32);

/// Marker for the attribute structs: plain `#[repr(C)]` data without implicit padding
/// (also implemented by those of [`super::cgroup`]).
pub(super) trait Attr {}
impl Attr for ProgLoadAttr {}
impl Attr for TestRunAttr {}
impl Attr for MapCreateAttr {}
impl Attr for MapElemAttr {}

/// `bpf(cmd, attr, sizeof(*attr))`.
pub(super) fn sys_bpf<A: Attr>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, exclusively borrowed `#[repr(C)]` struct matching the
    // prefix of `union bpf_attr` that `cmd` uses, and its exact size is passed (the kernel
    // zero-extends the rest). Any user pointers inside it were set by the callers from
    // live buffers of the sizes they declare (checked before the call) that outlive this
    // call; the attribute structs of `cgroup` hold no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            core::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wrap a file descriptor number returned by the kernel.
pub(super) fn owned_fd(r: libc::c_long, call: &'static str) -> Result<OwnedFd, BpfError> {
    let fd = libc::c_int::try_from(r).map_err(|_| BpfError::Syscall {
        call,
        source: io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: the kernel just returned `fd` as a new file descriptor that nothing else
    // owns; ownership moves into the `OwnedFd`, which closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy `name` into a kernel object name: at most 15 bytes of `[A-Za-z0-9_.]`, others
/// replaced by `_`, NUL-terminated.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// Options for [`prog_load_with`].
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    /// The license string ([`LICENSE`] by default).
    pub license: &'a CStr,
    /// The program name shown by `bpftool` (15 characters kept).
    pub name: &'a str,
    /// `expected_attach_type` (needed by cgroup socket-address and similar programs).
    pub expected_attach_type: u32,
    /// Size of the verifier log buffer allocated when the first load fails (0: no log).
    pub log_size: usize,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            license: LICENSE,
            name: "",
            expected_attach_type: 0,
            log_size: DEFAULT_LOG_SIZE,
        }
    }
}

fn prog_load_raw(
    prog_type: ProgType,
    words: &[u64],
    license: &CStr,
    name: &str,
    expected_attach_type: u32,
    log: &mut [u8],
) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: prog_type.0,
        insn_cnt: words.len() as u32,
        insns: words.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: object_name(name),
        expected_attach_type,
        ..ProgLoadAttr::default()
    };
    // The kernel wants a log buffer of at least 128 bytes and below 4 GiB; a NUL in the
    // first byte tells the caller nothing was written.
    let log_len = log.len().min(u32::MAX as usize >> 8);
    if log_len >= 128 {
        log[0] = 0;
        attr.log_level = 1;
        attr.log_size = log_len as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    let r = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
    owned_fd(r, "BPF_PROG_LOAD").map_err(io::Error::from)
}

fn log_text(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(&log[..end]).trim_end().to_string()
}

fn insn_words(insns: &[Insn]) -> Result<Vec<u64>, BpfError> {
    if insns.is_empty() {
        return Err(BpfError::InvalidArgument("empty program"));
    }
    if insns.len() > MAX_INSNS {
        return Err(BpfError::InvalidArgument(
            "program longer than 1,000,000 instructions",
        ));
    }
    Ok(insns
        .iter()
        .map(|i| u64::from_ne_bytes(i.to_ne_bytes()))
        .collect())
}

/// `BPF_PROG_LOAD`: load `insns` as a program of `prog_type`.
///
/// The program is first loaded without a log (the fast path). If that fails and `log` is
/// at least 128 bytes, it is loaded again with `log_level` 1 into `log`, and the error
/// carries the verifier's text. The returned descriptor is close-on-exec.
#[doc(alias = "BPF_PROG_LOAD")]
pub fn prog_load(
    prog_type: ProgType,
    insns: &[Insn],
    license: &CStr,
    log: &mut [u8],
) -> Result<OwnedFd, BpfError> {
    let words = insn_words(insns)?;
    let first = match prog_load_raw(prog_type, &words, license, "", 0, &mut []) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    if log.len() < 128 {
        return Err(BpfError::Verifier {
            source: first,
            log: String::new(),
        });
    }
    match prog_load_raw(prog_type, &words, license, "", 0, log) {
        Ok(fd) => Ok(fd),
        Err(source) => Err(BpfError::Verifier {
            source,
            log: log_text(log),
        }),
    }
}

/// `BPF_PROG_LOAD` with a name, an expected attach type and a log buffer of
/// `opts.log_size` bytes allocated only if the first attempt fails.
#[doc(alias = "BPF_PROG_LOAD")]
pub fn prog_load_with(
    prog_type: ProgType,
    insns: &[Insn],
    opts: &LoadOptions<'_>,
) -> Result<OwnedFd, BpfError> {
    let words = insn_words(insns)?;
    let first = match prog_load_raw(
        prog_type,
        &words,
        opts.license,
        opts.name,
        opts.expected_attach_type,
        &mut [],
    ) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    if opts.log_size < 128 {
        return Err(BpfError::Verifier {
            source: first,
            log: String::new(),
        });
    }
    let mut log = vec![0u8; opts.log_size];
    match prog_load_raw(
        prog_type,
        &words,
        opts.license,
        opts.name,
        opts.expected_attach_type,
        &mut log,
    ) {
        Ok(fd) => Ok(fd),
        Err(source) => Err(BpfError::Verifier {
            source,
            log: log_text(&log),
        }),
    }
}

/// `BPF_PROG_TEST_RUN`: run the program `repeat` times (0 counts as 1) on a copy of
/// `data`, and return `(retval, average duration in ns)`.
///
/// For packet programs the kernel builds an skb from `data`; socket filters and tc
/// programs get `data` as an Ethernet frame whose first 14 bytes the kernel consumes
/// with `eth_type_trans` (see the prefilter tests).
#[doc(alias = "BPF_PROG_TEST_RUN")]
pub fn prog_test_run(fd: BorrowedFd<'_>, data: &[u8], repeat: u32) -> Result<(u32, u32), BpfError> {
    let data_size_in =
        u32::try_from(data.len()).map_err(|_| BpfError::InvalidArgument("test data too large"))?;
    let mut attr = TestRunAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in,
        data_in: data.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|source| BpfError::Syscall {
        call: "BPF_PROG_TEST_RUN",
        source,
    })?;
    Ok((attr.retval, attr.duration))
}

/// A BPF map: its descriptor (close-on-exec) and the sizes the kernel was given, so that
/// every access passes buffers of exactly the right length.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl Map {
    /// `BPF_MAP_CREATE`. Per-CPU map types are refused (their values are per-CPU arrays).
    #[doc(alias = "BPF_MAP_CREATE")]
    pub fn create(
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        name: &str,
    ) -> Result<Map, BpfError> {
        if MapType::PER_CPU.contains(&map_type.0) {
            return Err(BpfError::InvalidArgument("per-CPU maps are not supported"));
        }
        let mut attr = MapCreateAttr {
            map_type: map_type.0,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_name: object_name(name),
            ..MapCreateAttr::default()
        };
        let r = sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(|source| BpfError::Syscall {
            call: "BPF_MAP_CREATE",
            source,
        })?;
        Ok(Map {
            fd: owned_fd(r, "BPF_MAP_CREATE")?,
            map_type,
            key_size,
            value_size,
            max_entries,
        })
    }

    /// An array of `max_entries` values of `value_size` bytes (keys: `u32` indexes).
    pub fn array(value_size: u32, max_entries: u32, name: &str) -> Result<Map, BpfError> {
        Map::create(MapType::ARRAY, 4, value_size, max_entries, 0, name)
    }

    /// A hash table.
    pub fn hash(
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        name: &str,
    ) -> Result<Map, BpfError> {
        Map::create(MapType::HASH, key_size, value_size, max_entries, 0, name)
    }

    /// A ring buffer of `size` bytes (a power of two, a multiple of the page size).
    pub fn ringbuf(size: u32, name: &str) -> Result<Map, BpfError> {
        Map::create(MapType::RINGBUF, 0, 0, size, 0, name)
    }

    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// `max_entries` as created.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Give up the wrapper and keep the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    fn check(&self, key: &[u8], value: Option<usize>) -> Result<(), BpfError> {
        if self.key_size == 0 {
            return Err(BpfError::InvalidArgument("map has no keys"));
        }
        if key.len() != self.key_size as usize {
            return Err(BpfError::InvalidArgument(
                "key length differs from key_size",
            ));
        }
        if let Some(v) = value {
            if v != self.value_size as usize {
                return Err(BpfError::InvalidArgument(
                    "value length differs from value_size",
                ));
            }
        }
        Ok(())
    }

    fn elem(&self, cmd: libc::c_long, attr: &mut MapElemAttr) -> io::Result<()> {
        attr.map_fd = self.fd.as_raw_fd() as u32;
        sys_bpf(cmd, attr).map(|_| ())
    }

    /// `BPF_MAP_UPDATE_ELEM` with `flags` ([`BPF_ANY`], [`BPF_NOEXIST`], [`BPF_EXIST`]).
    #[doc(alias = "BPF_MAP_UPDATE_ELEM")]
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), BpfError> {
        self.check(key, Some(value.len()))?;
        let mut attr = MapElemAttr {
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags,
            ..MapElemAttr::default()
        };
        self.elem(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map_err(|source| BpfError::Syscall {
                call: "BPF_MAP_UPDATE_ELEM",
                source,
            })
    }

    /// `BPF_MAP_LOOKUP_ELEM`: fill `value` and return true, or return false if the key is
    /// absent.
    #[doc(alias = "BPF_MAP_LOOKUP_ELEM")]
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool, BpfError> {
        self.check(key, Some(value.len()))?;
        let mut attr = MapElemAttr {
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..MapElemAttr::default()
        };
        match self.elem(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(BpfError::Syscall {
                call: "BPF_MAP_LOOKUP_ELEM",
                source,
            }),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`: true if the key was present.
    #[doc(alias = "BPF_MAP_DELETE_ELEM")]
    pub fn delete(&self, key: &[u8]) -> Result<bool, BpfError> {
        self.check(key, None)?;
        let mut attr = MapElemAttr {
            key: key.as_ptr() as u64,
            ..MapElemAttr::default()
        };
        match self.elem(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(BpfError::Syscall {
                call: "BPF_MAP_DELETE_ELEM",
                source,
            }),
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_sanitised() {
        assert_eq!(&object_name("lindivert_pf")[..13], b"lindivert_pf\0");
        assert_eq!(&object_name("a-b c")[..6], b"a_b_c\0");
        let long = object_name("0123456789abcdefghij");
        assert_eq!(&long[..15], b"0123456789abcde");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn empty_programs_are_refused_without_a_syscall() {
        let mut log = [0u8; 256];
        assert!(matches!(
            prog_load(ProgType::SOCKET_FILTER, &[], LICENSE, &mut log),
            Err(BpfError::InvalidArgument(_))
        ));
    }
}
