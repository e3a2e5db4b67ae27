//! A released bucket drains (issue 16): the old owner's connections in it (its sockets,
//! a service behind DNAT, UDP flows) go on, new flows in it go to the new owner, and
//! once those connections have ended (sockets) or gone idle (`drain_idle_ms`) the old
//! owner drops the bucket at netdev ingress, before conntrack.

use crate::common::{HostSetup, Setup, VIP, World};
use crate::serve::{bucket_for, parse_ranges};
use crate::world_with;
use nlb_lab::http::{KeepAlive, http_get};
use nlb_lab::segment::{CLIENT, client_addresses, inside};
use nlb_linux::netns::require_root;
use nlb_linux::ruleset::{parse_counters, table_name};
use nlb_wire::addressing::{ClusterMode, cluster_id};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `[host] drain_idle_ms` of these tests: a released bucket stays draining this
/// long after the last packet of one of its old owner's connections.
const IDLE: Duration = Duration::from_secs(3);

/// A host set up with [`IDLE`] and `rule` (the default rule if `None`).
fn idle_hosts(rule: Option<&str>) -> HostSetup {
    HostSetup {
        rule: rule.map(str::to_owned),
        host_extra: Some(format!("drain_idle_ms = {}\n", IDLE.as_millis())),
        ..HostSetup::default()
    }
}

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
    let mut world = world_with(ClusterMode::Multicast, 2, |_| idle_hosts(None));
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
    let mut sessions: Vec<(Ipv4Addr, KeepAlive)> = host1_sessions(&world, &sources);

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
        verdict(w, 0, bucket).as_deref() == Some("draining_rule1")
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
    assert_eq!(
        verdict(&world, 0, bucket).as_deref(),
        Some("draining_rule1")
    );
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
    let world = crate::world(ClusterMode::Multicast, 2);
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

/// A kept-alive connection to VIP:80 from each of `sources`, answered by host 1.
fn host1_sessions(world: &World, sources: &[Ipv4Addr]) -> Vec<(Ipv4Addr, KeepAlive)> {
    let vip = SocketAddr::from((VIP, 80));
    world.in_client(|| {
        sources
            .iter()
            .map(|&src| {
                let mut session = KeepAlive::connect(src, vip).expect("connect");
                assert_eq!(session.get().expect("first request"), "host1");
                (src, session)
            })
            .collect()
    })
}

/// Host 1's completed counts of draining connections.
fn drain_counts(world: &World) -> u64 {
    world
        .ctl(0, "query")
        .and_then(|q| q["daemon"]["drain_counts"].as_u64())
        .unwrap_or(0)
}

/// Host 2 joins a cluster of host 1; the sources of `sources` whose bucket moved to it,
/// and one moved bucket, once host 1 drains it.
fn join_second_host(world: &World, sources: &[Ipv4Addr]) -> (Vec<Ipv4Addr>, u16) {
    world.start(&[1]);
    world.wait_converged(&[0, 1]);
    let query = world.ctl(1, "query").unwrap();
    let host2 = parse_ranges(query["owned_ranges"][0].as_str().unwrap());
    let moved: Vec<Ipv4Addr> = sources
        .iter()
        .copied()
        .filter(|&src| host2.contains(bucket_for(world, src).1))
        .collect();
    assert!(
        !moved.is_empty() && moved.len() < sources.len(),
        "{host2:?}"
    );
    let bucket = bucket_for(world, moved[0]).1;
    world.wait_for("host 1 to drain the bucket", Duration::from_secs(5), |w| {
        verdict(w, 0, bucket).as_deref() == Some("draining_rule1")
    });
    (moved, bucket)
}

/// When the last exchange of [`keep_going`] ran: its packets went between the two.
struct LastExchange {
    /// Before its first packet: the kernel's idle timers started after this.
    began: Instant,
    /// After its last answer: idle from then on.
    ended: Instant,
}

