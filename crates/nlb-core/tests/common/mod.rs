//! What the node test files share: a one-host configuration, time in milliseconds, and
//! a node driven to convergence by hand.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use nlb_core::config::Config;
use nlb_core::node::{Event, Node};
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::arp::{ArpPacket, ArpRepr};
use nlb_wire::ethernet::{ETHERTYPE_ARP, EthernetFrame};
use nlb_wire::heartbeat::HostState;
use std::net::Ipv4Addr;

pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub(crate) const MY_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

pub(crate) fn config(extra_cluster: &str) -> Config {
    Config::parse(
        &format!(
            "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n{extra_cluster}\n[host]\nid = 1\n"
        ),
        "t.toml",
    )
    .unwrap()
}

pub(crate) fn ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Drains a node's frames and returns the ARP ones, with their Ethernet header.
pub(crate) fn arp_out(node: &mut Node) -> Vec<(EthernetFrame<'static>, ArpRepr)> {
    let mut out = Vec::new();
    while let Some(frame) = node.poll_transmit() {
        let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
        let eth = EthernetFrame::parse(frame).unwrap();
        if eth.ethertype == ETHERTYPE_ARP {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload).unwrap()).unwrap();
            out.push((eth, arp));
        }
    }
    out
}

pub(crate) fn events(node: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// A node alone on its segment, past probing and converged.
pub(crate) fn running_node() -> Node {
    let mut node = Node::new(config(""), MY_MAC, 1, None, ms(0));
    let mut now = ms(0);
    while node.state() != HostState::Converged {
        now = node.poll_timeout().max(now);
        node.handle_timeout(now);
        assert!(now < ms(2000), "never converged");
    }
    arp_out(&mut node);
    events(&mut node);
    node
}

/// Runs a node's timers up to `until`, as its daemon's loop would, so that it does not
/// find itself stalled; its frames and events meanwhile are dropped.
pub(crate) fn run_until(node: &mut Node, until: Instant) {
    loop {
        let next = node.poll_timeout();
        if next > until {
            break;
        }
        node.handle_timeout(next);
    }
    arp_out(node);
    events(node);
}

/// The time of a node's latest input, near enough: its next timeout less a period.
pub(crate) fn now_of(node: &Node) -> u64 {
    node.poll_timeout().micros().saturating_sub(10_000)
}
