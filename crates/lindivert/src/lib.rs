//! lindivert: WinDivert for Linux.
//!
//! Open a [`Handle`] with a WinDivert filter, layer, priority and flags; packets that match
//! are taken out of the kernel's path (held in an nfnetlink queue) and handed to
//! [`Handle::recv`]; what [`Handle::send`] gives back is re-injected.
//!
//! # Layers
//!
//! * `NETWORK`, `NETWORK_FORWARD`: [`Handle`] ([`OpenOptions`]); an nftables owner table
//!   queues matching packets to an nfnetlink_queue ([`handle`], [`nftables`], [`nfqueue`]);
//! * `FLOW`: [`flow::FlowHandle`] ([`flow::FlowOptions`]); cgroup-v2 eBPF hooks report
//!   connections through a ring buffer;
//! * `SOCKET`: [`socket::SocketHandle`] ([`socket::SocketOptions`]); cgroup-v2 eBPF hooks
//!   report (and, without SNIFF, refuse) socket operations;
//! * `REFLECT`: [`reflect::ReflectHandle`] ([`reflect::ReflectOptions`]); watches the
//!   [`registry`] of open handles.
//!
//! With feature `tokio`, `async_io::Async` wraps any of them: its receives are `async`
//! (a waiting task gives its thread back to the runtime).
//!
//! The filter language, addresses, flags, parameters and packet helpers are the pure
//! [`lindivert_core`] crate (re-exported as [`core`]; the common types also at the top
//! level: [`Address`], [`Flags`], [`Layer`], [`Param`], [`Shutdown`]). Every system call is
//! in [`sys`].
//!
//! # Privileges and namespaces
//!
//! Opening any handle needs `CAP_NET_ADMIN` (FLOW and SOCKET also `CAP_BPF`, or
//! `CAP_SYS_ADMIN` instead of both; they attach to the cgroup-v2 root); a missing
//! capability gives [`Error::PermissionDenied`], a missing kernel feature
//! [`Error::MissingKernelFeature`]. A handle works in the network namespace of the thread
//! that opens it, or in the one named by `netns_path` (`/var/run/netns/NAME`,
//! `/proc/PID/ns/net`). Everything a handle installs in the kernel belongs to its file
//! descriptors: closing it, the process exiting or being killed removes it.
//!
//! # Example
//!
//! Divert outbound TCP to port 80, print each packet's size and re-inject it unchanged
//! (`no_run`: it needs `CAP_NET_ADMIN` and would divert the machine's traffic):
//!
//! ```no_run
//! use lindivert::{Flags, Handle, Layer};
//!
//! fn main() -> Result<(), lindivert::Error> {
//!     let filter = "outbound and tcp.DstPort == 80";
//!     let handle = Handle::open(filter, Layer::Network, 0, Flags::NONE)?;
//!     let mut buf = vec![0u8; 65535];
//!     for _ in 0..10 {
//!         let (len, addr) = handle.recv(&mut buf)?;
//!         println!("{} bytes, outbound={}, if={:?}", len, addr.outbound, addr.network_data());
//!         // Modify `buf[..len]` here if needed; checksums are repaired on send when the
//!         // address's checksum bits are cleared.
//!         handle.send(&buf[..len], &addr)?;
//!     }
//!     handle.close()
//! }
//! ```
//!
//! The same with [`OpenOptions`], in another network namespace and at a higher priority,
//! only copying packets (SNIFF):
//!
//! ```no_run
//! use lindivert::{Flags, OpenOptions};
//!
//! # fn main() -> Result<(), lindivert::Error> {
//! let handle = OpenOptions::new("icmp or icmpv6")
//!     .priority(100)
//!     .flags(Flags::SNIFF)
//!     .netns_path("/var/run/netns/test")
//!     .open()?;
//! let mut buf = [0u8; 1500];
//! let (len, addr) = handle.recv(&mut buf)?;
//! println!("{len} bytes at {} ns", addr.timestamp);
//! handle.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! Without copying: [`Handle::recv_with`] shows up to `max` waiting packets in place and
//! applies the [`Verdict`] returned for each (here: drop inbound TCP resets, pass the rest;
//! busy-poll 50 µs for low latency):
//!
//! ```no_run
//! use lindivert::{OpenOptions, Verdict};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), lindivert::Error> {
//! let handle = OpenOptions::new("inbound and tcp")
//!     .busy_poll(Duration::from_micros(50))
//!     .open()?;
//! loop {
//!     handle.recv_with(64, None, |pkt, _addr| {
//!         let ihl = (pkt[0] & 0x0f) as usize * 4;
//!         let rst = pkt[0] >> 4 == 4 && pkt.get(ihl + 13).is_some_and(|f| f & 0x04 != 0);
//!         if rst { Verdict::Drop } else { Verdict::Accept }
//!     })?;
//! }
//! # }
//! ```
#![warn(missing_docs)]

pub use lindivert_core as core;

#[cfg(feature = "tokio")]
pub mod async_io;

pub mod error;
pub mod filter;
pub mod flow;
pub mod handle;
pub mod nfqueue;
pub mod nftables;
pub mod pkt;
pub mod reflect;
pub mod registry;
pub mod socket;
pub mod sys;
mod wait;

pub use error::Error;
pub use handle::{Handle, OpenOptions, QueueRef, Spread, Stats, Verdict};
pub use lindivert_core::{Address, Flags, Layer, Param, Shutdown};
