//! `nlb params --config FILE`: the effective configuration, defaults filled in.

use crate::CliError;
use crate::cmd::load_config;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let config = load_config(&args.config)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&config).expect("plain values serialise")
        );
        return Ok(());
    }
    let cluster = &config.cluster;
    println!("[cluster]");
    println!("interface = {}", cluster.interface);
    println!("vips = {:?}", cluster.vips);
    println!("mode = {}", cluster.mode);
    println!("heartbeat_ms = {}", cluster.heartbeat_ms);
    println!(
        "tolerance = {}  # a member is dead after {} ms",
        cluster.tolerance,
        config.failure_window_ms()
    );
    match &cluster.key_file {
        Some(path) => println!("key_file = {}", path.display()),
        None => println!("key_file = (none: heartbeats are not authenticated)"),
    }
    println!("\n[host]\nid = {}", config.host.id);
    println!(
        "initial_state = {}",
        format!("{:?}", config.host.initial_state).to_lowercase()
    );
    println!("control_socket = {}", config.host.control_socket.display());
    for (index, rule) in config.rules.iter().enumerate() {
        println!("\n[[rule]]  # rule {}", index + 1);
        println!(
            "vip = {}",
            rule.vip.map_or("all".to_owned(), |v| v.to_string())
        );
        println!("ports = {}-{}", rule.ports.start(), rule.ports.end());
        println!(
            "protocol = {}",
            format!("{:?}", rule.protocol).to_lowercase()
        );
        println!("mode = {}", format!("{:?}", rule.mode).to_lowercase());
        println!(
            "affinity = {}",
            format!("{:?}", rule.affinity).to_lowercase()
        );
        println!(
            "weight = {}",
            rule.weight.map_or("equal".to_owned(), |w| w.to_string())
        );
        if let Some(priority) = rule.priority {
            println!("priority = {priority}");
        }
    }
    for check in &config.checks {
        use nlb_core::check::{CheckKind, GuardedRules};
        println!("\n[[check]]\nname = {}", check.name);
        match &check.kind {
            CheckKind::Tcp { target } => println!("type = tcp\ntarget = {target}"),
            CheckKind::Http {
                host,
                path,
                expect_status,
                ..
            } => {
                println!("type = http\ntarget = http://{host}{path}");
                match expect_status {
                    Some(status) => println!("expect_status = {status}"),
                    None => println!("expect_status = (any 2xx or 3xx)"),
                }
            }
            CheckKind::Exec { argv } => println!("type = exec\ntarget = {argv:?}"),
        }
        println!(
            "interval_ms = {}\ntimeout_ms = {}\nfall = {}\nrise = {}",
            check.interval.as_millis(),
            check.timeout.as_millis(),
            check.fall,
            check.rise
        );
        match &check.rules {
            GuardedRules::All => println!("rules = all"),
            GuardedRules::Some(slots) => println!(
                "rules = {}",
                slots
                    .iter()
                    .map(|slot| format!("rule {}", slot + 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        println!("action = {}", format!("{:?}", check.action).to_lowercase());
    }
    Ok(())
}
