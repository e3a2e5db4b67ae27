//! End to end: real `nlb run` daemons in network namespaces, joined by a Linux bridge,
//! serving a real HTTP server on the VIP to a client with many source addresses.
//!
//! Each test builds its own world (switch, hosts, client), uses only 198.18.0.0/15, and
//! tears everything down when it ends, failed or not: daemons and servers are stopped
//! first, then the namespaces (and with them every interface) are deleted.

use nlb_core::buckets::BucketMap;
use nlb_core::config::{Affinity, Protocol};
use nlb_core::filter::{Flow, bucket_of};
use nlb_linux::netns::{NetNs, require_root, unique_name};
use nlb_linux::segment::{CLIENT, Segment, client_addresses, host_address, http_get};
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const CLIENTS: u8 = 40;

fn nlb() -> &'static str {
    env!("CARGO_BIN_EXE_nlb")
}

struct Host {
    id: u8,
    ns: NetNs,
    config: PathBuf,
    socket: PathBuf,
    daemon: Option<Child>,
}

/// One test's world. Dropping it stops every process, then deletes the namespaces.
struct World {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    hosts: Vec<Host>,
    client: NetNs,
    switch: NetNs,
}

impl Drop for World {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut daemon) = host.daemon.take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(daemon.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = daemon.wait();
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How one host differs from the default test host.
#[derive(Default)]
struct HostSetup {
    /// The `[[rule]]` table; the default is TCP port 80, affinity single.
    rule: Option<String>,
    /// The contents of the cluster key file, if the host uses one.
    key: Option<&'static [u8]>,
    /// Extra lines for the `[host]` table.
    host_extra: Option<String>,
}

const DEFAULT_RULE: &str = "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"single\"\n";

impl World {
    /// A bridge, `hosts` cluster hosts (daemons started stopped, servers running) and a
    /// client with [`CLIENTS`] extra addresses.
    fn build(mode: ClusterMode, hosts: u8) -> World {
        Self::build_with(mode, hosts, |_| HostSetup::default())
    }

    /// As [`World::build`], with each host set up by `setup`.
    fn build_with(mode: ClusterMode, hosts: u8, setup: impl Fn(u8) -> HostSetup) -> World {
        let tag = unique_name("");
        let Segment {
            switch,
            hosts: namespaces,
            client,
        } = Segment::build(
            &format!("nlbt{tag}"),
            hosts,
            CLIENTS,
            mode == ClusterMode::Igmp,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut world_hosts = Vec::new();
        let mut children = Vec::new();
        for (id, ns) in (1..=hosts).zip(namespaces) {
            let socket = dir.path().join(format!("h{id}.sock"));
            let config = dir.path().join(format!("h{id}.toml"));
            let HostSetup {
                rule,
                key,
                host_extra,
            } = setup(id);
            let key_line = match key {
                Some(secret) => {
                    use std::os::unix::fs::PermissionsExt;
                    let path = dir.path().join(format!("h{id}.key"));
                    std::fs::write(&path, secret).unwrap();
                    // The daemon refuses a key file others may read.
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .unwrap();
                    format!("key_file = \"{}\"\n", path.display())
                }
                // Keyless on purpose: these tests are about the rest of the cluster
                // (the attack test covers keyed and keyless clusters under attack).
                None => "insecure_no_key = true\n".to_owned(),
            };
            std::fs::write(
                &config,
                format!(
                    "[cluster]\ninterface = \"eth0\"\nvips = [\"{VIP}\"]\nmode = \"{mode}\"\n{key_line}\n[host]\nid = {id}\ninitial_state = \"stopped\"\ncontrol_socket = \"{}\"\n{}\n{}",
                    socket.display(),
                    host_extra.as_deref().unwrap_or(""),
                    rule.as_deref().unwrap_or(DEFAULT_RULE)
                ),
            )
            .unwrap();
            children.push(
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        ns.name(),
                        nlb(),
                        "serve-http",
                        "--bind",
                        &format!("{VIP}:80"),
                        "--name",
                        &format!("host{id}"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            world_hosts.push(Host {
                id,
                ns,
                config,
                socket,
                daemon: None,
            });
        }
        let mut world = World {
            dir,
            children,
            hosts: world_hosts,
            client,
            switch,
        };
        for index in 0..world.hosts.len() {
            world.start_daemon(index);
        }
        world
    }

    fn start_daemon(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        let log = std::fs::File::create(self.dir.path().join(format!("h{}.log", host.id))).unwrap();
        let run_dir = self.dir.path().join(format!("run{}", host.id));
        host.daemon = Some(
            Command::new("ip")
                .args(["netns", "exec", host.ns.name(), nlb(), "run", "--config"])
                .arg(&host.config)
                .arg("--run-dir")
                .arg(&run_dir)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn log(&self, index: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("h{}.log", self.hosts[index].id)),
        )
        .unwrap_or_default()
    }

    /// `nlb <verb> --json` against host `index`'s daemon.
    fn ctl(&self, index: usize, verb: &str) -> Option<Value> {
        let out = Command::new(nlb())
            .args([verb, "--json", "--socket"])
            .arg(&self.hosts[index].socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_for(&self, what: &str, limit: Duration, mut ready: impl FnMut(&World) -> bool) {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(20);
        while !ready(self) {
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.hosts.len()).map(|i| self.log(i)).collect();
                panic!(
                    "timed out waiting for {what}; daemon logs:\n{}",
                    logs.join("\n----\n")
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Starts every host at once and waits until all are converged in one view.
    fn start_all(&self) {
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.start(&all);
        self.wait_converged(&all);
    }

    /// Starts these hosts at once (so that they usually form one view in one step).
    fn start(&self, indices: &[usize]) {
        self.wait_for("the daemons to answer", Duration::from_secs(10), |w| {
            indices.iter().all(|&i| w.ctl(i, "query").is_some())
        });
        std::thread::scope(|scope| {
            for &index in indices {
                scope.spawn(move || assert_eq!(self.ctl(index, "start").unwrap()["ok"], true));
            }
        });
    }

    /// Waits until exactly these hosts are converged, in one view of just them.
    fn wait_converged(&self, indices: &[usize]) {
        let members: Vec<u8> = indices.iter().map(|&i| self.hosts[i].id).collect();
        self.wait_for("convergence", Duration::from_secs(10), |w| {
            indices.iter().all(|&i| {
                w.ctl(i, "query").is_some_and(|q| {
                    q["state"] == "converged" && q["view_members"] == serde_json::json!(members)
                })
            })
        });
    }

    /// Requests from every client address; the answering host of each.
    fn serve_all(&self) -> Vec<(Ipv4Addr, Result<String, String>)> {
        self.in_client(|| {
            client_addresses(CLIENTS)
                .map(|src| (src, request(src)))
                .collect()
        })
    }

    /// Runs `work` on a thread inside the client's namespace.
    fn in_client<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.client.enter_current_thread().unwrap();
                    work()
                })
                .join()
                .unwrap()
        })
    }
}

/// One HTTP request from `src` to the VIP: the name of the host that answered.
fn request(src: Ipv4Addr) -> Result<String, String> {
    http_get(src, SocketAddr::from((VIP, 80)))
}

/// The bucket of a client's request under the test rule (affinity single).
fn bucket_for(world: &World, src: Ipv4Addr) -> u16 {
    let config = nlb_core::config::Config::parse(
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
    bucket_of(
        &flow,
        Affinity::Single,
        nlb_core::filter::cluster_seed(&config),
    )
}

/// The host the map of a cluster formed in one step by all the hosts gives a client:
/// the map `nlb plan` computes.
fn predicted_host(world: &World, src: Ipv4Addr) -> u8 {
    let weights: Vec<(u8, u32)> = world.hosts.iter().map(|h| (h.id, 100)).collect();
    BucketMap::unowned()
        .rebalance(&weights)
        .owner(bucket_for(world, src))
        .expect("every bucket has an owner")
}

/// Parses `0-85, 100` back into a bitmap.
fn parse_ranges(text: &str) -> nlb_wire::heartbeat::BucketBitmap {
    let mut bitmap = nlb_wire::heartbeat::BucketBitmap::new(nlb_core::buckets::BUCKETS);
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
    let world = World::build(mode, 3);
    world.start_all();
    // Each host's share is the one `nlb plan` predicts.
    let plan = Command::new(nlb())
        .args(["plan", "--json", "--members", "1,2,3", "--config"])
        .arg(&world.hosts[0].config)
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut owners: Vec<(u8, nlb_wire::heartbeat::BucketBitmap)> = Vec::new();
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
        owners.push((id, parse_ranges(query["owned_ranges"][0].as_str().unwrap())));
    }

    // 1. Every client address is answered by exactly one host: the one that owns its
    //    bucket. When the three formed their view in one step (as they usually do), that
    //    is also the host `nlb plan`'s map predicts for the address.
    let answers: Vec<(Ipv4Addr, Result<String, String>)> = world.in_client(|| {
        client_addresses(CLIENTS)
            .map(|src| (src, request(src)))
            .collect()
    });
    let mut served = std::collections::BTreeSet::new();
    for (src, answer) in &answers {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("{mode}: {e}"));
        let bucket = bucket_for(&world, *src);
        let holders: Vec<u8> = owners
            .iter()
            .filter(|(_, b)| b.contains(bucket))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{mode}: bucket {bucket} held by {holders:?}"
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
        let ok = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    host.ns.enter_current_thread().unwrap();
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    socket.bind(&SocketAddr::from((VIP, 0)).into()).unwrap();
                    socket.connect_timeout(
                        &SocketAddr::from((CLIENT, 9000)).into(),
                        Duration::from_secs(3),
                    )
                })
                .join()
                .unwrap()
        });
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

