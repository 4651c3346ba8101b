//! The only code that talks to the kernel: netlink, bpf(), raw sockets, namespaces.
//! Every `unsafe` block of lindivert lives under this module, each with a `// SAFETY:` note.
pub mod attr;
pub mod bpf;
pub mod cgroup;
pub mod netlink;
pub mod netns;
pub mod nfnl;
pub mod poll;
pub mod process;
pub mod raw;
pub mod ringbuf;
pub mod signal;
pub mod time;
