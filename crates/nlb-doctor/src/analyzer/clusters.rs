//! Clusters: nlb heartbeats (0x88B5) and Windows NLB heartbeats (0x886F). One
//! [`ClusterSeen`] per cluster and VLAN, one [`HostSeen`](crate::model::HostSeen) per
//! host id; `nlb_duplicate_host_id` when a second source MAC sends one host id,
//! `nlb_inconsistent_rules` when the hosts' configuration fingerprints or port rules
//! differ. The summary of each cluster is rendered at the end (`nlb_cluster`). Each nlb
//! heartbeat's owned buckets, and each cluster IP, also go to `ownership.rs`
//! (`nlb_double_ownership`, and the VIPs whose traffic `double_answer` reads), once it
//! is believed: verified by the cluster key when one is given (`nlb_forged_heartbeat`
//! otherwise), sent from the MAC it carries (`malformed` otherwise, as nlb hosts drop
//! it), and newer than every heartbeat of its sender (`nlb_replayed_heartbeat`).

use super::{Analyzer, MS};
use crate::finding::{Kind, Severity};
use crate::link::Frame;
use crate::model::{
    ClusterKey, ClusterSeen, Evidence, HostSeen, MAX_MACS, SILENT_PERIODS, Subject,
};
use foldhash::HashMap;
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::heartbeat::{AntiReplay, HeartbeatPacket, HeartbeatRepr};
use nlb_wire::msnlb::MsNlbHeartbeat;
use nlb_wire::{Error, MacAddr};
use std::net::Ipv4Addr;

/// Clusters tracked at most.
const MAX_CLUSTERS: usize = 1024;
/// nlb heartbeat senders whose newest heartbeat is remembered, for replays.
const MAX_SENDERS: usize = 4096;

/// One sender of nlb heartbeats: a host id of a cluster, from one MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Sender {
    cluster: ClusterKey,
    host_id: u8,
    mac: MacAddr,
}
/// Hosts tracked per cluster at most.
const MAX_HOSTS: usize = 256;

impl Analyzer {
    /// Whether `ip` is a VIP given with `--vip`, or the IP of a cluster seen in the
    /// heartbeats (for an IGMP-mode cluster, whose MAC names only the VIP's last two
    /// bytes: one whose cluster MAC ends in them).
    pub(super) fn is_cluster_ip(&self, ip: Ipv4Addr) -> bool {
        let [_, _, c, d] = ip.octets();
        self.model.is_vip(ip)
            || self.model.clusters.values().any(|cluster| {
                cluster.cluster_ip == Some(ip)
                    || cluster.dst_macs.iter().any(|mac| {
                        matches!(classify_mac(*mac), Some(NlbMac::IgmpCluster(_)))
                            && mac.0[4..] == [c, d]
                    })
            })
    }

    /// The cluster's record, made on first sight; `None` once [`MAX_CLUSTERS`] are
    /// tracked and this is another one.
    fn cluster_entry(&mut self, key: ClusterKey, frame: &Frame<'_>) -> Option<&mut ClusterSeen> {
        let clusters = &mut self.model.clusters;
        if clusters.len() >= MAX_CLUSTERS && !clusters.contains_key(&key) {
            self.model.counters.untracked += 1;
            return None;
        }
        if let Some(src) = frame.src
            && self.cluster_hosts.len() < self.settings.max_tracked
        {
            self.cluster_hosts.insert(src);
        }
        let cluster = clusters.entry(key).or_insert_with(|| ClusterSeen {
            first_frame: frame.number,
            first_ts: frame.ts_ns,
            ..ClusterSeen::default()
        });
        cluster.frames += 1;
        cluster.last_frame = frame.number;
        cluster.last_ts = frame.ts_ns;
        if let Some(dst) = frame.dst
            && !cluster.dst_macs.contains(&dst)
            && cluster.dst_macs.len() < MAX_MACS
        {
            cluster.dst_macs.push(dst);
        }
        Some(cluster)
    }

