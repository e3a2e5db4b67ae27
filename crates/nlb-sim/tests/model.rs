//! Exhaustive model checking of the convergence protocol with stateright, wrapping the
//! real [`Node`] (not a copy of its logic).
//!
//! The model: three hosts on one segment, time in whole heartbeat periods. Between two
//! ticks, every frame in flight is delivered, in any order, or lost (up to a budget, and
//! never `tolerance` in a row on one link: that would be a partition, where a host
//! rightly takes over the buckets of peers it cannot hear);
//! at any moment one host may crash (kernel and daemon gone). One variant also lets a
//! stopped host join at any tick, and one lets a host's daemon **pause** (SIGSTOP, a
//! frozen VM) for any number of ticks: its timers stop, frames for it queue in order as
//! its socket would keep them, its kernel honours its buckets only for the ownership
//! lease after the pause began, and when it resumes it sees either its overdue timeout
//! or its queued frames first. The checker explores every interleaving up to the
//! time bound and checks:
//!
//! - **safety**: no two running hosts accept new connections for one bucket, ever;
//! - **liveness** (bounded): in every final state where nothing went wrong for long
//!   enough (the failure window plus a few periods), every bucket has an owner.
//!
//! States are merged by the nodes' [`Node::protocol_digest`], which leaves out counters
//! and sequence numbers that do not change what a node does next.
//!
//! `NLB_MODEL_TICKS` and `NLB_MODEL_LOSSES` raise the time bound and the loss budget
//! for longer runs by hand.

use nlb_core::buckets::BUCKETS;
use nlb_core::node::{Command, Node};
use nlb_core::time::Instant;
use nlb_sim::test_config;
use nlb_wire::MacAddr;
use nlb_wire::addressing::ClusterMode;
use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr, HostState};
use stateright::{Checker, Model, Property};
use std::hash::{Hash, Hasher};
use std::time::Duration;

const HOSTS: usize = 3;
const PERIOD: Duration = Duration::from_millis(10);
const TOLERANCE: u32 = 2;
/// Ticks without a crash or a loss after which every bucket must be owned: the failure
/// window, one tick to notice, and three to agree, release and claim.
const QUIET_TICKS: u32 = TOLERANCE + 4;

#[derive(Clone, Debug)]
struct State {
    now: Instant,
    ticks: u32,
    nodes: Vec<Option<Node>>,
    /// Frames in flight: (source host, destination host, bytes).
    network: Vec<(usize, usize, Vec<u8>)>,
    /// Heartbeats lost in a row on each directed link, [from][to].
    lost_in_a_row: [[u32; HOSTS]; HOSTS],
    crashes: u32,
    losses: u32,
    joined: bool,
    last_disruption: u32,
    /// When each host's daemon was paused, while it is.
    paused: [Option<Instant>; HOSTS],
    /// Frames queued for each paused host, in arrival order.
    held: [Vec<Vec<u8>>; HOSTS],
    /// Whether a resumed host's lease ran out during its pause and its node has not had
    /// an input since: the daemon refreshes the lease only after the node has judged
    /// the time that passed, so its kernel holds nothing until then.
    lapsed: [bool; HOSTS],
    pauses: u32,
}

impl Hash for State {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (
            self.ticks,
            self.crashes,
            self.losses,
            self.joined,
            self.last_disruption,
            self.pauses,
        )
            .hash(state);
        self.paused
            .map(|at| at.map(|at| self.now.saturating_since(at)))
            .hash(state);
        self.held.hash(state);
        self.lapsed.hash(state);
        for node in &self.nodes {
            node.as_ref()
                .map(|n| n.protocol_digest(self.now))
                .hash(state);
        }
        // Kept in canonical order by `send_outputs`: every delivery order is explored
        // through the actions, not through the order of this list.
        self.network.hash(state);
        self.lost_in_a_row.hash(state);
    }
}

/// Equal when the canonical hashes are, to match the `Hash` above.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        let digest = |s: &State| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            s.hash(&mut hasher);
            hasher.finish()
        };
        digest(self) == digest(other)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Tick,
    Deliver(usize),
    Lose(usize),
    Crash(usize),
    Join(usize),
    Pause(usize),
    /// Resume a paused daemon; `true`: its overdue timeout runs before its queued frames.
    Resume(usize, bool),
    /// Hand a resumed daemon the frames queued for it while it was paused, in order.
    DeliverHeld(usize),
}

struct ClusterModel {
    init: State,
    max_ticks: u32,
    max_crashes: u32,
    max_losses: u32,
    joiner: Option<usize>,
    max_pauses: u32,
}

