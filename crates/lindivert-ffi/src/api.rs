//! The WinDivert 2.2 API (`include/lindivert.h`).
//!
//! Linux specifics (documented in the header): `HANDLE` is `void *` (an opaque number from
//! the handle registry); `LPOVERLAPPED` arguments must be NULL; errors are read with
//! `WinDivertGetLastError()` (thread-local Windows codes) and `errno` is set to the closest
//! errno; `WinDivertGetFd` gives a pollable descriptor; `WinDivertRecvEx` accepts
//! `LINDIVERT_RECV_NONBLOCK`.
#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use lindivert_core::address::RawAddress;
use lindivert_core::packet::{self, addr};

use crate::divert::{self, OpenArgs};
use crate::error::{self, Fail, ERROR_INSUFFICIENT_BUFFER, R};
use crate::helpers;
use crate::sys;
use crate::{run, run_bool, Bool, FALSE, TRUE};

/// `HANDLE`.
pub type Handle = *mut c_void;
/// `INVALID_HANDLE_VALUE`.
pub const INVALID_HANDLE_VALUE: Handle = usize::MAX as Handle;
/// `WinDivertRecvEx` flag (Linux extension): do not wait; fail with `ERROR_TIMEOUT` /
/// `EAGAIN` when nothing is queued.
pub const LINDIVERT_RECV_NONBLOCK: u64 = 0x1;
const ADDR: usize = RawAddress::SIZE;
const BATCH_MAX: usize = lindivert_core::types::BATCH_MAX;

fn handle_id(h: Handle) -> usize {
    h as usize
}

/// `WinDivertGetLastError`: the calling thread's last error (0 after a success).
#[no_mangle]
pub extern "C" fn WinDivertGetLastError() -> u32 {
    error::last()
}

/// `WinDivertOpen`.
///
/// # Safety
/// `filter` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn WinDivertOpen(
    filter: *const c_char,
    layer: c_int,
    priority: i16,
    flags: u64,
) -> Handle {
    run(INVALID_HANDLE_VALUE, || {
        // SAFETY: `filter` is NULL or a C string by the caller's contract.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        let text = text.to_str().map_err(|_| Fail::param())?;
        let id = divert::open(&OpenArgs {
            filter: text,
            layer: u32::try_from(layer).map_err(|_| Fail::param())?,
            priority: priority.into(),
            flags,
            ifnames: &[],
        })?;
        Ok(id as Handle)
    })
}

fn recv_common(
    h: Handle,
    buf: &mut [u8],
    max: usize,
    timeout: Option<Duration>,
    out: impl FnOnce(usize, &[RawAddress]),
) -> R<()> {
    let e = divert::lookup(handle_id(h))?;
    let r = e.recv(buf, max, timeout)?;
    out(r.len, &r.addrs);
    if r.truncated {
        return Err(Fail::code(ERROR_INSUFFICIENT_BUFFER));
    }
    Ok(())
}

