//! The daemon's robustness on the real kernel: slow clients never stall the protocol
//! loop, the data plane fails closed and is repaired, the kernel state it depends on is
//! watched.
//!
//! Each test builds its own segment in network namespaces (198.18.0.0/15 only, a
//! [`common::World`] of keyed multicast hosts whose daemons start at once), and stops its
//! daemons and deletes its namespaces when it ends, failed or not.

mod common;

use common::{HostSetup, Setup, VIP, World, in_ns, nlb, scrape};
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The client's extra addresses in these tests.
const CLIENTS: u8 = 10;

/// A bridge, `hosts` hosts (daemons started, HTTP servers on the VIP), a client.
/// `extra` goes at the end of each host's configuration.
fn build(hosts: u8, extra: &str) -> World {
    build_full(hosts, extra, false, None)
}

/// As [`build`]; with `shared_run`, every daemon gets the same `--run-dir`; with
/// `path_first`, that directory comes first on the daemons' PATH.
fn build_full(hosts: u8, extra: &str, shared_run: bool, path_first: Option<PathBuf>) -> World {
    let setup = Setup {
        stopped: false,
        shared_run,
        path_first,
        converge_within: Duration::from_secs(15),
        ..Setup::new("nlbd", ClusterMode::Multicast, hosts, CLIENTS)
    };
    World::build(setup, |_| HostSetup {
        // One cluster key for every host, as an operator would deploy it (0600).
        key: Some(format!("{}\n", "5a".repeat(32)).into_bytes()),
        tail: Some(extra.to_owned()),
        ..HostSetup::default()
    })
}

/// Waits until every host is converged in one view of all of them.
fn wait_converged(world: &World) {
    world.wait_converged(&world.all());
}

