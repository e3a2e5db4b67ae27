//! Port rules: the `[[rule]]` tables, their types and their validation.
//!
//! A [`Rule`] says which traffic it covers (VIP, port range, protocol) and how the
//! cluster spreads it (mode, affinity, this host's weight or priority). Two named rules
//! exist besides the configured ones, and they are different things:
//!
//! - [`Rule::catch_all`] stands in for the rules of a file that has none: all traffic,
//!   spread over every host (multiple mode, single affinity). It is a configured rule,
//!   and counts as one in the fingerprint.
//! - [`Rule::FALLBACK`] takes the traffic that no configured rule covers: single mode,
//!   single affinity, owned by the live host with the lowest id. It is never in
//!   [`Config::rules`](super::Config::rules); per-rule tables hold it in the slot after
//!   the configured rules (see [`crate::filter::RuleRef`]).
//!
//! Validation ([`validate_rules`]) refuses overlapping rules, a single-mode rule without
//! a priority, a VIP that is not one of `cluster.vips`, and more than
//! [`MAX_RULES`](super::MAX_RULES) rules; every error points at the rule's table or value.

use super::MAX_RULES;
use super::error::{ConfigError, Locator};
use super::raw::{RawRule, RawWeight, choose, in_range};
use nlb_wire::bitmap::MAX_HOST_ID;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use toml::Spanned;

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
    pub fn catch_all() -> Rule {
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

    /// The fallback rule for traffic no configured rule covers: all VIPs, all ports,
    /// both protocols, single mode with no priority (so the live host with the lowest id
    /// owns it, as Windows NLB's default host), single affinity. It comes after the
    /// configured rules in every per-rule table.
    pub const FALLBACK: Rule = Rule {
        vip: None,
        ports: 0..=65535,
        protocol: Protocol::Both,
        mode: RuleMode::Single,
        affinity: Affinity::Single,
        weight: None,
        priority: None,
    };

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
}

/// A port range as the file writes it: `"80"`, `"8000-8100"` or `"all"`.
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

/// Validates the `[[rule]]` tables against the cluster's VIPs; no tables give
/// [`Rule::catch_all`].
pub(super) fn validate_rules(
    at: &Locator<'_>,
    raw_rules: &[Spanned<RawRule>],
    vips: &[Ipv4Addr],
) -> Result<Vec<Rule>, ConfigError> {
    if raw_rules.len() > MAX_RULES {
        return Err(at.error(
            raw_rules[MAX_RULES].span(),
            "rule",
            format!("{} rules given", raw_rules.len()),
            &format!("use at most {MAX_RULES} [[rule]] tables; merge port ranges"),
        ));
    }
    let mut rules: Vec<Rule> = Vec::new();
    for (index, raw) in raw_rules.iter().enumerate() {
        let rule = validate_rule(at, index, raw, vips)?;
        if let Some(other) = rules.iter().position(|r| r.overlaps(&rule)) {
            return Err(at.error(
                raw.span(),
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
        rules.push(Rule::catch_all());
    }
    Ok(rules)
}

/// Validates rule `index` (0-based) on its own.
fn validate_rule(
    at: &Locator<'_>,
    index: usize,
    raw: &Spanned<RawRule>,
    vips: &[Ipv4Addr],
) -> Result<Rule, ConfigError> {
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
    Ok(Rule {
        vip,
        ports,
        protocol,
        mode,
        affinity,
        weight,
        priority,
    })
}
