//! The configuration file: one TOML file per host.
//!
//! ```toml
//! [cluster]
//! interface = "eth0"                  # required
//! vips = ["198.18.0.10"]              # required, 1 to 8 IPv4 addresses
//! mode = "multicast"                  # unicast | multicast | igmp
//! heartbeat_ms = 10
//! tolerance = 15                      # missed heartbeats before a member is dead
//! key_file = "/etc/nlb/cluster.key"   # from `nlb keygen`: authenticated heartbeats
//! # insecure_no_key = true            # instead of key_file: unauthenticated heartbeats
//!
//! [host]
//! id = 1                              # 1..=64, unique in the cluster
//! initial_state = "started"           # started | stopped | suspended
//! control_socket = "/run/nlb/nlb.sock"
//! control_group = "nlb"               # optional: members may use the control socket
//!
//! [[rule]]                            # none = one rule for everything
//! vip = "all"
//! ports = "80"                        # "80", "8000-8100" or "all"
//! protocol = "tcp"                    # tcp | udp | both
//! mode = "multiple"                   # multiple | single | disabled
//! affinity = "single"                 # none | single | network
//! weight = "equal"                    # 0..=100 or "equal" (multiple mode)
//! priority = 1                        # 1..=64 (single mode)
//! ```
//!
//! [`Config::parse`] is a pure function of the text. Unknown keys are errors, and every
//! error ([`ConfigError`]) names the file, line, column and key, says what is wrong, and
//! says how to fix it.
//!
//! Secure by default: [`Config::parse_secure`], which every `nlb` command uses, also
//! refuses a cluster that has no `key_file` unless it says `insecure_no_key = true`.
//! Without a key anyone on the segment can forge heartbeats, so that has to be a choice
//! written in the file, not an omission. ([`Config::parse`] leaves that check out, for
//! the simulator and tests that build clusters in memory.)
//!
//! The defaults meet the failover goal: a member is declared dead after
//! `tolerance × heartbeat_ms` = 150 ms without a heartbeat, and the chance that 20%
//! random loss alone hides 15 heartbeats in a row is 0.2^15 ≈ 3·10⁻¹¹ per period.
//!
//! The *cluster-wide* part (everything but `[host]`, `weight` and `priority`) must be
//! the same on every host. [`Config::fingerprint`] hashes it for the heartbeat, and
//! [`Config::field_digests`] hashes each field on its own, so that a host whose
//! fingerprint differs can say which field differs.

use nlb_wire::addressing::ClusterMode;
use nlb_wire::heartbeat::{FIELD_DIGESTS_LEN, MAX_HOST_ID};
use serde::Deserialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use toml::Spanned;

/// Most VIPs a cluster can have.
pub const MAX_VIPS: usize = 8;
/// Most port rules a cluster can have. With 256 buckets per rule, this keeps a heartbeat
/// with every rule (and the implicit default rule) under a 1500-byte MTU.
pub const MAX_RULES: usize = 16;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u16 = 10;
/// Default number of missed heartbeats before a member is declared dead.
pub const DEFAULT_TOLERANCE: u8 = 15;
/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/nlb/nlb.sock";

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

/// Which transport protocol a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP.
    Both,
}

impl Protocol {
    /// Whether traffic of `other` (Tcp or Udp) falls under this rule's protocol.
    pub fn covers(self, other: Protocol) -> bool {
        self == Protocol::Both || self == other
    }
}

/// How a rule spreads its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Every host takes a share, by weight.
    Multiple,
    /// The live host with the lowest handling priority takes all.
    Single,
    /// Nobody takes it: the traffic is dropped.
    Disabled,
}

/// What part of the client picks the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Source address and port: each connection on its own.
    None,
    /// Source address: a client stays on one host.
    Single,
    /// Source /24: a client network stays on one host.
    Network,
}

/// A port rule, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// The VIP it covers, or `None` for all.
    pub vip: Option<Ipv4Addr>,
    /// First and last port, inclusive.
    pub ports: RangeInclusive<u16>,
    /// Protocol.
    pub protocol: Protocol,
    /// Mode.
    pub mode: RuleMode,
    /// Affinity.
    pub affinity: Affinity,
    /// This host's load weight, `None` for "equal" (multiple mode).
    pub weight: Option<u8>,
    /// This host's handling priority (single mode).
    pub priority: Option<u8>,
}

