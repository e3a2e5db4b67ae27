//! The daemon's incarnation on the wire comes from the counter in its run directory: a
//! counter ahead of the clock (as after the clock stepped back) is continued, not
//! replaced by the clock, and every restart adds one.
//!
//! One host in a namespace segment runs `nlb run`; the client's port captures its
//! heartbeats. Skipped without root or with `NLB_SKIP_NETNS=1`.

use nlb_lab::segment::{Segment, inside};
use nlb_linux::netns::{require_root, unique_name};
use nlb_linux::packet::PacketSocket;
use nlb_wire::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::heartbeat::HeartbeatPacket;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon, stopped with SIGTERM when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// The incarnation in the first heartbeat of host 1 seen on the client's port.
fn incarnation_on_the_wire(segment: &Segment) -> u32 {
    inside(&segment.client, || {
        let socket = PacketSocket::bind("eth0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "no heartbeat from host 1");
            let Ok(len) = socket.recv(&mut buf, Duration::from_millis(500)) else {
                continue;
            };
            let Ok(frame) = EthernetFrame::parse(&buf[..len]) else {
                continue;
            };
            if frame.ethertype != ETHERTYPE_NLB_HEARTBEAT {
                continue;
            }
            if let Ok(packet) = HeartbeatPacket::new_checked(frame.payload)
                && packet.host_id() == 1
            {
                return packet.incarnation();
            }
        }
    })
    .unwrap()
}

#[test]
fn a_counter_ahead_of_the_clock_is_continued_across_restarts() {
    if !require_root("a_counter_ahead_of_the_clock_is_continued_across_restarts") {
        return;
    }
    let segment = Segment::build(&format!("nlbi{}", unique_name("")), 1, 0, false).unwrap();
    let host = &segment.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = dir.path().join("h1.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\ninsecure_no_key = true\n[host]\nid = 1\ncontrol_socket = \"{}\"\n",
            dir.path().join("h1.sock").display()
        ),
    )
    .unwrap();
    // The counter file of this interface and cluster in the host's namespace (whose
    // inode the bind mount under /run/netns shares), set a day ahead of the clock: what
    // a host sees after its clock stepped back by a day.
    let netns = std::fs::metadata(format!("/run/netns/{}", host.name()))
        .unwrap()
        .ino();
    let cluster_id = nlb_wire::addressing::cluster_id(&["198.18.0.10".parse().unwrap()]);
    std::fs::create_dir_all(&run_dir).unwrap();
    let counter = run_dir.join(format!("eth0-{cluster_id:08x}-{netns}.incarnation"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let ahead = now + 86_400;
    std::fs::write(&counter, format!("{ahead}\n")).unwrap();

    for restart in 1..=2 {
        let log = dir.path().join(format!("h1-{restart}.log"));
        let daemon = Daemon(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    host.name(),
                    env!("CARGO_BIN_EXE_nlb"),
                    "run",
                ])
                .arg("--config")
                .arg(&config)
                .arg("--run-dir")
                .arg(&run_dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let seen = incarnation_on_the_wire(&segment);
        assert_eq!(
            seen,
            ahead + restart,
            "start {restart}: log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap().trim(),
            (ahead + restart).to_string()
        );
        drop(daemon);
    }
}
