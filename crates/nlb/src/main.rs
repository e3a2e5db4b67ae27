//! `nlb`: Network Load Balancing for Linux. One binary for the daemon and every
//! operator command.

mod checks;
mod cmd;
mod control;
mod events;
mod kernel;
mod keyfile;
mod metrics;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Network Load Balancing for Linux: several hosts share virtual IPs and all serve them.
#[derive(Debug, Parser)]
#[command(name = "nlb", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the cluster MACs a VIP gets in each mode, and what each mode needs from the switch.
    Ip2mac(cmd::ip2mac::Args),
    /// Write a new cluster key file (32 random bytes, mode 0600).
    Keygen(cmd::keygen::Args),
    /// Show each host's share of the buckets before and after a host joins or leaves.
    Plan(cmd::plan::Args),
    /// Run the daemon in the foreground.
    Run(cmd::run::Args),
    /// Show this host's state, the members and what each owns.
    Query(cmd::ctl::Target),
    /// Join the cluster.
    Start(cmd::ctl::Target),
    /// Leave the cluster at once; existing connections are dropped.
    Stop(cmd::ctl::Target),
    /// Take no new connections, let existing ones finish, then stop.
    Drainstop(cmd::ctl::DrainstopArgs),
    /// Halt all cluster operations until resume.
    Suspend(cmd::ctl::Target),
    /// Undo suspend.
    Resume(cmd::ctl::Target),
    /// Handle a rule again on this host: `nlb enable 198.18.0.10:80` or `all`.
    Enable(cmd::ctl::RuleArgs),
    /// Drop all traffic of a rule on this host, existing connections included.
    Disable(cmd::ctl::RuleArgs),
    /// Take no new connections for a rule on this host; existing ones finish.
    Drain(cmd::ctl::RuleArgs),
    /// The effective configuration, with defaults filled in.
    Params(cmd::params::Args),
    /// Which host handles a client's flow now, and why (rule, bucket, owner).
    Filter(cmd::ctl::FilterArgs),
    /// Diagnose ARP, IGMP and NLB cluster problems in a pcap or pcapng capture.
    Doctor(cmd::doctor::DoctorArgs),
    /// The doctor's analysis live on an interface; findings print as they appear.
    Watch(cmd::doctor::WatchArgs),
    /// Build a whole cluster on this machine in network namespaces and watch it work (root).
    Lab(cmd::lab::Args),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page, or write one per command with --out-dir.
    Man(cmd::docs::ManArgs),
    /// A tiny HTTP server that answers with its name (for tests and the lab).
    #[command(hide = true)]
    ServeHttp(cmd::serve::Args),
}

/// A failure to report to the user: one line on stderr, and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// The user gave input the command cannot take (exit code 2, as for usage errors).
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 2,
        }
    }

    /// What went wrong, for logs.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The command could not do its job (exit code 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ip2mac(args) => cmd::ip2mac::run(&args),
        Command::Keygen(args) => cmd::keygen::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Query(target) => cmd::ctl::query(&target),
        Command::Start(target) => cmd::ctl::command(&target, "start"),
        Command::Stop(target) => cmd::ctl::command(&target, "stop"),
        Command::Drainstop(args) => cmd::ctl::drainstop(&args),
        Command::Suspend(target) => cmd::ctl::command(&target, "suspend"),
        Command::Resume(target) => cmd::ctl::command(&target, "resume"),
        Command::Filter(args) => cmd::ctl::filter(&args),
        Command::Enable(args) => cmd::ctl::rule_command(&args, "enable"),
        Command::Disable(args) => cmd::ctl::rule_command(&args, "disable"),
        Command::Drain(args) => cmd::ctl::rule_command(&args, "drain"),
        Command::Params(args) => cmd::params::run(&args),
        Command::Lab(args) => cmd::lab::run(&args),
        Command::Doctor(args) => cmd::doctor::doctor(&args),
        Command::Watch(args) => cmd::doctor::watch(&args),
        Command::Completions(args) => cmd::docs::completions(&args),
        Command::Man(args) => cmd::docs::man(&args),
        Command::ServeHttp(args) => cmd::serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nlb: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}
