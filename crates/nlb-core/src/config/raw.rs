//! The file as TOML gives it: every table and value with its byte span, before
//! validation, and the readers that turn one value into a validated one or an error at
//! its span.
//!
//! Every table denies unknown keys, so a misspelt key is an error that names it (see
//! `Locator::toml_error`).

use super::error::{ConfigError, Locator};
use serde::Deserialize;
use std::ops::RangeInclusive;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) cluster: Spanned<RawCluster>,
    pub(super) host: Spanned<RawHost>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub(super) check: Vec<Spanned<RawCheck>>,
    pub(super) metrics: Option<RawMetrics>,
}

/// One `[[check]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) target: Spanned<String>,
    pub(super) interval_ms: Option<Spanned<i64>>,
    pub(super) timeout_ms: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) rules: Option<Spanned<RawRuleNames>>,
    pub(super) action: Option<Spanned<String>>,
    pub(super) expect_status: Option<Spanned<i64>>,
    pub(super) shell: Option<Spanned<bool>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<Spanned<String>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) interface: Spanned<String>,
    pub(super) vips: Spanned<Vec<Spanned<String>>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) heartbeat_ms: Option<Spanned<i64>>,
    pub(super) tolerance: Option<Spanned<i64>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) insecure_no_key: Option<Spanned<bool>>,
}

/// `[host]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) id: Spanned<i64>,
    pub(super) initial_state: Option<Spanned<String>>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) control_group: Option<Spanned<String>>,
    pub(super) drain_idle_ms: Option<Spanned<i64>>,
}

/// A check's `rules = ...`: one name (`"all"`) or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRuleNames {
    /// `rules = "198.18.0.10:80"` or `"all"`.
    One(String),
    /// `rules = ["198.18.0.10:80", ...]` (an untagged enum cannot keep each name's span:
    /// errors point at the key).
    Many(Vec<String>),
}

/// `weight = ...`: a number or a word.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawWeight {
    /// A load weight, `0..=100`.
    Number(i64),
    /// `"equal"`, or a mistake.
    Word(String),
}

/// One `[[rule]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) vip: Option<Spanned<String>>,
    pub(super) ports: Option<Spanned<String>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) affinity: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<RawWeight>>,
    pub(super) priority: Option<Spanned<i64>>,
}

/// Parses one of a fixed set of words, or explains the choices.
pub(super) fn choose<T: Copy>(
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

/// Reads an integer within `range`, or says which range.
pub(super) fn in_range(
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
