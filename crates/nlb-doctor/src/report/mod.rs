//! The report: a capture summary and the ranked findings, as JSON ([`Report::to_json`],
//! `json.rs`), as text for a terminal ([`Report::to_text`], `text.rs`), and as one
//! self-contained HTML page with a timeline ([`Report::to_html`], `html.rs`).
//!
//! The contract: a [`Report`] is plain data made from the analysis' findings
//! ([`Finding`]) and the model's counters and timeline; each format is
//! its own file adding one `to_*` method, and reads only what is defined here.

mod html;
mod json;
mod text;

use crate::finding::{Finding, Severity};
use crate::model::{Bin, Counters};
use serde::Serialize;
use std::fmt::Write as _;

/// What was read.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// The file, if the report is about one.
    pub file: Option<String>,
    /// Frames read.
    pub frames: u64,
    /// Seconds from the first frame to the last.
    pub duration: f64,
    /// Link types, by tcpdump name.
    pub link_types: Vec<String>,
    /// VLANs seen.
    pub vlans: Vec<u16>,
    /// The QinQ tag stacks seen, as `outer.inner` (customer VLANs under a service VLAN).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan_stacks: Vec<String>,
    /// Bytes of the file read.
    pub bytes: u64,
    /// Capture time of the first frame, seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// How the file ended: "complete", "truncated" or the corruption found.
    pub end: String,
    /// Frame counts by protocol and problem.
    pub counters: Counters,
}

/// The doctor's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was read.
    pub capture: CaptureSummary,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// ARP activity per second (HTML timeline); not in the JSON.
    #[serde(skip)]
    pub timeline: Vec<Bin>,
}

impl Report {
    /// The findings of one kind.
    pub fn of_kind(&self, kind: crate::Kind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }
}

/// One finding as terminal text (also what `nlb watch` prints as findings appear).
pub fn finding_text(rank: usize, finding: &Finding) -> String {
    let mut out = String::new();
    let label = match finding.severity {
        Severity::Error => "ERROR",
        Severity::Warning => "WARNING",
        Severity::Info => "info",
    };
    let frames = if finding.first_frame == finding.last_frame {
        format!("frame {}", finding.first_frame)
    } else {
        format!("frames {}-{}", finding.first_frame, finding.last_frame)
    };
    let _ = writeln!(
        out,
        "{rank:>3}. {label:<7} {}{}{}  [{frames}, {}x, from {:.3} s]",
        finding.kind.name(),
        finding.ip.map(|ip| format!(" {ip}")).unwrap_or_default(),
        finding
            .vlan_name()
            .map(|v| format!(" vlan {v}"))
            .unwrap_or_default(),
        finding.count,
        finding.first_seen_s,
    );
    let _ = writeln!(out, "     {}", finding.message);
    let _ = writeln!(out, "     what to do: {}", finding.advice);
    out
}
