//! Advertising: building this host's heartbeat and deciding when it goes out.

use super::{Node, Timer};
use crate::time::Instant;
use nlb_wire::bitmap::MemberSet;
use nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT;
use nlb_wire::heartbeat::{Echo, HeartbeatRepr, RuleStatus};

impl Node {
    /// Sends the next heartbeat soon: now, unless one went out less than a quarter
    /// period ago, which bounds the rate when things change quickly.
    pub(super) fn hurry_heartbeat(&mut self, now: Instant) {
        let soonest = self
            .last_heartbeat
            .map_or(now, |last| last + self.period / 4)
            .max(now);
        let next = self
            .timers
            .get(Timer::Heartbeat)
            .map_or(soonest, |at| at.min(soonest));
        self.timers.set(Timer::Heartbeat, next);
    }

    pub(super) fn rule_status(&self, slot: usize) -> RuleStatus {
        let rule = self.config.rules.get(slot);
        let switch = self.rule_switches[slot];
        RuleStatus {
            weight: rule.and_then(|r| r.weight),
            priority: rule.and_then(|r| r.priority),
            enabled: switch.enabled,
            draining: switch.draining,
            check_down: self.check_down(slot).is_some(),
            owned: self.owned[slot].clone(),
            target: self.view.maps[slot].buckets_of(self.id),
        }
    }

    pub(super) fn send_heartbeat(&mut self, now: Instant, live: MemberSet) {
        self.timers.set(Timer::Heartbeat, now + self.period);
        self.last_heartbeat = Some(now);
        self.sequence += 1;
        while self
            .sent
            .front()
            .is_some_and(|&(at, _)| now.saturating_since(at) > self.window)
        {
            self.sent.pop_front();
        }
        self.sent.push_back((now, self.sequence));
        let heartbeat = HeartbeatRepr {
            cluster_id: self.cluster_id,
            host_id: self.id,
            state: self.state_for_wire(),
            incarnation: self.incarnation,
            sequence: self.sequence,
            config_fingerprint: self.fingerprint,
            view_epoch: self.view.epoch,
            heartbeat_ms: self.config.cluster.heartbeat_ms,
            view_members: self.view.members,
            live_members: live,
            connections: self.connections,
            field_digests: self.field_digests,
            sender_mac: Some(self.mac),
            echoes: self.echoes(),
            rules: (0..self.owned.len())
                .map(|slot| self.rule_status(slot))
                .collect(),
        };
        self.transmits.push_back(heartbeat.to_frame(
            self.mac,
            self.heartbeat_dst,
            ETHERTYPE_NLB_HEARTBEAT,
            self.key.as_ref(),
        ));
        self.stats.heartbeats_sent += 1;
    }

    /// The echoes for the next heartbeat: the newest heartbeat of every sender heard,
    /// in id order. One per sender, so that two hosts that share an id (a duplicate)
    /// both hear their echo, find each other, and one of them stays out; at most
    /// [`MAX_ECHOES`](nlb_wire::heartbeat::MAX_ECHOES), which one per id always fits in.
    pub(super) fn echoes(&self) -> Vec<Echo> {
        let mut echoes: Vec<Echo> = self
            .peers
            .iter()
            .map(|(&(id, _), peer)| Echo {
                host_id: id,
                incarnation: peer.latest.incarnation,
                sequence: peer.latest.sequence,
            })
            .collect();
        if echoes.len() > nlb_wire::heartbeat::MAX_ECHOES {
            // Only duplicates push past one per id: keep the first sender of each id.
            echoes.dedup_by_key(|echo| echo.host_id);
            echoes.truncate(nlb_wire::heartbeat::MAX_ECHOES);
        }
        echoes
    }
}
