//! Misconfiguration: why a host stays out of the cluster, judged at every update from
//! what it hears.
//!
//! - A configuration that differs from the one the cluster runs (the largest group of
//!   hosts sharing one), or an id that an earlier host already uses: the host stays out
//!   while the cause lasts, and joins by itself once it is gone.
//! - A key that no heartbeat of the cluster passes, or a host of the cluster that speaks
//!   heartbeat version 1: judged only before the first join (so forged heartbeats cannot
//!   push a member out), and only while such a heartbeat was heard within the window.
//! - A VIP that a MAC outside the cluster answers for while the host probes (RFC 5227
//!   §2.1.1, in `arp.rs`): cleared only by `start`, which probes again.

use super::{Event, Node};
use crate::buckets::HostId;
use crate::config::field_name;
use crate::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::heartbeat::FIELD_DIGESTS_LEN;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Why a host stays out of the cluster.
#[derive(Debug, Clone, PartialEq, Hash, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Misconfig {
    /// Its cluster-wide configuration differs from the majority's.
    ConfigMismatch {
        /// A host whose configuration is taken as right.
        peer: HostId,
        /// The first field that differs.
        field: String,
    },
    /// Another host with the same id was there first.
    DuplicateHostId {
        /// That host's MAC.
        mac: MacAddr,
    },
    /// Heartbeats of this cluster arrive, but none passes authentication: the hosts do
    /// not share this host's key. Checked only before the host first joins, so that
    /// forged heartbeats cannot push a member out.
    KeyMismatch {
        /// The MAC of a host whose heartbeats fail.
        mac: MacAddr,
    },
    /// Heartbeats of this cluster arrive in format version 1: a host there runs an
    /// older nlb release, which cannot hear this one. Checked only before the host
    /// first joins, like the key; a host being upgraded stays out until no version 1
    /// heartbeat has been heard for a failure window (the older hosts serve meanwhile),
    /// so that the two releases never own buckets side by side.
    OldRelease {
        /// The MAC of a host that speaks version 1.
        mac: MacAddr,
    },
    /// A VIP answered a probe from outside the cluster.
    AddressInUse {
        /// The VIP.
        ip: Ipv4Addr,
        /// Who has it.
        mac: MacAddr,
    },
}

impl std::fmt::Display for Misconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misconfig::ConfigMismatch { peer, field } => {
                write!(f, "{field} differs from host {peer}'s")
            }
            Misconfig::DuplicateHostId { mac } => {
                write!(f, "host {mac} already uses this host id")
            }
            Misconfig::AddressInUse { ip, mac } => write!(f, "{ip} is in use by {mac}"),
            Misconfig::KeyMismatch { mac } => write!(
                f,
                "heartbeats from {mac} fail authentication: this host's cluster key differs"
            ),
            Misconfig::OldRelease { mac } => write!(
                f,
                "{mac} runs an older nlb release (heartbeat version 1): upgrade it; this host \
                 joins once no host speaks version 1"
            ),
        }
    }
}

impl Node {
    pub(super) fn check_misconfig(&mut self, now: Instant) {
        let before = self.misconfig.clone();
        if matches!(
            self.misconfig,
            None | Some(Misconfig::ConfigMismatch { .. }) | Some(Misconfig::DuplicateHostId { .. })
        ) {
            self.misconfig = self
                .duplicate_of_me()
                .map(|mac| Misconfig::DuplicateHostId { mac })
                .or_else(|| self.config_mismatch());
        }
        if matches!(
            self.misconfig,
            None | Some(Misconfig::KeyMismatch { .. }) | Some(Misconfig::OldRelease { .. })
        ) {
            self.misconfig = self.old_release(now).or_else(|| self.key_mismatch(now));
        }
        if self.misconfig != before
            && let Some(misconfig) = &self.misconfig
        {
            self.events
                .push_back(Event::Misconfigured(misconfig.clone()));
        }
    }

    /// Before the first join: a version 1 heartbeat of this cluster within the window.
    pub(super) fn old_release(&self, now: Instant) -> Option<Misconfig> {
        let (at, mac) = self.last_old_release?;
        let fresh = now.saturating_since(at) <= self.window;
        (fresh && self.view.epoch == 0).then_some(Misconfig::OldRelease { mac })
    }

    /// Before the first join: a heartbeat of this cluster failed authentication within
    /// the failure window, and no peer with this host's configuration is heard.
    pub(super) fn key_mismatch(&self, now: Instant) -> Option<Misconfig> {
        let (at, mac) = self.last_bad_tag?;
        let fresh = now.saturating_since(at) <= self.window;
        let never_joined = self.view.epoch == 0;
        let no_good_peer = !self
            .peers
            .values()
            .any(|peer| peer.latest.config_fingerprint == self.fingerprint);
        (fresh && never_joined && no_good_peer).then_some(Misconfig::KeyMismatch { mac })
    }

    /// A host that uses this host's id and started earlier.
    pub(super) fn duplicate_of_me(&self) -> Option<MacAddr> {
        self.peers
            .iter()
            .find(|&(&(id, mac), peer)| {
                id == self.id
                    && mac != self.mac
                    && peer.confirmed
                    && (peer.latest.incarnation, mac) < (self.incarnation, self.mac)
            })
            .map(|(&(_, mac), _)| mac)
    }

    /// If this host's cluster-wide configuration is not the one the cluster runs, which
    /// peer's is, and the first field that differs. The cluster runs the configuration
    /// of the largest group of hosts that share one; ties go to the group that has
    /// installed the newest view, then to the group with the lowest host id.
    pub(super) fn config_mismatch(&self) -> Option<Misconfig> {
        #[derive(Default)]
        struct Group {
            size: usize,
            newest_epoch: u32,
            lowest_id: u8,
            sample: Option<(HostId, [u8; FIELD_DIGESTS_LEN])>,
        }
        let mut groups: BTreeMap<u64, Group> = BTreeMap::new();
        let mut add =
            |fingerprint: u64, id: HostId, epoch: u32, digests: [u8; FIELD_DIGESTS_LEN]| {
                let group = groups.entry(fingerprint).or_insert(Group {
                    lowest_id: u8::MAX,
                    ..Group::default()
                });
                group.size += 1;
                group.newest_epoch = group.newest_epoch.max(epoch);
                group.lowest_id = group.lowest_id.min(id);
                group.sample.get_or_insert((id, digests));
            };
        add(
            self.fingerprint,
            self.id,
            self.view.epoch,
            self.field_digests,
        );
        for (&(id, _), peer) in self.peers.iter().filter(|(_, peer)| peer.confirmed) {
            if id != self.id {
                let hb = &peer.latest;
                add(hb.config_fingerprint, id, hb.view_epoch, hb.field_digests);
            }
        }
        let (&winner, group) = groups.iter().max_by(|a, b| {
            (a.1.size, a.1.newest_epoch, std::cmp::Reverse(a.1.lowest_id)).cmp(&(
                b.1.size,
                b.1.newest_epoch,
                std::cmp::Reverse(b.1.lowest_id),
            ))
        })?;
        if winner == self.fingerprint {
            return None;
        }
        let (peer, digests) = group.sample?;
        let field = (0..FIELD_DIGESTS_LEN)
            .find(|&i| digests[i] != self.field_digests[i])
            .map_or_else(|| "the configuration".to_owned(), field_name);
        Some(Misconfig::ConfigMismatch { peer, field })
    }
}