    pub(super) fn handle_msnlb(&mut self, frame: &Frame<'_>) {
        let heartbeat = match MsNlbHeartbeat::decode(frame.payload) {
            Ok(heartbeat) => heartbeat,
            Err(_) if frame.cut => {
                self.malformed(
                    frame,
                    "Windows NLB heartbeat: cut by the capture's snap length before its header ends",
                    Severity::Info,
                );
                return;
            }
            Err(_) => {
                self.malformed(frame, "Windows NLB heartbeat: malformed", Severity::Warning);
                return;
            }
        };
        self.model.counters.msnlb_heartbeats += 1;
        self.learn_vip(heartbeat.cluster_ip, true);
        let key = ClusterKey::Windows {
            vlan: frame.vlan,
            cluster_ip: heartbeat.cluster_ip,
        };
        let src = frame.src;
        let Some(cluster) = self.cluster_entry(key, frame) else {
            return;
        };
        cluster.cluster_ip = Some(heartbeat.cluster_ip);
        cluster.version = Some(heartbeat.version);
        cluster.truncated |= heartbeat.truncation.is_some();
        if let Some(src) = src
            && classify_mac(src)
                == Some(NlbMac::MaskedHost {
                    host_id: heartbeat.host_id as u8,
                    vip: heartbeat.cluster_ip,
                })
        {
            cluster.masked_sources = true;
        }
        let Some(host) = self.heard_host(key, frame, heartbeat.host_id) else {
            return;
        };
        host.dedicated_ip = Some(heartbeat.dedicated_ip);
        if let Some(body) = &heartbeat.membership {
            host.convergence_state = body.convergence_state.or(host.convergence_state);
            host.rule_count = body.port_rule_count.or(host.rule_count);
            if let Some(count) = body.port_rule_count
                && body.port_rule_codes.len() >= usize::from(count)
            {
                host.rule_codes = Some(body.port_rule_codes[..usize::from(count)].to_vec());
            }
        }
        self.check_cluster(frame, key, heartbeat.host_id);
    }

    pub(super) fn handle_nlb_heartbeat(&mut self, frame: &Frame<'_>) {
        let key = self.settings.heartbeat_key.as_ref();
        let parsed = HeartbeatPacket::new_checked(frame.payload)
            .and_then(|packet| HeartbeatRepr::parse(&packet, key));
        let heartbeat = match parsed {
            Ok(heartbeat) => heartbeat,
            // Version 1 has no tag a key of this release verifies: its hosts drop it too.
            Err(Error::BadTag | Error::Unsupported(_)) => {
                self.forged_heartbeat(frame);
                return;
            }
            Err(Error::Truncated { .. }) if frame.cut => {
                self.malformed(
                    frame,
                    "nlb heartbeat: cut by the capture's snap length",
                    Severity::Info,
                );
                return;
            }
            Err(_) => {
                self.malformed(frame, "nlb heartbeat: malformed", Severity::Warning);
                return;
            }
        };
        self.model.counters.nlb_heartbeats += 1;
        // nlb hosts drop a heartbeat sent from a MAC other than the one it carries
        // (`SpoofedSource`): believed, it would name a host that did not send it, and
        // its incarnation would make that host's own heartbeats look replayed.
        if let (Some(named), Some(src)) = (heartbeat.sender_mac, frame.src)
            && named != src
        {
            self.malformed(
                frame,
                "nlb heartbeat: sent from a MAC other than the sender MAC it carries (nlb hosts drop it as spoofed)",
                Severity::Warning,
            );
            return;
        }
        let key = ClusterKey::Nlb {
            vlan: frame.vlan,
            cluster_id: heartbeat.cluster_id,
        };
        let Some(cluster) = self.cluster_entry(key, frame) else {
            return;
        };
        if cluster.cluster_ip.is_none() {
            cluster.cluster_ip = frame.dst.and_then(|dst| match classify_mac(dst) {
                Some(NlbMac::UnicastCluster(vip) | NlbMac::MulticastCluster(vip)) => Some(vip),
                _ => None,
            });
        }
        if !self.fresh_heartbeat(frame, key, &heartbeat) {
            return;
        }
        self.note_claims(frame, key, &heartbeat);
        let host_id = u32::from(heartbeat.host_id);
        let Some(host) = self.heard_host(key, frame, host_id) else {
            return;
        };
        host.state = Some(heartbeat.state.name());
        host.fingerprint = Some(heartbeat.config_fingerprint);
        host.field_digests = Some(heartbeat.field_digests.to_vec());
        host.view = Some((heartbeat.view_epoch, heartbeat.view_members.0));
        host.heartbeat_ms = Some(heartbeat.heartbeat_ms);
        host.incarnation = Some(heartbeat.incarnation);
        host.owned_equals_target = heartbeat.rules.iter().all(|r| r.owned == r.target);
        host.owned_buckets = heartbeat.rules.iter().map(|r| r.owned.len()).sum();
        self.check_cluster(frame, key, host_id);
    }

