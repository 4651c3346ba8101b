//! The ICMP (`WINDIVERT_ICMPHDR`, RFC 792) and ICMPv6 (`WINDIVERT_ICMPV6HDR`, RFC 4443)
//! header views. Both are 8 bytes: type, code, checksum and a 32-bit rest-of-header body.

use super::field::{set_u16, set_u32, set_u8, sub, sub_mut, u16_at, u32_at, u8_at, view_basics};
use std::fmt;

macro_rules! icmp_view {
    ($(#[$m:meta])* $name:ident, $field:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<T> {
            buf: T,
        }

        view_basics!($name, LEN = 8, "Length of the header.");

        impl<T: AsRef<[u8]>> $name<T> {
            #[doc = concat!("The message type (`", $field, ".Type`).")]
            #[inline]
            pub fn msg_type(&self) -> u8 {
                u8_at(self.buf.as_ref(), 0)
            }

            #[doc = concat!("The code (`", $field, ".Code`).")]
            #[inline]
            pub fn code(&self) -> u8 {
                u8_at(self.buf.as_ref(), 1)
            }

            #[doc = concat!("The checksum as stored (`", $field, ".Checksum`).")]
            #[inline]
            pub fn checksum(&self) -> u16 {
                u16_at(self.buf.as_ref(), 2)
            }

            #[doc = concat!("The rest-of-header word, bytes 4..8 (`", $field, ".Body`).")]
            #[inline]
            pub fn body(&self) -> u32 {
                u32_at(self.buf.as_ref(), 4)
            }

            /// Echo request/reply: the identifier (bytes 4..6).
            #[inline]
            pub fn echo_ident(&self) -> u16 {
                u16_at(self.buf.as_ref(), 4)
            }

            /// Echo request/reply: the sequence number (bytes 6..8).
            #[inline]
            pub fn echo_seq(&self) -> u16 {
                u16_at(self.buf.as_ref(), 6)
            }

            /// The bytes after the 8-byte header.
            #[inline]
            pub fn payload(&self) -> &[u8] {
                let b = self.buf.as_ref();
                sub(b, Self::LEN, b.len())
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Sets the message type.
            #[inline]
            pub fn set_msg_type(&mut self, v: u8) {
                set_u8(self.buf.as_mut(), 0, v);
            }

            /// Sets the code.
            #[inline]
            pub fn set_code(&mut self, v: u8) {
                set_u8(self.buf.as_mut(), 1, v);
            }

            /// Sets the checksum field.
            #[inline]
            pub fn set_checksum(&mut self, v: u16) {
                set_u16(self.buf.as_mut(), 2, v);
            }

            /// Sets the rest-of-header word.
            #[inline]
            pub fn set_body(&mut self, v: u32) {
                set_u32(self.buf.as_mut(), 4, v);
            }

            /// Sets the echo identifier (bytes 4..6).
            #[inline]
            pub fn set_echo_ident(&mut self, v: u16) {
                set_u16(self.buf.as_mut(), 4, v);
            }

            /// Sets the echo sequence number (bytes 6..8).
            #[inline]
            pub fn set_echo_seq(&mut self, v: u16) {
                set_u16(self.buf.as_mut(), 6, v);
            }

            /// The payload, mutable.
            #[inline]
            pub fn payload_mut(&mut self) -> &mut [u8] {
                let b = self.buf.as_mut();
                let len = b.len();
                sub_mut(b, Self::LEN, len)
            }
        }

        impl<T: AsRef<[u8]>> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("type", &self.msg_type())
                    .field("code", &self.code())
                    .field("checksum", &format_args!("{:#06x}", self.checksum()))
                    .field("body", &format_args!("{:#010x}", self.body()))
                    .finish()
            }
        }
    };
}

icmp_view! {
    /// A zero-copy view of an ICMP (IPv4) header at the start of `T` (at least 8 bytes).
    ///
    /// ```
    /// use lindivert_core::packet::IcmpHeader;
    /// let b = [8u8, 0, 0x3c, 0xd2, 0x0d, 0x56, 0x00, 0x01];
    /// let h = IcmpHeader::new(&b[..]).unwrap();
    /// assert_eq!((h.msg_type(), h.echo_ident(), h.echo_seq()), (8, 0x0d56, 1));
    /// ```
    IcmpHeader, "icmp"
}

icmp_view! {
    /// A zero-copy view of an ICMPv6 header at the start of `T` (at least 8 bytes).
    ///
    /// ```
    /// use lindivert_core::packet::Icmpv6Header;
    /// let b = [129u8, 0, 0x6e, 0xd6, 0x10, 0x72, 0x00, 0x03];
    /// let h = Icmpv6Header::new(&b[..]).unwrap();
    /// assert_eq!((h.msg_type(), h.checksum(), h.body()), (129, 0x6ed6, 0x1072_0003));
    /// ```
    Icmpv6Header, "icmpv6"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct_and_construct() {
        let b = [8u8, 0, 0x3c, 0xd2, 0x0d, 0x56, 0x00, 0x01, 0xAA];
        let h = IcmpHeader::new(&b[..]).unwrap();
        assert_eq!(h.msg_type(), 8);
        assert_eq!(h.code(), 0);
        assert_eq!(h.checksum(), 0x3cd2);
        assert_eq!(h.body(), 0x0d56_0001);
        assert_eq!(h.payload(), &[0xAA]);
        assert!(format!("{h:?}").starts_with("IcmpHeader"));
        assert!(IcmpHeader::new(&b[..7]).is_none());

        let mut c = [0u8; 10];
        let mut h = Icmpv6Header::new(&mut c[..]).unwrap();
        h.set_msg_type(128);
        h.set_code(1);
        h.set_checksum(0xBEEF);
        h.set_body(0x01020304);
        h.set_echo_seq(0x0506);
        h.payload_mut().copy_from_slice(&[9, 9]);
        assert_eq!((h.echo_ident(), h.echo_seq()), (0x0102, 0x0506));
        h.set_echo_ident(0x0708);
        assert_eq!(c, [128, 1, 0xBE, 0xEF, 7, 8, 5, 6, 9, 9]);
        assert!(format!("{:?}", Icmpv6Header::new(&c[..]).unwrap()).contains("0xbeef"));
    }
}
