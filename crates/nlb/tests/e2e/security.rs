//! What must not join or change the cluster: a host with other rules, a host with the
//! wrong key, forged and replayed heartbeats (issue test 7), and a foreign claim of the
//! VIP and RFC 5227 probes (8).

use crate::common::{DEFAULT_RULE, HostSetup, VIP, World, nlb};
use crate::{world, world_with};
use nlb_linux::netns::require_root;
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// 7a. A host whose rules differ goes misconfigured, names the field, and the others keep
///     serving every client.
#[test]
fn a_host_with_different_rules_stays_out() {
    if !require_root("a_host_with_different_rules_stays_out") {
        return;
    }
    let world = world_with(ClusterMode::Multicast, 3, |id| HostSetup {
        rule: (id == 3).then(|| DEFAULT_RULE.replace("\"80\"", "\"81\"")),
        ..HostSetup::default()
    });
    world.start(&[0, 1]);
    world.wait_converged(&[0, 1]);
    // Host 3 already heard the cluster while stopped: it refuses to start, and says why.
    let refused = world.ctl(2, "start").unwrap();
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("misconfigured"),
        "{refused}"
    );
    world.wait_for("host 3 to go misconfigured", Duration::from_secs(5), |w| {
        w.ctl(2, "query")
            .is_some_and(|q| q["state"] == "misconfigured")
    });
    let query = world.ctl(2, "query").unwrap();
    let why = query["misconfigured"].as_str().unwrap();
    assert!(why.contains("[[rule]] number 1"), "{why}");
    assert_eq!(query["owned_buckets"], serde_json::json!([0, 0]));
    world.wait_converged(&[0, 1]);
    for (src, answer) in world.serve_all() {
        let answer = answer.unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(answer == "host1" || answer == "host2", "{src} got {answer}");
    }
    assert!(world.log(2).contains("nlb.misconfigured"));
}

/// 7b. A host with the wrong key never joins and never serves; 7c. forged and replayed
///     heartbeats change nothing and are counted.
#[test]
fn wrong_keys_forgeries_and_replays_change_nothing() {
    if !require_root("wrong_keys_forgeries_and_replays_change_nothing") {
        return;
    }
    let world = world_with(ClusterMode::Multicast, 3, |id| HostSetup {
        key: Some(if id == 3 {
            b"not the cluster secret, 32 bytes or more".to_vec()
        } else {
            b"the cluster secret, 32 bytes or more".to_vec()
        }),
        ..HostSetup::default()
    });
    world.start(&[0, 1]);
    world.wait_converged(&[0, 1]);
    let refused = world.ctl(2, "start").unwrap();
    assert_eq!(refused["ok"], false, "{refused}");
    world.wait_for("host 3 to refuse to join", Duration::from_secs(5), |w| {
        w.ctl(2, "query")
            .is_some_and(|q| q["state"] == "misconfigured")
    });
    let why = world.ctl(2, "query").unwrap()["misconfigured"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("fail authentication"), "{why}");

    // Capture a genuine heartbeat of host 2 from the client's port, then send it again,
    // and send a forged one claiming to be host 1 with every bucket.
    let before: Vec<Value> = (0..2).map(|i| world.ctl(i, "query").unwrap()).collect();
    world.in_client(|| {
        use nlb_wire::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
        use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr};
        let socket = nlb_linux::packet::PacketSocket::bind("eth0").unwrap();
        let mut buf = vec![0u8; 2048];
        let captured = loop {
            let len = socket.recv(&mut buf, Duration::from_secs(2)).unwrap();
            let Ok(frame) = EthernetFrame::parse(&buf[..len]) else {
                continue;
            };
            if frame.ethertype == ETHERTYPE_NLB_HEARTBEAT
                && HeartbeatPacket::new_checked(frame.payload).is_ok_and(|p| p.host_id() == 2)
            {
                break buf[..len].to_vec();
            }
        };
        for _ in 0..3 {
            socket.send(&captured).unwrap();
        }
        let eth = EthernetFrame::parse(&captured).unwrap();
        let mut forged =
            HeartbeatRepr::parse(&HeartbeatPacket::new_checked(eth.payload).unwrap(), None)
                .unwrap();
        forged.host_id = 1;
        forged.sequence = u64::MAX;
        for rule in &mut forged.rules {
            for bucket in 0..nlb_core::buckets::BUCKETS {
                rule.target.insert(bucket);
                rule.owned.insert(bucket);
            }
        }
        let guess = nlb_wire::heartbeat::HeartbeatKey::derive(b"a guess");
        let frame = forged.to_frame(eth.src, eth.dst, ETHERTYPE_NLB_HEARTBEAT, Some(&guess));
        for _ in 0..3 {
            socket.send(&frame).unwrap();
        }
    });
    // Host 1 sees host 2's replays; host 2 sees the forgeries: wait until both counted
    // them, then check that nothing else changed.
    let dropped = |w: &World, index: usize, reason: &str| {
        w.ctl(index, "query").unwrap()["stats"]["heartbeats_dropped"][reason]
            .as_u64()
            .unwrap_or(0)
    };
    world.wait_for(
        "the replays and forgeries to be dropped",
        Duration::from_secs(2),
        |w| dropped(w, 0, "replay") >= 3 && dropped(w, 1, "bad_tag") >= 3,
    );
    for (index, before) in before.iter().enumerate() {
        let after = world.ctl(index, "query").unwrap();
        assert_eq!(
            after["view_epoch"],
            before["view_epoch"],
            "host {}",
            index + 1
        );
        assert_eq!(
            after["owned_ranges"],
            before["owned_ranges"],
            "host {}",
            index + 1
        );
        assert_eq!(after["state"], "converged");
    }
    for (src, answer) in world.serve_all() {
        let answer = answer.unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(answer == "host1" || answer == "host2", "{src} got {answer}");
    }
}

