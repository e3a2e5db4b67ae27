//! The doctor fed from the simulator: real `nlb_core` nodes in `nlb_sim`, captured by
//! the tap on the simulated switch (every frame once, as it enters the switch, as a
//! mirror port sees it), the capture handed to [`diagnose`] from memory.
//!
//! Each test runs one seeded scenario (a steady cluster, a cluster key, heartbeat loss,
//! IGMP mode, a partition, asymmetric partitions both ways, a crash, a daemon restart, a
//! port move, a live migration's pause) and asserts what the doctor makes of
//! it: the cluster summary's hosts, their MACs, heartbeat counts (equal to what each
//! daemon says it sent) and owned buckets, the cluster's convergence, and which problems
//! are reported, `nlb_double_ownership` against the buckets the simulated data planes
//! hold. Where the doctor cannot yet say what happened (a crashed host's silence), the
//! test asserts what it says today and says so.
//!
//! Each scenario also reads the capture's heartbeats itself ([`rival_claims`]): which
//! hosts claim one owned bucket at once, and how far apart in time. That is what a
//! double-ownership rule has to tell apart: nothing in a steady cluster, a takeover a
//! failure window after a silent host's last heartbeat, a partition's two sides within
//! a period and for as long as it lasts, an asymmetric partition's single heartbeat
//! (harmless one way round, a real overlap of one switch latency the other).

use nlb_core::node::Event;
use nlb_doctor::{CaptureReader, Finding, Kind, Report, Settings, Severity, diagnose};
use nlb_sim::pcap::EPOCH_UNIX_S;
use nlb_sim::{Capture, Sim, SimConfig, test_config};
use nlb_wire::MacAddr;
use nlb_wire::addressing::ClusterMode;
use nlb_wire::arp::ArpRepr;
use nlb_wire::bitmap::BucketBitmap;
use nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT;
use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// Bucket slots of [`test_config`]: the port 80 rule and the fallback, 256 buckets each.
const BUCKET_SLOTS: u64 = 2 * 256;

/// `n` hosts (ids 1 to `n`) of [`test_config`]'s cluster in `mode`, one bystander port
/// (the client), captured into memory.
fn cluster(n: u8, mode: ClusterMode, config: SimConfig) -> Sim {
    let configs = (1..=n).map(|id| test_config(id, mode, "", "")).collect();
    let config = SimConfig {
        capture: Some(Capture::Memory),
        ..config
    };
    Sim::new(config, configs, 1)
}

fn seeded(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::default()
    }
}

/// The doctor's report on everything the switch carried so far.
fn doctor(sim: &Sim) -> Report {
    let capture = sim.capture().expect("a memory capture");
    let name = format!("simulation, seed {}", sim.config().seed);
    diagnose(capture, Some(name), Settings::default(), |_| {}).expect("a pcap file")
}

/// Warnings and errors.
fn problems(report: &Report) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect()
}

fn of_kind(report: &Report, kind: Kind) -> Vec<&Finding> {
    report.of_kind(kind).collect()
}

/// The one cluster summary, for the VIP.
fn summary(report: &Report) -> &Finding {
    let clusters = of_kind(report, Kind::NlbCluster);
    assert_eq!(clusters.len(), 1, "one cluster: {:#?}", report.findings);
    assert_eq!(clusters[0].ip, Some(VIP));
    clusters[0]
}

/// One host of the summary's `details.hosts`.
#[derive(Debug, Clone, PartialEq)]
struct HostRow {
    macs: Vec<MacAddr>,
    heartbeats: u64,
    owned_buckets: u64,
    state: String,
}

/// The summary's hosts, by id.
fn hosts(summary: &Finding) -> BTreeMap<u8, HostRow> {
    let rows = summary.details["hosts"].as_array().expect("hosts");
    rows.iter()
        .map(|row| {
            let id = row["id"].as_u64().expect("id") as u8;
            let macs = row["macs"]
                .as_array()
                .expect("macs")
                .iter()
                .map(|mac| mac.as_str().expect("a MAC").parse().expect("a MAC"))
                .collect();
            let host = HostRow {
                macs,
                heartbeats: row["heartbeats"].as_u64().expect("heartbeats"),
                owned_buckets: row["owned_buckets"].as_u64().expect("owned buckets"),
                state: row["state"].as_str().expect("state").to_owned(),
            };
            (id, host)
        })
        .collect()
}

