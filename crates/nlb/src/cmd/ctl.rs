//! Commands that talk to the local daemon over its control socket: `query`, `start`,
//! `stop`, `drainstop`, `suspend`, `resume`.

use crate::CliError;
use crate::control::Status;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where to find the daemon.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The daemon's control socket.
    #[arg(long, default_value = nlb_core::config::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Sends one request and returns the daemon's JSON answer.
pub(crate) fn request(socket: &Path, verb: &str) -> Result<serde_json::Value, CliError> {
    let no_daemon = |err: std::io::Error| {
        CliError::failed(format!(
            "no nlb daemon answers on {} ({err}): start one with `sudo nlb run --config FILE`, \
             or give its socket with --socket",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(|err| {
        if err.kind() == std::io::ErrorKind::PermissionDenied {
            CliError::failed(format!(
                "permission denied on {}: the control socket is for root; run with sudo",
                socket.display()
            ))
        } else {
            no_daemon(err)
        }
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(no_daemon)?;
    stream
        .write_all(format!("{verb}\n").as_bytes())
        .map_err(no_daemon)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(no_daemon)?;
    serde_json::from_str(&line)
        .map_err(|err| CliError::failed(format!("the daemon sent a bad answer ({err}): {line}")))
}

pub(crate) fn query(target: &Target) -> Result<(), CliError> {
    let answer = request(&target.socket, "query")?;
    if target.json {
        println!("{answer}");
        return Ok(());
    }
    let status: Status = serde_json::from_value(answer)
        .map_err(|err| CliError::failed(format!("the daemon sent a bad status: {err}")))?;
    println!(
        "host {} is {} (mode {}, cluster MAC {}, VIPs {:?})",
        status.host_id, status.state, status.mode, status.cluster_mac, status.vips
    );
    if let Some(why) = &status.misconfigured {
        println!("misconfigured: {why}");
    }
    println!(
        "view {} with members {:?}; this host owns {:?} buckets per rule, {} connections",
        status.view_epoch, status.view_members, status.owned_buckets, status.connections
    );
    println!(
        "  {:>4}  {:<13}  {:<17}  {:>7}  {:>10}",
        "id", "state", "mac", "buckets", "heard"
    );
    for m in &status.members {
        let heard = format!("{:.0} ms ago", m.last_heard_ms);
        println!(
            "  {:>4}  {:<13}  {:<17}  {:>7}  {:>10}{}",
            m.id,
            m.state,
            m.mac,
            m.buckets,
            heard,
            if m.config_matches {
                ""
            } else {
                "  (config differs)"
            }
        );
    }
    for c in &status.conflicts {
        println!("conflict: {} claimed by {} at {:.3}", c.ip, c.mac, c.at);
    }
    Ok(())
}

pub(crate) fn command(target: &Target, verb: &str) -> Result<(), CliError> {
    let answer = request(&target.socket, verb)?;
    if target.json {
        println!("{answer}");
    }
    let state = answer["state"].as_str().unwrap_or("unknown");
    if answer["ok"].as_bool() == Some(true) {
        if !target.json {
            println!("{state}");
        }
        Ok(())
    } else {
        let error = answer["error"].as_str().unwrap_or("the daemon refused");
        Err(CliError::failed(format!(
            "{verb}: {error} (state: {state})"
        )))
    }
}
