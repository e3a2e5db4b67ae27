//! AF_PACKET sockets: whole Ethernet frames in and out of one interface (packet(7)).
//!
//! The socket is opened with protocol 0, so it receives nothing until it is bound to
//! its interface with `ETH_P_ALL`; otherwise frames from every interface would slip in
//! between `socket()` and `bind()`. `PACKET_IGNORE_OUTGOING` keeps our own transmitted
//! frames from looping back to us.

#![allow(unsafe_code)]

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

/// A raw Ethernet socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    socket: Socket,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens a socket on `interface` (in the calling thread's network namespace) that
    /// receives every frame but its own.
    pub fn bind(interface: &str) -> io::Result<PacketSocket> {
        PacketSocket::open(interface, true)
    }

    /// Opens a socket that sees every frame on `interface`, this host's own outgoing ones
    /// included, with the interface promiscuous for as long as the socket lives
    /// (`PACKET_MR_PROMISC`, undone by the kernel on close): what a capture tool sees.
    /// For `nlb watch`, which never sends. Read it with
    /// [`try_recv_tagged`](Self::try_recv_tagged) to keep VLAN tags.
    pub fn observe(interface: &str) -> io::Result<PacketSocket> {
        let socket = PacketSocket::open(interface, false)?;
        let auxdata: libc::c_int = 1;
        // SAFETY: the option value is a live c_int and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&raw const auxdata).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `packet_mreq` is plain old data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = socket.ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        socket.set_membership(&mreq)?;
        Ok(socket)
    }

    fn open(interface: &str, ignore_outgoing: bool) -> io::Result<PacketSocket> {
        let ifindex = nix::net::if_::if_nametoindex(interface).map_err(|err| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {interface}: {err}"),
            )
        })?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        if ignore_outgoing {
            let ignore_outgoing: libc::c_int = 1;
            // SAFETY: the option value is a live c_int and its size is passed with it.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_IGNORE_OUTGOING,
                    (&raw const ignore_outgoing).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        socket.bind(&link_address(ifindex, libc::ETH_P_ALL as u16))?;
        Ok(PacketSocket { socket, ifindex })
    }

    fn set_membership(&self, mreq: &libc::packet_mreq) -> io::Result<()> {
        // SAFETY: the option value is a live `packet_mreq` and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                std::ptr::from_ref(mreq).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one whole frame (destination MAC first, no FCS).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(frame)?;
        if sent != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }

    /// Puts the socket in non-blocking mode, for an event loop.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.socket.set_nonblocking(true)
    }

    /// Adds `mac` to the interface's receive filter for as long as the socket lives:
    /// `PACKET_MR_MULTICAST` for a group address, `PACKET_MR_UNICAST` for a secondary
    /// unicast address (packet(7)). The kernel drops the membership when the socket
    /// closes, so a crashed daemon leaves nothing behind.
    pub fn add_membership(&self, mac: nlb_wire::MacAddr) -> io::Result<()> {
        // SAFETY: `packet_mreq` is plain old data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = self.ifindex as i32;
        mreq.mr_type = if mac.is_multicast() {
            libc::PACKET_MR_MULTICAST
        } else {
            libc::PACKET_MR_UNICAST
        } as u16;
        mreq.mr_alen = 6;
        mreq.mr_address[..6].copy_from_slice(&mac.octets());
        self.set_membership(&mreq)
    }

    /// Receives one frame without waiting; `WouldBlock` when none is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: as in `recv`.
        let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
        self.socket.recv(uninit)
    }

    /// Receives one frame without waiting, from a socket made by
    /// [`observe`](Self::observe), and returns where it lies in `buf`. A VLAN tag that the
    /// kernel (or the NIC) took off the frame, and reported in `PACKET_AUXDATA`, is put
    /// back after the source MAC, as libpcap does, so that findings stay per VLAN.
    /// `buf` must have room for the frame and 4 more bytes.
    pub fn try_recv_tagged(&self, buf: &mut [u8]) -> io::Result<std::ops::Range<usize>> {
        if buf.len() < 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small for a frame",
            ));
        }
        // The frame goes 4 bytes in, leaving room to re-insert a tag.
        let mut iov = libc::iovec {
            iov_base: buf[4..].as_mut_ptr().cast(),
            iov_len: buf.len() - 4,
        };
        // u64s, so the control buffer is aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: `msghdr` is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: `msg` points at the live `iov` (inside `buf`) and `control` buffers,
        // with their true sizes.
        let received =
            unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (received as usize).min(buf.len() - 4);
        let mut tag = None;
        // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer
        // within `msg_controllen`, and the auxdata is read unaligned by value.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                    && (*cmsg).cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize
                {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        tag = Some((tpid, aux.tp_vlan_tci));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        match tag {
            Some((tpid, tci)) if len >= 12 => {
                buf.copy_within(4..16, 0);
                buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&tci.to_be_bytes());
                Ok(0..len + 4)
            }
            _ => Ok(4..4 + len),
        }
    }

    /// Receives one frame into `buf` and returns its length, waiting at most `timeout`.
    pub fn recv(&self, buf: &mut [u8], timeout: std::time::Duration) -> io::Result<usize> {
        self.socket.set_read_timeout(Some(timeout))?;
        // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and `recv` only writes
        // initialised bytes into the slice.
        let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
        self.socket.recv(uninit)
    }
}

/// A `sockaddr_ll` for `ifindex` and `protocol` (host byte order).
fn link_address(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's sockaddr types and fits in the
    // storage (`view_as` asserts the size).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex as i32;
    // SAFETY: the storage holds an initialised `sockaddr_ll` and the length says so.
    unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// A [`PacketSocket`] registered with the tokio reactor.
pub type AsyncPacketSocket = tokio::io::unix::AsyncFd<PacketSocket>;

impl PacketSocket {
    /// Registers the socket (made non-blocking) with the current tokio runtime, for
    /// `readable().await`. Must be called inside a runtime.
    pub fn into_async(self) -> io::Result<AsyncPacketSocket> {
        self.set_nonblocking()?;
        // SAFETY: the `AsyncFd` owns the `PacketSocket`, whose descriptor stays open and
        // unchanged until the `AsyncFd` drops it; `as_raw_fd` always returns it.
        unsafe { tokio::io::unix::AsyncFd::register(self) }.map_err(|err| err.into_parts().1)
    }
}
