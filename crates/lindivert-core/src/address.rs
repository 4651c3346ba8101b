//! The address that comes with every packet or event: the idiomatic [`Address`] and its
//! exact 80-byte `#[repr(C)]` twin [`RawAddress`] (`WINDIVERT_ADDRESS`).

use crate::types::{Event, Flags, Layer};
use std::net::Ipv6Addr;

/// Per-layer data of a NETWORK or NETWORK_FORWARD address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NetworkData {
    /// The interface index (inbound: where it arrived; outbound/forward: where it leaves).
    pub if_idx: u32,
    /// The sub-interface index (0 at NETWORK_FORWARD).
    pub sub_if_idx: u32,
}

/// Per-layer data of a FLOW address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowData {
    /// The endpoint id (a socket cookie on Linux).
    pub endpoint_id: u64,
    /// The parent endpoint id (the listener's for accepted connections).
    pub parent_endpoint_id: u64,
    /// The process that created (outbound) or receives (inbound) the flow.
    pub process_id: u32,
    /// The local address; IPv4 is IPv4-mapped (`::ffff:a.b.c.d`).
    pub local_addr: Ipv6Addr,
    /// The remote address; IPv4 is IPv4-mapped.
    pub remote_addr: Ipv6Addr,
    /// The local port.
    pub local_port: u16,
    /// The remote port.
    pub remote_port: u16,
    /// The IP protocol number.
    pub protocol: u8,
}

impl Default for FlowData {
    fn default() -> Self {
        FlowData {
            endpoint_id: 0,
            parent_endpoint_id: 0,
            process_id: 0,
            local_addr: Ipv6Addr::UNSPECIFIED,
            remote_addr: Ipv6Addr::UNSPECIFIED,
            local_port: 0,
            remote_port: 0,
            protocol: 0,
        }
    }
}

/// Per-layer data of a SOCKET address (the same fields as [`FlowData`]).
pub type SocketData = FlowData;

/// Per-layer data of a REFLECT address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReflectData {
    /// When the reported handle was opened.
    pub timestamp: i64,
    /// The process that opened it.
    pub process_id: u32,
    /// Its layer.
    pub layer: Layer,
    /// Its flags.
    pub flags: Flags,
    /// Its priority.
    pub priority: i16,
}

/// The layer-specific part of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerData {
    /// NETWORK and NETWORK_FORWARD.
    Network(NetworkData),
    /// FLOW.
    Flow(FlowData),
    /// SOCKET.
    Socket(SocketData),
    /// REFLECT.
    Reflect(ReflectData),
}

/// The address of a packet or event (`WINDIVERT_ADDRESS`, in idiomatic form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    /// When the packet or event was captured (nanoseconds, `CLOCK_MONOTONIC` on Linux).
    pub timestamp: i64,
    /// The layer of the handle.
    pub layer: Layer,
    /// The event.
    pub event: Event,
    /// The packet was copied (SNIFF), not diverted.
    pub sniffed: bool,
    /// Outbound (NETWORK: also picks the direction of an injected packet).
    pub outbound: bool,
    /// Loopback traffic.
    pub loopback: bool,
    /// Injected by someone else (send decrements the TTL of impostor packets).
    pub impostor: bool,
    /// The packet is IPv6.
    pub ipv6: bool,
    /// The IPv4 header checksum is valid (send recomputes it when false).
    pub ip_checksum: bool,
    /// The TCP checksum is valid (send recomputes it when false).
    pub tcp_checksum: bool,
    /// The UDP checksum is valid (send recomputes it when false).
    pub udp_checksum: bool,
    /// The layer-specific data.
    pub data: LayerData,
}

impl Address {
    /// A NETWORK-layer address with every flag clear.
    pub fn network(outbound: bool) -> Address {
        Address {
            timestamp: 0,
            layer: Layer::Network,
            event: Event::NetworkPacket,
            sniffed: false,
            outbound,
            loopback: false,
            impostor: false,
            ipv6: false,
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: LayerData::Network(NetworkData::default()),
        }
    }

    /// The NETWORK data, if this is a NETWORK/NETWORK_FORWARD address.
    pub fn network_data(&self) -> Option<&NetworkData> {
        match &self.data {
            LayerData::Network(n) => Some(n),
            _ => None,
        }
    }

