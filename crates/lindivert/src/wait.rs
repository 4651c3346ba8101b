//! The receive loop of the eBPF event layers (FLOW and SOCKET): look under the lock, else
//! wait on the handle's epoll set, until something arrives or the timeout passes.

use crate::error::Error;
use crate::sys::poll::Epoll;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A waiting receive looks again at least this often, even without a notification (a ring
/// buffer notifies only once its consumer has caught up).
const WAKE_SLICE: Duration = Duration::from_millis(100);

/// Run `step` with `state` locked (a poisoned lock is taken over: the state stays usable)
/// until it gives a result, waiting on `epoll` in between; [`Error::Timeout`] once
/// `timeout` (`None` = never) has passed without one.
pub(crate) fn recv_until<S, T>(
    state: &Mutex<S>,
    epoll: &Epoll,
    timeout: Option<Duration>,
    mut step: impl FnMut(&mut S) -> Option<Result<T, Error>>,
) -> Result<T, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(r) = step(&mut state.lock().unwrap_or_else(|p| p.into_inner())) {
            return r;
        }
        if !epoll.wait_until(deadline, WAKE_SLICE)? {
            return Err(Error::Timeout);
        }
    }
}