impl Rule {
    /// The rule used when the file has none: all VIPs, all ports, both protocols,
    /// multiple hosts, single affinity, equal weight.
    pub fn default_rule() -> Rule {
        Rule {
            vip: None,
            ports: 0..=65535,
            protocol: Protocol::Both,
            mode: RuleMode::Multiple,
            affinity: Affinity::Single,
            weight: None,
            priority: None,
        }
    }

    /// Whether the rule covers traffic to `vip:port` over `protocol`.
    pub fn covers(&self, vip: Ipv4Addr, port: u16, protocol: Protocol) -> bool {
        self.vip.is_none_or(|v| v == vip)
            && self.ports.contains(&port)
            && self.protocol.covers(protocol)
    }

    fn overlaps(&self, other: &Rule) -> bool {
        let vip = match (self.vip, other.vip) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let protocol = self.protocol.covers(other.protocol) || other.protocol.covers(self.protocol);
        let ports =
            self.ports.start() <= other.ports.end() && other.ports.start() <= self.ports.end();
        vip && protocol && ports
    }

    /// The cluster-wide part of the rule in its canonical bytes (see
    /// [`Config::fingerprint`]): the VIP (`0`, or `1` and its four octets), the first and
    /// last port (big-endian `u16`s), then the protocol, mode and affinity codes.
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        match self.vip {
            None => out.push(0),
            Some(vip) => {
                out.push(1);
                out.extend_from_slice(&vip.octets());
            }
        }
        out.extend_from_slice(&self.ports.start().to_be_bytes());
        out.extend_from_slice(&self.ports.end().to_be_bytes());
        out.push(match self.protocol {
            Protocol::Tcp => 1,
            Protocol::Udp => 2,
            Protocol::Both => 3,
        });
        out.push(match self.mode {
            RuleMode::Multiple => 1,
            RuleMode::Single => 2,
            RuleMode::Disabled => 3,
        });
        out.push(match self.affinity {
            Affinity::None => 1,
            Affinity::Single => 2,
            Affinity::Network => 3,
        });
        out
    }
}

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
}

/// A whole configuration, validated, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// `[cluster]`.
    pub cluster: ClusterConfig,
    /// `[host]`.
    pub host: HostConfig,
    /// `[metrics] listen`: where to serve OpenMetrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The rules; never empty (the default rule stands in for none).
    pub rules: Vec<Rule>,
}

/// Names of the cluster-wide fields, in [`Config::field_digests`] order. Field `i` for
/// `i >= 6` is rule `i - 5` (1-based).
const FIELD_NAMES: [&str; 6] = [
    "cluster.vips",
    "cluster.mode",
    "cluster.heartbeat_ms",
    "cluster.tolerance",
    "cluster.key_file (authentication on or off)",
    "the number of [[rule]] tables",
];

/// The name of cluster-wide field `index` (see [`Config::field_digests`]).
pub fn field_name(index: usize) -> String {
    match FIELD_NAMES.get(index) {
        Some(name) => (*name).to_owned(),
        None => format!("[[rule]] number {}", index - FIELD_NAMES.len() + 1),
    }
}

