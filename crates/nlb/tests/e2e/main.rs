//! End to end: real `nlb run` daemons in network namespaces, joined by a Linux bridge,
//! serving a real HTTP server on the VIP to a client with many source addresses.
//!
//! Each test builds its own world ([`common::World`]: switch, hosts, client), uses only
//! 198.18.0.0/15, and tears everything down when it ends, failed or not: daemons and
//! servers are stopped first, then the namespaces (and with them every interface) are
//! deleted. The tests by topic:
//!
//! - [`serve`]: every client answered once, in each cluster mode (issue tests 1 to 4);
//! - [`security`]: misconfigured hosts, wrong keys, forged and replayed heartbeats, ARP
//!   conflicts and probes (7, 8);
//! - [`failover`]: link down, SIGKILL and SIGSTOP under load (5, 12), and the failover
//!   figures for BENCHMARKS.md;
//! - [`health`]: health checks: a dead server, a check down everywhere, a hung check
//!   (issue 14);
//! - [`planned`]: drainstop, stop, start and a joining host under load (6);
//! - [`drain`]: a moved bucket's connections (sockets, behind DNAT, UDP) survive on its
//!   old owner, which then drops it before conntrack (issue 16);
//! - [`lifecycle`]: one daemon per interface, leftovers, clean exit, systemd, reload,
//!   permissions;
//! - [`operations`]: the operator's verbs, metrics, and `nlb lab`.

#[path = "../common/mod.rs"]
mod common;
mod drain;
mod failover;
mod health;
mod lifecycle;
mod operations;
mod planned;
mod security;
mod serve;

use common::{HostSetup, Setup, World};
use nlb_wire::addressing::ClusterMode;

/// The client's extra addresses in these tests.
const CLIENTS: u8 = 40;

/// `hosts` hosts in `mode` (daemons started stopped, servers running) and a client with
/// [`CLIENTS`] extra addresses.
fn world(mode: ClusterMode, hosts: u8) -> World {
    world_with(mode, hosts, |_| HostSetup::default())
}

/// As [`world`], with each host set up by `setup`.
fn world_with(mode: ClusterMode, hosts: u8, setup: impl Fn(u8) -> HostSetup) -> World {
    World::build(Setup::new("nlbt", mode, hosts, CLIENTS), setup)
}
