//! The WinDivert filter language.
//!
//! Pipeline: text → [`lexer`] tokens (with byte positions) → [`parser`] AST →
//! check (fields and macros valid for the layer, ranges, indexes) → [`ir`] object (at most
//! 256 tests, a forward-only decision DAG) → optimiser → back ends:
//! * [`eval`]: the evaluator over a parsed packet and an [`crate::Address`];
//! * [`object`]: the `@WinDiv_…` object text, both directions (WinDivert 2.2 compatible);
//! * [`format`](mod@format): decompiles an object to readable filter text.
//!
//! Deliberate differences from WinDivert 2.2.2 are listed in `docs/DIFFERENCES.md`.

pub mod compile;
pub mod ebpf;
pub mod ebpf_flow;
pub mod ebpf_sock;
pub mod error;
pub mod eval;
pub mod fields;
pub mod format;
pub mod ir;
pub mod lexer;
pub mod object;
pub mod parser;

pub use error::{ErrorKind, FilterError};
pub use fields::Field;
pub use ir::{Jump, Object, Op, Test, Value};

pub use compile::{analyze, FilterFlags};
pub use eval::EvalError;

use crate::address::Address;
use crate::packet::ParsedPacket;
use crate::types::Layer;
use std::sync::OnceLock;

/// A compiled filter for one layer: its WinDivert object, its filter flags and a
/// precomputed evaluation program.
///
/// ```
/// use lindivert_core::filter::Filter;
/// use lindivert_core::{Address, Layer};
///
/// let f = Filter::compile("tcp.DstPort == 80 and outbound", Layer::Network).unwrap();
/// assert_eq!(f.object().tests.len(), 2);
/// let err = Filter::compile("tcp.Dstport == 80", Layer::Network).unwrap_err();
/// assert_eq!(err.pos, 0);
/// ```
#[derive(Debug, Clone)]
pub struct Filter {
    layer: Layer,
    object: Object,
    /// Computed on the first [`Filter::flags`] call.
    flags: OnceLock<FilterFlags>,
    program: eval::Program,
}

// A filter is shared between threads and cloned (the flags are computed once, lazily).
const _: () = {
    const fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Filter>()
};

fn is_filter_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

impl Filter {
    /// Compile filter text for `layer`. Text that starts with `@` (after leading
    /// whitespace) is a `@WinDiv_…` object string: it is decoded and validated as
    /// [`Filter::from_object`] does.
    ///
    /// The object can be written as WinDivert's object string ([`object::encode`], what
    /// `WinDivertHelperCompileFilter` returns) and decompiled to readable text
    /// ([`format::format`], `WinDivertHelperFormatFilter`); both compile back to the same
    /// object.
    ///
    /// ```
    /// use lindivert_core::filter::{format::format, object::encode, ErrorKind, Filter};
    /// use lindivert_core::Layer;
    ///
    /// let f = Filter::compile("outbound and tcp.DstPort == 80", Layer::Network).unwrap();
    ///
    /// let text = encode(f.object());
    /// assert_eq!(text, "@WinDiv_WY_YXWWLXX_1dWW2mAX");
    /// let g = Filter::compile(&text, Layer::Network).unwrap();
    /// assert_eq!(g.object(), f.object());
    ///
    /// let readable = format(f.object(), Layer::Network);
    /// assert_eq!(readable, "outbound and tcp.DstPort = 80");
    /// assert_eq!(Filter::compile(&readable, Layer::Network).unwrap().object(), f.object());
    ///
    /// // Errors carry the byte position.
    /// let err = Filter::compile("tcp.DstPort == 80 and", Layer::Network).unwrap_err();
    /// assert_eq!((err.kind, err.pos), (ErrorKind::UnexpectedToken, 21));
    /// // A field that does not exist at the layer.
    /// assert!(Filter::compile("tcp.DstPort == 80", Layer::Reflect).is_err());
    /// ```
    pub fn compile(text: &str, layer: Layer) -> Result<Filter, FilterError> {
        let trimmed = text.trim_start_matches(is_filter_space);
        if trimmed.starts_with('@') {
            let skipped = text.len() - trimmed.len();
            let obj = object::decode(trimmed, layer).map_err(|mut e| {
                e.pos += skipped;
                e
            })?;
            return Filter::from_object(obj, layer);
        }
        let obj = compile::compile_text(text, layer)?;
        Ok(Filter::build(obj, layer))
    }