fn convergence(summary: &Finding) -> &str {
    summary.details["convergence"]
        .as_str()
        .expect("convergence")
}

fn heartbeats_sent(sim: &Sim, index: usize) -> u64 {
    sim.node(index).stats().heartbeats_sent
}

/// Heartbeats each host's daemon sent, when none was restarted or crashed.
fn sent_by_each(sim: &Sim) -> Vec<u64> {
    (0..sim.hosts.len())
        .map(|i| heartbeats_sent(sim, i))
        .collect()
}

/// Buckets host `index` owns now, over every rule slot (as the doctor counts them).
fn owned_now(sim: &Sim, index: usize) -> u64 {
    sim.node(index).owned().iter().map(|b| b.len() as u64).sum()
}

/// A client on the bystander port asks who has the VIP.
fn ask_for_vip(sim: &mut Sim) {
    let client = MacAddr([0x52, 0x54, 0, 0, 0xcc, 1]);
    let request = ArpRepr::request(client, Ipv4Addr::new(198, 18, 200, 1), VIP);
    sim.inject(0, request.to_frame(client, None));
}

fn seconds(sim: &Sim) -> f64 {
    sim.now.micros() as f64 / 1e6
}

fn no_findings() -> Vec<&'static Finding> {
    Vec::new()
}

/// The heartbeats in the capture are every heartbeat each daemon sent, and the summary
/// lists each host once, with its own MAC.
fn assert_every_heartbeat_read(report: &Report, sim: &Sim, sent: &[u64]) {
    let rows = hosts(summary(report));
    let ids: Vec<u8> = rows.keys().copied().collect();
    let expected: Vec<u8> = sim.hosts.iter().map(|h| h.config.host.id).collect();
    assert_eq!(ids, expected);
    for (index, host) in sim.hosts.iter().enumerate() {
        let row = &rows[&host.config.host.id];
        assert_eq!(row.macs, vec![host.mac], "host {}", host.config.host.id);
        assert_eq!(row.heartbeats, sent[index], "host {}", host.config.host.id);
    }
    assert_eq!(
        report.capture.counters.nlb_heartbeats,
        sent.iter().sum::<u64>()
    );
}

/// A steady 3-host cluster, a client resolving the VIP now and then: one converged
/// cluster with every host and its share, and nothing wrong.
#[test]
fn a_steady_cluster_is_one_converged_cluster_and_nothing_wrong() {
    let mut sim = cluster(3, ClusterMode::Multicast, seeded(1));
    // 6 s: the joins' announcements (up to 5 s after the join) are all out.
    for _ in 0..3 {
        sim.run_for(Duration::from_secs(2));
        ask_for_vip(&mut sim);
    }
    sim.run_for(Duration::from_millis(100));
    let report = doctor(&sim);

    assert_eq!(problems(&report), no_findings(), "{}", report.to_text(20));
    assert_eq!(of_kind(&report, Kind::UnansweredRequest), no_findings());
    assert_eq!(Some(report.capture.frames), sim.captured_frames());
    // Virtual time zero is the tap's epoch, and the first heartbeat goes out then.
    assert_eq!(report.capture.start_unix_s, EPOCH_UNIX_S as f64);

    let cluster = summary(&report);
    let macs: Vec<MacAddr> = sim.hosts.iter().map(|h| h.mac).collect();
    assert_eq!(cluster.macs, macs);
    assert_eq!(cluster.details["mode"], "multicast");
    assert_eq!(cluster.details["heartbeat_period_ms"], 10.0);
    assert!(
        convergence(cluster).starts_with("converged"),
        "{}",
        cluster.message
    );
    let sent = sent_by_each(&sim);
    assert_every_heartbeat_read(&report, &sim, &sent);
    let rows = hosts(cluster);
    for (index, host) in sim.hosts.iter().enumerate() {
        let row = &rows[&host.config.host.id];
        assert_eq!(row.state, "converged");
        assert_eq!(row.owned_buckets, owned_now(&sim, index));
    }
    // Every bucket of both slots once: the port rule split 86/85/85, the fallback
    // whole on host 1.
    let owned: u64 = rows.values().map(|r| r.owned_buckets).sum();
    assert_eq!(owned, BUCKET_SLOTS);
    assert_eq!(rival_claims(&sim).youngest, None, "no bucket claimed twice");
}

