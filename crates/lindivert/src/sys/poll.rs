//! `poll`, `epoll`, `eventfd` and `timerfd` helpers.
//!
//! What the handles build their pollable descriptor from: an [`Epoll`] set that holds the
//! data source (a netlink socket or a ring buffer), an [`EventFlag`] ("events are queued in
//! user space") and, where needed, a [`Timer`] (a deadline for periodic work). A handle's
//! `AsRawFd` is that epoll descriptor, so an application can wait on many handles with its
//! own `poll`/`epoll`.
//!
//! Contract: timeouts are `Option<Duration>` (`None` = wait forever), rounded up to whole
//! milliseconds so that a tiny timeout still waits; an interrupted wait (`EINTR`) is
//! retried with the full timeout; every descriptor is non-blocking where it is read and
//! close-on-exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_millis();
            // round up so that a tiny timeout still waits
            let ms = if ms == 0 && !d.is_zero() { 1 } else { ms };
            ms.min(i32::MAX as u128) as libc::c_int
        }
    }
}

/// Wait until `fd` is readable or the timeout passes (`None` = forever). Returns whether it
/// became readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms(timeout)) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// Wait until one of `fds` (at most 64) is readable or the timeout passes (`None` =
/// forever). Returns a bit mask of the readable ones (0 on timeout).
pub fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<u64> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .take(64)
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` holds `p.len()` valid pollfd entries.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms(timeout)) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut mask = 0u64;
        for (i, q) in p.iter().enumerate() {
            if q.revents & libc::POLLIN != 0 {
                mask |= 1 << i;
            }
        }
        return Ok(mask);
    }
}

/// An `eventfd` used as a level-triggered "something is buffered" flag.
#[derive(Debug)]
pub struct EventFlag {
    fd: OwnedFd,
}

impl EventFlag {
    /// A new, clear flag (non-blocking, close-on-exec).
    pub fn new() -> io::Result<EventFlag> {
        // SAFETY: plain eventfd(2) call; the result is checked.
        let r = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `r` is a fresh descriptor owned by nobody else.
        Ok(EventFlag {
            fd: unsafe { OwnedFd::from_raw_fd(r) },
        })
    }

    /// Make the flag readable.
    pub fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. Errors (counter overflow) are harmless.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Clear the flag.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN (already clear) is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

impl AsFd for EventFlag {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What a pollable event handle last told its descriptor: whether its [`EventFlag`] is set
/// and the deadline its [`Timer`] is armed for. Kept with the handle's locked state so the
/// flag and timer are written only when what they should say changes.
#[derive(Debug, Default)]
pub struct Readiness {
    flagged: bool,
    armed: Option<Instant>,
}

impl Readiness {
    /// Set `flag` when `want`, clear it otherwise.
    pub fn mirror(&mut self, flag: &EventFlag, want: bool) {
        if want != self.flagged {
            if want {
                flag.set();
            } else {
                flag.clear();
            }
            self.flagged = want;
        }
    }

    /// Arm `timer` to expire at `deadline` (`None`: disarm). A failed re-arm is tried again
    /// next time.
    pub fn arm(&mut self, timer: &Timer, deadline: Option<Instant>) {
        if deadline != self.armed {
            let after = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if timer.arm(after).is_ok() {
                self.armed = deadline;
            }
        }
    }
}

/// A one-shot `CLOCK_MONOTONIC` `timerfd`: readable from its expiry until it is re-armed or
/// disarmed (a level-triggered "a deadline passed" flag for an [`Epoll`] set).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A new, disarmed timer (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Timer> {
        // SAFETY: plain timerfd_create(2) call; the result is checked.
        let r = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `r` is a fresh descriptor owned by nobody else.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(r) },
        })
    }

    /// Expire once `after` from now (at least 1 ns), or never (`None`); either clears an
    /// expiry that was not yet re-armed.
    pub fn arm(&self, after: Option<Duration>) -> io::Result<()> {
        let d = after.map_or(Duration::ZERO, |d| d.max(Duration::from_nanos(1)));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted (NULL).
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An epoll set: one pollable descriptor that is readable when any member is.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty, close-on-exec epoll set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1(2) call; the result is checked.
        let r = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `r` is a fresh descriptor owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(r) },
        })
    }

    /// Add `fd` for readability (level-triggered).
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event; both fds are valid.
        let r = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait until a member is readable, at most `slice` at a time and not past `deadline`
    /// (`None` = no deadline). Returns `Ok(false)` without waiting once `deadline` has
    /// passed.
    pub fn wait_until(&self, deadline: Option<Instant>, slice: Duration) -> io::Result<bool> {
        let wait = match deadline {
            None => slice,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(slice),
                _ => return Ok(false),
            },
        };
        self.wait(Some(wait))?;
        Ok(true)
    }

    /// Wait until a member is readable (`None` = forever). Returns whether one is.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        loop {
            // SAFETY: `evs` holds 4 writable epoll_event entries.
            let r = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    evs.as_mut_ptr(),
                    4,
                    timeout_ms(timeout),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(r > 0);
        }
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Register `source` with the current tokio runtime's reactor (feature `tokio`): an error,
/// not a panic, outside a runtime. (A runtime built without its I/O driver still panics
/// here, as every tokio I/O type does.)
///
/// `source` must keep returning the same open descriptor from `as_raw_fd` for as long as
/// it is registered: the `Pollable` handles do, their descriptor is an epoll set that they
/// own and close only when dropped.
#[cfg(feature = "tokio")]
pub fn register_tokio<T: crate::async_io::Pollable>(
    source: T,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "lindivert::async_io::Async::new: not called from inside a tokio runtime",
        ));
    }
    // SAFETY: `Pollable` is sealed to lindivert's handles, whose `as_raw_fd` always returns
    // the epoll descriptor the handle owns; it stays open (and the same) until the handle
    // is dropped, which the `AsyncFd` does only after deregistering (or hands it back with
    // `into_inner`, which deregisters first).
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(source, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