/// 8. A foreign namespace that claims the VIP is reported within 1 s with its MAC; an
///    RFC 5227 probe (`arping -D`) gets an answer carrying the cluster MAC and raises the
///    probe warning.
#[test]
fn conflicts_and_probes_are_reported() {
    if !require_root("conflicts_and_probes_are_reported") {
        return;
    }
    let world = world(ClusterMode::Multicast, 2);
    world.start_all();
    let client_mac = world
        .client
        .exec("cat", &["/sys/class/net/eth0/address"], None)
        .unwrap();
    let client_mac = client_mac.trim().to_owned();
    // A gratuitous ARP from the client's own MAC claiming the VIP.
    let claimed_at = Instant::now();
    world.in_client(|| {
        let socket = nlb_linux::packet::PacketSocket::bind("eth0").unwrap();
        let mac: nlb_wire::MacAddr = client_mac.parse().unwrap();
        let claim = nlb_wire::arp::ArpRepr::announcement(mac, VIP).to_frame(mac, None);
        socket.send(&claim).unwrap();
    });
    world.wait_for("the conflict to be reported", Duration::from_secs(1), |w| {
        (0..2).all(|i| {
            w.ctl(i, "query").is_some_and(|q| {
                q["conflicts"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["ip"] == VIP.to_string() && c["mac"] == client_mac.as_str())
                })
            })
        })
    });
    assert!(claimed_at.elapsed() < Duration::from_secs(1));
    assert!(world.log(0).contains("nlb.conflict"));

    // arping -D exits 1 when someone answers (the address is in use): read its output.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            world.client.name(),
            "arping",
            "-D",
            "-c",
            "1",
            "-w",
            "2",
            "-I",
            "eth0",
        ])
        .arg(VIP.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains(&cluster_mac(VIP, ClusterMode::Multicast).to_string()),
        "{text}"
    );
    world.wait_for("the probe warning", Duration::from_secs(2), |w| {
        w.ctl(0, "query")
            .is_some_and(|q| q["stats"]["probes_seen"].as_u64() >= Some(1))
    });
    assert!(world.log(0).contains("nlb.probe_seen"));

    // The JSON `nlb query` prints, with the fields operators script against.
    let out = Command::new(nlb())
        .args(["query", "--json", "--socket"])
        .arg(&world.hosts[0].socket)
        .output()
        .unwrap();
    let query: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(query["host_id"], 1);
    assert_eq!(query["state"], "converged");
    assert_eq!(query["mode"], "multicast");
    assert_eq!(query["cluster_mac"], "03:bf:c6:12:00:0a");
    assert_eq!(query["vips"], serde_json::json!(["198.18.0.10"]));
    assert_eq!(query["owned_buckets"][0], 128);
    let members = query["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    for (member, id) in members.iter().zip(1..) {
        assert_eq!(member["id"], id);
        assert_eq!(member["state"], "converged");
        assert_eq!(member["buckets"], 128 + if id == 1 { 256 } else { 0 });
        assert!(
            member["mac"]
                .as_str()
                .unwrap()
                .parse::<nlb_wire::MacAddr>()
                .is_ok()
        );
    }
    let conflict = &query["conflicts"][0];
    assert_eq!(
        (conflict["ip"].as_str(), conflict["mac"].as_str()),
        (Some("198.18.0.10"), Some(client_mac.as_str()))
    );
    assert!(
        conflict["at"].as_f64().unwrap() > 1.7e9,
        "a Unix time: {conflict}"
    );
    assert_eq!(query["probe_warnings"][0]["mac"], client_mac.as_str());
}
