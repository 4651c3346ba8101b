//! The libebpfdivert ABI pydivert's Linux backend loads (`pydivert/bpf/__init__.py`
//! `_FUNCTIONS`), implemented on lindivert.
//!
//! Conventions (as `pydivert/ebpf.py` expects them): functions returning `int` give 0 (or a
//! count/descriptor) on success and `-errno` on failure: `-EAGAIN` when a receive timed
//! out, `-ESHUTDOWN` when the handle was shut down or closed while receiving, `-ENOBUFS`
//! when the packet did not fit (it is then truncated and consumed, like WinDivert),
//! `-EBADF` for an unknown handle. `ebpfdivert_open` returns NULL and sets `errno`:
//! `EINVAL` (bad filter, layer, priority or flags), `EOPNOTSUPP` (layer not available),
//! `EPERM` (missing capabilities). Handles are the same registry handles as the WinDivert
//! API's, so both APIs can be mixed.
//!
//! `ebpfdivert_open` options: `ifnames` restricts a NETWORK/NETWORK_FORWARD handle to
//! those interfaces (the filter gets `and (ifIdx == ...)`); `ring_bytes` is accepted and
//! ignored (lindivert queues in nfnetlink, sized by the QUEUE_* parameters).
//! `ebpfdivert_recv_ex`/`send_ex` take the address array length in bytes (80 per address),
//! like `WinDivertRecvEx`/`SendEx`.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use lindivert_core::address::RawAddress;
use lindivert_core::packet;

use crate::divert::{self, OpenArgs};
use crate::error::{self, Fail};
use crate::helpers;
use crate::sys;
use crate::{run, run_errno};

const ADDR: usize = RawAddress::SIZE;
const BATCH_MAX: usize = lindivert_core::types::BATCH_MAX;
const STATS: usize = 7;

/// `struct ebpfdivert_open_opts`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OpenOpts {
    /// `sizeof(struct ebpfdivert_open_opts)` as the caller knows it.
    pub sz: usize,
    /// NULL-terminated interface names, or NULL.
    pub ifnames: *const *const c_char,
    /// Ring buffer size (ignored).
    pub ring_bytes: u32,
}

fn timeout(ms: c_int) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn errno_fail(e: Fail) -> Fail {
    // A receive on a handle that was shut down or is being closed: -ESHUTDOWN.
    match e.code {
        error::ERROR_NO_DATA | error::ERROR_BAD_COMMAND => Fail {
            code: e.code,
            errno: libc::ESHUTDOWN,
        },
        _ => e,
    }
}

/// `const char *ebpfdivert_version(void)`.
#[no_mangle]
pub extern "C" fn ebpfdivert_version() -> *const c_char {
    const V: &std::ffi::CStr = c"lindivert 0.1.0 (WinDivert 2.2 API)";
    V.as_ptr()
}

/// `void *ebpfdivert_open(const char *filter, int layer, int16_t priority, uint64_t flags,
/// const struct ebpfdivert_open_opts *opts)`.
///
/// # Safety
/// `filter` NULL or a C string; `opts` NULL or a readable options struct of at least
/// `opts->sz` bytes whose `ifnames` is NULL or a NULL-terminated array of C strings.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_open(
    filter: *const c_char,
    layer: c_int,
    priority: i16,
    flags: u64,
    opts: *const OpenOpts,
) -> *mut c_void {
    run(std::ptr::null_mut(), || {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        let text = text.to_str().map_err(|_| Fail::param())?;
        // SAFETY: `opts` is NULL or starts with a readable `size_t sz`.
        let sz = unsafe { sys::get(opts.cast::<usize>()) }.unwrap_or(0);
        let ifnames = if sz >= std::mem::size_of::<[usize; 2]>() {
            // SAFETY: `opts` has at least `sz` >= 16 readable bytes: `sz` and `ifnames`.
            let head = unsafe { sys::get(opts.cast::<[usize; 2]>()) }.unwrap_or_default();
            // SAFETY: `ifnames` is NULL or a NULL-terminated array of C strings.
            unsafe { sys::cstr_list(head[1] as *const *const c_char, 256) }.unwrap_or_default()
        } else {
            Vec::new()
        };
        let id = divert::open(&OpenArgs {
            filter: text,
            layer: u32::try_from(layer).map_err(|_| Fail::param())?,
            priority: priority.into(),
            flags,
            ifnames: &ifnames,
        })?;
        Ok(id as *mut c_void)
    })
}

