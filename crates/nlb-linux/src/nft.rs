//! Applying nft rulesets: whole batches through `nft -f -`, and a long-lived `nft -i`
//! session for the frequent lease refreshes, so that they cost a pipe write and not a
//! process each.

use crate::command::{CommandError, run};
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};

/// Applies each batch atomically, in order.
pub fn apply(batches: &[String]) -> Result<(), CommandError> {
    for batch in batches {
        run("nft", &["-f", "-"], Some(batch))?;
    }
    Ok(())
}

/// An interactive `nft -i` process that takes one command per line.
#[derive(Debug)]
pub struct NftSession {
    child: Child,
    stdin: ChildStdin,
}

impl NftSession {
    /// Starts `nft -i`.
    pub fn start() -> std::io::Result<NftSession> {
        let mut child = Command::new("nft")
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin was piped");
        Ok(NftSession { child, stdin })
    }

    /// Sends one command (a line ending in `\n`).
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