fn is_heartbeat(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x88, 0xb5][..])
}

fn host_config(index: usize) -> nlb_core::config::Config {
    test_config(
        index as u8 + 1,
        ClusterMode::Multicast,
        &format!(
            "heartbeat_ms = {}\ntolerance = {TOLERANCE}",
            PERIOD.as_millis()
        ),
        "",
    )
}

/// The kernel's ownership lease of the model's configuration.
fn lease() -> Duration {
    nlb_core::lease::ownership_lease(&host_config(0))
}

fn mac(index: usize) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, index as u8 + 1])
}

impl State {
    fn send_outputs(&mut self, from: usize) {
        let Some(node) = self.nodes[from].as_mut() else {
            return;
        };
        let mut frames = Vec::new();
        while let Some(frame) = node.poll_transmit() {
            frames.push(frame);
        }
        while node.poll_action().is_some() || node.poll_event().is_some() {}
        for frame in frames {
            for to in 0..self.nodes.len() {
                if to == from || self.nodes[to].is_none() {
                    continue;
                }
                if self.paused[to].is_some() {
                    self.held[to].push(frame.clone());
                } else {
                    self.network.push((from, to, frame.clone()));
                }
            }
        }
        // One canonical order, so that `Deliver(i)` names the same frame in every state
        // with the same contents (the checker replays counterexamples by index).
        self.network.sort();
    }

    fn tick(&mut self) {
        self.now = self.now + PERIOD;
        self.ticks += 1;
        for index in 0..self.nodes.len() {
            if self.paused[index].is_some() {
                continue;
            }
            self.lapsed[index] = false;
            if let Some(node) = self.nodes[index].as_mut() {
                node.handle_timeout(self.now);
                self.send_outputs(index);
            }
        }
    }

    /// Resumes a paused daemon; with `timeout_first` its overdue timeout runs now,
    /// before the frames it queued (which [`State::deliver_held`] hands over, in order,
    /// as a separate step, so that the checker sees the state in between).
    fn resume(&mut self, index: usize, timeout_first: bool) {
        let paused_at = self.paused[index].take().expect("paused");
        self.lapsed[index] = !timeout_first && self.now.saturating_since(paused_at) >= lease();
        if timeout_first && let Some(node) = self.nodes[index].as_mut() {
            node.handle_timeout(self.now);
            self.send_outputs(index);
        }
    }

    fn deliver_held(&mut self, index: usize) {
        let held = std::mem::take(&mut self.held[index]);
        self.lapsed[index] = false;
        if let Some(node) = self.nodes[index].as_mut() {
            for frame in &held {
                node.handle_frame(self.now, frame);
            }
            self.send_outputs(index);
        }
    }

    /// Whether host `index`'s kernel honours what its daemon last told it: always,
    /// unless the daemon is paused and the lease has run out since.
    fn kernel_honours(&self, index: usize) -> bool {
        match self.paused[index] {
            Some(at) => self.now.saturating_since(at) < lease(),
            None => !self.lapsed[index],
        }
    }

    fn deliver(&mut self, message: usize) {
        let (from, to, frame) = self.network.remove(message);
        if is_heartbeat(&frame) {
            self.lost_in_a_row[from][to] = 0;
        }
        self.lapsed[to] = false;
        if let Some(node) = self.nodes[to].as_mut() {
            node.handle_frame(self.now, &frame);
            self.send_outputs(to);
        }
    }

    fn owners(&self, slot: usize, bucket: u16) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|&(index, _)| self.kernel_honours(index))
            .filter_map(|(_, n)| n.as_ref())
            .filter(|n| n.owned()[slot].contains(bucket))
            .count()
    }

    fn participants(&self) -> usize {
        self.nodes
            .iter()
            .flatten()
            .filter(|n| n.state() != HostState::Stopped)
            .count()
    }
}