    /// The FLOW or SOCKET data, if any.
    pub fn flow_data(&self) -> Option<&FlowData> {
        match &self.data {
            LayerData::Flow(f) | LayerData::Socket(f) => Some(f),
            _ => None,
        }
    }

    /// The REFLECT data, if any.
    pub fn reflect_data(&self) -> Option<&ReflectData> {
        match &self.data {
            LayerData::Reflect(r) => Some(r),
            _ => None,
        }
    }
}

/// The exact 80-byte `WINDIVERT_ADDRESS`, `#[repr(C)]`: the form the C ABI uses.
/// See [`RawAddress`]'s conversions to and from [`Address`].
///
/// ```
/// use lindivert_core::{Address, AddressError, LayerData, NetworkData, RawAddress};
///
/// let mut a = Address::network(true);
/// a.timestamp = 123_456_789;
/// a.data = LayerData::Network(NetworkData { if_idx: 2, sub_if_idx: 0 });
///
/// // Address -> RawAddress -> 80 C bytes -> RawAddress -> Address is the identity.
/// let raw = RawAddress::from(&a);
/// assert_eq!(std::mem::size_of::<RawAddress>(), 80);
/// assert!(raw.outbound() && !raw.sniffed());
/// let bytes: [u8; 80] = raw.to_bytes();
/// let back = Address::try_from(&RawAddress::from_bytes(&bytes)).unwrap();
/// assert_eq!(back, a);
/// assert_eq!(back.network_data().unwrap().if_idx, 2);
///
/// // Not every C address is valid: the layer bits must name a layer.
/// let mut bad = raw;
/// bad.bits = (bad.bits & !0xFF) | 7;
/// assert_eq!(Address::try_from(&bad), Err(AddressError::BadLayer(7)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct RawAddress {
    /// `INT64 Timestamp`.
    pub timestamp: i64,
    /// Bit fields: Layer:8, Event:8, Sniffed:1, Outbound:1, Loopback:1, Impostor:1, IPv6:1,
    /// IPChecksum:1, TCPChecksum:1, UDPChecksum:1, Reserved1:8.
    pub bits: u32,
    /// `Reserved2`.
    pub reserved2: u32,
    /// The per-layer union (`Reserved3[64]`), 8-byte aligned.
    pub union: [u64; 8],
}

/// Why a [`RawAddress`] cannot be converted to an [`Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// The `Layer` bits are not a layer.
    BadLayer(u32),
    /// The `Event` bits are not an event.
    BadEvent(u32),
    /// The event does not belong to the layer.
    EventForLayer(Event, Layer),
    /// REFLECT data names a layer that does not exist.
    BadReflectLayer(u32),
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::BadLayer(l) => write!(f, "invalid layer {l} in address"),
            AddressError::BadEvent(e) => write!(f, "invalid event {e} in address"),
            AddressError::EventForLayer(e, l) => {
                write!(f, "event {e} does not occur at the {l} layer")
            }
            AddressError::BadReflectLayer(l) => {
                write!(f, "invalid layer {l} in REFLECT address data")
            }
        }
    }
}

impl std::error::Error for AddressError {}

const BIT_SNIFFED: u32 = 1 << 16;
const BIT_OUTBOUND: u32 = 1 << 17;
const BIT_LOOPBACK: u32 = 1 << 18;
const BIT_IMPOSTOR: u32 = 1 << 19;
const BIT_IPV6: u32 = 1 << 20;
const BIT_IP_CHECKSUM: u32 = 1 << 21;
const BIT_TCP_CHECKSUM: u32 = 1 << 22;
const BIT_UDP_CHECKSUM: u32 = 1 << 23;

impl Default for RawAddress {
    fn default() -> Self {
        RawAddress::ZERO
    }
}

impl RawAddress {
    /// An all-zero address (NETWORK layer, PACKET event, inbound).
    pub const ZERO: RawAddress = RawAddress {
        timestamp: 0,
        bits: 0,
        reserved2: 0,
        union: [0; 8],
    };

    /// The size of `WINDIVERT_ADDRESS`: 80 bytes.
    pub const SIZE: usize = 80;

