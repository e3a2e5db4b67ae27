//! What the doctor reports: one [`Finding`] per problem (or cluster) seen, aggregated over
//! every frame that shows it, with the frame numbers where it starts and ends.

use nlb_wire::MacAddr;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// The kinds of finding; their `snake_case` names are the JSON `kind` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One station's frames arrive damaged: ARP fields that are damaged copies of its
    /// own MAC or IP (bit errors), with the malformed frames it sent.
    FrameCorruption,
    /// Two or more MACs claim one sender IP within the window (probes excluded).
    DuplicateIp,
    /// The ARP sender MAC is not the Ethernet source.
    SenderMacMismatch,
    /// Requests for an IP got no reply.
    UnansweredRequest,
    /// A reply with no request for it.
    UnexpectedReply,
    /// An IP moved A → B → A between MACs.
    IpMacFlap,
    /// Too many requests from one source in a short time.
    RequestStorm,
    /// Announcements and gratuitous ARP.
    GratuitousArp,
    /// RFC 5227 probes (sender IP 0.0.0.0).
    ArpProbe,
    /// A probe for an address in use, or two MACs probing for one address.
    ProbeConflict,
    /// An NLB cluster MAC as an Ethernet source.
    ClusterMacAsSource,
    /// A summary of one NLB cluster.
    NlbCluster,
    /// Two hosts of one cluster announce one host id.
    NlbDuplicateHostId,
    /// Hosts of one cluster disagree on rules or configuration.
    NlbInconsistentRules,
    /// Two hosts of one nlb cluster claim the same buckets in heartbeats at once.
    NlbDoubleOwnership,
    /// One client flow from a VIP answered from two MACs.
    DoubleAnswer,
    /// Heartbeats whose tag the given cluster key does not verify (or with none).
    NlbForgedHeartbeat,
    /// Heartbeats older than one already seen from the same host: replayed.
    NlbReplayedHeartbeat,
    /// An nlb host fell silent: no heartbeat for more than ten of its periods.
    NlbHeartbeatGap,
    /// An IGMP-mode cluster MAC carries traffic but nobody reported membership.
    IgmpMissing,
    /// Frames that are not what their headers say.
    Malformed,
}

impl Kind {
    /// Every kind, in the order of the table in the documentation.
    pub const ALL: [Kind; 21] = [
        Kind::FrameCorruption,
        Kind::DuplicateIp,
        Kind::SenderMacMismatch,
        Kind::UnansweredRequest,
        Kind::UnexpectedReply,
        Kind::IpMacFlap,
        Kind::RequestStorm,
        Kind::GratuitousArp,
        Kind::ArpProbe,
        Kind::ProbeConflict,
        Kind::ClusterMacAsSource,
        Kind::NlbCluster,
        Kind::NlbDuplicateHostId,
        Kind::NlbInconsistentRules,
        Kind::NlbDoubleOwnership,
        Kind::DoubleAnswer,
        Kind::NlbForgedHeartbeat,
        Kind::NlbReplayedHeartbeat,
        Kind::NlbHeartbeatGap,
        Kind::IgmpMissing,
        Kind::Malformed,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::FrameCorruption => "frame_corruption",
            Kind::DuplicateIp => "duplicate_ip",
            Kind::SenderMacMismatch => "sender_mac_mismatch",
            Kind::UnansweredRequest => "unanswered_request",
            Kind::UnexpectedReply => "unexpected_reply",
            Kind::IpMacFlap => "ip_mac_flap",
            Kind::RequestStorm => "request_storm",
            Kind::GratuitousArp => "gratuitous_arp",
            Kind::ArpProbe => "arp_probe",
            Kind::ProbeConflict => "probe_conflict",
            Kind::ClusterMacAsSource => "cluster_mac_as_source",
            Kind::NlbCluster => "nlb_cluster",
            Kind::NlbDuplicateHostId => "nlb_duplicate_host_id",
            Kind::NlbInconsistentRules => "nlb_inconsistent_rules",
            Kind::NlbDoubleOwnership => "nlb_double_ownership",
            Kind::DoubleAnswer => "double_answer",
            Kind::NlbForgedHeartbeat => "nlb_forged_heartbeat",
            Kind::NlbReplayedHeartbeat => "nlb_replayed_heartbeat",
            Kind::NlbHeartbeatGap => "nlb_heartbeat_gap",
            Kind::IgmpMissing => "igmp_missing",
            Kind::Malformed => "malformed",
        }
    }
}