/// Three hosts, converged, built with the model's own steps (every frame delivered in
/// order, no loss). With `joiner`, that host is stopped again and the others
/// re-converge without it.
fn converged_cluster(joiner: Option<usize>) -> State {
    let nodes = (0..HOSTS)
        .map(|index| {
            Some(Node::new(
                host_config(index),
                mac(index),
                1,
                None,
                Instant::ZERO,
            ))
        })
        .collect();
    let mut state = State {
        now: Instant::ZERO,
        ticks: 0,
        nodes,
        network: Vec::new(),
        lost_in_a_row: [[0; HOSTS]; HOSTS],
        crashes: 0,
        losses: 0,
        joined: joiner.is_none(),
        last_disruption: 0,
        paused: [None; HOSTS],
        held: Default::default(),
        lapsed: [false; HOSTS],
        pauses: 0,
    };
    // Settled: every running host converged, in one view whose members are `want`.
    let settle = |state: &mut State, want: usize| {
        for _ in 0..200 {
            while !state.network.is_empty() {
                state.deliver(0);
            }
            let members: nlb_wire::bitmap::MemberSet = (1..=want as u8).collect();
            let settled = state.nodes.iter().flatten().all(|n| {
                n.state() == HostState::Stopped
                    || (n.state() == HostState::Converged && n.view().1 == members)
            });
            if settled {
                return;
            }
            state.tick();
        }
        panic!("the cluster never converged");
    };
    settle(&mut state, HOSTS);
    if let Some(joiner) = joiner {
        let now = state.now;
        let node = state.nodes[joiner].as_mut().unwrap();
        node.handle_command(now, Command::Stop).unwrap();
        state.send_outputs(joiner);
        settle(&mut state, HOSTS - 1);
    }
    state.ticks = 0;
    state
}

impl Model for ClusterModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.init.clone()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let held_for_running =
            (0..HOSTS).any(|i| state.paused[i].is_none() && !state.held[i].is_empty());
        if state.network.is_empty() && !held_for_running {
            if state.ticks < self.max_ticks {
                actions.push(Action::Tick);
            }
        } else {
            for (message, &(from, to, _)) in state.network.iter().enumerate() {
                actions.push(Action::Deliver(message));
                // A connected segment: no link loses `TOLERANCE` heartbeats in a row,
                // which would be a partition (a false failure) rather than loss.
                if state.losses < self.max_losses && state.lost_in_a_row[from][to] + 1 < TOLERANCE {
                    actions.push(Action::Lose(message));
                }
            }
        }
        if state.crashes < self.max_crashes && state.ticks < self.max_ticks {
            for (index, node) in state.nodes.iter().enumerate() {
                if node.is_some() && Some(index) != self.joiner {
                    actions.push(Action::Crash(index));
                }
            }
        }
        for index in 0..HOSTS {
            if state.nodes[index].is_none() {
                continue;
            }
            if state.paused[index].is_some() {
                actions.push(Action::Resume(index, true));
                actions.push(Action::Resume(index, false));
            } else if !state.held[index].is_empty() {
                actions.push(Action::DeliverHeld(index));
            } else if state.pauses < self.max_pauses && state.ticks < self.max_ticks {
                actions.push(Action::Pause(index));
            }
        }
        if let Some(joiner) = self.joiner
            && !state.joined
            && state.network.is_empty()
            && state.ticks < self.max_ticks
        {
            actions.push(Action::Join(joiner));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Tick => state.tick(),
            Action::Deliver(message) => state.deliver(message),
            Action::Lose(message) => {
                let (from, to, frame) = state.network.remove(message);
                if is_heartbeat(&frame) {
                    state.lost_in_a_row[from][to] += 1;
                }
                state.losses += 1;
                state.last_disruption = state.ticks;
            }
            Action::Pause(index) => {
                state.paused[index] = Some(state.now);
                // Frames already in flight to it queue too.
                let (held, network): (Vec<_>, Vec<_>) = std::mem::take(&mut state.network)
                    .into_iter()
                    .partition(|&(_, to, _)| to == index);
                state.network = network;
                state.held[index].extend(held.into_iter().map(|(_, _, frame)| frame));
                state.pauses += 1;
                state.last_disruption = state.ticks;
            }
            Action::Resume(index, timeout_first) => {
                state.resume(index, timeout_first);
                state.last_disruption = state.ticks;
            }
            Action::DeliverHeld(index) => state.deliver_held(index),
            Action::Crash(index) => {
                state.nodes[index] = None;
                state.paused[index] = None;
                state.held[index].clear();
                state.lapsed[index] = false;
                state.network.retain(|&(_, to, _)| to != index);
                state.crashes += 1;
                state.last_disruption = state.ticks;
            }
            Action::Join(index) => {
                let now = state.now;
                let node = state.nodes[index].as_mut()?;
                node.handle_command(now, Command::Start).ok()?;
                state.send_outputs(index);
                state.joined = true;
                state.last_disruption = state.ticks;
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "at most one running host accepts each bucket",
                |_, state: &State| {
                    (0..2).all(|slot| (0..BUCKETS).all(|bucket| state.owners(slot, bucket) <= 1))
                },
            ),
            Property::always(
                "every bucket owned once nothing has gone wrong for a while",
                |model: &ClusterModel, state: &State| {
                    let finished = state.ticks == model.max_ticks && state.network.is_empty();
                    let quiet = state.ticks - state.last_disruption >= QUIET_TICKS;
                    !(finished && quiet && state.participants() > 0)
                        || (0..2)
                            .all(|slot| (0..BUCKETS).all(|bucket| state.owners(slot, bucket) == 1))
                },
            ),
            Property::sometimes(
                "a run ends with a disruption absorbed",
                |model: &ClusterModel, state: &State| {
                    state.ticks == model.max_ticks
                        && state.last_disruption > 0
                        && (0..2)
                            .all(|slot| (0..BUCKETS).all(|bucket| state.owners(slot, bucket) == 1))
                },
            ),
        ]
    }
}