/// `WinDivertRecv`: wait for one packet (or event).
///
/// # Safety
/// `pPacket` is NULL or `packetLen` writable bytes; `pRecvLen` is NULL or a writable
/// `UINT`; `pAddr` is NULL or a writable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertRecv(
    handle: Handle,
    pPacket: *mut c_void,
    packetLen: u32,
    pRecvLen: *mut u32,
    pAddr: *mut RawAddress,
) -> Bool {
    run_bool(|| {
        // SAFETY: `pPacket` is NULL or `packetLen` writable bytes (caller's contract).
        let buf = unsafe { sys::bytes_mut(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        recv_common(handle, buf, 1, None, |len, addrs| {
            // SAFETY: `pRecvLen` is NULL or a writable UINT.
            unsafe { sys::put(pRecvLen, len as u32) };
            // SAFETY: `pAddr` is NULL or a writable WINDIVERT_ADDRESS.
            unsafe { sys::put(pAddr, addrs[0]) };
        })
    })
}

/// `WinDivertRecvEx`: batch receive. `*pAddrLen` is in/out, in bytes (80 per address).
///
/// # Safety
/// As [`WinDivertRecv`]; `pAddrLen` is NULL or a readable/writable `UINT`, and `pAddr` then
/// has room for `*pAddrLen` bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertRecvEx(
    handle: Handle,
    pPacket: *mut c_void,
    packetLen: u32,
    pRecvLen: *mut u32,
    flags: u64,
    pAddr: *mut RawAddress,
    pAddrLen: *mut u32,
    lpOverlapped: *mut c_void,
) -> Bool {
    run_bool(|| {
        if !lpOverlapped.is_null() || flags & !LINDIVERT_RECV_NONBLOCK != 0 {
            return Err(Fail::param());
        }
        // SAFETY: `pAddrLen` is NULL or a readable UINT.
        let max = match unsafe { sys::get(pAddrLen) } {
            None => 1,
            Some(n) => {
                let n = n as usize;
                if pAddr.is_null() || !(ADDR..=BATCH_MAX * ADDR).contains(&n) {
                    return Err(Fail::param());
                }
                n / ADDR
            }
        };
        let timeout = (flags & LINDIVERT_RECV_NONBLOCK != 0).then_some(Duration::ZERO);
        // SAFETY: `pPacket` is NULL or `packetLen` writable bytes.
        let buf = unsafe { sys::bytes_mut(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        recv_common(handle, buf, max, timeout, |len, addrs| {
            // SAFETY: `pRecvLen` is NULL or a writable UINT.
            unsafe { sys::put(pRecvLen, len as u32) };
            // SAFETY: `pAddr` has room for `max` >= addrs.len() addresses (checked above),
            // or is NULL (then nothing is written).
            unsafe { sys::put_array(pAddr, &addrs[..addrs.len().min(max)]) };
            // SAFETY: `pAddrLen` is NULL or a writable UINT.
            unsafe { sys::put(pAddrLen, (addrs.len() * ADDR) as u32) };
        })
    })
}

fn send_common(h: Handle, packets: &[u8], addrs: &[RawAddress], send_len: *mut u32) -> R<()> {
    let e = divert::lookup(handle_id(h))?;
    let n = e.send(packets, addrs)?;
    // SAFETY: `send_len` is NULL or a writable UINT (the entry point's contract).
    unsafe { sys::put(send_len, n as u32) };
    Ok(())
}

/// `WinDivertSend`.
///
/// # Safety
/// `pPacket` is NULL or `packetLen` readable bytes; `pSendLen` NULL or a writable `UINT`;
/// `pAddr` NULL or a readable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertSend(
    handle: Handle,
    pPacket: *const c_void,
    packetLen: u32,
    pSendLen: *mut u32,
    pAddr: *const RawAddress,
) -> Bool {
    run_bool(|| {
        // SAFETY: `pPacket` is NULL or `packetLen` readable bytes.
        let pkt = unsafe { sys::bytes(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        // SAFETY: `pAddr` is NULL or a readable WINDIVERT_ADDRESS.
        let addr = unsafe { sys::get(pAddr) }.ok_or(Fail::param())?;
        send_common(handle, pkt, &[addr], pSendLen)
    })
}

/// `WinDivertSendEx`: batch send, `addrLen` bytes of addresses (80 each).
///
/// # Safety
/// As [`WinDivertSend`]; `pAddr` has `addrLen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertSendEx(
    handle: Handle,
    pPacket: *const c_void,
    packetLen: u32,
    pSendLen: *mut u32,
    flags: u64,
    pAddr: *const RawAddress,
    addrLen: u32,
    lpOverlapped: *mut c_void,
) -> Bool {
    run_bool(|| {
        let n = addrLen as usize;
        if !lpOverlapped.is_null() || flags != 0 || !(ADDR..=BATCH_MAX * ADDR).contains(&n) {
            return Err(Fail::param());
        }
        // SAFETY: `pPacket` is NULL or `packetLen` readable bytes.
        let pkt = unsafe { sys::bytes(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        // SAFETY: `pAddr` is NULL or has `addrLen` bytes, i.e. n / 80 addresses.
        let addrs = unsafe { sys::get_array(pAddr, n / ADDR) }.ok_or(Fail::param())?;
        send_common(handle, pkt, &addrs, pSendLen)
    })
}

/// `WinDivertShutdown`.
#[no_mangle]
pub extern "C" fn WinDivertShutdown(handle: Handle, how: c_int) -> Bool {
    run_bool(|| {
        let e = divert::lookup(handle_id(handle))?;
        e.shutdown(u32::try_from(how).map_err(|_| Fail::param())?)
    })
}

/// `WinDivertClose`: queued packets are re-injected.
#[no_mangle]
pub extern "C" fn WinDivertClose(handle: Handle) -> Bool {
    run_bool(|| divert::close(handle_id(handle)))
}

/// `WinDivertSetParam`.
#[no_mangle]
pub extern "C" fn WinDivertSetParam(handle: Handle, param: c_int, value: u64) -> Bool {
    run_bool(|| {
        let e = divert::lookup(handle_id(handle))?;
        e.set_param(u32::try_from(param).map_err(|_| Fail::param())?, value)
    })
}

/// `WinDivertGetParam`.
///
/// # Safety
/// `pValue` is NULL or a writable `UINT64`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertGetParam(handle: Handle, param: c_int, pValue: *mut u64) -> Bool {
    run_bool(|| {
        let e = divert::lookup(handle_id(handle))?;
        if pValue.is_null() {
            return Err(Fail::param());
        }
        let v = e.get_param(u32::try_from(param).map_err(|_| Fail::param())?)?;
        // SAFETY: `pValue` is a non-null writable UINT64.
        unsafe { sys::put(pValue, v) };
        Ok(())
    })
}

/// `WinDivertGetFd` (Linux): a descriptor that polls readable when a receive may find a
/// packet or event; -1 on error.
#[no_mangle]
pub extern "C" fn WinDivertGetFd(handle: Handle) -> c_int {
    run(-1, || divert::lookup(handle_id(handle))?.event_fd())
}

// ---- helpers ---------------------------------------------------------------------------

/// `WinDivertHelperHashPacket`.
///
/// # Safety
/// `pPacket` is NULL or `packetLen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperHashPacket(
    pPacket: *const c_void,
    packetLen: u32,
    seed: u64,
) -> u64 {
    run(0, || {
        // SAFETY: `pPacket` is NULL or `packetLen` readable bytes.
        let pkt = unsafe { sys::bytes(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        Ok(packet::hash_packet(pkt, seed))
    })
}

/// `WinDivertHelperParsePacket`. Every output is optional.
///
/// # Safety
/// `pPacket` is NULL or `packetLen` readable bytes; every non-NULL output points to a
/// writable object of its type.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperParsePacket(
    pPacket: *const c_void,
    packetLen: u32,
    ppIpHdr: *mut *mut c_void,
    ppIpv6Hdr: *mut *mut c_void,
    pProtocol: *mut u8,
    ppIcmpHdr: *mut *mut c_void,
    ppIcmpv6Hdr: *mut *mut c_void,
    ppTcpHdr: *mut *mut c_void,
    ppUdpHdr: *mut *mut c_void,
    ppData: *mut *mut c_void,
    pDataLen: *mut u32,
    ppNext: *mut *mut c_void,
    pNextLen: *mut u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `pPacket` is NULL or `packetLen` readable bytes.
        let pkt = unsafe { sys::bytes(pPacket, packetLen as usize) }.ok_or(Fail::param());
        let parsed = pkt.as_ref().ok().and_then(|p| helpers::parse_packet(p));
        let p = parsed.unwrap_or_default();
        let base = pPacket as *mut u8;
        // Offsets come from parsing the buffer, so they lie inside it; the pointer is
        // only computed (wrapping_add), never read here.
        let at = |o: Option<usize>| o.map_or(std::ptr::null_mut(), |o| base.wrapping_add(o).cast());
        // SAFETY: each output below is NULL or writable (the caller's contract).
        unsafe {
            sys::put(ppIpHdr, at(p.ipv4));
            sys::put(ppIpv6Hdr, at(p.ipv6));
            sys::put(pProtocol, p.protocol);
            sys::put(ppIcmpHdr, at(p.icmp));
            sys::put(ppIcmpv6Hdr, at(p.icmpv6));
            sys::put(ppTcpHdr, at(p.tcp));
            sys::put(ppUdpHdr, at(p.udp));
            sys::put(ppData, at(p.data.map(|d| d.0)));
            sys::put(pDataLen, p.data.map_or(0, |d| d.1 as u32));
            sys::put(ppNext, at(p.next.map(|d| d.0)));
            sys::put(pNextLen, p.next.map_or(0, |d| d.1 as u32));
        }
        parsed.map(|_| ()).ok_or(Fail::param())
    })
}

/// `WinDivertHelperParseIPv4Address`: result in host byte order.
///
/// # Safety
/// `addrStr` is NULL or a C string; `pAddr` NULL or a writable `UINT32`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperParseIPv4Address(
    addrStr: *const c_char,
    pAddr: *mut u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `addrStr` is NULL or a C string.
        let s = unsafe { sys::cstr(addrStr) }.ok_or(Fail::param())?;
        let a = addr::parse_ipv4(s.to_str().map_err(|_| Fail::param())?).ok_or(Fail::param())?;
        // SAFETY: `pAddr` is NULL or a writable UINT32.
        unsafe { sys::put(pAddr, a) };
        Ok(())
    })
}