impl Config {
    /// Parses and validates configuration text. `file` is only used in error messages.
    ///
    /// This accepts a cluster with neither `key_file` nor `insecure_no_key`; the daemon
    /// and every command read files with [`Config::parse_secure`], which does not.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, false)
    }

    /// [`Config::parse`], and the secure default: a cluster without `key_file` must say
    /// `insecure_no_key = true`, or this is an error at the `[cluster]` table that says
    /// how to make a key.
    pub fn parse_secure(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, true)
    }

    fn parse_with(text: &str, file: &str, secure: bool) -> Result<Config, ConfigError> {
        let located = Locator { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|err| located.toml_error(&err))?;
        raw.validate(&located, secure)
    }

    /// The period after which a silent member is declared dead.
    pub fn failure_window_ms(&self) -> u32 {
        u32::from(self.cluster.heartbeat_ms) * u32::from(self.cluster.tolerance)
    }

    /// The cluster-wide fields in their canonical encoding: see [`Config::fingerprint`].
    fn canonical_fields(&self) -> Vec<Vec<u8>> {
        let mut vips = self.cluster.vips.clone();
        vips.sort();
        let mut vip_bytes = vec![vips.len() as u8];
        for vip in &vips {
            vip_bytes.extend_from_slice(&vip.octets());
        }
        let mode = match self.cluster.mode {
            ClusterMode::Unicast => 1,
            ClusterMode::Multicast => 2,
            ClusterMode::Igmp => 3,
        };
        let mut values = vec![
            vip_bytes,
            vec![mode],
            self.cluster.heartbeat_ms.to_be_bytes().to_vec(),
            vec![self.cluster.tolerance],
            vec![u8::from(self.cluster.key_file.is_some())],
            vec![self.rules.len() as u8],
        ];
        values.extend(self.rules.iter().map(Rule::canonical));
        values
            .into_iter()
            .enumerate()
            .map(|(tag, value)| {
                let mut field = Vec::with_capacity(3 + value.len());
                field.push(tag as u8);
                field.extend_from_slice(&(value.len() as u16).to_be_bytes());
                field.extend_from_slice(&value);
                field
            })
            .collect()
    }

    /// A 64-bit hash of the cluster-wide configuration: the first 8 bytes (big-endian) of
    /// BLAKE3 in key-derivation mode, context `"nlb config fingerprint v2"`, over the
    /// concatenated canonical fields. It depends only on these bytes, never on Rust names
    /// or `Debug` text, so every build on every machine computes the same value for the
    /// same file.
    ///
    /// The hash covers the cluster-wide fields in a canonical encoding, in [`field_name`]
    /// order, each `tag (u8) ‖ length (u16, big-endian) ‖ value`, where the tag
    /// is the field's index. The values (integers big-endian, enums by the fixed codes
    /// below, never by their Rust names or `Debug` text):
    ///
    /// | index | field | value |
    /// |---|---|---|
    /// | 0 | `cluster.vips` | count (u8), then each VIP's four octets, in ascending order |
    /// | 1 | `cluster.mode` | unicast 1, multicast 2, igmp 3 |
    /// | 2 | `cluster.heartbeat_ms` | u16 |
    /// | 3 | `cluster.tolerance` | u8 |
    /// | 4 | authentication | 1 with `key_file`, 0 without (the key itself is never hashed) |
    /// | 5 | number of rules | u8 (the implicit default rule counts as one) |
    /// | 6 + i | rule i + 1 | VIP: 0 for "all", or 1 and four octets; first port (u16); last port (u16); protocol (tcp 1, udp 2, both 3); mode (multiple 1, single 2, disabled 3); affinity (none 1, single 2, network 3) |
    ///
    /// Weights and priorities are this host's own, and are not encoded.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = blake3::Hasher::new_derive_key("nlb config fingerprint v2");
        for field in self.canonical_fields() {
            hasher.update(&field);
        }
        let digest = hasher.finalize();
        u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// One byte per cluster-wide field (unused slots are 0), so that two hosts can find
    /// the field where they differ: see [`field_name`]. Slot `i` is the first byte of
    /// BLAKE3 (key derivation, context `"nlb config field v2"`) over field `i`'s canonical
    /// bytes, with its low bit set so that it is never 0.
    pub fn field_digests(&self) -> [u8; FIELD_DIGESTS_LEN] {
        let mut digests = [0u8; FIELD_DIGESTS_LEN];
        for (slot, field) in digests.iter_mut().zip(self.canonical_fields()) {
            let mut hasher = blake3::Hasher::new_derive_key("nlb config field v2");
            hasher.update(&field);
            // Never 0, so that "unused" and "differs" cannot be confused.
            *slot = hasher.finalize().as_bytes()[0] | 1;
        }
        digests
    }

    /// The rule that covers `vip:port`, by index, if any.
    pub fn rule_for(&self, vip: Ipv4Addr, port: u16, protocol: Protocol) -> Option<usize> {
        self.rules
            .iter()
            .position(|rule| rule.covers(vip, port, protocol))
    }
}

