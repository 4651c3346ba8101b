//! Clocks.
//!
//! lindivert timestamps ([`Address::timestamp`](lindivert_core::Address::timestamp), the
//! registry's open time) are `CLOCK_MONOTONIC` nanoseconds, the Linux counterpart of
//! WinDivert's `QueryPerformanceCounter` timestamps: they never go backwards and do not
//! count time the machine was suspended, and they mean nothing across machines or reboots.
//! [`realtime_to_monotonic`] converts wall-clock times (e.g. the kernel's realtime packet
//! timestamps) to that clock.

/// `CLOCK_MONOTONIC` in nanoseconds (the timestamp of lindivert addresses).
pub fn monotonic_ns() -> i64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    #[allow(clippy::unnecessary_cast)] // time_t and c_long are i64 on 64-bit targets only
    let ns = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64;
    ns
}

/// Convert a realtime (epoch) timestamp in nanoseconds to the monotonic clock.
pub fn realtime_to_monotonic(realtime: i64) -> i64 {
    realtime - realtime_ns() + monotonic_ns()
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_advances() {
        let a = super::monotonic_ns();
        let b = super::monotonic_ns();
        assert!(a > 0 && b >= a);
        let r = super::realtime_ns();
        let m = super::realtime_to_monotonic(r);
        assert!((m - super::monotonic_ns()).abs() < 1_000_000_000);
    }
}
