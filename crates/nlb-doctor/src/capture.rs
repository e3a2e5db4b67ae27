//! Streaming capture files: pcap (microsecond and nanosecond, either byte order) and
//! pcapng (any number of sections and interfaces), read with `pcap-parser` through a
//! fixed buffer, so memory stays bounded whatever the file's size.
//!
//! Contract: [`CaptureReader::next_with`] hands each packet record to a closure, numbered
//! from 1 as Wireshark numbers frames. A record cut by the snap length is delivered with
//! its original length, never refused (pcap-file refuses them). A file that ends inside a
//! record, or a corrupt block, ends the stream with [`End::Truncated`] or
//! [`End::Corrupt`] after every whole record before it: the frames read so far still count.
//! Only a file whose header is not pcap or pcapng is an error.

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use std::io::Read;

/// Link-layer header types the doctor reads (tcpdump.org/linktypes.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): Ethernet II, possibly 802.1Q-tagged.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1, as `tcpdump -i any` wrote it.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// Anything else, by number; its frames are counted and skipped.
    Other(i32),
}

impl LinkType {
    /// The type for a LINKTYPE number.
    pub fn from_number(number: i32) -> LinkType {
        match number {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The name tcpdump prints for it.
    pub fn name(self) -> String {
        match self {
            LinkType::Ethernet => "EN10MB".to_owned(),
            LinkType::LinuxSll => "LINUX_SLL".to_owned(),
            LinkType::LinuxSll2 => "LINUX_SLL2".to_owned(),
            LinkType::Other(number) => format!("LINKTYPE_{number}"),
        }
    }
}

/// One packet record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// 1-based frame number.
    pub number: u64,
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// The link type of the interface it was captured on.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire; more than `data.len()` when cut by the snap length.
    pub orig_len: u32,
}

/// Why the stream of records ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The file ended after a whole record.
    Complete,
    /// The file ends inside a record (a capture that was killed, or a partial copy).
    Truncated,
    /// A block could not be parsed; the reader stops there.
    Corrupt(String),
}

/// The file is not a capture the doctor can read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Neither a pcap nor a pcapng header.
    #[error(
        "not a pcap or pcapng file ({0}). Fix: give a capture written by tcpdump, tshark, dumpcap or Wireshark"
    )]
    NotACapture(String),
    /// Reading failed.
    #[error("cannot read the capture: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
}

/// Timestamps are clamped to 0..=2^62 ns (year 2116), so that adding any window of the
/// analysis to one can never overflow, whatever a corrupt file says.
pub const MAX_TS_NS: i64 = 1 << 62;

/// Buffer the reader starts with; grown up to [`MAX_BUFFER`] for jumbo records.
const INITIAL_BUFFER: usize = 1 << 16;
/// Largest record accepted: 256 KiB is libpcap's biggest snap length; pcapng blocks may
/// add options, so allow some margin.
const MAX_BUFFER: usize = 16 << 20;

/// Reads records one at a time from a pcap or pcapng stream.
pub struct CaptureReader<'r> {
    inner: Box<dyn PcapReaderIterator + Send + 'r>,
    capacity: usize,
    legacy: Interface,
    /// Set once a classic pcap header is read: its records are read straight from the
    /// buffer (see [`CaptureReader::next_legacy`]).
    legacy_order: Option<Endian>,
    /// Set once a pcapng section header is read.
    pcapng: bool,
    interfaces: Vec<Interface>,
    link_types: Vec<LinkType>,
    number: u64,
    consumed: u64,
    end: Option<End>,
}

impl<'r> CaptureReader<'r> {
    /// Starts reading; fails only when the header is neither pcap nor pcapng.
    pub fn new<R: Read + Send + 'r>(reader: R) -> Result<CaptureReader<'r>, CaptureError> {
        let inner = create_reader(INITIAL_BUFFER, reader).map_err(|err| match err {
            PcapError::ReadError => CaptureError::Io("read failed".to_owned()),
            PcapError::Eof => CaptureError::NotACapture("the file is empty".to_owned()),
            other => CaptureError::NotACapture(format!("{other:?}")),
        })?;
        Ok(CaptureReader {
            inner,
            capacity: INITIAL_BUFFER,
            legacy: Interface {
                link: LinkType::Ethernet,
                resolution: 1_000_000,
                offset_s: 0,
            },
            legacy_order: None,
            pcapng: false,
            interfaces: Vec::new(),
            link_types: Vec::new(),
            number: 0,
            consumed: 0,
            end: None,
        })
    }

