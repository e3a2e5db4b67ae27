//! View agreement and convergence: when a view is installed, what its maps are, when
//! the cluster has converged, and the host's state.
//!
//! # The convergence protocol
//!
//! Every host sends a heartbeat each period, and at once when something it advertises
//! changes. A heartbeat carries the sender's *live set* (the participating hosts it hears,
//! itself included), its installed *view* (epoch and members), and for every rule its
//! *target* (the buckets the view's map assigns it) and what it *owns* (accepts new
//! connections for).
//!
//! 1. A peer is live while its heartbeats keep arriving *and echo this host* (see
//!    `membership.rs`); after `tolerance` periods of silence it is dead.
//! 2. **Agreement.** When every host in my live set `L` advertises exactly `L` as its live
//!    set, the hosts agree on the membership. Each then installs the view `(epoch, L)`,
//!    where the epoch is one more than its current one (or the epoch a member already
//!    installed for `L`), and computes the new map from the previous targets of the
//!    members and their advertised weights ([`BucketMap::rebalance`]). Every host starts
//!    from the same targets, so every host computes the same map.
//! 3. **Release before claim** (`ownership.rs`). A host stops accepting a bucket as soon
//!    as it is not in its target, or as soon as any live peer's latest heartbeat lists it
//!    in its target.
//!    It starts accepting a bucket of its target only when every other member of its
//!    view advertises that same view (so they have released whatever the view does not
//!    give them) and no live peer lists the bucket. Two hosts that both hear each other
//!    therefore never accept new connections for one bucket at the same time, even if
//!    their maps disagree; disagreement costs availability, never safety.
//! 4. Connections a host already has stay with it: the kernel's conntrack accepts their
//!    packets whatever the bucket owner is. Only new connections follow the map.

use super::{Admin, Event, Node, Timer};
use crate::buckets::{BUCKETS, BucketMap, HostId};
use crate::config::RuleMode;
use crate::time::Instant;
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::heartbeat::HostState;

/// Periods a host that begins to take part waits, announcing itself, before it installs
/// its first view.
pub const JOIN_WAIT_PERIODS: u32 = 2;

/// Weight that "equal" stands for.
pub const EQUAL_WEIGHT: u32 = 100;

/// The map input of one rule: what every member's heartbeat says about it.
#[derive(Debug, Clone, PartialEq, Hash, Eq)]
pub(super) enum RuleInput {
    /// Multiple-host rule: each member's effective weight.
    Weights(Vec<(HostId, u32)>),
    /// Single-host rule or the default rule: the one owner.
    Single(Option<HostId>),
    /// Disabled rule.
    Nobody,
}

#[derive(Debug, Clone, PartialEq, Hash, Eq)]
pub(super) struct View {
    pub(super) epoch: u32,
    pub(super) members: MemberSet,
    pub(super) inputs: Vec<RuleInput>,
    pub(super) maps: Vec<BucketMap>,
}

/// What one member says about one rule: its own switches and state for this host, the
/// latest heartbeat for a peer. The one reading of a member's eligibility, for the view's
/// inputs and for the panic rule alike.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemberFacts {
    state: HostState,
    /// Its load weight ("equal" as [`EQUAL_WEIGHT`]).
    weight: u32,
    priority: Option<u8>,
    enabled: bool,
    draining: bool,
    /// Whether it says a health check guarding the rule is down (never for the fallback
    /// rule, which checks do not guard).
    pub(super) check_down: bool,
}

impl MemberFacts {
    /// Whether the member would take a share of the rule, its health checks aside: not
    /// draining, the rule enabled and not drained, a weight above 0.
    pub(super) fn would_serve(&self) -> bool {
        self.state != HostState::Draining && self.enabled && !self.draining && self.weight > 0
    }
}

impl Node {
    /// What member `host` says about the rule in `slot`; `None` for a peer not heard or
    /// whose heartbeat lacks the rule.
    pub(super) fn member_facts(&self, slot: usize, host: HostId) -> Option<MemberFacts> {
        let guarded = slot < self.config.rules.len();
        if host == self.id {
            let rule = self.config.rules.get(slot);
            let switch = self.rule_switches.get(slot)?;
            return Some(MemberFacts {
                state: self.state_for_wire(),
                weight: rule.and_then(|r| r.weight).map_or(EQUAL_WEIGHT, u32::from),
                priority: rule.and_then(|r| r.priority),
                enabled: switch.enabled,
                draining: switch.draining,
                check_down: self.check_down(slot).is_some(),
            });
        }
        let peer = self.peer(host)?;
        let rule = peer.latest.rules.get(slot)?;
        Some(MemberFacts {
            state: peer.latest.state,
            weight: rule.weight.map_or(EQUAL_WEIGHT, u32::from),
            priority: rule.priority,
            enabled: rule.enabled,
            draining: rule.draining,
            check_down: guarded && rule.check_down,
        })
    }

