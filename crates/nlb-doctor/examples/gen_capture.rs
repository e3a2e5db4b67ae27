//! Writes a large synthetic ARP capture for benchmarking the doctor, in one of several
//! shapes: an ordinary network with every anomaly mixed in, and networks where most
//! frames are anomalies (the doctor's speed must not depend on how sick the network is).
//!
//! `cargo run --release -p nlb-doctor --example gen_capture -- OUT.pcap [FRAMES] [SHAPE]`
//!
//! Deterministic (a fixed-seed xorshift), so a run is reproducible. 2,000 hosts,
//! 198.18.0.1 upwards, MACs 52:54:00:00:xx:xx; 5,000 frames a second. Shapes:
//! - `ordinary` (the default): mostly requests answered, and
//!   - duplicate IPs 198.18.200.1..=20: an impostor MAC answers every request too;
//!   - dead IPs 198.18.201.1..=10: asked for, never answered;
//!   - 198.18.0.66's MAC storms 60 requests within 6 ms every 200,000 frames;
//!   - probes for free addresses in 198.19.0.0/16, announcements from ordinary hosts;
//!   - unicast cluster MAC 02:bf:c6:12:fa:0a (VIP 198.18.250.10) as an Ethernet source
//!     now and then;
//!   - about 0.1% malformed ARP frames (bad hardware type);
//! - `unanswered`: requests to random targets among 8,000 addresses of which only the
//!   2,000 hosts answer (three quarters go unanswered), 5% replies nobody asked for, and
//!   a duplicate claim (198.18.200.x, an impostor's reply) every 5,000 frames;
//! - `unsolicited`: 80% replies nobody asked for, from any host to any host, the rest
//!   ordinary exchanges;
//! - `flapping`: 500 addresses (198.18.210.0/23) each claimed in turn by two MACs,
//!   A → B → A, in replies to ordinary hosts' requests, half the frames; ordinary
//!   exchanges otherwise;
//! - `storms`: 300 sources (198.18.0.1..=300) each bursting 40 requests within 4 ms
//!   (over the 30-in-100-ms threshold) at dead addresses (a scan of its own 160
//!   addresses from 198.20.0.0), one burst after another, 20 ordinary exchanges between
//!   bursts;
//! - `vlans`: the `ordinary` traffic on 500 802.1Q VLANs: host `i` is on VLAN
//!   2 + `i` % 500 (4 hosts a VLAN) and asks the hosts of its VLAN, and the anomalies
//!   happen on the VLAN of the host that meets them.

use nlb_doctor::capture::PcapWriter;
use nlb_wire::MacAddr;
use nlb_wire::arp::ArpRepr;
use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;

const HOSTS: u32 = 2_000;
/// VLANs of the `vlans` shape: host `i` is on VLAN 2 + `i` % 500.
const VLANS: u32 = 500;
const SHAPES: [&str; 6] = [
    "ordinary",
    "unanswered",
    "unsolicited",
    "flapping",
    "storms",
    "vlans",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn host_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn host_mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x52, 0x54, 0x00, b[1], b[2], b[3]])
}

/// The VLAN of host `i` in the `vlans` shape.
fn home_vlan(i: u32) -> u16 {
    (2 + i % VLANS) as u16
}

fn impostor(k: u32) -> MacAddr {
    MacAddr([0x02, 0x66, 0, 0, 0, k as u8])
}

/// The capture being written: the clock, the frame count, the file.
struct Out {
    pcap: PcapWriter<BufWriter<File>>,
    rng: Rng,
    ts: i64,
    written: u64,
    /// The VLAN of the frames being written (the `vlans` shape sets it per exchange).
    vlan: Option<u16>,
}

impl Out {
    fn emit(&mut self, repr: &ArpRepr, src: MacAddr) -> std::io::Result<()> {
        self.written += 1;
        self.pcap.write(self.ts, &repr.to_frame(src, self.vlan))
    }

    fn emit_raw(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.written += 1;
        self.pcap.write(self.ts, frame)
    }

    /// Moves the clock on by one frame's share of 5,000 frames a second.
    fn tick(&mut self) {
        self.ts += 200_000;
    }

