//! The nlb doctor: finds ARP, IGMP and NLB cluster problems in packet captures and live
//! traffic, on any Ethernet network, and says what is wrong, where, since when, and what
//! to do.
//!
//! Layers, each usable alone. Data flows capture → link → analyzer → model → explain →
//! report, and imports follow the flow one way: each module imports only those upstream
//! of it (and [`finding`], the output type); this root assembles the pipeline.
//! - [`capture`]: pcap and pcapng records, streamed through a fixed buffer;
//! - [`link`]: Ethernet, 802.1Q and Linux cooked (SLL, SLL2) frames to one view;
//! - [`analyzer`]: the sans-IO analysis, one file per protocol, filling the model:
//!   [`Analyzer::handle_frame`] for each frame, [`Analyzer::poll_raised`] for findings as
//!   they appear, [`Analyzer::finish`] for the ranked totals. Time comes from the frames,
//!   never from a clock;
//! - `model`: counters, the timeline, one record per finding with typed evidence
//!   (subject and classification, no strings to decode), and the clusters seen;
//! - `explain`: the words (message, advice, `details`) of each finding, from the model
//!   alone;
//! - [`report`]: JSON, terminal text and a self-contained HTML page, one file each.
//!
//! [`diagnose`] runs the whole pipeline over a capture. The finding kinds and their rules
//! are in [`Kind`] and in the [`analyzer`] module docs; ARP semantics follow RFC 826 and
//! RFC 5227 (probes and announcements).

#![forbid(unsafe_code)]

pub mod analyzer;
pub mod capture;
mod explain;
pub mod finding;
pub mod link;
mod model;
pub mod report;

pub use analyzer::{Analyzer, Settings};
pub use capture::{CaptureError, CaptureReader, End, LinkType};
pub use finding::{Details, Finding, Kind, Severity};
pub use report::{CaptureSummary, Report};

use std::io::Read;

impl Analyzer {
    /// Findings raised since the last call, each once, as they first appear (for `nlb
    /// watch`). Their counts keep growing afterwards; [`finish`](Self::finish) has the
    /// totals.
    pub fn poll_raised(&mut self) -> Option<Finding> {
        let (record, model) = self.next_raised()?;
        Some(explain::finding(record, model))
    }

    /// Ends the analysis: requests still unanswered at the end (the capture's last frame,
    /// or now) are raised, clusters and IGMP are summarised, and every finding is
    /// rendered, most severe first.
    pub fn finish(&mut self) -> Vec<Finding> {
        let model = self.close();
        let mut findings: Vec<Finding> = model
            .records
            .iter()
            .filter(|record| !record.absorbed)
            .map(|record| explain::finding(record, model))
            .collect();
        findings.extend(
            model
                .clusters
                .iter()
                .map(|(key, cluster)| explain::cluster(*key, cluster, model)),
        );
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.count.cmp(&a.count))
                .then(a.first_frame.cmp(&b.first_frame))
        });
        findings
    }
}

/// Progress of a running diagnosis, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes of the file read.
    pub bytes: u64,
    /// Frames analysed.
    pub frames: u64,
}

/// How often `diagnose` reports progress, in frames.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Reads a whole capture and analyses it, calling `progress` every 65,536 frames.
/// Corrupt and truncated frames are counted as `malformed` findings; only a file that is
/// not a capture at all is an error.
pub fn diagnose<R: Read + Send>(
    reader: R,
    file: Option<String>,
    settings: Settings,
    mut progress: impl FnMut(Progress),
) -> Result<Report, CaptureError> {
    let mut capture = CaptureReader::new(reader)?;
    let mut analyzer = Analyzer::new(settings);
    while capture
        .next_with(|record| match link::decode(&record) {
            Ok(frame) => analyzer.handle_frame(&frame),
            Err(problem) => analyzer.handle_link_problem(record.number, record.ts_ns, problem),
        })
        .is_some()
    {
        let frames = analyzer.counters().frames;
        if frames.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress {
                bytes: capture.bytes_consumed(),
                frames,
            });
        }
    }
    let end = match capture.end() {
        Some(End::Truncated) => {
            analyzer.handle_capture_end_problem("capture: the file ends inside a record");
            "ends inside a record (truncated)".to_owned()
        }
        Some(End::Corrupt(why)) => {
            analyzer.handle_capture_end_problem("capture: a corrupt block ends the readable part");
            format!("is corrupt: {why}")
        }
        _ => "complete".to_owned(),
    };
    progress(Progress {
        bytes: capture.bytes_consumed(),
        frames: analyzer.counters().frames,
    });
    let findings = analyzer.finish();
    let start = analyzer.start_ts().unwrap_or(0);
    Ok(Report {
        capture: CaptureSummary {
            file,
            frames: analyzer.counters().frames,
            duration: (analyzer.last_ts() - start) as f64 / 1e9,
            link_types: capture.link_types().iter().map(|l| l.name()).collect(),
            vlans: analyzer.vlans(),
            vlan_stacks: analyzer.vlan_stacks(),
            bytes: capture.bytes_consumed(),
            start_unix_s: start as f64 / 1e9,
            end,
            counters: analyzer.counters().clone(),
        },
        findings,
        timeline: analyzer.timeline().to_vec(),
    })
}
