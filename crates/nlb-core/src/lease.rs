//! The timers of ownership, in one place: the failure window, the kernel's ownership
//! lease, how often the daemon refreshes it, and when a host suspects it has stalled.
//!
//! The contract these numbers keep, for any configuration (`tolerance ≥ 2`):
//!
//! - **failure window** `W = tolerance × heartbeat`: a peer silent for `W` is dead, and
//!   its buckets may be taken.
//! - **lease** `L = W / 2`: the kernel accepts new connections for a host's buckets only
//!   while the daemon refreshes them; a daemon that stops (killed, paused, starved) loses
//!   its buckets in the kernel within `L`, well before its peers take them at `W`.
//! - **refresh** every `L / 3`, so two refreshes may be late or lost before the lease ends.
//! - **stall** after `S = max(L, 1.5 × heartbeat)` without a heartbeat sent: a host that
//!   finds it has not run for `S` (a paused VM, a swap storm, a clock that jumped, a loop
//!   starved by load) knows its kernel may already have dropped its ownership and its
//!   peers may be about to declare it dead, or already have. It releases every bucket and
//!   comes back through the join path ([`crate::node`] documents the rule). `S` is never
//!   under one and a half periods, so that a heartbeat that is merely due does not count.
//!
//! Known limits: a lease refresh the daemon submitted just before a pause may reach the
//! kernel after it, extending the old ownership by up to `L` until the release that
//! follows the stall is applied; and a hypervisor that hides a pause from the guest's
//! monotonic clock hides it from this rule too (peers' sequence numbers would show it).

use crate::config::Config;
use std::time::Duration;

/// Silence after which a peer is dead.
pub fn failure_window(config: &Config) -> Duration {
    Duration::from_millis(u64::from(config.failure_window_ms()))
}

/// The kernel's ownership lease of a configuration: the one place that computes it, for
/// the daemon and the simulator alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// How long the kernel honours a host's buckets without a refresh from its daemon
    /// (`L = W / 2`).
    pub length: Duration,
    /// How often the daemon refreshes it (`L / 3`).
    pub refresh: Duration,
}

impl Lease {
    /// The lease and its refresh period for `config`.
    pub fn from_config(config: &Config) -> Lease {
        let length = failure_window(config) / 2;
        Lease {
            length,
            refresh: length / 3,
        }
    }
}

/// How long the kernel honours a host's buckets without a refresh from its daemon:
/// [`Lease::from_config`]'s `length`.
pub fn ownership_lease(config: &Config) -> Duration {
    Lease::from_config(config).length
}

/// How often the daemon refreshes the lease: [`Lease::from_config`]'s `refresh`.
pub fn lease_refresh_period(config: &Config) -> Duration {
    Lease::from_config(config).refresh
}

/// How long a host may go without sending a heartbeat before it treats itself as
/// stalled and rejoins.
pub fn stall_threshold(config: &Config) -> Duration {
    let period = Duration::from_millis(u64::from(config.cluster.heartbeat_ms));
    ownership_lease(config).max(period * 3 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(heartbeat_ms: u16, tolerance: u8) -> Config {
        Config::parse(
            &format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n\
                 heartbeat_ms = {heartbeat_ms}\ntolerance = {tolerance}\n[host]\nid = 1\n"
            ),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn lease_ends_before_the_window_and_stall_before_both_matter() {
        for (period, tolerance) in [(10, 15), (10, 3), (10, 2), (1000, 5), (5, 100)] {
            let config = config(period, tolerance);
            let window = failure_window(&config);
            let lease = ownership_lease(&config);
            let stall = stall_threshold(&config);
            let period = Duration::from_millis(u64::from(period));
            assert!(lease < window, "{period:?} x {tolerance}");
            assert!(lease_refresh_period(&config) < lease);
            assert!(stall > period, "a due heartbeat is no stall");
            assert!(stall < window, "stall is noticed before peers give up");
        }
        let defaults = config(10, 15);
        assert_eq!(ownership_lease(&defaults), Duration::from_millis(75));
        assert_eq!(
            Lease::from_config(&defaults),
            Lease {
                length: Duration::from_millis(75),
                refresh: Duration::from_millis(25),
            }
        );
        assert_eq!(stall_threshold(&defaults), Duration::from_millis(75));
    }
}
