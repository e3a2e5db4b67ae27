//! `nlb watch` on a real segment: a bridge and four namespaces. Real kernels announce
//! one address from two hosts and ask for one that nobody has; the watcher, on a fifth
//! port that takes part in nothing, reports both as they happen, prints its summary on
//! SIGINT, and has sent nothing (its interface's transmit counter does not move). Tagged
//! frames keep their VLAN: the kernel strips the tag, the watcher puts it back.

use nlb_lab::segment::Segment;
use nlb_linux::netns::{require_root, unique_name};
use nlb_linux::packet::PacketSocket;
use nlb_wire::MacAddr;
use nlb_wire::arp::ArpRepr;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn tx_packets(segment: &Segment, host: usize) -> u64 {
    segment.hosts[host]
        .exec("cat", &["/sys/class/net/eth0/statistics/tx_packets"], None)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Kills the watcher if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a finding of `kind`, up to `timeout`; findings of other kinds may come first.
fn next_finding(lines: &mpsc::Receiver<Value>, kind: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let finding = next_event(lines, "finding", left);
        if finding["finding"]["kind"] == kind {
            return finding["finding"].clone();
        }
    }
}

/// Waits for the next JSON line whose "event" is `event`, up to `timeout`.
fn next_event(lines: &mpsc::Receiver<Value>, event: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {event} event within {timeout:?}"));
        if line["event"] == event {
            return line;
        }
    }
}

/// Starts `nlb watch eth0 --json` on host `watcher`; returns it and its JSON lines, once
/// it is watching.
fn start_watch(segment: &Segment, watcher: usize) -> (KillOnDrop, mpsc::Receiver<Value>) {
    let mut child = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", segment.hosts[watcher].name()])
            .args([env!("CARGO_BIN_EXE_nlb"), "watch", "eth0", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON: {line}: {err}"));
            if send.send(value).is_err() {
                break;
            }
        }
    });
    next_event(&lines, "watching", Duration::from_secs(10));
    (child, lines)
}

/// Stops the watcher with SIGINT and returns its summary event.
fn stop_watch(child: &mut KillOnDrop, lines: &mpsc::Receiver<Value>) -> Value {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let summary = next_event(lines, "summary", Duration::from_secs(10));
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    summary
}

#[test]
fn watch_reports_live_and_sends_nothing() {
    if !require_root("watch_reports_live_and_sends_nothing") {
        return;
    }
    let segment = Segment::build(&unique_name("nlbw"), 3, 0, false).unwrap();
    let watcher = 2;
    // The watcher must stay silent on its own: no IPv6 (router solicitations, DAD).
    segment.hosts[watcher]
        .exec("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"], None)
        .unwrap();
    segment.hosts[watcher]
        .exec(
            "sysctl",
            &["-qw", "net.ipv6.conf.eth0.disable_ipv6=1"],
            None,
        )
        .unwrap();
    let tx_before = tx_packets(&segment, watcher);
    let (mut child, lines) = start_watch(&segment, watcher);

    // 198.18.0.50 on hosts 1 and 2; each announces it (iputils arping -U), host 1 twice.
    for host in [0, 1] {
        segment.hosts[host]
            .ip(&["addr", "add", "198.18.0.50/32", "dev", "eth0"])
            .unwrap();
    }
    for host in [0, 1, 0] {
        segment.hosts[host]
            .exec(
                "arping",
                &[
                    "-U",
                    "-c",
                    "1",
                    "-I",
                    "eth0",
                    "-s",
                    "198.18.0.50",
                    "198.18.0.50",
                ],
                None,
            )
            .unwrap();
    }
    let duplicate = next_finding(&lines, "duplicate_ip", Duration::from_secs(10));
    assert_eq!(duplicate["ip"], "198.18.0.50");
    assert_eq!(duplicate["macs"].as_array().unwrap().len(), 2);

    // The client's kernel asks for an address nobody has: raised one second later.
    let ping = Command::new("ip")
        .args(["netns", "exec", segment.client.name()])
        .args(["ping", "-c", "1", "-W", "2", "198.18.0.250"])
        .output()
        .unwrap();
    assert!(!ping.status.success(), "nobody has 198.18.0.250");
    let unanswered = next_finding(&lines, "unanswered_request", Duration::from_secs(10));
    assert_eq!(unanswered["ip"], "198.18.0.250");

    // Tagged frames, as on a trunk (this kernel may lack 802.1Q interfaces, so they are
    // sent raw): 198.18.0.60 answers from one MAC on VLAN 10 and another on VLAN 20, which
    // is no duplicate; then a third MAC answers for it on VLAN 10, which is one.
    let asker = ArpRepr::request(
        "52:54:00:aa:aa:aa".parse().unwrap(),
        "198.18.0.99".parse().unwrap(),
        "198.18.0.60".parse().unwrap(),
    );
    let answers: [(&str, u16); 3] = [
        ("52:54:00:00:10:0a", 10),
        ("52:54:00:00:20:0b", 20),
        ("52:54:00:00:10:0c", 10),
    ];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            segment.client.enter_current_thread().unwrap();
            let socket = PacketSocket::bind("eth0").unwrap();
            for (mac, vlan) in answers {
                let mac: MacAddr = mac.parse().unwrap();
                let reply = ArpRepr::reply_to(&asker, mac, asker.target_ip);
                socket.send(&reply.to_frame(mac, Some(vlan))).unwrap();
            }
        });
    });
    let tagged = next_finding(&lines, "duplicate_ip", Duration::from_secs(10));
    assert_eq!(tagged["ip"], "198.18.0.60");
    assert_eq!(tagged["vlan"], 10, "{tagged}");

    let summary = stop_watch(&mut child, &lines);
    let findings = summary["findings"].as_array().unwrap();
    let of = |kind: &str| findings.iter().filter(|f| f["kind"] == kind).count();
    assert_eq!(of("duplicate_ip"), 2, "{summary:#}");
    let tagged: Vec<&Value> = findings
        .iter()
        .filter(|f| f["kind"] == "duplicate_ip" && f["ip"] == "198.18.0.60")
        .collect();
    assert_eq!(tagged.len(), 1, "{summary:#}");
    assert_eq!(tagged[0]["vlan"], 10);
    assert_eq!(of("ip_mac_flap"), 1, "{summary:#}");
    assert_eq!(of("unanswered_request"), 1, "{summary:#}");
    assert!(summary["capture"]["frames"].as_u64().unwrap() >= 5);
    assert_eq!(
        tx_packets(&segment, watcher),
        tx_before,
        "the watcher's interface sent something"
    );
}

