//! The crate's raw-pointer helpers. Every function that touches memory it is handed by C is
//! `unsafe` and states the caller's obligations; the entry points call them inside
//! `unsafe` blocks with a `// SAFETY:` comment. Nothing else in the crate uses `unsafe`.

use std::ffi::{c_char, c_void, CStr};

/// A byte slice from a C pointer and length. A NULL pointer is accepted only with length 0
/// (giving an empty slice); NULL with a length gives `None`.
///
/// # Safety
/// If `p` is not NULL it must point to `len` readable bytes that stay valid and are not
/// written by anyone else for `'a`.
pub unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return (len == 0).then_some(&[][..]);
    }
    // SAFETY: non-null and, by the caller's contract, valid for `len` bytes for `'a`.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// A mutable byte slice from a C pointer and length (see [`bytes`]).
///
/// # Safety
/// If `p` is not NULL it must point to `len` writable bytes that nobody else accesses for
/// `'a`.
pub unsafe fn bytes_mut<'a>(p: *mut c_void, len: usize) -> Option<&'a mut [u8]> {
    if p.is_null() {
        return (len == 0).then_some(&mut [][..]);
    }
    // SAFETY: non-null and, by the caller's contract, valid and exclusive for `len` bytes.
    Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// A NUL-terminated C string, `None` for NULL.
///
/// # Safety
/// If `p` is not NULL it must point to a NUL-terminated string valid for `'a`.
pub unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a CStr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    Some(unsafe { CStr::from_ptr(p) })
}

/// Store `v` at `p` unless `p` is NULL (an optional output). Returns whether it stored.
///
/// # Safety
/// If `p` is not NULL it must be valid for writing a `T` (any alignment).
pub unsafe fn put<T>(p: *mut T, v: T) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: non-null and writable by the caller's contract; unaligned write allowed.
    unsafe { p.write_unaligned(v) };
    true
}

/// Read a `T` from `p`, `None` for NULL.
///
/// # Safety
/// If `p` is not NULL it must be valid for reading a `T` (any alignment) holding a valid
/// value of `T` (every type used here is plain old data).
pub unsafe fn get<T: Copy>(p: *const T) -> Option<T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and readable by the caller's contract; unaligned read allowed.
    Some(unsafe { p.read_unaligned() })
}

/// An array of `n` `T`s, `None` for NULL.
///
/// # Safety
/// If `p` is not NULL it must point to `n` readable `T` (any alignment: the values are
/// copied out).
pub unsafe fn get_array<T: Copy>(p: *const T, n: usize) -> Option<Vec<T>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: each of the `n` elements is readable by the caller's contract.
    Some(
        (0..n)
            .map(|i| unsafe { p.add(i).read_unaligned() })
            .collect(),
    )
}

/// Store `values` into the array at `p` (as many as given), `false` for NULL.
///
/// # Safety
/// If `p` is not NULL it must be valid for writing `values.len()` `T` (any alignment).
pub unsafe fn put_array<T: Copy>(p: *mut T, values: &[T]) -> bool {
    if p.is_null() {
        return false;
    }
    for (i, v) in values.iter().enumerate() {
        // SAFETY: element `i` < `values.len()` is writable by the caller's contract.
        unsafe { p.add(i).write_unaligned(*v) };
    }
    true
}

/// A NULL-terminated array of C strings (`char **`), `None` for NULL. At most `max` entries
/// are read.
///
/// # Safety
/// If `p` is not NULL it must point to an array of pointers ending with NULL (or at least
/// `max` entries), each a valid NUL-terminated string.
pub unsafe fn cstr_list(p: *const *const c_char, max: usize) -> Option<Vec<String>> {
    if p.is_null() {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..max {
        // SAFETY: the array is readable up to its NULL terminator by the caller's contract.
        let s = unsafe { p.add(i).read_unaligned() };
        // SAFETY: a non-null entry is a valid C string by the caller's contract.
        match unsafe { cstr(s) } {
            Some(c) => out.push(c.to_string_lossy().into_owned()),
            None => break,
        }
    }
    Some(out)
}

/// Set the calling thread's `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns the calling thread's valid, aligned errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// The interface index of `name` (0 if there is none).
pub fn if_index(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Read 4 words from `input`, store `f(words)` at `output` (in-place use allowed). `false`
/// if either is NULL.
///
/// # Safety
/// `input` is NULL or 4 readable `u32`; `output` NULL or 4 writable `u32`.
pub unsafe fn map_words4(input: *const u32, output: *mut u32, f: fn([u32; 4]) -> [u32; 4]) -> bool {
    if output.is_null() {
        return false;
    }
    // SAFETY: `input` is NULL or 4 readable u32 (caller's contract); read before writing.
    let Some(w) = (unsafe { get_array(input, 4) }) else {
        return false;
    };
    // SAFETY: `output` is non-null with 4 writable u32 (caller's contract).
    unsafe { put_array(output, &f([w[0], w[1], w[2], w[3]])) }
}
