//! Shared set-up for tests that build network namespaces.

use std::sync::atomic::{AtomicU32, Ordering};

/// Fails the test with a clear message unless it runs as root, which namespaces, veth
/// and nft need. `NLB_SKIP_NETNS=1` skips such tests instead, for machines where root
/// is not available; CI runs them as root.
pub(crate) fn require_root(test: &str) -> bool {
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

/// A name no other test run on this machine uses: prefix, process id and a counter.
/// Kept short, because interface names have at most 15 bytes.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}
