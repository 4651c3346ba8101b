//! The pure core of lindivert: everything WinDivert does without a kernel.
//!
//! * [`types`]: layers, events, open flags, parameters and priorities, with WinDivert 2.2's
//!   values, defaults and bounds;
//! * [`address`]: the idiomatic [`Address`] and its exact 80-byte `#[repr(C)]` twin
//!   [`RawAddress`] (`WINDIVERT_ADDRESS`);
//! * [`packet`]: zero-copy IPv4/IPv6/TCP/UDP/ICMP/ICMPv6 views, the packet parser,
//!   checksums, TTL decrement, packet hash and IP address text helpers;
//! * [`filter`]: the complete WinDivert filter language: tokens → AST → check → IR
//!   (the WinDivert filter object) → optimiser → back ends (evaluator, `@WinDiv_…` object
//!   text, formatter).
//!
//! This crate performs no system calls and contains no `unsafe` code, so all of it is tested
//! quickly without privileges.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod filter;
pub mod packet;
pub mod types;

pub use address::{
    Address, AddressError, FlowData, LayerData, NetworkData, RawAddress, ReflectData, SocketData,
};
pub use types::{Event, Flags, Layer, Param, Priority, Shutdown};
