//! The thin Linux layer of nlb. All of nlb's `unsafe` code lives in this crate, in
//! [`packet`]; everything above it is safe Rust.
//!
//! - [`netlink`]: watching the cluster interface (deleted, down/up, MAC, addresses).
//! - [`netns`]: network namespaces for tests and the lab, removed when dropped (whole
//!   test segments, the HTTP client and the load generator built on them are in `nlb-lab`).
//! - [`packet`]: AF_PACKET sockets that send and receive whole Ethernet frames.
//! - [`command`]: running `ip` and `nft` with errors that say what failed.
//! - [`host`]: the interface's MAC, VIP addresses, IGMP membership, the daemon lock.
//! - [`incarnation`]: the daemon's incarnation, kept growing across restarts.
//! - [`nft`]: applying rulesets, and an `nft -i` session for lease refreshes.
//! - [`ruleset`]: the nft ruleset, a pure function of the configuration and ownership.
//! - [`systemd`]: readiness and watchdog notifications.

pub mod command;
pub mod host;
pub mod incarnation;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod packet;
pub mod ruleset;
pub mod systemd;