/// `WinDivertHelperParseIPv6Address`: result as `UINT32[4]`, `[0]` least significant.
///
/// # Safety
/// `addrStr` is NULL or a C string; `pAddr` NULL or 4 writable `UINT32`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperParseIPv6Address(
    addrStr: *const c_char,
    pAddr: *mut u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `addrStr` is NULL or a C string.
        let s = unsafe { sys::cstr(addrStr) }.ok_or(Fail::param())?;
        let a = addr::parse_ipv6(s.to_str().map_err(|_| Fail::param())?).ok_or(Fail::param())?;
        // SAFETY: `pAddr` is NULL or 4 writable UINT32.
        unsafe { sys::put_array(pAddr, &addr::ipv6_to_words(a)) };
        Ok(())
    })
}

/// `WinDivertHelperFormatIPv4Address`: `addr` in host byte order.
///
/// # Safety
/// `buffer` is NULL or `bufLen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperFormatIPv4Address(
    addr_: u32,
    buffer: *mut c_char,
    bufLen: u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `buffer` is NULL or `bufLen` writable bytes.
        let buf = unsafe { sys::bytes_mut(buffer.cast(), bufLen as usize) };
        let buf = buf.filter(|_| !buffer.is_null()).ok_or(Fail::param())?;
        helpers::copy_out(&addr::format_ipv4(addr_), buf)
    })
}