    /// A heartbeat the cluster key does not verify: not from a host with the key, so it
    /// is counted under `nlb_forged_heartbeat` and takes no part in the analysis (no
    /// host, no claims, no cluster made for it).
    fn forged_heartbeat(&mut self, frame: &Frame<'_>) {
        let Ok(packet) = HeartbeatPacket::new_checked(frame.payload) else {
            return;
        };
        self.model.counters.nlb_heartbeats += 1;
        let cluster = ClusterKey::Nlb {
            vlan: frame.vlan,
            cluster_id: packet.cluster_id(),
        };
        let macs: Vec<MacAddr> = frame.src.into_iter().collect();
        self.count(
            Kind::NlbForgedHeartbeat,
            Severity::Error,
            frame,
            None,
            Subject::Cluster(cluster),
            &macs,
        );
    }

    /// Whether `heartbeat` is newer than every one seen from its sender (cluster, host
    /// id, MAC), by the daemons' own rule ([`AntiReplay`]). A frame seen twice (the same
    /// incarnation and sequence) is counted in `duplicate_heartbeats` and read once; an
    /// older one is a replay (`nlb_replayed_heartbeat`). Neither goes further: a replay
    /// must not make a dead host look alive, or a host claim what it released. At most
    /// [`MAX_SENDERS`] senders are followed; heartbeats of others are read unchecked.
    fn fresh_heartbeat(
        &mut self,
        frame: &Frame<'_>,
        cluster: ClusterKey,
        heartbeat: &HeartbeatRepr,
    ) -> bool {
        let Some(mac) = heartbeat.sender_mac.or(frame.src) else {
            return true;
        };
        let sender = Sender {
            cluster,
            host_id: heartbeat.host_id,
            mac,
        };
        let full = self.heartbeat_senders.len() >= MAX_SENDERS;
        let replay = match self.heartbeat_senders.get_mut(&sender) {
            Some(newest) => newest.check(heartbeat.incarnation, heartbeat.sequence),
            None if full => {
                self.model.counters.untracked += 1;
                return true;
            }
            None => {
                let mut newest = AntiReplay::default();
                let fresh = newest.check(heartbeat.incarnation, heartbeat.sequence);
                self.heartbeat_senders.insert(sender, newest);
                fresh
            }
        };
        let Err(replay) = replay else {
            return true;
        };
        if replay.got == replay.newest {
            self.model.counters.duplicate_heartbeats += 1;
            return false;
        }
        let macs: Vec<MacAddr> = frame.src.into_iter().collect();
        let record = self.count(
            Kind::NlbReplayedHeartbeat,
            Severity::Warning,
            frame,
            None,
            Subject::Cluster(cluster),
            &macs,
        );
        record.evidence = Evidence::Replay {
            host_id: heartbeat.host_id,
            got: replay.got,
            newest: replay.newest,
        };
        false
    }

