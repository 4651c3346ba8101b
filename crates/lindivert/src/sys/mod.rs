//! The only code that talks to the kernel: netlink, bpf(), raw sockets, namespaces.
//! Every `unsafe` block of lindivert lives under this module, each with a `// SAFETY:` note.
//!
//! These are thin, safe wrappers for the handles above them (and for the CLI and the C
//! ABI), public so that tools and tests can use them; they follow the kernel's interfaces
//! rather than WinDivert's, and may change between versions. Common contract: every
//! descriptor is an [`OwnedFd`](std::os::fd::OwnedFd) created close-on-exec and closed on
//! drop; system errors are returned as [`std::io::Error`] (netlink requests as
//! [`nfnl::NlError`], `bpf()` as [`bpf::BpfError`]), never panics; interrupted waits
//! (`EINTR`) are retried. Nothing here needs privileges by itself, but most operations
//! (nftables, `bpf()`, cgroup attachment, entering a namespace) fail with `EPERM` without
//! `CAP_NET_ADMIN`/`CAP_BPF`/`CAP_SYS_ADMIN`.
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