/// `WinDivertHelperFormatIPv6Address`.
///
/// # Safety
/// `pAddr` is NULL or 4 readable `UINT32`; `buffer` NULL or `bufLen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperFormatIPv6Address(
    pAddr: *const u32,
    buffer: *mut c_char,
    bufLen: u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `pAddr` is NULL or 4 readable UINT32.
        let w = unsafe { sys::get_array(pAddr, 4) }.ok_or(Fail::param())?;
        // SAFETY: `buffer` is NULL or `bufLen` writable bytes.
        let buf = unsafe { sys::bytes_mut(buffer.cast(), bufLen as usize) };
        let buf = buf.filter(|_| !buffer.is_null()).ok_or(Fail::param())?;
        let a = addr::ipv6_from_words([w[0], w[1], w[2], w[3]]);
        helpers::copy_out(&addr::format_ipv6(a), buf)
    })
}

/// `WinDivertHelperCalcChecksums`.
///
/// # Safety
/// `pPacket` is NULL or `packetLen` writable bytes; `pAddr` NULL or a readable/writable
/// `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperCalcChecksums(
    pPacket: *mut c_void,
    packetLen: u32,
    pAddr: *mut RawAddress,
    flags: u64,
) -> Bool {
    run_bool(|| {
        // SAFETY: `pPacket` is NULL or `packetLen` writable bytes.
        let pkt = unsafe { sys::bytes_mut(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        let bits = helpers::calc_checksums(pkt, flags)?;
        // SAFETY: `pAddr` is NULL or a readable WINDIVERT_ADDRESS.
        if let Some(mut a) = unsafe { sys::get(pAddr) } {
            helpers::apply_checksum_bits(&mut a, bits);
            // SAFETY: `pAddr` is non-null and writable.
            unsafe { sys::put(pAddr, a) };
        }
        Ok(())
    })
}

/// `WinDivertHelperDecrementTTL`.
///
/// # Safety
/// `pPacket` is NULL or `packetLen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperDecrementTTL(pPacket: *mut c_void, packetLen: u32) -> Bool {
    run_bool(|| {
        // SAFETY: `pPacket` is NULL or `packetLen` writable bytes.
        let pkt = unsafe { sys::bytes_mut(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        packet::decrement_ttl(pkt)
            .then_some(())
            .ok_or(Fail::param())
    })
}

/// `WinDivertHelperCompileFilter`.
///
/// # Safety
/// `filter` is NULL or a C string; `object` NULL or `objLen` writable bytes; `errorStr`
/// NULL or a writable `const char *`; `errorPos` NULL or a writable `UINT`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperCompileFilter(
    filter: *const c_char,
    layer: c_int,
    object: *mut c_char,
    objLen: u32,
    errorStr: *mut *const c_char,
    errorPos: *mut u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        let report = |msg: &'static std::ffi::CStr, pos: u32| {
            // SAFETY: `errorStr`/`errorPos` are NULL or writable; the message is static.
            unsafe {
                sys::put(errorStr, msg.as_ptr());
                sys::put(errorPos, pos);
            }
        };
        match helpers::compile_object(text, u32::try_from(layer).unwrap_or(u32::MAX)) {
            Err(e) => {
                report(error::kind_message(e.kind), helpers::char_pos(text, &e));
                Err(Fail::param())
            }
            Ok(obj) => {
                report(c"", 0);
                if object.is_null() {
                    return Ok(());
                }
                // SAFETY: `object` is non-null with `objLen` writable bytes.
                let buf = unsafe { sys::bytes_mut(object.cast(), objLen as usize) }
                    .ok_or(Fail::param())?;
                helpers::copy_out(&obj, buf).inspect_err(|_| {
                    report(
                        error::kind_message(lindivert_core::filter::ErrorKind::OutputTooShort),
                        0,
                    )
                })
            }
        }
    })
}

