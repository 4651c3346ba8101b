//! Receiving from tokio tasks (feature `tokio`).
//!
//! [`Async`] wraps any lindivert handle (NETWORK [`Handle`] and its [`QueueRef`]s, FLOW,
//! SOCKET, REFLECT) and registers its pollable descriptor with the tokio reactor of the
//! runtime it is created in. Its `recv` methods are `async`: a task that waits for a packet
//! or an event gives its thread back to the runtime instead of blocking it. Everything else
//! (`send`, `shutdown`, `set_param`, `stats`, ...) is the wrapped handle's own method,
//! reached through `Deref`; none of them waits for the network (a `send` is one system
//! call), so they need no `async` form.
//!
//! How a receive works: wait until the descriptor is readable, then try the handle's
//! receive with a zero timeout; if another task (or a thread) took what was there, or the
//! wake-up was for internal work (the FLOW layer's UDP expiry scan, the REFLECT re-list),
//! wait again. After [`Shutdown::Recv`](crate::Shutdown::Recv) the descriptor stays
//! readable, so a waiting receive returns what is left and then [`Error::NoData`], as the
//! blocking one does.
//!
//! Cancel-safe: dropping a `recv` future before it completes loses nothing (a packet is
//! taken out of the handle only by the receive that returns it).
//!
//! ```no_run
//! use lindivert::async_io::Async;
//! use lindivert::{Flags, Handle, Layer};
//!
//! # async fn run() -> Result<(), lindivert::Error> {
//! let handle = Async::new(Handle::open("udp.DstPort == 53", Layer::Network, 0, Flags::NONE)?)?;
//! let mut buf = vec![0u8; 65535];
//! loop {
//!     let (len, addr) = handle.recv(&mut buf).await?;
//!     // ... look at or change buf[..len] ...
//!     handle.send(&buf[..len], &addr)?; // Handle::send, through Deref
//! }
//! # }
//! ```

use crate::flow::FlowHandle;
use crate::reflect::ReflectHandle;
use crate::socket::SocketHandle;
use crate::sys::poll::register_tokio;
use crate::{Address, Error, Handle, QueueRef, Verdict};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// "Do not wait": the timeout of every receive attempt.
const NOW: Option<Duration> = Some(Duration::ZERO);

/// The handles [`Async`] can wrap: [`Handle`], [`QueueRef`], [`FlowHandle`],
/// [`SocketHandle`], [`ReflectHandle`] (sealed: their descriptor is an epoll set they own,
/// the same for their whole life, which registering with the reactor relies on).
pub trait Pollable: AsRawFd + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

impl sealed::Sealed for Handle {}
impl sealed::Sealed for QueueRef<'_> {}
impl sealed::Sealed for FlowHandle {}
impl sealed::Sealed for SocketHandle {}
impl sealed::Sealed for ReflectHandle {}

impl Pollable for Handle {}
impl Pollable for QueueRef<'_> {}
impl Pollable for FlowHandle {}
impl Pollable for SocketHandle {}
impl Pollable for ReflectHandle {}

/// A handle whose receives are `async` (see the [module documentation](self)).
#[derive(Debug)]
pub struct Async<H: Pollable> {
    fd: AsyncFd<H>,
}

impl<H: Pollable> Async<H> {
    /// Register `handle` with the current tokio runtime's reactor. Fails (with
    /// [`Error::Io`]) outside a tokio runtime or if the descriptor cannot be registered;
    /// panics, as every tokio I/O type does, in a runtime built without its I/O driver
    /// (`enable_io`).
    pub fn new(handle: H) -> Result<Self, Error> {
        register_tokio(handle)
            .map(|fd| Async { fd })
            .map_err(Error::Io)
    }

    /// The wrapped handle.
    pub fn get_ref(&self) -> &H {
        self.fd.get_ref()
    }

    /// Unregister from the reactor and give the handle back.
    pub fn into_inner(self) -> H {
        self.fd.into_inner()
    }

    /// Try `attempt` (a receive with a zero timeout) whenever the descriptor is readable,
    /// until it gives anything but [`Error::Timeout`].
    ///
    /// `mark` gives what is held while waiting: for NETWORK, a `handle::WaitMark` (the handle's
    /// worker then treats the queues as having a receiver, as for a thread blocked in
    /// `recv`; it ends with the wait, also when this future is dropped).
    async fn when_ready<M, T>(
        &self,
        mark: impl Fn(&H) -> M,
        mut attempt: impl FnMut(&H) -> Result<T, Error>,
    ) -> Result<T, Error> {
        loop {
            let mut ready = {
                let _waiting = mark(self.fd.get_ref());
                self.fd.readable().await.map_err(Error::Io)?
            };
            match attempt(self.fd.get_ref()) {
                // readiness that arrives after this point is kept by tokio (`clear_ready`
                // forgets only the readiness this guard saw)
                Err(Error::Timeout) => ready.clear_ready(),
                r => return r,
            }
        }
    }
}

impl<H: Pollable> Deref for Async<H> {
    type Target = H;

    fn deref(&self) -> &H {
        self.fd.get_ref()
    }
}

/// The NETWORK receives, the same for a whole handle and for one of its queues (`$mark`:
/// what a waiting task holds, see `when_ready`).
macro_rules! packet_receives {
    ($t:ty, $name:literal, $mark:expr) => {
        impl Async<$t> {
            #[doc = concat!("[`", $name, "::recv`], waiting without blocking the thread.")]
            pub async fn recv(&self, buf: &mut [u8]) -> Result<(usize, Address), Error> {
                self.when_ready($mark, |h| h.recv_timeout(buf, NOW)).await
            }

            #[doc = concat!("[`", $name, "::recv_batch`]: waits for the first packet, then")]
            /// takes up to `max` of those already there.
            pub async fn recv_batch(
                &self,
                buf: &mut [u8],
                addrs: &mut Vec<Address>,
                max: usize,
            ) -> Result<usize, Error> {
                self.when_ready($mark, |h| h.recv_batch(buf, addrs, max, NOW))
                    .await
            }

            #[doc = concat!("[`", $name, "::recv_with`]: waits for the first packet, then")]
            /// shows `f` up to `max` of those already there, in place.
            pub async fn recv_with<F>(&self, max: usize, mut f: F) -> Result<usize, Error>
            where
                F: FnMut(&mut [u8], &mut Address) -> Verdict,
            {
                self.when_ready($mark, |h| h.recv_with(max, NOW, &mut f))
                    .await
            }
        }
    };
}

packet_receives!(Handle, "Handle", |h: &Handle| h.wait_mark(None));
packet_receives!(QueueRef<'_>, "QueueRef", QueueRef::wait_mark);

impl Async<Handle> {
    /// Unregister and [`Handle::close`].
    pub fn close(self) -> Result<(), Error> {
        self.into_inner().close()
    }
}

impl Async<FlowHandle> {
    /// [`FlowHandle::recv`]: the next FLOW event.
    pub async fn recv(&self) -> Result<Address, Error> {
        self.when_ready(|_| (), |h| h.recv_timeout(NOW)).await
    }
}

impl Async<SocketHandle> {
    /// [`SocketHandle::recv`]: the next SOCKET event.
    pub async fn recv(&self) -> Result<Address, Error> {
        self.when_ready(|_| (), |h| h.recv_timeout(NOW)).await
    }
}

impl Async<ReflectHandle> {
    /// [`ReflectHandle::recv`]: the next REFLECT event and the object text of its handle's
    /// filter.
    pub async fn recv(&self) -> Result<(Vec<u8>, Address), Error> {
        self.when_ready(|_| (), |h| h.recv_timeout(NOW)).await
    }
}