/// `int ebpfdivert_recv(void *h, void *buf, uint32_t len, uint32_t *recv_len,
/// WINDIVERT_ADDRESS *addr, int timeout_ms)`; `timeout_ms < 0` waits forever.
///
/// # Safety
/// `buf` NULL or `len` writable bytes; `recv_len` NULL or a writable `uint32_t`; `addr`
/// NULL or a writable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_recv(
    h: *mut c_void,
    buf: *mut c_void,
    len: u32,
    recv_len: *mut u32,
    addr: *mut RawAddress,
    timeout_ms: c_int,
) -> c_int {
    run_errno(|| {
        // SAFETY: `buf` is NULL or `len` writable bytes.
        let b = unsafe { sys::bytes_mut(buf, len as usize) }.ok_or(Fail::param())?;
        let e = divert::lookup(h as usize)?;
        let r = e.recv(b, 1, timeout(timeout_ms)).map_err(errno_fail)?;
        // SAFETY: `recv_len` is NULL or a writable uint32_t; `addr` NULL or writable.
        unsafe {
            sys::put(recv_len, r.len as u32);
            sys::put(addr, r.addrs[0]);
        }
        if r.truncated {
            return Err(Fail::buffer());
        }
        Ok(0)
    })
}

/// `int ebpfdivert_recv_ex(void *h, void *buf, uint32_t len, uint32_t *recv_len,
/// WINDIVERT_ADDRESS *addrs, uint32_t *addr_len, int timeout_ms)`: `*addr_len` in/out,
/// bytes.
///
/// # Safety
/// As [`ebpfdivert_recv`]; `addr_len` NULL or a readable/writable `uint32_t`, and `addrs`
/// then has `*addr_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_recv_ex(
    h: *mut c_void,
    buf: *mut c_void,
    len: u32,
    recv_len: *mut u32,
    addrs: *mut RawAddress,
    addr_len: *mut u32,
    timeout_ms: c_int,
) -> c_int {
    run_errno(|| {
        // SAFETY: `addr_len` is NULL or a readable uint32_t.
        let max = match unsafe { sys::get(addr_len) } {
            None => 1,
            Some(n) if addrs.is_null() || !(ADDR..=BATCH_MAX * ADDR).contains(&(n as usize)) => {
                return Err(Fail::param())
            }
            Some(n) => n as usize / ADDR,
        };
        // SAFETY: `buf` is NULL or `len` writable bytes.
        let b = unsafe { sys::bytes_mut(buf, len as usize) }.ok_or(Fail::param())?;
        let e = divert::lookup(h as usize)?;
        let r = e.recv(b, max, timeout(timeout_ms)).map_err(errno_fail)?;
        // SAFETY: the outputs are NULL or writable; `addrs` holds `max` >= r.addrs.len().
        unsafe {
            sys::put(recv_len, r.len as u32);
            sys::put_array(addrs, &r.addrs[..r.addrs.len().min(max)]);
            sys::put(addr_len, (r.addrs.len() * ADDR) as u32);
        }
        if r.truncated {
            return Err(Fail::buffer());
        }
        Ok(0)
    })
}

/// `int ebpfdivert_send(void *h, const void *buf, uint32_t len, uint32_t *send_len,
/// const WINDIVERT_ADDRESS *addr)`.
///
/// # Safety
/// `buf` NULL or `len` readable bytes; `send_len` NULL or writable; `addr` NULL or a
/// readable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_send(
    h: *mut c_void,
    buf: *const c_void,
    len: u32,
    send_len: *mut u32,
    addr: *const RawAddress,
) -> c_int {
    run_errno(|| {
        // SAFETY: `buf` is NULL or `len` readable bytes.
        let b = unsafe { sys::bytes(buf, len as usize) }.ok_or(Fail::param())?;
        // SAFETY: `addr` is NULL or a readable WINDIVERT_ADDRESS.
        let a = unsafe { sys::get(addr) }.ok_or(Fail::param())?;
        let n = divert::lookup(h as usize)?.send(b, &[a])?;
        // SAFETY: `send_len` is NULL or a writable uint32_t.
        unsafe { sys::put(send_len, n as u32) };
        Ok(0)
    })
}