/// `WinDivertHelperEvalFilter`: TRUE = match; FALSE with last error 0 = no match.
///
/// # Safety
/// `filter` NULL or a C string; `pPacket` NULL or `packetLen` readable bytes; `pAddr` NULL
/// or a readable `WINDIVERT_ADDRESS`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperEvalFilter(
    filter: *const c_char,
    pPacket: *const c_void,
    packetLen: u32,
    pAddr: *const RawAddress,
) -> Bool {
    run(FALSE, || {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        // SAFETY: `pPacket` is NULL or `packetLen` readable bytes.
        let pkt = unsafe { sys::bytes(pPacket, packetLen as usize) }.ok_or(Fail::param())?;
        // SAFETY: `pAddr` is NULL or a readable WINDIVERT_ADDRESS.
        let a = unsafe { sys::get(pAddr) }.ok_or(Fail::param())?;
        Ok(if helpers::eval_filter(text, pkt, &a)? {
            TRUE
        } else {
            FALSE
        })
    })
}

/// `WinDivertHelperFormatFilter`.
///
/// # Safety
/// `filter` NULL or a C string; `buffer` NULL or `bufLen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperFormatFilter(
    filter: *const c_char,
    layer: c_int,
    buffer: *mut c_char,
    bufLen: u32,
) -> Bool {
    run_bool(|| {
        // SAFETY: `filter` is NULL or a C string.
        let text = unsafe { sys::cstr(filter) }.ok_or(Fail::param())?;
        let s = helpers::format_filter(text, u32::try_from(layer).unwrap_or(u32::MAX))?;
        // SAFETY: `buffer` is NULL or `bufLen` writable bytes.
        let buf = unsafe { sys::bytes_mut(buffer.cast(), bufLen as usize) };
        let buf = buf.filter(|_| !buffer.is_null()).ok_or(Fail::param())?;
        helpers::copy_out(&s, buf)
    })
}

