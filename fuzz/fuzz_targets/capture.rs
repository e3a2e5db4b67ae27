//! The doctor end to end: any bytes as a capture file are either refused as not a
//! capture, or read and analysed into a report that renders as text, JSON and HTML,
//! with every frame counted; never a panic (overflow checks on with `-a`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_doctor::{Settings, diagnose};

fuzz_target!(|data: &[u8]| {
    let settings = Settings {
        // Small tables, so that the "tables full" paths run too.
        max_tracked: 8,
        ..Settings::default()
    };
    let Ok(report) = diagnose(data, None, settings, |_| {}) else { return };
    // Frames are numbered from 1; a file cut inside a record is reported at the record
    // after the last whole frame.
    let counted: u64 = report.capture.counters.frames;
    assert!(report.findings.iter().all(|f| f.first_frame <= counted + 1));
    let _ = report.to_text(usize::MAX);
    let _ = report.to_json();
    let _ = report.to_html();
});