    /// The record of host `host_id` of cluster `key`, counting this heartbeat; `None`
    /// once the cluster has [`MAX_HOSTS`] and this is another.
    fn heard_host(
        &mut self,
        key: ClusterKey,
        frame: &Frame<'_>,
        host_id: u32,
    ) -> Option<&mut HostSeen> {
        let cluster = self.model.clusters.get_mut(&key)?;
        if cluster.hosts.len() >= MAX_HOSTS && !cluster.hosts.contains_key(&host_id) {
            return None;
        }
        let mut resumed = false;
        let host = cluster.hosts.entry(host_id).or_insert_with(|| HostSeen {
            first_ts: frame.ts_ns,
            ..HostSeen::default()
        });
        // The period the host announced last time: a gap is measured in it.
        if let Some(ms) = host.heartbeat_ms
            && host.heartbeats > 0
        {
            let gap = frame.ts_ns - host.last_ts;
            if gap > SILENT_PERIODS * i64::from(ms) * MS {
                host.gaps += 1;
                if host.longest_gap.is_none_or(|(longest, ..)| gap > longest) {
                    host.longest_gap = Some((gap, frame.number, frame.ts_ns));
                }
                resumed = !std::mem::take(&mut host.silence_raised);
            }
        }
        host.heartbeats += 1;
        host.last_ts = frame.ts_ns;
        if resumed {
            // A gap the sweep did not see (shorter than its second): raised now, so
            // `nlb watch` shows it as it ends.
            self.raise_gap(key, host_id, frame.number, frame.ts_ns);
        }
        self.model.clusters.get_mut(&key)?.hosts.get_mut(&host_id)
    }

    /// After a heartbeat's facts are recorded: a second source MAC for one host id is a
    /// duplicate id, and the hosts' configurations must agree.
    fn check_cluster(&mut self, frame: &Frame<'_>, key: ClusterKey, host_id: u32) {
        let Some(host) = self
            .model
            .clusters
            .get_mut(&key)
            .and_then(|cluster| cluster.hosts.get_mut(&host_id))
        else {
            return;
        };
        let new_mac = frame.src.filter(|mac| !host.macs.contains(mac));
        let duplicate = new_mac.is_some() && !host.macs.is_empty();
        if let Some(mac) = new_mac
            && host.macs.len() < MAX_MACS
        {
            host.macs.push(mac);
        }
        let macs = host.macs.clone();
        if let Some(mac) = new_mac {
            self.note_host_mac(mac, key, host_id);
        }
        // Keyed by the cluster, not its IP, which may be learnt only later (IGMP mode);
        // explain fills the IP in.
        if duplicate {
            self.count(
                Kind::NlbDuplicateHostId,
                Severity::Error,
                frame,
                None,
                Subject::ClusterHost {
                    cluster: key,
                    host_id,
                },
                &macs,
            );
        }
        if self.rules_disagree(key) {
            self.count(
                Kind::NlbInconsistentRules,
                Severity::Error,
                frame,
                None,
                Subject::Cluster(key),
                &[],
            );
        }
    }

    /// Whether the latest heartbeats of a cluster's hosts disagree on configuration.
    fn rules_disagree(&self, key: ClusterKey) -> bool {
        let Some(cluster) = self.model.clusters.get(&key) else {
            return false;
        };
        let mut fingerprints = cluster.hosts.values().filter_map(|h| h.fingerprint);
        let mut codes = cluster.hosts.values().filter_map(|h| h.rule_codes.as_ref());
        let first_fingerprint = fingerprints.next();
        let first_codes = codes.next();
        fingerprints.any(|f| Some(f) != first_fingerprint) || codes.any(|c| Some(c) != first_codes)
    }