/// Runs `exchange` (given the time since the first) every half second for three
/// [`IDLE`] times; checks that host 1's counts ran meanwhile and `bucket` still drains;
/// returns when the last exchange ran.
fn keep_going(world: &World, bucket: u16, mut exchange: impl FnMut(Duration)) -> LastExchange {
    let before = drain_counts(world);
    let start = Instant::now();
    let last = loop {
        let began = Instant::now();
        exchange(start.elapsed());
        if start.elapsed() >= 3 * IDLE {
            break LastExchange {
                began,
                ended: Instant::now(),
            };
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(drain_counts(world) >= before + 2, "counts ran meanwhile");
    assert_eq!(verdict(world, 0, bucket).as_deref(), Some("draining_rule1"));
    last
}

/// Waits until host 1 drops `bucket` at netdev, and checks that it did not before
/// `idle_since` (before the last packet) was [`IDLE`] ago: the connections in it were
/// idle that long.
fn wait_dropped_once_idle(world: &World, bucket: u16, idle_since: Instant) {
    world.wait_for(
        "host 1 to let the idle bucket go",
        IDLE + Duration::from_secs(10),
        |w| verdict(w, 0, bucket).is_none(),
    );
    assert!(
        idle_since.elapsed() >= IDLE,
        "the bucket went after {:?} idle, before {IDLE:?}",
        idle_since.elapsed()
    );
    assert_eq!(verdict(world, 1, bucket).as_deref(), Some("owned"));
}

/// A TCP connection to a service behind DNAT on the old owner (no socket on the VIP,
/// so `ss` never sees it: Docker's `-p 80:80`, kube-proxy) keeps its moved bucket
/// draining while it talks, well past the idle time and many counts, and while it is
/// idle for longer than the idle time (conntrack holds it), then talks again; once it
/// has closed, FIN both ways, the bucket is dropped at netdev.
#[test]
fn a_connection_behind_dnat_keeps_its_moved_bucket_while_it_talks() {
    if !require_root("a_connection_behind_dnat_keeps_its_moved_bucket_while_it_talks") {
        return;
    }
    let mut world = world_with(ClusterMode::Multicast, 2, |_| idle_hosts(None));
    // Host 1 serves VIP:80 through DNAT to a server on another of its addresses.
    world.kill_server(0);
    let ns = &world.hosts[0].ns;
    ns.exec("ip", &["addr", "add", "198.18.99.1/32", "dev", "lo"], None)
        .expect("ip addr");
    ns.nft(&format!(
        "table ip dnattest {{\n\tchain pre {{\n\t\ttype nat hook prerouting priority -100;\n\t\tip daddr {VIP} tcp dport 80 dnat to 198.18.99.1:8080\n\t}}\n\tchain after {{\n\t\ttype filter hook prerouting priority -90;\n\t\tip daddr 198.18.99.1 meta mark != 0 counter comment \"mark leaked\"\n\t\tip daddr 198.18.99.1 counter comment \"seen\"\n\t}}\n}}\n"
    ))
    .expect("the DNAT table");
    world.children[0] = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), crate::common::nlb()])
        .args([
            "serve-http",
            "--bind",
            "198.18.99.1:8080",
            "--name",
            "host1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve-http");
    world.start(&[0]);
    world.wait_converged(&[0]);
    let vip = SocketAddr::from((VIP, 80));
    let sources: Vec<Ipv4Addr> = client_addresses(crate::CLIENTS).collect();
    let first = sources[0];
    world.wait_for("the server behind DNAT", Duration::from_secs(5), |w| {
        w.in_client(|| http_get(first, vip)).as_deref() == Ok("host1")
    });
    let mut sessions: HashMap<Ipv4Addr, KeepAlive> =
        host1_sessions(&world, &sources).into_iter().collect();
    // No socket of host 1 is on the VIP: only conntrack knows these connections.
    let listed = world.hosts[0]
        .ns
        .exec(
            "ss",
            &["-Htn", "state", "connected", "src", &VIP.to_string()],
            None,
        )
        .expect("ss");
    assert!(listed.trim().is_empty(), "{listed}");

    let (moved, bucket) = join_second_host(&world, &sources);
    // The moved connections talk for three idle times, through several counts.
    // Each moved connection asks once and host 1 answers; `when` names the moment.
    let talk = |sessions: &mut HashMap<Ipv4Addr, KeepAlive>, when: &str| {
        world.in_client(|| {
            for src in &moved {
                let session = sessions.get_mut(src).expect("a session");
                let answer = session.get();
                assert_eq!(
                    answer.unwrap_or_else(|e| panic!("{src} {when}: {e}")),
                    "host1"
                );
            }
        });
    };
    let idle_since = keep_going(&world, bucket, |talking| {
        talk(&mut sessions, &format!("after {talking:?}"));
    })
    .ended;
    // A new connection from a moved source goes to host 2 (its SYN, dropped by host 1,
    // is no packet of a connection host 1 knows).
    assert_eq!(
        world.in_client(|| http_get(moved[0], vip)).as_deref(),
        Ok("host2")
    );
    // Idle for longer than the idle time: the `recent` element is gone, but conntrack
    // still holds the connections, so counts that started since keep the bucket.
    let sources_read = world
        .ctl(0, "query")
        .and_then(|q| Some(q["daemon"]["drain_sources"].as_str()?.to_owned()));
    assert_eq!(sources_read.as_deref(), Some("ss, recent, conntrack"));
    world.wait_for(
        "idle for the idle time",
        IDLE + Duration::from_secs(5),
        |_| idle_since.elapsed() > IDLE,
    );
    let counts = drain_counts(&world);
    // (Counts stop once nothing drains: without conntrack's entries the bucket goes.)
    world.wait_for(
        "two counts since, or the bucket gone",
        Duration::from_secs(10),
        |w| drain_counts(w) >= counts + 2 || verdict(w, 0, bucket).is_none(),
    );
    assert!(idle_since.elapsed() > IDLE);
    assert_eq!(
        verdict(&world, 0, bucket).as_deref(),
        Some("draining_rule1")
    );
    // And they talk again.
    talk(
        &mut sessions,
        &format!("after {:?} idle", idle_since.elapsed()),
    );
    // Closed (FIN both ways): conntrack's entries are in TIME_WAIT, over; once the last
    // packets are the idle time old, the bucket goes and is dropped at netdev.
    // Before the first FIN: the idle time runs from the packets that follow.
    let closing = Instant::now();
    world.in_client(|| {
        for src in &moved {
            let session = sessions.remove(src).expect("a session");
            session
                .close()
                .unwrap_or_else(|e| panic!("{src} closes: {e}"));
        }
    });
    wait_dropped_once_idle(&world, bucket, closing);
    let drops_before = netdev_counter(&world, 0, "rule1 drop");
    assert_eq!(
        world.in_client(|| http_get(moved[0], vip)).as_deref(),
        Ok("host2")
    );
    assert!(netdev_counter(&world, 0, "rule1 drop") > drops_before);
    // nlb's marks stayed inside its chains: every packet after them (DNAT'd, of every
    // phase, the draining bucket's included) has mark 0.
    let dnat = world.hosts[0]
        .ns
        .exec("nft", &["-j", "list", "table", "ip", "dnattest"], None)
        .expect("nft list table");
    let counters = parse_counters(&dnat);
    assert_eq!(counters[0], ("mark leaked".to_owned(), 0), "{counters:?}");
    assert!(counters[1].0 == "seen" && counters[1].1 > 0, "{counters:?}");
    // The connections of buckets that did not move were never touched.
    world.in_client(|| {
        for (src, session) in sessions.iter_mut().filter(|(src, _)| !moved.contains(src)) {
            assert_eq!(
                session.get().unwrap_or_else(|e| panic!("{src}: {e}")),
                "host1"
            );
        }
    });
}

