//! `[cluster]`: what every host of the cluster must agree on, and its validation.
//!
//! The interface, the VIPs (1 to [`MAX_VIPS`], unicast, each once), the cluster mode,
//! the heartbeat period and tolerance, and authentication: `key_file`, or an explicit
//! `insecure_no_key = true`. Under the secure parse a cluster with neither is refused at
//! its `[cluster]` line, with both fixes. All of it but the interface and the key
//! file's path is in the fingerprint (see [`Config::fingerprint`](super::Config::fingerprint)).

use super::error::{ConfigError, Locator};
use super::raw::{RawCluster, choose, in_range};
use super::{DEFAULT_HEARTBEAT_MS, DEFAULT_TOLERANCE, MAX_VIPS};
use nlb_wire::addressing::ClusterMode;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use toml::Spanned;

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterConfig {
    /// The interface the cluster lives on.
    pub interface: String,
    /// The VIPs, in file order.
    pub vips: Vec<Ipv4Addr>,
    /// How the cluster MAC is delivered.
    pub mode: ClusterMode,
    /// Heartbeat period in milliseconds.
    pub heartbeat_ms: u16,
    /// Missed heartbeats before a member is declared dead.
    pub tolerance: u8,
    /// The shared key file, if heartbeats are authenticated.
    pub key_file: Option<PathBuf>,
    /// `insecure_no_key = true`: the file says on purpose that heartbeats are not
    /// authenticated. Never true together with `key_file`.
    pub insecure_no_key: bool,
}

/// Validates `[cluster]`. With `secure`, a cluster without `key_file` must say
/// `insecure_no_key = true`.
pub(super) fn validate_cluster(
    at: &Locator<'_>,
    raw: Spanned<RawCluster>,
    secure: bool,
) -> Result<ClusterConfig, ConfigError> {
    let cluster_span = raw.span();
    let cluster = raw.into_inner();
    let interface = cluster.interface.get_ref().trim().to_owned();
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
        return Err(at.error(
            cluster.interface.span(),
            "cluster.interface",
            format!("\"{interface}\" is not a Linux interface name"),
            "give the name `ip link` shows, at most 15 characters, such as \"eth0\"",
        ));
    }

    let vips_span = cluster.vips.span();
    let mut vips = Vec::new();
    for vip in cluster.vips.get_ref() {
        let ip: Ipv4Addr = vip.get_ref().trim().parse().map_err(|_| {
            at.error(
                vip.span(),
                "cluster.vips",
                format!("\"{}\" is not an IPv4 address", vip.get_ref()),
                "write each VIP as a dotted quad in quotes, such as \"198.18.0.10\"",
            )
        })?;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
            return Err(at.error(
                vip.span(),
                "cluster.vips",
                format!("{ip} cannot be a VIP"),
                "use a unicast address of the cluster's subnet",
            ));
        }
        if vips.contains(&ip) {
            return Err(at.error(
                vip.span(),
                "cluster.vips",
                format!("{ip} is listed twice"),
                "list each VIP once",
            ));
        }
        vips.push(ip);
    }
    if vips.is_empty() || vips.len() > MAX_VIPS {
        return Err(at.error(
            vips_span,
            "cluster.vips",
            format!("{} VIPs given", vips.len()),
            &format!("list 1 to {MAX_VIPS} VIPs"),
        ));
    }

    let mode = match &cluster.mode {
        Some(value) => choose(
            at,
            value,
            "cluster.mode",
            &[
                ("unicast", ClusterMode::Unicast),
                ("multicast", ClusterMode::Multicast),
                ("igmp", ClusterMode::Igmp),
            ],
        )?,
        None => ClusterMode::Multicast,
    };
    let heartbeat_ms = match &cluster.heartbeat_ms {
        Some(value) => in_range(at, value, "cluster.heartbeat_ms", 5..=10_000)? as u16,
        None => DEFAULT_HEARTBEAT_MS,
    };
    let tolerance = match &cluster.tolerance {
        Some(value) => in_range(at, value, "cluster.tolerance", 2..=100)? as u8,
        None => DEFAULT_TOLERANCE,
    };
    let key_file = match &cluster.key_file {
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(at.error(
                value.span(),
                "cluster.key_file",
                "the path is empty".to_owned(),
                "give the path of the shared key file, or remove the key",
            ));
        }
        Some(value) => Some(PathBuf::from(value.get_ref().trim())),
        None => None,
    };
    let insecure_no_key = cluster
        .insecure_no_key
        .as_ref()
        .is_some_and(|value| *value.get_ref());
    match (&key_file, &cluster.insecure_no_key) {
        (Some(_), Some(value)) if *value.get_ref() => {
            return Err(at.error(
                value.span(),
                "cluster.insecure_no_key",
                "is true, but cluster.key_file is set too".to_owned(),
                "remove `insecure_no_key = true` to authenticate heartbeats with the key \
                 (or remove key_file to run without one)",
            ));
        }
        (None, _) if secure && !insecure_no_key => {
            let (span, key) = match &cluster.insecure_no_key {
                Some(value) => (value.span(), "cluster.insecure_no_key"),
                None => (cluster_span, "cluster.key_file"),
            };
            return Err(at.error(
                span,
                key,
                "no key: heartbeats would not be authenticated, and anyone on the segment \
                 could forge them"
                    .to_owned(),
                "make a key with `nlb keygen --out /etc/nlb/cluster.key`, copy it to every \
                 host (mode 0600) and add `key_file = \"/etc/nlb/cluster.key\"` to \
                 [cluster]; or add `insecure_no_key = true` to run without authentication",
            ));
        }
        _ => {}
    }

    Ok(ClusterConfig {
        interface,
        vips,
        mode,
        heartbeat_ms,
        tolerance,
        key_file,
        insecure_no_key,
    })
}