/// Authenticated heartbeats read the same without the key: the doctor sees the cluster
/// and every host's heartbeats.
#[test]
fn heartbeats_with_a_cluster_key_read_the_same() {
    let config = SimConfig {
        seed: 7,
        key: Some(b"the cluster's key".to_vec()),
        ..SimConfig::default()
    };
    let mut sim = cluster(3, ClusterMode::Multicast, config);
    sim.run_for(Duration::from_secs(2));
    let report = doctor(&sim);
    assert_eq!(problems(&report), no_findings());
    let sent = sent_by_each(&sim);
    assert_every_heartbeat_read(&report, &sim, &sent);
    assert!(convergence(summary(&report)).starts_with("converged"));
}

/// Heartbeat loss happens on the way to each receiver, after the switch: the mirror
/// sees every heartbeat, so the doctor sees a steady cluster while the hosts miss a
/// third of what their peers send.
#[test]
fn heartbeat_loss_past_the_switch_does_not_show_in_the_capture() {
    let config = SimConfig {
        seed: 5,
        heartbeat_loss: 0.3,
        ..SimConfig::default()
    };
    let mut sim = cluster(3, ClusterMode::Multicast, config);
    sim.run_for(Duration::from_secs(4));
    let report = doctor(&sim);

    let sent = sent_by_each(&sim);
    let received: u64 = (0..3)
        .map(|i| sim.node(i).stats().heartbeats_received)
        .sum();
    // Each heartbeat has two receivers.
    let share = received as f64 / (2 * sent.iter().sum::<u64>()) as f64;
    assert!(
        share < 0.8,
        "the hosts lost heartbeats: received {share:.2}"
    );

    assert_eq!(problems(&report), no_findings());
    assert_every_heartbeat_read(&report, &sim, &sent);
    let cluster = summary(&report);
    assert_eq!(cluster.details["heartbeat_period_ms"], 10.0);
    assert!(convergence(cluster).starts_with("converged"));
    assert_eq!(rival_claims(&sim).youngest, None, "no bucket claimed twice");
}

/// IGMP mode: the hosts' membership reports go out as the daemons start, before the
/// first heartbeat; the tap has them, so the doctor sees the group joined.
#[test]
fn an_igmp_cluster_reports_its_group() {
    let config = SimConfig {
        seed: 6,
        igmp_snooping: true,
        ..SimConfig::default()
    };
    let mut sim = cluster(3, ClusterMode::Igmp, config);
    sim.run_for(Duration::from_secs(2));
    let report = doctor(&sim);
    assert_eq!(report.capture.counters.igmp, 3);
    assert_eq!(of_kind(&report, Kind::IgmpMissing), no_findings());
    assert_eq!(problems(&report), no_findings());
    let cluster = summary(&report);
    assert_eq!(cluster.details["mode"], "igmp multicast");
    assert!(convergence(cluster).starts_with("converged"));
}

/// Buckets both `a` and `b` own now, per rule slot.
fn claimed_by_both(sim: &Sim, a: &[usize], b: &[usize]) -> Vec<Vec<u16>> {
    let side = |hosts: &[usize], slot: usize| -> Vec<u16> {
        let mut buckets: Vec<u16> = hosts
            .iter()
            .flat_map(|&i| sim.node(i).owned()[slot].iter().collect::<Vec<u16>>())
            .collect();
        buckets.sort_unstable();
        buckets
    };
    (0..sim.node(0).owned().len())
        .map(|slot| {
            let theirs = side(b, slot);
            side(a, slot)
                .into_iter()
                .filter(|bucket| theirs.binary_search(bucket).is_ok())
                .collect()
        })
        .collect()
}

/// Rival claims on the wire: heartbeats that claim an owned bucket which another
/// host's latest heartbeat also claims.
#[derive(Debug)]
struct Rivals {
    /// How old the youngest such rival heartbeat was (`None`: no overlap ever).
    youngest: Option<Duration>,
    /// Heartbeats whose rival was younger than the failure window: not a takeover from a
    /// host gone silent.
    live: usize,
}

