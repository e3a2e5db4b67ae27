//! The report: a capture summary and the ranked findings, as JSON, as text for a
//! terminal, and as one self-contained HTML page with a timeline.

use crate::analyzer::{Bin, Counters};
use crate::finding::{Finding, Severity};
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
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The findings of one kind.
    pub fn of_kind(&self, kind: crate::Kind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// The terminal report: summary, then the `limit` highest-ranked findings in plain
    /// words, and a count by kind of the rest.
    pub fn to_text(&self, limit: usize) -> String {
        let c = &self.capture;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} frames over {:.1} s ({}{}), {} ARP, {} IGMP, {} nlb and {} Windows NLB heartbeats",
            c.file.as_deref().unwrap_or("capture"),
            c.frames,
            c.duration,
            c.link_types.join(", "),
            if c.vlans.is_empty() {
                String::new()
            } else {
                format!(
                    "; VLANs {}",
                    c.vlans
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            c.counters.arp,
            c.counters.igmp,
            c.counters.nlb_heartbeats,
            c.counters.msnlb_heartbeats,
        );
        if c.end != "complete" {
            let _ = writeln!(out, "the file {}", c.end);
        }
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let _ = writeln!(
            out,
            "findings: {} ({} error, {} warning, {} info)\n",
            self.findings.len(),
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        );
        for (rank, finding) in self.findings.iter().enumerate().take(limit) {
            out.push_str(&finding_text(rank + 1, finding));
            out.push('\n');
        }
        if self.findings.len() > limit {
            let mut rest: Vec<(&str, usize)> = Vec::new();
            for finding in &self.findings[limit..] {
                match rest
                    .iter_mut()
                    .find(|(kind, _)| *kind == finding.kind.name())
                {
                    Some((_, n)) => *n += 1,
                    None => rest.push((finding.kind.name(), 1)),
                }
            }
            let rest: Vec<String> = rest.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = writeln!(
                out,
                "... and {} more ({}); --all lists every one, --json gives them all",
                self.findings.len() - limit,
                rest.join(", ")
            );
        }
        if self.findings.is_empty() {
            out.push_str("Nothing wrong found.\n");
        }
        out
    }

    /// One self-contained HTML page: the same ranked findings, and a timeline of ARP
    /// activity per second with the findings marked where they start.
    pub fn to_html(&self) -> String {
        crate::html::render(self)
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
            .vlan
            .map(|v| format!(" vlan {v}"))
            .unwrap_or_default(),
        finding.count,
        finding.first_seen_s,
    );
    let _ = writeln!(out, "     {}", finding.message);
    let _ = writeln!(out, "     what to do: {}", finding.advice);
    out
}
