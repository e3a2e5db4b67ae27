//! `[host]`: this host's own settings (id, initial state, control socket), and their
//! validation. None of it is in the fingerprint: it differs from host to host.

use super::DEFAULT_CONTROL_SOCKET;
use super::error::{ConfigError, Locator};
use super::raw::{RawHost, choose, in_range};
use nlb_wire::bitmap::MAX_HOST_ID;
use std::path::PathBuf;
use toml::Spanned;

/// A host's state when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// Join the cluster at once.
    Started,
    /// Stay out until `nlb start`.
    Stopped,
    /// Halt everything until `nlb resume`.
    Suspended,
}

/// `[host]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostConfig {
    /// Host id, 1..=64.
    pub id: u8,
    /// State at start.
    pub initial_state: InitialState,
    /// Where the control socket listens.
    pub control_socket: PathBuf,
    /// A group whose members may use the control socket, besides root.
    pub control_group: Option<String>,
    /// How long a bucket this host released keeps reaching conntrack after the last
    /// packet of this host's connections in it (`drain_idle_ms`, 1 s to 1 day, default
    /// [`DEFAULT_DRAIN_IDLE_MS`]), at least: the bucket also stays while conntrack holds
    /// any of its flows that is not over. Without the `conntrack` tool, a connection
    /// this host cannot see as a socket (behind DNAT, or UDP) that stays idle for longer
    /// loses its packets to this host.
    pub drain_idle_ms: u32,
}

/// The default `[host] drain_idle_ms`: 300 s, longer than conntrack's UDP stream
/// timeout (120 s).
pub const DEFAULT_DRAIN_IDLE_MS: u32 = 300_000;

/// Validates `[host]`.
pub(super) fn validate_host(
    at: &Locator<'_>,
    raw: Spanned<RawHost>,
) -> Result<HostConfig, ConfigError> {
    let host = raw.into_inner();
    let id = in_range(at, &host.id, "host.id", 1..=i64::from(MAX_HOST_ID))? as u8;
    let initial_state = match &host.initial_state {
        Some(value) => choose(
            at,
            value,
            "host.initial_state",
            &[
                ("started", InitialState::Started),
                ("stopped", InitialState::Stopped),
                ("suspended", InitialState::Suspended),
            ],
        )?,
        None => InitialState::Started,
    };
    let control_socket = PathBuf::from(
        host.control_socket
            .as_ref()
            .map_or(DEFAULT_CONTROL_SOCKET, |s| s.get_ref().as_str()),
    );

    let control_group = match &host.control_group {
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(at.error(
                value.span(),
                "host.control_group",
                "the group name is empty".to_owned(),
                "name a group from /etc/group, or remove the key to keep the socket root-only",
            ));
        }
        Some(value) => Some(value.get_ref().trim().to_owned()),
        None => None,
    };
    let drain_idle_ms = match &host.drain_idle_ms {
        Some(value) => in_range(at, value, "host.drain_idle_ms", 1_000..=86_400_000)? as u32,
        None => DEFAULT_DRAIN_IDLE_MS,
    };
    Ok(HostConfig {
        id,
        initial_state,
        control_socket,
        control_group,
        drain_idle_ms,
    })
}
