//! Applying nft rulesets: whole batches through `nft -f -`, and a long-lived `nft -i`
//! session for the frequent lease refreshes, so that they cost a pipe write and not a
//! process each.
//!
//! The session runs `nft --echo -i`: every command that commits prints
//! `# new generation N ...` on stdout, and every failure an `Error: ...` line on stderr.
//! [`NftSession::run`] waits for one of the two, so a failed refresh is seen.

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

/// What the session said about one command.
#[derive(Debug)]
enum Reply {
    Committed,
    Error(String),
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

/// An interactive `nft --echo -i` process that takes one command per line.
#[derive(Debug)]
pub struct NftSession {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<Reply>,
}

impl NftSession {
    /// Starts `nft --echo -i`, with two threads reading its answers.
    pub fn start() -> std::io::Result<NftSession> {
        let mut child = Command::new("nft")
            .args(["--echo", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, replies) = mpsc::channel();
        let out = tx.clone();
        std::thread::Builder::new()
            .name("nft-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("# new generation") && out.send(Reply::Committed).is_err() {
                        break;
                    }
                }
            })?;
        std::thread::Builder::new()
            .name("nft-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.starts_with("Error:") && tx.send(Reply::Error(line)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(NftSession {
            child,
            stdin,
            replies,
        })
    }

    /// Sends one command (a line ending in `\n` that commits one transaction) and waits
    /// up to `timeout` for nft to confirm it.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<(), SessionError> {
        // Answers to earlier commands that came late are not this command's.
        while self.replies.try_recv().is_ok() {}
        let trimmed = || command.trim().chars().take(200).collect::<String>();
        self.stdin
            .write_all(command.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|err| SessionError::Dead(err.to_string()))?;
        match self.replies.recv_timeout(timeout) {
            Ok(Reply::Committed) => Ok(()),
            Ok(Reply::Error(message)) => Err(SessionError::Refused {
                command: trimmed(),
                message,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SessionError::Timeout {
                command: trimmed(),
                timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(SessionError::Dead("nft exited".into()))
            }
        }
    }

    /// Sends one command without waiting for its answer.
    pub fn send(&mut self, command: &str) -> std::io::Result<()> {
        self.stdin.write_all(command.as_bytes())?;
        self.stdin.flush()
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
