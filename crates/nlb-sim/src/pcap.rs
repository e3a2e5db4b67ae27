//! The switch's tap: every frame that enters the simulated switch, written as a classic
//! pcap file that Wireshark, tcpdump and `nlb doctor` open.
//!
//! # The contract
//!
//! - **What is recorded**: each frame once, as it enters the switch (a mirror of every
//!   port's ingress, as an operator's SPAN port sees it), before the switch forwards it.
//!   Frames that the network's faults then drop on their way to some receivers are
//!   recorded: heartbeat loss and partitions are decided per receiver, after the frame
//!   reached the switch, so a partitioned cluster's capture shows both sides' heartbeats,
//!   as a mirror port would (a partition here is a filter inside the one switch; across
//!   a cut link between two real switches, a mirror on one of them sees one side). A frame that never reaches the switch is not: a crashed,
//!   killed or frozen daemon sends nothing. Frames the switch cannot parse are recorded
//!   too (they entered it). Client SYNs are not frames in this simulator (the data planes
//!   judge flows directly, see `crate::flows`), so a capture holds heartbeats, ARP
//!   probes, announcements and replies, IGMP reports, and whatever [`Sim::inject`] sends.
//! - **Format**: classic pcap, little-endian, nanosecond-resolution magic `0xa1b23c4d`,
//!   LINKTYPE_ETHERNET, snap length [`SNAPLEN`] (no simulated frame is cut). The 24-byte
//!   file header and 16-byte record headers are written here: `pcap-parser`, the
//!   workspace's pcap crate, only reads, and the format is too small to want a writer
//!   crate for.
//! - **Time**: the simulator's virtual clock, mapped to [`EPOCH_UNIX_S`] (2026-01-01
//!   00:00:00 UTC is virtual time zero), so one seed writes the same bytes on every run
//!   and machine. Records are in the order frames entered the switch; their timestamps
//!   never decrease.
//! - **Where it goes**: [`SimConfig::capture`](crate::SimConfig::capture) asks for one
//!   from the start ([`Capture::Memory`], read with [`Sim::capture`], or
//!   [`Capture::File`]). Otherwise the environment variable `NLB_SIM_PCAP` names a
//!   directory, and every [`Sim`] made writes a file there (see [`env_capture_path`]), so
//!   any existing simulator test, a failing seed included, can be captured without code
//!   changes:
//!
//!   ```text
//!   NLB_SIM_PCAP=/tmp/sim cargo test -p nlb-sim --test properties failover
//!   wireshark /tmp/sim/failover_after_a_crash_is_within_the_bound-007-seed6.pcap
//!   nlb doctor /tmp/sim/failover_after_a_crash_is_within_the_bound-007-seed6.pcap
//!   ```
//!
//!   A file is complete up to its last record at every moment (no trailer), and is
//!   flushed when the `Sim` is dropped, a panicking test's included. Files cost about
//!   250 bytes a heartbeat: the whole `properties` suite writes 71 files, 150 MB, so
//!   name a test.

use crate::Sim;
use nlb_core::time::Instant;
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Unix time of virtual time zero: 2026-01-01 00:00:00 UTC.
pub const EPOCH_UNIX_S: u64 = 1_767_225_600;

/// The pcap magic of nanosecond-resolution files (written little-endian).
pub const MAGIC_NANOSECONDS: u32 = 0xa1b2_3c4d;

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The snap length written in the header, tcpdump's default.
pub const SNAPLEN: u32 = 262_144;

/// The environment variable that names a directory for every simulation's capture.
pub const ENV_VAR: &str = "NLB_SIM_PCAP";

/// Where a simulation's capture goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Into memory, read with [`Sim::capture`].
    Memory,
    /// Into this file, created or truncated (two simulations given one path overwrite
    /// each other).
    File(PathBuf),
}

