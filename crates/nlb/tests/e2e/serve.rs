//! Every client answered once by the host the bucket map names, in each cluster mode
//! (issue tests 1 to 4).

use crate::common::{VIP, World, nlb};
use crate::world;
use nlb_core::buckets::BucketMap;
use nlb_core::config::{Config, Protocol};
use nlb_core::filter::{Flow, cluster_seed, decide};
use nlb_lab::segment::{CLIENT, host_address, inside};
use nlb_linux::netns::{NetNs, require_root};
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use nlb_wire::bitmap::BucketBitmap;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// Where a client's request to the VIP's port 80 falls, by the decision `nlb_core`
/// specifies for the data plane: the slot of the rule it falls under (the index into
/// `owned_ranges`, the default rule last) and its bucket under that rule's affinity.
/// The one place the tests compute a bucket.
pub(crate) fn bucket_for(world: &World, src: Ipv4Addr) -> (usize, u16) {
    let config = Config::parse(
        &std::fs::read_to_string(&world.hosts[0].config).unwrap(),
        "h1.toml",
    )
    .unwrap();
    let flow = Flow {
        src,
        src_port: 40000,
        dst: VIP,
        dst_port: 80,
        protocol: Protocol::Tcp,
    };
    let decision = decide(&config, &[], cluster_seed(&config), &flow);
    let bucket = decision.bucket.expect("the rule of the test flow hashes");
    (decision.slot, bucket)
}

/// The host the map of a cluster formed in one step by all the hosts gives a client:
/// the map `nlb plan` computes.
fn predicted_host(world: &World, src: Ipv4Addr) -> u8 {
    let weights: Vec<(u8, u32)> = world.hosts.iter().map(|h| (h.id, 100)).collect();
    BucketMap::unowned()
        .rebalance(&weights)
        .owner(bucket_for(world, src).1)
        .expect("every bucket has an owner")
}

/// Parses `0-85, 100` back into a bitmap.
pub(crate) fn parse_ranges(text: &str) -> BucketBitmap {
    let mut bitmap = BucketBitmap::new(nlb_core::buckets::BUCKETS);
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        for bucket in first.parse::<u16>().unwrap()..=last.parse::<u16>().unwrap() {
            bitmap.insert(bucket);
        }
    }
    bitmap
}

fn neighbour_mac(ns: &NetNs, ip: Ipv4Addr) -> Option<String> {
    let out = ns.ip(&["-j", "neigh", "show", &ip.to_string()]).ok()?;
    let entries: Value = serde_json::from_str(&out).ok()?;
    entries.as_array()?.first()?["lladdr"]
        .as_str()
        .map(str::to_owned)
}

