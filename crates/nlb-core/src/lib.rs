//! The sans-IO core of nlb.
//!
//! Everything here is deterministic: no I/O, no clocks, no randomness that is not passed
//! in. The Linux layer and the simulator drive it.
//!
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
