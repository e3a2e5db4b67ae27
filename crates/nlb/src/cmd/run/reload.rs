//! Reload (SIGHUP), and the incarnation of a node started over: the I/O around the
//! core's policy.
//!
//! Which changes apply in place, which make the node rejoin under the next incarnation
//! and which are refused is decided by [`Node::reload`](nlb_core::node::Node::reload);
//! this reads the file and the key, advances the persisted incarnation counter
//! ([`nlb_linux::incarnation`]) and builds the successor node when told to. Connections
//! are kept throughout: after a rejoin every bucket drains (`drain.rs`) until the
//! connections in it have ended, and conntrack accepts them. Either way the tables are
//! replaced whole, since the rules they are made of may have changed.

use super::dataplane::unowned_rules;
use super::{Daemon, cluster_key};
use crate::cmd::load_config;
use nlb_core::node::ReloadOutcome;
use nlb_wire::addressing::cluster_id;
use std::path::Path;

impl Daemon {
    /// The stored incarnation counter's next value, for a node started over (reload, new
    /// MAC), which [`Node::successor`](nlb_core::node::Node::successor) keeps above the
    /// current one; `None`, and the reason in the log, if the counter cannot be written.
    pub(super) fn stored_incarnation(&self) -> Option<u32> {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = cluster_id(&self.config.cluster.vips);
        match nlb_linux::incarnation::next(
            &self.run_dir,
            &self.config.cluster.interface,
            id,
            now_unix,
        ) {
            Ok(next) => Some(next),
            Err(err) => {
                tracing::error!(event = "nlb.incarnation_failed", error = %err);
                None
            }
        }
    }

    /// SIGHUP: re-reads the configuration, without dropping a connection (the module
    /// docs say who decides what).
    pub(super) fn reload(&mut self, path: &Path) {
        let config = match load_config(path) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(event = "nlb.reload_failed", error = %err.message());
                return;
            }
        };
        let now = self.clock.now();
        match self.node.reload(now, config) {
            Ok(ReloadOutcome::InPlace) => {
                self.config = self.node.config().clone();
                self.full_apply = true;
                self.apply_dirty = true;
                tracing::info!(event = "nlb.reloaded", file = %path.display(), reconverge = false);
            }
            Ok(ReloadOutcome::Rejoin(rejoin)) => {
                let key = match cluster_key(&rejoin.config) {
                    Ok(key) => key,
                    Err(err) => {
                        tracing::error!(event = "nlb.reload_failed", error = %err.message());
                        return;
                    }
                };
                let stored = self.stored_incarnation();
                let change = rejoin.to_string();
                self.node = self
                    .node
                    .successor(now, *rejoin.config, self.mac, key, stored);
                self.config = self.node.config().clone();
                (self.rules, self.drains) = unowned_rules(self.config.rules.len() + 1);
                self.full_apply = true;
                self.apply_dirty = true;
                tracing::info!(
                    event = "nlb.reloaded",
                    file = %path.display(),
                    reconverge = true,
                    change = %change
                );
            }
            Err(refused) => {
                tracing::error!(event = "nlb.reload_refused", reason = %refused);
                return;
            }
        }
        self.sync_checks();
        self.publish_now = true;
    }
}