/// A writer of classic pcap records with nanosecond timestamps.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header into `out`.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_NANOSECONDS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // 8..16: time zone offset and accuracy, both zero.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Writes `frame` as seen at virtual time `at`.
    pub fn write_frame(&mut self, at: Instant, frame: &[u8]) -> io::Result<()> {
        let (seconds, nanoseconds) = timestamp(at);
        let len = frame.len() as u32;
        let caplen = len.min(SNAPLEN);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&seconds.to_le_bytes());
        record[4..8].copy_from_slice(&nanoseconds.to_le_bytes());
        record[8..12].copy_from_slice(&caplen.to_le_bytes());
        record[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(&frame[..caplen as usize])?;
        self.records += 1;
        Ok(())
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The pcap timestamp (Unix seconds, nanoseconds) of virtual time `at`.
pub fn timestamp(at: Instant) -> (u32, u32) {
    let micros = at.micros();
    let seconds = EPOCH_UNIX_S + micros / 1_000_000;
    let nanoseconds = (micros % 1_000_000) * 1_000;
    (seconds as u32, nanoseconds as u32)
}

/// What the tap writes into.
pub(crate) enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<std::fs::File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Memory(bytes) => bytes.write(buf),
            Sink::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(file) => file.flush(),
        }
    }
}

/// The tap of one simulation.
pub(crate) struct Tap {
    writer: PcapWriter<Sink>,
    /// The file, to name in errors.
    path: Option<PathBuf>,
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("path", &self.path)
            .field("records", &self.writer.records())
            .finish()
    }
}