/// Tests 1 and 2 of the issue for one mode, plus the mode's own checks (3 or 4).
fn serve_in_mode(mode: ClusterMode) {
    let world = world(mode, 3);
    world.start_all();
    // Each host's share is the one `nlb plan` predicts.
    let plan = Command::new(nlb())
        .args(["plan", "--json", "--members", "1,2,3", "--config"])
        .arg(&world.hosts[0].config)
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    // Per host, what it owns of each rule (the default rule last).
    let mut owners: Vec<(u8, Vec<BucketBitmap>)> = Vec::new();
    let mut formed_at_once = true;
    for index in 0..3 {
        let query = world.ctl(index, "query").unwrap();
        let id = world.hosts[index].id;
        assert_eq!(
            query["owned_buckets"][0],
            plan["rules"][0]["before"][&id.to_string()],
            "host {id}"
        );
        formed_at_once &= query["view_epoch"] == 1;
        let ranges = query["owned_ranges"].as_array().unwrap();
        owners.push((
            id,
            ranges
                .iter()
                .map(|r| parse_ranges(r.as_str().unwrap()))
                .collect(),
        ));
    }

    // 1. Every client address is answered by exactly one host: the one that owns its
    //    bucket. When the three formed their view in one step (as they usually do), that
    //    is also the host `nlb plan`'s map predicts for the address.
    let answers = world.serve_all();
    let mut served = std::collections::BTreeSet::new();
    for (src, answer) in &answers {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("{mode}: {e}"));
        let (slot, bucket) = bucket_for(&world, *src);
        let holders: Vec<u8> = owners
            .iter()
            .filter(|(_, rules)| rules[slot].contains(bucket))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{mode}: bucket {bucket} of rule slot {slot} held by {holders:?}"
        );
        assert_eq!(
            answer,
            &format!("host{}", holders[0]),
            "{mode}: client {src}"
        );
        if formed_at_once {
            assert_eq!(
                answer,
                &format!("host{}", predicted_host(&world, *src)),
                "{mode}: client {src}"
            );
        }
        served.insert(answer.clone());
    }
    assert_eq!(served.len(), 3, "{mode}: every host takes part: {served:?}");
    // `nlb filter` on host 1 names the same host for each client.
    for (src, answer) in answers.iter().take(8) {
        let out = Command::new(nlb())
            .args([
                "filter",
                &src.to_string(),
                &format!("{VIP}:80"),
                "--json",
                "--socket",
            ])
            .arg(&world.hosts[0].socket)
            .output()
            .unwrap();
        let filter: Value = serde_json::from_slice(&out.stdout).unwrap();
        let host = answer
            .as_ref()
            .unwrap()
            .trim_start_matches("host")
            .parse::<u8>()
            .unwrap();
        assert_eq!(
            filter["owners"],
            serde_json::json!([host]),
            "{mode}: filter for {src}: {filter}"
        );
        assert_eq!(filter["accepted_here"], host == 1);
    }
    eprintln!(
        "{mode}: {} clients served; view formed in one step: {formed_at_once}",
        answers.len()
    );

    // 2. The client caches the VIP at the cluster MAC ...
    let cluster = cluster_mac(VIP, mode).to_string();
    assert_eq!(
        neighbour_mac(&world.client, VIP).as_deref(),
        Some(cluster.as_str())
    );
    // ... and still does after every host opened connections from the VIP, which makes
    // their kernels ARP from the VIP (the client forgets first, so it must relearn).
    let listener = world.in_client(|| std::net::TcpListener::bind((CLIENT, 9000)).unwrap());
    world.client.ip(&["neigh", "flush", "all"]).unwrap();
    for host in &world.hosts {
        host.ns.ip(&["neigh", "flush", "all"]).unwrap();
        let ok = inside(&host.ns, || {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::from((VIP, 0)).into()).unwrap();
            socket.connect_timeout(
                &SocketAddr::from((CLIENT, 9000)).into(),
                Duration::from_secs(3),
            )
        })
        .unwrap();
        ok.unwrap_or_else(|e| {
            panic!(
                "{mode}: host {} could not connect from the VIP: {e}",
                host.id
            )
        });
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), VIP);
        drop(accepted);
    }
    let cached = neighbour_mac(&world.client, VIP);
    assert_eq!(
        cached.as_deref(),
        Some(cluster.as_str()),
        "{mode}: after outbound connections"
    );

    match mode {
        // 3. The hosts joined 239.255.0.10 with real IGMP reports: the bridge lists the
        //    group on every host port.
        ClusterMode::Igmp => {
            let joined = |w: &World| {
                let mdb = w
                    .switch
                    .exec("bridge", &["-j", "mdb", "show"], None)
                    .unwrap_or_default();
                (1..=3).all(|id| {
                    mdb.contains(&format!("\"port\":\"p{id}\"")) && mdb.contains("239.255.0.10")
                })
            };
            world.wait_for(
                "IGMP membership on every host port",
                Duration::from_secs(10),
                joined,
            );
            // Memberships expire 5 s after the last report; 7 s later they are still
            // there only because the hosts answered the bridge's queries.
            std::thread::sleep(Duration::from_secs(7));
            assert!(joined(&world), "the hosts did not answer the querier");
            let answers = world.serve_all();
            assert!(
                answers.iter().all(|(_, a)| a.is_ok()),
                "every client is served"
            );
        }
        ClusterMode::Unicast => {
            let fdb = world
                .switch
                .exec("bridge", &["-j", "fdb", "show", "br", "br0"], None)
                .unwrap();
            assert!(
                !fdb.contains(&cluster),
                "the bridge learned {cluster}: {fdb}"
            );
            world.hosts[0]
                .ns
                .exec(
                    "ping",
                    &["-c", "1", "-W", "2", &host_address(2).to_string()],
                    None,
                )
                .expect("host 1 reaches host 2");
        }
        ClusterMode::Multicast => {}
    }
}

#[test]
fn multicast_mode_serves_every_client_once() {
    if require_root("multicast_mode_serves_every_client_once") {
        serve_in_mode(ClusterMode::Multicast);
    }
}

#[test]
fn unicast_mode_serves_and_the_bridge_never_learns_the_cluster_mac() {
    if require_root("unicast_mode_serves_and_the_bridge_never_learns_the_cluster_mac") {
        serve_in_mode(ClusterMode::Unicast);
    }
}

#[test]
fn igmp_mode_serves_and_joins_the_group_on_the_bridge() {
    if require_root("igmp_mode_serves_and_joins_the_group_on_the_bridge") {
        serve_in_mode(ClusterMode::Igmp);
    }
}
