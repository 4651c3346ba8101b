//! Termination signals as a pollable descriptor (`signalfd`), for programs that want to
//! close their handles gracefully on SIGINT/SIGTERM.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// SIGINT and SIGTERM, blocked for the calling thread (and every thread it creates from
/// now on) and delivered through a `signalfd` instead. Create it before spawning threads.
#[derive(Debug)]
pub struct TermSignals {
    fd: OwnedFd,
}

fn term_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset/sigaddset initialise and modify the set they are given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        set.assume_init()
    }
}

impl TermSignals {
    /// Block SIGINT/SIGTERM in this thread and open a descriptor that receives them.
    pub fn new() -> io::Result<TermSignals> {
        let set = term_set();
        // SAFETY: `set` is an initialised sigset; the old mask is not needed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: plain signalfd(2) on a new descriptor; the result is checked.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(TermSignals {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wait up to `timeout` (`None` = forever) for a signal; returns its number.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        if !super::poll::wait_readable(self.fd.as_fd(), timeout)? {
            return Ok(None);
        }
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `len` bytes into the zero-initialised siginfo buffer.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                info.as_mut_ptr() as *mut libc::c_void,
                len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: the struct was zero-initialised, and all-zero is a valid siginfo.
        let info = unsafe { info.assume_init() };
        Ok(Some(info.ssi_signo as i32))
    }
}

impl AsFd for TermSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
