//! Cluster addressing: which MAC a VIP answers with in each mode.
//!
//! For a VIP `a.b.c.d` (MS KB 4494444; nlb keeps the same addresses so that switch
//! configurations written for Windows NLB carry over):
//!
//! | mode | cluster MAC | how frames reach every host |
//! |---|---|---|
//! | unicast | `02:bf:a:b:c:d` | the switch never learns it, so it floods it |
//! | multicast | `03:bf:a:b:c:d` | group bit set: every port |
//! | IGMP multicast | `01:00:5e:7f:c:d`, group `239.255.c.d` | ports that joined the group (RFC 1112 §6.4 mapping) |
//!
//! Windows NLB in unicast mode also rewrote each host's source MAC to the *masked* MAC
//! `02:<host id>:a:b:c:d` ("MaskSourceMAC"). nlb does not need masking — hosts send with
//! their own MAC — but recognises the pattern in captures ([`classify_mac`]).

use crate::MacAddr;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// How the cluster MAC is delivered to the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Locally administered unicast MAC `02:bf:a:b:c:d`, flooded by switches.
    Unicast,
    /// Multicast MAC `03:bf:a:b:c:d`, sent to every port.
    Multicast,
    /// IGMP multicast: MAC `01:00:5e:7f:c:d`, group `239.255.c.d`, sent to joined ports.
    Igmp,
}

impl ClusterMode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [ClusterMode; 3] = [
        ClusterMode::Unicast,
        ClusterMode::Multicast,
        ClusterMode::Igmp,
    ];

    /// The name used in configuration files and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            ClusterMode::Unicast => "unicast",
            ClusterMode::Multicast => "multicast",
            ClusterMode::Igmp => "igmp",
        }
    }
}

impl fmt::Display for ClusterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClusterMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterMode::ALL
            .into_iter()
            .find(|mode| mode.name() == s)
            .ok_or_else(|| format!("unknown mode '{s}': expected unicast, multicast or igmp"))
    }
}

/// The cluster MAC for `vip` in `mode`.
pub fn cluster_mac(vip: Ipv4Addr, mode: ClusterMode) -> MacAddr {
    let [a, b, c, d] = vip.octets();
    match mode {
        ClusterMode::Unicast => MacAddr([0x02, 0xbf, a, b, c, d]),
        ClusterMode::Multicast => MacAddr([0x03, 0xbf, a, b, c, d]),
        ClusterMode::Igmp => ipv4_multicast_mac(igmp_group(vip)),
    }
}

/// The IGMP group an IGMP-mode cluster joins for `vip`: `239.255.c.d`.
pub fn igmp_group(vip: Ipv4Addr) -> Ipv4Addr {
    let [_, _, c, d] = vip.octets();
    Ipv4Addr::new(239, 255, c, d)
}

/// The Ethernet address of an IPv4 multicast group (RFC 1112 §6.4): `01:00:5e` followed
/// by the low 23 bits of the group.
pub fn ipv4_multicast_mac(group: Ipv4Addr) -> MacAddr {
    let [_, b, c, d] = group.octets();
    MacAddr([0x01, 0x00, 0x5e, b & 0x7f, c, d])
}

/// The masked source MAC a Windows NLB unicast host with `host_id` sends with:
/// `02:<host id>:a:b:c:d`.
pub fn masked_host_mac(vip: Ipv4Addr, host_id: u8) -> MacAddr {
    let [a, b, c, d] = vip.octets();
    MacAddr([0x02, host_id, a, b, c, d])
}

/// What an address means in NLB terms, if anything. See [`classify_mac`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NlbMac {
    /// `02:bf:a:b:c:d`: the unicast cluster MAC of VIP `a.b.c.d`.
    UnicastCluster(Ipv4Addr),
    /// `03:bf:a:b:c:d`: the multicast cluster MAC of VIP `a.b.c.d`.
    MulticastCluster(Ipv4Addr),
    /// `02:<id>:a:b:c:d`, id 1..=64: the masked source MAC of host `id` of a Windows NLB
    /// unicast cluster on VIP `a.b.c.d`.
    MaskedHost {
        /// The host id (NLB host priority).
        host_id: u8,
        /// The VIP the MAC encodes.
        vip: Ipv4Addr,
    },
    /// `01:00:5e:7f:c:d`: the MAC of group `239.255.c.d`, an IGMP-mode cluster MAC (or any
    /// other group that maps to it).
    IgmpCluster(Ipv4Addr),
}