/// What a double-ownership rule must tell apart, read from the capture: a takeover
/// claims a silent host's buckets only after the failure window; a partition's sides
/// claim them within a period, heartbeat after heartbeat; an asymmetric partition shows
/// one such heartbeat: where the host cut off from its peers' ears still hears them,
/// the data planes never overlap (it lets go at once when it hears their new target,
/// but says so only in its next heartbeat); where it is deaf to them, they overlap for
/// the switch latency it takes its claim to reach them.
fn rival_claims(sim: &Sim) -> Rivals {
    let mut capture = CaptureReader::new(sim.capture().expect("a memory capture")).unwrap();
    let mut latest: BTreeMap<u8, (i64, Vec<BucketBitmap>)> = BTreeMap::new();
    let mut rivals = Rivals {
        youngest: None,
        live: 0,
    };
    while let Some(heartbeat) = capture.next_with(|record| {
        let frame = record.data;
        (frame[12..14] == ETHERTYPE_NLB_HEARTBEAT.to_be_bytes()).then(|| {
            let packet = HeartbeatPacket::new_checked(&frame[14..]).expect("a heartbeat");
            let heartbeat = HeartbeatRepr::parse(&packet, None).expect("a heartbeat");
            (record.ts_ns, heartbeat)
        })
    }) {
        let Some((at, heartbeat)) = heartbeat else {
            continue;
        };
        let owned: Vec<BucketBitmap> = heartbeat.rules.iter().map(|r| r.owned.clone()).collect();
        let rival_ages = latest.iter().filter_map(|(&host, (then, theirs))| {
            let overlap = owned
                .iter()
                .zip(theirs)
                .any(|(ours, theirs)| ours.iter().any(|bucket| theirs.contains(bucket)));
            (host != heartbeat.host_id && overlap).then(|| Duration::from_nanos((at - then) as u64))
        });
        if let Some(age) = rival_ages.min() {
            rivals.youngest = Some(rivals.youngest.map_or(age, |y| y.min(age)));
            rivals.live += usize::from(age < FAILURE_WINDOW);
        }
        latest.insert(heartbeat.host_id, (at, owned));
    }
    rivals
}

/// Buckets changed hands only as a takeover does: every rival claim on the wire came a
/// failure window after the silent host's last heartbeat, and the data planes never
/// overlapped.
fn assert_takeover_after_the_window(sim: &Sim) {
    let rivals = rival_claims(sim);
    assert!(rivals.youngest >= Some(FAILURE_WINDOW), "{rivals:?}");
    assert_eq!(sim.violations, vec![]);
}

/// The default failure window: 15 heartbeats of 10 ms.
const FAILURE_WINDOW: Duration = Duration::from_millis(150);
/// The default heartbeat period.
const PERIOD: Duration = Duration::from_millis(10);

/// Host 1's heartbeats say it owns `host_1` buckets, those of hosts 2 and 3 every
/// bucket once between them.
fn assert_host_1_apart(cluster: &Finding, host_1: u64) {
    let rows = hosts(cluster);
    assert_eq!(rows[&1].owned_buckets, host_1, "{rows:?}");
    let others = rows[&2].owned_buckets + rows[&3].owned_buckets;
    assert_eq!(others, BUCKET_SLOTS, "{rows:?}");
}

/// Host 1, still heard, is in another view than hosts 2 and 3.
fn assert_views_differ(cluster: &Finding) {
    assert_eq!(
        convergence(cluster),
        "converging (hosts in different views)"
    );
}

/// Each `nlb_double_ownership` finding's MACs and heartbeat count.
fn double_ownership_pairs(report: &Report) -> Vec<(Vec<MacAddr>, u64)> {
    of_kind(report, Kind::NlbDoubleOwnership)
        .iter()
        .map(|f| (f.macs.clone(), f.count))
        .collect()
}

/// Buckets written as ranges, "0, 2, 4-5".
fn ranges(text: &str) -> Vec<u16> {
    text.split(", ")
        .flat_map(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            first.parse().expect("a bucket")..=last.parse().expect("a bucket")
        })
        .collect()
}

