//! A released bucket drains (issue 16): the old owner's connections in it go on, new
//! flows in it go to the new owner, and once those connections have ended the old owner
//! drops the bucket at netdev ingress, before conntrack.

use crate::common::{HostSetup, Setup, VIP, World};
use crate::serve::{bucket_for, parse_ranges};
use crate::world;
use nlb_lab::http::{KeepAlive, http_get};
use nlb_lab::segment::{CLIENT, client_addresses, inside};
use nlb_linux::netns::require_root;
use nlb_linux::ruleset::{parse_counters, table_name};
use nlb_wire::addressing::{ClusterMode, cluster_id};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Host `index`'s netdev verdict of `bucket` in rule 1's map: `owned`, `draining`, or
/// `None` (dropped at netdev).
fn verdict(world: &World, index: usize, bucket: u16) -> Option<String> {
    let table = table_name("eth0", cluster_id(&[VIP]));
    let json = world.hosts[index]
        .ns
        .exec(
            "nft",
            &["-j", "list", "map", "netdev", &table, "rule1"],
            None,
        )
        .expect("nft list map");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    doc["nftables"]
        .as_array()?
        .iter()
        .filter_map(|item| item.get("map")?.get("elem")?.as_array().cloned())
        .flatten()
        .find(|pair| pair[0].as_u64() == Some(u64::from(bucket)))
        .and_then(|pair| Some(pair[1]["jump"]["target"].as_str()?.to_owned()))
}

/// Host `index`'s packet counter `name` in its netdev table.
fn netdev_counter(world: &World, index: usize, name: &str) -> u64 {
    let table = table_name("eth0", cluster_id(&[VIP]));
    let json = world.hosts[index]
        .ns
        .exec("nft", &["-j", "list", "table", "netdev", &table], None)
        .expect("nft list table");
    parse_counters(&json)
        .into_iter()
        .find(|(comment, _)| comment == name)
        .map_or(0, |(_, packets)| packets)
}

#[test]
fn connections_of_a_moved_bucket_survive_and_then_it_is_dropped_at_netdev() {
    if !require_root("connections_of_a_moved_bucket_survive_and_then_it_is_dropped_at_netdev") {
        return;
    }
    moved_bucket_drains(false);
}

/// The same with host 1's server on a dual-stack socket (`[::]:80`, as nginx with
/// `ipv6only=off` or Go's `:80` listen): `ss` lists its IPv4 connections as
/// `[::ffff:...]`, and they must count as well.
#[test]
fn connections_of_a_dual_stack_server_keep_their_moved_bucket_draining() {
    if !require_root("connections_of_a_dual_stack_server_keep_their_moved_bucket_draining") {
        return;
    }
    moved_bucket_drains(true);
}

fn moved_bucket_drains(dual_stack: bool) {
    let mut world = world(ClusterMode::Multicast, 2);
    world.start(&[0]);
    world.wait_converged(&[0]);
    let vip = SocketAddr::from((VIP, 80));
    if dual_stack {
        world.kill_server(0);
        world.children[0] = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                world.hosts[0].ns.name(),
                crate::common::nlb(),
            ])
            .args(["serve-http", "--bind", "[::]:80", "--name", "host1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve-http");
        let first = client_addresses(1).next().expect("a client address");
        world.wait_for("the dual-stack server", Duration::from_secs(5), |w| {
            w.in_client(|| http_get(first, vip)).as_deref() == Ok("host1")
        });
    }
    // A kept-alive connection to host 1 from every client address.
    let sources: Vec<Ipv4Addr> = client_addresses(crate::CLIENTS).collect();
    let mut sessions: Vec<(Ipv4Addr, KeepAlive)> = world.in_client(|| {
        sources
            .iter()
            .map(|&src| {
                let mut session = KeepAlive::connect(src, vip).expect("connect");
                assert_eq!(session.get().expect("first request"), "host1");
                (src, session)
            })
            .collect()
    });

    // Host 2 joins and takes half the buckets.
    world.start(&[1]);
    world.wait_converged(&[0, 1]);
    let query = world.ctl(1, "query").unwrap();
    let host2 = parse_ranges(query["owned_ranges"][0].as_str().unwrap());
    let (mut moved, stayed): (Vec<_>, Vec<_>) = sessions
        .drain(..)
        .partition(|(src, _)| host2.contains(bucket_for(&world, *src).1));
    assert!(!moved.is_empty() && !stayed.is_empty(), "{host2:?}");
    let (src, _) = moved[0];
    let bucket = bucket_for(&world, src).1;
    world.wait_for("host 1 to drain the bucket", Duration::from_secs(5), |w| {
        verdict(w, 0, bucket).as_deref() == Some("draining")
    });

    // Two counts of host 1's connections complete (so at least one started after the
    // bucket began draining): they find the moved connections, and it still drains.
    let counts = |w: &World| {
        w.ctl(0, "query")
            .and_then(|q| q["daemon"]["drain_counts"].as_u64())
            .unwrap_or(0)
    };
    let before = counts(&world);
    world.wait_for(
        "two counts of draining connections",
        Duration::from_secs(5),
        |w| counts(w) >= before + 2,
    );
    assert_eq!(verdict(&world, 0, bucket).as_deref(), Some("draining"));
    // The moved connections go on with host 1; a new one from the same client goes to
    // host 2, and host 1 dropped its SYN at netdev as a draining bucket's.
    let syns_before = netdev_counter(&world, 0, "draining syn");
    let mut moved = world.in_client(|| {
        for (src, session) in &mut moved {
            assert_eq!(
                session.get().unwrap_or_else(|e| panic!("{src}: {e}")),
                "host1"
            );
        }
        assert_eq!(http_get(src, vip).as_deref(), Ok("host2"));
        moved
    });
    assert!(netdev_counter(&world, 0, "draining syn") > syns_before);

    // The connections end; then host 1 drops the bucket at netdev, before conntrack.
    moved.clear();
    world.wait_for(
        "host 1 to let the bucket go",
        Duration::from_secs(10),
        |w| verdict(w, 0, bucket).is_none(),
    );
    assert_eq!(verdict(&world, 1, bucket).as_deref(), Some("owned"));
    let drops_before = netdev_counter(&world, 0, "rule1 drop");
    assert_eq!(
        world.in_client(|| http_get(src, vip)).as_deref(),
        Ok("host2")
    );
    assert!(netdev_counter(&world, 0, "rule1 drop") > drops_before);
    // The connections of buckets that did not move were never touched.
    world.in_client(|| {
        for (src, mut session) in stayed {
            assert_eq!(
                session.get().unwrap_or_else(|e| panic!("{src}: {e}")),
                "host1"
            );
        }
    });
}

