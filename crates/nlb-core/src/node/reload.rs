//! Reload: which changes of the configuration file a running node takes in place, which
//! need it to rejoin under a new incarnation, and which need a restart. One function,
//! [`Node::reload`], holds that policy; the daemon only reads the file, persists the
//! incarnation counter and builds the successor it is told to ([`Node::successor`]).
//!
//! - This host's weights and priorities: applied in place; the cluster moves only the
//!   buckets they move.
//! - This host's `[[check]]` tables: applied in place; a check whose name and settings
//!   stay keeps its verdict (also across a rejoin).
//! - The rest of the cluster-wide part (rules, timers, the key): the node starts over
//!   with the new file, in its current state, under the next incarnation, keeping the
//!   host's connections (the kernel's conntrack keeps accepting them) while it rejoins.
//!   Until every host has the new file, the hosts whose file differs from the majority's
//!   stay misconfigured, and own nothing.
//! - `host.id`, `cluster.interface`, `cluster.vips`, `cluster.mode`: refused; they need a
//!   restart of the daemon.

use super::Node;
use crate::config::{Config, InitialState, field_name};
use crate::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::heartbeat::{FIELD_DIGESTS_LEN, HeartbeatKey, HostState};

/// A setting a reload cannot change: the daemon must be restarted for it (drainstop first
/// to keep the connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadError {
    /// `host.id` changed.
    HostId,
    /// `cluster.interface` changed.
    Interface,
    /// `cluster.vips` changed.
    Vips,
    /// `cluster.mode` changed.
    Mode,
}

impl ReloadError {
    /// The setting, as the configuration file names it.
    pub const fn setting(self) -> &'static str {
        match self {
            ReloadError::HostId => "host.id",
            ReloadError::Interface => "cluster.interface",
            ReloadError::Vips => "cluster.vips",
            ReloadError::Mode => "cluster.mode",
        }
    }

    /// What the operator reads: the setting, and what to do.
    pub const fn message(self) -> &'static str {
        match self {
            ReloadError::HostId => {
                "host.id changed: restart the daemon to change it (drainstop first to keep \
                 connections)"
            }
            ReloadError::Interface => {
                "cluster.interface changed: restart the daemon to change it (drainstop first to \
                 keep connections)"
            }
            ReloadError::Vips => {
                "cluster.vips changed: restart the daemon to change them (drainstop first to \
                 keep connections)"
            }
            ReloadError::Mode => {
                "cluster.mode changed: restart the daemon to change it (drainstop first to keep \
                 connections)"
            }
        }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ReloadError {}

/// What a reload did.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// Applied in place: this host's weights and priorities take effect with the next
    /// heartbeat.
    InPlace,
    /// The cluster-wide part changed: build [`Node::successor`] with the new
    /// configuration under the next incarnation; this node is left as it was.
    Rejoin(Rejoin),
}

/// What a reload that the node cannot take in place asks for.
#[derive(Debug, Clone)]
pub struct Rejoin {
    /// The new configuration, for [`Node::successor`].
    pub config: Box<Config>,
    /// The first cluster-wide setting that changed, as the file names it.
    pub field: String,
}

impl std::fmt::Display for Rejoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} changed: the cluster-wide configuration must change on every host together; \
             until every host has the new file, the hosts whose file differs from the \
             majority's stay out",
            self.field
        )
    }
}

impl Node {
    /// Takes a new configuration file (a reload). See the module docs for what applies
    /// in place ([`ReloadOutcome::InPlace`]), what needs a successor node under the next
    /// incarnation ([`ReloadOutcome::Rejoin`]: this node is left as it was) and what is
    /// refused ([`ReloadError`]). The stall rule runs first, as at every input.
    pub fn reload(&mut self, now: Instant, config: Config) -> Result<ReloadOutcome, ReloadError> {
        self.detect_stall(now);
        let (old, new) = (&self.config.cluster, &config.cluster);
        if config.host.id != self.config.host.id {
            return Err(ReloadError::HostId);
        }
        if new.interface != old.interface {
            return Err(ReloadError::Interface);
        }
        if new.vips != old.vips {
            return Err(ReloadError::Vips);
        }
        if new.mode != old.mode {
            return Err(ReloadError::Mode);
        }
        if config.fingerprint() != self.fingerprint {
            let digests = config.field_digests();
            let field = (0..FIELD_DIGESTS_LEN)
                .find(|&i| digests[i] != self.field_digests[i])
                .map_or_else(|| "the configuration".to_owned(), field_name);
            return Ok(ReloadOutcome::Rejoin(Rejoin {
                config: Box::new(config),
                field,
            }));
        }
        // Checks are this host's own: a reload changes them in place, and the ones that
        // stay the same keep their state.
        self.checks = self.carried_checks(&config);
        self.config = config;
        self.hurry_heartbeat(now);
        self.update(now);
        Ok(ReloadOutcome::InPlace)
    }

    /// The node that takes this one's place after a [`ReloadOutcome::Rejoin`] or a new
    /// MAC on the interface: `config`, `mac` and `key` for it, this node's state (started,
    /// stopped or suspended; `config`'s initial state is replaced) and data-plane health, and
    /// an incarnation above this one's and at least `stored` (the daemon's persisted
    /// counter, if it could be advanced), so that a later restart still starts higher.
    pub fn successor(
        &self,
        now: Instant,
        config: Config,
        mac: MacAddr,
        key: Option<HeartbeatKey>,
        stored: Option<u32>,
    ) -> Node {
        let mut config = config;
        config.host.initial_state = match self.state {
            HostState::Stopped => InitialState::Stopped,
            HostState::Suspended => InitialState::Suspended,
            _ => InitialState::Started,
        };
        let incarnation = self.next_incarnation(stored);
        let checks = self.carried_checks(&config);
        let mut node = Node::new(config, mac, incarnation, key, now);
        node.checks = checks;
        if !self.dataplane_healthy {
            node.handle_dataplane(now, false);
        }
        node
    }

    /// The incarnation of a successor: above this one, and at least `stored`.
    fn next_incarnation(&self, stored: Option<u32>) -> u32 {
        let next = self.incarnation.saturating_add(1);
        stored.map_or(next, |stored| stored.max(next))
    }
}
