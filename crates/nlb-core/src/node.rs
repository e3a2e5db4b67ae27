//! One host's share of the cluster: membership, convergence, bucket ownership, host and
//! rule states, and the ARP responder, as a deterministic state machine.
//!
//! In the style of quinn-proto, the [`Node`] never does I/O and never reads a clock:
//!
//! - inputs: [`Node::handle_frame`] (every frame received on the cluster interface),
//!   [`Node::handle_timeout`] (when [`Node::poll_timeout`] is due) and
//!   [`Node::handle_command`] (operator commands);
//! - outputs: [`Node::poll_transmit`] (frames to send), [`Node::poll_action`] (kernel
//!   changes: which buckets to accept), [`Node::poll_event`] (things to log and count).
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
//!    "Liveness" below); after `tolerance` periods of silence it is dead.
//! 2. **Agreement.** When every host in my live set `L` advertises exactly `L` as its live
//!    set, the hosts agree on the membership. Each then installs the view `(epoch, L)`,
//!    where the epoch is one more than its current one (or the epoch a member already
//!    installed for `L`), and computes the new map from the previous targets of the
//!    members and their advertised weights ([`BucketMap::rebalance`]). Every host starts
//!    from the same targets, so every host computes the same map.
//! 3. **Release before claim.** A host stops accepting a bucket as soon as it is not in
//!    its target, or as soon as any live peer's latest heartbeat lists it in its target.
//!    It starts accepting a bucket of its target only when every other member of its
//!    view advertises that same view (so they have released whatever the view does not
//!    give them) and no live peer lists the bucket. Two hosts that both hear each other
//!    therefore never accept new connections for one bucket at the same time, even if
//!    their maps disagree; disagreement costs availability, never safety.
//! 4. Connections a host already has stay with it: the kernel's conntrack accepts their
//!    packets whatever the bucket owner is. Only new connections follow the map.
//!
//! # Liveness: only fresh heartbeats make members
//!
//! Every heartbeat carries an echo of the newest heartbeat its sender accepted from
//! each host it hears (incarnation and sequence). A receiver counts the sender as a
//! member (*confirmed*) only while the sender's latest heartbeat echoes the receiver's
//! own incarnation and a sequence the receiver sent within its failure window. Since the
//! sender heard the receiver that recently, and declares a host dead only after a whole
//! window without it, it cannot have declared the receiver dead before now.
//!
//! - An old capture, replayed to a receiver that restarted (new incarnation), or that
//!   forgot the sender, echoes something older: it confirms nothing, so a dead host cannot
//!   be kept alive by replays. Replays of recent frames are not newer than what was
//!   accepted ([`AntiReplay`]); under another source MAC they fail (the MAC is under the
//!   tag, see nlb-wire's heartbeat module for the threat model).
//! - A frame that queued while this host was paused is just as stale.
//! - A peer that is heard but not confirmed still counts for release before claim: this
//!   host never claims a bucket any recent, authentic heartbeat lists. Being careful costs
//!   availability for at most a window, never safety.
//! - A host that joins (or restarts) is confirmed one echo later: its first heartbeat
//!   echoes nobody, the members answer soon (a quarter period at most) with its echo, and
//!   its next heartbeat echoes them. Confirmation is judged at each heartbeat received.
//! - What an attacker with captures but no key can still do: replay a dead host's
//!   authentic heartbeats to a receiver that forgot it (after a restart), which then
//!   respects that host's old claims, as unconfirmed, and leaves those buckets unowned
//!   while the replays last; and send heartbeats with bad tags to keep a host that never
//!   joined in `KeyMismatch`. Both cost availability, never safety.
//!
//! Per-sender state is bounded: peers and replay windows are kept per (host id, MAC), at
//! most [`MACS_PER_HOST_ID`] MACs per id (64 ids; a sender that does not hear this host
//! gives its place to a new one). Peers expire with the failure window; replay windows
//! of senders that are no longer peers are dropped once the table reaches
//! [`REPLAY_TABLE_LIMIT`].
//! Every field a heartbeat carries is checked against this host's configuration before
//! it is used (bucket counts, rule counts, epochs); what does not fit is a counted drop,
//! and drops are reported once per reason and then summarised
//! ([`DROP_REPORT_INTERVAL`]), never logged per frame.
//!
//! # Stalls: a host that did not run
//!
//! The kernel honours a host's buckets only for the ownership lease after the daemon's
//! last refresh, and peers declare a host dead after the failure window of silence
//! ([`crate::lease`] has both numbers and how they relate). A host that was paused
//! (a VM frozen for a migration or a snapshot, a swap storm), whose clock jumped
//! forward, or whose loop was starved, cannot know what its peers decided meanwhile:
//! they may have taken its buckets. So at every input, before anything else, a host
//! that has not sent a heartbeat for [`stall_threshold`] **suspects itself**:
//!
//! - it releases every bucket (existing connections stay, as in a drainstop);
//! - it forgets its view and every peer's last heartbeat, all of which may be stale;
//! - it comes back through the join path: it listens for a whole failure window, so that
//!   every live peer is heard (and every queued, stale frame is superseded by a fresh
//!   one) before it may install any view, and then it claims a bucket only under a view
//!   every member advertises and no live peer lists the bucket (rule 3 above).
//!
//! The node cannot tell a pause from a jump of the clock or a starved loop, and does not
//! need to: in each case its ownership may no longer be its own.
//!
//! A host probes its VIPs (RFC 5227 §2.1) before it first joins, and refuses to join if
//! a MAC outside the cluster answers. While probing it only listens, which also lets it
//! learn the cluster before it is counted.
//!
//! # ARP
//!
//! The two lowest ids of the view ([`ARP_RESPONDERS`]) answer requests and probes for
//! the VIPs (a 64-host cluster does not answer each request 64 times) with the cluster
//! MAC as the ARP sender address, sent to the requester's ARP sender address (RFC 826), from
//! the host's own Ethernet address. They announce the VIPs (RFC 5227 §2.3) when they
//! join and when they take over a departed host's buckets, with copies more than 1 s
//! apart so that Linux's `locktime` does not ignore them. An ARP packet claiming a VIP
//! from a MAC that is neither a cluster MAC nor a member's is a conflict: it is reported
//! with the MAC and defended at most once per 10 s (RFC 5227 §2.4 (c)).