/// Many idle and slow clients on the metrics port and the control socket: no failover,
/// and other queries are answered all along (the loop used to wait 2 s per client).
#[test]
fn slow_clients_stall_nothing() {
    if !require_root("slow_clients_stall_nothing") {
        return;
    }
    let world = build(2, "[metrics]\nlisten = \"127.0.0.1:9102\"\n");
    wait_converged(&world);
    let epoch = world.ctl(1, "query").unwrap()["view_epoch"].clone();
    let metrics_ns = &world.hosts[0].ns;
    let control_path = world.hosts[0].socket.clone();
    let end = Instant::now() + Duration::from_secs(4);
    std::thread::scope(|scope| {
        // 20 idle and 20 slow (one byte every 300 ms) clients on each endpoint.
        for slow in [false, true] {
            for _ in 0..20 {
                scope.spawn(move || {
                    in_ns(metrics_ns, || {
                        let mut stream = std::net::TcpStream::connect(("127.0.0.1", 9102)).unwrap();
                        for byte in b"GET /metrics HTTP/1.1\r\n" {
                            if Instant::now() > end {
                                break;
                            }
                            if slow {
                                let _ = stream.write_all(&[*byte]);
                            }
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    })
                });
                let path = control_path.clone();
                scope.spawn(move || {
                    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
                    for byte in b"query" {
                        if Instant::now() > end {
                            break;
                        }
                        if slow {
                            let _ = stream.write_all(&[*byte]);
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                });
            }
        }
        // Meanwhile every query and scrape is answered, promptly.
        let mut answered = 0;
        while Instant::now() < end {
            let asked = Instant::now();
            let query = world.ctl(0, "query");
            assert!(
                query.is_some_and(|q| q["ok"] == true),
                "query unanswered\n{}",
                world.logs()
            );
            let text = scrape(metrics_ns).unwrap_or_else(|e| panic!("scrape failed: {e}"));
            assert!(text.contains("nlb_members 2"), "{text}");
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "query and scrape took {:?}",
                asked.elapsed()
            );
            answered += 1;
        }
        assert!(answered >= 4, "only {answered} rounds answered");
    });
    // An idle client is cut off after the deadline.
    let cut = in_ns(metrics_ns, || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", 9102)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf);
        started.elapsed()
    });
    assert!(cut < Duration::from_secs(5), "idle client kept {cut:?}");
    world.assert_all_served();
    let logs = world.logs();
    assert!(!logs.contains("nlb.peer_down"), "a failover:\n{logs}");
    assert_eq!(
        world.ctl(1, "query").unwrap()["view_epoch"],
        epoch,
        "the view changed:\n{logs}"
    );
}

/// `nft flush ruleset` in a host's namespace (as `systemctl restart nftables` does): the
/// daemon notices (its lease refresh fails), fails closed, restores its tables, and the
/// cluster serves every client again.
#[test]
fn flushed_ruleset_is_restored() {
    if !require_root("flushed_ruleset_is_restored") {
        return;
    }
    let world = build(2, "");
    wait_converged(&world);
    world.assert_all_served();
    world.hosts[0]
        .ns
        .exec("nft", &["flush", "ruleset"], None)
        .unwrap();
    world.wait_for("the tables back", Duration::from_secs(5), |w| {
        let tables = w.hosts[0]
            .ns
            .exec("nft", &["list", "tables"], None)
            .unwrap_or_default();
        w.log(0).contains("nlb.dataplane_restored")
            && tables.contains("table arp nlb_eth0_")
            && tables.contains("table inet nlb_eth0_")
    });
    assert!(world.log(0).contains("nlb.dataplane_failed"));
    wait_converged(&world);
    world.wait_for("every bucket owned again", Duration::from_secs(5), |w| {
        (0..2)
            .filter_map(|i| w.ctl(i, "query"))
            .map(|q| q["owned_buckets"][0].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 256
    });
    world.assert_all_served();
    let query = world.ctl(0, "query").unwrap();
    assert_eq!(query["daemon"]["dataplane_healthy"], true, "{query}");
    assert!(query["daemon"]["lease_failures"].as_u64().unwrap() >= 1);
}

/// Two namespaces that share the run directory (plain `ip netns exec`, containers with
/// a shared `/run`): both daemons start, on the same interface name and cluster, and
/// form one cluster. A third daemon given a live control socket refuses to start.
#[test]
fn namespaces_sharing_run_both_start() {
    if !require_root("namespaces_sharing_run_both_start") {
        return;
    }
    let world = build_full(2, "", true, None);
    wait_converged(&world);
    world.assert_all_served();
    let third = Command::new("ip")
        .args([
            "netns",
            "exec",
            world.hosts[1].ns.name(),
            nlb(),
            "run",
            "--config",
        ])
        .arg(&world.hosts[1].config)
        .arg("--socket")
        .arg(&world.hosts[0].socket)
        .arg("--run-dir")
        .arg(world.dir.path().join("run-third"))
        .output()
        .unwrap();
    assert_eq!(third.status.code(), Some(1), "{third:?}");
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        stderr.contains("another nlb daemon answers on the control socket"),
        "{stderr}"
    );
    // Both are still there.
    wait_converged(&world);
}

/// Two clusters on one interface of one host: separate tables, both VIPs served, and
/// stopping one leaves the other's tables and VIP alone.
#[test]
fn two_clusters_on_one_interface() {
    if !require_root("two_clusters_on_one_interface") {
        return;
    }
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
    let mut world = build(1, "");
    wait_converged(&world);
    let socket2 = world.dir.path().join("h1b.sock");
    let config2 = world.dir.path().join("h1b.toml");
    std::fs::write(
        &config2,
        std::fs::read_to_string(&world.hosts[0].config)
            .unwrap()
            .replace(&VIP.to_string(), &VIP2.to_string())
            .replace(
                &world.hosts[0].socket.display().to_string(),
                &socket2.display().to_string(),
            ),
    )
    .unwrap();
    let ns = world.hosts[0].ns.name().to_owned();
    world.children.push(
        Command::new("ip")
            .args(["netns", "exec", &ns, nlb(), "serve-http", "--bind"])
            .arg(format!("{VIP2}:80"))
            .args(["--name", "host1b"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log2 = world.dir.path().join("h1b.log");
    let mut second = Command::new("ip")
        .args(["netns", "exec", &ns, nlb(), "run", "--config"])
        .arg(&config2)
        .arg("--run-dir")
        .arg(world.dir.path().join("run1"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log2).unwrap())
        .spawn()
        .unwrap();
    let query2 = || {
        Command::new(nlb())
            .args(["query", "--json", "--socket"])
            .arg(&socket2)
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<Value>(&out.stdout).ok())
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !query2().is_some_and(|q| q["state"] == "converged") {
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "the second cluster did not converge:\n{}",
                std::fs::read_to_string(&log2).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert_eq!(
        tables.matches("table inet nlb_eth0_").count(),
        2,
        "{tables}"
    );
    let served = |vip: Ipv4Addr| {
        world
            .serve_all_at(vip)
            .into_iter()
            .map(|(_, answer)| answer)
            .collect::<Result<Vec<_>, _>>()
    };
    assert!(served(VIP).is_ok(), "{}", world.logs());
    assert!(served(VIP2).is_ok());
    // Stop the second cluster: the first keeps its tables and is still served.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(second.wait().unwrap().success());
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert_eq!(
        tables.matches("table inet nlb_eth0_").count(),
        1,
        "{tables}"
    );
    assert!(served(VIP).is_ok(), "{}", world.logs());
    world.stop_daemon(0);
}

/// The interface's state is watched over netlink: a VIP removed by hand comes back, a
/// table deleted by hand comes back, down and up are logged, and a MAC change makes the
/// host rejoin with the new MAC.
#[test]
fn kernel_state_is_watched_and_repaired() {
    if !require_root("kernel_state_is_watched_and_repaired") {
        return;
    }
    let world = build(2, "");
    wait_converged(&world);
    let host = &world.hosts[0].ns;
    let vip = format!("{VIP}/32");
    host.ip(&["addr", "del", &vip, "dev", "eth0"]).unwrap();
    world.wait_for("the VIP back", Duration::from_secs(5), |w| {
        w.log(0).contains("nlb.vip_restored")
            && host
                .ip(&["-4", "addr", "show", "dev", "eth0"])
                .is_ok_and(|out| out.contains(&vip))
    });
    world.assert_all_served();

    let tables = host.exec("nft", &["list", "tables"], None).unwrap();
    let arp = tables
        .lines()
        .find_map(|line| line.strip_prefix("table arp "))
        .unwrap_or_else(|| panic!("no arp table: {tables}"))
        .to_owned();
    host.exec("nft", &["delete", "table", "arp", &arp], None)
        .unwrap();
    world.wait_for("the arp table back", Duration::from_secs(5), |w| {
        w.log(0).contains("nlb.tables_restored")
            && host
                .exec("nft", &["list", "table", "arp", &arp], None)
                .is_ok()
    });

    host.ip(&["link", "set", "eth0", "down"]).unwrap();
    world.wait_for("link down logged", Duration::from_secs(5), |w| {
        w.log(0).contains("nlb.link_down")
    });
    host.ip(&["link", "set", "eth0", "up"]).unwrap();
    world.wait_for("link up logged", Duration::from_secs(5), |w| {
        w.log(0).contains("nlb.link_up")
    });
    wait_converged(&world);

    host.ip(&["link", "set", "eth0", "address", "02:00:5e:10:00:99"])
        .unwrap();
    world.wait_for("the new MAC used", Duration::from_secs(10), |w| {
        w.log(0).contains("nlb.mac_changed")
            && w.ctl(1, "query").is_some_and(|q| {
                q["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["mac"] == "02:00:5e:10:00:99"))
            })
    });
    wait_converged(&world);
    world.assert_all_served();
}

/// The interface deleted: the daemon says so and exits non-zero (so that systemd's
/// Restart=on-failure restarts it), leaving no table behind; started again once the
/// interface is back, it serves.
#[test]
fn interface_deleted_daemon_exits_nonzero() {
    if !require_root("interface_deleted_daemon_exits_nonzero") {
        return;
    }
    let mut world = build(1, "");
    wait_converged(&world);
    let name = world.hosts[0].ns.name().to_owned();
    let switch = world.switch.name().to_owned();
    world.hosts[0].ns.ip(&["link", "del", "eth0"]).unwrap();
    let daemon = world.hosts[0].daemon.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            world.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    world.hosts[0].daemon = None;
    assert_eq!(status.code(), Some(1), "{}", world.logs());
    assert!(world.log(0).contains("was deleted"), "{}", world.logs());
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert!(!tables.contains("nlb_"), "{tables}");
    // The supervisor's part: the interface is back, the daemon is started again.
    let run = |args: &[&str]| {
        let status = Command::new("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    run(&[
        "-n", &switch, "link", "add", "p1", "type", "veth", "peer", "name", "eth0", "netns", &name,
    ]);
    run(&["-n", &switch, "link", "set", "p1", "master", "br0", "up"]);
    run(&["-n", &name, "addr", "add", "198.18.0.1/24", "dev", "eth0"]);
    run(&["-n", &name, "link", "set", "eth0", "up"]);
    world.start_daemon(0);
    wait_converged(&world);
    world.assert_all_served();
}

/// Fail closed: while nft fails on host 1 (an `nft` first on its PATH that refuses
/// while a flag file exists, and its tables flushed so that its lease refresh fails),
/// host 1 owns and announces nothing and keeps retrying; host 2 keeps its own share (the
/// map still names host 1 for the rest, so nobody claims them twice), and nobody
/// declares a failover. When nft works again, host 1 restores its tables and its share.
#[test]
fn failing_nft_fails_closed() {
    if !require_root("failing_nft_fails_closed") {
        return;
    }
    let fake = tempfile::tempdir().unwrap();
    let flag = fake.path().join("fail");
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nft installed");
    let script = fake.path().join("nft");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {} ]; then echo 'Error: injected failure' >&2; exit 1; fi\nexec {real} \"$@\"\n",
            flag.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let world = build_full(2, "", false, Some(fake.path().to_owned()));
    wait_converged(&world);
    let owned = |w: &World, i: usize| {
        w.ctl(i, "query")
            .map(|q| q["owned_buckets"][0].as_u64().unwrap_or(99))
    };
    std::fs::write(&flag, "").unwrap();
    world.hosts[0]
        .ns
        .exec("nft", &["flush", "ruleset"], None)
        .unwrap();
    world.wait_for("host 1 failing closed", Duration::from_secs(5), |w| {
        w.ctl(0, "query").is_some_and(|q| {
            q["daemon"]["dataplane_healthy"] == false && q["owned_buckets"][0] == 0
        })
    });
    // It stays closed while nft fails, and keeps retrying.
    let failures = |w: &World| {
        w.ctl(0, "query")
            .and_then(|q| q["daemon"]["nft_failures"].as_u64())
            .unwrap_or(0)
    };
    let before = failures(&world);
    world.wait_for("more retries", Duration::from_secs(5), |w| {
        failures(w) >= before + 2
    });
    assert_eq!(owned(&world, 0), Some(0));
    assert_eq!(owned(&world, 1), Some(128));
    assert!(world.log(0).contains("nlb.dataplane_failed"));
    std::fs::remove_file(&flag).unwrap();
    world.wait_for("host 1 back", Duration::from_secs(5), |w| {
        w.ctl(0, "query")
            .is_some_and(|q| q["daemon"]["dataplane_healthy"] == true)
            && owned(w, 0) == Some(128)
            && owned(w, 1) == Some(128)
    });
    world.assert_all_served();
    let logs = world.logs();
    assert!(!logs.contains("nlb.peer_down"), "a failover:\n{logs}");
}

/// CPU ticks (user + system) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A UDP flood through the VIP and to host 1's own address: the socket filter keeps it
/// away from the daemon (its CPU share is printed and bounded), and nobody fails over.
#[test]
fn flood_costs_the_daemon_nothing_and_fails_nothing_over() {
    if !require_root("flood_costs_the_daemon_nothing_and_fails_nothing_over") {
        return;
    }
    let world = build(2, "");
    wait_converged(&world);
    let pid = world.hosts[0].daemon.as_ref().unwrap().id();
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let rx = || {
        world.hosts[0]
            .ns
            .exec("cat", &["/sys/class/net/eth0/statistics/rx_packets"], None)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let (ticks, packets, started) = (cpu_ticks(pid), rx(), Instant::now());
    let sent = in_ns(&world.client, || {
        let socket = std::net::UdpSocket::bind("198.18.0.100:0").unwrap();
        let end = Instant::now() + Duration::from_secs(3);
        let mut sent = 0u64;
        while Instant::now() < end {
            for _ in 0..500 {
                for target in [(VIP, 9999), (Ipv4Addr::new(198, 18, 0, 1), 9999)] {
                    if socket.send_to(b"not for nlb", target).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        sent
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - ticks) as f64 / ticks_per_second / elapsed;
    let rate = (rx() - packets) as f64 / elapsed;
    println!(
        "flood: {sent} datagrams sent, {rate:.0} packets/s at host 1; daemon CPU {:.2}% of a core",
        cpu * 100.0
    );
    assert!(
        rate > 10_000.0,
        "the flood was too slow to show anything: {rate:.0}/s"
    );
    assert!(
        cpu < 0.10,
        "the daemon used {:.1}% of a core for {rate:.0} foreign packets/s",
        cpu * 100.0
    );
    world.assert_all_served();
    let logs = world.logs();
    assert!(!logs.contains("nlb.peer_down"), "a failover:\n{logs}");
}

/// Tables of the name nlb used before names carried the cluster (`nlb_eth0`), left by a
/// daemon killed before an upgrade, are removed when the daemon starts.
#[test]
fn legacy_tables_are_removed_at_start() {
    if !require_root("legacy_tables_are_removed_at_start") {
        return;
    }
    let mut world = build(1, "");
    wait_converged(&world);
    world.stop_daemon(0);
    world.hosts[0]
        .ns
        .nft(
            "table inet nlb_eth0 {\n\tchain pre {\n\t\ttype filter hook prerouting priority -150; policy accept;\n\t\tip daddr 198.18.0.10 drop\n\t}\n}\ntable arp nlb_eth0 {\n}\n",
        )
        .unwrap();
    world.start_daemon(0);
    wait_converged(&world);
    let tables = world.hosts[0]
        .ns
        .exec("nft", &["list", "tables"], None)
        .unwrap();
    assert!(!tables.contains("nlb_eth0\n"), "{tables}");
    world.assert_all_served();
}

/// Requests over the size limits are refused with a reason, and the daemon goes on.
#[test]
fn oversized_requests_are_refused() {
    if !require_root("oversized_requests_are_refused") {
        return;
    }
    let world = build(1, "[metrics]\nlisten = \"127.0.0.1:9102\"\n");
    wait_converged(&world);
    let mut stream = std::os::unix::net::UnixStream::connect(&world.hosts[0].socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&[b'x'; 5000]).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.contains("longer than 4096 bytes"), "{answer}");
    let status = in_ns(&world.hosts[0].ns, || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", 9102)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 20_000));
        request.extend_from_slice(b"\r\n\r\n");
        let _ = stream.write_all(&request);
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    });
    assert!(
        status.is_empty() || status.starts_with("HTTP/1.1 431"),
        "{status}"
    );
    assert!(world.ctl(0, "query").is_some_and(|q| q["ok"] == true));
    assert!(
        scrape(&world.hosts[0].ns)
            .unwrap()
            .contains("nlb_dataplane_healthy 1")
    );
}

/// One HTTP GET of `path` with `host` as Host on the metrics port inside `ns`: the status
/// line, the headers and the body.
fn http_get_as(ns: &nlb_linux::netns::NetNs, host: &str, path: &str) -> String {
    in_ns(ns, || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", 9102)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

/// The status page and its data on the metrics listener: the page loads only its own
/// assets under a strict policy, and `/status.json` shows every bucket of every rule with
/// its owner among the members, and the events that led there.
#[test]
fn the_status_page_shows_the_cluster() {
    if !require_root("the_status_page_shows_the_cluster") {
        return;
    }
    let world = build(2, "[metrics]\nlisten = \"127.0.0.1:9102\"\n");
    wait_converged(&world);
    let ns = &world.hosts[0].ns;
    let http_get_local = |ns, path| http_get_as(ns, "127.0.0.1:9102", path);
    // A page that rebinds its own name to this listener gets nothing (DNS rebinding).
    assert!(http_get_as(ns, "attacker.example:9102", "/status.json").starts_with("HTTP/1.1 421"));
    assert!(http_get_as(ns, "metrics.example", "/metrics").starts_with("HTTP/1.1 200"));
    let page = http_get_local(ns, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(page.contains("<script src=\"/status.js\""), "{page}");
    assert!(http_get_local(ns, "/status.js").contains("function refresh"));
    assert!(http_get_local(ns, "/nothing").starts_with("HTTP/1.1 404"));
    let answer = http_get_local(ns, "/status.json");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let status: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(status["host_id"], 1);
    let rules = status["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "the test rule and the fallback rule");
    let owners = rules[0]["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 256);
    let by_host = |id: u64| owners.iter().filter(|o| o.as_u64() == Some(id)).count();
    assert_eq!(by_host(1) + by_host(2), 256, "{owners:?}");
    assert!(by_host(1) > 100 && by_host(2) > 100);
    let events: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(events.contains(&"nlb.view_installed"), "{events:?}");
    assert!(events.contains(&"nlb.converged"), "{events:?}");
}

/// The status page as a browser renders it: headless Chromium (Debian's `chromium`,
/// which `.ci/run` installs), inside a host's namespace, runs the page's script against
/// the live daemon; the DOM it ends with lists both members and draws every bucket.
#[test]
fn the_status_page_renders_in_chromium() {
    if !require_root("the_status_page_renders_in_chromium") {
        return;
    }
    let world = build(2, "[metrics]\nlisten = \"127.0.0.1:9102\"\n");
    wait_converged(&world);
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            world.hosts[0].ns.name(),
            "nice",
            "-n",
            "19",
        ])
        .args(["chromium", "--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=3000", "--dump-dom"])
        .arg("http://127.0.0.1:9102/")
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs (apt-get install chromium)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the script never drew:\n{dom}"
    );
    assert!(dom.contains("1 (this host)"), "{dom}");
    // Both members' rows, each converged, with their own MAC.
    for host in &world.hosts {
        let mac = host.ns.ip(&["-br", "link", "show", "eth0"]).unwrap();
        let mac = mac.split_whitespace().nth(2).unwrap_or_default().to_owned();
        assert!(
            dom.contains(&mac),
            "host {} ({mac}) missing:\n{dom}",
            host.id
        );
    }
    // The summary and both members' rows.
    assert!(dom.matches(">converged<").count() >= 3, "{dom}");
    let cells = dom.matches("<i ").count() + dom.matches("<i>").count();
    assert!(cells >= 256, "{cells} bucket cells drawn:\n{dom}");
    assert!(!dom.contains("cannot reach the daemon"), "{dom}");
}
