//! Health checks: what a down check does to the rules it guards.
//!
//! The daemon runs each `[[check]]` off the protocol loop and hands every result to
//! [`Node::handle_check`]; [`crate::check::CheckTracker`] turns results into a verdict
//! with `fall`/`rise` hysteresis. While a check is down:
//!
//! - this host says so in its heartbeats, per guarded rule (the rule record's
//!   `CHECK_DOWN` bit), and takes no share of the rule: its weight in the view's input is
//!   0, so the other members take its buckets, moving only those, as in a drain;
//! - with `action = "drain"` its existing connections of the rule stay (the kernel's
//!   conntrack keeps accepting them, as after `nlb drain`); with `action = "stop"` they
//!   are cut: their next packets reach the bucket's new owner, which resets them, so the
//!   clients reconnect to a live service at once.
//!
//! **Never black-hole a rule.** When every member that would take a share of a rule (not
//! drained, not disabled) has a check down for it, the check is wrong or something all
//! the hosts share has failed (a typo in the target, the database behind them all); then
//! taking everyone out would drop every client. So in that case every member ignores its
//! down checks for that rule and serves it as if they were up, and says so loudly
//! ([`Event::CheckPanic`]), in the spirit of Envoy's panic threshold. "Would take a
//! share" is one reading for the view's inputs and this rule (`MemberFacts::would_serve`
//! in `view.rs`): not draining, the rule enabled, a weight above 0 (a weight-0 standby
//! does not count). Every member computes this from the same heartbeats, so they agree on
//! it as on any other input of the view; as soon as one member's checks pass again, the
//! others leave the rule to it. A release before this one ignores the `CHECK_DOWN` bit:
//! in a cluster that mixes the two, a host whose check is down is still given a share by
//! the old hosts and takes none, so that share stays unserved until every host runs this
//! release (configure checks after the upgrade).
//!
//! A check's verdict is this host's own: peers see only the `CHECK_DOWN` bit, not which
//! check or why (`nlb query` on the host tells that).

use super::{Event, Node};
use crate::check::{CheckAction, CheckTracker, Health, Probe};
use crate::config::Config;
use crate::time::Instant;
use nlb_wire::bitmap::MemberSet;

impl Node {
    /// The result of one run of check `index` (its position in `[[check]]`). Returns the
    /// check's new verdict if it changed. An index the configuration does not have is
    /// ignored (the result of a check removed by a reload, still in flight).
    pub fn handle_check(&mut self, now: Instant, index: usize, probe: Probe) -> Option<Health> {
        self.detect_stall(now);
        let spec = self.config.checks.get(index)?;
        let tracker = self.checks.get_mut(index)?;
        let changed = tracker.record(now, spec, probe);
        if let Some(health) = changed {
            self.events.push_back(Event::CheckChanged {
                index,
                name: spec.name.clone(),
                health,
                error: tracker.last_error.clone(),
            });
            self.update(now);
        }
        changed
    }

    /// Each configured check with its state, in file order.
    pub fn checks(&self) -> impl Iterator<Item = (&crate::check::CheckSpec, &CheckTracker)> {
        self.config.checks.iter().zip(&self.checks)
    }

    /// Whether the rule in `slot` is in panic: every member that would take a share of it
    /// has a check down for it, so they all ignore those checks (see the module docs).
    pub fn check_panic(&self, slot: usize) -> bool {
        self.check_panic.get(slot).copied().unwrap_or(false)
    }

    /// What this host's down checks ask of the rule in `slot`, before the panic rule:
    /// `Stop` if any down check guarding it says stop, else `Drain` if any guards it.
    /// Checks guard configured rules only, as `nlb drain all` does: the fallback rule's
    /// traffic is no service's.
    pub(super) fn check_down(&self, slot: usize) -> Option<CheckAction> {
        if slot >= self.config.rules.len() {
            return None;
        }
        self.checks()
            .filter(|(spec, tracker)| tracker.health == Health::Down && spec.rules.guards(slot))
            .map(|(spec, _)| spec.action)
            .max_by_key(|action| matches!(action, CheckAction::Stop))
    }

    /// The panic rule for the rule in `slot` among `members`: true when at least one of
    /// them would take a share of it (not draining, the rule enabled, a weight above 0;
    /// `MemberFacts::would_serve`) and every such one has a check down for it. Peers are
    /// judged from their latest heartbeat, this host from its own state.
    pub(super) fn panics(&self, slot: usize, members: MemberSet) -> bool {
        let serving: Vec<bool> = members
            .iter()
            .filter_map(|host| self.member_facts(slot, host))
            .filter(|facts| facts.would_serve())
            .map(|facts| facts.check_down)
            .collect();
        !serving.is_empty() && serving.iter().all(|&down| down)
    }

    /// Whether this host's checks keep it out of the rule in `slot` now: a check down for
    /// it, and the rule not in panic.
    pub(super) fn kept_out_by_checks(&self, slot: usize) -> Option<CheckAction> {
        self.check_down(slot).filter(|_| !self.check_panic(slot))
    }

    /// Re-judges the panic rule for every slot under the installed view, and reports
    /// every change.
    pub(super) fn update_check_panic(&mut self) {
        let members = self.view.members;
        for slot in 0..self.check_panic.len() {
            let panic = !members.is_empty() && self.panics(slot, members);
            if panic != self.check_panic[slot] {
                self.check_panic[slot] = panic;
                self.events.push_back(Event::CheckPanic {
                    slot,
                    active: panic,
                });
            }
        }
    }

    /// The trackers for `config`'s checks: a check with the same name probing the same
    /// target as one of this node's keeps its verdict, whatever its timing now (a reload or
    /// a rejoin must not make a down check look up and send clients to a dead service);
    /// any other starts afresh.
    pub(super) fn carried_checks(&self, config: &Config) -> Vec<CheckTracker> {
        config
            .checks
            .iter()
            .map(|spec| {
                self.checks()
                    .find(|(old, _)| old.name == spec.name && old.kind == spec.kind)
                    .map(|(_, tracker)| tracker.clone())
                    .unwrap_or_default()
            })
            .collect()
    }
}