impl Finding {
    /// The VLAN as shown: `100`, or `100.200` for a customer VLAN under a service VLAN.
    pub fn vlan_name(&self) -> Option<String> {
        let vlan = self.vlan?;
        Some(match self.inner_vlan {
            Some(inner) => format!("{vlan}.{inner}"),
            None => vlan.to_string(),
        })
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing is broken by it.
    Info,
    /// Likely to break something for someone.
    Warning,
    /// Traffic is being lost or misdirected.
    Error,
}

impl Severity {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What it is.
    pub kind: Kind,
    /// How bad.
    pub severity: Severity,
    /// First frame that shows it (1-based).
    pub first_frame: u64,
    /// Last frame that shows it.
    pub last_frame: u64,
    /// Frames (or events) that show it.
    pub count: u64,
    /// The IP it is about, if one.
    #[serde(serialize_with = "ip_text")]
    pub ip: Option<Ipv4Addr>,
    /// The MACs involved, in order of appearance.
    #[serde(serialize_with = "macs_text")]
    pub macs: Vec<MacAddr>,
    /// The VLAN (the outer tag's id), if the frames were tagged.
    pub vlan: Option<u16>,
    /// The inner (customer) VLAN of QinQ frames: findings with the same `vlan` and
    /// different `inner_vlan`s are about different networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_vlan: Option<u16>,
    /// What was seen, in plain words.
    pub message: String,
    /// What to do about it.
    pub advice: String,
    /// Seconds from the start of the capture to the first frame.
    pub first_seen_s: f64,
    /// Seconds from the start of the capture to the last frame.
    pub last_seen_s: f64,
    /// Kind-specific facts (askers, hosts, reasons...).
    #[serde(skip_serializing_if = "Details::is_none")]
    pub details: Details,
}

/// The kind-specific facts of a finding: a JSON object, read by key like a
/// [`serde_json::Value`] (`details["askers"]`, [`Details::get`]).
///
/// The facts of the common kinds stay typed until they are written: a report with
/// thousands of findings serialises them straight to its output, and builds a `Value`
/// (once, kept) only for the findings whose details are read by key. The JSON is the
/// same either way.
#[derive(Debug, Clone, Default)]
pub struct Details {
    facts: Facts,
    /// The facts as a `Value`, made on the first read by key.
    value: OnceLock<Value>,
}

/// What a [`Details`] holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Facts {
    /// No details (`null`, left out of the JSON).
    #[default]
    None,
    /// Any JSON: the kinds that are rare in a capture.
    Json(Value),
    /// `{name: number}`.
    Count(&'static str, u64),
    /// `{name: text}`.
    Text(&'static str, &'static str),
    /// A malformed frame's `{"first_frame", "reason"}`.
    Malformed {
        reason: &'static str,
        first_frame: u64,
    },
    /// `{list: [{"ip", "mac", per: frames}...]}`, and `longest_wait_s` if given: the
    /// askers of unanswered requests, the targets of unexpected replies.
    Peers {
        list: &'static str,
        per: &'static str,
        peers: Vec<(Ipv4Addr, MacAddr, u64)>,
        longest_wait_s: Option<f64>,
    },
}

static NULL: Value = Value::Null;

impl Details {
    pub(crate) fn new(facts: Facts) -> Details {
        Details {
            facts,
            value: OnceLock::new(),
        }
    }

    /// Whether there are none (`null`).
    pub fn is_none(&self) -> bool {
        match &self.facts {
            Facts::None => true,
            Facts::Json(value) => value.is_null(),
            _ => false,
        }
    }

    /// The details as a JSON value.
    pub fn as_value(&self) -> &Value {
        match &self.facts {
            Facts::None => &NULL,
            Facts::Json(value) => value,
            _ => self
                .value
                .get_or_init(|| serde_json::to_value(self).unwrap_or(Value::Null)),
        }
    }

    /// The value under `key`, if the details are an object that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_value().get(key)
    }
}

impl From<Value> for Details {
    fn from(value: Value) -> Details {
        Details::new(Facts::Json(value))
    }
}

/// As `serde_json::Value`'s: `null` for a key that is not there.
impl std::ops::Index<&str> for Details {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.as_value()[key]
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Details) -> bool {
        self.facts == other.facts || self.as_value() == other.as_value()
    }
}

