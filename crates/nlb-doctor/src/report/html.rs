//! The HTML report: one file, no scripts, no external resources. The timeline is an
//! inline SVG: ARP frames per time slice stacked by kind, with a marker for each finding
//! where it starts (hover for its kind), coloured by severity.

use super::Report;
use crate::finding::Severity;
use crate::model::Bin;
use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "#c62828",
        Severity::Warning => "#ef6c00",
        Severity::Info => "#1565c0",
    }
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 220.0;
const MAX_COLUMNS: usize = 480;
/// Height of one findings lane under the chart.
const LANE: f64 = 16.0;

/// Merges per-second bins into at most [`MAX_COLUMNS`] columns.
fn columns(bins: &[Bin]) -> (Vec<Bin>, usize) {
    let per = bins.len().div_ceil(MAX_COLUMNS).max(1);
    let merged = bins
        .chunks(per)
        .map(|chunk| {
            chunk.iter().fold(Bin::default(), |a, b| Bin {
                requests: a.requests + b.requests,
                replies: a.replies + b.replies,
                gratuitous: a.gratuitous + b.gratuitous,
                malformed: a.malformed + b.malformed,
            })
        })
        .collect();
    (merged, per)
}

fn timeline(report: &Report) -> String {
    let (cols, per) = columns(&report.timeline);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="-50 0 {} {}" width="100%" role="img" aria-label="ARP activity over time, and findings by severity">"##,
        WIDTH + 60.0,
        HEIGHT + 3.0 * LANE + 30.0
    );
    let max = cols
        .iter()
        .map(|b| b.requests + b.replies + b.gratuitous + b.malformed)
        .max()
        .unwrap_or(0)
        .max(1);
    let column_width = WIDTH / cols.len().max(1) as f64;
    for (i, bin) in cols.iter().enumerate() {
        let x = i as f64 * column_width;
        let mut y = HEIGHT;
        for (value, fill, what) in [
            (bin.requests, "#90a4ae", "requests"),
            (bin.replies, "#66bb6a", "replies"),
            (bin.gratuitous, "#ab47bc", "gratuitous"),
            (bin.malformed, "#ff7043", "malformed"),
        ] {
            if value == 0 {
                continue;
            }
            let h = f64::from(value) / f64::from(max) * (HEIGHT - 10.0);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{:.2}" height="{h:.2}" fill="{fill}"><title>{}-{} s: {value} {what}</title></rect>"#,
                (column_width - 0.5).max(0.5),
                i * per,
                (i + 1) * per
            );
        }
    }
    let duration = (cols.len() * per).max(1) as f64;
    // Findings go in lanes under the chart, one per severity, so that they never hide
    // the traffic: a tick where each starts, a thin bar to where it ends.
    for (lane, severity) in [Severity::Error, Severity::Warning, Severity::Info]
        .into_iter()
        .enumerate()
    {
        let y = HEIGHT + 8.0 + lane as f64 * LANE;
        let _ = write!(
            svg,
            r##"<text x="-4" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            y + LANE * 0.7,
            severity.name()
        );
        for finding in report.findings.iter().filter(|f| f.severity == severity) {
            let x = (finding.first_seen_s / duration * WIDTH).clamp(0.0, WIDTH - 1.0);
            let end = (finding.last_seen_s / duration * WIDTH).clamp(x, WIDTH);
            let _ = write!(
                svg,
                r#"<g fill="{}"><title>{} {} at {:.3} s</title><rect x="{x:.2}" y="{:.1}" width="{:.2}" height="2" fill-opacity="0.5"/><rect x="{x:.2}" y="{y:.1}" width="2" height="{:.1}"/></g>"#,
                colour(severity),
                escape(finding.kind.name()),
                escape(&finding.ip.map(|ip| ip.to_string()).unwrap_or_default()),
                finding.first_seen_s,
                y + LANE / 2.0 - 1.0,
                (end - x).max(2.0),
                LANE - 3.0
            );
        }
    }
    let axis = HEIGHT + 8.0 + 3.0 * LANE + 14.0;
    let _ = write!(
        svg,
        r##"<line x1="0" x2="{WIDTH}" y1="{HEIGHT}" y2="{HEIGHT}" stroke="#333"/><text x="0" y="{axis}" font-size="12">0 s</text><text x="{WIDTH}" y="{axis}" font-size="12" text-anchor="end">{duration:.0} s</text><text x="4" y="12" font-size="12">max {max} ARP frames per {per} s</text></svg>"##
    );
    svg
}

impl Report {
    /// One self-contained HTML page: the same ranked findings, and a timeline of ARP
    /// activity per second with the findings marked where they start.
    pub fn to_html(&self) -> String {
        render(self)
    }
}

/// Renders the whole page.
fn render(report: &Report) -> String {
    let c = &report.capture;
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>nlb doctor: {}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:6px;text-align:left;vertical-align:top}}
.sev{{color:#fff;padding:2px 6px;border-radius:4px;font-size:90%}}.advice{{color:#444;font-style:italic}}
.legend span{{display:inline-block;margin-right:1em}}.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px}}
code{{background:#f4f4f4;padding:1px 3px}}</style></head><body>"#,
        escape(c.file.as_deref().unwrap_or("capture"))
    );
    let _ = write!(
        html,
        "<h1>nlb doctor</h1><p><code>{}</code>: {} frames over {:.1} s; link types {}; {} ARP, {} IGMP, {} nlb and {} Windows NLB heartbeats; {} malformed; file {}.</p>",
        escape(c.file.as_deref().unwrap_or("capture")),
        c.frames,
        c.duration,
        escape(&c.link_types.join(", ")),
        c.counters.arp,
        c.counters.igmp,
        c.counters.nlb_heartbeats,
        c.counters.msnlb_heartbeats,
        c.counters.malformed,
        escape(&c.end)
    );
    html.push_str("<h2>Timeline</h2>");
    html.push_str(r##"<p class="legend"><span><i style="background:#90a4ae"></i>requests</span><span><i style="background:#66bb6a"></i>replies</span><span><i style="background:#ab47bc"></i>gratuitous</span><span><i style="background:#ff7043"></i>malformed</span><span>findings below the chart, by severity: hover for the kind</span></p>"##);
    html.push_str(&timeline(report));
    let _ = write!(
        html,
        "<h2>Findings ({})</h2><table><tr><th>#</th><th>severity</th><th>kind</th><th>where</th><th>frames</th><th>what was seen, and what to do</th></tr>",
        report.findings.len()
    );
    for (i, f) in report.findings.iter().enumerate() {
        let place = [
            f.ip.map(|ip| ip.to_string()),
            f.vlan_name().map(|v| format!("VLAN {v}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td><span class="sev" style="background:{}">{}</span></td><td><code>{}</code></td><td>{}<br><small>{}</small></td><td>{}-{}<br>{}x</td><td>{}<div class="advice">{}</div></td></tr>"#,
            i + 1,
            colour(f.severity),
            f.severity.name(),
            f.kind.name(),
            escape(&place),
            escape(
                &f.macs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            f.first_frame,
            f.last_frame,
            f.count,
            escape(&f.message),
            escape(&f.advice)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn long_timelines_are_merged() {
        let bins = vec![
            Bin {
                requests: 1,
                ..Bin::default()
            };
            1000
        ];
        let (cols, per) = columns(&bins);
        assert_eq!(per, 3);
        assert_eq!(cols.len(), 334);
        assert_eq!(cols[0].requests, 3);
    }
}