    /// A filter from an object that comes from outside (decoded object text, a C caller),
    /// after WinDivert's driver checks ([`compile::validate_object`]); errors are
    /// [`ErrorKind::BadObject`].
    pub fn from_object(object: Object, layer: Layer) -> Result<Filter, FilterError> {
        compile::validate_object(&object, layer)?;
        Ok(Filter::build(object, layer))
    }

    fn build(object: Object, layer: Layer) -> Filter {
        let program = eval::Program::optimized(&object, layer);
        Filter {
            layer,
            object,
            flags: OnceLock::new(),
            program,
        }
    }

    /// The WinDivert filter object (the same tests WinDivert 2.2 emits for this text,
    /// except where WinDivert's simplifier is wrong; see [`compile`]).
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The object, by value.
    pub fn into_object(self) -> Object {
        self.object
    }

    /// The layer the filter was compiled for.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// What the filter can match (which hooks a handle needs); see [`analyze`].
    pub fn flags(&self) -> FilterFlags {
        *self
            .flags
            .get_or_init(|| compile::analyze(&self.object, self.layer))
    }

    /// `Some(result)` when every path through the object ends the same way (`true`,
    /// `false`, `(tcp? true: true)`); tautologies such as `tcp or not tcp` are not detected.
    pub fn constant(&self) -> Option<bool> {
        self.object.constant_result()
    }

    /// Evaluate on a parsed packet and its address (NETWORK and NETWORK_FORWARD).
    /// `addr.layer` is not checked; the filter's layer decides the meaning of each field.
    #[inline]
    pub fn matches(&self, pkt: &ParsedPacket<'_>, addr: &Address) -> bool {
        self.program.run(Some(pkt), addr)
    }

    /// Evaluate on an event that has no packet (FLOW, SOCKET, REFLECT). Tests on packet
    /// fields are false.
    #[inline]
    pub fn matches_event(&self, addr: &Address) -> bool {
        self.program.run(None, addr)
    }

    /// Evaluate like `WinDivertHelperEvalFilter`: `addr.layer` must be the filter's layer;
    /// at NETWORK/NETWORK_FORWARD the bytes must parse and `addr.ipv6` must agree with the
    /// IP version; at FLOW and SOCKET `bytes` must be empty; at REFLECT they are ignored.
    pub fn matches_packet(&self, bytes: &[u8], addr: &Address) -> Result<bool, EvalError> {
        if addr.layer != self.layer {
            return Err(EvalError::LayerMismatch {
                filter: self.layer,
                address: addr.layer,
            });
        }
        match self.layer {
            Layer::Network | Layer::NetworkForward => {
                let mut pkt = crate::packet::parse_lenient(bytes).ok_or(EvalError::BadPacket)?;
                // Like WinDivertHelperEvalFilter: `length` and the `packet[]` region cover
                // the whole buffer given, even past the IP length.
                if pkt.bytes.len() < bytes.len() {
                    pkt.bytes = bytes;
                    pkt.next = &[];
                }
                if (pkt.version == 6) != addr.ipv6 {
                    return Err(EvalError::VersionMismatch {
                        packet: pkt.version,
                        address_ipv6: addr.ipv6,
                    });
                }
                Ok(self.matches(&pkt, addr))
            }
            Layer::Flow | Layer::Socket if !bytes.is_empty() => Err(EvalError::UnexpectedPacket),
            _ => Ok(self.matches_event(addr)),
        }
    }
}