    /// A request from one random host to another (on its VLAN, if hosts have one), and
    /// its reply 50 µs later.
    fn exchange(&mut self, asker: u32) -> std::io::Result<()> {
        let target = if self.vlan.is_some() {
            // The hosts of one VLAN: asker % VLANS, + VLANS, + 2 × VLANS, ...
            let others = HOSTS / VLANS - 1;
            (asker + VLANS * (1 + self.rng.below(others))) % HOSTS
        } else {
            let target = self.rng.below(HOSTS);
            if target == asker {
                (target + 1) % HOSTS
            } else {
                target
            }
        };
        let request = ArpRepr::request(host_mac(asker), host_ip(asker), host_ip(target));
        self.emit(&request, host_mac(asker))?;
        self.ts += 50_000;
        let reply = ArpRepr::reply_to(&request, host_mac(target), host_ip(target));
        self.emit(&reply, host_mac(target))
    }

    /// A reply from one random host to another that nobody asked for.
    fn unsolicited(&mut self) -> std::io::Result<()> {
        let from = self.rng.below(HOSTS);
        let to = (from + 1 + self.rng.below(HOSTS - 1)) % HOSTS;
        let asked = ArpRepr::request(host_mac(to), host_ip(to), host_ip(from));
        let reply = ArpRepr::reply_to(&asked, host_mac(from), host_ip(from));
        self.emit(&reply, host_mac(from))
    }

    /// A request for duplicate IP 198.18.200.`k` answered by its owner and an impostor.
    fn duplicate(&mut self, asker: u32, k: u32) -> std::io::Result<()> {
        let ip = Ipv4Addr::new(198, 18, 200, k as u8);
        let owner = MacAddr([0x52, 0x54, 0x01, 0, 0, k as u8]);
        let request = ArpRepr::request(host_mac(asker), host_ip(asker), ip);
        self.emit(&request, host_mac(asker))?;
        for mac in [owner, impostor(k)] {
            self.ts += 50_000;
            self.emit(&ArpRepr::reply_to(&request, mac, ip), mac)?;
        }
        Ok(())
    }
}

/// The `ordinary` shape, one step (the `vlans` shape sets a VLAN first).
fn ordinary(out: &mut Out) -> std::io::Result<()> {
    out.tick();
    let asker = out.rng.below(HOSTS);
    let roll = out.rng.below(1000);
    if out.vlan.is_some() {
        out.vlan = Some(home_vlan(asker));
    }
    if out.written.is_multiple_of(200_000) && out.written > 0 {
        // A storm: 60 requests within 6 ms from one source.
        let source = 65; // 198.18.0.66
        if out.vlan.is_some() {
            out.vlan = Some(home_vlan(source));
        }
        let start = out.ts;
        for k in 0..60 {
            out.ts = start + k * 100_000;
            let target = Ipv4Addr::new(198, 18, 202, k as u8 + 1);
            out.emit(
                &ArpRepr::request(host_mac(source), host_ip(source), target),
                host_mac(source),
            )?;
        }
        out.ts = start + 6_000_000;
        return Ok(());
    }
    match roll {
        0 => {
            // Malformed: hardware type 6 is fine, 0x0300 is not.
            let mut frame = ArpRepr::request(host_mac(asker), host_ip(asker), host_ip(1))
                .to_frame(host_mac(asker), out.vlan);
            frame[if out.vlan.is_some() { 18 } else { 14 }] = 3;
            out.emit_raw(&frame)
        }
        1 => {
            let candidate = Ipv4Addr::new(
                198,
                19,
                out.rng.below(250) as u8,
                out.rng.below(250) as u8 + 1,
            );
            out.emit(&ArpRepr::probe(host_mac(asker), candidate), host_mac(asker))
        }
        2 => out.emit(
            &ArpRepr::announcement(host_mac(asker), host_ip(asker)),
            host_mac(asker),
        ),
        3 => {
            let cluster: MacAddr = "02:bf:c6:12:fa:0a".parse().expect("a MAC");
            let vip = Ipv4Addr::new(198, 18, 250, 10);
            let request = ArpRepr::request(host_mac(asker), host_ip(asker), vip);
            out.emit(&ArpRepr::reply_to(&request, cluster, vip), cluster)
        }
        4..=13 => {
            let dead = Ipv4Addr::new(198, 18, 201, out.rng.below(10) as u8 + 1);
            out.emit(
                &ArpRepr::request(host_mac(asker), host_ip(asker), dead),
                host_mac(asker),
            )
        }
        14..=33 => {
            let k = out.rng.below(20) + 1;
            out.duplicate(asker, k)
        }
        _ => out.exchange(asker),
    }
}

