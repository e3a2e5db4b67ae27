//! AF_PACKET sockets: whole Ethernet frames in and out of one interface (packet(7)).
//!
//! The socket is opened with protocol 0, so it receives nothing until it is bound to
//! its interface with `ETH_P_ALL`; otherwise frames from every interface would slip in
//! between `socket()` and `bind()`. `PACKET_IGNORE_OUTGOING` keeps our own transmitted
//! frames from looping back to us.
//!
//! **The daemon's socket filters in the kernel.** [`PacketSocket::bind`] attaches a
//! classic BPF program ([`daemon_filter`], `SO_ATTACH_FILTER`) before it binds, so that
//! only what the daemon handles is copied to user space: ARP (0x0806) and nlb heartbeats
//! (0x88B5), untagged or with VLAN id 0 (priority tagged), and with one 802.1Q/802.1ad
//! tag left in the frame. Everything else (the host's own IP traffic, the data path to
//! the VIPs) is dropped by the kernel at the tap, for the price of a few BPF
//! instructions. A frame whose tag the kernel took off into the packet's metadata with
//! a VLAN id other than 0 belongs to a VLAN device on top of this interface, not to the
//! daemon, and is dropped too. (The receive path untags 802.1Q frames before the packet
//! taps run, so a tagged frame normally shows up that way; the in-frame case is an inner
//! tag of QinQ, or a driver that leaves the tag.)
//!
//! [`PacketSocket::observe`], for `nlb watch`, has no filter: the doctor looks at the
//! MACs of every frame (cluster MACs used as sources, IP/MAC flaps, IGMP, unicast IPv4 to
//! cluster MACs), so it needs everything, as a capture tool does.

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
    /// receives the ARP frames and nlb heartbeats that others send ([`daemon_filter`]).
    pub fn bind(interface: &str) -> io::Result<PacketSocket> {
        PacketSocket::open(interface, true, Some(&daemon_filter()))
    }

    /// Opens a socket that sees every frame on `interface`, this host's own outgoing ones
    /// included, with the interface promiscuous for as long as the socket lives
    /// (`PACKET_MR_PROMISC`, undone by the kernel on close): what a capture tool sees.
    /// For `nlb watch`, which never sends. Read it with
    /// [`try_recv_tagged`](Self::try_recv_tagged) to keep VLAN tags.
    pub fn observe(interface: &str) -> io::Result<PacketSocket> {
        let socket = PacketSocket::open(interface, false, None)?;
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

    fn open(
        interface: &str,
        ignore_outgoing: bool,
        filter: Option<&[libc::sock_filter]>,
    ) -> io::Result<PacketSocket> {
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
        if let Some(program) = filter {
            attach_filter(&socket, program)?;
        }
        // Bound only now: until the filter is on, the socket (protocol 0) receives nothing.
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

const ETHERTYPE_ARP: u32 = 0x0806;
const ETHERTYPE_HEARTBEAT: u32 = nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT as u32;
/// `SKF_AD_OFF + SKF_AD_VLAN_TAG`: the tag the kernel took off the frame.
const ANCILLARY_VLAN_TAG: u32 = 0xffff_f000 + 44;
/// `SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT`: whether it took one off.
const ANCILLARY_VLAN_PRESENT: u32 = 0xffff_f000 + 48;

/// The classic BPF program of the daemon's socket: accept (whole) ARP frames and nlb
/// heartbeats, untagged, priority-tagged, or with one tag left in the frame; drop
/// everything else, and frames of a VLAN whose tag the kernel took off.
pub fn daemon_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const DROP: usize = 14;
    const ACCEPT: usize = 15;
    let op = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // Jumps are relative to the next instruction: `at` is this one's index.
    let jeq = |at: usize, k: u32, yes: usize, no: usize| libc::sock_filter {
        code: JEQ_K,
        jt: (yes - at - 1) as u8,
        jf: (no - at - 1) as u8,
        k,
    };
    let program = vec![
        /* 0 */ op(LD_W_ABS, ANCILLARY_VLAN_PRESENT),
        /* 1 */ jeq(1, 0, 5, 2),
        /* 2 */ op(LD_W_ABS, ANCILLARY_VLAN_TAG),
        /* 3 */ op(AND_K, 0x0fff),
        /* 4 */ jeq(4, 0, 5, DROP),
        /* 5 */ op(LD_H_ABS, 12),
        /* 6 */ jeq(6, ETHERTYPE_ARP, ACCEPT, 7),
        /* 7 */ jeq(7, ETHERTYPE_HEARTBEAT, ACCEPT, 8),
        /* 8 */ jeq(8, 0x8100, 11, 9),
        /* 9 */ jeq(9, 0x88a8, 11, 10),
        /* 10 */ op(RET_K, 0),
        /* 11 */ op(LD_H_ABS, 16),
        /* 12 */ jeq(12, ETHERTYPE_ARP, ACCEPT, 13),
        /* 13 */ jeq(13, ETHERTYPE_HEARTBEAT, ACCEPT, DROP),
        /* 14 */ op(RET_K, 0),
        /* 15 */ op(RET_K, 0x0004_0000),
    ];
    debug_assert_eq!(program.len(), ACCEPT + 1);
    program
}

fn attach_filter(socket: &Socket, program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `program`, alive for the call, with its true length; the
    // kernel copies the program and keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("cannot attach the socket filter (SO_ATTACH_FILTER): {err}"),
        ));
    }
    Ok(())
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
