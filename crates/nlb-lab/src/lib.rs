//! Namespace labs for `nlb lab`, the benchmarks (`nlb-bench`) and the tests: test rigs,
//! kept out of the production API of `nlb-linux`, which this crate builds on.
//!
//! - [`segment`]: a whole Ethernet segment in network namespaces (a Linux bridge, cluster
//!   hosts, a client with many addresses), and [`segment::inside`] to run code in one of
//!   them.
//! - [`echo`]: a UDP datagram echo (a server naming the host that answered, a client
//!   sending a datagram every few milliseconds) and the outage it measures.
//! - [`http`]: the HTTP/1.1 client the labs ask the VIP with, one request per connection
//!   or many on a kept-alive one.
//! - [`load`]: the one client load generator (new connections on a schedule, keep-alive
//!   sessions) and what it measures: failures by kind, stalls, latencies, outages.
//!
//! Addresses are from 198.18.0.0/24 and exist only inside the namespaces a lab creates.

#![forbid(unsafe_code)]

pub mod echo;
pub mod http;
pub mod load;
pub mod segment;
