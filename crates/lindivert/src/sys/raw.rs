//! Raw IP sockets for injecting new packets (`IPPROTO_RAW`, i.e. `IP_HDRINCL`, and
//! `IPV6_HDRINCL`), marked with `SO_MARK`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `IPV6_HDRINCL` (linux/in6.h).
const IPV6_HDRINCL: i32 = 36;

/// A raw socket that sends complete IP packets.
#[derive(Debug)]
pub struct RawIpSocket {
    fd: OwnedFd,
    v6: bool,
}

fn new_raw(domain: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let r = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

impl RawIpSocket {
    /// An IPv4 (`v6 == false`) or IPv6 raw socket whose packets carry `mark`.
    pub fn open(v6: bool, mark: u32) -> io::Result<RawIpSocket> {
        let fd = new_raw(if v6 { libc::AF_INET6 } else { libc::AF_INET })?;
        use super::netlink::setsockopt_int;
        if v6 {
            setsockopt_int(fd.as_fd(), libc::IPPROTO_IPV6, IPV6_HDRINCL, 1)?;
        } else {
            setsockopt_int(fd.as_fd(), libc::IPPROTO_IP, libc::IP_HDRINCL, 1)?;
        }
        setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark as i32)?;
        Ok(RawIpSocket { fd, v6 })
    }

    /// Send one complete IP packet (its destination address is taken from the header).
    pub fn send_packet(&self, packet: &[u8]) -> io::Result<usize> {
        let r = if self.v6 {
            let dst: [u8; 16] = packet
                .get(24..40)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: sockaddr_in6 is a plain C struct; all-zero is valid.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = Ipv6Addr::from(dst).octets();
            // SAFETY: `packet` and `sa` are valid for the stated lengths during the call.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    packet.as_ptr() as *const libc::c_void,
                    packet.len(),
                    0,
                    &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        } else {
            let dst: [u8; 4] = packet
                .get(16..20)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: sockaddr_in is a plain C struct; all-zero is valid.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes(Ipv4Addr::from(dst).octets());
            // SAFETY: `packet` and `sa` are valid for the stated lengths during the call.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    packet.as_ptr() as *const libc::c_void,
                    packet.len(),
                    0,
                    &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}
