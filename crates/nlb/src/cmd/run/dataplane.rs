//! The kernel side of the loop: nft batches, the ownership lease, and the heartbeats held
//! back while a release is not applied yet.
//!
//! Contracts (see the parent module's ordering contract):
//!
//! - **Ownership changes are element updates**: while the tables' shape stays (no host
//!   stop, no reload), what changes is one line of map and set elements
//!   ([`Ruleset::update_from`]) on the kernel thread's `nft -i` session, well under a
//!   millisecond; otherwise the tables are replaced as a batch. Either is one
//!   transaction, and the kernel thread runs one at a time, in order.
//! - **A release is applied before it is announced**: while the kernel may still accept a
//!   bucket the node no longer owns ([`releases`]), heartbeats are held back (ARP goes);
//!   they go out, in order, once the batch is done.
//! - **Fail closed**: a failed batch or lease refresh tells the node its data plane is
//!   unhealthy, stops the lease refreshes, holds heartbeats until the lease has run out,
//!   and retries the whole ruleset.
//! - **A lease is refreshed only for what the node owns now**: queued frames and the
//!   node's timeouts are judged first, and the kernel thread is first in, first out.
//! - **A released bucket drains** (`drain.rs`) until this host's connections in it
//!   have ended (its sockets) and gone idle (conntrack's, in the `recent` set); the
//!   counts run on a second worker (`counter`), so that they never delay an ownership
//!   change.
//! - Nothing here waits for the kernel: jobs go to the kernel thread and come back as
//!   [`Done`].

use super::drain::Drains;
use super::{Daemon, FRAMES_BEFORE_TIMEOUT, HELD_HEARTBEATS, RETRY_INTERVAL, log_event};
use crate::kernel::{Done, DrainSources, Job};
use nlb_linux::ruleset::{RuleState, Ruleset, Update};
use std::io::ErrorKind;
use std::time::Duration;

/// Whether `frame` is an nlb heartbeat (EtherType 0x88B5, tagged or not).
fn is_heartbeat(frame: &[u8]) -> bool {
    let ethertype = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match ethertype(12) {
        Some(0x8100 | 0x88a8) => ethertype(16) == Some(nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT),
        other => other == Some(nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT),
    }
}

/// Whether the kernel, holding `kernel`, may accept a new connection in a bucket that
/// `wanted` does not own.
fn releases(kernel: &[RuleState], wanted: &[RuleState]) -> bool {
    kernel
        .iter()
        .enumerate()
        .any(|(slot, have)| match wanted.get(slot) {
            Some(want) => have.owned.iter().any(|bucket| !want.owned.contains(bucket)),
            None => !have.owned.is_empty(),
        })
}

/// What the kernel may accept after a batch that failed: what it had (`applied`), and
/// what the batch tried (`tried`), since a failure is not proof that nothing committed.
fn may_accept(applied: &[RuleState], tried: &[RuleState]) -> Vec<RuleState> {
    let slots = applied.len().max(tried.len());
    (0..slots)
        .map(|slot| {
            let (have, want) = (applied.get(slot), tried.get(slot));
            let mut state = have
                .or(want)
                .cloned()
                .unwrap_or_else(|| RuleState::empty(true));
            for bucket in have
                .into_iter()
                .chain(want)
                .flat_map(|rule| rule.owned.iter())
            {
                state.owned.insert(bucket);
            }
            state
        })
        .collect()
}

/// Nothing owned, existing connections kept, every bucket draining, for each of `slots`
/// rule slots: what the kernel holds before the node has decided anything.
pub(super) fn unowned_rules(slots: usize) -> (Vec<RuleState>, Drains) {
    let drains = Drains::all(slots);
    let rules = (0..slots)
        .map(|slot| RuleState {
            draining: drains.bitmap(slot),
            ..RuleState::empty(true)
        })
        .collect();
    (rules, drains)
}