/// A configuration error with its place in the file and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key, dotted (`cluster.vips`, `rule[2].ports`).
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}. Fix: {}",
            self.file, self.line, self.column, self.key, self.problem, self.fix
        )
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte spans into line and column for errors.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, key: &str, problem: String, fix: &str) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem,
            fix: fix.to_owned(),
        }
    }

    /// The dotted name of the table that holds byte `offset`: `cluster`, `host`,
    /// `rule[2]`, or nothing before the first header.
    fn table_at(&self, offset: usize) -> Option<String> {
        let mut table = None;
        let mut rules = 0;
        let mut at = 0;
        for line in self.text.split_inclusive('\n') {
            if at > offset {
                break;
            }
            let trimmed = line.trim();
            if let Some(name) = trimmed
                .strip_prefix("[[")
                .and_then(|t| t.split("]]").next())
            {
                rules += 1;
                table = Some(format!("{}[{rules}]", name.trim()));
            } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
                table = Some(name.trim().to_owned());
            }
            at += line.len();
        }
        table
    }

    fn dotted(&self, offset: usize, key: &str) -> String {
        match self.table_at(offset) {
            Some(table) if !key.is_empty() => format!("{table}.{key}"),
            Some(table) => table,
            None => key.to_owned(),
        }
    }

    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_owned();
        let quoted = message.split('`').nth(1).map(str::to_owned);
        let (key, fix) = if message.starts_with("unknown field") {
            let key = quoted.unwrap_or_default();
            let expected = message
                .split_once("expected ")
                .map_or(String::new(), |(_, rest)| {
                    format!(": the keys here are {rest}")
                });
            (
                key,
                format!("remove the key or correct its spelling{expected}"),
            )
        } else if message.starts_with("missing field") {
            let key = quoted.unwrap_or_default();
            (key.clone(), format!("add `{key} = ...` to this table"))
        } else {
            // The key is whatever stands before `=` on the line of the error.
            let line_start = self.text[..span.start.min(self.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line = self.text[line_start..].lines().next().unwrap_or("");
            let key = line
                .split_once('=')
                .map_or("", |(k, _)| k)
                .trim()
                .to_owned();
            (
                key,
                "correct the TOML syntax or the value's type (strings in quotes, numbers without)"
                    .to_owned(),
            )
        };
        let key = self.dotted(span.start, &key);
        self.error(span, &key, message, &fix)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: Spanned<RawCluster>,
    host: Spanned<RawHost>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    interface: Spanned<String>,
    vips: Spanned<Vec<Spanned<String>>>,
    mode: Option<Spanned<String>>,
    heartbeat_ms: Option<Spanned<i64>>,
    tolerance: Option<Spanned<i64>>,
    key_file: Option<Spanned<String>>,
    insecure_no_key: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    id: Spanned<i64>,
    initial_state: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    control_group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawWeight {
    Number(i64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    vip: Option<Spanned<String>>,
    ports: Option<Spanned<String>>,
    protocol: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    affinity: Option<Spanned<String>>,
    weight: Option<Spanned<RawWeight>>,
    priority: Option<Spanned<i64>>,
}

/// Parses one of a fixed set of words, or explains the choices.
fn choose<T: Copy>(
    at: &Locator<'_>,
    value: &Spanned<String>,
    key: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(name, _)| *name == value.get_ref().as_str())
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<_> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            at.error(
                value.span(),
                key,
                format!("\"{}\" is not a valid value", value.get_ref()),
                &format!("use one of {}", names.join(", ")),
            )
        })
}

fn in_range(
    at: &Locator<'_>,
    value: &Spanned<i64>,
    key: &str,
    range: RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    let v = *value.get_ref();
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(at.error(
            value.span(),
            key,
            format!("{v} is out of range"),
            &format!("use a number from {} to {}", range.start(), range.end()),
        ))
    }
}

fn parse_ports(text: &str) -> Option<RangeInclusive<u16>> {
    let text = text.trim();
    if text == "all" {
        return Some(0..=65535);
    }
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let port = text.parse().ok()?;
            (port, port)
        }
    };
    (start <= end).then_some(start..=end)
}