/// `int ebpfdivert_send_ex(void *h, const void *buf, uint32_t len, uint32_t *send_len,
/// const WINDIVERT_ADDRESS *addrs, uint32_t addr_len)`: `addr_len` in bytes.
///
/// # Safety
/// As [`ebpfdivert_send`]; `addrs` has `addr_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_send_ex(
    h: *mut c_void,
    buf: *const c_void,
    len: u32,
    send_len: *mut u32,
    addrs: *const RawAddress,
    addr_len: u32,
) -> c_int {
    run_errno(|| {
        let n = addr_len as usize;
        if !(ADDR..=BATCH_MAX * ADDR).contains(&n) {
            return Err(Fail::param());
        }
        // SAFETY: `buf` is NULL or `len` readable bytes.
        let b = unsafe { sys::bytes(buf, len as usize) }.ok_or(Fail::param())?;
        // SAFETY: `addrs` is NULL or `addr_len` readable bytes (n / 80 addresses).
        let a = unsafe { sys::get_array(addrs, n / ADDR) }.ok_or(Fail::param())?;
        let sent = divert::lookup(h as usize)?.send(b, &a)?;
        // SAFETY: `send_len` is NULL or a writable uint32_t.
        unsafe { sys::put(send_len, sent as u32) };
        Ok(0)
    })
}

/// `int ebpfdivert_shutdown(void *h, int how)`.
#[no_mangle]
pub extern "C" fn ebpfdivert_shutdown(h: *mut c_void, how: c_int) -> c_int {
    run_errno(|| {
        let how = u32::try_from(how).map_err(|_| Fail::param())?;
        divert::lookup(h as usize)?.shutdown(how).map(|()| 0)
    })
}

/// `int ebpfdivert_close(void *h)`.
#[no_mangle]
pub extern "C" fn ebpfdivert_close(h: *mut c_void) -> c_int {
    run_errno(|| divert::close(h as usize).map(|()| 0))
}

/// `int ebpfdivert_set_param(void *h, int param, uint64_t value)`.
#[no_mangle]
pub extern "C" fn ebpfdivert_set_param(h: *mut c_void, param: c_int, value: u64) -> c_int {
    run_errno(|| {
        let p = u32::try_from(param).map_err(|_| Fail::param())?;
        divert::lookup(h as usize)?.set_param(p, value).map(|()| 0)
    })
}

/// `int ebpfdivert_get_param(void *h, int param, uint64_t *value)`.
///
/// # Safety
/// `value` NULL or a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_get_param(
    h: *mut c_void,
    param: c_int,
    value: *mut u64,
) -> c_int {
    run_errno(|| {
        let e = divert::lookup(h as usize)?;
        let p = u32::try_from(param).map_err(|_| Fail::param())?;
        let v = e.get_param(p)?;
        // SAFETY: `value` is NULL or a writable uint64_t.
        unsafe { sys::put(value, v) }
            .then_some(0)
            .ok_or(Fail::param())
    })
}

/// `int ebpfdivert_get_event_fd(void *h)`: a descriptor that polls readable (level
/// triggered) when a receive may find something.
#[no_mangle]
pub extern "C" fn ebpfdivert_get_event_fd(h: *mut c_void) -> c_int {
    run_errno(|| divert::lookup(h as usize)?.event_fd())
}

/// `int ebpfdivert_get_handle_stats(void *h, uint64_t *values, int n)`: fills up to `n`
/// counters (diverted, dropped, sniffed, parsing_errors, ringbuf_full, queue_full, too_big)
/// and returns how many.
///
/// # Safety
/// `values` NULL or `n` writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_get_handle_stats(
    h: *mut c_void,
    values: *mut u64,
    n: c_int,
) -> c_int {
    run_errno(|| {
        let e = divert::lookup(h as usize)?;
        let n = usize::try_from(n).map_err(|_| Fail::param())?.min(STATS);
        let s = e.stats();
        // SAFETY: `values` is NULL or `n` writable uint64_t (we write at most `n`).
        unsafe { sys::put_array(values, &s[..n]) }
            .then_some(n as c_int)
            .ok_or(Fail::param())
    })
}

/// `int ebpfdivert_unregister(void)`: nothing to clean up (lindivert's nftables tables,
/// queues and BPF links belong to the process's descriptors and vanish with it).
#[no_mangle]
pub extern "C" fn ebpfdivert_unregister() -> c_int {
    0
}

/// `const char *ebpfdivert_strerror(int err)` (`err` or `-err`); a static string.
#[no_mangle]
pub extern "C" fn ebpfdivert_strerror(err: c_int) -> *const c_char {
    run(c"Unknown error".as_ptr(), || {
        Ok(error::errno_message(err).as_ptr())
    })
}