impl Daemon {
    pub(super) fn ruleset(&self) -> Ruleset<'_> {
        Ruleset {
            config: &self.config,
            rules: &self.rules,
            lease: self.lease.length,
            local_ports: self.local_ports,
            drain_idle: Duration::from_millis(u64::from(self.config.host.drain_idle_ms)),
        }
    }

    /// Whether heartbeats must wait: the kernel may still accept a bucket that the node
    /// no longer owns, and the lease has not run out.
    pub(super) fn hold_heartbeats(&self) -> bool {
        let lease_over = !self.lease_in_flight && std::time::Instant::now() >= self.lease_until;
        if lease_over && !self.healthy {
            return false;
        }
        let in_flight = self
            .in_flight
            .as_ref()
            .map(|(_, rules, _)| rules.as_slice());
        releases(&self.applied, &self.rules)
            || in_flight.is_some_and(|rules| releases(rules, &self.rules))
    }

    /// Sends, applies and logs whatever the node produced.
    pub(super) fn flush(&mut self) {
        let mut dirty = false;
        while let Some(action) = self.node.poll_action() {
            let nlb_core::node::Action::SetRule {
                rule,
                owned,
                keep_established,
            } = action;
            if let Some(slot) = self.rules.get_mut(rule) {
                self.drains
                    .owned_changed(rule, &slot.owned, &owned, keep_established);
                *slot = RuleState {
                    owned,
                    draining: self.drains.bitmap(rule),
                    keep_established,
                };
                dirty = true;
            }
        }
        if dirty {
            self.note_draining();
            self.apply_dirty = true;
            self.publish_now = true;
            tracing::info!(
                event = "nlb.ownership",
                owned = ?self.rules.iter().map(|r| r.owned.len()).collect::<Vec<_>>()
            );
        }
        self.start_apply();
        let hold = self.hold_heartbeats();
        if !hold {
            while let Some(frame) = self.held.pop_front() {
                self.send(&frame);
            }
        }
        while let Some(frame) = self.node.poll_transmit() {
            if hold && is_heartbeat(&frame) {
                self.stats.heartbeats_held += 1;
                if self.held.len() == HELD_HEARTBEATS {
                    self.held.pop_front();
                }
                self.held.push_back(frame);
            } else {
                self.send(&frame);
            }
        }
        while let Some(event) = self.node.poll_event() {
            log_event(&event);
            self.publish_now = true;
        }
        self.publish();
    }

    /// Sends one frame; a failure is logged when sending starts to fail, not per frame.
    pub(super) fn send(&mut self, frame: &[u8]) {
        match self.socket.get_ref().send(frame) {
            Ok(()) if self.send_failing => {
                self.send_failing = false;
                tracing::info!(event = "nlb.send_recovered");
            }
            Ok(()) => {}
            Err(err) if !self.send_failing => {
                self.send_failing = true;
                tracing::warn!(event = "nlb.send_failed", error = %err,
                    "frames cannot be sent on the interface; logged once until they can");
            }
            Err(_) => {}
        }
    }

    /// Queues the batch that makes the kernel do what the node wants, unless one is
    /// running (the next goes when it is done) or a failed data plane waits for its retry.
    pub(super) fn start_apply(&mut self) {
        if self.in_flight.is_some() || !self.apply_dirty {
            return;
        }
        if !self.healthy
            && self
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return;
        }
        // Healthy: element updates, or the netdev and inet tables if their shape
        // changed. Failing: everything, since whatever failed may have taken the tables
        // with it.
        let full = !self.healthy || self.full_apply;
        let update = if full {
            Update::Tables
        } else {
            self.ruleset().update_from(&self.applied)
        };
        self.apply_dirty = false;
        let id = self.next_apply_id + 1;
        let job = match update {
            Update::Nothing => {
                // The kernel holds it already (a claim undone before it went in): what
                // drains is dated now, or it would never be let go.
                self.drains.applied(&self.rules, std::time::Instant::now());
                return;
            }
            Update::Elements(line) => Job::Update { id, line },
            Update::Tables => {
                let batches = self.ruleset().batches();
                Job::Apply {
                    id,
                    batches: if full { batches } else { batches[1..].to_vec() },
                }
            }
        };
        self.full_apply = false;
        self.next_apply_id = id;
        if matches!(job, Job::Apply { .. }) {
            self.tables_in_flight = true;
        }
        self.in_flight = Some((id, self.rules.clone(), full));
        self.kernel.submit(job);
    }

    /// A failed apply or lease refresh: fail closed, retry, report.
    pub(super) fn fail_closed(&mut self, what: &str, error: &str) {
        tracing::error!(event = "nlb.dataplane_failed", what, error = %error,
            "failing closed: this host announces nothing owned and stops refreshing its lease; \
             retrying every {RETRY_INTERVAL:?}; check `nft list ruleset` and the error above");
        // The first retry at once (an `nft flush ruleset` left the kernel wide open),
        // then every RETRY_INTERVAL.
        let wait = if self.healthy {
            Duration::ZERO
        } else {
            RETRY_INTERVAL
        };
        self.retry_at = Some(tokio::time::Instant::now() + wait);
        self.apply_dirty = true;
        if self.healthy {
            self.healthy = false;
            let now = self.clock.now();
            self.node.handle_dataplane(now, false);
        }
        self.publish_now = true;
    }

    /// What the kernel thread finished.
    pub(super) fn handle_done(&mut self, done: Done) {
        match done {
            Done::Applied { id, result, at } => {
                let Some((sent_id, rules, full)) = self.in_flight.take() else {
                    return;
                };
                debug_assert_eq!(id, sent_id);
                if std::mem::take(&mut self.tables_in_flight) {
                    // New tables set a fresh lease in the kernel, committed or (for all
                    // nlb can tell after a failure) perhaps committed.
                    self.lease_until = self.lease_until.max(at + self.lease.length);
                }
                match result {
                    Ok(()) if !self.healthy && !full => {
                        // Queued before the failure: the whole ruleset still has to go in.
                        self.drains.applied(&rules, at);
                        self.applied = rules;
                        self.apply_dirty = true;
                    }
                    Ok(()) => {
                        self.drains.applied(&rules, at);
                        self.applied = rules;
                        if !self.healthy {
                            // The whole ruleset went in, the lease set full.
                            self.lease_until = at + self.lease.length;
                            self.healthy = true;
                            self.retry_at = None;
                            tracing::info!(event = "nlb.dataplane_restored");
                            let now = self.clock.now();
                            self.node.handle_dataplane(now, true);
                        }
                    }
                    Err(err) => {
                        // A line that timed out, or an nft that died after the commit,
                        // may have applied it: until the tables are replaced, the kernel
                        // may accept what either owned, so heartbeats wait (fail closed).
                        self.applied = may_accept(&self.applied, &rules);
                        self.stats.nft_failures += 1;
                        self.fail_closed("nft batch", &err);
                    }
                }
            }
            Done::Lease { result, at } => {
                self.lease_in_flight = false;
                // A refresh that failed may have committed too: the lease is judged
                // to run from it either way.
                self.lease_until = self.lease_until.max(at + self.lease.length);
                match result {
                    Ok(()) => {}
                    Err(err) => {
                        self.stats.lease_failures += 1;
                        self.fail_closed("lease refresh", &err);
                    }
                }
            }
            Done::VipAdded { vip, result } => match result {
                Ok(()) => {
                    self.stats.vips_restored += 1;
                    self.publish_now = true;
                    tracing::warn!(event = "nlb.vip_restored", vip = %vip,
                        "a VIP was removed from the interface by hand; it is back");
                }
                Err(err) => tracing::error!(event = "nlb.vip_restore_failed", vip = %vip,
                    error = %err, "cannot put the VIP back; check `ip addr` on the interface"),
            },
            Done::Tables {
                missing,
                local_ports,
            } => {
                self.checking_tables = false;
                if local_ports != self.local_ports {
                    // The netdev stage defers the replies to connections opened from a
                    // VIP by this range: with the old one, those on a new port would be
                    // judged by bucket and cut.
                    tracing::info!(event = "nlb.local_ports_changed", from = ?self.local_ports,
                        to = ?local_ports, "ip_local_port_range changed; replacing the tables");
                    self.local_ports = local_ports;
                    self.full_apply = true;
                    self.apply_dirty = true;
                }
                if !missing.is_empty() {
                    self.stats.tables_restored += 1;
                    self.publish_now = true;
                    tracing::warn!(event = "nlb.tables_restored", missing = ?missing,
                        "nlb's nft tables were removed (nft flush ruleset?); putting them back");
                    self.full_apply = true;
                    self.apply_dirty = true;
                }
            }
            Done::LiveBuckets {
                live,
                sources,
                started,
            } => {
                self.live_counting = false;
                let named = match sources {
                    DrainSources::WithConntrack => "ss, recent, conntrack",
                    DrainSources::WithoutConntrack => "ss, recent",
                };
                if live.is_ok() && self.stats.drain_sources != named {
                    if sources == DrainSources::WithoutConntrack {
                        tracing::warn!(
                            event = "nlb.drain_without_conntrack",
                            "the `conntrack` tool is not installed: a released bucket drains \
                             until this host's sockets in it are gone and its connections \
                             have been idle for drain_idle_ms, so a connection that is no \
                             socket of this host (behind DNAT) and idles longer loses it \
                             (Debian: apt-get install conntrack)"
                        );
                    }
                    self.stats.drain_sources = named.to_owned();
                }
                let live = match live {
                    Ok(live) => {
                        if std::mem::take(&mut self.drain_count_failing) {
                            tracing::info!(
                                event = "nlb.drain_count_restored",
                                "counting the draining buckets' connections works again"
                            );
                        }
                        live
                    }
                    Err(error) => {
                        self.stats.drain_count_failures += 1;
                        // Said when counts start to fail, not at every one.
                        if !std::mem::replace(&mut self.drain_count_failing, true) {
                            tracing::warn!(
                                event = "nlb.drain_count_failed", error = %error,
                                "cannot count the draining buckets' connections: released \
                                 buckets keep draining (their packets go through conntrack) \
                                 until it works; run the command above by hand to see why"
                            );
                        }
                        return;
                    }
                };
                self.stats.drain_counts += 1;
                self.publish_now = true;
                if self.drains.settle(&live, started) {
                    for (slot, state) in self.rules.iter_mut().enumerate() {
                        state.draining = self.drains.bitmap(slot);
                    }
                    self.note_draining();
                    self.apply_dirty = true;
                }
            }
            Done::Connections(Ok(count)) => {
                self.counting = false;
                if std::mem::take(&mut self.connection_count_failing) {
                    tracing::info!(
                        event = "nlb.connection_count_restored",
                        "counting the VIPs' connections works again"
                    );
                }
                self.connections = count;
                let now = self.clock.now();
                self.node.handle_connections(now, count);
            }
            Done::Connections(Err(error)) => {
                // The last count stands: a drainstop that took a failure for 0 would
                // end and cut every connection.
                self.counting = false;
                self.stats.connection_count_failures += 1;
                if !std::mem::replace(&mut self.connection_count_failing, true) {
                    tracing::warn!(event = "nlb.connection_count_failed", error = %error,
                        "cannot count the VIPs' connections with `ss`: a drainstop waits \
                         until it can (nlb_connection_count_failures counts)");
                }
            }
        }
    }

    /// Reads up to `limit` queued frames into the node; true if the limit was hit.
    pub(super) fn read_frames(&mut self, limit: usize) -> std::io::Result<bool> {
        for _ in 0..limit {
            match self.socket.get_ref().try_recv(&mut self.buf) {
                Ok(len) => {
                    let now = self.clock.now();
                    self.node.handle_frame(now, &self.buf[..len]);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// The node's timers, after the frames that queued meanwhile.
    pub(super) fn timeout(&mut self) {
        if let Err(err) = self.read_frames(FRAMES_BEFORE_TIMEOUT) {
            tracing::warn!(event = "nlb.recv_failed", error = %err);
        }
        let now = self.clock.now();
        self.node.handle_timeout(now);
    }

    /// Refreshes the lease, for what the node owns once it has run its timeouts.
    pub(super) fn refresh_lease(&mut self) {
        if !self.healthy || self.lease_in_flight {
            return;
        }
        self.timeout();
        self.flush();
        if !self.healthy {
            return;
        }
        self.lease_in_flight = true;
        self.kernel.submit(Job::Lease {
            command: self.ruleset().lease_refresh(),
        });
    }

    /// Checks, off the loop, that nlb's tables are all there.
    pub(super) fn check_tables(&mut self) {
        if self.checking_tables {
            return;
        }
        self.checking_tables = true;
        let table = self.ruleset().table();
        let tables = ["arp", "netdev", "inet"]
            .map(|family| format!("{family} {table}"))
            .to_vec();
        self.kernel.submit(Job::CheckTables { tables });
    }

    /// Publishes how many buckets drain, per rule slot.
    fn note_draining(&mut self) {
        self.stats.draining_buckets = self.rules.iter().map(|r| r.draining.len() as u64).collect();
    }

    /// Queues a count of the connections in draining buckets, if any drain.
    pub(super) fn count_live_buckets(&mut self) {
        if self.live_counting || !self.drains.any() {
            return;
        }
        self.live_counting = true;
        self.counter.submit(Job::LiveBuckets {
            config: Box::new(self.config.clone()),
            table: self.ruleset().table(),
            local_ports: self.local_ports,
        });
    }

    pub(super) fn count_connections(&mut self) {
        if !self.counting {
            self.counting = true;
            // On the counting worker: a slow `ss` must not delay an ownership change.
            self.counter.submit(Job::CountConnections {
                vips: self.config.cluster.vips.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_wire::bitmap::BucketBitmap;

    fn rule(buckets: &[u16]) -> RuleState {
        let mut owned = BucketBitmap::new(nlb_core::buckets::BUCKETS);
        for &bucket in buckets {
            owned.insert(bucket);
        }
        RuleState {
            owned,
            ..RuleState::empty(true)
        }
    }

    #[test]
    fn a_release_is_a_bucket_the_kernel_has_and_the_node_gave_up() {
        assert!(!releases(&[rule(&[1, 2])], &[rule(&[1, 2, 3])]), "a claim");
        assert!(releases(&[rule(&[1, 2])], &[rule(&[1])]));
        assert!(releases(&[rule(&[]), rule(&[7])], &[rule(&[]), rule(&[])]));
        assert!(!releases(&[rule(&[])], &[rule(&[])]));
    }

    #[test]
    fn a_failed_batch_may_have_applied_its_claims() {
        let may = may_accept(&[rule(&[1])], &[rule(&[2]), rule(&[9])]);
        assert_eq!(may.len(), 2);
        assert_eq!(may[0].owned.iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(may[1].owned.iter().collect::<Vec<_>>(), [9]);
        // So a node that then wants nothing holds its heartbeats.
        assert!(releases(&may, &[rule(&[]), rule(&[])]));
        assert!(!releases(&may, &[rule(&[1, 2]), rule(&[9])]));
    }

    #[test]
    fn heartbeats_are_recognised_tagged_or_not() {
        let mut frame = vec![0u8; 64];
        frame[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert!(is_heartbeat(&frame));
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_heartbeat(&frame), "ARP goes at once");
        frame[12..14].copy_from_slice(&[0x81, 0x00]);
        frame[16..18].copy_from_slice(&[0x88, 0xb5]);
        assert!(is_heartbeat(&frame));
        assert!(!is_heartbeat(&frame[..10]));
    }
}
