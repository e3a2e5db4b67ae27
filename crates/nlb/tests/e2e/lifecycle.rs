//! The daemon's life cycle: one per interface, leftovers of a killed one, a clean exit,
//! systemd notifications and reloads, the control socket's permissions, and root.

use crate::common::{HostSetup, VIP, World, nlb};
use crate::{world, world_with};
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use std::process::Command;
use std::time::Duration;

/// The daemon's life cycle: a second daemon on the same interface and cluster is refused
/// with a clear message; a killed daemon's leftovers are replaced by the next start; a
/// terminated daemon removes its tables and its VIP.
#[test]
fn one_daemon_per_interface_reconcile_and_clean_exit() {
    if !require_root("one_daemon_per_interface_reconcile_and_clean_exit") {
        return;
    }
    let mut world = world(ClusterMode::Multicast, 2);
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
    world.kill_daemon(0);
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

/// systemd integration: READY=1 and watchdog pings on `$NOTIFY_SOCKET`; SIGHUP reloads
/// a changed weight without a restart and refuses a change to the cluster-wide part.
#[test]
fn systemd_notifications_and_reload() {
    if !require_root("systemd_notifications_and_reload") {
        return;
    }
    let mut world = world(ClusterMode::Multicast, 2);
    // Host 1's daemon runs under a fake systemd.
    world.kill_daemon(0);
    let notify_path = world.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    world.hosts[0].daemon = Some(
        world
            .daemon_command(0)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000")
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
    let pid = world.hosts[0].pid();
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
        world.signal_daemon(index, nix::sys::signal::Signal::SIGHUP);
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
    let world = world_with(ClusterMode::Multicast, 2, |id| HostSetup {
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
