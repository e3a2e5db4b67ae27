//! Health checks around the loop: the runner of the current configuration's checks (on
//! its own thread, see [`crate::checks`]) and its results into the node.
//!
//! The loop only receives results, from one channel that lives as long as the daemon.
//! A reload that changes the checks replaces the runner, and the results of the old one
//! (whose indexes may name other checks now) carry an older generation and are ignored.

use super::Daemon;
use crate::checks::{CheckResult, Runner};

impl Daemon {
    /// Starts, replaces or stops the check runner so that it runs the checks of the
    /// current configuration. A configuration whose checks did not change keeps its
    /// runner (and its schedule); any change restarts every check.
    pub(super) fn sync_checks(&mut self) {
        if self.config.checks == self.running_checks {
            return;
        }
        self.check_generation += 1;
        if let Some(old) = self.check_runner.take() {
            self.stats.check_results_dropped += old.dropped();
        }
        self.running_checks = self.config.checks.clone();
        if self.running_checks.is_empty() {
            return;
        }
        match Runner::start(
            self.running_checks.clone(),
            self.check_generation,
            self.check_tx.clone(),
        ) {
            Ok(runner) => {
                tracing::info!(
                    event = "nlb.checks_started",
                    checks = self.running_checks.len(),
                    names = %self
                        .running_checks
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                self.check_runner = Some(runner);
            }
            Err(err) => {
                // Without a runner the checks keep their last verdict (up at start):
                // the host serves as it would without checks, and says why.
                tracing::error!(
                    event = "nlb.checks_failed",
                    error = %err,
                    "cannot start the health-check thread; the checks do not run"
                );
                self.running_checks.clear();
            }
        }
    }

    /// One run's result, from the runner.
    pub(super) fn check_result(&mut self, result: CheckResult) {
        if result.generation != self.check_generation {
            return;
        }
        let now = self.clock.now();
        if self
            .node
            .handle_check(now, result.index, result.probe)
            .is_some()
        {
            self.publish_now = true;
        }
    }
}
