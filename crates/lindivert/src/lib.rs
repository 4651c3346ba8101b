//! lindivert: WinDivert for Linux.
pub use lindivert_core as core;