/// 7a. A host whose rules differ goes misconfigured, names the field, and the others keep
///     serving every client.
#[test]
fn a_host_with_different_rules_stays_out() {
    if !require_root("a_host_with_different_rules_stays_out") {
        return;
    }
    let world = World::build_with(ClusterMode::Multicast, 3, |id| HostSetup {
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
    let world = World::build_with(ClusterMode::Multicast, 3, |id| HostSetup {
        key: Some(if id == 3 {
            b"not the cluster secret, 32 bytes or more"
        } else {
            b"the cluster secret, 32 bytes or more"
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
    let world = World::build(ClusterMode::Multicast, 2);
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

/// One client request under load.
#[derive(Debug, Clone)]
struct Attempt {
    started: Instant,
    took: Duration,
    answer: Result<String, String>,
}

/// Client load: a new connection every 10 ms (each from the next client address), and
/// optionally keep-alive sessions that send a request every 20 ms. Runs in the client's
/// namespace until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    attempts: std::sync::Arc<std::sync::Mutex<Vec<Attempt>>>,
    keepalive: std::sync::Arc<std::sync::Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A keep-alive session: requests over one connection until `stop`.
fn keepalive_session(
    src: Ipv4Addr,
    stop: &std::sync::atomic::AtomicBool,
    log: &std::sync::Mutex<Vec<Attempt>>,
) {
    use std::io::BufRead;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    socket
        .connect_timeout(&SocketAddr::from((VIP, 80)).into(), Duration::from_secs(3))
        .unwrap();
    let stream = std::net::TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = Instant::now();
        let answer = (|| {
            writer
                .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".to_owned());
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&body).trim().to_owned())
        })();
        log.lock().unwrap().push(Attempt {
            started,
            took: started.elapsed(),
            answer,
        });
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Load {
    fn start(world: &World, keepalive_from: &[Ipv4Addr]) -> Load {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let keepalive = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let client = world.client.name().to_owned();
        let enter = move || {
            let handle = std::fs::File::open(format!("/run/netns/{client}")).unwrap();
            nix::sched::setns(handle, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        };
        for &src in keepalive_from {
            let (stop, log, enter) = (stop.clone(), keepalive.clone(), enter.clone());
            threads.push(std::thread::spawn(move || {
                enter();
                keepalive_session(src, &stop, &log);
            }));
        }
        let (stop2, log) = (stop.clone(), attempts.clone());
        threads.push(std::thread::spawn(move || {
            enter();
            let sources: Vec<Ipv4Addr> = client_addresses(CLIENTS).collect();
            let mut workers = Vec::new();
            let mut next = 0;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let src = sources[next % sources.len()];
                next += 1;
                let log = log.clone();
                // New threads start in this thread's namespace.
                workers.push(std::thread::spawn(move || {
                    let started = Instant::now();
                    let answer = request(src);
                    log.lock().unwrap().push(Attempt {
                        started,
                        took: started.elapsed(),
                        answer,
                    });
                }));
                std::thread::sleep(Duration::from_millis(10));
            }
            for worker in workers {
                let _ = worker.join();
            }
        }));
        Load {
            stop,
            attempts,
            keepalive,
            threads,
        }
    }

    /// Stops the load and returns (new-connection attempts, keep-alive requests).
    fn finish(self) -> (Vec<Attempt>, Vec<Attempt>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        let mut attempts = self.attempts.lock().unwrap().clone();
        attempts.sort_by_key(|a| a.started);
        let keepalive = self.keepalive.lock().unwrap().clone();
        (attempts, keepalive)
    }
}

/// The outage a failure at `at` caused: from `at` to the start of the last new
/// connection before `until` that failed or needed a SYN retransmission (over 500 ms).
fn outage(attempts: &[Attempt], at: Instant, until: Instant) -> Duration {
    attempts
        .iter()
        .filter(|a| a.started >= at && a.started < until)
        .filter(|a| a.answer.is_err() || a.took > Duration::from_millis(500))
        .map(|a| a.started.saturating_duration_since(at))
        .max()
        .unwrap_or_default()
}

/// 5. Failover while a client opens a new connection every 10 ms: a host's link goes
///    down, then a daemon is killed. Connections recover within a few hundred ms, and
///    the killed daemon's host takes no new connection once its lease has ended.
#[test]
fn failover_on_link_down_and_daemon_kill() {
    if !require_root("failover_on_link_down_and_daemon_kill") {
        return;
    }
    let mut world = World::build(ClusterMode::Multicast, 3);
    world.start_all();
    let load = Load::start(&world, &[]);
    std::thread::sleep(Duration::from_millis(500));

    // Host 3's link goes down.
    let link_down = Instant::now();
    world.hosts[2]
        .ns
        .ip(&["link", "set", "eth0", "down"])
        .unwrap();
    world.wait_converged(&[0, 1]);
    std::thread::sleep(Duration::from_millis(1500));

    // Host 2's daemon is killed; its kernel keeps the last ruleset, lease included.
    let killed = Instant::now();
    let daemon = world.hosts[1].daemon.as_mut().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = daemon.wait();
    world.hosts[1].daemon = None;
    world.wait_converged(&[0]);
    std::thread::sleep(Duration::from_millis(1500));
    let (attempts, _) = load.finish();

    let link_outage = outage(&attempts, link_down, killed);
    let kill_outage = outage(&attempts, killed, Instant::now());
    eprintln!(
        "failover: {} connections; outage after link down {link_outage:?}, after SIGKILL {kill_outage:?}",
        attempts.len()
    );
    // Every connection got an answer in the end (a dropped SYN is retried by TCP).
    let failed: Vec<_> = attempts.iter().filter(|a| a.answer.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    assert!(link_outage < Duration::from_millis(1500), "{link_outage:?}");
    assert!(kill_outage < Duration::from_millis(1500), "{kill_outage:?}");
    // Once the killed daemon's lease (75 ms) has run out, its host takes nothing new.
    let lease_end = killed + Duration::from_millis(100);
    let late: Vec<_> = attempts
        .iter()
        .filter(|a| a.started > lease_end && a.answer.as_deref() == Ok("host2"))
        .collect();
    assert!(
        late.is_empty(),
        "host 2 answered after its lease: {:?}",
        late.first()
    );
    // And after the link went down, host 3 answered nothing.
    assert!(
        attempts
            .iter()
            .filter(|a| a.started > link_down)
            .all(|a| a.answer.as_deref() != Ok("host3"))
    );
}

/// 6. Planned changes lose nothing: under keep-alive and new-connection load, host 2
///    drains (its keep-alive sessions go on, new connections go elsewhere), stops, starts
///    again, and a fourth host joins. Zero failed requests, zero resets.
#[test]
fn planned_changes_lose_nothing() {
    if !require_root("planned_changes_lose_nothing") {
        return;
    }
    let world = World::build(ClusterMode::Multicast, 4);
    world.start(&[0, 1, 2]);
    world.wait_converged(&[0, 1, 2]);
    let keepalive_sources: Vec<Ipv4Addr> = client_addresses(CLIENTS).take(8).collect();
    let load = Load::start(&world, &keepalive_sources);
    std::thread::sleep(Duration::from_millis(500));

    let drained = Instant::now();
    let answer = world.ctl(1, "drainstop").unwrap();
    assert_eq!(answer["state"], "draining", "{answer}");
    world.wait_for("host 2's buckets to move", Duration::from_secs(5), |w| {
        let owned = |i: usize| {
            w.ctl(i, "query")
                .map(|q| q["owned_buckets"][0].as_u64().unwrap_or(0))
        };
        owned(1) == Some(0) && owned(0).zip(owned(2)).is_some_and(|(a, b)| a + b == 256)
    });
    let handed_off = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    // The keep-alive sessions end; the drain completes.
    let (attempts_a, keepalive) = load.finish();
    world.wait_for("host 2 to finish draining", Duration::from_secs(5), |w| {
        w.ctl(1, "query").is_some_and(|q| q["state"] == "stopped")
    });
    let load = Load::start(&world, &[]);
    assert_eq!(world.ctl(1, "stop").unwrap()["state"], "stopped");
    world.start(&[1]);
    world.wait_converged(&[0, 1, 2]);
    world.start(&[3]);
    world.wait_converged(&[0, 1, 2, 3]);
    std::thread::sleep(Duration::from_millis(500));
    let (attempts_b, _) = load.finish();

    let all: Vec<&Attempt> = attempts_a
        .iter()
        .chain(&attempts_b)
        .chain(&keepalive)
        .collect();
    let failed: Vec<_> = all.iter().filter(|a| a.answer.is_err()).collect();
    let retried = all
        .iter()
        .filter(|a| a.took > Duration::from_millis(500))
        .count();
    eprintln!(
        "planned changes: {} requests ({} keep-alive), {} failed, {retried} needed a SYN retry",
        all.len(),
        keepalive.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        keepalive
            .iter()
            .any(|a| a.answer.as_deref() == Ok("host2") && a.started > handed_off),
        "host 2 kept serving its keep-alive sessions while draining"
    );
    let new_to_host2 = attempts_a
        .iter()
        .filter(|a| a.started > handed_off && a.answer.as_deref() == Ok("host2"))
        .count();
    assert_eq!(
        new_to_host2, 0,
        "host 2 took new connections while draining"
    );
    assert!(
        attempts_b
            .iter()
            .any(|a| a.answer.as_deref() == Ok("host4")),
        "host 4 serves"
    );
    let _ = drained;
}

/// The daemon's life cycle: a second daemon on the same interface and cluster is refused
/// with a clear message; a killed daemon's leftovers are replaced by the next start; a
/// terminated daemon removes its tables and its VIP.
#[test]
fn one_daemon_per_interface_reconcile_and_clean_exit() {
    if !require_root("one_daemon_per_interface_reconcile_and_clean_exit") {
        return;
    }
    let mut world = World::build(ClusterMode::Multicast, 2);
    world.start_all();
    let host = &world.hosts[0];
    let second = Command::new("ip")
        .args(["netns", "exec", host.ns.name(), nlb(), "run", "--config"])
        .arg(&host.config)
        .arg("--run-dir")
        .arg(world.dir.path().join("run1"))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another nlb daemon"), "{stderr}");

    // SIGKILL host 1's daemon, then start it again over its leftovers.
    let daemon = world.hosts[0].daemon.as_mut().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = daemon.wait();
    let leftovers = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert!(leftovers.contains("nlb_eth0"), "{leftovers}");
    world.start_daemon(0);
    world.start(&[0]);
    world.wait_converged(&[0, 1]);
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert_eq!(tables.matches("table inet nlb_eth0").count(), 1, "{tables}");

    // SIGTERM: host 2 learns at once that host 1 stopped, and host 1 cleans up.
    let daemon = world.hosts[0].daemon.as_mut().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    world.hosts[0].daemon = None;
    assert!(status.success(), "{status}");
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert!(!tables.contains("nlb_eth0"), "{tables}");
    let addresses = world.hosts[0]
        .ns
        .ip(&["-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(!addresses.contains(&VIP.to_string()), "{addresses}");
    world.wait_converged(&[1]);
    assert!(world.log(0).contains("nlb.stopped"));
}

/// Failover figures for BENCHMARKS.md, not a pass/fail test: `NLB_TRIALS` (default 20)
/// link-down and SIGKILL failures of one host of three, each under a new connection
/// every 10 ms, with the outage of each. Run by hand:
///
/// ```sh
/// sudo cargo test --release -p nlb --test e2e -- --ignored --nocapture failover_trials
/// ```
#[test]
#[ignore]
fn failover_trials() {
    if !require_root("failover_trials") {
        return;
    }
    let trials: usize = std::env::var("NLB_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    let mut results: Vec<(&str, Vec<Duration>)> =
        vec![("link down", Vec::new()), ("SIGKILL", Vec::new())];
    let mut world = World::build(ClusterMode::Multicast, 3);
    world.start_all();
    for trial in 0..trials {
        for (kind, outages) in &mut results {
            let victim = 2 - trial % 2; // alternate hosts 2 and 3
            let load = Load::start(&world, &[]);
            std::thread::sleep(Duration::from_millis(300));
            let failed_at = Instant::now();
            if *kind == "link down" {
                world.hosts[victim]
                    .ns
                    .ip(&["link", "set", "eth0", "down"])
                    .unwrap();
            } else {
                let daemon = world.hosts[victim].daemon.as_mut().unwrap();
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(daemon.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                let _ = daemon.wait();
                world.hosts[victim].daemon = None;
            }
            let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
            world.wait_converged(&survivors);
            std::thread::sleep(Duration::from_millis(1200));
            let (attempts, _) = load.finish();
            outages.push(outage(&attempts, failed_at, Instant::now()));
            // Restore the host and let the cluster settle.
            if *kind == "link down" {
                world.hosts[victim]
                    .ns
                    .ip(&["link", "set", "eth0", "up"])
                    .unwrap();
            } else {
                world.start_daemon(victim);
                world.start(&[victim]);
            }
            world.wait_converged(&[0, 1, 2]);
        }
    }
    println!("| failure | trials | median | p99 | max |\n|---|---|---|---|---|");
    for (kind, mut outages) in results {
        outages.sort();
        let pick = |q: f64| outages[((outages.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {kind} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            outages.len(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            outages.last().unwrap().as_secs_f64() * 1e3
        );
    }
}

/// The operator's verbs: per-rule drain, enable and disable by VIP:PORT, a refusal for a
/// port no rule covers, `drainstop --wait`, and the error when no daemon answers.
#[test]
fn rule_verbs_and_drainstop_wait() {
    if !require_root("rule_verbs_and_drainstop_wait") {
        return;
    }
    let world = World::build(ClusterMode::Multicast, 2);
    world.start_all();
    let cli = |index: usize, args: &[&str]| {
        Command::new(nlb())
            .args(args)
            .arg("--socket")
            .arg(&world.hosts[index].socket)
            .output()
            .unwrap()
    };
    let owned = |w: &World, index: usize| {
        w.ctl(index, "query").unwrap()["owned_buckets"][0]
            .as_u64()
            .unwrap()
    };
    assert!(cli(0, &["drain", &format!("{VIP}:80")]).status.success());
    world.wait_for("host 2 to take rule 1 whole", Duration::from_secs(5), |w| {
        owned(w, 0) == 0 && owned(w, 1) == 256
    });
    assert!(cli(0, &["enable", "all"]).status.success());
    world.wait_for(
        "host 1 to get its share back",
        Duration::from_secs(5),
        |w| owned(w, 0) == 128 && owned(w, 1) == 128,
    );
    // Suspend halts everything and refuses other commands until resume.
    let suspended = cli(0, &["suspend", "--json"]);
    assert!(String::from_utf8_lossy(&suspended.stdout).contains("\"state\":\"suspended\""));
    world.wait_for("host 2 to take everything", Duration::from_secs(5), |w| {
        owned(w, 1) == 256
    });
    assert_eq!(owned(&world, 0), 0);
    let refused_stop = cli(0, &["stop"]);
    assert_eq!(refused_stop.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused_stop.stderr).contains("suspended"));
    assert!(cli(0, &["resume"]).status.success());
    world.wait_for("host 1 to rejoin", Duration::from_secs(5), |w| {
        owned(w, 0) == 128 && owned(w, 1) == 128
    });
    let not_suspended = cli(0, &["resume"]);
    assert_eq!(not_suspended.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_suspended.stderr).contains("not suspended"));
    let refused = cli(0, &["disable", &format!("{VIP}:81")]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no rule covers"));

    let drained = cli(1, &["drainstop", "--wait", "--timeout", "5"]);
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    assert!(String::from_utf8_lossy(&drained.stdout).contains("drained: stopped"));
    world.wait_for("host 1 to take everything", Duration::from_secs(5), |w| {
        owned(w, 0) == 256
    });

    let nobody = Command::new(nlb())
        .args(["query", "--socket"])
        .arg(world.dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        stderr.contains("no nlb daemon answers") && stderr.contains("nlb run"),
        "{stderr}"
    );
}

/// systemd integration: READY=1 and watchdog pings on `$NOTIFY_SOCKET`; SIGHUP reloads
/// a changed weight without a restart and refuses a change to the cluster-wide part.
#[test]
fn systemd_notifications_and_reload() {
    if !require_root("systemd_notifications_and_reload") {
        return;
    }
    let mut world = World::build(ClusterMode::Multicast, 2);
    // Host 1's daemon runs under a fake systemd.
    let mut daemon = world.hosts[0].daemon.take().unwrap();
    daemon.kill().unwrap();
    let _ = daemon.wait();
    let notify_path = world.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let log = std::fs::File::create(world.dir.path().join("h1.log")).unwrap();
    world.hosts[0].daemon = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                world.hosts[0].ns.name(),
                nlb(),
                "run",
                "--config",
            ])
            .arg(&world.hosts[0].config)
            .arg("--run-dir")
            .arg(world.dir.path().join("run1"))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000")
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 256];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let len = notify.recv(&mut buf).expect("the daemon notifies systemd");
        seen.insert(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    world.start_all();

    // A lighter weight for host 1, then SIGHUP: weights 50 and 100 share 256 buckets,
    // 85.3 and 170.7. Rounded down that is 85 and 170; the bucket left over stays with
    // host 1, which holds more than 85 already (nlb_core::buckets::quotas).
    let config = std::fs::read_to_string(&world.hosts[0].config).unwrap();
    std::fs::write(
        &world.hosts[0].config,
        config.replace(
            "affinity = \"single\"\n",
            "affinity = \"single\"\nweight = 50\n",
        ),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(world.hosts[0].daemon.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let owned = |w: &World, index: usize| {
        w.ctl(index, "query").unwrap()["owned_buckets"][0]
            .as_u64()
            .unwrap()
    };
    world.wait_for(
        "the new weight to take effect",
        Duration::from_secs(5),
        |w| owned(w, 0) == 86 && owned(w, 1) == 170,
    );
    assert!(world.log(0).contains("nlb.reloaded"));

    // A different mode is cluster-wide: refused, and nothing changes.
    let config = std::fs::read_to_string(&world.hosts[0].config).unwrap();
    std::fs::write(
        &world.hosts[0].config,
        config.replace("mode = \"multicast\"", "mode = \"unicast\""),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    world.wait_for("the refusal", Duration::from_secs(5), |w| {
        w.log(0).contains("nlb.reload_refused")
    });
    assert!(world.log(0).contains("cluster.mode"));
    assert_eq!(owned(&world, 0), 86);
    world.wait_converged(&[0, 1]);

    // A cluster-wide change that a reload can take: the tolerance. Host 1 goes first and
    // stays out (misconfigured, owning nothing) until host 2 has the same file.
    let with_tolerance = |index: usize| {
        let config = std::fs::read_to_string(&world.hosts[index].config).unwrap();
        let config = config
            .replace("mode = \"unicast\"", "mode = \"multicast\"")
            .replace(
                "mode = \"multicast\"\n",
                "mode = \"multicast\"\ntolerance = 20\n",
            );
        std::fs::write(&world.hosts[index].config, config).unwrap();
        let pid = world.hosts[index].daemon.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    };
    with_tolerance(0);
    world.wait_for("host 1 to stay out", Duration::from_secs(5), |w| {
        w.ctl(0, "query")
            .is_some_and(|q| q["state"] == "misconfigured")
    });
    assert_eq!(owned(&world, 1), 256);
    with_tolerance(1);
    world.wait_converged(&[0, 1]);
    assert!(world.log(1).contains("cluster.tolerance changed"));
}

/// OpenMetrics on `[metrics] listen`: state, members, owned buckets, heartbeat counters,
/// and the data plane's packet counters, which move when clients are served.
#[test]
fn metrics_endpoint() {
    if !require_root("metrics_endpoint") {
        return;
    }
    let world = World::build_with(ClusterMode::Multicast, 2, |_| HostSetup {
        rule: Some(format!(
            "{DEFAULT_RULE}\n[metrics]\nlisten = \"127.0.0.1:9102\"\n"
        )),
        ..HostSetup::default()
    });
    world.start_all();
    for (src, answer) in world.serve_all() {
        answer.unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    let scrape = || {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    world.hosts[0].ns.enter_current_thread().unwrap();
                    let mut stream = std::net::TcpStream::connect(("127.0.0.1", 9102)).unwrap();
                    stream
                        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    let mut text = String::new();
                    stream.read_to_string(&mut text).unwrap();
                    text
                })
                .join()
                .unwrap()
        })
    };
    let text = scrape();
    assert!(text.contains("application/openmetrics-text"), "{text}");
    for want in [
        "nlb_state{state=\"converged\"} 1",
        "nlb_members 2",
        "nlb_owned_buckets{rule=\"1\"} 128",
        "nlb_heartbeats_sent_total ",
        "nlb_heartbeats_received_total ",
        "nlb_convergences_total ",
        "nlb_heartbeats_dropped_total{reason=\"bad_tag\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"replay\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"malformed\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"foreign_cluster\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let accepted = text
        .lines()
        .find(|l| l.starts_with("nlb_dataplane_packets_total{rule=\"rule1 accept\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(accepted > 0, "no accepted packets counted:\n{text}");
}

/// `nlb lab` tells the whole story and leaves nothing behind.
#[test]
fn the_lab_plays_the_story_and_cleans_up() {
    if !require_root("the_lab_plays_the_story_and_cleans_up") {
        return;
    }
    let out = Command::new(nlb()).arg("lab").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for milestone in [
        "converged in",
        "every one answered by exactly one host",
        "lladdr 03:bf:c6:12:00:0a",
        "took over host 3's clients",
        "0 failed",
        "rejoined",
        "nlb drainstop on host 2",
        "drainstop under load   0 of",
        "nlb cluster 198.18.0.10: multicast mode, 3 hosts",
        // The doctor, watching the client's port all along, finds nothing wrong.
        "0 errors, 0 warnings",
        "removing the namespaces",
    ] {
        assert!(
            text.contains(milestone),
            "missing {milestone:?} in:\n{text}"
        );
    }
    let prefix = text
        .split("network namespaces ")
        .nth(1)
        .and_then(|rest| rest.split('*').next())
        .unwrap()
        .to_owned();
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&prefix));
}

/// The control socket is root's alone, or root's and a configured group's.
#[test]
fn control_socket_permissions() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !require_root("control_socket_permissions") {
        return;
    }
    // `nogroup` exists on Debian; the test creates no group of its own.
    let Some(group) = nix::unistd::Group::from_name("nogroup").ok().flatten() else {
        eprintln!("control_socket_permissions: no group named nogroup here; skipped");
        return;
    };
    let world = World::build_with(ClusterMode::Multicast, 2, |id| HostSetup {
        host_extra: (id == 2).then(|| "control_group = \"nogroup\"".to_owned()),
        ..HostSetup::default()
    });
    world.wait_for("the daemons", Duration::from_secs(10), |w| {
        (0..2).all(|i| w.ctl(i, "query").is_some())
    });
    let root_only = std::fs::metadata(&world.hosts[0].socket).unwrap();
    assert_eq!(root_only.permissions().mode() & 0o777, 0o600);
    let shared = std::fs::metadata(&world.hosts[1].socket).unwrap();
    assert_eq!(shared.permissions().mode() & 0o777, 0o660);
    assert_eq!(shared.gid(), group.gid.as_raw());
}

/// `nlb run` as an ordinary user says it needs root.
#[test]
fn run_without_root_says_so() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("run_without_root_says_so") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nlb.toml");
    std::fs::write(
        &config,
        "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\ninsecure_no_key = true\n[host]\nid = 1\n",
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            nlb(),
            "run",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs root") && stderr.contains("sudo"),
        "{stderr}"
    );
}

/// Sends `signal` to host `index`'s daemon.
fn signal_daemon(world: &World, index: usize, signal: nix::sys::signal::Signal) {
    let daemon = world.hosts[index].daemon.as_ref().expect("daemon runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), signal).unwrap();
}

/// The log lines of host `index` from the `skip`-th on.
fn log_lines_from(world: &World, index: usize, skip: usize) -> Vec<String> {
    world
        .log(index)
        .lines()
        .skip(skip)
        .map(str::to_owned)
        .collect()
}

/// 12. A paused daemon (SIGSTOP, as a frozen VM or a swap storm would) comes back as a
///     joiner: in a 2-host and a 3-host cluster under a new connection every 10 ms, for
///     pauses below the lease, between the lease and the failure window, and well past
///     it. The paused host owns nothing from the moment it notices its stall until it
///     has installed a view with every other host, and no client request fails.
#[test]
fn a_paused_daemon_rejoins_as_a_joiner() {
    if !require_root("a_paused_daemon_rejoins_as_a_joiner") {
        return;
    }
    use nix::sys::signal::Signal;
    for hosts in [2u8, 3] {
        let world = World::build(ClusterMode::Multicast, hosts);
        world.start_all();
        let all: Vec<usize> = (0..usize::from(hosts)).collect();
        let victim = usize::from(hosts) - 1;
        let load = Load::start(&world, &[]);
        std::thread::sleep(Duration::from_millis(300));
        // The lease and stall threshold are 75 ms, the failure window 150 ms.
        let mut paused_at = Vec::new();
        // A pause costs new connections two short gaps, as any failover and hand-back
        // does today (issue 16): from the lease's end to the takeover, and at the
        // hand-back when the host rejoins. A client whose SYN falls in one retries 1 s
        // later; pauses are spaced so that the retry never meets the next gap (1000 ms
        // would put the rejoin about 1 s after the first gap), which is what a 3 s
        // connect timeout could not survive.
        for pause_ms in [40u64, 110, 300, 1500] {
            let skip = world.log(victim).lines().count();
            paused_at.push((pause_ms, Instant::now()));
            signal_daemon(&world, victim, Signal::SIGSTOP);
            // The pause itself: the daemon must not run for this long.
            std::thread::sleep(Duration::from_millis(pause_ms));
            signal_daemon(&world, victim, Signal::SIGCONT);
            world.wait_converged(&all);
            let lines = log_lines_from(&world, victim, skip);
            let stalled = lines.iter().position(|l| l.contains("nlb.stalled"));
            if pause_ms >= 100 {
                let stalled = stalled.unwrap_or_else(|| {
                    panic!(
                        "{hosts} hosts, {pause_ms} ms: no stall noticed:\n{}",
                        lines.join("\n")
                    )
                });
                // From the stall on, the first claim comes with a view of everyone: no
                // view without them before it, and the full view installed in the same
                // step (a step logs its ownership, then its events) or before.
                let members: Vec<String> = all.iter().map(|i| (i + 1).to_string()).collect();
                let full = format!("members={{{}}}", members.join(", "));
                let after = &lines[stalled..];
                if let Some(claim) = after
                    .iter()
                    .position(|l| l.contains("nlb.ownership") && !l.contains("owned=[0, 0]"))
                {
                    let step_end = after[claim + 1..]
                        .iter()
                        .position(|l| l.contains("nlb.ownership"))
                        .map_or(after.len(), |p| claim + 1 + p);
                    let views: Vec<&String> = after[..step_end]
                        .iter()
                        .filter(|l| l.contains("nlb.view_installed"))
                        .collect();
                    assert!(
                        !views.is_empty() && views.iter().all(|l| l.contains(&full)),
                        "{hosts} hosts, {pause_ms} ms: claimed before a view with everyone:\n{}",
                        lines.join("\n")
                    );
                }
            } else {
                assert!(stalled.is_none(), "{pause_ms} ms is within the lease");
            }
            // Spacing, not waiting for an event: SYNs that met this pause's gaps are
            // retried (after 1 s) before the next pause begins.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let (attempts, _) = load.finish();
        let failed: Vec<_> = attempts.iter().filter(|a| a.answer.is_err()).collect();
        for a in &failed {
            let since: Vec<String> = paused_at
                .iter()
                .map(|(ms, at)| {
                    format!(
                        "{ms}ms pause {:?}",
                        a.started.saturating_duration_since(*at)
                    )
                })
                .collect();
            eprintln!("failed request started after: {since:?} took {:?}", a.took);
        }
        eprintln!(
            "paused daemon, {hosts} hosts: {} connections, {} failed",
            attempts.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{hosts} hosts: {} of {} requests failed, first {:?}",
            failed.len(),
            attempts.len(),
            failed.first().map(|a| &a.answer)
        );
    }
}