/// Recognises the NLB address patterns. The masked-host pattern can collide with an
/// ordinary locally administered MAC, so treat it as a hint that needs corroboration
/// (for example an ARP sender address of `02:bf:` with the same VIP).
pub fn classify_mac(mac: MacAddr) -> Option<NlbMac> {
    let [m0, m1, a, b, c, d] = mac.octets();
    let vip = Ipv4Addr::new(a, b, c, d);
    match (m0, m1) {
        (0x02, 0xbf) => Some(NlbMac::UnicastCluster(vip)),
        (0x03, 0xbf) => Some(NlbMac::MulticastCluster(vip)),
        (0x02, 1..=64) => Some(NlbMac::MaskedHost { host_id: m1, vip }),
        (0x01, 0x00) if a == 0x5e && b == 0x7f => {
            Some(NlbMac::IgmpCluster(Ipv4Addr::new(239, 255, c, d)))
        }
        _ => None,
    }
}

/// The cluster id carried in every heartbeat: the first four bytes of a BLAKE3 hash of
/// the sorted, de-duplicated VIPs. Two clusters on one segment with different VIP sets
/// get different ids, so a host ignores heartbeats of a cluster it is not part of.
pub fn cluster_id(vips: &[Ipv4Addr]) -> u32 {
    let mut sorted = vips.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut hasher = blake3::Hasher::new_derive_key("nlb cluster id v1");
    for vip in &sorted {
        hasher.update(&vip.octets());
    }
    let digest = hasher.finalize();
    let bytes = digest.as_bytes();
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(text: &str) -> MacAddr {
        text.parse().unwrap()
    }

    /// Seed 000 (WIZnet note): unicast cluster 192.168.128.111 with two hosts.
    #[test]
    fn seed_000_unicast_cluster_and_masked_hosts() {
        let vip = Ipv4Addr::new(192, 168, 128, 111);
        assert_eq!(
            cluster_mac(vip, ClusterMode::Unicast),
            mac("02:bf:c0:a8:80:6f")
        );
        assert_eq!(masked_host_mac(vip, 1), mac("02:01:c0:a8:80:6f"));
        assert_eq!(masked_host_mac(vip, 2), mac("02:02:c0:a8:80:6f"));
    }

    /// Seed 003 (D-Link note): multicast cluster 192.168.20.100.
    #[test]
    fn seed_003_multicast_cluster() {
        let vip = Ipv4Addr::new(192, 168, 20, 100);
        assert_eq!(
            cluster_mac(vip, ClusterMode::Multicast),
            mac("03:bf:c0:a8:14:64")
        );
    }

    #[test]
    fn igmp_mode_maps_last_two_octets() {
        let vip = Ipv4Addr::new(192, 168, 128, 111);
        assert_eq!(igmp_group(vip), Ipv4Addr::new(239, 255, 128, 111));
        assert_eq!(
            cluster_mac(vip, ClusterMode::Igmp),
            mac("01:00:5e:7f:80:6f")
        );
    }

    #[test]
    fn multicast_mapping_drops_the_25th_bit() {
        // RFC 1112: 224.128.1.2 and 224.0.1.2 share 01:00:5e:00:01:02.
        assert_eq!(
            ipv4_multicast_mac(Ipv4Addr::new(224, 128, 1, 2)),
            mac("01:00:5e:00:01:02")
        );
    }

    #[test]
    fn classify_round_trips_every_pattern() {
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        assert_eq!(
            classify_mac(cluster_mac(vip, ClusterMode::Unicast)),
            Some(NlbMac::UnicastCluster(vip))
        );
        assert_eq!(
            classify_mac(cluster_mac(vip, ClusterMode::Multicast)),
            Some(NlbMac::MulticastCluster(vip))
        );
        assert_eq!(
            classify_mac(cluster_mac(vip, ClusterMode::Igmp)),
            Some(NlbMac::IgmpCluster(igmp_group(vip)))
        );
        assert_eq!(
            classify_mac(masked_host_mac(vip, 7)),
            Some(NlbMac::MaskedHost { host_id: 7, vip })
        );
        assert_eq!(classify_mac(mac("52:54:00:12:34:56")), None);
        assert_eq!(classify_mac(mac("02:00:c6:12:00:0a")), None);
    }

    #[test]
    fn cluster_id_ignores_order_and_duplicates() {
        let a = Ipv4Addr::new(198, 18, 0, 10);
        let b = Ipv4Addr::new(198, 18, 0, 11);
        assert_eq!(cluster_id(&[a, b]), cluster_id(&[b, a, b]));
        assert_ne!(cluster_id(&[a]), cluster_id(&[b]));
    }

    #[test]
    fn mode_names_parse_back() {
        for mode in ClusterMode::ALL {
            assert_eq!(mode.name().parse::<ClusterMode>().unwrap(), mode);
        }
        assert!("broadcast".parse::<ClusterMode>().is_err());
    }
}
