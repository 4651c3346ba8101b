//! The consumer side of a `BPF_MAP_TYPE_RINGBUF` map, through `mmap`.
//!
//! Layout (kernel `kernel/bpf/ringbuf.c`): page 0 holds the consumer position (the only
//! part user space writes); from page 1 on, read-only, the producer position, then (one
//! page later) the data area, mapped twice in a row so that a record that wraps around the
//! end can be read contiguously. Each record starts with an 8-byte header: `u32` length
//! (bit 31 = still being written, bit 30 = discarded) and `u32` page offset; records are
//! 8-byte aligned.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

/// A mapped ring buffer; records are consumed with [`RingBuf::consume`].
#[derive(Debug)]
pub struct RingBuf {
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page: usize,
    size: usize,
}

// SAFETY: the mappings are plain shared memory owned by this value; every access goes
// through `&mut self` (consume) or atomics, so moving it to another thread is sound.
unsafe impl Send for RingBuf {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl RingBuf {
    /// Map the ring buffer map `fd` of `size` bytes (its `max_entries`).
    pub fn new(fd: BorrowedFd<'_>, size: usize) -> io::Result<RingBuf> {
        let page = page_size();
        if size == 0 || !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring buffer size must be a power of two and a multiple of the page size",
            ));
        }
        // SAFETY: mapping a BPF ring buffer descriptor: one writable page at offset 0.
        let c = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if c == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the read-only producer page plus twice the data area, at offset `page`.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: `c` is the mapping of `page` bytes made above.
            unsafe { libc::munmap(c, page) };
            return Err(e);
        }
        Ok(RingBuf {
            consumer: NonNull::new(c as *mut u8).ok_or_else(io::Error::last_os_error)?,
            producer: NonNull::new(p as *mut u8).ok_or_else(io::Error::last_os_error)?,
            page,
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped, page-aligned (so 8-byte aligned) and lives as
        // long as `self`; the kernel only reads it, so an atomic view is sound.
        unsafe { &*(self.consumer.as_ptr() as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, for the producer position the kernel writes.
        unsafe { &*(self.producer.as_ptr() as *const AtomicU64) }
    }

    fn data(&self) -> *const u8 {
        // SAFETY: the data area starts one page into the producer mapping.
        unsafe { self.producer.as_ptr().add(self.page) }
    }

    /// Whether records are waiting.
    pub fn is_empty(&self) -> bool {
        self.consumer_pos().load(Ordering::Acquire) == self.producer_pos().load(Ordering::Acquire)
    }

    /// Hand every complete record to `f` (in order) and release its space. Returns the
    /// number of records handed over.
    pub fn consume(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mask = self.size - 1;
        let mut n = 0;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let off = (cons as usize) & mask;
            // SAFETY: `off < size`, the header is 8-byte aligned inside the data mapping,
            // and the kernel publishes it with a release store.
            let hdr =
                unsafe { &*(self.data().add(off) as *const AtomicU32) }.load(Ordering::Acquire);
            if hdr & BUSY != 0 {
                break;
            }
            let len = (hdr & !(BUSY | DISCARD)) as usize;
            if hdr & DISCARD == 0 && len <= self.size {
                // SAFETY: the record (at most `size` bytes after its header) lies inside the
                // doubly mapped data area (`2 * size` bytes), so it is contiguous.
                let rec = unsafe { core::slice::from_raw_parts(self.data().add(off + HDR), len) };
                f(rec);
                n += 1;
            }
            cons += ((len + HDR + 7) & !7) as u64;
            self.consumer_pos().store(cons, Ordering::Release);
        }
        n
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        // SAFETY: both mappings were made in `new` with these sizes and are unmapped once.
        unsafe {
            libc::munmap(self.consumer.as_ptr() as *mut libc::c_void, self.page);
            libc::munmap(
                self.producer.as_ptr() as *mut libc::c_void,
                self.page + 2 * self.size,
            );
        }
    }
}