/// The doctor's `nlb_double_ownership` findings say what the data planes say: one per
/// pair of hosts, one on each side, that own a bucket in common, naming both hosts and
/// their MACs, and per rule slot the buckets both claim (none at all when no pair
/// does).
fn assert_double_ownership(report: &Report, sim: &Sim, a: &[usize], b: &[usize]) {
    let findings = of_kind(report, Kind::NlbDoubleOwnership);
    let mut expected = 0;
    for &x in a {
        for &y in b {
            let both = claimed_by_both(sim, &[x], &[y]);
            if both.iter().all(Vec::is_empty) {
                continue;
            }
            expected += 1;
            let macs = [sim.hosts[x].mac, sim.hosts[y].mac];
            let found: Vec<&&Finding> = findings
                .iter()
                .filter(|f| macs.iter().all(|mac| f.macs.contains(mac)))
                .collect();
            assert_eq!(found.len(), 1, "hosts {x} and {y}: {findings:#?}");
            let finding = found[0];
            assert_eq!(finding.severity, Severity::Error);
            let ids: Vec<u64> = finding.details["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["host_id"].as_u64().unwrap())
                .collect();
            let mut want = vec![
                u64::from(sim.hosts[x].config.host.id),
                u64::from(sim.hosts[y].config.host.id),
            ];
            want.sort_unstable();
            let mut ids = ids;
            ids.sort_unstable();
            assert_eq!(ids, want);
            let per_slot: BTreeMap<usize, Vec<u16>> = finding.details["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .map(|rule| {
                    let buckets = ranges(rule["buckets"].as_str().expect("buckets"));
                    let count = rule["buckets_owned_twice"].as_u64().expect("a count");
                    assert_eq!(buckets.len() as u64, count, "{rule}");
                    (rule["slot"].as_u64().expect("a slot") as usize, buckets)
                })
                .collect();
            let want: BTreeMap<usize, Vec<u16>> = both
                .into_iter()
                .enumerate()
                .filter(|(_, buckets)| !buckets.is_empty())
                .collect();
            assert_eq!(per_slot, want, "hosts {x} and {y}");
        }
    }
    assert_eq!(findings.len(), expected, "{findings:#?}");
}

/// A partition splits host 1 from hosts 2 and 3. Each side takes over the other's
/// buckets; the switch delivers only within a side, but the mirror sees both sides'
/// heartbeats, each claiming every bucket, and the doctor names each pair of hosts
/// across the split (1 and 2, 1 and 3) with the buckets both claim. Then the partition
/// heals.
#[test]
fn a_partition_is_double_ownership_of_every_bucket() {
    for seed in 1..=3 {
        let mut sim = cluster(3, ClusterMode::Multicast, seeded(seed));
        sim.run_for(Duration::from_secs(2));
        sim.partition(&[&[0], &[1, 2]]);
        sim.run_for(Duration::from_secs(2));
        // What the doctor should name: the buckets both sides claim, every one of them.
        let both = claimed_by_both(&sim, &[0], &[1, 2]);
        assert!(both.iter().all(|slot| slot.len() == 256), "seed {seed}");
        assert!(
            sim.violations.iter().any(|v| v.partitioned),
            "seed {seed}: the data planes overlap"
        );
        // On the wire: the two sides' heartbeats claim the same buckets within a
        // period of each other, again and again (2 s of 10 ms heartbeats, 3 hosts).
        let rivals = rival_claims(&sim);
        assert!(rivals.youngest < Some(PERIOD), "seed {seed}: {rivals:?}");
        assert!(rivals.live > 300, "seed {seed}: {rivals:?}");
        let report = doctor(&sim);

        let sent = sent_by_each(&sim);
        assert_every_heartbeat_read(&report, &sim, &sent);
        let cluster = summary(&report);
        let rows = hosts(cluster);
        assert!(rows.values().all(|r| r.state == "converged"), "{rows:?}");
        assert_host_1_apart(cluster, BUCKET_SLOTS);
        assert_views_differ(cluster);
        // The summary reads as two views disagreeing; the double-ownership findings name
        // each pair of hosts across the split and the buckets both claim.
        assert_double_ownership(&report, &sim, &[0], &[1, 2]);
        let others: Vec<&Finding> = problems(&report)
            .into_iter()
            .filter(|f| f.kind != Kind::NlbDoubleOwnership)
            .collect();
        assert_eq!(others, no_findings(), "seed {seed}: nothing else");

        sim.heal();
        sim.run_for(Duration::from_secs(2));
        let report = doctor(&sim);
        let cluster = summary(&report);
        assert!(
            convergence(cluster).starts_with("converged"),
            "seed {seed}: {}",
            cluster.message
        );
        let owned: u64 = hosts(cluster).values().map(|r| r.owned_buckets).sum();
        assert_eq!(owned, BUCKET_SLOTS, "seed {seed}: once each again");
    }
}

