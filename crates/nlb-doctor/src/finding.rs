//! What the doctor reports: one [`Finding`] per problem (or cluster) seen, aggregated over
//! every frame that shows it, with the frame numbers where it starts and ends.

use nlb_wire::MacAddr;
use serde::Serialize;
use std::net::Ipv4Addr;

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
    /// An IGMP-mode cluster MAC carries traffic but nobody reported membership.
    IgmpMissing,
    /// Frames that are not what their headers say.
    Malformed,
}

impl Kind {
    /// Every kind, in the order of the table in the documentation.
    pub const ALL: [Kind; 20] = [
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
    pub ip: Option<Ipv4Addr>,
    /// The MACs involved, in order of appearance.
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
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}