    /// The `Layer` bit field.
    pub const fn layer_bits(&self) -> u32 {
        self.bits & 0xFF
    }
    /// The `Event` bit field.
    pub const fn event_bits(&self) -> u32 {
        (self.bits >> 8) & 0xFF
    }
    /// The `Sniffed` bit.
    pub const fn sniffed(&self) -> bool {
        self.bits & BIT_SNIFFED != 0
    }
    /// The `Outbound` bit.
    pub const fn outbound(&self) -> bool {
        self.bits & BIT_OUTBOUND != 0
    }
    /// The `Loopback` bit.
    pub const fn loopback(&self) -> bool {
        self.bits & BIT_LOOPBACK != 0
    }
    /// The `Impostor` bit.
    pub const fn impostor(&self) -> bool {
        self.bits & BIT_IMPOSTOR != 0
    }
    /// The `IPv6` bit.
    pub const fn ipv6(&self) -> bool {
        self.bits & BIT_IPV6 != 0
    }
    /// The `IPChecksum` bit.
    pub const fn ip_checksum(&self) -> bool {
        self.bits & BIT_IP_CHECKSUM != 0
    }
    /// The `TCPChecksum` bit.
    pub const fn tcp_checksum(&self) -> bool {
        self.bits & BIT_TCP_CHECKSUM != 0
    }
    /// The `UDPChecksum` bit.
    pub const fn udp_checksum(&self) -> bool {
        self.bits & BIT_UDP_CHECKSUM != 0
    }

    /// The union as bytes (native byte order, as C sees it).
    pub fn union_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.union.iter()) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// Replace the union from bytes (native byte order).
    pub fn set_union_bytes(&mut self, bytes: &[u8; 64]) {
        for (word, chunk) in self.union.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_ne_bytes(b);
        }
    }

    /// The 80 bytes of the structure, exactly as C lays it out.
    pub fn to_bytes(&self) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[0..8].copy_from_slice(&self.timestamp.to_ne_bytes());
        out[8..12].copy_from_slice(&self.bits.to_ne_bytes());
        out[12..16].copy_from_slice(&self.reserved2.to_ne_bytes());
        out[16..80].copy_from_slice(&self.union_bytes());
        out
    }

    /// The structure from its 80 C bytes.
    pub fn from_bytes(b: &[u8; 80]) -> RawAddress {
        let mut raw = RawAddress {
            timestamp: i64::from_ne_bytes(arr(&b[0..8])),
            bits: u32::from_ne_bytes(arr(&b[8..12])),
            reserved2: u32::from_ne_bytes(arr(&b[12..16])),
            union: [0; 8],
        };
        let mut u = [0u8; 64];
        u.copy_from_slice(&b[16..80]);
        raw.set_union_bytes(&u);
        raw
    }
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

fn addr_to_words(a: Ipv6Addr) -> [u32; 4] {
    let v = u128::from(a);
    [
        v as u32,
        (v >> 32) as u32,
        (v >> 64) as u32,
        (v >> 96) as u32,
    ]
}

fn words_to_addr(w: [u32; 4]) -> Ipv6Addr {
    Ipv6Addr::from(
        (w[0] as u128) | ((w[1] as u128) << 32) | ((w[2] as u128) << 64) | ((w[3] as u128) << 96),
    )
}