/// One direction blocked: hosts 2 and 3 no longer hear host 1, host 1 still hears
/// them. Host 1 sees its heartbeats unechoed and owns nothing; 2 and 3 own everything.
/// The data planes never share a bucket, and the doctor must not say they do, though
/// one heartbeat of host 3 claims buckets that host 1's heartbeat 2.45 ms earlier still
/// listed: host 1 let go of them when it heard host 3's new target, and says so only in
/// its next heartbeat. A rule that flags any overlap within a period would flag this.
#[test]
fn an_asymmetric_partition_is_not_double_ownership() {
    let mut sim = cluster(3, ClusterMode::Multicast, seeded(2));
    sim.run_for(Duration::from_secs(2));
    sim.block(&[0], &[1, 2]);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.violations, vec![], "the data planes never overlap");
    let rivals = rival_claims(&sim);
    assert!(rivals.youngest < Some(PERIOD), "{rivals:?}");
    assert_eq!(rivals.live, 1, "one heartbeat, not a lasting overlap");
    assert!(
        claimed_by_both(&sim, &[0], &[1, 2])
            .iter()
            .all(Vec::is_empty)
    );
    let report = doctor(&sim);
    assert_eq!(problems(&report), no_findings());
    assert_double_ownership(&report, &sim, &[0], &[1, 2]);
    let cluster = summary(&report);
    assert_eq!(hosts(cluster)[&1].state, "converging");
    assert_host_1_apart(cluster, 0);
    assert_views_differ(cluster);
}

/// The other direction: host 1 stops hearing hosts 2 and 3, who still hear it. After
/// the failure window host 1, alone in its view, claims every bucket; hosts 2 and 3 let
/// go of theirs when its heartbeat reaches them, one switch latency later. For that
/// instant both sides hold buckets (the simulator's safety check sees it), and the
/// capture has one heartbeat of host 1 claiming what 2 and 3 still claim.
#[test]
fn a_deaf_host_takes_everything_and_its_peers_let_go() {
    let mut sim = cluster(3, ClusterMode::Multicast, seeded(1));
    sim.run_for(Duration::from_secs(2));
    sim.block(&[1, 2], &[0]);
    sim.run_for(Duration::from_secs(2));
    let moments: Vec<u64> = sim.violations.iter().map(|v| v.at.micros()).collect();
    assert!(!moments.is_empty() && moments.iter().all(|&at| at == moments[0]));
    assert_eq!(
        (0..3).map(|i| owned_now(&sim, i)).collect::<Vec<_>>(),
        [BUCKET_SLOTS, 0, 0]
    );
    let rivals = rival_claims(&sim);
    assert_eq!(rivals.youngest, Some(Duration::ZERO), "{rivals:?}");
    let report = doctor(&sim);
    let sent = sent_by_each(&sim);
    assert_every_heartbeat_read(&report, &sim, &sent);
    let cluster = summary(&report);
    assert_eq!(hosts(cluster)[&1].state, "converged");
    // The doctor names that instant: hosts 1 and 2, hosts 1 and 3, one heartbeat each,
    // and nothing else is a problem.
    let macs: Vec<MacAddr> = sim.hosts.iter().map(|h| h.mac).collect();
    assert_eq!(
        double_ownership_pairs(&report),
        [(vec![macs[0], macs[1]], 1), (vec![macs[0], macs[2]], 1)]
    );
    assert!(
        problems(&report)
            .iter()
            .all(|f| f.kind == Kind::NlbDoubleOwnership)
    );
}

/// The one `nlb_heartbeat_gap` finding, for host `id`: (gaps in the middle of the
/// capture, the longest in ms, whether the host was silent at the end).
fn heartbeat_gap(report: &Report, id: u8) -> (u64, Option<u64>, bool) {
    let gaps = of_kind(report, Kind::NlbHeartbeatGap);
    assert_eq!(gaps.len(), 1, "{gaps:#?}");
    let details = &gaps[0].details;
    assert_eq!(details["host_id"], u64::from(id), "{details:?}");
    (
        details["gaps"].as_u64().expect("gaps"),
        details["longest_gap_ms"].as_u64(),
        details["ends_silent"].as_bool().expect("ends_silent"),
    )
}