use crate::buckets::{BUCKETS, BucketMap, HostId};
use crate::config::{Config, InitialState, RuleMode, field_name};
use crate::lease::{failure_window, stall_threshold};
use crate::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::addressing::cluster_mac;
use nlb_wire::arp::{ArpKind, ArpPacket, ArpRepr};
use nlb_wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::heartbeat::{
    AntiReplay, BucketBitmap, Echo, FIELD_DIGESTS_LEN, HeartbeatKey, HeartbeatPacket,
    HeartbeatRepr, HostState, MemberSet, RuleStatus,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Probes sent for each VIP before the first join (RFC 5227 PROBE_NUM).
pub const PROBE_COUNT: u32 = 3;
/// Time between probes. RFC 5227 §2.2 allows shorter values than its 1–2 s on fast
/// links; a LAN answers within milliseconds.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Wait after the last probe before the address counts as free.
pub const PROBE_WAIT_AFTER: Duration = Duration::from_millis(200);
/// When announcements go out, after a join or a takeover.
pub const ANNOUNCE_OFFSETS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(1100),
    Duration::from_millis(2200),
    Duration::from_millis(5000),
];
/// At most one defensive announcement per VIP in this time (RFC 5227 DEFEND_INTERVAL).
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);
/// Periods a host that begins to take part waits, announcing itself, before it installs
/// its first view.
pub const JOIN_WAIT_PERIODS: u32 = 2;
/// Weight that "equal" stands for.
pub const EQUAL_WEIGHT: u32 = 100;
/// Senders (MACs) tracked per host id: one, and one more so that a duplicate id can be
/// seen and named.
pub const MACS_PER_HOST_ID: usize = 2;
/// Replay windows kept before those of senders that are no longer peers are dropped.
pub const REPLAY_TABLE_LIMIT: usize = 4 * 64;
/// Hosts of a view that answer ARP requests for the VIPs: a responder and a backup.
pub const ARP_RESPONDERS: usize = 2;
/// At most one [`Event::HeartbeatDropped`] per reason in this time.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// An operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Join the cluster (from stopped or draining).
    Start,
    /// Leave at once; existing connections are dropped.
    Stop,
    /// No new connections; existing ones finish, then stop.
    DrainStop,
    /// Halt all cluster operations until resume.
    Suspend,
    /// Undo suspend.
    Resume,
    /// Handle a rule again.
    EnableRule(RuleSelector),
    /// Drop all traffic of a rule, existing connections included.
    DisableRule(RuleSelector),
    /// No new connections for a rule; existing ones finish.
    DrainRule(RuleSelector),
    /// The data plane's count of open connections (from conntrack).
    SetConnections(u32),
}

/// Which rules a rule command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSelector {
    /// Every configured rule.
    All,
    /// Configured rule `index` (0-based).
    Index(usize),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The host is suspended; only `resume` is accepted.
    Suspended,
    /// `resume` on a host that is not suspended.
    NotSuspended,
    /// `drainstop` on a host that is already stopped.
    AlreadyStopped,
    /// The host is misconfigured and cannot join until that is fixed.
    Misconfigured(String),
    /// No such rule.
    NoSuchRule(usize),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Suspended => f.write_str("the host is suspended; run `nlb resume` first"),
            CommandError::NotSuspended => f.write_str("the host is not suspended"),
            CommandError::AlreadyStopped => f.write_str("the host is already stopped"),
            CommandError::Misconfigured(why) => {
                write!(f, "the host is misconfigured ({why}); fix that first")
            }
            CommandError::NoSuchRule(index) => write!(f, "there is no rule {}", index + 1),
        }
    }
}

impl std::error::Error for CommandError {}

/// A change for the kernel's data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// What to accept for rule `rule` (the default rule comes after the configured ones).
    SetRule {
        /// Rule slot.
        rule: usize,
        /// Buckets to accept new connections for.
        owned: BucketBitmap,
        /// Whether packets of existing connections are still accepted. False after
        /// `stop`, `suspend` or `disable`.
        keep_established: bool,
    },
}

/// Why a heartbeat was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a valid heartbeat.
    Malformed,
    /// Authentication tag missing or wrong.
    BadTag,
    /// Not newer than the last one from that sender.
    Replay,
    /// From another cluster on the segment.
    ForeignCluster,
    /// From a host that uses this host's id.
    DuplicateHostId,
    /// Another format version: that host runs another nlb release.
    Version,
    /// The sender MAC under the tag is not the Ethernet source: re-sent by someone else.
    SpoofedSource,
}

impl DropReason {
    /// Every reason, for metrics that list them all.
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::ForeignCluster,
        DropReason::DuplicateHostId,
        DropReason::Version,
        DropReason::SpoofedSource,
    ];

    /// What an operator should do about it.
    pub const fn advice(self) -> &'static str {
        match self {
            DropReason::Malformed => "a host sends heartbeats nlb cannot read: check its release",
            DropReason::BadTag => {
                "heartbeats fail authentication: every host needs the same cluster.key_file"
            }
            DropReason::Replay => "old heartbeats re-sent: someone replays captured frames",
            DropReason::ForeignCluster => "another cluster shares this segment",
            DropReason::DuplicateHostId => "two hosts use one host.id: give each its own",
            DropReason::Version => {
                "a host speaks another heartbeat version: upgrade every host to one nlb release"
            }
            DropReason::SpoofedSource => {
                "heartbeats re-sent under another MAC: someone on the segment forges them"
            }
        }
    }
}

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

/// Something worth a log line or a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This host's state changed.
    StateChanged {
        /// Before.
        from: HostState,
        /// After.
        to: HostState,
    },
    /// A new view was installed.
    ViewInstalled {
        /// Its epoch.
        epoch: u32,
        /// Its members.
        members: MemberSet,
        /// Buckets (over all rules) that changed owner.
        moved: usize,
    },
    /// Every member owns its whole target in the current view.
    Converged {
        /// The view's epoch.
        epoch: u32,
        /// Time from the first change in membership or weights to now.
        duration: Duration,
    },
    /// A peer was heard for the first time, or again after it was declared dead.
    PeerUp {
        /// Its id.
        host: HostId,
        /// Its MAC.
        mac: MacAddr,
    },
    /// A peer fell silent for the failure window.
    PeerDown {
        /// Its id.
        host: HostId,
    },
    /// This host stays out of the cluster.
    Misconfigured(Misconfig),
    /// Heartbeats were dropped. A flood costs counters, not events: the first drop for
    /// a reason is reported, then at most one summary per [`DROP_REPORT_INTERVAL`].
    HeartbeatDropped {
        /// Why.
        reason: DropReason,
        /// Ethernet source of the latest one.
        from: MacAddr,
        /// How many were dropped for this reason since the last report, this one
        /// included.
        count: u64,
    },
    /// A MAC outside the cluster claims a VIP.
    Conflict {
        /// The VIP.
        ip: Ipv4Addr,
        /// The ARP sender MAC that claims it.
        mac: MacAddr,
        /// Whether a defensive announcement went out.
        defended: bool,
    },
    /// Someone probes for a VIP (RFC 5227): about to use our address.
    ProbeSeen {
        /// The VIP.
        ip: Ipv4Addr,
        /// The prober's MAC.
        mac: MacAddr,
    },
    /// This host did not run for longer than the stall threshold (see the module docs):
    /// it released every bucket and rejoins.
    Stalled {
        /// Time since its last heartbeat.
        silent: Duration,
    },
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats accepted.
    pub heartbeats_received: u64,
    /// Heartbeats dropped, by reason.
    pub heartbeats_dropped: BTreeMap<DropReason, u64>,
    /// ARP frames that could not be parsed.
    pub arp_malformed: u64,
    /// ARP replies sent.
    pub arp_replies_sent: u64,
    /// ARP announcements sent (join, takeover and defence).
    pub arp_announcements_sent: u64,
    /// Conflicts seen.
    pub conflicts: u64,
    /// Probes for a VIP seen from outside the cluster.
    pub probes_seen: u64,
    /// Views installed.
    pub views_installed: u64,
    /// Times the maps were repaired to match what the members advertise.
    pub map_repairs: u64,
    /// Convergences completed.
    pub convergences: u64,
    /// Duration of the last convergence.
    pub last_convergence: Option<Duration>,
    /// Times this host found it had stalled, and rejoined.
    pub stalls: u64,
}