impl Tap {
    /// The tap `capture` asks for, or else the one `NLB_SIM_PCAP` asks for, if any.
    /// Panics if the file cannot be created: a test asked for a capture.
    pub(crate) fn open(capture: Option<&Capture>, seed: u64) -> Option<Tap> {
        let path = match capture {
            Some(Capture::Memory) => None,
            Some(Capture::File(path)) => Some(path.clone()),
            None => Some(env_capture_path(seed)?),
        };
        let sink = match &path {
            None => Sink::Memory(Vec::new()),
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .unwrap_or_else(|err| panic!("capture directory {}: {err}", dir.display()));
                }
                let file = std::fs::File::create(path)
                    .unwrap_or_else(|err| panic!("capture file {}: {err}", path.display()));
                Sink::File(BufWriter::new(file))
            }
        };
        let writer = PcapWriter::new(sink).expect("a new capture takes its header");
        Some(Tap { writer, path })
    }

    pub(crate) fn record(&mut self, at: Instant, frame: &[u8]) {
        if let Err(err) = self.writer.write_frame(at, frame) {
            let path = self.path.as_deref().unwrap_or(Path::new("memory"));
            panic!("capture {}: {err}", path.display());
        }
    }

    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self.writer.get_ref() {
            Sink::Memory(bytes) => Some(bytes),
            Sink::File(_) => None,
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

thread_local! {
    /// Simulations made on this thread (one test, under libtest), for file names.
    static MADE: Cell<u32> = const { Cell::new(0) };
}

/// The file `NLB_SIM_PCAP` asks for the next simulation on this thread, if it is set:
/// `<dir>/<test>-<n>-seed<seed>.pcap`, where `<test>` is the thread's name (libtest names
/// each test's thread after the test), `<n>` counts the simulations this thread made
/// (from 001, so a test that loops over seeds writes one file per seed in order), and
/// `<seed>` is [`SimConfig::seed`](crate::SimConfig::seed).
pub fn env_capture_path(seed: u64) -> Option<PathBuf> {
    let dir = std::env::var_os(ENV_VAR).filter(|dir| !dir.is_empty())?;
    let made = MADE.with(|made| {
        made.set(made.get() + 1);
        made.get()
    });
    let thread = std::thread::current();
    Some(Path::new(&dir).join(capture_file_name(thread.name(), made, seed)))
}

/// `<test>-<n>-seed<seed>.pcap`, the test's name made safe for a file name (`::` and
/// anything but letters, digits, `-`, `_` and `.` become `_`).
pub(crate) fn capture_file_name(thread: Option<&str>, made: u32, seed: u64) -> String {
    let name: String = thread
        .unwrap_or("sim")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-{made:03}-seed{seed}.pcap")
}

impl Sim {
    /// The capture so far, when [`SimConfig::capture`](crate::SimConfig::capture) is
    /// [`Capture::Memory`]: a complete pcap file.
    pub fn capture(&self) -> Option<&[u8]> {
        self.tap.as_ref().and_then(Tap::bytes)
    }

    /// Frames the tap recorded, if there is one.
    pub fn captured_frames(&self) -> Option<u64> {
        self.tap.as_ref().map(|tap| tap.writer.records())
    }

    /// Flushes a file capture (it is also flushed when the simulation is dropped).
    pub fn flush_capture(&mut self) -> io::Result<()> {
        self.tap.as_mut().map_or(Ok(()), Tap::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, test_config};
    use nlb_wire::addressing::ClusterMode;
    use nlb_wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_NLB_HEARTBEAT};
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
    use std::time::Duration;

    /// A classic pcap file as `pcap-parser` reads it.
    struct ReadBack {
        magic: u32,
        link: i32,
        /// (seconds, nanoseconds, bytes) of each record.
        records: Vec<(u32, u32, Vec<u8>)>,
    }

    fn read_back(file: &[u8]) -> ReadBack {
        let mut reader = LegacyPcapReader::new(1 << 16, file).expect("a pcap header");
        let (mut magic, mut link) = (0, 0);
        let mut records = Vec::new();
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            magic = header.magic_number;
                            link = header.network.0;
                        }
                        PcapBlockOwned::Legacy(record) => {
                            assert_eq!(record.caplen, record.origlen, "nothing is cut");
                            records.push((record.ts_sec, record.ts_usec, record.data.to_vec()));
                        }
                        PcapBlockOwned::NG(_) => panic!("a classic pcap file"),
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => reader.refill().expect("refill"),
                Err(err) => panic!("unreadable capture: {err:?}"),
            }
        }
        ReadBack {
            magic,
            link,
            records,
        }
    }

    fn ethertype(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[12], frame[13]])
    }

    /// Two hosts join and converge, a partition splits them, an attacker's frame goes
    /// in: the capture has every frame the hosts and the attacker put on the switch,
    /// byte for byte, in order, at the virtual times they were sent.
    #[test]
    fn the_tap_records_what_enters_the_switch() {
        let configs = (1..=2)
            .map(|id| test_config(id, ClusterMode::Multicast, "", ""))
            .collect();
        let config = SimConfig {
            seed: 3,
            capture: Some(Capture::Memory),
            ..SimConfig::default()
        };
        let mut sim = Sim::new(config, configs, 1);
        sim.run_for(Duration::from_millis(1500));
        sim.partition(&[&[0], &[1]]);
        sim.run_for(Duration::from_millis(300));
        let injected_at = sim.now;
        let injected = vec![0xff; 60]; // broadcast from ff:ff..., type 0xffff: junk
        sim.inject(0, injected.clone());
        sim.run_for(Duration::from_millis(200));

        let file = sim.capture().expect("a memory capture").to_vec();
        let ReadBack {
            magic,
            link,
            records,
        } = read_back(&file);
        assert_eq!(magic, MAGIC_NANOSECONDS);
        assert_eq!(link, LINKTYPE_ETHERNET as i32);
        assert_eq!(records.len() as u64, sim.captured_frames().unwrap());

        // Timestamps: from the epoch, in order, no later than the clock.
        let times: Vec<u64> = records
            .iter()
            .map(|&(s, ns, _)| (u64::from(s) - EPOCH_UNIX_S) * 1_000_000_000 + u64::from(ns))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");
        assert!(*times.last().unwrap() <= sim.now.micros() * 1000);
        assert!(times.iter().all(|t| t % 1000 == 0), "virtual time is in µs");

        // Heartbeats: each host's count, and the overhead-free bytes the switch counted;
        // the latest ones equal, byte for byte, what the simulator logged.
        let heartbeats: Vec<&Vec<u8>> = records
            .iter()
            .map(|(_, _, frame)| frame)
            .filter(|frame| ethertype(frame) == ETHERTYPE_NLB_HEARTBEAT)
            .collect();
        for host in &sim.hosts {
            let sent = heartbeats.iter().filter(|f| f[6..12] == host.mac.0).count();
            let stats = host.node.as_ref().unwrap().stats();
            assert_eq!(sent as u64, stats.heartbeats_sent, "host {}", host.mac);
        }
        let bytes: u64 = heartbeats
            .iter()
            .map(|f| f.len() as u64 + crate::WIRE_OVERHEAD)
            .sum();
        assert_eq!(bytes, sim.heartbeat_wire_bytes);
        let logged: Vec<&Vec<u8>> = sim.heartbeat_log.iter().collect();
        assert_eq!(heartbeats[heartbeats.len() - logged.len()..], logged[..]);
        // Both sides of the partition are in the capture after it began.
        let partitioned_at = (injected_at.micros() - 300_000) * 1000;
        for host in &sim.hosts {
            assert!(
                records
                    .iter()
                    .zip(&times)
                    .any(|((_, _, f), &t)| t > partitioned_at && f[6..12] == host.mac.0),
                "host {} heard after the partition",
                host.mac
            );
        }

        // ARP: three probes per host, then its announcements and replies.
        let arp = records
            .iter()
            .filter(|(_, _, f)| ethertype(f) == ETHERTYPE_ARP)
            .count() as u64;
        let announced: u64 = sim
            .hosts
            .iter()
            .map(|h| {
                let stats = h.node.as_ref().unwrap().stats();
                3 + stats.arp_announcements_sent + stats.arp_replies_sent
            })
            .sum();
        assert_eq!(arp, announced);
        assert_eq!(arp + heartbeats.len() as u64 + 1, records.len() as u64);

        // The attacker's junk, which the switch cannot parse, is there as sent.
        let junk: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].2 == injected)
            .collect();
        assert_eq!(junk.len(), 1);
        assert_eq!(times[junk[0]], injected_at.micros() * 1000);

        // One seed, one file.
        let configs = (1..=2)
            .map(|id| test_config(id, ClusterMode::Multicast, "", ""))
            .collect();
        let mut again = Sim::new(
            SimConfig {
                seed: 3,
                capture: Some(Capture::Memory),
                ..SimConfig::default()
            },
            configs,
            1,
        );
        again.run_for(Duration::from_millis(1500));
        again.partition(&[&[0], &[1]]);
        again.run_for(Duration::from_millis(300));
        again.inject(0, injected);
        again.run_for(Duration::from_millis(200));
        assert_eq!(again.capture().unwrap(), &file[..]);
    }

    #[test]
    fn a_file_capture_is_flushed_when_the_simulation_ends() {
        let dir = std::env::temp_dir().join(format!("nlb-sim-pcap-{}", std::process::id()));
        let path = dir.join("two.pcap");
        let configs = (1..=2)
            .map(|id| test_config(id, ClusterMode::Unicast, "", ""))
            .collect();
        let mut sim = Sim::new(
            SimConfig {
                capture: Some(Capture::File(path.clone())),
                ..SimConfig::default()
            },
            configs,
            0,
        );
        sim.run_for(Duration::from_millis(500));
        assert_eq!(sim.capture(), None, "not in memory");
        let frames = sim.captured_frames().unwrap();
        drop(sim);
        let file = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let records = read_back(&file).records;
        assert!(frames > 0);
        assert_eq!(records.len() as u64, frames);
    }

    /// A failing seed's capture is what it is for: the file is complete after the panic.
    #[test]
    fn a_panicking_test_leaves_its_capture() {
        let dir = std::env::temp_dir().join(format!("nlb-sim-panic-{}", std::process::id()));
        let path = dir.join("failing.pcap");
        let capture = Capture::File(path.clone());
        let frames = std::panic::catch_unwind(move || {
            let configs = (1..=2)
                .map(|id| test_config(id, ClusterMode::Multicast, "", ""))
                .collect();
            let config = SimConfig {
                capture: Some(capture),
                ..SimConfig::default()
            };
            let mut sim = Sim::new(config, configs, 0);
            sim.run_for(Duration::from_millis(300));
            std::panic::panic_any(sim.captured_frames().unwrap());
        })
        .expect_err("it panics")
        .downcast::<u64>()
        .expect("with the frame count");
        let file = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_back(&file).records.len() as u64, *frames);
    }

    #[test]
    fn file_names_follow_the_test_and_the_seed() {
        assert_eq!(
            capture_file_name(Some("partition_heals"), 7, 42),
            "partition_heals-007-seed42.pcap"
        );
        assert_eq!(
            capture_file_name(Some("tests::a b/c"), 1, 0),
            "tests__a_b_c-001-seed0.pcap"
        );
        assert_eq!(capture_file_name(None, 12, 1), "sim-012-seed1.pcap");
    }

    #[test]
    fn timestamps_start_at_the_epoch() {
        assert_eq!(timestamp(Instant::ZERO), (EPOCH_UNIX_S as u32, 0));
        assert_eq!(
            timestamp(Instant(3_000_250)),
            (EPOCH_UNIX_S as u32 + 3, 250_000)
        );
    }
}