/// Keys in sorted order, as a `Value` (a `BTreeMap`) writes them.
impl Serialize for Details {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.facts {
            Facts::None => serializer.serialize_unit(),
            Facts::Json(value) => value.serialize(serializer),
            Facts::Count(name, count) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(name, count)?;
                map.end()
            }
            Facts::Text(name, text) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(name, text)?;
                map.end()
            }
            Facts::Malformed {
                reason,
                first_frame,
            } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("first_frame", first_frame)?;
                map.serialize_entry("reason", reason)?;
                map.end()
            }
            Facts::Peers {
                list,
                per,
                peers,
                longest_wait_s,
            } => {
                let mut map =
                    serializer.serialize_map(Some(1 + usize::from(longest_wait_s.is_some())))?;
                map.serialize_entry(list, &Peers { per, peers })?;
                if let Some(wait) = longest_wait_s {
                    map.serialize_entry("longest_wait_s", wait)?;
                }
                map.end()
            }
        }
    }
}

/// The peers of [`Facts::Peers`] as a JSON array.
struct Peers<'a> {
    per: &'static str,
    peers: &'a [(Ipv4Addr, MacAddr, u64)],
}

impl Serialize for Peers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.peers.len()))?;
        for (ip, mac, frames) in self.peers {
            seq.serialize_element(&Peer {
                ip,
                mac,
                per: self.per,
                frames: *frames,
            })?;
        }
        seq.end()
    }
}

struct Peer<'a> {
    ip: &'a Ipv4Addr,
    mac: &'a MacAddr,
    per: &'static str,
    frames: u64,
}

impl Serialize for Peer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // "ip" < "mac" < "replies", "requests": sorted, as in a Value.
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("ip", &IpText::new(*self.ip))?;
        map.serialize_entry("mac", &MacText::new(*self.mac))?;
        map.serialize_entry(self.per, &self.frames)?;
        map.end()
    }
}

/// A MAC as text, `02:bf:c0:a8:80:6f` as [`MacAddr`]'s `Display` writes it, made
/// without the formatting machinery: reports list MACs by the ten thousand.
#[derive(Clone, Copy)]
pub(crate) struct MacText([u8; 17]);

impl MacText {
    pub(crate) fn new(mac: MacAddr) -> MacText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, byte) in mac.0.into_iter().enumerate() {
            text[3 * i] = HEX[usize::from(byte >> 4)];
            text[3 * i + 1] = HEX[usize::from(byte & 15)];
        }
        MacText(text)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Hex digits and colons only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for MacText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MacText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An IPv4 address as text, `198.18.0.1` as [`Ipv4Addr`]'s `Display` writes it, made
/// without the formatting machinery: a report of askers lists thousands.
#[derive(Clone, Copy)]
pub(crate) struct IpText {
    text: [u8; 15],
    len: u8,
}

impl IpText {
    pub(crate) fn new(ip: Ipv4Addr) -> IpText {
        let (mut text, mut len) = ([0; 15], 0);
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                text[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                text[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            text[len] = b'0' + octet % 10;
            len += 1;
        }
        IpText {
            text,
            len: len as u8,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Digits and dots only.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Serialize for IpText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

fn ip_text<S: Serializer>(ip: &Option<Ipv4Addr>, serializer: S) -> Result<S::Ok, S::Error> {
    ip.map(IpText::new).serialize(serializer)
}

fn macs_text<S: Serializer>(macs: &[MacAddr], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(macs.iter().map(|&mac| MacText::new(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_is_the_display_form() {
        for mac in [
            [0u8; 6],
            [0x02, 0xbf, 0xc0, 0xa8, 0x80, 0x6f],
            [0xff; 6],
            [1, 0x10, 0xab, 0xcd, 9, 0xf0],
        ] {
            let mac = MacAddr(mac);
            assert_eq!(MacText::new(mac).to_string(), mac.to_string());
        }
    }

    #[test]
    fn ip_text_is_the_display_form() {
        for ip in [
            [0u8; 4],
            [255; 4],
            [198, 18, 0, 1],
            [10, 100, 9, 99],
            [1, 20, 250, 109],
        ] {
            let ip = Ipv4Addr::from(ip);
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn details_read_by_key_as_written() {
        let peers = vec![(
            "198.18.0.1".parse().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1]),
            3,
        )];
        let details = Details::new(Facts::Peers {
            list: "askers",
            per: "requests",
            peers,
            longest_wait_s: Some(1.5),
        });
        let written: Value =
            serde_json::from_str(&serde_json::to_string(&details).unwrap()).unwrap();
        assert_eq!(&written, details.as_value());
        assert_eq!(details["askers"][0]["mac"], "02:00:00:00:00:01");
        assert_eq!(details["askers"][0]["requests"], 3);
        assert_eq!(details["longest_wait_s"], 1.5);
        assert!(details.get("targets").is_none());
        assert!(Details::default().is_none() && !details.is_none());
    }
}
