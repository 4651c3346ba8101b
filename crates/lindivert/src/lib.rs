//! lindivert: WinDivert for Linux.
//!
//! Open a [`Handle`] with a WinDivert filter, layer, priority and flags; packets that match
//! are taken out of the kernel's path (held in an nfnetlink queue) and handed to
//! [`Handle::recv`]; what [`Handle::send`] gives back is re-injected.
pub use lindivert_core as core;

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

pub use error::Error;
pub use handle::{Handle, OpenOptions, QueueRef, Stats};
pub use lindivert_core::{Address, Flags, Layer, Param, Shutdown};