/// `WinDivertHelperNtohs`.
#[no_mangle]
pub extern "C" fn WinDivertHelperNtohs(x: u16) -> u16 {
    u16::from_be(x)
}
/// `WinDivertHelperHtons`.
#[no_mangle]
pub extern "C" fn WinDivertHelperHtons(x: u16) -> u16 {
    x.to_be()
}
/// `WinDivertHelperNtohl`.
#[no_mangle]
pub extern "C" fn WinDivertHelperNtohl(x: u32) -> u32 {
    u32::from_be(x)
}
/// `WinDivertHelperHtonl`.
#[no_mangle]
pub extern "C" fn WinDivertHelperHtonl(x: u32) -> u32 {
    x.to_be()
}
/// `WinDivertHelperNtohll`.
#[no_mangle]
pub extern "C" fn WinDivertHelperNtohll(x: u64) -> u64 {
    u64::from_be(x)
}
/// `WinDivertHelperHtonll`.
#[no_mangle]
pub extern "C" fn WinDivertHelperHtonll(x: u64) -> u64 {
    x.to_be()
}

/// `WinDivertHelperNtohIPv6Address`.
///
/// # Safety
/// `inAddr` NULL or 4 readable `UINT32`; `outAddr` NULL or 4 writable `UINT32`.
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperNtohIPv6Address(inAddr: *const u32, outAddr: *mut u32) {
    run((), || {
        // SAFETY: `inAddr` is NULL or 4 readable UINT32 and `outAddr` NULL or 4 writable
        // UINT32 (caller's contract); the input is read before the output is written.
        unsafe { sys::map_words4(inAddr, outAddr, addr::ntoh_ipv6_address) }
            .then_some(())
            .ok_or(Fail::param())
    })
}

/// `WinDivertHelperHtonIPv6Address`.
///
/// # Safety
/// As [`WinDivertHelperNtohIPv6Address`].
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperHtonIPv6Address(inAddr: *const u32, outAddr: *mut u32) {
    run((), || {
        // SAFETY: `inAddr` is NULL or 4 readable UINT32 and `outAddr` NULL or 4 writable
        // UINT32 (caller's contract); the input is read before the output is written.
        unsafe { sys::map_words4(inAddr, outAddr, addr::ntoh_ipv6_address) }
            .then_some(())
            .ok_or(Fail::param())
    })
}

/// `WinDivertHelperNtohIpv6Address` (old name).
///
/// # Safety
/// As [`WinDivertHelperNtohIPv6Address`].
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperNtohIpv6Address(inAddr: *const u32, outAddr: *mut u32) {
    run((), || {
        // SAFETY: `inAddr` is NULL or 4 readable UINT32 and `outAddr` NULL or 4 writable
        // UINT32 (caller's contract); the input is read before the output is written.
        unsafe { sys::map_words4(inAddr, outAddr, addr::ntoh_ipv6_address) }
            .then_some(())
            .ok_or(Fail::param())
    })
}

/// `WinDivertHelperHtonIpv6Address` (old name).
///
/// # Safety
/// As [`WinDivertHelperNtohIPv6Address`].
#[no_mangle]
pub unsafe extern "C" fn WinDivertHelperHtonIpv6Address(inAddr: *const u32, outAddr: *mut u32) {
    run((), || {
        // SAFETY: `inAddr` is NULL or 4 readable UINT32 and `outAddr` NULL or 4 writable
        // UINT32 (caller's contract); the input is read before the output is written.
        unsafe { sys::map_words4(inAddr, outAddr, addr::ntoh_ipv6_address) }
            .then_some(())
            .ok_or(Fail::param())
    })
}