    /// Bytes of the file consumed so far (for progress).
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// The link types seen in file and interface headers so far.
    pub fn link_types(&self) -> &[LinkType] {
        &self.link_types
    }

    /// How the stream ended, once [`next_with`](Self::next_with) has returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    fn note_link(&mut self, link: LinkType) {
        if !self.link_types.contains(&link) {
            self.link_types.push(link);
        }
    }

    /// Gives the next packet record to `visit` and returns what it returns, or `None` at
    /// the end of the stream (see [`end`](Self::end)).
    pub fn next_with<T>(&mut self, visit: impl FnOnce(Record<'_>) -> T) -> Option<T> {
        if let Some(order) = self.legacy_order {
            return self.next_legacy(order, visit);
        }
        let mut visit = Some(visit);
        loop {
            if self.end.is_some() {
                return None;
            }
            if self.pcapng
                && let Some(length) = short_pcapng_block(self.inner.data())
            {
                self.end = Some(End::Corrupt(format!(
                    "a pcapng block after frame {} claims {length} bytes, less than a block header",
                    self.number
                )));
                return None;
            }
            match self.inner.next() {
                Ok((offset, block)) => {
                    self.consumed += offset as u64;
                    let record = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            self.legacy.link = LinkType::from_number(header.network.0);
                            self.legacy.resolution = if header.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            let link = self.legacy.link;
                            self.note_link(link);
                            self.legacy_order = Some(if header.is_bigendian() {
                                Endian::Big
                            } else {
                                Endian::Little
                            });
                            None
                        }
                        PcapBlockOwned::Legacy(packet) => {
                            let scale = 1_000_000_000 / self.legacy.resolution as i64;
                            let len = (packet.caplen as usize).min(packet.data.len());
                            Some(Record {
                                number: 0,
                                ts_ns: i64::from(packet.ts_sec) * 1_000_000_000
                                    + i64::from(packet.ts_usec) * scale,
                                link: self.legacy.link,
                                data: &packet.data[..len],
                                orig_len: packet.origlen,
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.pcapng = true;
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let link = LinkType::from_number(idb.linktype.0);
                            self.interfaces.push(Interface {
                                link,
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_s: idb.ts_offset(),
                            });
                            self.note_link(link);
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let interface = self.interfaces.get(epb.if_id as usize).copied();
                            let interface = interface.unwrap_or(Interface {
                                link: LinkType::Other(-1),
                                resolution: 1_000_000,
                                offset_s: 0,
                            });
                            let len = (epb.caplen as usize).min(epb.data.len());
                            let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            Some(Record {
                                number: 0,
                                ts_ns: ns_from_units(units, interface.resolution).saturating_add(
                                    interface.offset_s.saturating_mul(1_000_000_000),
                                ),
                                link: interface.link,
                                data: &epb.data[..len],
                                orig_len: epb.origlen,
                            })
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let link = self
                                .interfaces
                                .first()
                                .map_or(LinkType::Other(-1), |i| i.link);
                            let len = (spb.origlen as usize).min(spb.data.len());
                            Some(Record {
                                number: 0,
                                ts_ns: 0,
                                link,
                                data: &spb.data[..len],
                                orig_len: spb.origlen,
                            })
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    let result = record.map(|mut record| {
                        self.number += 1;
                        record.number = self.number;
                        record.ts_ns = record.ts_ns.clamp(0, MAX_TS_NS);
                        (visit.take().expect("visited once"))(record)
                    });
                    self.inner.consume(offset);
                    if result.is_some() {
                        return result;
                    }
                }
                Err(PcapError::Eof) => self.end = Some(End::Complete),
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.reader_exhausted() {
                        self.end = Some(End::Truncated);
                    } else if let Err(err) = self.inner.refill() {
                        self.end = Some(End::Corrupt(format!("read failed: {err:?}")));
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if self.capacity >= MAX_BUFFER {
                        self.end = Some(End::Corrupt(format!(
                            "a record claims more than {} MiB",
                            MAX_BUFFER >> 20
                        )));
                    } else {
                        self.capacity *= 2;
                        if !self.inner.grow(self.capacity) {
                            self.end = Some(End::Corrupt("cannot grow the buffer".to_owned()));
                        } else if let Err(err) = self.inner.refill() {
                            self.end = Some(End::Corrupt(format!("read failed: {err:?}")));
                        }
                    }
                }
                Err(PcapError::UnexpectedEof) => self.end = Some(End::Truncated),
                Err(other) => {
                    self.end = Some(End::Corrupt(format!(
                        "unreadable block after frame {}: {}",
                        self.number,
                        describe(&other)
                    )))
                }
            }
        }
    }
}

/// Writes a classic pcap file (microsecond timestamps, little-endian): for generated
/// captures and for tests. Records longer than the snap length are cut to it, with their
/// original length kept, as libpcap does.
pub struct PcapWriter<W: std::io::Write> {
    out: W,
    snaplen: u32,
}

impl<W: std::io::Write> PcapWriter<W> {
    /// Writes the file header for `link` (a LINKTYPE number, 1 for Ethernet).
    pub fn new(mut out: W, link: u32, snaplen: u32) -> std::io::Result<PcapWriter<W>> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&snaplen.to_le_bytes());
        header.extend_from_slice(&link.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one record captured at `ts_ns` (ns since the Unix epoch).
    pub fn write(&mut self, ts_ns: i64, frame: &[u8]) -> std::io::Result<()> {
        let caplen = frame.len().min(self.snaplen as usize);
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(&frame[..caplen])
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl CaptureReader<'_> {
    /// Classic pcap records, read from pcap-parser's buffer without its per-record parser:
    /// a record is a 16-byte header (seconds, fraction, captured length, original length)
    /// and the captured bytes. Reading them here, with no per-record allocation or enum,
    /// doubles the doctor's speed on large captures.
    fn next_legacy<T>(&mut self, order: Endian, visit: impl FnOnce(Record<'_>) -> T) -> Option<T> {
        loop {
            if self.end.is_some() {
                return None;
            }
            let data = self.inner.data();
            let needed = match data.get(..16) {
                Some(header) => 16 + order.u32(&header[8..12]) as usize,
                None => 16,
            };
            if data.len() >= needed {
                let header = &data[..16];
                let scale = 1_000_000_000 / self.legacy.resolution as i64;
                self.number += 1;
                let record = Record {
                    number: self.number,
                    ts_ns: i64::from(order.u32(&header[0..4])) * 1_000_000_000
                        + i64::from(order.u32(&header[4..8])) * scale,
                    link: self.legacy.link,
                    data: &data[16..needed],
                    orig_len: order.u32(&header[12..16]),
                };
                let result = visit(record);
                self.inner.consume(needed);
                self.consumed += needed as u64;
                return Some(result);
            }
            if self.inner.reader_exhausted() {
                self.end = Some(if data.is_empty() {
                    End::Complete
                } else {
                    End::Truncated
                });
            } else if needed > self.capacity {
                if needed > MAX_BUFFER {
                    self.end = Some(End::Corrupt(format!(
                        "record after frame {} claims {} bytes",
                        self.number,
                        needed - 16
                    )));
                } else {
                    self.capacity = needed.next_power_of_two();
                    if !self.inner.grow(self.capacity) {
                        self.end = Some(End::Corrupt("cannot grow the buffer".to_owned()));
                    }
                }
            } else if let Err(err) = self.inner.refill() {
                self.end = Some(End::Corrupt(format!("read failed: {err:?}")));
            }
        }
    }
}

/// Byte order of a classic pcap file.
#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u32(self, bytes: &[u8]) -> u32 {
        let bytes: [u8; 4] = bytes.try_into().expect("4 bytes");
        match self {
            Endian::Little => u32::from_le_bytes(bytes),
            Endian::Big => u32::from_be_bytes(bytes),
        }
    }
}

/// A pcapng block's total length field (bytes 4..8) below 12, the smallest block, in
/// either byte order: pcap-parser 0.17 subtracts 12 from it after checking it only
/// against the header size, which overflows (a panic with overflow checks). Reading the
/// length both ways needs no knowledge of the section's byte order; the only valid
/// lengths it refuses are over 16 MiB, which [`MAX_BUFFER`] refuses anyway.
fn short_pcapng_block(data: &[u8]) -> Option<u32> {
    let field: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let length = u32::from_le_bytes(field).min(u32::from_be_bytes(field));
    (length < 12).then_some(length)
}

fn describe(err: &PcapError<&[u8]>) -> String {
    match err {
        PcapError::NomError(_, kind) => format!("parse error ({kind:?})"),
        PcapError::OwnedNomError(_, kind) => format!("parse error ({kind:?})"),
        PcapError::HeaderNotRecognized => "unknown block".to_owned(),
        PcapError::ReadError => "read error".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Converts a timestamp in `resolution` units per second to nanoseconds, without overflow
/// for any resolution.
fn ns_from_units(units: u64, resolution: u64) -> i64 {
    let seconds = units / resolution;
    let fraction = units % resolution;
    let nanos = (u128::from(fraction) * 1_000_000_000 / u128::from(resolution)) as i64;
    (seconds as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut writer = PcapWriter::new(Vec::new(), 1, 96).unwrap();
        for (i, (data, orig)) in records.iter().enumerate() {
            let mut frame = data.to_vec();
            frame.resize((*orig as usize).max(data.len()), 0);
            writer
                .write((1_000 + i as i64) * 1_000_000_000 + 500_000, &frame)
                .unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> (Vec<(u64, i64, usize, u32)>, End) {
        let mut reader = CaptureReader::new(bytes).unwrap();
        let mut out = vec![];
        while let Some(item) = reader.next_with(|r| (r.number, r.ts_ns, r.data.len(), r.orig_len)) {
            out.push(item);
        }
        (out, reader.end().cloned().unwrap())
    }

    #[test]
    fn numbers_from_one_and_keeps_cut_records() {
        let file = pcap(&[(&[1; 60], 60), (&[2; 96], 1510)]);
        let (records, end) = read_all(&file);
        assert_eq!(
            records,
            vec![
                (1, 1_000_000_500_000, 60, 60),
                (2, 1_001_000_500_000, 96, 1510)
            ]
        );
        assert_eq!(end, End::Complete);
    }

    #[test]
    fn big_endian_nanosecond_pcap() {
        let mut file = vec![];
        file.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
        file.extend_from_slice(&2u16.to_be_bytes());
        file.extend_from_slice(&4u16.to_be_bytes());
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_be_bytes());
        file.extend_from_slice(&1u32.to_be_bytes());
        for (sec, nanos) in [(7u32, 5u32), (8, 999_999_999)] {
            file.extend_from_slice(&sec.to_be_bytes());
            file.extend_from_slice(&nanos.to_be_bytes());
            file.extend_from_slice(&60u32.to_be_bytes());
            file.extend_from_slice(&60u32.to_be_bytes());
            file.extend_from_slice(&[0xab; 60]);
        }
        let (records, end) = read_all(&file);

        assert_eq!(
            records,
            vec![(1, 7_000_000_005, 60, 60), (2, 8_999_999_999, 60, 60)]
        );
        assert_eq!(end, End::Complete);
    }

    #[test]
    fn a_record_longer_than_any_buffer_is_corruption() {
        let mut file = pcap(&[(&[1; 60], 60)]);
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&u32::MAX.to_le_bytes());
        file.extend_from_slice(&u32::MAX.to_le_bytes());
        let (records, end) = read_all(&file);
        assert_eq!(records.len(), 1);
        assert!(matches!(end, End::Corrupt(_)), "{end:?}");
    }

    #[test]
    fn a_file_cut_inside_a_record_keeps_the_whole_ones() {
        let file = pcap(&[(&[1; 60], 60), (&[2; 60], 60)]);
        let (records, end) = read_all(&file[..file.len() - 10]);
        assert_eq!(records.len(), 1);
        assert_eq!(end, End::Truncated);
    }

    #[test]
    fn not_a_capture_is_an_error_that_says_so() {
        let err = CaptureReader::new(&b"hello, this is not a capture file at all"[..])
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a pcap or pcapng file"));
    }

    /// Found by the fuzzer: a process-information block whose length (4) is below a
    /// block header made pcap-parser subtract past zero.
    #[test]
    fn a_pcapng_block_shorter_than_its_header_is_corruption() {
        let file: &[u8] = &[
            10, 13, 13, 10, 52, 0, 0, 0, 77, 60, 43, 26, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255,
            255, 255, 4, 0, 13, 7, 69, 100, 105, 116, 99, 105, 0, 0, 77, 60, 43, 26, 1, 0, 0, 4,
            255, 255, 255, 255, 255, 255, 255, 255, 1, 0, 0, 128, 4, 0, 0, 0, 35, 0, 0, 0, 35, 0,
            0, 0, 0, 87, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 52, 0, 0, 0, 0, 0, 0, 0,
        ];
        let (records, end) = read_all(file);
        assert!(records.is_empty());
        assert!(matches!(end, End::Corrupt(_)), "{end:?}");
    }

    #[test]
    fn resolution_conversion_is_exact() {
        assert_eq!(ns_from_units(1_500_000, 1_000_000), 1_500_000_000);
        assert_eq!(ns_from_units(3, 1 << 30), 2);
        assert_eq!(ns_from_units(u64::MAX, 1_000_000_000), i64::MAX);
    }
}
