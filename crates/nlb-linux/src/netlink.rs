//! Watching the cluster interface with rtnetlink: the link deleted, going down or up,
//! its MAC changing, and IPv4 addresses removed from it. The kernel pushes these to a
//! `NETLINK_ROUTE` socket bound to the link and IPv4-address groups; nothing is polled.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nlb_wire::MacAddr;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Something that happened to the watched interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface was deleted.
    Deleted,
    /// The interface is administratively up (`true`) or down, and has a carrier or not.
    State {
        /// `IFF_UP`.
        up: bool,
        /// `IFF_LOWER_UP`: the carrier.
        carrier: bool,
    },
    /// The interface's MAC is now this.
    Mac(MacAddr),
    /// An IPv4 address was removed from the interface.
    AddressRemoved(Ipv4Addr),
}

/// Starts a thread that watches interface `ifindex` (in the calling thread's network
/// namespace), which is up with a carrier and has `mac` now, and calls `report` for
/// each change, until `report` returns false. The socket is bound before this returns,
/// so nothing after it is missed.
pub fn watch_link(
    ifindex: u32,
    mac: MacAddr,
    mut report: impl FnMut(LinkEvent) -> bool + Send + 'static,
) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    let groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR) as u32;
    socket.bind(&SocketAddr::new(0, groups))?;
    std::thread::Builder::new()
        .name("nlb-netlink".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut last = (true, true, mac);
            loop {
                let len = match socket.recv(&mut &mut buf[..], 0) {
                    Ok(len) => len,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // ENOBUFS: the kernel dropped events; the daemon's periodic checks
                    // still catch what matters.
                    Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => continue,
                    Err(_) => return,
                };
                let mut offset = 0;
                while offset < len {
                    let Ok(message) =
                        NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..len])
                    else {
                        break;
                    };
                    let size = message.header.length as usize;
                    for event in events(ifindex, message, &mut last) {
                        if !report(event) {
                            return;
                        }
                    }
                    if size == 0 {
                        break;
                    }
                    offset += (size + 3) & !3;
                }
            }
        })?;
    Ok(())
}

fn link_mac(link: &LinkMessage) -> Option<MacAddr> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut octets = [0u8; 6];
                octets.copy_from_slice(bytes);
                Some(MacAddr::from(octets))
            }
            _ => None,
        })
}

/// The events of one message about `ifindex`; `last` is the link's state as last seen,
/// so that only changes are reported.
fn events(
    ifindex: u32,
    message: NetlinkMessage<RouteNetlinkMessage>,
    last: &mut (bool, bool, MacAddr),
) -> Vec<LinkEvent> {
    let NetlinkPayload::InnerMessage(inner) = message.payload else {
        return Vec::new();
    };
    match inner {
        RouteNetlinkMessage::DelLink(link) if link.header.index == ifindex => {
            vec![LinkEvent::Deleted]
        }
        RouteNetlinkMessage::NewLink(link) if link.header.index == ifindex => {
            let up = link.header.flags.contains(LinkFlags::Up);
            let carrier = link.header.flags.contains(LinkFlags::LowerUp);
            let (was_up, had_carrier, old_mac) = *last;
            let mac = link_mac(&link).unwrap_or(old_mac);
            let mut out = Vec::new();
            if (up, carrier) != (was_up, had_carrier) {
                out.push(LinkEvent::State { up, carrier });
            }
            if mac != old_mac {
                out.push(LinkEvent::Mac(mac));
            }
            *last = (up, carrier, mac);
            out
        }
        RouteNetlinkMessage::DelAddress(address) if address.header.index == ifindex => address
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(LinkEvent::AddressRemoved(*ip)),
                _ => None,
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}