/// Host 1 (an ARP responder) crashes; hosts 2 and 3 take its buckets and answer ARP for
/// the VIP. The doctor lists host 1 with what its last heartbeat said, marked silent
/// since then, and says so in one warning; the survivors' view is the cluster's.
#[test]
fn a_crash_leaves_the_silent_host_listed_with_its_last_heartbeat() {
    let mut sim = cluster(3, ClusterMode::Multicast, seeded(3));
    sim.run_for(Duration::from_secs(2));
    ask_for_vip(&mut sim);
    sim.run_for(Duration::from_millis(100));
    let last_words = (heartbeats_sent(&sim, 0), owned_now(&sim, 0));
    let crashed_s = seconds(&sim);
    sim.crash(0);
    sim.run_for(Duration::from_millis(500));
    ask_for_vip(&mut sim);
    sim.run_for(Duration::from_secs(2));
    assert_takeover_after_the_window(&sim);
    let report = doctor(&sim);

    // The survivors answer the client: nothing unanswered. Host 1's silence is the one
    // problem.
    assert_eq!(heartbeat_gap(&report, 1), (0, None, true));
    assert!(
        problems(&report)
            .iter()
            .all(|f| f.kind == Kind::NlbHeartbeatGap)
    );
    assert_eq!(of_kind(&report, Kind::UnansweredRequest), no_findings());
    let sent = [
        last_words.0,
        heartbeats_sent(&sim, 1),
        heartbeats_sent(&sim, 2),
    ];
    assert_every_heartbeat_read(&report, &sim, &sent);
    let cluster = summary(&report);
    let rows = hosts(cluster);
    // Host 1 stays listed as its last heartbeat left it (converged, with its share),
    // silent since; the survivors, who agree, make the cluster converged.
    assert_eq!(rows[&1].state, "converged");
    let listed = cluster.details["hosts"].as_array().expect("hosts");
    let silent: Vec<bool> = listed
        .iter()
        .map(|h| h["silent_at_end"].as_bool().expect("silent_at_end"))
        .collect();
    assert_eq!(silent, [true, false, false]);
    assert!(
        cluster.message.contains("silent since"),
        "{}",
        cluster.message
    );
    assert!(
        convergence(cluster).starts_with("converged"),
        "{}",
        convergence(cluster)
    );
    // The survivors took every bucket.
    assert_eq!(owned_now(&sim, 1) + owned_now(&sim, 2), BUCKET_SLOTS);
    assert_host_1_apart(cluster, last_words.1);
    // Last seen, per MAC, from the ARP findings: host 1's ARP ends before the crash, the
    // survivors' (their takeover announcements and answers) goes on after it.
    let arp_of = |mac: MacAddr| -> &Finding {
        let found: Vec<&Finding> = of_kind(&report, Kind::SenderMacMismatch)
            .into_iter()
            .filter(|f| f.macs.first() == Some(&mac))
            .collect();
        assert_eq!(found.len(), 1, "{mac}: {found:#?}");
        found[0]
    };
    assert!(arp_of(sim.hosts[0].mac).last_seen_s < crashed_s);
    for survivor in 1..3 {
        assert!(arp_of(sim.hosts[survivor].mac).last_seen_s > crashed_s);
    }
    let announced = of_kind(&report, Kind::GratuitousArp);
    assert!(announced.iter().any(|f| f.last_seen_s > crashed_s + 1.0));
}

/// A daemon killed and started again (a new incarnation, the same MAC) probes, rejoins,
/// and is still one host to the doctor, whose heartbeats stopped for the second it was
/// down.
#[test]
fn a_restarted_daemon_is_the_same_host() {
    let mut sim = cluster(3, ClusterMode::Multicast, seeded(9));
    sim.run_for(Duration::from_secs(2));
    let before = heartbeats_sent(&sim, 2);
    sim.kill_daemon(2);
    sim.run_for(Duration::from_secs(1));
    sim.start_daemon(2);
    sim.run_for(Duration::from_secs(2));
    assert_takeover_after_the_window(&sim);
    let report = doctor(&sim);

    let (gaps, longest, ends_silent) = heartbeat_gap(&report, 3);
    assert_eq!((gaps, ends_silent), (1, false));
    assert!(
        longest.is_some_and(|ms| (1000..1300).contains(&ms)),
        "{longest:?}"
    );
    assert!(
        problems(&report)
            .iter()
            .all(|f| f.kind == Kind::NlbHeartbeatGap)
    );
    assert_eq!(of_kind(&report, Kind::NlbDuplicateHostId), no_findings());
    let sent = [
        heartbeats_sent(&sim, 0),
        heartbeats_sent(&sim, 1),
        before + heartbeats_sent(&sim, 2),
    ];
    assert_every_heartbeat_read(&report, &sim, &sent);
    let probes = of_kind(&report, Kind::ArpProbe);
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].count, 4 * 3, "3 probes per start");
    assert!(convergence(summary(&report)).starts_with("converged"));
}