/// A daemon killed and started again over live connections keeps them (with the
/// default `initial_state = "started"`): it starts with every bucket draining (nothing
/// owned, connections kept), and its kept-alive connections answer while it rejoins, once
/// it has, and after the first counts let go of the buckets that hold none.
#[test]
fn a_restarted_daemon_keeps_its_hosts_connections() {
    if !require_root("a_restarted_daemon_keeps_its_hosts_connections") {
        return;
    }
    let mut setup = Setup::new("nlbt", ClusterMode::Multicast, 2, crate::CLIENTS);
    setup.stopped = false;
    let mut world = World::build(setup, |_| HostSetup::default());
    world.wait_converged(&[0, 1]);
    let vip = SocketAddr::from((VIP, 80));
    let sources: Vec<Ipv4Addr> = client_addresses(crate::CLIENTS).collect();
    let mut sessions: Vec<(Ipv4Addr, String, KeepAlive)> = world.in_client(|| {
        sources
            .iter()
            .map(|&src| {
                let mut session = KeepAlive::connect(src, vip).expect("connect");
                let host = session.get().expect("first request");
                (src, host, session)
            })
            .collect()
    });
    assert!(
        sessions.iter().any(|(_, host, _)| host == "host2"),
        "some connections are host 2's"
    );
    let answer_all =
        |world: &World, sessions: &mut Vec<(Ipv4Addr, String, KeepAlive)>, when: &str| {
            world.in_client(|| {
                for (src, host, session) in sessions.iter_mut() {
                    assert_eq!(
                        session
                            .get()
                            .unwrap_or_else(|e| panic!("{when}: {src}: {e}")),
                        *host,
                        "{when}: {src}"
                    );
                }
            });
        };
    world.kill_daemon(1);
    world.start_daemon(1);
    world.wait_for("host 2's new daemon", Duration::from_secs(10), |w| {
        w.ctl(1, "query").is_some()
    });
    answer_all(&world, &mut sessions, "restarted");
    world.wait_converged(&[0, 1]);
    answer_all(&world, &mut sessions, "rejoined");
    let counts = |w: &World| {
        w.ctl(1, "query")
            .and_then(|q| q["daemon"]["drain_counts"].as_u64())
            .unwrap_or(0)
    };
    let before = counts(&world);
    world.wait_for("two drain counts", Duration::from_secs(5), |w| {
        counts(w) >= before + 2
    });
    answer_all(&world, &mut sessions, "after two counts");
}

/// The `netdev` stage defers replies to connections opened from a VIP by the kernel's
/// local port range; when an operator changes the range, the tables follow it, and a
/// connection from the VIP on a port of the new range works on every host, whether or
/// not it owns the reply's bucket.
#[test]
fn connections_from_the_vip_work_after_the_local_port_range_changes() {
    if !require_root("connections_from_the_vip_work_after_the_local_port_range_changes") {
        return;
    }
    let world = world(ClusterMode::Multicast, 2);
    world.start_all();
    let listener = world.in_client(|| std::net::TcpListener::bind((CLIENT, 9000)).unwrap());
    for host in &world.hosts {
        host.ns
            .exec(
                "sysctl",
                &["-qw", "net.ipv4.ip_local_port_range=20000 20999"],
                None,
            )
            .expect("sysctl");
    }
    let table = table_name("eth0", cluster_id(&[VIP]));
    world.wait_for(
        "the tables to follow the range",
        Duration::from_secs(5),
        |w| {
            w.hosts.iter().all(|h| {
                h.ns.exec("nft", &["list", "chain", "netdev", &table, "vip"], None)
                    .is_ok_and(|chain| chain.contains("th dport 20000-20999"))
            })
        },
    );
    for host in &world.hosts {
        let connected = inside(&host.ns, || {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::from((VIP, 0)).into()).unwrap();
            socket
                .connect_timeout(
                    &SocketAddr::from((CLIENT, 9000)).into(),
                    Duration::from_secs(3),
                )
                .map(|()| socket.local_addr().unwrap().as_socket().unwrap().port())
        })
        .unwrap();
        let port = connected
            .unwrap_or_else(|e| panic!("host {} could not connect from the VIP: {e}", host.id));
        assert!(
            (20000..=20999).contains(&port),
            "host {}: port {port}",
            host.id
        );
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, SocketAddr::from((VIP, port)));
        drop(accepted);
    }
}
