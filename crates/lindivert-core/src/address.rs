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