/// A port move (live migration) in unicast mode, where the switch's learning matters:
/// one capture of the whole switch shows no port, so the doctor's report is the one of
/// the same seed without the move, and clean.
#[test]
fn a_port_move_reads_as_if_nothing_moved() {
    let run = |moved: bool| {
        let mut sim = cluster(3, ClusterMode::Unicast, seeded(4));
        sim.run_for(Duration::from_secs(2));
        if moved {
            let port = sim.move_port(1);
            sim.run_for(Duration::from_secs(2));
            assert_eq!(sim.switch.learned_port(sim.hosts[1].mac), Some(port));
        } else {
            sim.run_for(Duration::from_secs(2));
        }
        let report = doctor(&sim);
        (sim, report)
    };
    let (sim, moved) = run(true);
    let (_, stayed) = run(false);
    assert_eq!(moved.findings, stayed.findings);
    assert_eq!(rival_claims(&sim).youngest, None, "no bucket claimed twice");

    assert_eq!(problems(&moved), no_findings());
    assert_eq!(of_kind(&moved, Kind::ClusterMacAsSource), no_findings());
    let sent = sent_by_each(&sim);
    assert_every_heartbeat_read(&moved, &sim, &sent);
    let cluster = summary(&moved);
    assert_eq!(cluster.details["mode"], "unicast");
    assert!(convergence(cluster).starts_with("converged"));
}

/// A live migration with a 300 ms stop-and-copy pause: host 2 is silent for longer than
/// the failure window, its peers take its buckets, and it rejoins on its new port. The
/// doctor sees the pause as one heartbeat gap of host 2 and nothing wrong besides: no
/// double ownership (after the pause it releases before it speaks, so no heartbeat of
/// its claims what its peers took), no duplicate IP, no cluster MAC as a source, no
/// second MAC for its id.
#[test]
fn a_live_migration_pause_is_not_a_problem() {
    let mut sim = cluster(3, ClusterMode::Unicast, seeded(8));
    sim.run_for(Duration::from_secs(2));
    sim.freeze(1, Duration::from_millis(300));
    sim.move_port(1);
    sim.run_for(Duration::from_secs(3));
    let host_2 = sim.hosts[1].config.host.id;
    let down = sim.events_matching(|e| matches!(e, Event::PeerDown { host } if *host == host_2));
    let up = sim.events_matching(|e| matches!(e, Event::PeerUp { host, .. } if *host == host_2));
    assert!(
        !down.is_empty() && up.last() > down.last(),
        "host 2 left and came back"
    );
    assert_takeover_after_the_window(&sim);
    let report = doctor(&sim);

    let (gaps, longest, ends_silent) = heartbeat_gap(&report, host_2);
    assert_eq!((gaps, ends_silent), (1, false));
    assert!(
        longest.is_some_and(|ms| (300..400).contains(&ms)),
        "{longest:?}"
    );
    assert!(
        problems(&report)
            .iter()
            .all(|f| f.kind == Kind::NlbHeartbeatGap)
    );
    for kind in [
        Kind::NlbDoubleOwnership,
        Kind::DuplicateIp,
        Kind::ClusterMacAsSource,
        Kind::NlbDuplicateHostId,
    ] {
        assert_eq!(of_kind(&report, kind), no_findings(), "{}", kind.name());
    }
    let sent = sent_by_each(&sim);
    assert_every_heartbeat_read(&report, &sim, &sent);
    // About 300 ms of 10 ms heartbeats missing.
    assert!(sent[0] - sent[1] >= 25, "{sent:?}");
    let cluster = summary(&report);
    assert!(convergence(cluster).starts_with("converged"));
    let owned: u64 = hosts(cluster).values().map(|r| r.owned_buckets).sum();
    assert_eq!(owned, BUCKET_SLOTS);
}
