//! Writes a large synthetic capture for benchmarking the doctor: mostly ordinary ARP
//! traffic among 2,000 hosts, with every ARP anomaly mixed in at known addresses.
//!
//! `cargo run --release -p nlb-doctor --example gen_capture -- OUT.pcap [FRAMES]`
//!
//! Deterministic (a fixed-seed xorshift), so a run is reproducible. Known anomalies:
//! - duplicate IPs 198.18.200.1..=20: an impostor MAC answers every request too;
//! - dead IPs 198.18.201.1..=10: asked for, never answered;
//! - 198.18.0.66's MAC storms 60 requests within 6 ms every 200,000 frames;
//! - probes for free addresses in 198.19.0.0/16, announcements from ordinary hosts;
//! - unicast cluster MAC 02:bf:c6:12:fa:0a (VIP 198.18.250.10) as an Ethernet source now and then;
//! - about 0.1% malformed ARP frames (bad hardware type).

use nlb_doctor::capture::PcapWriter;
use nlb_wire::MacAddr;
use nlb_wire::arp::ArpRepr;
use std::io::BufWriter;
use std::net::Ipv4Addr;

const HOSTS: u32 = 2_000;

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

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        eprintln!("usage: gen_capture OUT.pcap [FRAMES]");
        std::process::exit(2)
    });
    let frames: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000_000);
    let file = std::fs::File::create(&path)?;
    let mut out = PcapWriter::new(BufWriter::with_capacity(1 << 20, file), 1, 262_144)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts: i64 = 1_700_000_000 * 1_000_000_000;
    let mut written = 0u64;
    let impostor = |k: u32| MacAddr([0x02, 0x66, 0, 0, 0, k as u8]);
    let mut emit = |ts: i64, frame: &[u8], written: &mut u64| -> std::io::Result<()> {
        *written += 1;
        out.write(ts, frame)
    };
    while written < frames {
        ts += 200_000; // 5,000 frames a second
        let asker = rng.below(HOSTS);
        let roll = rng.below(1000);
        if written.is_multiple_of(200_000) && written > 0 {
            // A storm: 60 requests within 6 ms from one source.
            let source = 65; // 198.18.0.66
            for k in 0..60 {
                let target = Ipv4Addr::new(198, 18, 202, k as u8 + 1);
                let request = ArpRepr::request(host_mac(source), host_ip(source), target);
                emit(
                    ts + k * 100_000,
                    &request.to_frame(host_mac(source), None),
                    &mut written,
                )?;
            }
            ts += 6_000_000;
            continue;
        }
        match roll {
            0 => {
                // Malformed: hardware type 6 is fine, 0x0300 is not.
                let mut frame = ArpRepr::request(host_mac(asker), host_ip(asker), host_ip(1))
                    .to_frame(host_mac(asker), None);
                frame[14] = 3;
                emit(ts, &frame, &mut written)?;
            }
            1 => {
                let probe = ArpRepr::probe(
                    host_mac(asker),
                    Ipv4Addr::new(198, 19, rng.below(250) as u8, rng.below(250) as u8 + 1),
                );
                emit(ts, &probe.to_frame(host_mac(asker), None), &mut written)?;
            }
            2 => {
                let announce = ArpRepr::announcement(host_mac(asker), host_ip(asker));
                emit(ts, &announce.to_frame(host_mac(asker), None), &mut written)?;
            }
            3 => {
                let cluster: MacAddr = "02:bf:c6:12:fa:0a".parse().expect("a MAC");
                let reply = ArpRepr::reply_to(
                    &ArpRepr::request(
                        host_mac(asker),
                        host_ip(asker),
                        Ipv4Addr::new(198, 18, 250, 10),
                    ),
                    cluster,
                    Ipv4Addr::new(198, 18, 250, 10),
                );
                emit(ts, &reply.to_frame(cluster, None), &mut written)?;
            }
            4..=13 => {
                let dead = Ipv4Addr::new(198, 18, 201, rng.below(10) as u8 + 1);
                let request = ArpRepr::request(host_mac(asker), host_ip(asker), dead);
                emit(ts, &request.to_frame(host_mac(asker), None), &mut written)?;
            }
            14..=33 => {
                let k = rng.below(20) + 1;
                let ip = Ipv4Addr::new(198, 18, 200, k as u8);
                let owner = MacAddr([0x52, 0x54, 0x01, 0, 0, k as u8]);
                let request = ArpRepr::request(host_mac(asker), host_ip(asker), ip);
                emit(ts, &request.to_frame(host_mac(asker), None), &mut written)?;
                for mac in [owner, impostor(k)] {
                    ts += 50_000;
                    let reply = ArpRepr::reply_to(&request, mac, ip);
                    emit(ts, &reply.to_frame(mac, None), &mut written)?;
                }
            }
            _ => {
                let mut target = rng.below(HOSTS);
                if target == asker {
                    target = (target + 1) % HOSTS;
                }
                let request = ArpRepr::request(host_mac(asker), host_ip(asker), host_ip(target));
                emit(ts, &request.to_frame(host_mac(asker), None), &mut written)?;
                ts += 50_000;
                let reply = ArpRepr::reply_to(&request, host_mac(target), host_ip(target));
                emit(ts, &reply.to_frame(host_mac(target), None), &mut written)?;
            }
        }
    }
    out.finish()?;
    eprintln!("wrote {written} frames to {path}");
    Ok(())
}
