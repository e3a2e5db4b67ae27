//! One host's share of the cluster, as a deterministic state machine: membership,
//! view agreement, bucket ownership, host and rule states, misconfiguration, and the ARP
//! responder.
//!
//! # The contract
//!
//! In the style of quinn-proto and smoltcp, the [`Node`] never does I/O and never reads a
//! clock; every input carries `now`, and every output is polled:
//!
//! - inputs: [`Node::handle_frame`] (every frame received on the cluster interface),
//!   [`Node::handle_timeout`] (when [`Node::poll_timeout`] is due),
//!   [`Node::handle_command`] (operator commands), [`Node::handle_connections`] (the data
//!   plane's count of open connections), [`Node::handle_dataplane`] (whether the data
//!   plane does what the node asks) and [`Node::reload`] (a new configuration file);
//! - outputs: [`Node::poll_transmit`] (frames to send), [`Node::poll_action`] (kernel
//!   changes: which buckets to accept), [`Node::poll_event`] (things to log and count),
//!   [`Node::poll_timeout`] (when to call [`Node::handle_timeout`] next).
//!
//! Every input first applies the stall rule, then re-derives the state from everything
//! known; no input panics, whatever the bytes. The caller applies every [`Action`] before
//! it sends the heartbeats polled after it: a release is applied before it is announced.
//!
//! # The rules, in brief
//!
//! Each is stated in full, with its reasons, in the file that implements it.
//!
//! - **Liveness** (`membership.rs`): a peer is a member only while its latest heartbeat
//!   echoes one this host sent within the failure window, so replays and stale frames
//!   confirm nobody; after the window without a heartbeat it is dead.
//! - **Agreement** (`view.rs`): when every host of this host's live set advertises that
//!   same set, each installs the view `(epoch, set)` and computes the same bucket maps
//!   from the same previous targets.
//! - **Release before claim** (`ownership.rs`): a host accepts a bucket of its target only
//!   when every member advertises its view and no live peer lists the bucket, and drops
//!   it as soon as either fails; disagreement costs availability, never safety.
//! - **Stalls** (`ownership.rs`): a host that has not sent a heartbeat for
//!   [`crate::lease::stall_threshold`] releases everything, forgets its
//!   view and its peers, and rejoins after listening for a whole window.
//! - **Health** (`health.rs`): a host whose check is down takes no share of the rules it
//!   guards, unless every member that would take one has a check down for it too.
//! - **ARP** (`arp.rs`): probes before the first join (RFC 5227 §2.1); the two lowest
//!   members answer for the VIPs with the cluster MAC (RFC 826), announce them
//!   (RFC 5227 §2.3) and defend them (§2.4).
//!
//! # Where each subsystem lives
//!
//! Each file is one `impl Node` block, as smoltcp's `iface/interface/`:
//!
//! | file | subsystem |
//! |---|---|
//! | `mod.rs` | the type, its inputs, outputs and queries |
//! | `membership.rs` | heartbeats in: checks, drops, peers, echoes and confirmation, expiry |
//! | `view.rs` | view agreement and convergence: maps, repair, the host's state |
//! | `ownership.rs` | what this host accepts: release before claim, rule switches, stalls |
//! | `misconfig.rs` | why a host stays out: configuration, duplicate id, key, old release |
//! | `advertising.rs` | heartbeats out: building and pacing them |
//! | `arp.rs` | ARP answers, probes, announcements and conflicts (RFC 826, RFC 5227) |
//! | `health.rs` | what a down health check does to the rules it guards; the panic rule |
//! | `timers.rs` | the node's named deadlines ([`Timer`]) and when it wakes |
//! | `reload.rs` | which configuration changes apply in place ([`Node::reload`]) |

mod advertising;
mod arp;
mod health;
mod membership;
mod misconfig;
mod ownership;
mod reload;
mod timers;
mod view;

pub use arp::{
    ANNOUNCE_OFFSETS, ARP_RESPONDERS, ConflictInfo, DEFEND_INTERVAL, PROBE_COUNT, PROBE_INTERVAL,
    PROBE_WAIT_AFTER,
};
pub use membership::{
    DROP_REPORT_INTERVAL, DropReason, MACS_PER_HOST_ID, MemberInfo, REPLAY_TABLE_LIMIT,
};
pub use misconfig::Misconfig;
pub use reload::{Rejoin, ReloadError, ReloadOutcome};
pub use timers::Timer;
pub use view::{EQUAL_WEIGHT, JOIN_WAIT_PERIODS};

