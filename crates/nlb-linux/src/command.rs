//! Running system tools (`ip`, `nft`) with errors that name the command and its output.

use std::io::Write;
use std::process::{Command, Stdio};

/// A system command failed or could not start.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed or not executable.
    #[error(
        "could not run `{command}`: {source}. Is it installed? (Debian: apt-get install {package})"
    )]
    Spawn {
        /// The command line.
        command: String,
        /// The Debian package that provides it.
        package: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The program ran and exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

fn package_of(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        "tcpdump" => "tcpdump",
        "timeout" => "coreutils",
        _ => "iproute2",
    }
}

/// Runs `program args...`, optionally feeding `stdin`, and returns its stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CommandError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let spawn_error = |source| CommandError::Spawn {
        command: command.clone(),
        package: package_of(program),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
