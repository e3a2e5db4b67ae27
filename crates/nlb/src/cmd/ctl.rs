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
    if !status.daemon.dataplane_healthy {
        println!(
            "data plane failing: nft batches or lease refreshes fail ({} and {} so far); \
             this host owns nothing until they work again (see the daemon's log)",
            status.daemon.nft_failures, status.daemon.lease_failures
        );
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
        if !m.check_down_rules.is_empty() {
            let rules: Vec<String> = m
                .check_down_rules
                .iter()
                .map(|slot| format!("rule {}", slot + 1))
                .collect();
            println!(
                "        a health check is down for {}: it leaves them to the others",
                rules.join(", ")
            );
        }
    }
    for c in &status.checks {
        let last = match c.last_passed {
            None => "not run yet".to_owned(),
            Some(true) => "last run passed".to_owned(),
            Some(false) => format!(
                "last run failed: {}",
                c.last_error.as_deref().unwrap_or("no reason given")
            ),
        };
        let health = if c.panic {
            format!(
                "{} (ignored: down on every host that serves its rules)",
                c.health
            )
        } else {
            c.health.clone()
        };
        println!(
            "check {} ({} {}) is {health}; {last}; {} runs, {} changes, fall {} rise {}, {} on down",
            c.name, c.kind, c.target, c.runs, c.transitions, c.fall, c.rise, c.action
        );
    }
    for c in &status.conflicts {
        println!("conflict: {} claimed by {} at {:.3}", c.ip, c.mac, c.at);
    }
    for p in &status.probe_warnings {
        println!(
            "warning: {} probed for {} at {:.3} (someone is about to use our address)",
            p.mac, p.ip, p.at
        );
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

#[derive(Debug, clap::Args)]
pub(crate) struct FilterArgs {
    /// The client, as IP or IP:PORT (the port matters for affinity none).
    client: String,
    /// The service, as VIP:PORT.
    service: String,
    /// The protocol.
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
    proto: String,
    #[command(flatten)]
    target: Target,
}

/// `nlb filter`: which host handles this flow now, and why.
pub(crate) fn filter(args: &FilterArgs) -> Result<(), CliError> {
    let (client_ip, client_port) = match args.client.split_once(':') {
        Some((ip, port)) => (ip, port),
        None => (args.client.as_str(), "40000"),
    };
    let (vip, port) = args.service.split_once(':').ok_or_else(|| {
        CliError::bad_input(format!(
            "'{}' is not VIP:PORT, such as 198.18.0.10:80",
            args.service
        ))
    })?;
    let bad = |what: &str, text: &str| CliError::bad_input(format!("'{text}' is not {what}"));
    client_ip
        .parse::<std::net::Ipv4Addr>()
        .map_err(|_| bad("an IPv4 address", client_ip))?;
    vip.parse::<std::net::Ipv4Addr>()
        .map_err(|_| bad("an IPv4 address", vip))?;
    client_port
        .parse::<u16>()
        .map_err(|_| bad("a port", client_port))?;
    port.parse::<u16>().map_err(|_| bad("a port", port))?;
    let request = format!(
        "filter {client_ip} {client_port} {vip} {port} {}",
        args.proto
    );
    let answer = self::request(&args.target.socket, &request)?;
    if answer["ok"].as_bool() != Some(true) {
        return Err(CliError::failed(
            answer["error"]
                .as_str()
                .unwrap_or("the daemon refused")
                .to_owned(),
        ));
    }
    if args.target.json {
        println!("{answer}");
        return Ok(());
    }
    let owners: Vec<String> = answer["owners"]
        .as_array()
        .map(|o| o.iter().map(|h| format!("host {h}")).collect())
        .unwrap_or_default();
    let handled = match owners.len() {
        0 => "nobody now (the bucket is in hand-off, or its owner failed); the client's SYN is retried".to_owned(),
        _ => owners.join(" and "),
    };
    println!(
        "{}:{client_port} -> {vip}:{port}/{}: {}, affinity {}, bucket {}: handled by {handled}; this host (host {}) {}",
        client_ip,
        args.proto,
        answer["rule"].as_str().unwrap_or("?"),
        answer["affinity"].as_str().unwrap_or("?"),
        answer["bucket"],
        answer["host_id"],
        if answer["accepted_here"] == true {
            "accepts it"
        } else {
            "drops it"
        }
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct RuleArgs {
    /// The rule, as the VIP:PORT it covers, or `all`.
    rule: String,
    #[command(flatten)]
    target: Target,
}

/// `nlb enable|disable|drain <VIP:PORT|all>`.
pub(crate) fn rule_command(args: &RuleArgs, verb: &str) -> Result<(), CliError> {
    command(&args.target, &format!("{verb} {}", args.rule))
}

#[derive(Debug, clap::Args)]
pub(crate) struct DrainstopArgs {
    /// Wait until the open connections have finished and the host has stopped.
    #[arg(long)]
    wait: bool,
    /// With --wait, give up after this many seconds (exit 1).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    target: Target,
}

/// `nlb drainstop [--wait [--timeout S]]`, showing progress while connections finish.
pub(crate) fn drainstop(args: &DrainstopArgs) -> Result<(), CliError> {
    command(&args.target, "drainstop")?;
    if !args.wait {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut last = None;
    loop {
        let status = request(&args.target.socket, "query")?;
        let state = status["state"].as_str().unwrap_or("unknown").to_owned();
        let connections = status["connections"].as_u64().unwrap_or(0);
        if state != "draining" {
            if args.target.json {
                println!("{}", serde_json::json!({"ok": true, "state": state}));
            } else {
                println!("drained: {state}");
            }
            return Ok(());
        }
        if last != Some(connections) && !args.target.json {
            eprintln!("draining: {connections} connections still open");
            last = Some(connections);
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "still draining after {} s with {connections} connections open; the host keeps \
                 draining, run `nlb stop` to drop them",
                args.timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