impl From<&Address> for RawAddress {
    fn from(a: &Address) -> RawAddress {
        let mut bits = (a.layer as u32) | ((a.event as u32) << 8);
        for (flag, bit) in [
            (a.sniffed, BIT_SNIFFED),
            (a.outbound, BIT_OUTBOUND),
            (a.loopback, BIT_LOOPBACK),
            (a.impostor, BIT_IMPOSTOR),
            (a.ipv6, BIT_IPV6),
            (a.ip_checksum, BIT_IP_CHECKSUM),
            (a.tcp_checksum, BIT_TCP_CHECKSUM),
            (a.udp_checksum, BIT_UDP_CHECKSUM),
        ] {
            if flag {
                bits |= bit;
            }
        }
        let mut u = [0u8; 64];
        match &a.data {
            LayerData::Network(n) => {
                u[0..4].copy_from_slice(&n.if_idx.to_ne_bytes());
                u[4..8].copy_from_slice(&n.sub_if_idx.to_ne_bytes());
            }
            LayerData::Flow(f) | LayerData::Socket(f) => {
                u[0..8].copy_from_slice(&f.endpoint_id.to_ne_bytes());
                u[8..16].copy_from_slice(&f.parent_endpoint_id.to_ne_bytes());
                u[16..20].copy_from_slice(&f.process_id.to_ne_bytes());
                for (i, w) in addr_to_words(f.local_addr).iter().enumerate() {
                    u[20 + 4 * i..24 + 4 * i].copy_from_slice(&w.to_ne_bytes());
                }
                for (i, w) in addr_to_words(f.remote_addr).iter().enumerate() {
                    u[36 + 4 * i..40 + 4 * i].copy_from_slice(&w.to_ne_bytes());
                }
                u[52..54].copy_from_slice(&f.local_port.to_ne_bytes());
                u[54..56].copy_from_slice(&f.remote_port.to_ne_bytes());
                u[56] = f.protocol;
            }
            LayerData::Reflect(r) => {
                u[0..8].copy_from_slice(&r.timestamp.to_ne_bytes());
                u[8..12].copy_from_slice(&r.process_id.to_ne_bytes());
                u[12..16].copy_from_slice(&(r.layer as u32).to_ne_bytes());
                u[16..24].copy_from_slice(&r.flags.bits().to_ne_bytes());
                u[24..26].copy_from_slice(&r.priority.to_ne_bytes());
            }
        }
        let mut raw = RawAddress {
            timestamp: a.timestamp,
            bits,
            reserved2: 0,
            union: [0; 8],
        };
        raw.set_union_bytes(&u);
        raw
    }
}

impl From<Address> for RawAddress {
    fn from(a: Address) -> RawAddress {
        RawAddress::from(&a)
    }
}

impl TryFrom<&RawAddress> for Address {
    type Error = AddressError;

    /// Convert a C address. Reserved fields and union bytes the layer does not use are
    /// ignored; every other bit is kept, so `Address -> RawAddress -> Address` is the
    /// identity and `RawAddress -> Address -> RawAddress` is too for any address whose
    /// reserved and unused bytes are zero (as WinDivert itself produces them).
    fn try_from(r: &RawAddress) -> Result<Address, AddressError> {
        let layer =
            Layer::from_u32(r.layer_bits()).ok_or(AddressError::BadLayer(r.layer_bits()))?;
        let ev = r.event_bits();
        let event = Event::from_u8(ev as u8)
            .filter(|_| ev <= Event::MAX as u32)
            .ok_or(AddressError::BadEvent(ev))?;
        if !event.valid_for(layer) {
            return Err(AddressError::EventForLayer(event, layer));
        }
        let u = r.union_bytes();
        let word = |o: usize| u32::from_ne_bytes(arr(&u[o..o + 4]));
        let data = match layer {
            Layer::Network | Layer::NetworkForward => LayerData::Network(NetworkData {
                if_idx: word(0),
                sub_if_idx: word(4),
            }),
            Layer::Flow | Layer::Socket => {
                let f = FlowData {
                    endpoint_id: u64::from_ne_bytes(arr(&u[0..8])),
                    parent_endpoint_id: u64::from_ne_bytes(arr(&u[8..16])),
                    process_id: word(16),
                    local_addr: words_to_addr([word(20), word(24), word(28), word(32)]),
                    remote_addr: words_to_addr([word(36), word(40), word(44), word(48)]),
                    local_port: u16::from_ne_bytes(arr(&u[52..54])),
                    remote_port: u16::from_ne_bytes(arr(&u[54..56])),
                    protocol: u[56],
                };
                if layer == Layer::Flow {
                    LayerData::Flow(f)
                } else {
                    LayerData::Socket(f)
                }
            }
            Layer::Reflect => {
                let l = word(12);
                LayerData::Reflect(ReflectData {
                    timestamp: i64::from_ne_bytes(arr(&u[0..8])),
                    process_id: word(8),
                    layer: Layer::from_u32(l).ok_or(AddressError::BadReflectLayer(l))?,
                    flags: Flags::from_bits_retain(u64::from_ne_bytes(arr(&u[16..24]))),
                    priority: i16::from_ne_bytes(arr(&u[24..26])),
                })
            }
        };
        Ok(Address {
            timestamp: r.timestamp,
            layer,
            event,
            sniffed: r.sniffed(),
            outbound: r.outbound(),
            loopback: r.loopback(),
            impostor: r.impostor(),
            ipv6: r.ipv6(),
            ip_checksum: r.ip_checksum(),
            tcp_checksum: r.tcp_checksum(),
            udp_checksum: r.udp_checksum(),
            data,
        })
    }
}

