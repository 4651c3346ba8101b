//! cgroup v2 and BPF attachment: find the cgroup-v2 root, attach programs to it with BPF
//! links (`BPF_LINK_CREATE`; a link detaches when its last descriptor closes, so programs
//! never outlive the process), list loaded programs and links by id, and read the network
//! namespace cookie of the calling thread.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::bpf::{owned_fd, sys_bpf, Attr};

const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// `BPF_F_ALLOW_MULTI` for [`prog_attach`].
pub const BPF_F_ALLOW_MULTI: u32 = 2;

/// `CGROUP2_SUPER_MAGIC`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// `SO_NETNS_COOKIE` (Linux ≥ 5.14).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The part of `union bpf_attr` used by `BPF_LINK_CREATE` for cgroups.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// The part of `union bpf_attr` used by `BPF_PROG_ATTACH`/`BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The part of `union bpf_attr` used by the `*_GET_NEXT_ID` commands.
#[repr(C)]
#[derive(Default)]
struct NextIdAttr {
    start_id: u32,
    next_id: u32,
    open_flags: u32,
}

// The layouts above must match the kernel's exactly (no implicit padding).
const _: () = assert!(core::mem::size_of::<LinkCreateAttr>() == 16);
const _: () = assert!(core::mem::size_of::<ProgAttachAttr>() == 20);
const _: () = assert!(core::mem::size_of::<NextIdAttr>() == 12);

impl Attr for LinkCreateAttr {}
impl Attr for ProgAttachAttr {}
impl Attr for NextIdAttr {}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { core::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
    let magic = st.f_type as i64;
    r == 0 && magic == CGROUP2_SUPER_MAGIC
}

/// The cgroup-v2 root: `/sys/fs/cgroup/unified` (hybrid layout) or `/sys/fs/cgroup`
/// (unified layout), whichever is a cgroup2 file system.
pub fn cgroup2_root() -> io::Result<PathBuf> {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let p = Path::new(p);
        if is_cgroup2(p) {
            return Ok(p.to_path_buf());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no cgroup2 file system at /sys/fs/cgroup/unified or /sys/fs/cgroup",
    ))
}

/// An open cgroup directory (the attach target of cgroup BPF programs).
#[derive(Debug)]
pub struct Cgroup {
    fd: OwnedFd,
    path: PathBuf,
}

impl Cgroup {
    /// Open a cgroup-v2 directory.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Cgroup> {
        let path = path.as_ref().to_path_buf();
        let f = File::open(&path)?;
        Ok(Cgroup { fd: f.into(), path })
    }

    /// Open the cgroup-v2 root ([`cgroup2_root`]).
    pub fn root() -> io::Result<Cgroup> {
        Cgroup::open(cgroup2_root()?)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// `BPF_LINK_CREATE`: attach `prog` to `cgroup` at `attach_type`. Cgroup links always
/// allow several programs per hook (like `BPF_F_ALLOW_MULTI`). The program stays attached
/// while the returned descriptor (or a duplicate) is open.
pub fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        flags: 0,
    };
    let r = sys_bpf(BPF_LINK_CREATE, &mut attr)?;
    owned_fd(r, "BPF_LINK_CREATE").map_err(io::Error::from)
}

/// `BPF_PROG_ATTACH` (legacy attachment; it outlives the process until
/// [`prog_detach`]; prefer [`link_create`]).
pub fn prog_attach(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// `BPF_PROG_DETACH` of a program attached with [`prog_attach`].
pub fn prog_detach(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..ProgAttachAttr::default()
    };
    sys_bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

fn ids(cmd: libc::c_long) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut start = 0u32;
    loop {
        let mut attr = NextIdAttr {
            start_id: start,
            ..NextIdAttr::default()
        };
        match sys_bpf(cmd, &mut attr) {
            Ok(_) => {
                out.push(attr.next_id);
                start = attr.next_id;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// The ids of every loaded BPF program (`BPF_PROG_GET_NEXT_ID`).
pub fn prog_ids() -> io::Result<Vec<u32>> {
    ids(BPF_PROG_GET_NEXT_ID)
}

/// The ids of every BPF link (`BPF_LINK_GET_NEXT_ID`).
pub fn link_ids() -> io::Result<Vec<u32>> {
    ids(BPF_LINK_GET_NEXT_ID)
}

/// The kernel's id of a program or link descriptor, from `/proc/self/fdinfo`
/// (`prog_id:` / `link_id:`).
pub fn object_id(fd: BorrowedFd<'_>, key: &str) -> io::Result<u32> {
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {key} in fdinfo")))
}

/// The network namespace cookie of the calling thread's namespace (`SO_NETNS_COOKIE` on a
/// socket created here; the value `bpf_get_netns_cookie` returns for sockets of this
/// namespace).
pub fn current_netns_cookie() -> io::Result<u64> {
    let s =
        std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| std::net::UdpSocket::bind("[::1]:0"));
    let s = match s {
        Ok(s) => s,
        // `lo` may be down: an unbound socket works as well.
        Err(_) => return netns_cookie_unbound(),
    };
    netns_cookie_of(s.as_raw_fd())
}

fn netns_cookie_unbound() -> io::Result<u64> {
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    netns_cookie_of(owned.as_raw_fd())
}

fn netns_cookie_of(fd: libc::c_int) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = core::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `v` is a writable u64 and `len` holds its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            &mut v as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cgroup2_root_when_mounted() {
        // Not every build machine mounts cgroup2; when one is found it must be cgroup2.
        if let Ok(p) = cgroup2_root() {
            assert!(is_cgroup2(&p));
        }
        assert!(!is_cgroup2(Path::new("/proc")));
    }

    #[test]
    fn netns_cookie_is_stable() {
        if let (Ok(a), Ok(b)) = (current_netns_cookie(), current_netns_cookie()) {
            assert_eq!(a, b);
            assert_ne!(a, 0);
        }
    }
}
