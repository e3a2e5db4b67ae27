//! Applying nft rulesets: whole batches through `nft -f -`, and a long-lived `nft -i`
//! session for the frequent changes (lease refreshes, ownership changes as map
//! elements), so that they cost a pipe write and not a process each.
//!
//! # How the session knows a command is done
//!
//! The session runs `nft -i` **without `--echo`**. Checked on nft 1.0.6 (kernel 6.18,
//! `docs/research/issue16-kernel-facts.md`, sections 3 and 6):
//!
//! - without `--echo`, nft prints nothing on success and `Error: ...` (then the command
//!   and a caret line) on stderr for each failure;
//! - with `--echo`, a line that starts with `delete` or `flush`, or that changes nothing,
//!   prints no `# new generation`, so waiting for it hangs; and `--echo` makes nft fetch
//!   its whole cache, set elements included, on every command: 0.8–1.1 ms on a small
//!   ruleset, **150–300 ms** once any table in the namespace holds ~20k set elements;
//! - each input line is one transaction (`;`-separated commands on one line commit or
//!   roll back together).
//!
//! So [`NftSession::run`] writes the command line and then a *marker*: a line that is a
//! syntax error by construction (`nlbsync<N>`). nft answers it on stderr, after anything
//! the command printed there (one process, one unbuffered stream), with
//! `Error: syntax error ...` and the marker echoed on the next line. Reading stderr up to
//! the echoed marker gives every error of the command: none means it committed. The
//! marker costs nft a parse and no netlink round trip.

use crate::command::{CommandError, run};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Applies each batch atomically, in order.
pub fn apply(batches: &[String]) -> Result<(), CommandError> {
    for batch in batches {
        run("nft", &["-f", "-"], Some(batch))?;
    }
    Ok(())
}

/// A command sent to the session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// nft refused the command.
    #[error("nft refused `{command}`: {message}")]
    Refused {
        /// The command, trimmed.
        command: String,
        /// nft's error line.
        message: String,
    },
    /// nft did not answer in time.
    #[error("nft did not confirm `{command}` within {timeout:?}; the session is restarted")]
    Timeout {
        /// The command, trimmed.
        command: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The session's process is gone or its pipe broke.
    #[error("the `nft -i` session died ({0}); it is restarted")]
    Dead(String),
}

/// The marker line that follows command `n`: a syntax error nft echoes back on stderr.
fn marker(n: u64) -> String {
    format!("nlbsync{n}")
}

/// An interactive `nft -i` process that takes one command per line.
#[derive(Debug)]
pub struct NftSession {
    child: Child,
    stdin: ChildStdin,
    /// nft's stderr, line by line.
    lines: mpsc::Receiver<String>,
    /// The number of the last marker sent.
    sent: u64,
}

impl NftSession {
    /// Starts `nft -i`, with a thread reading its stderr.
    pub fn start() -> std::io::Result<NftSession> {
        NftSession::start_program("nft")
    }

    /// Starts `program -i` as the session (`nft`, or a stand-in that misbehaves, for
    /// tests).
    pub fn start_program(program: &str) -> std::io::Result<NftSession> {
        let mut child = Command::new(program)
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("nft-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(NftSession {
            child,
            stdin,
            lines,
            sent: 0,
        })
    }

    /// Sends one command (one line ending in `\n`: one transaction) and waits up to
    /// `timeout` for nft to have run it; an `Error:` nft printed for it is a refusal.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<(), SessionError> {
        debug_assert!(
            command.ends_with('\n') && !command.trim_end().contains('\n'),
            "one line: {command:?}"
        );
        let trimmed = || command.trim().chars().take(200).collect::<String>();
        self.sent += 1;
        let marker = marker(self.sent);
        self.stdin
            .write_all(format!("{command}{marker}\n").as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|err| SessionError::Dead(err.to_string()))?;
        let deadline = std::time::Instant::now() + timeout;
        // Every `Error:` line since the previous marker; the last one is the marker's.
        let mut errors: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(SessionError::Timeout {
                        command: trimmed(),
                        timeout,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(SessionError::Dead("nft exited".into()));
                }
            };
            if line.contains("Error:") {
                errors.push(line);
            } else if line.trim() == marker {
                // The marker's own error is the last one; anything before is the
                // command's. Without it, this is not the nft the protocol was checked
                // on, and "no error" would mean nothing: fail closed.
                if !errors.pop().is_some_and(|e| e.contains("syntax error")) {
                    return Err(SessionError::Dead(format!(
                        "nft echoed the marker {marker} without its syntax error"
                    )));
                }
                return match errors.into_iter().next() {
                    None => Ok(()),
                    Some(message) => Err(SessionError::Refused {
                        command: trimmed(),
                        message,
                    }),
                };
            } else if line.trim().starts_with("nlbsync") {
                // An earlier command's marker, answered after its caller gave up: what
                // came before it is not this command's.
                errors.clear();
            }
        }
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