/// The frames of a capture, with their times in ns.
fn capture_frames(name: &str) -> Vec<(i64, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nlb-doctor/tests/fixtures")
        .join(name);
    let file = std::fs::File::open(&path).unwrap();
    let mut reader = nlb_doctor::CaptureReader::new(file).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_with(|record| (record.ts_ns, record.data.to_vec())) {
        frames.push(frame);
    }
    frames
}

/// A host whose NIC damages its ARP frames, on a segment where two hosts with sequential
/// MACs hold one address: the frames of `arp-corrupted-nic-and-duplicates.pcap` (made by
/// real kernels and an nft corrupter, see the fixtures' EXPECTED.md) replayed onto a real
/// bridge, at their own pace. The watcher names the failing station as it happens, and
/// its summary ranks it first, keeps the real duplicate and lists no damaged copy as a
/// claimant.
#[test]
fn watch_tells_a_failing_nic_from_duplicate_hosts() {
    if !require_root("watch_tells_a_failing_nic_from_duplicate_hosts") {
        return;
    }
    let segment = Segment::build(&unique_name("nlbc"), 2, 0, false).unwrap();
    // No addresses on the segment, so that no kernel here answers the replayed frames.
    for ns in [&segment.client, &segment.hosts[0], &segment.hosts[1]] {
        ns.ip(&["addr", "flush", "dev", "eth0"]).unwrap();
    }
    let watcher = 1;
    let (mut child, lines) = start_watch(&segment, watcher);
    // Sent to broadcast: the bridge learns the capture's client MAC on the sending
    // port, and would not flood the replies to it to the watcher.
    let frames: Vec<(i64, Vec<u8>)> = capture_frames("arp-corrupted-nic-and-duplicates.pcap")
        .into_iter()
        .map(|(ts, mut bytes)| {
            bytes[..6].fill(0xff);
            (ts, bytes)
        })
        .collect();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            segment.client.enter_current_thread().unwrap();
            let socket = PacketSocket::bind("eth0").unwrap();
            let mut last = frames[0].0;
            for (ts, bytes) in &frames {
                let gap = (ts - last).clamp(0, 100_000_000) as u64;
                std::thread::sleep(Duration::from_nanos(gap));
                last = *ts;
                socket.send(bytes).unwrap();
            }
        });
    });
    let station = "52:54:00:00:00:01";
    let corruption = next_finding(&lines, "frame_corruption", Duration::from_secs(10));
    assert_eq!(corruption["macs"][0], station, "{corruption}");
    let summary = stop_watch(&mut child, &lines);
    let findings = summary["findings"].as_array().unwrap();
    assert_eq!(findings[0]["kind"], "frame_corruption", "{summary:#}");
    assert_eq!(findings[0]["details"]["station"], station, "{summary:#}");
    assert_eq!(findings[0]["ip"], "198.18.0.1", "{summary:#}");
    let duplicates: Vec<&Value> = findings
        .iter()
        .filter(|f| f["kind"] == "duplicate_ip")
        .collect();
    assert_eq!(duplicates.len(), 1, "{summary:#}");
    assert_eq!(duplicates[0]["ip"], "198.18.0.20");
    let mut macs: Vec<&str> = duplicates[0]["macs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    macs.sort();
    assert_eq!(macs, ["00:16:3e:00:00:aa", "00:16:3e:00:00:bb"]);
    assert!(
        findings
            .iter()
            .filter(|f| f["kind"] == "sender_mac_mismatch")
            .all(|f| f["ip"] != "198.18.0.1"),
        "{summary:#}"
    );
}