impl RawConfig {
    fn validate(self, at: &Locator<'_>, secure: bool) -> Result<Config, ConfigError> {
        let cluster_span = self.cluster.span();
        let cluster = self.cluster.into_inner();
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

        let host = self.host.into_inner();
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
        if self.rule.len() > MAX_RULES {
            return Err(at.error(
                self.rule[MAX_RULES].span(),
                "rule",
                format!("{} rules given", self.rule.len()),
                &format!("use at most {MAX_RULES} [[rule]] tables; merge port ranges"),
            ));
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (index, raw) in self.rule.iter().enumerate() {
            let key = |name: &str| format!("rule[{}].{name}", index + 1);
            let rule_span = raw.span();
            let raw = raw.get_ref();
            let vip = match &raw.vip {
                Some(value) if value.get_ref() == "all" => None,
                Some(value) => {
                    let ip = value
                        .get_ref()
                        .parse::<Ipv4Addr>()
                        .ok()
                        .filter(|ip| vips.contains(ip));
                    Some(ip.ok_or_else(|| {
                        at.error(
                            value.span(),
                            &key("vip"),
                            format!("\"{}\" is not one of cluster.vips", value.get_ref()),
                            "use \"all\" or one of the addresses in cluster.vips",
                        )
                    })?)
                }
                None => None,
            };
            let ports = match &raw.ports {
                Some(value) => parse_ports(value.get_ref()).ok_or_else(|| {
                    at.error(
                        value.span(),
                        &key("ports"),
                        format!("\"{}\" is not a port or port range", value.get_ref()),
                        "write \"80\", \"8000-8100\" (first <= last) or \"all\"",
                    )
                })?,
                None => 0..=65535,
            };
            let protocol = match &raw.protocol {
                Some(value) => choose(
                    at,
                    value,
                    &key("protocol"),
                    &[
                        ("tcp", Protocol::Tcp),
                        ("udp", Protocol::Udp),
                        ("both", Protocol::Both),
                    ],
                )?,
                None => Protocol::Both,
            };
            let mode = match &raw.mode {
                Some(value) => choose(
                    at,
                    value,
                    &key("mode"),
                    &[
                        ("multiple", RuleMode::Multiple),
                        ("single", RuleMode::Single),
                        ("disabled", RuleMode::Disabled),
                    ],
                )?,
                None => RuleMode::Multiple,
            };
            let affinity = match &raw.affinity {
                Some(value) => choose(
                    at,
                    value,
                    &key("affinity"),
                    &[
                        ("none", Affinity::None),
                        ("single", Affinity::Single),
                        ("network", Affinity::Network),
                    ],
                )?,
                None => Affinity::Single,
            };
            let weight = match &raw.weight {
                None => None,
                Some(value) => match value.get_ref() {
                    RawWeight::Word(word) if word == "equal" => None,
                    RawWeight::Number(n) if (0..=100).contains(n) => Some(*n as u8),
                    other => {
                        let shown = match other {
                            RawWeight::Number(n) => n.to_string(),
                            RawWeight::Word(w) => format!("\"{w}\""),
                        };
                        return Err(at.error(
                            value.span(),
                            &key("weight"),
                            format!("{shown} is not a load weight"),
                            "use a number from 0 to 100, or \"equal\"",
                        ));
                    }
                },
            };
            let priority = match &raw.priority {
                Some(value) => {
                    Some(in_range(at, value, &key("priority"), 1..=i64::from(MAX_HOST_ID))? as u8)
                }
                None => None,
            };
            if mode == RuleMode::Single && priority.is_none() {
                return Err(at.error(
                    rule_span,
                    &key("priority"),
                    "a single-host rule needs this host's handling priority".to_owned(),
                    "add `priority = N` (1..=64, unique among the hosts; the lowest live one serves)",
                ));
            }
            let rule = Rule {
                vip,
                ports,
                protocol,
                mode,
                affinity,
                weight,
                priority,
            };
            if let Some(other) = rules.iter().position(|r| r.overlaps(&rule)) {
                return Err(at.error(
                    rule_span,
                    &format!("rule[{}]", index + 1),
                    format!(
                        "overlaps rule[{}]: some traffic would match both",
                        other + 1
                    ),
                    "make the port ranges, protocols or VIPs of the two rules disjoint",
                ));
            }
            rules.push(rule);
        }
        if rules.is_empty() {
            rules.push(Rule::default_rule());
        }
        let metrics_listen = match self.metrics.and_then(|m| m.listen) {
            Some(value) => Some(value.get_ref().trim().parse().map_err(|_| {
                at.error(
                    value.span(),
                    "metrics.listen",
                    format!("\"{}\" is not an address and port", value.get_ref()),
                    "write it as \"127.0.0.1:9102\"",
                )
            })?),
            None => None,
        };
        Ok(Config {
            cluster: ClusterConfig {
                interface,
                vips,
                mode,
                heartbeat_ms,
                tolerance,
                key_file,
                insecure_no_key,
            },
            host: HostConfig {
                id,
                initial_state,
                control_socket,
                control_group,
            },
            rules,
            metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.10"]

[host]
id = 1
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "nlb.toml")
    }

    #[test]
    fn minimal_file_gets_defaults_and_the_default_rule() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.cluster.mode, ClusterMode::Multicast);
        assert_eq!(config.cluster.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        assert_eq!(config.cluster.tolerance, DEFAULT_TOLERANCE);
        assert_eq!(config.failure_window_ms(), 150);
        assert_eq!(config.host.initial_state, InitialState::Started);
        assert_eq!(config.rules, vec![Rule::default_rule()]);
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn metrics_listen_parses_or_names_the_line() {
        let config = parse(&format!(
            "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9102\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9102".parse().unwrap())
        );
        let err = parse(&format!("{MINIMAL}[metrics]\nlisten = \"port 9102\"\n")).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (9, "metrics.listen"), "{err}");
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.10", "198.18.0.11"]
mode = "igmp"
heartbeat_ms = 100
tolerance = 3
key_file = "/etc/nlb/cluster.key"

[host]
id = 2
initial_state = "suspended"
control_socket = "/tmp/nlb.sock"

[[rule]]
vip = "198.18.0.10"
ports = "8000-8100"
protocol = "tcp"
mode = "multiple"
affinity = "none"
weight = 30

[[rule]]
vip = "all"
ports = "53"
protocol = "udp"
mode = "single"
priority = 2
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.rules.len(), 2);
        assert_eq!(config.rules[0].ports, 8000..=8100);
        assert_eq!(config.rules[0].weight, Some(30));
        assert_eq!(config.rules[1].priority, Some(2));
        assert_eq!(
            config.rule_for(Ipv4Addr::new(198, 18, 0, 11), 53, Protocol::Udp),
            Some(1)
        );
        assert_eq!(
            config.rule_for(Ipv4Addr::new(198, 18, 0, 11), 8000, Protocol::Tcp),
            None
        );
    }