/// A peer as `nlb query` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberInfo {
    /// Host id.
    pub id: HostId,
    /// Its state.
    pub state: HostState,
    /// Its MAC.
    pub mac: MacAddr,
    /// Buckets it owns, over all rules.
    pub buckets: usize,
    /// Microseconds since it was last heard (0 for this host).
    pub last_heard_us: u64,
    /// Whether its cluster-wide configuration matches this host's.
    pub config_matches: bool,
}

/// A conflict as `nlb query` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConflictInfo {
    /// The VIP.
    pub ip: Ipv4Addr,
    /// The MAC that claimed it.
    pub mac: MacAddr,
    /// When, in the caller's clock.
    pub at_us: u64,
}

/// How many recent conflicts and probes to remember for queries.
const RECENT_LIMIT: usize = 16;

/// Appends to a list of recent things, dropping the oldest beyond [`RECENT_LIMIT`].
fn remember(list: &mut VecDeque<ConflictInfo>, item: ConflictInfo) {
    if list.len() == RECENT_LIMIT {
        list.pop_front();
    }
    list.push_back(item);
}

/// What a host does with a rule locally.
#[derive(Debug, Clone, Copy, PartialEq, Hash, Eq)]
struct RuleSwitch {
    enabled: bool,
    draining: bool,
}

/// The map input of one rule: what every member's heartbeat says about it.
#[derive(Debug, Clone, PartialEq, Hash, Eq)]
enum RuleInput {
    /// Multiple-host rule: each member's effective weight.
    Weights(Vec<(HostId, u32)>),
    /// Single-host rule or the default rule: the one owner.
    Single(Option<HostId>),
    /// Disabled rule.
    Nobody,
}

#[derive(Debug, Clone, PartialEq, Hash, Eq)]
struct View {
    epoch: u32,
    members: MemberSet,
    inputs: Vec<RuleInput>,
    maps: Vec<BucketMap>,
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard: Instant,
    /// Whether its latest heartbeat echoed one this host sent within the failure window:
    /// proof that the peer hears this host now. Only confirmed peers are members; every
    /// peer's claims are respected (module docs, "Liveness").
    confirmed: bool,
    latest: HeartbeatRepr,
    /// The targets of the last heartbeat sent under a different view than `latest`'s.
    previous_targets: Option<Vec<BucketBitmap>>,
}

impl Peer {
    fn participating(&self) -> bool {
        self.confirmed && participating_state(self.latest.state)
    }
    fn view(&self) -> (u32, MemberSet) {
        (self.latest.view_epoch, self.latest.view_members)
    }
}

fn participating_state(state: HostState) -> bool {
    matches!(
        state,
        HostState::Converging | HostState::Converged | HostState::Draining
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Hash, Eq)]
enum Admin {
    Started,
    Stopped,
    Draining,
}

/// One host's cluster state machine.
#[derive(Debug, Clone)]
pub struct Node {
    config: Config,
    id: HostId,
    mac: MacAddr,
    key: Option<HeartbeatKey>,
    cluster_id: u32,
    fingerprint: u64,
    field_digests: [u8; FIELD_DIGESTS_LEN],
    /// Cluster MAC of each VIP, in config order.
    cluster_macs: Vec<(Ipv4Addr, MacAddr)>,
    heartbeat_dst: MacAddr,
    period: Duration,
    window: Duration,
    /// Silence of this host's own heartbeats after which it suspects itself.
    stall_after: Duration,

    incarnation: u32,
    sequence: u64,
    admin: Admin,
    suspended: bool,
    misconfig: Option<Misconfig>,
    /// When probing started, while the first join waits on RFC 5227 probes.
    probing_since: Option<Instant>,
    /// Whether the host took part at the last update.
    was_participating: bool,
    /// Until when a host that just began to take part installs no first view:
    /// [`JOIN_WAIT_PERIODS`] periods, so that hosts starting together hear each other
    /// as members before any of them claims buckets.
    join_wait_until: Option<Instant>,
    probes_sent: u32,
    probed: bool,
    rule_switches: Vec<RuleSwitch>,
    connections: u32,

    view: View,
    owned: Vec<BucketBitmap>,
    keep_established: Vec<bool>,
    converged: bool,
    /// When the current change in membership or weights began.
    change_started: Instant,
    state: HostState,

    peers: BTreeMap<(HostId, MacAddr), Peer>,
    /// Whether any advertised target or the set of peers changed since the maps were
    /// last checked against them ([`Node::repair_maps`]).
    targets_changed: bool,
    replay: BTreeMap<(HostId, MacAddr), AntiReplay>,
    /// The last heartbeat of this cluster that failed authentication: when, and from whom.
    last_bad_tag: Option<(Instant, MacAddr)>,
    /// After a stall: until when no view may be installed (see the module docs).
    stalled_until: Option<Instant>,
    /// The last version 1 heartbeat of this cluster: when, and from whom.
    last_old_release: Option<(Instant, MacAddr)>,
    /// Per drop reason: when it was last reported, and drops since.
    drop_reports: BTreeMap<DropReason, (Option<Instant>, u64)>,

    next_heartbeat: Instant,
    last_heartbeat: Option<Instant>,
    /// (when, sequence) of the heartbeats sent within the failure window, oldest first.
    sent: VecDeque<(Instant, u64)>,
    announce_at: Vec<Instant>,
    last_defence: BTreeMap<Ipv4Addr, Instant>,
    conflicts: VecDeque<ConflictInfo>,
    probes: VecDeque<ConflictInfo>,

