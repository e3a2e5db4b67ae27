//! Where the doctor's time goes on one capture: reading and analysing the frames,
//! putting the findings in words, and writing the JSON, each timed apart (the JSON of a
//! second, whole diagnosis). The capture is read into memory first, so file reads are
//! not in the times.
//!
//! `cargo run --release -p nlb-doctor --example phases -- CAPTURE.pcap`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: phases CAPTURE.pcap")?;
    let bytes = std::fs::read(&path)?;
    let start = Instant::now();
    let mut capture = nlb_doctor::CaptureReader::new(&bytes[..])?;
    let mut analyzer = nlb_doctor::Analyzer::new(nlb_doctor::Settings::default());
    while capture
        .next_with(|record| match nlb_doctor::link::decode(&record) {
            Ok(frame) => analyzer.handle_frame(&frame),
            Err(problem) => analyzer.handle_link_problem(record.number, record.ts_ns, problem),
        })
        .is_some()
    {}
    let analysed = start.elapsed();
    let findings = analyzer.finish();
    let explained = start.elapsed();
    let report = nlb_doctor::diagnose(&bytes[..], Some(path.clone()), Default::default(), |_| {})?;
    let diagnosed = start.elapsed();
    let json = report.to_json();
    let rendered = start.elapsed();
    let frames = analyzer.counters().frames;
    println!(
        "{path}: {frames} frames, {} findings, {} bytes of JSON\n  analyse {:.3} s ({:.1} M frames/s)\n  finish  {:.3} s\n  to_json {:.3} s",
        findings.len(),
        json.len(),
        analysed.as_secs_f64(),
        frames as f64 / analysed.as_secs_f64() / 1e6,
        (explained - analysed).as_secs_f64(),
        (rendered - diagnosed).as_secs_f64(),
    );
    Ok(())
}