fn ticks(default: u32) -> u32 {
    std::env::var("NLB_MODEL_TICKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

fn losses(default: u32) -> u32 {
    std::env::var("NLB_MODEL_LOSSES")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

/// Prints a counterexample step by step: the frames in flight and each host's view and
/// ownership. Set `NLB_MODEL_TRACE=1` (the search then runs on one thread, so the
/// counterexample is the same every run).
fn print_trace(path: stateright::Path<State, Action>) {
    let last = path.last_state().clone();
    let mut steps = path.into_vec();
    steps.push((last, None));
    for (state, action) in steps {
        let frames: Vec<String> = state
            .network
            .iter()
            .map(|(from, to, frame)| {
                match HeartbeatPacket::new_checked(&frame[14..])
                    .and_then(|p| HeartbeatRepr::parse(&p, None))
                {
                    Ok(hb) => format!(
                        "{from}->{to} {} view {}{:?} live {:?}",
                        hb.state, hb.view_epoch, hb.view_members, hb.live_members
                    ),
                    Err(_) => format!("{from}->{to} (not a heartbeat)"),
                }
            })
            .collect();
        eprintln!("tick {} next {action:?} in flight {frames:?}", state.ticks);
        for (index, node) in state.nodes.iter().enumerate() {
            if let Some(node) = node {
                let owned: Vec<usize> = node.owned().iter().map(|b| b.len()).collect();
                eprintln!(
                    "    host {index}: {} view {:?} owns {owned:?}",
                    node.state(),
                    node.view()
                );
            }
        }
    }
}

fn check(model: ClusterModel, name: &str) {
    let trace = std::env::var_os("NLB_MODEL_TRACE").is_some();
    let checker = model
        .checker()
        .threads(if trace { 1 } else { 2 })
        .spawn_bfs()
        .join();
    if trace && let Some(path) = checker.discovery("at most one running host accepts each bucket") {
        print_trace(path);
    }
    eprintln!(
        "{name}: {} states explored ({} unique), max depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    checker.assert_properties();
}

#[test]
fn crashes_and_losses_never_share_a_bucket() {
    let max_ticks = ticks(QUIET_TICKS + 3);
    check(
        ClusterModel {
            init: converged_cluster(None),
            max_ticks,
            max_crashes: 1,
            max_losses: losses(2),
            joiner: None,
            max_pauses: 0,
        },
        "crash and loss",
    );
}

#[test]
fn a_join_with_losses_never_shares_a_bucket() {
    let max_ticks = ticks(QUIET_TICKS + 2);
    check(
        ClusterModel {
            init: converged_cluster(Some(2)),
            max_ticks,
            max_crashes: 0,
            max_losses: losses(2),
            joiner: Some(2),
            max_pauses: 0,
        },
        "join and loss",
    );
}

/// A daemon paused for any number of ticks, longer than the failure window too, with
/// heartbeat loss: no bucket is ever accepted by two hosts whose kernels honour it, and
/// once things are quiet every bucket has an owner again.
#[test]
fn a_pause_of_any_length_never_shares_a_bucket() {
    // Long enough for a pause past the failure window (2 ticks) and the rejoin after it;
    // loss is left to the other models, which keeps this one within a CI minute
    // (`NLB_MODEL_LOSSES=1` adds it, at ten times the states).
    let max_ticks = ticks(QUIET_TICKS + 4);
    check(
        ClusterModel {
            init: converged_cluster(None),
            max_ticks,
            max_crashes: 0,
            max_losses: losses(0),
            joiner: None,
            max_pauses: 1,
        },
        "pause",
    );
}