use crate::buckets::{BUCKETS, BucketMap, HostId};
use crate::config::{Config, InitialState};
use crate::lease::{failure_window, stall_threshold};
use crate::time::Instant;
use membership::Peer;
use nlb_wire::MacAddr;
use nlb_wire::addressing::cluster_mac;
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::heartbeat::{AntiReplay, FIELD_DIGESTS_LEN, HeartbeatKey, HostState};
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;
use timers::TimerTable;
use view::{RuleInput, View};

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
    /// A health check's verdict changed.
    CheckChanged {
        /// Its index in `[[check]]`.
        index: usize,
        /// Its name.
        name: String,
        /// The new verdict.
        health: crate::check::Health,
        /// The last failure's text, if any.
        error: Option<String>,
    },
    /// A rule entered or left panic: every member that would serve it has a check down
    /// for it, so every member ignores those checks rather than drop its traffic.
    CheckPanic {
        /// The rule slot.
        slot: usize,
        /// Whether the panic began (true) or ended.
        active: bool,
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

/// What a host does with a rule locally.
#[derive(Debug, Clone, Copy, PartialEq, Hash, Eq)]
struct RuleSwitch {
    enabled: bool,
    draining: bool,
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
    probes_sent: u32,
    probed: bool,
    rule_switches: Vec<RuleSwitch>,
    connections: u32,
    /// The state of each `[[check]]`, in configuration order.
    checks: Vec<crate::check::CheckTracker>,
    /// Per rule slot: whether the panic rule of `health.rs` holds under the view.
    check_panic: Vec<bool>,

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
    /// The last version 1 heartbeat of this cluster: when, and from whom.
    last_old_release: Option<(Instant, MacAddr)>,
    /// Per drop reason: when it was last reported, and drops since.
    drop_reports: BTreeMap<DropReason, (Option<Instant>, u64)>,

    /// Every named deadline ([`Timer`]).
    timers: TimerTable,
    last_heartbeat: Option<Instant>,
    /// (when, sequence) of the heartbeats sent within the failure window, oldest first.
    sent: VecDeque<(Instant, u64)>,
    /// When the announcements of the current series go out, earliest first (the next is
    /// [`Timer::Announce`]).
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
            checks: vec![crate::check::CheckTracker::default(); config.checks.len()],
            check_panic: vec![false; slots],
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
            timers: TimerTable::default(),
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
        node.timers.set(Timer::Heartbeat, now);
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

    /// Takes the data plane's count of open connections (from conntrack) and returns the
    /// resulting state: a draining host stops once it has none. Accepted in any state,
    /// suspended included; it is telemetry, not a command.
    pub fn handle_connections(&mut self, now: Instant, count: u32) -> HostState {
        self.detect_stall(now);
        self.connections = count;
        self.update(now);
        self.state
    }

    /// Applies an operator command and returns the resulting state.
    pub fn handle_command(
        &mut self,
        now: Instant,
        command: Command,
    ) -> Result<HostState, CommandError> {
        self.detect_stall(now);
        if self.suspended && command != Command::Resume {
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
        }
        self.update(now);
        Ok(self.state)
    }

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
        self.peers
            .values()
            .map(|peer| peer.last_heard + self.window + Duration::from_micros(1))
            .chain(self.timers.next_wakeup())
            .min()
            .expect("the heartbeat timer is always armed")
    }

    /// This host's id.
    pub fn id(&self) -> HostId {
        self.id
    }

    /// This host's incarnation: it grows with every start (and every [`Node::successor`]).
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// When a named timer expires, if it is armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
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

    /// A hash of the state that decides the node's future behaviour, with times taken
    /// relative to `now` and statistics, events and logs left out. Two nodes with equal
    /// digests act alike from here on; a model checker uses it to merge equal states.
    pub fn protocol_digest(&self, now: Instant) -> u64 {
        use std::hash::{Hash, Hasher};
        let ago = |at: Instant| now.micros() as i128 - at.micros() as i128;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.admin, self.suspended, &self.misconfig, self.probed).hash(&mut hasher);
        self.probing_since.map(ago).hash(&mut hasher);
        self.was_participating.hash(&mut hasher);
        for (timer, at) in self.timers.iter() {
            (timer, at.map(ago)).hash(&mut hasher);
        }
        (
            self.incarnation,
            self.dataplane_healthy,
            self.last_bad_tag.map(|(at, mac)| (ago(at), mac)),
            self.last_old_release.map(|(at, mac)| (ago(at), mac)),
        )
            .hash(&mut hasher);
        (&self.rule_switches, self.connections, &self.view).hash(&mut hasher);
        for check in &self.checks {
            (check.health, check.failures, check.successes).hash(&mut hasher);
        }
        self.check_panic.hash(&mut hasher);
        (
            &self.owned,
            &self.keep_established,
            self.converged,
            self.state,
        )
            .hash(&mut hasher);
        self.last_heartbeat.map(ago).hash(&mut hasher);
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

    /// Re-derives everything from the inputs. Called after every input.
    fn update(&mut self, now: Instant) {
        self.expire_peers(now);
        self.run_probing(now);
        self.check_misconfig(now);
        let live = self.live_set();
        self.maybe_install_view(now, live);
        self.repair_maps(now);
        self.update_check_panic();
        self.update_ownership(now);
        self.update_state(now);
        self.run_announcements(now);
        if self.timers.is_due(Timer::Heartbeat, now) {
            self.send_heartbeat(now, live);
        }
    }
}