    #[test]
    fn unknown_key_names_file_line_key_and_fix() {
        let text = MINIMAL.replace("id = 1", "id = 1\nheartbeat = 5");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            (err.file.as_str(), err.line, err.key.as_str()),
            ("nlb.toml", 8, "host.heartbeat")
        );
        assert!(err.fix.contains("spelling"), "{err}");
        assert!(
            err.to_string()
                .starts_with("nlb.toml:8:1: host.heartbeat: "),
            "{err}"
        );
    }

    #[test]
    fn type_and_missing_key_errors_name_the_dotted_key() {
        let err = parse(&MINIMAL.replace("id = 1", "id = \"one\"")).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (7, "host.id"), "{err}");
        assert!(err.fix.contains("type"), "{err}");
        let err = parse(&MINIMAL.replace("id = 1", "")).unwrap_err();
        assert_eq!(err.key, "host.id", "{err}");
        assert!(err.fix.contains("add `id = ...`"), "{err}");
        let err = parse(&format!(
            "{MINIMAL}[[rule]]\nports = \"80\"\n[[rule]]\nport = \"81\""
        ))
        .unwrap_err();
        assert_eq!(err.key, "rule[2].port", "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let cases = [
            (
                r#"vips = ["198.18.0.10"]"#,
                r#"vips = ["198.18.0.300"]"#,
                4,
                "cluster.vips",
                "dotted quad",
            ),
            (
                r#"vips = ["198.18.0.10"]"#,
                r#"vips = []"#,
                4,
                "cluster.vips",
                "1 to 8",
            ),
            ("id = 1", "id = 65", 7, "host.id", "1 to 64"),
            (
                "id = 1",
                "id = 1\ninitial_state = \"running\"",
                8,
                "host.initial_state",
                "\"started\"",
            ),
            (
                r#"interface = "eth0""#,
                "interface = \"eth0\"\nmode = \"broadcast\"",
                4,
                "cluster.mode",
                "\"igmp\"",
            ),
        ];
        for (from, to, line, key, fix) in cases {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err();
            assert_eq!((err.line, err.key.as_str()), (line, key), "{err}");
            assert!(err.fix.contains(fix), "{err}");
        }
    }

    #[test]
    fn rule_errors() {
        let with_rules = |rules: &str| format!("{MINIMAL}\n{rules}");
        let err = parse(&with_rules("[[rule]]\nports = \"90-80\"")).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (10, "rule[1].ports"), "{err}");
        let err = parse(&with_rules("[[rule]]\nmode = \"single\"")).unwrap_err();
        assert_eq!(err.key, "rule[1].priority", "{err}");
        let err = parse(&with_rules("[[rule]]\nweight = 101")).unwrap_err();
        assert_eq!(err.key, "rule[1].weight", "{err}");
        let err = parse(&with_rules("[[rule]]\nvip = \"198.18.0.99\"")).unwrap_err();
        assert!(err.problem.contains("not one of cluster.vips"), "{err}");
        let err = parse(&with_rules(
            "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\n[[rule]]\nports = \"70-90\"\nprotocol = \"both\"",
        ))
        .unwrap_err();
        assert_eq!(err.key, "rule[2]", "{err}");
        assert!(err.problem.contains("overlaps rule[1]"), "{err}");
        // Same ports, different protocols: fine.
        parse(&with_rules(
            "[[rule]]\nports = \"53\"\nprotocol = \"tcp\"\n[[rule]]\nports = \"53\"\nprotocol = \"udp\"",
        ))
        .unwrap();
    }

    #[test]
    fn fingerprint_ignores_host_part_and_names_differing_field() {
        let a = parse(MINIMAL).unwrap();
        let b = parse(&MINIMAL.replace("id = 1", "id = 2")).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.field_digests(), b.field_digests());
        let c = parse(&MINIMAL.replace("[host]", "mode = \"unicast\"\n[host]")).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
        let differing: Vec<_> = a
            .field_digests()
            .iter()
            .zip(c.field_digests())
            .enumerate()
            .filter(|(_, (x, y))| **x != *y)
            .map(|(i, _)| field_name(i))
            .collect();
        assert_eq!(differing, vec!["cluster.mode".to_owned()]);
    }

    /// A fixed file with two VIPs, non-default timers and two rules.
    const GOLDEN: &str = r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.11", "198.18.0.10"]
