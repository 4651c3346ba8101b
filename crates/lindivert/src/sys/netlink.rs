//! A `NETLINK_*` socket: close-on-exec, bound with a kernel-chosen port id, with helpers for
//! big receive buffers, `NETLINK_NO_ENOBUFS`, batched receive (`recvmmsg`) and gathered send
//! (`sendmsg` with several iovecs).

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: i32 = libc::NETLINK_NETFILTER;

/// Most datagrams one `recvmmsg` of [`NetlinkSocket::recv_many_iov`] reads.
pub const MAX_VLEN: usize = 64;
/// Up to this many buffers, `recvmmsg` runs with headers for this many only.
const SMALL_VLEN: usize = 8;

/// A bound netlink socket.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    portid: u32,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is a plain C struct for which all-zero bytes are valid.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

impl NetlinkSocket {
    /// Open a `SOCK_RAW | SOCK_CLOEXEC` netlink socket of `protocol` and bind it with port id 0
    /// (the kernel picks a unique one).
    pub fn open(protocol: i32) -> io::Result<NetlinkSocket> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        })?;
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_addr();
        // SAFETY: `addr` is a valid sockaddr_nl and the length matches its size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        let mut bound = kernel_addr();
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `bound` is writable for `len` bytes; the kernel writes at most that much.
        cvt(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                &mut bound as *mut libc::sockaddr_nl as *mut libc::sockaddr,
                &mut len,
            )
        })?;
        Ok(NetlinkSocket {
            fd,
            portid: bound.nl_pid,
        })
    }

    /// The port id the kernel assigned.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    fn setsockopt_int(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        setsockopt_int(self.fd.as_fd(), level, name, value)
    }

    /// Set the receive buffer with `SO_RCVBUFFORCE` (needs CAP_NET_ADMIN), falling back to
    /// `SO_RCVBUF` (capped by `net.core.rmem_max`).
    pub fn set_rcvbuf(&self, bytes: usize) -> io::Result<()> {
        let v = bytes.min(i32::MAX as usize) as i32;
        match self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v) {
            Ok(()) => Ok(()),
            Err(_) => self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF, v),
        }
    }

    /// Set the send buffer (`SO_SNDBUFFORCE`, falling back to `SO_SNDBUF`).
    pub fn set_sndbuf(&self, bytes: usize) -> io::Result<()> {
        let v = bytes.min(i32::MAX as usize) as i32;
        match self.setsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v) {
            Ok(()) => Ok(()),
            Err(_) => self.setsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUF, v),
        }
    }

    /// `NETLINK_NO_ENOBUFS`: do not report receive-buffer overruns as ENOBUFS.
    pub fn set_no_enobufs(&self, on: bool) -> io::Result<()> {
        self.setsockopt_int(libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, on as i32)
    }

    /// `SO_RCVTIMEO`: how long a blocking receive waits (`Duration::ZERO` = forever).
    pub fn set_rcvtimeo(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval and the length says so.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    /// `NETLINK_EXT_ACK`: ask for extended error messages.
    pub fn set_ext_ack(&self, on: bool) -> io::Result<()> {
        self.setsockopt_int(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, on as i32)
    }

    /// Send one buffer (one or several netlink messages) to the kernel.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_iov(&[IoSlice::new(buf)])
    }

    /// Send several buffers as one datagram (`sendmsg` with iovecs) to the kernel.
    pub fn send_iov(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut addr = kernel_addr();
        // SAFETY: msghdr is a plain C struct; all-zero is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut addr as *mut libc::sockaddr_nl as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // IoSlice is ABI compatible with struct iovec (guaranteed by std on Unix).
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        loop {
            // SAFETY: msg points at `addr` and at `bufs`, both alive for the call; the kernel
            // only reads from them.
            let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
            match cvt_size(r) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Receive one datagram. `nonblock` uses `MSG_DONTWAIT` (then `WouldBlock` when empty).
    /// A datagram longer than `buf` is reported as an error (`MSG_TRUNC`).
    pub fn recv(&self, buf: &mut [u8], nonblock: bool) -> io::Result<usize> {
        let flags = libc::MSG_TRUNC | if nonblock { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    flags,
                )
            };
            match cvt_size(r) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) if n > buf.len() => {
                    return Err(io::Error::other(format!(
                        "netlink datagram of {n} bytes truncated to {}",
                        buf.len()
                    )))
                }
                other => return other,
            }
        }
    }

    /// Receive up to [`MAX_VLEN`] datagrams in one `recvmmsg` call without blocking, into buffers
    /// given by an iterator (no allocation: the headers live on the stack). Returns how
    /// many arrived (`WouldBlock` when nothing is queued); `lens[i]` receives the length
    /// of the datagram in the `i`-th buffer (0 if truncated).
    pub fn recv_many_iov<'b>(
        &self,
        bufs: impl Iterator<Item = &'b mut [u8]>,
        lens: &mut [usize],
    ) -> io::Result<usize> {
        self.recv_many_iov_flags(bufs, lens, libc::MSG_DONTWAIT)
    }

    /// Like [`NetlinkSocket::recv_many_iov`], but waits for the first datagram (at most
    /// the socket's `SO_RCVTIMEO`; `MSG_WAITFORONE`: the others only if already queued).
    /// A timeout or a signal gives `Ok(0)`.
    pub fn recv_many_iov_wait<'b>(
        &self,
        bufs: impl Iterator<Item = &'b mut [u8]>,
        lens: &mut [usize],
    ) -> io::Result<usize> {
        match self.recv_many_iov_flags(bufs, lens, libc::MSG_WAITFORONE) {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(0)
            }
            r => r,
        }
    }

    fn recv_many_iov_flags<'b>(
        &self,
        bufs: impl Iterator<Item = &'b mut [u8]>,
        lens: &mut [usize],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        // few buffers (the latency case: one packet per call) need no 4 KB of headers
        // cleared on every call
        let most = bufs.size_hint().1.unwrap_or(usize::MAX).min(lens.len());
        if most <= SMALL_VLEN {
            self.recvmmsg_n::<SMALL_VLEN>(bufs, lens, flags)
        } else {
            self.recvmmsg_n::<MAX_VLEN>(bufs, lens, flags)
        }
    }

    fn recvmmsg_n<'b, const N: usize>(
        &self,
        bufs: impl Iterator<Item = &'b mut [u8]>,
        lens: &mut [usize],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; N];
        let mut n = 0;
        for b in bufs.take(N.min(lens.len())) {
            iovs[n] = libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: mmsghdr is a plain C struct; all-zero is a valid value.
        let mut hdrs: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()).take(n) {
            h.msg_hdr.msg_iov = iov as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
        }
        let got = loop {
            // SAFETY: the first `n` headers each point at one iovec that points into a
            // buffer borrowed mutably for this call, of the stated length.
            let r = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            match cvt(r) {
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        && flags & libc::MSG_DONTWAIT != 0 =>
                {
                    continue
                }
                Err(e) => return Err(e),
                Ok(k) => break k as usize,
            }
        };
        for i in 0..got {
            let truncated = hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            lens[i] = if truncated {
                0
            } else {
                hdrs[i].msg_len as usize
            };
        }
        Ok(got)
    }

    /// Wait until the socket is readable or the timeout passes (`None` = forever).
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        super::poll::wait_readable(self.fd.as_fd(), timeout)
    }
}

/// `setsockopt` with an `int` value.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a valid int and the length says so.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for NetlinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_binds_unique_portids() {
        let a = NetlinkSocket::open(libc::NETLINK_ROUTE).unwrap();
        let b = NetlinkSocket::open(libc::NETLINK_ROUTE).unwrap();
        assert_ne!(a.portid(), 0);
        assert_ne!(a.portid(), b.portid());
        // close-on-exec is set
        // SAFETY: fcntl F_GETFD on a valid fd.
        let fl = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFD) };
        assert!(fl & libc::FD_CLOEXEC != 0);
        assert!(matches!(
            a.recv(&mut [0u8; 64], true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}