    transmits: VecDeque<Vec<u8>>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Whether the daemon's data plane does what the node asked ([`Node::handle_dataplane`]).
    dataplane_healthy: bool,
}

impl Node {
    /// A node for `config`, on a host whose interface has `mac`. `incarnation` must grow
    /// with every start of the daemon (the daemon uses the wall-clock second); `key` is
    /// the shared heartbeat key, if the cluster uses one.
    pub fn new(
        config: Config,
        mac: MacAddr,
        incarnation: u32,
        key: Option<HeartbeatKey>,
        now: Instant,
    ) -> Node {
        let slots = config.rules.len() + 1;
        let cluster_macs: Vec<_> = config
            .cluster
            .vips
            .iter()
            .map(|&vip| (vip, cluster_mac(vip, config.cluster.mode)))
            .collect();
        let lowest_vip = *config.cluster.vips.iter().min().expect("at least one VIP");
        let period = Duration::from_millis(u64::from(config.cluster.heartbeat_ms));
        let window = failure_window(&config);
        let stall_after = stall_threshold(&config);
        let (admin, suspended) = match config.host.initial_state {
            InitialState::Started => (Admin::Started, false),
            InitialState::Stopped => (Admin::Stopped, false),
            InitialState::Suspended => (Admin::Stopped, true),
        };
        let mut node = Node {
            id: config.host.id,
            mac,
            key,
            cluster_id: nlb_wire::addressing::cluster_id(&config.cluster.vips),
            fingerprint: config.fingerprint(),
            field_digests: config.field_digests(),
            heartbeat_dst: cluster_mac(lowest_vip, config.cluster.mode),
            cluster_macs,
            period,
            window,
            stall_after,
            incarnation,
            sequence: 0,
            admin,
            suspended,
            misconfig: None,
            probing_since: None,
            was_participating: false,
            join_wait_until: None,
            probes_sent: 0,
            probed: false,
            rule_switches: vec![
                RuleSwitch {
                    enabled: true,
                    draining: false,
                };
                slots
            ],
            connections: 0,
            view: View {
                epoch: 0,
                members: MemberSet::EMPTY,
                inputs: vec![RuleInput::Nobody; slots],
                maps: vec![BucketMap::unowned(); slots],
            },
            owned: vec![BucketBitmap::new(BUCKETS); slots],
            keep_established: vec![true; slots],
            converged: false,
            change_started: now,
            state: HostState::Stopped,
            peers: BTreeMap::new(),
            targets_changed: false,
            replay: BTreeMap::new(),
            last_bad_tag: None,
            drop_reports: BTreeMap::new(),
            last_old_release: None,
            stalled_until: None,
            next_heartbeat: now,
            last_heartbeat: None,
            sent: VecDeque::new(),
            announce_at: Vec::new(),
            last_defence: BTreeMap::new(),
            conflicts: VecDeque::new(),
            probes: VecDeque::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            dataplane_healthy: true,
            config,
        };
        if node.admin == Admin::Started && !node.suspended {
            node.begin_probing(now);
        }
        node.state = node.compute_state();
        node.update(now);
        // Tell the data plane the initial (empty) ownership.
        for slot in 0..slots {
            node.actions.push_back(Action::SetRule {
                rule: slot,
                owned: node.owned[slot].clone(),
                keep_established: node.keep_established[slot],
            });
        }
        node
    }

    // ----- inputs -------------------------------------------------------------------