    /// What every member of `members` says about each rule.
    pub(super) fn rule_inputs(&self, members: MemberSet) -> Vec<RuleInput> {
        let configured = self.config.rules.len();
        (0..=configured)
            .map(|slot| {
                let mode = self
                    .config
                    .rules
                    .get(slot)
                    .map_or(crate::config::Rule::FALLBACK.mode, |rule| rule.mode);
                let panic = self.panics(slot, members);
                // (host, effective weight, priority) of each member for this rule.
                let facts: Vec<(HostId, u32, Option<u8>)> = members
                    .iter()
                    .filter_map(|host| {
                        let facts = self.member_facts(slot, host)?;
                        // A down health check keeps its host out, unless the rule is
                        // in panic (health.rs).
                        let weight = if facts.would_serve() && (!facts.check_down || panic) {
                            facts.weight
                        } else {
                            0
                        };
                        Some((host, weight, facts.priority))
                    })
                    .collect();
                match mode {
                    RuleMode::Disabled => RuleInput::Nobody,
                    RuleMode::Multiple => {
                        RuleInput::Weights(facts.iter().map(|&(h, w, _)| (h, w)).collect())
                    }
                    RuleMode::Single => RuleInput::Single(
                        facts
                            .iter()
                            .filter(|&&(_, weight, _)| weight > 0)
                            .min_by_key(|&&(host, _, priority)| (priority.unwrap_or(host), host))
                            .map(|&(host, _, _)| host),
                    ),
                }
            })
            .collect()
    }

    pub(super) fn maybe_install_view(&mut self, now: Instant, live: MemberSet) {
        let participating = self.participating();
        if participating && !self.was_participating {
            self.timers
                .set(Timer::JoinWait, now + self.period * JOIN_WAIT_PERIODS);
        }
        self.was_participating = participating;
        if self.timers.is_due(Timer::JoinWait, now) {
            self.timers.stop(Timer::JoinWait);
        }
        if !participating {
            self.timers.stop(Timer::JoinWait);
            if !self.view.members.is_empty() {
                self.view.members = MemberSet::EMPTY;
                self.view.maps = vec![BucketMap::unowned(); self.owned.len()];
                self.view.inputs = vec![RuleInput::Nobody; self.owned.len()];
            }
            return;
        }
        let agreed = live.iter().filter(|&h| h != self.id).all(|host| {
            self.peer(host)
                .is_some_and(|peer| peer.latest.live_members == live)
        });
        if live != self.view.members && self.converged {
            // A change in membership begins now, even before everyone agrees on it.
            self.change_started = now;
            self.converged = false;
        }
        if self.timers.is_due(Timer::StallWait, now) {
            self.timers.stop(Timer::StallWait);
        }
        if !agreed
            || (self.view.members.is_empty()
                && (self.timers.is_armed(Timer::JoinWait)
                    || self.timers.is_armed(Timer::StallWait)))
        {
            return;
        }
        let inputs = self.rule_inputs(live);
        let ahead = live
            .iter()
            .filter_map(|h| self.peer(h))
            .filter(|peer| peer.latest.view_members == live)
            .map(|peer| peer.latest.view_epoch)
            .max()
            .unwrap_or(0);
        if live == self.view.members && inputs == self.view.inputs && ahead <= self.view.epoch {
            return;
        }
        let epoch = self.view.epoch.saturating_add(1).max(ahead);
        let bases = self.base_maps(live);
        let mut moved = 0;
        let maps: Vec<BucketMap> = inputs
            .iter()
            .zip(bases)
            .enumerate()
            .map(|(slot, (input, base))| {
                let next = match input {
                    RuleInput::Nobody => BucketMap::unowned(),
                    RuleInput::Single(owner) => BucketMap::all_to(*owner),
                    RuleInput::Weights(weights) => base.rebalance(weights),
                };
                moved += self.view.maps[slot].moved_to(&next);
                next
            })
            .collect();
        let departed: Vec<HostId> = self
            .view
            .members
            .iter()
            .filter(|h| !live.contains(*h))
            .collect();
        let gained_from_departed = maps.iter().zip(&self.view.maps).any(|(next, before)| {
            (0..BUCKETS).any(|b| {
                next.owner(b) == Some(self.id)
                    && before
                        .owner(b)
                        .is_some_and(|owner| departed.contains(&owner))
            })
        });
        if self.converged {
            self.change_started = now;
        }
        self.view = View {
            epoch,
            members: live,
            inputs,
            maps,
        };
        self.targets_changed = true;
        self.converged = false;
        self.stats.views_installed += 1;
        self.events.push_back(Event::ViewInstalled {
            epoch,
            members: live,
            moved,
        });
        if gained_from_departed {
            self.schedule_announcements(now);
        }
        self.hurry_heartbeat(now);
    }

