//! Processes: send a signal by process id (for `lindivert ctl kill`).
//!
//! Contract: only ever signals one process; a process id of 0 or one that does not fit a
//! `pid_t` (which `kill(2)` would treat as a process group) is refused with `ESRCH`.

use std::io;

/// `SIGKILL`.
pub const SIGKILL: i32 = libc::SIGKILL;

/// `kill(pid, sig)`. `sig` 0 only checks that the process exists.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill(2) with a positive pid (one process, never a group) and a plain integer.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
