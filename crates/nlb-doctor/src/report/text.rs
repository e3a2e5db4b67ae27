//! The terminal report.

use super::{Report, finding_text};
use crate::finding::Severity;
use std::fmt::Write as _;

impl Report {
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
                let outer = c.vlans.iter().map(u16::to_string);
                let listed: Vec<String> = outer.chain(c.vlan_stacks.iter().cloned()).collect();
                format!("; VLANs {}", listed.join(", "))
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
}