/// `int ebpfdivert_helper_compile_filter(const char *filter, int layer, const char **msg,
/// uint32_t *pos)`: 0, or `-EINVAL` with WinDivert's static message and the position.
///
/// # Safety
/// `filter` NULL or a C string; `msg` NULL or a writable `const char *`; `pos` NULL or a
/// writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_helper_compile_filter(
    filter: *const c_char,
    layer: c_int,
    msg: *mut *const c_char,
    pos: *mut u32,
) -> c_int {
    run_errno(|| {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        match helpers::compile(text, u32::try_from(layer).unwrap_or(u32::MAX)) {
            Ok(_) => Ok(0),
            Err(e) => {
                // SAFETY: `msg`/`pos` are NULL or writable; the message is static.
                unsafe {
                    sys::put(msg, error::kind_message(e.kind).as_ptr());
                    sys::put(pos, helpers::char_pos(text, &e));
                }
                Err(Fail::param())
            }
        }
    })
}

/// `int ebpfdivert_helper_eval_filter(const char *filter, const void *pkt, uint32_t len,
/// const WINDIVERT_ADDRESS *addr)`: 1 match, 0 no match, `-errno`.
///
/// # Safety
/// `filter` NULL or a C string; `pkt` NULL or `len` readable bytes; `addr` NULL or a
/// readable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_helper_eval_filter(
    filter: *const c_char,
    pkt: *const c_void,
    len: u32,
    addr: *const RawAddress,
) -> c_int {
    run_errno(|| {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        // SAFETY: `pkt` is NULL or `len` readable bytes.
        let p = unsafe { sys::bytes(pkt, len as usize) }.ok_or(Fail::param())?;
        // SAFETY: `addr` is NULL or a readable WINDIVERT_ADDRESS.
        let a = unsafe { sys::get(addr) }.ok_or(Fail::param())?;
        helpers::eval_filter(text, p, &a).map(c_int::from)
    })
}

/// `int ebpfdivert_helper_format_filter(const char *filter, int layer, char *buf,
/// uint32_t len)`.
///
/// # Safety
/// `filter` NULL or a C string; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_helper_format_filter(
    filter: *const c_char,
    layer: c_int,
    buf: *mut c_char,
    len: u32,
) -> c_int {
    run_errno(|| {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        let s = helpers::format_filter(text, u32::try_from(layer).unwrap_or(u32::MAX))?;
        // SAFETY: `buf` is NULL or `len` writable bytes.
        let b = unsafe { sys::bytes_mut(buf.cast(), len as usize) };
        let b = b.filter(|_| !buf.is_null()).ok_or(Fail::param())?;
        helpers::copy_out(&s, b).map(|()| 0)
    })
}

/// `int ebpfdivert_helper_calc_checksums(void *pkt, uint32_t len, WINDIVERT_ADDRESS *addr,
/// uint64_t flags)`.
///
/// # Safety
/// `pkt` NULL or `len` writable bytes; `addr` NULL or a readable/writable
/// `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_helper_calc_checksums(
    pkt: *mut c_void,
    len: u32,
    addr: *mut RawAddress,
    flags: u64,
) -> c_int {
    run_errno(|| {
        // SAFETY: `pkt` is NULL or `len` writable bytes.
        let p = unsafe { sys::bytes_mut(pkt, len as usize) }.ok_or(Fail::param())?;
        let bits = helpers::calc_checksums(p, flags)?;
        // SAFETY: `addr` is NULL or a readable WINDIVERT_ADDRESS.
        if let Some(mut a) = unsafe { sys::get(addr) } {
            helpers::apply_checksum_bits(&mut a, bits);
            // SAFETY: `addr` is non-null and writable.
            unsafe { sys::put(addr, a) };
        }
        Ok(0)
    })
}

/// `uint64_t ebpfdivert_helper_hash_packet(const void *pkt, uint32_t len, uint64_t seed)`.
///
/// # Safety
/// `pkt` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ebpfdivert_helper_hash_packet(
    pkt: *const c_void,
    len: u32,
    seed: u64,
) -> u64 {
    run(0, || {
        // SAFETY: `pkt` is NULL or `len` readable bytes.
        let p = unsafe { sys::bytes(pkt, len as usize) }.ok_or(Fail::param())?;
        Ok(packet::hash_packet(p, seed))
    })
}
