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
//! drain_idle_ms = 300000              # a released bucket lets go this long after its last packet (and once conntrack holds none of its flows)
//!
//! [[rule]]                            # none = one rule for everything (Rule::catch_all)
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
//!
//! # Layout
//!
//! - the raw types (`raw.rs`): the file as TOML gives it, every value with its span;
//! - one module per table, each with its validated type and its validation:
//!   [`ClusterConfig`] (`cluster.rs`), [`HostConfig`] (`host.rs`), [`Rule`] (`rule.rs`,
//!   which also names the [`Rule::catch_all`] and [`Rule::FALLBACK`] rules);
//!   `[metrics]` is one key, validated here;
//! - [`ConfigError`] and the span-to-line bookkeeping (`error.rs`);
//! - `[[check]]` health checks (`check.rs`), this host's own, not in the fingerprint;
//! - the fingerprint and its canonical encoding (`fingerprint.rs`).
//!
//! Validation runs table by table, `[cluster]`, `[host]`, `[[rule]]` (which needs the
//! VIPs), `[[check]]` (which names rules), then `[metrics]`, and stops at the first error: one problem at a time, each
//! with its file, line, column, key and fix.

mod check;
mod cluster;
mod error;
mod fingerprint;
mod host;
mod raw;
mod rule;

pub use check::{DEFAULT_FALL, DEFAULT_INTERVAL_MS, DEFAULT_RISE, DEFAULT_TIMEOUT_MS, MAX_CHECKS};
pub use cluster::ClusterConfig;
pub use error::ConfigError;
pub use fingerprint::field_name;
pub use host::{DEFAULT_DRAIN_IDLE_MS, HostConfig, InitialState};
pub use rule::{Affinity, Protocol, Rule, RuleMode};

use error::Locator;
use raw::RawConfig;
use std::net::Ipv4Addr;

/// Most VIPs a cluster can have.
pub const MAX_VIPS: usize = 8;
/// Most port rules a cluster can have. With 256 buckets per rule, this keeps a heartbeat
/// with every rule (and the fallback rule) under a 1500-byte MTU.
pub const MAX_RULES: usize = 16;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u16 = 10;
/// Default number of missed heartbeats before a member is declared dead.
pub const DEFAULT_TOLERANCE: u8 = 15;
/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/nlb/nlb.sock";

/// A whole configuration, validated, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// `[cluster]`.
    pub cluster: ClusterConfig,
    /// `[host]`.
    pub host: HostConfig,
    /// `[metrics] listen`: where to serve OpenMetrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The rules; never empty ([`Rule::catch_all`] stands in for none).
    pub rules: Vec<Rule>,
    /// `[[check]]`: this host's health checks, in file order.
    pub checks: Vec<crate::check::CheckSpec>,
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
        validate(raw, &located, secure)
    }

    /// The period after which a silent member is declared dead.
    pub fn failure_window_ms(&self) -> u32 {
        u32::from(self.cluster.heartbeat_ms) * u32::from(self.cluster.tolerance)
    }

    /// The rules an operator names as `VIP:PORT` or `all` (`nlb drain`, a check's
    /// `rules`): `Ok(None)` for all, else the configured rule that covers that VIP and
    /// port (over TCP, else UDP).
    pub fn rule_named(&self, target: &str) -> Result<Option<usize>, String> {
        rule_named(&self.rules, &self.cluster.vips, target)
    }

    /// The rule that covers `vip:port`, by index, if any.
    pub fn rule_for(&self, vip: Ipv4Addr, port: u16, protocol: Protocol) -> Option<usize> {
        self.rules
            .iter()
            .position(|rule| rule.covers(vip, port, protocol))
    }
}

/// Validates the tables in file order, the first error wins.
fn validate(raw: RawConfig, at: &Locator<'_>, secure: bool) -> Result<Config, ConfigError> {
    let cluster = cluster::validate_cluster(at, raw.cluster, secure)?;
    let host = host::validate_host(at, raw.host)?;
    let rules = rule::validate_rules(at, &raw.rule, &cluster.vips)?;
    let checks = check::validate_checks(at, &raw.check, |target| {
        rule_named(&rules, &cluster.vips, target)
    })?;
    let metrics_listen = match raw.metrics.and_then(|m| m.listen) {
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
        cluster,
        host,
        rules,
        checks,
        metrics_listen,
    })
}

fn rule_named(rules: &[Rule], vips: &[Ipv4Addr], target: &str) -> Result<Option<usize>, String> {
    let target = target.trim();
    if target == "all" {
        return Ok(None);
    }
    let (vip, port) = target
        .split_once(':')
        .and_then(|(vip, port)| Some((vip.parse::<Ipv4Addr>().ok()?, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("'{target}' is not VIP:PORT or all"))?;
    if !vips.contains(&vip) {
        return Err(format!("{vip} is not one of cluster.vips"));
    }
    [Protocol::Tcp, Protocol::Udp]
        .into_iter()
        .find_map(|protocol| {
            rules
                .iter()
                .position(|rule| rule.covers(vip, port, protocol))
        })
        .map(Some)
        .ok_or_else(|| format!("no rule covers {vip}:{port}; `nlb params` lists the rules"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_wire::addressing::ClusterMode;

    pub(super) const MINIMAL: &str = r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.10"]

[host]
id = 1
"#;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "nlb.toml")
    }

    #[test]
    fn minimal_file_gets_defaults_and_the_catch_all_rule() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.cluster.mode, ClusterMode::Multicast);
        assert_eq!(config.cluster.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        assert_eq!(config.cluster.tolerance, DEFAULT_TOLERANCE);
        assert_eq!(config.failure_window_ms(), 150);
        assert_eq!(config.host.initial_state, InitialState::Started);
        assert_eq!(config.host.drain_idle_ms, DEFAULT_DRAIN_IDLE_MS);
        assert_eq!(config.rules, vec![Rule::catch_all()]);
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn drain_idle_is_a_host_setting_from_a_second_to_a_day() {
        let with = |line: &str| parse(&MINIMAL.replace("id = 1\n", &format!("id = 1\n{line}\n")));
        assert_eq!(
            with("drain_idle_ms = 3000").unwrap().host.drain_idle_ms,
            3000
        );
        for bad in ["drain_idle_ms = 999", "drain_idle_ms = 86400001"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("host.drain_idle_ms"), "{bad}: {err}");
        }
        // Not in the fingerprint: hosts may differ.
        assert_eq!(
            with("drain_idle_ms = 3000").unwrap().fingerprint(),
            parse(MINIMAL).unwrap().fingerprint()
        );
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
