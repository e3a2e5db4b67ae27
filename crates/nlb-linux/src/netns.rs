//! Network namespaces that clean up after themselves.
//!
//! [`NetNs::create`] makes a named namespace with `ip netns add`; dropping the value
//! deletes it, which also deletes every interface inside it, so a test that panics
//! leaves nothing behind. [`NetNs::enter_current_thread`] moves only the calling thread
//! into the namespace (`setns(2)` is per thread), which is how a test opens sockets
//! there without spawning a process.

use crate::command::{CommandError, run};
use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test run on this machine uses: prefix, process id and a counter.
/// Kept short, because interface names have at most 15 bytes.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// For tests that build namespaces: true if they can run. They need root; without it
/// they fail with a clear message, unless `NLB_SKIP_NETNS=1` asks to skip them (CI runs
/// them as root).
pub fn require_root(test: &str) -> bool {
    if std::env::var_os("NLB_SKIP_NETNS").is_some_and(|v| v == "1") {
        eprintln!("{test}: skipped because NLB_SKIP_NETNS=1");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} builds network namespaces and needs root: run `sudo cargo test`, or set \
         NLB_SKIP_NETNS=1 to skip it"
    );
    true
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` with its loopback up. Fails if it exists already.
    pub fn create(name: &str) -> Result<NetNs, CommandError> {
        run("ip", &["netns", "add", name], None)?;
        let ns = NetNs {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args...` inside the namespace and returns its stdout.
    pub fn exec(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, CommandError> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full, stdin)
    }

    /// Runs `ip args...` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String, CommandError> {
        self.exec("ip", args, None)
    }

    /// Loads an nft ruleset (the text `nft -f` reads) inside the namespace, atomically.
    pub fn nft(&self, ruleset: &str) -> Result<String, CommandError> {
        self.exec("nft", &["-f", "-"], Some(ruleset))
    }

    /// Moves the calling thread into the namespace for the rest of its life. Use it on a
    /// thread spawned for the purpose.
    pub fn enter_current_thread(&self) -> std::io::Result<()> {
        let handle = File::open(format!("/run/netns/{}", self.name))?;
        nix::sched::setns(handle, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = run("ip", &["netns", "del", &self.name], None) {
            eprintln!(
                "warning: could not delete network namespace {}: {err}",
                self.name
            );
        }
    }
}
