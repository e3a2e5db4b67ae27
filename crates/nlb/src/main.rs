//! `nlb`: Network Load Balancing for Linux. One binary for the daemon and every
//! operator command.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Network Load Balancing for Linux: several hosts share virtual IPs and all serve them.
#[derive(Debug, Parser)]
#[command(name = "nlb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the cluster MACs a VIP gets in each mode, and what each mode needs from the switch.
    Ip2mac(cmd::ip2mac::Args),
    /// Show each host's share of the buckets before and after a host joins or leaves.
    Plan(cmd::plan::Args),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ip2mac(args) => cmd::ip2mac::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nlb: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}