    /// At the end: an IGMP-mode cluster MAC does not name the VIP; ARP does: the IP that
    /// the cluster MAC claims. And the MAC that claims each cluster IP, for the mode.
    pub(super) fn fill_cluster_ips(&mut self) {
        let owners: HashMap<MacAddr, Ipv4Addr> = self
            .ip_states
            .iter()
            .filter_map(|state| {
                let mac = state.owner?;
                matches!(classify_mac(mac), Some(NlbMac::IgmpCluster(_)))
                    .then(|| (mac, Ipv4Addr::from(state.key as u32)))
            })
            .collect();
        let keys: Vec<ClusterKey> = self.model.clusters.keys().copied().collect();
        for key in keys {
            let cluster = &self.model.clusters[&key];
            let ip = cluster
                .cluster_ip
                .or_else(|| cluster.dst_macs.iter().find_map(|m| owners.get(m).copied()));
            let arp_owner = ip.and_then(|ip| self.owner_of(key.vlan(), ip));
            if let Some(cluster) = self.model.clusters.get_mut(&key) {
                cluster.cluster_ip = ip;
                cluster.arp_owner = arp_owner;
            }
        }
    }

    /// The `nlb_heartbeat_gap` record of a host, made at (`frame`, `ts`) on first sight:
    /// what `poll_raised` hands out as the silence is seen.
    fn raise_gap(&mut self, key: ClusterKey, host_id: u32, frame: u64, ts: i64) -> usize {
        let subject = Subject::ClusterHost {
            cluster: key,
            host_id,
        };
        let (kind, severity) = (Kind::NlbHeartbeatGap, Severity::Warning);
        let index = self
            .model
            .record(kind, severity, key.vlan(), None, subject, frame, ts);
        let macs = self.model.clusters[&key].hosts[&host_id].macs.clone();
        let record = &mut self.model.records[index];
        record.count = record.count.max(1);
        for mac in macs {
            record.add_mac(mac);
        }
        index
    }

    /// Raises, as it is seen, the silence of each nlb host that has sent no heartbeat for
    /// more than [`SILENT_PERIODS`] periods by `now` (capture time, or the clock in `nlb
    /// watch`), once per silence.
    pub(super) fn sweep_silent_hosts(&mut self, now: i64) {
        let mut silent = Vec::new();
        for (&key, cluster) in &mut self.model.clusters {
            if !matches!(key, ClusterKey::Nlb { .. }) {
                continue;
            }
            for (&host_id, host) in &mut cluster.hosts {
                if !host.silence_raised && host.silent_at(now) {
                    host.silence_raised = true;
                    silent.push((key, host_id));
                }
            }
        }
        let frame = self.model.counters.frames;
        for (key, host_id) in silent {
            self.raise_gap(key, host_id, frame, now);
        }
    }

    /// At the end: `nlb_heartbeat_gap` for each nlb host that fell silent, in the middle
    /// of the capture (its heartbeats resumed) or at its end (they did not: silent from
    /// its last heartbeat to the end).
    pub(super) fn raise_heartbeat_gaps(&mut self) {
        let end = self.model.last_ts;
        let mut silent = Vec::new();
        for (&key, cluster) in &self.model.clusters {
            if !matches!(key, ClusterKey::Nlb { .. }) {
                continue;
            }
            for (&host_id, host) in &cluster.hosts {
                let ongoing = host.silent_at(end);
                if host.gaps > 0 || ongoing {
                    let (frame, ts) = match host.longest_gap {
                        Some((_, frame, ts)) => (frame, ts),
                        None => (cluster.last_frame, cluster.last_ts),
                    };
                    silent.push((key, host_id, host.gaps + u64::from(ongoing), frame, ts));
                }
            }
        }
        for (key, host_id, count, frame, ts) in silent {
            let index = self.raise_gap(key, host_id, frame, ts);
            self.model.records[index].count = count;
        }
    }
}
