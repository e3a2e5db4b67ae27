//! `nlb doctor <capture>` and `nlb watch <interface>`: the nlb-doctor analysis over a
//! capture file, or live over an AF_PACKET socket that never sends.

use crate::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nlb_doctor::analyzer::Analyzer;
use nlb_doctor::report::finding_text;
use nlb_doctor::{Report, Settings};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Thresholds shared by `doctor` and `watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct Thresholds {
    /// A cluster VIP: problems with it are reported as errors, with cluster advice.
    #[arg(long = "vip", value_name = "IP")]
    vips: Vec<Ipv4Addr>,
    /// More requests than this from one source within --storm-window-ms is a storm.
    #[arg(long, default_value_t = 30, value_name = "N")]
    storm_requests: u32,
    /// The storm window.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    storm_window_ms: u32,
    /// Two MACs claiming one IP within this many seconds are a duplicate.
    #[arg(long, default_value_t = 60, value_name = "S")]
    duplicate_window: u32,
    /// A request with no reply within this many milliseconds is unanswered.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    reply_timeout_ms: u32,
    /// The cluster key (`cluster.key_file`): nlb heartbeats it does not verify are
    /// reported as forged and left out of the analysis.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

impl Thresholds {
    fn settings(&self) -> Result<Settings, CliError> {
        let heartbeat_key = self
            .key_file
            .as_deref()
            .map(crate::keyfile::read)
            .transpose()?;
        Ok(Settings {
            vips: self.vips.clone(),
            storm_requests: self.storm_requests,
            storm_window_ns: i64::from(self.storm_window_ms) * 1_000_000,
            duplicate_window_ns: i64::from(self.duplicate_window) * 1_000_000_000,
            reply_timeout_ns: i64::from(self.reply_timeout_ms) * 1_000_000,
            heartbeat_key,
            ..Settings::default()
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// A pcap or pcapng file (Ethernet, 802.1Q, Linux cooked SLL or SLL2).
    capture: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with a timeline to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// List every finding, not only the 25 most important.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    thresholds: Thresholds,
}

/// Runs `nlb doctor`.
pub(crate) fn doctor(args: &DoctorArgs) -> Result<(), CliError> {
    let file = std::fs::File::open(&args.capture).map_err(|err| {
        CliError::bad_input(format!(
            "cannot open the capture {}: {err}. Check the path",
            args.capture.display()
        ))
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A progress bar on a terminal only; indicatif draws nothing when stderr is not one.
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({bytes_per_sec}, {eta} left)",
        )
        .expect("a valid template"),
    );
    let name = args.capture.display().to_string();
    let report = nlb_doctor::diagnose(
        // pcap-parser reads through its own buffer; another one would copy twice.
        file,
        Some(name.clone()),
        args.thresholds.settings()?,
        |progress| {
            bar.set_position(progress.bytes);
            bar.set_message(format!("{} frames", progress.frames));
        },
    )
    .map_err(|err| CliError::bad_input(format!("{name}: {err}")))?;
    bar.finish_and_clear();
    if let Some(path) = &args.html {
        std::fs::write(path, report.to_html()).map_err(|err| {
            CliError::failed(format!(
                "cannot write the HTML report {}: {err}. Check that the directory exists and is writable",
                path.display()
            ))
        })?;
    }
    if args.json {
        // Streamed: tens of megabytes for a sick network, never held whole. As in
        // print_out, a closed pipe is not an error.
        use std::io::Write;
        let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let _ = report
            .write_json(&mut stdout)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        return Ok(());
    }
    let mut text = report.to_text(if args.all { usize::MAX } else { TEXT_LIMIT });
    if let Some(path) = &args.html {
        text.push_str(&format!("HTML report: {}", path.display()));
    }
    print_out(&text);
    Ok(())
}

/// Findings the terminal report lists without --all.
const TEXT_LIMIT: usize = 25;

/// Prints to stdout; a closed pipe (`nlb doctor f | head`) is not an error.
fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
}

#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The interface to watch (made promiscuous while watching; nothing is sent).
    interface: String,
    /// Print findings and the summary as JSON lines.
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds instead of at Ctrl-C.
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    duration: Option<f64>,
    #[command(flatten)]
    thresholds: Thresholds,
}

/// Seconds for `--duration`: finite, from 0 to a year.
fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=31_536_000.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0 to 31536000"
        )),
    }
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Runs `nlb watch`: findings print as they first appear; the ranked summary prints on
/// Ctrl-C, SIGTERM or after `--duration`.
pub(crate) fn watch(args: &WatchArgs) -> Result<(), CliError> {
    let socket = nlb_linux::packet::PacketSocket::observe(&args.interface).map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::PermissionDenied {
            "run as root or give the binary CAP_NET_RAW"
        } else {
            "check the name with `ip link`"
        };
        CliError::failed(format!(
            "cannot watch {}: {err}. Fix: {hint}",
            args.interface
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::failed(format!("cannot start the event loop: {err}")))?;
    let mut analyzer = Analyzer::new(args.thresholds.settings()?);
    let started = now_ns();
    runtime.block_on(async {
        let socket = socket.into_async().map_err(|err| {
            CliError::failed(format!("cannot watch {}: {err}", args.interface))
        })?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|err| CliError::failed(format!("cannot handle SIGTERM: {err}")))?;
        let deadline = args.duration.map(|s| {
            // `--duration` is checked by clap to be a finite number of seconds.
            tokio::time::Instant::now() + Duration::from_secs_f64(s)
        });
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut buf = vec![0u8; 65536 + 4];
        let mut number = 0u64;
        // Said once the socket is bound, so a script knows from when frames count.
        if args.json {
            print_out(
                &serde_json::json!({"event": "watching", "interface": args.interface})
                    .to_string(),
            );
        } else {
            eprintln!(
                "watching {} (Ctrl-C for the summary); nothing is sent",
                args.interface
            );
        }
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => break,
                _ = tick.tick() => analyzer.handle_timeout(now_ns()),
                ready = socket.readable() => {
                    let mut guard = ready.map_err(|err| CliError::failed(format!("watch failed: {err}")))?;
                    loop {
                        match guard.get_inner().try_recv_tagged(&mut buf) {
                            Ok(frame) => {
                                number += 1;
                                analyzer.handle_ethernet(number, now_ns(), &buf[frame]);
                            }
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            Err(err) => return Err(CliError::failed(format!("watch failed: {err}"))),
                        }
                    }
                }
            }
            while let Some(finding) = analyzer.poll_raised() {
                if args.json {
                    print_out(&serde_json::json!({"event": "finding", "finding": finding}).to_string());
                } else {
                    print_out(finding_text(0, &finding).trim_end());
                }
            }
        }
        Ok::<(), CliError>(())
    })?;
    analyzer.handle_timeout(now_ns());
    let findings = analyzer.finish();
    let report = Report {
        capture: nlb_doctor::CaptureSummary {
            file: Some(format!("live:{}", args.interface)),
            frames: analyzer.counters().frames,
            duration: (now_ns() - started) as f64 / 1e9,
            link_types: vec!["EN10MB".to_owned()],
            vlans: analyzer.vlans(),
            vlan_stacks: analyzer.vlan_stacks(),
            bytes: 0,
            start_unix_s: started as f64 / 1e9,
            end: "complete".to_owned(),
            counters: analyzer.counters().clone(),
        },
        findings,
        timeline: analyzer.timeline().to_vec(),
    };
    if args.json {
        print_out(
            &serde_json::json!({"event": "summary", "capture": report.capture, "findings": report.findings})
                .to_string(),
        );
    } else {
        print_out(&format!("\nsummary:\n{}", report.to_text(TEXT_LIMIT)));
    }
    Ok(())
}