    /// Handles one received Ethernet frame. Frames this host sent itself, and frames of
    /// no interest, are ignored. Never panics, whatever the bytes.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        self.detect_stall(now);
        let Ok(frame) = EthernetFrame::parse(bytes) else {
            return;
        };
        if frame.src == self.mac {
            return;
        }
        match frame.ethertype {
            ETHERTYPE_NLB_HEARTBEAT => self.handle_heartbeat(now, frame.src, frame.payload),
            ETHERTYPE_ARP => self.handle_arp(now, frame.src, frame.payload),
            _ => {}
        }
    }

    /// Runs whatever is due at `now`: heartbeats, failure detection, probes and
    /// announcements.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.detect_stall(now);
        self.update(now);
    }

    /// Tells the node whether the data plane applies what it asks (the daemon's nft
    /// batches and lease refreshes succeed). While it does not, the host fails closed: it
    /// accepts no new buckets, so it owns nothing and its heartbeats say so; connections
    /// it has are kept. When it is healthy again, ownership comes back as usual.
    pub fn handle_dataplane(&mut self, now: Instant, healthy: bool) {
        self.detect_stall(now);
        if self.dataplane_healthy != healthy {
            self.dataplane_healthy = healthy;
            self.update(now);
        }
    }

    /// Applies an operator command and returns the resulting state.
    pub fn handle_command(
        &mut self,
        now: Instant,
        command: Command,
    ) -> Result<HostState, CommandError> {
        self.detect_stall(now);
        if self.suspended && !matches!(command, Command::Resume | Command::SetConnections(_)) {
            return Err(CommandError::Suspended);
        }
        match command {
            Command::Start => {
                if let Some(misconfig) = &self.misconfig {
                    if matches!(misconfig, Misconfig::AddressInUse { .. }) {
                        // Probing again is the way to find out whether it is fixed.
                        self.misconfig = None;
                        self.probed = false;
                    } else {
                        return Err(CommandError::Misconfigured(misconfig.to_string()));
                    }
                }
                if self.admin != Admin::Started {
                    self.admin = Admin::Started;
                    if !self.probed {
                        self.begin_probing(now);
                    }
                }
            }
            Command::Stop => self.admin = Admin::Stopped,
            Command::DrainStop => match self.admin {
                Admin::Stopped => return Err(CommandError::AlreadyStopped),
                _ => self.admin = Admin::Draining,
            },
            Command::Suspend => self.suspended = true,
            Command::Resume => {
                if !self.suspended {
                    return Err(CommandError::NotSuspended);
                }
                self.suspended = false;
                if self.admin == Admin::Started && !self.probed {
                    self.begin_probing(now);
                }
            }
            Command::EnableRule(selector) => self.switch_rules(selector, true, false)?,
            Command::DisableRule(selector) => self.switch_rules(selector, false, false)?,
            Command::DrainRule(selector) => self.switch_rules(selector, true, true)?,
            Command::SetConnections(count) => self.connections = count,
        }
        self.update(now);
        Ok(self.state)
    }

    fn switch_rules(
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

    // ----- outputs ------------------------------------------------------------------

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next data-plane change, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.next_heartbeat;
        for peer in self.peers.values() {
            next = next.min(peer.last_heard + self.window + Duration::from_micros(1));
        }
        for &at in &self.announce_at {
            next = next.min(at);
        }
        if let Some(since) = self.probing_since {
            next = next.min(self.next_probe_at(since));
        }
        if let Some(until) = self.join_wait_until {
            next = next.min(until);
        }
        next
    }

    // ----- queries ------------------------------------------------------------------

    /// This host's id.
    pub fn id(&self) -> HostId {
        self.id
    }

    /// This host's state.
    pub fn state(&self) -> HostState {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why the host is misconfigured, if it is.
    pub fn misconfig(&self) -> Option<&Misconfig> {
        self.misconfig.as_ref()
    }

    /// The installed view: epoch and members.
    pub fn view(&self) -> (u32, MemberSet) {
        (self.view.epoch, self.view.members)
    }

    /// What the host accepts new connections for, per rule slot (default rule last).
    pub fn owned(&self) -> &[BucketBitmap] {
        &self.owned
    }

    /// What the view assigns this host, per rule slot.
    pub fn targets(&self) -> Vec<BucketBitmap> {
        self.view
            .maps
            .iter()
            .map(|m| m.buckets_of(self.id))
            .collect()
    }

    /// The installed map of a rule slot.
    pub fn map(&self, slot: usize) -> Option<&BucketMap> {
        self.view.maps.get(slot)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Recent conflicts, oldest first.
    pub fn recent_conflicts(&self) -> impl Iterator<Item = &ConflictInfo> {
        self.conflicts.iter()
    }

    /// Recent probes for a VIP from outside the cluster ("someone is about to use our
    /// address"), oldest first.
    pub fn recent_probes(&self) -> impl Iterator<Item = &ConflictInfo> {
        self.probes.iter()
    }

    /// Takes a new configuration whose cluster-wide part is unchanged (a reload): this
    /// host's weights and priorities take effect with the next heartbeat, and the
    /// cluster moves only the buckets they move. Refused, with the reason, if the
    /// cluster-wide part or the host id differs: those need a restart.
    pub fn reload(&mut self, now: Instant, config: Config) -> Result<(), String> {
        self.detect_stall(now);
        if config.host.id != self.config.host.id {
            return Err(format!(
                "host.id changed from {} to {}: restart the daemon to change it",
                self.config.host.id, config.host.id
            ));
        }
        if config.fingerprint() != self.fingerprint {
            let new = config.field_digests();
            let field = (0..FIELD_DIGESTS_LEN)
                .find(|&i| new[i] != self.field_digests[i])
                .map_or_else(|| "the configuration".to_owned(), field_name);
            return Err(format!(
                "{field} changed: the cluster-wide configuration must change on every host \
                 together; drainstop this host, restart it with the new file, and do the same \
                 on the others"
            ));
        }
        self.config = config;
        self.hurry_heartbeat(now);
        self.update(now);
        Ok(())
    }

    /// Who accepts new connections for `bucket` of rule `slot` now, as far as this host
    /// knows: itself, or the peers whose latest heartbeat lists it as owned. More than one
    /// only in a partition; none during a hand-off or a failover.
    pub fn owners_of(&self, slot: usize, bucket: u16) -> Vec<HostId> {
        let mut owners: Vec<HostId> = self
            .peers
            .iter()
            .filter(|(_, peer)| {
                peer.latest
                    .rules
                    .get(slot)
                    .is_some_and(|rule| rule.owned.contains(bucket))
            })
            .map(|(&(id, _), _)| id)
            .collect();
        if self
            .owned
            .get(slot)
            .is_some_and(|owned| owned.contains(bucket))
        {
            owners.push(self.id);
        }
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// This host and every peer heard within the failure window, by id.
    pub fn members(&self, now: Instant) -> Vec<MemberInfo> {
        let mut members = vec![MemberInfo {
            id: self.id,
            state: self.state,
            mac: self.mac,
            buckets: self.owned.iter().map(BucketBitmap::len).sum(),
            last_heard_us: 0,
            config_matches: true,
        }];
        for (&(id, mac), peer) in &self.peers {
            members.push(MemberInfo {
                id,
                state: peer.latest.state,
                mac,
                buckets: peer.latest.rules.iter().map(|r| r.owned.len()).sum(),
                last_heard_us: now.saturating_since(peer.last_heard).as_micros() as u64,
                config_matches: peer.latest.config_fingerprint == self.fingerprint,
            });
        }
        members.sort_by_key(|m| (m.id, m.mac));
        members
    }

    /// A hash of the state that decides the node's future behaviour, with times taken
    /// relative to `now` and statistics, events and logs left out. Two nodes with equal
    /// digests act alike from here on; a model checker uses it to merge equal states.
    pub fn protocol_digest(&self, now: Instant) -> u64 {
        use std::hash::{Hash, Hasher};
        let ago = |at: Instant| now.micros() as i128 - at.micros() as i128;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.admin, self.suspended, &self.misconfig, self.probed).hash(&mut hasher);
        self.probing_since.map(ago).hash(&mut hasher);
        (self.was_participating, self.join_wait_until.map(ago)).hash(&mut hasher);
        (
            self.incarnation,
            self.dataplane_healthy,
            self.stalled_until.map(ago),
            self.last_bad_tag.map(|(at, mac)| (ago(at), mac)),
            self.last_old_release.map(|(at, mac)| (ago(at), mac)),
        )
            .hash(&mut hasher);
        (&self.rule_switches, self.connections, &self.view).hash(&mut hasher);
        (
            &self.owned,
            &self.keep_established,
            self.converged,
            self.state,
        )
            .hash(&mut hasher);
        (ago(self.next_heartbeat), self.last_heartbeat.map(ago)).hash(&mut hasher);
        self.announce_at
            .iter()
            .map(|&at| ago(at))
            .for_each(|a| a.hash(&mut hasher));
        for (key, peer) in &self.peers {
            (
                key,
                &peer.latest,
                ago(peer.last_heard),
                &peer.previous_targets,
                peer.confirmed,
            )
                .hash(&mut hasher);
        }
        // Sequence numbers decide which late frames replay protection drops, and which
        // echoes confirm a peer.
        (self.sequence, &self.replay).hash(&mut hasher);
        for &(at, sequence) in &self.sent {
            (ago(at), sequence).hash(&mut hasher);
        }
        (self.targets_changed, self.probes_sent).hash(&mut hasher);
        hasher.finish()
    }

    /// Whether this host takes part in the cluster now.
    pub fn participating(&self) -> bool {
        self.admin != Admin::Stopped
            && !self.suspended
            && self.misconfig.is_none()
            && self.probing_since.is_none()
            && self.probed
    }

    // ----- heartbeats in ------------------------------------------------------------

    fn drop_heartbeat(&mut self, now: Instant, reason: DropReason, from: MacAddr) {
        *self.stats.heartbeats_dropped.entry(reason).or_default() += 1;
        // One entry per reason: the table is as small as `DropReason`.
        let (last, unreported) = self.drop_reports.entry(reason).or_insert((None, 0));
        *unreported += 1;
        if last.is_none_or(|at| now.saturating_since(at) >= DROP_REPORT_INTERVAL) {
            self.events.push_back(Event::HeartbeatDropped {
                reason,
                from,
                count: *unreported,
            });
            *last = Some(now);
            *unreported = 0;
        }
    }

    fn handle_heartbeat(&mut self, now: Instant, src: MacAddr, payload: &[u8]) {
        // Cheapest checks first, so that a flood costs as little as it can: the format,
        // the version, the cluster, and only then the tag.
        let packet = match HeartbeatPacket::new_checked(payload) {
            Ok(packet) => packet,
            Err(nlb_wire::Error::Unsupported(_)) => {
                return self.drop_heartbeat(now, DropReason::Version, src);
            }
            Err(_) => return self.drop_heartbeat(now, DropReason::Malformed, src),
        };
        if packet.version() != nlb_wire::heartbeat::VERSION {
            if packet.cluster_id() == self.cluster_id {
                self.last_old_release = Some((now, src));
                if self.view.epoch == 0 {
                    self.update(now);
                }
            }
            return self.drop_heartbeat(now, DropReason::Version, src);
        }
        if packet.cluster_id() != self.cluster_id {
            return self.drop_heartbeat(now, DropReason::ForeignCluster, src);
        }
        let heartbeat = match HeartbeatRepr::parse(&packet, self.key.as_ref()) {
            Ok(heartbeat) => heartbeat,
            Err(nlb_wire::Error::BadTag) => {
                self.last_bad_tag = Some((now, src));
                if self.view.epoch == 0 {
                    // Only a host that never joined judges a key mismatch.
                    self.update(now);
                }
                return self.drop_heartbeat(now, DropReason::BadTag, src);
            }
            Err(_) => return self.drop_heartbeat(now, DropReason::Malformed, src),
        };
        if heartbeat.sender_mac != Some(src) {
            // Re-sent under another source: with a key the tag already failed, as it
            // covers the MAC; without one this still refuses the plain replay.
            return self.drop_heartbeat(now, DropReason::SpoofedSource, src);
        }
        // Nothing from the wire is used before it is checked against this host's own
        // configuration: every nlb host has 256 buckets per rule, a host with this
        // configuration has exactly this many rules, and an epoch at its ceiling could
        // not grow.
        let fits = heartbeat
            .rules
            .iter()
            .all(|rule| rule.owned.bucket_count() == BUCKETS)
            && (heartbeat.rules.len() == self.owned.len()
                || heartbeat.config_fingerprint != self.fingerprint)
            && heartbeat.view_epoch < u32::MAX - 1;
        if !fits {
            return self.drop_heartbeat(now, DropReason::Malformed, src);
        }
        let key = (heartbeat.host_id, src);
        // Per-sender state is bounded: at most MACS_PER_HOST_ID senders per host id are
        // tracked (a second one is already a duplicate id), and replay windows of
        // senders that are not peers any more are dropped when the table is full.
        let macs_of_id = self
            .peers
            .range((heartbeat.host_id, MacAddr::ZERO)..=(heartbeat.host_id, MacAddr::BROADCAST))
            .count();
        if !self.peers.contains_key(&key) && macs_of_id >= MACS_PER_HOST_ID {
            // With a key, a sender that does not hear this host gives way: stale MACs
            // replayed by an attacker cannot keep a live host of that id out. (Without
            // one anyone can pose as any host anyway, and churning the table would only
            // make a flood cost more.)
            let unconfirmed = self
                .key
                .is_some()
                .then(|| {
                    self.peers
                        .range(
                            (heartbeat.host_id, MacAddr::ZERO)
                                ..=(heartbeat.host_id, MacAddr::BROADCAST),
                        )
                        .find(|(_, peer)| !peer.confirmed)
                        .map(|(&key, _)| key)
                })
                .flatten();
            match unconfirmed {
                Some(stale) => {
                    self.peers.remove(&stale);
                    self.targets_changed = true;
                }
                None => return self.drop_heartbeat(now, DropReason::DuplicateHostId, src),
            }
        }
        if self.replay.len() >= REPLAY_TABLE_LIMIT && !self.replay.contains_key(&key) {
            let peers = &self.peers;
            self.replay.retain(|key, _| peers.contains_key(key));
        }
        if self
            .replay
            .entry(key)
            .or_default()
            .check(heartbeat.incarnation, heartbeat.sequence)
            .is_err()
        {
            return self.drop_heartbeat(now, DropReason::Replay, src);
        }
        if heartbeat.host_id == self.id {
            // Counted, and kept as a peer (it is never a member: it has this host's id)
            // so that it hears its echo and finds this host.
            self.drop_heartbeat(now, DropReason::DuplicateHostId, src);
        }
        self.stats.heartbeats_received += 1;
        let confirmed = self.echoes_me(now, &heartbeat);
        let mut restarted = false;
        match self.peers.get_mut(&key) {
            Some(peer) => {
                self.targets_changed |= peer.confirmed != confirmed;
                peer.confirmed = confirmed;
                restarted = peer.latest.incarnation != heartbeat.incarnation;
                if peer.view() != (heartbeat.view_epoch, heartbeat.view_members) {
                    peer.previous_targets =
                        Some(peer.latest.rules.iter().map(|r| r.target.clone()).collect());
                }
                let same_targets = peer.latest.rules.len() == heartbeat.rules.len()
                    && peer
                        .latest
                        .rules
                        .iter()
                        .zip(&heartbeat.rules)
                        .all(|(a, b)| a.target == b.target);
                self.targets_changed |=
                    !same_targets || peer.view() != (heartbeat.view_epoch, heartbeat.view_members);
                peer.latest = heartbeat;
                peer.last_heard = now;
            }
            None => {
                self.targets_changed = true;
                if heartbeat.host_id != self.id {
                    self.events.push_back(Event::PeerUp {
                        host: heartbeat.host_id,
                        mac: src,
                    });
                }
                // Echo it back soon, so that it can count this host.
                self.hurry_heartbeat(now);
                self.peers.insert(
                    key,
                    Peer {
                        last_heard: now,
                        confirmed,
                        latest: heartbeat,
                        previous_targets: None,
                    },
                );
            }
        }
        if restarted {
            // A restart: echo it back soon, so that it can count this host.
            self.hurry_heartbeat(now);
        }
        self.update(now);
    }

    /// Whether `heartbeat` echoes this host's incarnation and a sequence this host sent
    /// within the failure window: then its sender heard this host that recently, and (as
    /// it declares a host dead only after a window without it) cannot have declared it
    /// dead before now. An old capture, or a frame that queued while this host was
    /// paused, echoes something older and proves nothing.
    fn echoes_me(&self, now: Instant, heartbeat: &HeartbeatRepr) -> bool {
        let Some(floor) = self
            .sent
            .iter()
            .find(|&&(at, _)| now.saturating_since(at) <= self.window)
            .map(|&(_, sequence)| sequence)
        else {
            return false;
        };
        heartbeat.echoes.iter().any(|echo| {
            echo.host_id == self.id
                && echo.incarnation == self.incarnation
                && (floor..=self.sequence).contains(&echo.sequence)
        })
    }

    /// The echoes for the next heartbeat: the newest heartbeat of every sender heard,
    /// in id order. One per sender, so that two hosts that share an id (a duplicate)
    /// both hear their echo, find each other, and one of them stays out; at most
    /// [`MAX_ECHOES`](nlb_wire::heartbeat::MAX_ECHOES), which one per id always fits in.
    fn echoes(&self) -> Vec<Echo> {
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

    // ----- the state machine --------------------------------------------------------

    /// The stall rule of the module docs: run at every input, before anything else.
    fn detect_stall(&mut self, now: Instant) {
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
        self.stalled_until = Some(now + self.window);
        // Tell the peers at once that this host owns nothing.
        self.next_heartbeat = now;
    }

    /// Re-derives everything from the inputs. Called after every input.
    fn update(&mut self, now: Instant) {
        self.expire_peers(now);
        self.run_probing(now);
        self.check_misconfig(now);
        let live = self.live_set();
        self.maybe_install_view(now, live);
        self.repair_maps(now);
        self.update_ownership(now);
        self.update_state(now);
        self.run_announcements(now);
        if now >= self.next_heartbeat {
            self.send_heartbeat(now, live);
        }
    }

    fn expire_peers(&mut self, now: Instant) {
        let window = self.window;
        let expired: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, peer)| now > peer.last_heard + window)
            .map(|(&key, _)| key)
            .collect();
        for key in expired {
            self.targets_changed = true;
            self.peers.remove(&key);
            if key.0 != self.id {
                self.events.push_back(Event::PeerDown { host: key.0 });
            }
        }
    }

    fn begin_probing(&mut self, now: Instant) {
        self.probing_since = Some(now);
        self.probes_sent = 0;
        self.next_heartbeat = now;
    }

    /// Probe `n` (0-based) goes out `(n + 1)` intervals after probing starts, so that a
    /// heartbeat announces this host's MAC to the members before its first probe (a
    /// member that knows the MAC does not mistake the probe for a stranger's).
    fn next_probe_at(&self, since: Instant) -> Instant {
        if self.probes_sent < PROBE_COUNT {
            since + PROBE_INTERVAL * (self.probes_sent + 1)
        } else {
            since + PROBE_INTERVAL * PROBE_COUNT + PROBE_WAIT_AFTER
        }
    }

    fn run_probing(&mut self, now: Instant) {
        let Some(since) = self.probing_since else {
            return;
        };
        while self.probes_sent < PROBE_COUNT && now >= self.next_probe_at(since) {
            for vip in self.config.cluster.vips.clone() {
                let probe = ArpRepr::probe(self.mac, vip);
                self.transmits.push_back(probe.to_frame(self.mac, None));
            }
            self.probes_sent += 1;
        }
        if self.probes_sent >= PROBE_COUNT && now >= self.next_probe_at(since) {
            self.probing_since = None;
            self.probed = true;
            self.schedule_announcements(now);
            // Join with a heartbeat at once, rather than a period later.
            self.next_heartbeat = now;
        }
    }

    fn check_misconfig(&mut self, now: Instant) {
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
    fn old_release(&self, now: Instant) -> Option<Misconfig> {
        let (at, mac) = self.last_old_release?;
        let fresh = now.saturating_since(at) <= self.window;
        (fresh && self.view.epoch == 0).then_some(Misconfig::OldRelease { mac })
    }

    /// Before the first join: a heartbeat of this cluster failed authentication within
    /// the failure window, and no peer with this host's configuration is heard.
    fn key_mismatch(&self, now: Instant) -> Option<Misconfig> {
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
    fn duplicate_of_me(&self) -> Option<MacAddr> {
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
    fn config_mismatch(&self) -> Option<Misconfig> {
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

    /// The participating hosts this host hears with its own configuration, itself
    /// included if it participates.
    fn live_set(&self) -> MemberSet {
        let mut live = MemberSet::EMPTY;
        if self.participating() {
            live.insert(self.id);
            for (&(id, _), peer) in &self.peers {
                if id != self.id
                    && peer.participating()
                    && peer.latest.config_fingerprint == self.fingerprint
                {
                    live.insert(id);
                }
            }
        }
        live
    }

    /// The participating peer record of `host`, if it is heard.
    fn peer(&self, host: HostId) -> Option<&Peer> {
        self.peers
            .range((host, MacAddr::ZERO)..=(host, MacAddr::BROADCAST))
            .map(|(_, peer)| peer)
            .find(|peer| peer.participating() && peer.latest.config_fingerprint == self.fingerprint)
    }

    /// What every member of `members` says about each rule.
    fn rule_inputs(&self, members: MemberSet) -> Vec<RuleInput> {
        let configured = self.config.rules.len();
        (0..=configured)
            .map(|slot| {
                let mode = self
                    .config
                    .rules
                    .get(slot)
                    .map_or(crate::config::Rule::FALLBACK.mode, |rule| rule.mode);
                // (host, effective weight, priority) of each member for this rule.
                let facts: Vec<(HostId, u32, Option<u8>)> = members
                    .iter()
                    .filter_map(|host| {
                        let (state, weight, priority, enabled, draining) = if host == self.id {
                            let rule = self.config.rules.get(slot);
                            let switch = self.rule_switches[slot];
                            (
                                self.state_for_wire(),
                                rule.and_then(|r| r.weight),
                                rule.and_then(|r| r.priority),
                                switch.enabled,
                                switch.draining,
                            )
                        } else {
                            let peer = self.peer(host)?;
                            let rule = peer.latest.rules.get(slot)?;
                            (
                                peer.latest.state,
                                rule.weight,
                                rule.priority,
                                rule.enabled,
                                rule.draining,
                            )
                        };
                        let eligible = state != HostState::Draining && enabled && !draining;
                        let weight = if eligible {
                            weight.map_or(EQUAL_WEIGHT, u32::from)
                        } else {
                            0
                        };
                        Some((host, weight, priority))
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

    fn maybe_install_view(&mut self, now: Instant, live: MemberSet) {
        let participating = self.participating();
        if participating && !self.was_participating {
            self.join_wait_until = Some(now + self.period * JOIN_WAIT_PERIODS);
        }
        self.was_participating = participating;
        if self.join_wait_until.is_some_and(|until| now >= until) {
            self.join_wait_until = None;
        }
        if !participating {
            self.join_wait_until = None;
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
        if self.stalled_until.is_some_and(|until| now >= until) {
            self.stalled_until = None;
        }
        if !agreed
            || (self.view.members.is_empty()
                && (self.join_wait_until.is_some() || self.stalled_until.is_some()))
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
    fn base_maps(&self, live: MemberSet) -> Vec<BucketMap> {
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
    fn repair_maps(&mut self, now: Instant) {
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

    fn update_ownership(&mut self, now: Instant) {
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
            let keep = keep_established && switch.enabled;
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

    fn compute_state(&self) -> HostState {
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
    fn state_for_wire(&self) -> HostState {
        if self.probing_since.is_some() {
            HostState::Stopped
        } else {
            self.state
        }
    }

    fn update_state(&mut self, now: Instant) {
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

    // ----- heartbeats out -----------------------------------------------------------

    /// Sends the next heartbeat soon: now, unless one went out less than a quarter
    /// period ago, which bounds the rate when things change quickly.
    fn hurry_heartbeat(&mut self, now: Instant) {
        let soonest = self
            .last_heartbeat
            .map_or(now, |last| last + self.period / 4)
            .max(now);
        self.next_heartbeat = self.next_heartbeat.min(soonest);
    }

    fn rule_status(&self, slot: usize) -> RuleStatus {
        let rule = self.config.rules.get(slot);
        let switch = self.rule_switches[slot];
        RuleStatus {
            weight: rule.and_then(|r| r.weight),
            priority: rule.and_then(|r| r.priority),
            enabled: switch.enabled,
            draining: switch.draining,
            owned: self.owned[slot].clone(),
            target: self.view.maps[slot].buckets_of(self.id),
        }
    }

    fn send_heartbeat(&mut self, now: Instant, live: MemberSet) {
        self.next_heartbeat = now + self.period;
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

    // ----- ARP ----------------------------------------------------------------------

    fn cluster_mac_of(&self, vip: Ipv4Addr) -> Option<MacAddr> {
        self.cluster_macs
            .iter()
            .find(|(v, _)| *v == vip)
            .map(|&(_, mac)| mac)
    }

    fn is_cluster_mac(&self, mac: MacAddr) -> bool {
        self.cluster_macs.iter().any(|&(_, m)| m == mac)
    }

    fn is_member_mac(&self, mac: MacAddr) -> bool {
        mac == self.mac || self.peers.keys().any(|&(_, m)| m == mac)
    }

    fn schedule_announcements(&mut self, now: Instant) {
        self.announce_at = ANNOUNCE_OFFSETS
            .iter()
            .map(|&offset| now + offset)
            .collect();
    }

    fn announce(&mut self, vip: Ipv4Addr) {
        if let Some(cluster_mac) = self.cluster_mac_of(vip) {
            let frame = ArpRepr::announcement(cluster_mac, vip).to_frame(self.mac, None);
            self.transmits.push_back(frame);
            self.stats.arp_announcements_sent += 1;
        }
    }

    fn run_announcements(&mut self, now: Instant) {
        let due = self.announce_at.iter().filter(|&&at| at <= now).count();
        if due == 0 {
            return;
        }
        self.announce_at.retain(|&at| at > now);
        if self.participating() {
            for vip in self.config.cluster.vips.clone() {
                self.announce(vip);
            }
        }
    }

    /// At most two hosts answer ARP for a VIP: the two lowest ids this host hears as live
    /// members (a designated responder and its backup, so that every request is answered
    /// while one of them fails, and by the next ones as soon as both are silent, even
    /// before a new view is agreed). A host outside any view, joining or alone, answers
    /// for itself.
    fn answers_arp(&self) -> bool {
        self.participating()
            && (!self.view.members.contains(self.id)
                || self
                    .live_set()
                    .iter()
                    .take(ARP_RESPONDERS)
                    .any(|h| h == self.id))
    }

    fn handle_arp(&mut self, now: Instant, eth_src: MacAddr, payload: &[u8]) {
        let Ok(arp) = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) else {
            self.stats.arp_malformed += 1;
            return;
        };
        if self.is_member_mac(eth_src) || self.is_cluster_mac(arp.sender_mac) {
            return;
        }
        let kind = arp.kind();
        let vips = &self.config.cluster.vips;
        if kind != ArpKind::Probe && vips.contains(&arp.sender_ip) {
            self.handle_conflict(now, arp.sender_ip, arp.sender_mac);
            return;
        }
        if !vips.contains(&arp.target_ip) {
            return;
        }
        match kind {
            ArpKind::Probe => {
                self.stats.probes_seen += 1;
                remember(
                    &mut self.probes,
                    ConflictInfo {
                        ip: arp.target_ip,
                        mac: arp.sender_mac,
                        at_us: now.micros(),
                    },
                );
                self.events.push_back(Event::ProbeSeen {
                    ip: arp.target_ip,
                    mac: arp.sender_mac,
                });
                self.reply(&arp);
            }
            ArpKind::Request => self.reply(&arp),
            _ => {}
        }
    }

    fn reply(&mut self, request: &ArpRepr) {
        if !self.answers_arp() {
            return;
        }
        let Some(cluster_mac) = self.cluster_mac_of(request.target_ip) else {
            return;
        };
        let reply = ArpRepr::reply_to(request, cluster_mac, request.target_ip);
        self.transmits.push_back(reply.to_frame(self.mac, None));
        self.stats.arp_replies_sent += 1;
    }

    fn handle_conflict(&mut self, now: Instant, ip: Ipv4Addr, mac: MacAddr) {
        self.stats.conflicts += 1;
        if self.probing_since.is_some() {
            // RFC 5227 §2.1.1: someone answered or uses the address we are probing for.
            self.probing_since = None;
            self.misconfig = Some(Misconfig::AddressInUse { ip, mac });
            self.events
                .push_back(Event::Misconfigured(Misconfig::AddressInUse { ip, mac }));
            self.update(now);
            return;
        }
        let defended = self.participating()
            && self
                .last_defence
                .get(&ip)
                .is_none_or(|&at| now.saturating_since(at) >= DEFEND_INTERVAL);
        if defended {
            self.last_defence.insert(ip, now);
            self.announce(ip);
        }
        remember(
            &mut self.conflicts,
            ConflictInfo {
                ip,
                mac,
                at_us: now.micros(),
            },
        );
        self.events.push_back(Event::Conflict { ip, mac, defended });
    }
}
