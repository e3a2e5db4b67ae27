//! Ownership: which buckets this host accepts new connections for, the operator's rule
//! switches, and the stall rule.
//!
//! # Release before claim
//!
//! A host stops accepting a bucket as soon as it is not in its target, or as soon as any
//! live peer's latest heartbeat lists it in its target. It starts accepting a bucket of
//! its target only when every other member of its view advertises that same view and no
//! live peer lists the bucket (rule 3 of the protocol in `view.rs`). A host accepts
//! nothing new while it is stopped, draining, suspended, misconfigured or its data
//! plane fails ([`Node::handle_dataplane`](super::Node::handle_dataplane)).
//!
//! # Stalls: a host that did not run
//!
//! The kernel honours a host's buckets only for the ownership lease after the daemon's
//! last refresh, and peers declare a host dead after the failure window of silence
//! ([`crate::lease`] has both numbers and how they relate). A host that was paused
//! (a VM frozen for a migration or a snapshot, a swap storm), whose clock jumped
//! forward, or whose loop was starved, cannot know what its peers decided meanwhile:
//! they may have taken its buckets. So at every input, before anything else, a host
//! that has not sent a heartbeat for [`stall_threshold`](crate::lease::stall_threshold) **suspects itself**:
//!
//! - it releases every bucket (existing connections stay, as in a drainstop);
//! - it forgets its view and every peer's last heartbeat, all of which may be stale;
//! - it comes back through the join path: it listens for a whole failure window, so that
//!   every live peer is heard (and every queued, stale frame is superseded by a fresh
//!   one) before it may install any view, and then it claims a bucket only under a view
//!   every member advertises and no live peer lists the bucket (release before claim).
//!
//! The node cannot tell a pause from a jump of the clock or a starved loop, and does not
//! need to: in each case its ownership may no longer be its own.

use super::view::RuleInput;
use super::{Action, Admin, CommandError, Event, Node, RuleSelector, RuleSwitch, Timer};
use crate::buckets::{BUCKETS, BucketMap, HostId};
use crate::check::CheckAction;
use crate::time::Instant;
use nlb_wire::bitmap::{BucketBitmap, MemberSet};

impl Node {
    /// Who accepts each bucket of rule `slot` for new connections now, as this host
    /// knows it: itself from its own ownership, each peer from its latest heartbeat
    /// (`None`: nobody). For display: two claimants (which the protocol never lets two
    /// live hosts be) show as the lower id.
    pub fn bucket_owners(&self, slot: usize) -> Vec<Option<HostId>> {
        let mut owners = vec![None; usize::from(BUCKETS)];
        let claims =
            self.owned
                .get(slot)
                .map(|owned| (self.id, owned))
                .into_iter()
                .chain(self.peers.iter().filter_map(|(&(id, _), peer)| {
                    Some((id, &peer.latest.rules.get(slot)?.owned))
                }));
        for (id, owned) in claims {
            for bucket in owned.iter() {
                if let Some(owner) = owners.get_mut(usize::from(bucket)) {
                    *owner = Some(owner.map_or(id, |other: HostId| other.min(id)));
                }
            }
        }
        owners
    }

    pub(super) fn switch_rules(
        &mut self,
        selector: RuleSelector,
        enabled: bool,
        draining: bool,
    ) -> Result<(), CommandError> {
        let configured = self.config.rules.len();
        let range = match selector {
            RuleSelector::All => 0..configured,
            RuleSelector::Index(index) if index < configured => index..index + 1,
            RuleSelector::Index(index) => return Err(CommandError::NoSuchRule(index)),
        };
        for switch in &mut self.rule_switches[range] {
            *switch = RuleSwitch { enabled, draining };
        }
        Ok(())
    }

    /// The stall rule of the module docs: run at every input, before anything else.
    pub(super) fn detect_stall(&mut self, now: Instant) {
        let Some(last) = self.last_heartbeat else {
            return;
        };
        let silent = now.saturating_since(last);
        if silent <= self.stall_after {
            return;
        }
        self.stats.stalls += 1;
        self.events.push_back(Event::Stalled { silent });
        // Release first: whatever follows, this host accepts nothing new until it has
        // rejoined.
        for slot in 0..self.owned.len() {
            if !self.owned[slot].is_empty() {
                self.owned[slot] = BucketBitmap::new(BUCKETS);
                self.actions.push_back(Action::SetRule {
                    rule: slot,
                    owned: self.owned[slot].clone(),
                    keep_established: self.keep_established[slot],
                });
            }
        }
        // The epoch stays: views only move forward.
        self.view.members = MemberSet::EMPTY;
        self.view.maps = vec![BucketMap::unowned(); self.owned.len()];
        self.view.inputs = vec![RuleInput::Nobody; self.owned.len()];
        self.peers.clear();
        self.targets_changed = true;
        self.converged = false;
        self.change_started = now;
        // Rejoin, listening for a whole window first, whatever the host's state is now
        // (a misconfiguration judged from forgotten peers may clear meanwhile).
        self.timers.set(Timer::StallWait, now + self.window);
        // Tell the peers at once that this host owns nothing.
        self.timers.set(Timer::Heartbeat, now);
    }

    pub(super) fn update_ownership(&mut self, now: Instant) {
        let participating = self.participating();
        let accepting_new = participating && self.admin == Admin::Started && self.dataplane_healthy;
        // A misconfigured host takes no new connections but keeps the ones it has.
        let keep_established = self.admin != Admin::Stopped && !self.suspended;
        let acked = self
            .view
            .members
            .iter()
            .filter(|&h| h != self.id)
            .all(|host| {
                self.peer(host)
                    .is_some_and(|peer| peer.view() == (self.view.epoch, self.view.members))
            });
        let mut changed = false;
        for (slot, target) in self.targets().into_iter().enumerate() {
            let switch = self.rule_switches[slot];
            let mut next = BucketBitmap::new(BUCKETS);
            if accepting_new && switch.enabled && !switch.draining {
                for bucket in target.iter() {
                    let listed_elsewhere = self.peers.iter().any(|(&(id, mac), peer)| {
                        (id, mac) != (self.id, self.mac)
                            && peer
                                .latest
                                .rules
                                .get(slot)
                                .is_some_and(|rule| rule.target.contains(bucket))
                    });
                    if listed_elsewhere {
                        continue;
                    }
                    if acked || self.owned[slot].contains(bucket) {
                        next.insert(bucket);
                    }
                }
            }
            // A check down with `action = "stop"` cuts this host's connections of the
            // rule: their next packets reach the bucket's new owner (health.rs).
            let keep = keep_established
                && switch.enabled
                && self.kept_out_by_checks(slot) != Some(CheckAction::Stop);
            if next != self.owned[slot] || keep != self.keep_established[slot] {
                self.owned[slot] = next.clone();
                self.keep_established[slot] = keep;
                self.actions.push_back(Action::SetRule {
                    rule: slot,
                    owned: next,
                    keep_established: keep,
                });
                changed = true;
            }
        }
        if changed {
            self.hurry_heartbeat(now);
        }
    }
}
