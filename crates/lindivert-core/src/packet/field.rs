//! Bounds-checked big-endian field access shared by the header views and the parser.
//!
//! Reads out of range give 0 and writes out of range are ignored. The views check their
//! minimum length at construction, so in practice these never hit the fallback; they exist
//! so that no input (not even a pathological `AsRef` implementation) can cause a panic.

#[inline(always)]
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..).and_then(|s| s.first_chunk::<2>()) {
        Some(a) => u16::from_be_bytes(*a),
        None => 0,
    }
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..).and_then(|s| s.first_chunk::<4>()) {
        Some(a) => u32::from_be_bytes(*a),
        None => 0,
    }
}

#[inline(always)]
pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    match b.get(off..).and_then(|s| s.first_chunk::<N>()) {
        Some(a) => *a,
        None => [0; N],
    }
}

#[inline(always)]
pub(crate) fn set_u8(b: &mut [u8], off: usize, v: u8) {
    if let Some(x) = b.get_mut(off) {
        *x = v;
    }
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
    set_bytes(b, off, &v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
    set_bytes(b, off, &v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_bytes(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = off.checked_add(v.len()).and_then(|end| b.get_mut(off..end)) {
        dst.copy_from_slice(v);
    }
}

/// `b[from..to]`, or an empty slice when out of range.
#[inline(always)]
pub(crate) fn sub(b: &[u8], from: usize, to: usize) -> &[u8] {
    b.get(from..to).unwrap_or(&[])
}

/// `b[from..]`, or an empty slice when out of range.
#[inline(always)]
pub(crate) fn tail(b: &[u8], from: usize) -> &[u8] {
    b.get(from..).unwrap_or(&[])
}

/// Mutable `b[from..to]`, or an empty slice when out of range.
#[inline(always)]
pub(crate) fn sub_mut(b: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    b.get_mut(from..to).unwrap_or_default()
}

/// Sets or clears `mask` in the byte at `off`.
#[inline(always)]
pub(crate) fn set_bit(b: &mut [u8], off: usize, mask: u8, on: bool) {
    let v = u8_at(b, off);
    set_u8(b, off, if on { v | mask } else { v & !mask });
}

/// The basics every fixed-size header view has: its length constant, `new` (refuses a
/// shorter buffer), `into_inner`, `as_bytes` and `as_bytes_mut`. The view is a struct with
/// one field `buf: T`.
macro_rules! view_basics {
    ($name:ident, $len:ident = $n:literal, $len_doc:literal) => {
        impl<T: AsRef<[u8]>> $name<T> {
            #[doc = $len_doc]
            pub const $len: usize = $n;

            #[doc = concat!("A view over `buf`, or `None` if it is shorter than ", stringify!($n), " bytes.")]
            #[inline]
            pub fn new(buf: T) -> Option<Self> {
                (buf.as_ref().len() >= Self::$len).then_some($name { buf })
            }

            /// The underlying buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buf
            }

            /// The whole underlying buffer (header and whatever follows it).
            #[inline]
            pub fn as_bytes(&self) -> &[u8] {
                self.buf.as_ref()
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// The whole underlying buffer, mutable.
            #[inline]
            pub fn as_bytes_mut(&mut self) -> &mut [u8] {
                self.buf.as_mut()
            }
        }
    };
}
pub(crate) use view_basics;
