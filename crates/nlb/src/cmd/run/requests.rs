//! Control requests that go through the node, and the snapshot that control and metrics
//! clients read.
//!
//! Clients are served in their own tasks and never hold the loop up: they read the
//! published [`Snapshot`], and only commands reach the loop, on a channel, answered on a
//! oneshot. A snapshot is not published while heartbeats are held back, so what
//! `nlb query` shows is never ahead of what the peers have been told (except right after
//! an operator's command, whose answer has already said the new state).

use super::{Daemon, SNAPSHOT_INTERVAL};
use crate::control::{Request, Snapshot, Status};
use nlb_core::node::{Command as NodeCommand, Node};
use nlb_wire::heartbeat::HostState;
use std::sync::Arc;

impl Daemon {
    /// Publishes the snapshot for control and metrics clients, if it is due. Not while
    /// heartbeats are held back: what `nlb query` shows is never ahead of what the peers
    /// have been told (except right after an operator's command, whose answer has
    /// already said the new state).
    pub(super) fn publish(&mut self) {
        if !self.publish_now && self.last_snapshot.elapsed() < SNAPSHOT_INTERVAL {
            return;
        }
        if !self.held.is_empty() {
            self.publish_now = true;
            return;
        }
        self.publish_snapshot();
    }

    pub(super) fn publish_snapshot(&mut self) {
        self.publish_now = false;
        self.last_snapshot = std::time::Instant::now();
        self.stats.dataplane_healthy = self.healthy;
        let snapshot = Snapshot {
            node: self.node.clone(),
            now: self.clock.now(),
            epoch_unix: self.clock.start_unix,
            connections: self.connections,
            daemon: self.stats.clone(),
        };
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    /// Answers one control request that goes through the node.
    pub(super) fn answer(&mut self, request: Request) {
        let Request {
            line,
            connections,
            reply,
        } = request;
        if let Some(count) = connections {
            self.connections = count;
            let now = self.clock.now();
            self.node.handle_connections(now, count);
        }
        let answer = self.command(line.trim());
        self.flush();
        // A query after the answer must not show the state before the command.
        self.publish_snapshot();
        let _ = reply.send(answer);
    }

    pub(super) fn command(&mut self, request: &str) -> String {
        let now = self.clock.now();
        if let Some(flow) = request.strip_prefix("filter ") {
            return crate::control::filter(&self.node, flow).to_string();
        }
        let result = |node: &Node, outcome: Result<HostState, nlb_core::node::CommandError>| {
            match outcome {
                Ok(state) => serde_json::json!({"ok": true, "state": state.to_string()}),
                Err(err) => serde_json::json!({
                    "ok": false, "error": err.to_string(), "state": node.state().to_string()
                }),
            }
            .to_string()
        };
        if let Some((verb, target)) = request.split_once(' ')
            && matches!(verb, "enable" | "disable" | "drain")
        {
            let selector = match crate::control::rule_selector(&self.config, target) {
                Ok(selector) => selector,
                Err(error) => return serde_json::json!({"ok": false, "error": error}).to_string(),
            };
            let command = match verb {
                "enable" => NodeCommand::EnableRule(selector),
                "disable" => NodeCommand::DisableRule(selector),
                _ => NodeCommand::DrainRule(selector),
            };
            let outcome = self.node.handle_command(now, command);
            return result(&self.node, outcome);
        }
        let command = match request {
            "query" => {
                let mut status =
                    Status::of(&self.node, now, self.clock.start_unix, self.connections);
                status.daemon = self.stats.clone();
                return serde_json::to_string(&status).unwrap_or_default();
            }
            "start" => NodeCommand::Start,
            "stop" => NodeCommand::Stop,
            "drainstop" => NodeCommand::DrainStop,
            "suspend" => NodeCommand::Suspend,
            "resume" => NodeCommand::Resume,
            other => {
                return serde_json::json!({"ok": false, "error": format!("unknown request '{other}'")})
                    .to_string();
            }
        };
        let outcome = self.node.handle_command(now, command);
        result(&self.node, outcome)
    }
}
