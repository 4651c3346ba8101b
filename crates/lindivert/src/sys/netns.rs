//! Network namespaces: open one by path (`/var/run/netns/NAME`) or by process id
//! (`/proc/PID/ns/net`) and run code inside it on a dedicated thread, so that sockets created
//! there belong to that namespace for their whole life.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    path: PathBuf,
}

impl NetNs {
    /// Open a namespace file (`/var/run/netns/NAME`, `/proc/PID/ns/net`, ...).
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        let path = path.as_ref().to_path_buf();
        let f = File::open(&path)?;
        Ok(NetNs { fd: f.into(), path })
    }

    /// A named namespace as `ip netns` creates it (`/var/run/netns/NAME`).
    pub fn named(name: &str) -> io::Result<NetNs> {
        NetNs::open(Path::new("/var/run/netns").join(name))
    }

    /// The namespace of process `pid`.
    pub fn of_pid(pid: u32) -> io::Result<NetNs> {
        NetNs::open(format!("/proc/{pid}/ns/net"))
    }

    /// The calling thread's namespace.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move the calling thread into this namespace.
    ///
    /// Only for threads that the caller owns (e.g. a dedicated thread); see [`NetNs::run`].
    pub fn enter_current_thread(&self) -> io::Result<()> {
        // SAFETY: setns(2) with a valid namespace fd; it only affects the calling thread.
        let r = unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Run `f` on a new thread that has entered this namespace and return its result.
    /// Sockets `f` creates stay in this namespace after the thread ends.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_current_thread()?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
        })
    }
}

/// Run `f` in `ns` if given, else on the calling thread.
pub fn run_in<T: Send>(ns: Option<&NetNs>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    match ns {
        Some(ns) => ns.run(f),
        None => Ok(f()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_in_current_namespace() {
        let ns = NetNs::current().unwrap();
        let v = ns.run(|| 41 + 1).unwrap();
        assert_eq!(v, 42);
        assert!(NetNs::named("definitely-not-a-namespace-xyz").is_err());
    }
}
