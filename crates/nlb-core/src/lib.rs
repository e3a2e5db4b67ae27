//! The sans-IO core of nlb.
//!
//! Everything here is deterministic: no I/O, no clocks, no randomness that is not passed
//! in. The Linux layer and the simulator drive it.
//!
//! - [`node`]: one host's cluster state machine (`node/`, one file per subsystem), driven
//!   through `handle_*` and read through `poll_*`; it also decides what a reload changes.
//! - [`lease`]: the failure window, the kernel's ownership lease and its refresh
//!   ([`lease::Lease::from_config`]), and the stall threshold, for the daemon and the
//!   simulator alike.
//! - [`jhash`]: the kernel's `nft jhash`, bit for bit, so that userspace predicts which
//!   bucket the kernel puts a flow in.
#![forbid(unsafe_code)]

pub mod buckets;
pub mod check;
pub mod config;
pub mod filter;
pub mod jhash;
pub mod lease;
pub mod node;
pub mod time;