mode = "igmp"
heartbeat_ms = 100
tolerance = 3
key_file = "/etc/nlb/cluster.key"

[host]
id = 2

[[rule]]
vip = "198.18.0.10"
ports = "8000-8100"
protocol = "tcp"
affinity = "none"
weight = 30

[[rule]]
ports = "53"
protocol = "udp"
mode = "single"
priority = 2
"#;

    #[test]
    fn canonical_encoding_is_the_documented_bytes() {
        let config = parse(GOLDEN).unwrap();
        let expected: Vec<Vec<u8>> = vec![
            vec![0, 0, 9, 2, 198, 18, 0, 10, 198, 18, 0, 11],
            vec![1, 0, 1, 3],
            vec![2, 0, 2, 0, 100],
            vec![3, 0, 1, 3],
            vec![4, 0, 1, 1],
            vec![5, 0, 1, 2],
            vec![6, 0, 12, 1, 198, 18, 0, 10, 0x1f, 0x40, 0x1f, 0xa4, 1, 1, 1],
            vec![7, 0, 8, 0, 0, 53, 0, 53, 2, 2, 2],
        ];
        assert_eq!(config.canonical_fields(), expected);
    }

    /// Written down once: if this fails, the encoding changed, and hosts built before and
    /// after the change will call each other misconfigured. Change it only on purpose,
    /// with the context strings' version.
    #[test]
    fn fingerprint_is_the_golden_value() {
        let config = parse(GOLDEN).unwrap();
        assert_eq!(
            config.fingerprint(),
            GOLDEN_FINGERPRINT,
            "{:#018x}",
            config.fingerprint()
        );
        assert_eq!(
            config.field_digests(),
            GOLDEN_DIGESTS,
            "{:?}",
            config.field_digests()
        );
    }

    const GOLDEN_FINGERPRINT: u64 = 0x3ed7_62e9_597d_e67b;
    const GOLDEN_DIGESTS: [u8; FIELD_DIGESTS_LEN] = [
        189, 247, 203, 175, 131, 205, 9, 197, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn each_field_changes_its_own_digest_only() {
        let base = parse(GOLDEN).unwrap();
        let cases: [(&str, &str, &str); 14] = [
            ("\"198.18.0.11\", ", "\"198.18.0.12\", ", "cluster.vips"),
            ("mode = \"igmp\"", "mode = \"unicast\"", "cluster.mode"),
            (
                "heartbeat_ms = 100",
                "heartbeat_ms = 101",
                "cluster.heartbeat_ms",
            ),
            ("tolerance = 3", "tolerance = 4", "cluster.tolerance"),
            (
                "key_file = \"/etc/nlb/cluster.key\"",
                "insecure_no_key = true",
                "cluster.key_file (authentication on or off)",
            ),
            (
                "vip = \"198.18.0.10\"",
                "vip = \"198.18.0.11\"",
                "[[rule]] number 1",
            ),
            (
                "vip = \"198.18.0.10\"",
                "vip = \"all\"",
                "[[rule]] number 1",
            ),
            ("8000-8100", "8000-8101", "[[rule]] number 1"),
            ("8000-8100", "7999-8100", "[[rule]] number 1"),
            (
                "protocol = \"tcp\"",
                "protocol = \"both\"",
                "[[rule]] number 1",
            ),
            (
                "affinity = \"none\"",
                "affinity = \"network\"",
                "[[rule]] number 1",
            ),
            (
                "mode = \"single\"",
                "mode = \"disabled\"",
                "[[rule]] number 2",
            ),
            ("ports = \"53\"", "ports = \"54\"", "[[rule]] number 2"),
            (
                "protocol = \"udp\"",
                "protocol = \"tcp\"",
                "[[rule]] number 2",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOLDEN.contains(from), "{from}");
            let changed = parse(&GOLDEN.replace(from, to)).unwrap();
            let differing: Vec<_> = base
                .field_digests()
                .iter()
                .zip(changed.field_digests())
                .enumerate()
                .filter(|(_, (x, y))| **x != *y)
                .map(|(i, _)| field_name(i))
                .collect();
            assert_eq!(differing, vec![field.to_owned()], "{from} -> {to}");
            assert_ne!(base.fingerprint(), changed.fingerprint(), "{from} -> {to}");
        }
        // This host's own part changes nothing; nor does the key file's path.
        for (from, to) in [
            ("id = 2", "id = 3"),
            ("weight = 30", "weight = 70"),
            ("priority = 2", "priority = 5"),
            ("interface = \"eth0\"", "interface = \"eth1\""),
            ("/etc/nlb/cluster.key", "/etc/nlb/other.key"),
        ] {
            let same = parse(&GOLDEN.replace(from, to)).unwrap();
            assert_eq!(base.fingerprint(), same.fingerprint(), "{from} -> {to}");
            assert_eq!(base.field_digests(), same.field_digests(), "{from} -> {to}");
        }
        // Adding a rule changes the count and fills a slot that was unused.
        let more = parse(&format!(
            "{GOLDEN}\n[[rule]]\nports = \"443\"\nprotocol = \"tcp\"\n"
        ))
        .unwrap();
        let differing: Vec<_> = (0..FIELD_DIGESTS_LEN)
            .filter(|&i| base.field_digests()[i] != more.field_digests()[i])
            .map(field_name)
            .collect();
        assert_eq!(
            differing,
            vec!["the number of [[rule]] tables", "[[rule]] number 3"]
        );
    }

    #[test]
    fn secure_parse_needs_a_key_or_an_explicit_keyless_setting() {
        // No key and no setting: refused at the [cluster] table, with both fixes.
        let err = Config::parse_secure(MINIMAL, "nlb.toml").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_str()),
            (2, "cluster.key_file"),
            "{err}"
        );
        assert!(err.fix.contains("nlb keygen"), "{err}");
        assert!(err.fix.contains("insecure_no_key = true"), "{err}");
        assert!(
            err.to_string()
                .starts_with("nlb.toml:2:1: cluster.key_file: "),
            "{err}"
        );
        // `insecure_no_key = false` is no choice either; the error points at it.
        let text = MINIMAL.replace("[host]", "insecure_no_key = false\n[host]");
        let err = Config::parse_secure(&text, "nlb.toml").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_str()),
            (6, "cluster.insecure_no_key"),
            "{err}"
        );
        // Either choice, made explicitly, is accepted.
        let keyless = MINIMAL.replace("[host]", "insecure_no_key = true\n[host]");
        let config = Config::parse_secure(&keyless, "nlb.toml").unwrap();
        assert!(config.cluster.insecure_no_key && config.cluster.key_file.is_none());
        let keyed = MINIMAL.replace("[host]", "key_file = \"/etc/nlb/cluster.key\"\n[host]");
        let config = Config::parse_secure(&keyed, "nlb.toml").unwrap();
        assert!(!config.cluster.insecure_no_key && config.cluster.key_file.is_some());
        // Both at once contradict each other, in either parse.
        let both = MINIMAL.replace(
            "[host]",
            "key_file = \"/etc/nlb/cluster.key\"\ninsecure_no_key = true\n[host]",
        );
        for err in [
            Config::parse(&both, "nlb.toml").unwrap_err(),
            Config::parse_secure(&both, "nlb.toml").unwrap_err(),
        ] {
            assert_eq!(
                (err.line, err.key.as_str()),
                (7, "cluster.insecure_no_key"),
                "{err}"
            );
        }
        // The lenient parse takes the minimal file as it is.
        assert!(!parse(MINIMAL).unwrap().cluster.insecure_no_key);
        // A wrong type is a type error on the key.
        let err =
            parse(&MINIMAL.replace("[host]", "insecure_no_key = \"yes\"\n[host]")).unwrap_err();
        assert_eq!(err.key, "cluster.insecure_no_key", "{err}");
    }
}