impl TryFrom<RawAddress> for Address {
    type Error = AddressError;
    fn try_from(r: RawAddress) -> Result<Address, AddressError> {
        Address::try_from(&r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_windivert() {
        assert_eq!(std::mem::size_of::<RawAddress>(), 80);
        assert_eq!(std::mem::align_of::<RawAddress>(), 8);
        assert_eq!(std::mem::offset_of!(RawAddress, timestamp), 0);
        assert_eq!(std::mem::offset_of!(RawAddress, bits), 8);
        assert_eq!(std::mem::offset_of!(RawAddress, reserved2), 12);
        // WinDivert's own self-check: offsetof(ADDRESS, Reserved3) == 16.
        assert_eq!(std::mem::offset_of!(RawAddress, union), 16);
    }

    #[test]
    fn bit_fields_at_windivert_positions() {
        let mut a = Address::network(true);
        a.layer = Layer::NetworkForward;
        a.ipv6 = true;
        a.udp_checksum = true;
        let raw = RawAddress::from(&a);
        assert_eq!(raw.bits, 1 | (1 << 17) | (1 << 20) | (1 << 23));
        let b = raw.to_bytes();
        assert_eq!(b[8], 1); // Layer
        assert_eq!(b[9], 0); // Event
                             // Byte 10 holds bits 16..23: Outbound (17), IPv6 (20), UDPChecksum (23).
        assert_eq!(b[10], 0b1001_0010);
        assert_eq!(b[11], 0); // Reserved1
    }

    #[test]
    fn flow_union_offsets() {
        let f = FlowData {
            endpoint_id: 0x1122334455667788,
            parent_endpoint_id: 0x99,
            process_id: 4242,
            local_addr: "::ffff:10.0.0.1".parse().unwrap(),
            remote_addr: "2001:db8::1".parse().unwrap(),
            local_port: 80,
            remote_port: 0xBEEF,
            protocol: 6,
        };
        let a = Address {
            timestamp: -5,
            layer: Layer::Flow,
            event: Event::FlowEstablished,
            sniffed: true,
            outbound: true,
            loopback: false,
            impostor: false,
            ipv6: false,
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: LayerData::Flow(f),
        };
        let b = RawAddress::from(&a).to_bytes();
        // Offsets inside WINDIVERT_ADDRESS: EndpointId 16, ParentEndpointId 24, ProcessId 32,
        // LocalAddr 36, RemoteAddr 52, LocalPort 68, RemotePort 70, Protocol 72
        // (WinDivert checks offsetof(FLOW, Protocol) == 56 within the union).
        assert_eq!(&b[16..24], &0x1122334455667788u64.to_ne_bytes());
        assert_eq!(&b[32..36], &4242u32.to_ne_bytes());
        assert_eq!(&b[36..40], &0x0A000001u32.to_ne_bytes()); // LocalAddr[0]: a.b.c.d
        assert_eq!(&b[40..44], &0xFFFFu32.to_ne_bytes()); // LocalAddr[1]: 0x0000FFFF
        assert_eq!(&b[64..68], &0x20010db8u32.to_ne_bytes()); // RemoteAddr[3]: most significant
        assert_eq!(&b[68..70], &80u16.to_ne_bytes());
        assert_eq!(&b[70..72], &0xBEEFu16.to_ne_bytes());
        assert_eq!(b[72], 6);
        let back = Address::try_from(&RawAddress::from_bytes(&b)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn reflect_union_offsets() {
        let a = Address {
            timestamp: 7,
            layer: Layer::Reflect,
            event: Event::ReflectOpen,
            sniffed: true,
            outbound: false,
            loopback: false,
            impostor: false,
            ipv6: false,
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: LayerData::Reflect(ReflectData {
                timestamp: 123,
                process_id: 77,
                layer: Layer::Socket,
                flags: Flags::SNIFF | Flags::RECV_ONLY,
                priority: -300,
            }),
        };
        let b = RawAddress::from(&a).to_bytes();
        assert_eq!(&b[16..24], &123i64.to_ne_bytes());
        assert_eq!(&b[24..28], &77u32.to_ne_bytes());
        assert_eq!(&b[28..32], &3u32.to_ne_bytes());
        assert_eq!(&b[32..40], &5u64.to_ne_bytes());
        // WinDivert checks offsetof(REFLECT, Priority) == 24 within the union.
        assert_eq!(&b[40..42], &(-300i16).to_ne_bytes());
        assert_eq!(Address::try_from(&RawAddress::from_bytes(&b)).unwrap(), a);
    }

    #[test]
    fn invalid_raw_addresses_are_refused() {
        let mut r = RawAddress::ZERO;
        r.bits = 5;
        assert_eq!(Address::try_from(&r), Err(AddressError::BadLayer(5)));
        r.bits = 10 << 8;
        assert_eq!(Address::try_from(&r), Err(AddressError::BadEvent(10)));
        r.bits = 3 << 8; // NETWORK + SOCKET_BIND
        assert!(matches!(
            Address::try_from(&r),
            Err(AddressError::EventForLayer(..))
        ));
    }

    fn arb_address() -> impl Strategy<Value = Address> {
        let flow = (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(e, p, pid, l, r, lp, rp, pr)| FlowData {
                endpoint_id: e,
                parent_endpoint_id: p,
                process_id: pid,
                local_addr: Ipv6Addr::from(l),
                remote_addr: Ipv6Addr::from(r),
                local_port: lp,
                remote_port: rp,
                protocol: pr,
            });
        let data = prop_oneof![
            (any::<bool>(), any::<u32>(), any::<u32>()).prop_map(|(fwd, i, s)| (
                if fwd {
                    Layer::NetworkForward
                } else {
                    Layer::Network
                },
                Event::NetworkPacket,
                LayerData::Network(NetworkData {
                    if_idx: i,
                    sub_if_idx: s
                })
            )),
            (flow.clone(), any::<bool>()).prop_map(|(f, d)| (
                Layer::Flow,
                if d {
                    Event::FlowDeleted
                } else {
                    Event::FlowEstablished
                },
                LayerData::Flow(f)
            )),
            (flow, 3u8..=7).prop_map(|(f, e)| (
                Layer::Socket,
                Event::from_u8(e).unwrap(),
                LayerData::Socket(f)
            )),
            (
                any::<i64>(),
                any::<u32>(),
                0u32..5,
                0u64..0x40,
                -30000i16..=30000,
                any::<bool>()
            )
                .prop_map(|(t, pid, l, fl, pr, o)| (
                    Layer::Reflect,
                    if o {
                        Event::ReflectOpen
                    } else {
                        Event::ReflectClose
                    },
                    LayerData::Reflect(ReflectData {
                        timestamp: t,
                        process_id: pid,
                        layer: Layer::from_u32(l).unwrap(),
                        flags: Flags::from_bits_retain(fl),
                        priority: pr,
                    })
                )),
        ];
        (data, any::<i64>(), any::<[bool; 8]>()).prop_map(|((layer, event, data), ts, b)| Address {
            timestamp: ts,
            layer,
            event,
            sniffed: b[0],
            outbound: b[1],
            loopback: b[2],
            impostor: b[3],
            ipv6: b[4],
            ip_checksum: b[5],
            tcp_checksum: b[6],
            udp_checksum: b[7],
            data,
        })
    }

    proptest! {
        #[test]
        fn address_round_trips(a in arb_address()) {
            let raw = RawAddress::from(&a);
            let bytes = raw.to_bytes();
            let raw2 = RawAddress::from_bytes(&bytes);
            prop_assert_eq!(raw, raw2);
            prop_assert_eq!(Address::try_from(&raw2).unwrap(), a);
            // And raw -> Address -> raw is the identity on what WinDivert produces.
            prop_assert_eq!(RawAddress::from(&Address::try_from(&raw).unwrap()), raw);
        }

        #[test]
        fn arbitrary_raw_never_panics(b in proptest::array::uniform32(any::<u8>()), c in proptest::array::uniform32(any::<u8>()), d in proptest::array::uniform16(any::<u8>())) {
            let mut all = [0u8; 80];
            all[..32].copy_from_slice(&b);
            all[32..64].copy_from_slice(&c);
            all[64..].copy_from_slice(&d);
            let raw = RawAddress::from_bytes(&all);
            prop_assert_eq!(raw.to_bytes(), all);
            let _ = Address::try_from(&raw);
        }
    }
}