    /// The maps a new view starts from. A host with a view starts from its own maps:
    /// every member of one view has the same ones, so they all compute the same next
    /// maps. A joining host has none, so it rebuilds them from what each member of `live`
    /// was assigned before it joined: the targets in its latest heartbeat, or, if that
    /// member already installed a view that includes the joiner, the targets it had
    /// before.
    pub(super) fn base_maps(&self, live: MemberSet) -> Vec<BucketMap> {
        if !self.view.members.is_empty() {
            return self.view.maps.clone();
        }
        let previous: Vec<(HostId, Vec<BucketBitmap>)> = live
            .iter()
            .filter(|&host| host != self.id)
            .filter_map(|host| {
                let peer = self.peer(host)?;
                let targets = if peer.latest.view_members.contains(self.id) {
                    peer.previous_targets.clone()?
                } else {
                    peer.latest.rules.iter().map(|r| r.target.clone()).collect()
                };
                Some((host, targets))
            })
            .collect();
        (0..self.owned.len())
            .map(|slot| {
                BucketMap::from_targets(
                    previous
                        .iter()
                        .filter_map(|(host, targets)| Some((*host, targets.get(slot)?))),
                )
            })
            .collect()
    }

    /// Makes the maps agree with what the members advertise, once every member has
    /// installed this view. Maps can disagree after a partition heals (each side kept
    /// its own) or after a race between changes; then some bucket is in two targets,
    /// which stalls it (both hosts yield it), or in none. Every member sees the same
    /// advertised targets, so every member repairs to the same maps: overlaps go to the
    /// lowest id, and the result is rebalanced to the view's weights.
    pub(super) fn repair_maps(&mut self, now: Instant) {
        if !std::mem::take(&mut self.targets_changed)
            || !self.participating()
            || self.view.members.len() < 2
        {
            return;
        }
        let view = (self.view.epoch, self.view.members);
        let mut advertised: Vec<(HostId, Vec<BucketBitmap>)> = vec![(self.id, self.targets())];
        for host in self.view.members.iter().filter(|&h| h != self.id) {
            match self.peer(host) {
                Some(peer) if peer.view() == view => advertised.push((
                    host,
                    peer.latest.rules.iter().map(|r| r.target.clone()).collect(),
                )),
                _ => {
                    // Not every member has this view yet: look again when one changes.
                    self.targets_changed = true;
                    return;
                }
            }
        }
        let mut repaired = false;
        for slot in 0..self.owned.len() {
            let RuleInput::Weights(weights) = &self.view.inputs[slot] else {
                continue;
            };
            let seen = BucketMap::from_targets(
                advertised
                    .iter()
                    .filter_map(|(host, targets)| Some((*host, targets.get(slot)?))),
            );
            if seen == self.view.maps[slot] {
                continue;
            }
            let next = seen.rebalance(weights);
            if next != self.view.maps[slot] {
                self.view.maps[slot] = next;
                repaired = true;
            }
        }
        if repaired {
            self.stats.map_repairs += 1;
            self.hurry_heartbeat(now);
        }
    }

    pub(super) fn update_state(&mut self, now: Instant) {
        if self.admin == Admin::Draining && self.connections == 0 && !self.suspended {
            self.admin = Admin::Stopped;
        }
        let participating = self.participating();
        let all_settled = participating
            && self.view.members.contains(self.id)
            && self.view.members.iter().all(|host| {
                if host == self.id {
                    return self.targets().iter().zip(&self.owned).enumerate().all(
                        |(slot, (target, owned))| {
                            let switch = self.rule_switches[slot];
                            !(self.admin == Admin::Started && switch.enabled && !switch.draining)
                                || target == owned
                        },
                    );
                }
                self.peer(host).is_some_and(|peer| {
                    peer.view() == (self.view.epoch, self.view.members)
                        && peer
                            .latest
                            .rules
                            .iter()
                            .all(|rule| rule.owned == rule.target || !rule.enabled || rule.draining)
                })
            });
        if all_settled && !self.converged {
            self.converged = true;
            let duration = now.saturating_since(self.change_started);
            self.stats.convergences += 1;
            self.stats.last_convergence = Some(duration);
            self.events.push_back(Event::Converged {
                epoch: self.view.epoch,
                duration,
            });
        } else if !all_settled && self.converged {
            self.converged = false;
            self.change_started = now;
        }
        let state = self.compute_state();
        if state != self.state {
            self.events.push_back(Event::StateChanged {
                from: self.state,
                to: state,
            });
            self.state = state;
            self.hurry_heartbeat(now);
        }
    }

    pub(super) fn compute_state(&self) -> HostState {
        if self.suspended {
            HostState::Suspended
        } else if self.misconfig.is_some() {
            HostState::Misconfigured
        } else {
            match self.admin {
                Admin::Stopped => HostState::Stopped,
                Admin::Draining => HostState::Draining,
                Admin::Started if self.converged => HostState::Converged,
                Admin::Started => HostState::Converging,
            }
        }
    }

    /// The state as peers should see it. A host that is still probing says `stopped`:
    /// peers learn its MAC but do not count it as a member yet.
    pub(super) fn state_for_wire(&self) -> HostState {
        if self.probing_since.is_some() {
            HostState::Stopped
        } else {
            self.state
        }
    }
}