/// The `unanswered` shape, one step.
fn unanswered(out: &mut Out) -> std::io::Result<()> {
    out.tick();
    let asker = out.rng.below(HOSTS);
    if out.written % 5_000 < 3 && out.written >= 5_000 {
        let k = (out.written / 5_000 % 20) as u32 + 1;
        return out.duplicate(asker, k);
    }
    match out.rng.below(100) {
        0..=4 => out.unsolicited(),
        _ => {
            // 8,000 addresses from 198.18.0.1: the first 2,000 are the hosts.
            let target = out.rng.below(4 * HOSTS);
            if target < HOSTS && target != asker {
                out.exchange(asker)
            } else {
                let request = ArpRepr::request(host_mac(asker), host_ip(asker), host_ip(target));
                out.emit(&request, host_mac(asker))
            }
        }
    }
}

/// The `unsolicited` shape, one step.
fn unsolicited(out: &mut Out) -> std::io::Result<()> {
    out.tick();
    if out.rng.below(10) < 8 {
        out.unsolicited()
    } else {
        let asker = out.rng.below(HOSTS);
        out.exchange(asker)
    }
}

/// The `flapping` shape, one step.
fn flapping(out: &mut Out) -> std::io::Result<()> {
    out.tick();
    let asker = out.rng.below(HOSTS);
    if out.rng.below(2) == 0 {
        return out.exchange(asker);
    }
    let k = out.rng.below(500);
    let ip = Ipv4Addr::new(198, 18, 210 + (k / 250) as u8, (k % 250 + 1) as u8);
    // The two MACs take turns: which one answers is random, so most answers move the
    // address (A → B), and many move it back (B → A).
    let mac = MacAddr([
        0x52,
        0x54,
        0x02,
        (k >> 8) as u8,
        k as u8,
        out.rng.below(2) as u8,
    ]);
    let request = ArpRepr::request(host_mac(asker), host_ip(asker), ip);
    out.emit(&request, host_mac(asker))?;
    out.ts += 50_000;
    out.emit(&ArpRepr::reply_to(&request, mac, ip), mac)
}

/// The `storms` shape, one step: a burst, then a few ordinary exchanges.
fn storms(out: &mut Out, burst: &mut u32) -> std::io::Result<()> {
    let (source, round) = (*burst % 300, *burst / 300 % 4);
    *burst += 1;
    let start = out.ts;
    for k in 0..40u32 {
        out.ts = start + i64::from(k) * 100_000;
        // Each source scans its own 160 dead addresses from 198.20.0.0, 40 a burst.
        let target = Ipv4Addr::from(0xc614_0000 + (source * 4 + round) * 40 + k);
        out.emit(
            &ArpRepr::request(host_mac(source), host_ip(source), target),
            host_mac(source),
        )?;
    }
    out.ts = start + 4_000_000;
    for _ in 0..20 {
        out.tick();
        let asker = out.rng.below(HOSTS);
        out.exchange(asker)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!(
            "usage: gen_capture OUT.pcap [FRAMES] [{}]",
            SHAPES.join("|")
        );
        std::process::exit(2)
    };
    let frames: u64 = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000_000);
    let shape = args.get(2).map_or("ordinary", String::as_str);
    if !SHAPES.contains(&shape) {
        eprintln!("unknown shape {shape}: one of {}", SHAPES.join(", "));
        std::process::exit(2)
    }
    let file = File::create(path)?;
    let mut out = Out {
        pcap: PcapWriter::new(BufWriter::with_capacity(1 << 20, file), 1, 262_144)?,
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        ts: 1_700_000_000 * 1_000_000_000,
        written: 0,
        vlan: (shape == "vlans").then_some(home_vlan(0)),
    };
    let mut burst = 0;
    while out.written < frames {
        match shape {
            "unanswered" => unanswered(&mut out)?,
            "unsolicited" => unsolicited(&mut out)?,
            "flapping" => flapping(&mut out)?,
            "storms" => storms(&mut out, &mut burst)?,
            "vlans" => ordinary(&mut out)?,
            _ => ordinary(&mut out)?,
        }
    }
    out.pcap.finish()?;
    eprintln!("wrote {} {shape} frames to {path}", out.written);
    Ok(())
}