/// A UDP server in a host's namespace on VIP:80 that answers every datagram with its
/// name and counts them by peer; stopped when dropped.
struct UdpEcho {
    received: Arc<Mutex<HashMap<SocketAddr, u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    fn start(ns: &nlb_linux::netns::NetNs, name: &'static str) -> UdpEcho {
        // Bound before the daemon puts the VIP on the interface, as `serve-http` is.
        let socket = inside(ns, || -> std::io::Result<std::net::UdpSocket> {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            socket.set_freebind_v4(true)?;
            socket.bind(&SocketAddr::from((VIP, 80)).into())?;
            Ok(socket.into())
        })
        .expect("enter the namespace")
        .expect("bind VIP:80/udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let received = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                        *received.lock().unwrap().entry(peer).or_default() += 1;
                        let _ = socket.send_to(name.as_bytes(), peer);
                    }
                }
            })
        };
        UdpEcho {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self, peer: SocketAddr) -> u32 {
        self.received
            .lock()
            .unwrap()
            .get(&peer)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP flow that lasts several idle times (the old rule let a UDP rule's bucket go
/// after a fixed 60 s, cutting QUIC or a VPN) keeps reaching its old owner after its
/// bucket moved, for as long as it goes on; once idle for the idle time (and forgotten
/// by conntrack), the bucket is dropped at netdev.
#[test]
fn a_long_udp_flow_keeps_its_moved_bucket_while_it_lasts() {
    if !require_root("a_long_udp_flow_keeps_its_moved_bucket_while_it_lasts") {
        return;
    }
    let rule = "[[rule]]\nports = \"80\"\nprotocol = \"both\"\naffinity = \"single\"\n";
    let world = world_with(ClusterMode::Multicast, 2, |_| idle_hosts(Some(rule)));
    // Host 1's conntrack forgets an idle UDP flow after the idle time (its own
    // namespace's setting; 30 s and 120 s by default), so that the bucket can go soon
    // after: while conntrack holds the flow, the drain count keeps it.
    let idle_secs = IDLE.as_secs().to_string();
    for name in ["udp_timeout", "udp_timeout_stream"] {
        world.hosts[0]
            .ns
            .exec(
                "sysctl",
                &[
                    "-qw",
                    &format!("net.netfilter.nf_conntrack_{name}={idle_secs}"),
                ],
                None,
            )
            .expect("sysctl");
    }
    let host1 = UdpEcho::start(&world.hosts[0].ns, "host1");
    let _host2 = UdpEcho::start(&world.hosts[1].ns, "host2");
    world.start(&[0]);
    world.wait_converged(&[0]);
    let vip = SocketAddr::from((VIP, 80));
    let sources: Vec<Ipv4Addr> = client_addresses(crate::CLIENTS).collect();
    // One flow per source, answered by host 1 (so conntrack calls it established).
    let flows: Vec<(Ipv4Addr, std::net::UdpSocket)> = world.in_client(|| {
        sources
            .iter()
            .map(|&src| {
                let socket = std::net::UdpSocket::bind((src, 0)).expect("bind");
                socket.connect(vip).expect("connect");
                socket
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                // Sent again while unanswered, as a UDP client does (the first
                // datagrams can wait on ARP under load).
                let mut buf = [0u8; 16];
                let len = (0..5)
                    .find_map(|_| {
                        socket.send(b"hello").unwrap();
                        socket.recv(&mut buf).ok()
                    })
                    .unwrap_or_else(|| panic!("host 1 answers {src}"));
                assert_eq!(&buf[..len], b"host1");
                (src, socket)
            })
            .collect()
    });
    let (moved, bucket) = join_second_host(&world, &sources);
    let moved: Vec<&(Ipv4Addr, std::net::UdpSocket)> = flows
        .iter()
        .filter(|(src, _)| moved.contains(src))
        .collect();
    // The moved flows go on for three idle times: host 1 gets (and answers) every
    // datagram.
    let idle_since = keep_going(&world, bucket, |lasting| {
        for (src, socket) in &moved {
            let peer = socket.local_addr().unwrap();
            let had = host1.count(peer);
            socket.send(b"more").unwrap();
            world.wait_for(
                &format!("host 1 to get {src}'s datagram after {lasting:?}"),
                Duration::from_secs(2),
                |_| host1.count(peer) > had,
            );
        }
    });
    wait_dropped_once_idle(&world, bucket, idle_since.began);
    // Now the old owner drops the flow's datagrams at netdev.
    let drops_before = netdev_counter(&world, 0, "rule1 drop");
    let (_, socket) = moved[0];
    let had = host1.count(socket.local_addr().unwrap());
    socket.send(b"late").unwrap();
    world.wait_for("the netdev drop", Duration::from_secs(2), |w| {
        netdev_counter(w, 0, "rule1 drop") > drops_before
    });
    assert_eq!(host1.count(socket.local_addr().unwrap()), had);
}
