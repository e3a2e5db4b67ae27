//! `[[check]]`: health checks, their validation, and their defaults.
//!
//! ```toml
//! [[check]]
//! name = "web"                 # shown in query, metrics, events and the status page
//! type = "tcp"                 # tcp | http | exec
//! target = "198.18.0.10:80"    # tcp: IP:PORT; http: http://IP[:PORT]/PATH; exec: a command line
//! interval_ms = 1000           # 50..=3600000
//! timeout_ms = 500             # 10..interval_ms
//! fall = 3                     # consecutive failures before acting, 1..=100
//! rise = 2                     # consecutive successes before recovering, 1..=100
//! rules = ["198.18.0.10:80"]   # the rules it guards, as for `nlb drain`; default ["all"]
//! action = "drain"             # drain | stop
//! # expect_status = 200        # http only: this status passes instead of any 2xx/3xx
//! # shell = true               # exec only: run the target with /bin/sh -c
//! ```
//!
//! Checks are this host's own business (each host usually checks its own service), so
//! they are not part of the cluster-wide fingerprint. At most [`MAX_CHECKS`] tables;
//! names are unique, 1 to 32 characters of letters, digits, `-`, `_` and `.`, so that
//! they fit a metrics label and a log field as they are.

use super::error::{ConfigError, Locator};
use super::raw::{RawCheck, RawRuleNames, choose, in_range};
use crate::check::{
    CheckAction, CheckKind, CheckSpec, GuardedRules, parse_exec_target, parse_http_target,
    parse_tcp_target,
};
use std::time::Duration;
use toml::Spanned;

/// Most `[[check]]` tables a file can have.
pub const MAX_CHECKS: usize = 16;
/// Default time between runs.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Default time one run may take.
pub const DEFAULT_TIMEOUT_MS: u64 = 500;
/// Default consecutive failures before a check is down.
pub const DEFAULT_FALL: u8 = 3;
/// Default consecutive successes before a down check is up.
pub const DEFAULT_RISE: u8 = 2;

/// Validates the `[[check]]` tables against the rules they guard.
pub(super) fn validate_checks(
    at: &Locator<'_>,
    raw_checks: &[Spanned<RawCheck>],
    select: impl Fn(&str) -> Result<Option<usize>, String>,
) -> Result<Vec<CheckSpec>, ConfigError> {
    if raw_checks.len() > MAX_CHECKS {
        return Err(at.error(
            raw_checks[MAX_CHECKS].span(),
            "check",
            format!("{} checks given", raw_checks.len()),
            &format!("use at most {MAX_CHECKS} [[check]] tables"),
        ));
    }
    let mut checks: Vec<CheckSpec> = Vec::new();
    for (index, raw) in raw_checks.iter().enumerate() {
        let check = validate_check(at, index, raw, &select)?;
        if let Some(other) = checks.iter().position(|c| c.name == check.name) {
            return Err(at.error(
                raw.get_ref().name.span(),
                &format!("check[{}].name", index + 1),
                format!(
                    "\"{}\" is also the name of check[{}]",
                    check.name,
                    other + 1
                ),
                "give every check its own name",
            ));
        }
        checks.push(check);
    }
    Ok(checks)
}

fn validate_check(
    at: &Locator<'_>,
    index: usize,
    raw: &Spanned<RawCheck>,
    select: &impl Fn(&str) -> Result<Option<usize>, String>,
) -> Result<CheckSpec, ConfigError> {
    let key = |name: &str| format!("check[{}].{name}", index + 1);
    let raw = raw.get_ref();
    let name = raw.name.get_ref().trim().to_owned();
    let name_ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(at.error(
            raw.name.span(),
            &key("name"),
            format!("\"{}\" is not a check name", raw.name.get_ref()),
            "use 1 to 32 letters, digits, '-', '_' or '.', e.g. \"web\"",
        ));
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Type {
        Tcp,
        Http,
        Exec,
    }
    let kind_type = choose(
        at,
        &raw.kind,
        &key("type"),
        &[
            ("tcp", Type::Tcp),
            ("http", Type::Http),
            ("exec", Type::Exec),
        ],
    )?;
    if let Some(status) = &raw.expect_status
        && kind_type != Type::Http
    {
        return Err(at.error(
            status.span(),
            &key("expect_status"),
            "expect_status is only for http checks".to_owned(),
            "remove it, or make the check type = \"http\"",
        ));
    }
    if let Some(shell) = &raw.shell
        && kind_type != Type::Exec
    {
        return Err(at.error(
            shell.span(),
            &key("shell"),
            "shell is only for exec checks".to_owned(),
            "remove it, or make the check type = \"exec\"",
        ));
    }
    let expect_status = match &raw.expect_status {
        Some(value) => Some(in_range(at, value, &key("expect_status"), 100..=599)? as u16),
        None => None,
    };
    let target = raw.target.get_ref();
    let (kind, example) = match kind_type {
        Type::Tcp => (parse_tcp_target(target), "\"198.18.0.10:80\""),
        Type::Http => (
            parse_http_target(target, expect_status),
            "\"http://198.18.0.10/health\"",
        ),
        Type::Exec => (
            parse_exec_target(target, raw.shell.as_ref().is_some_and(|s| *s.get_ref())),
            "\"/usr/bin/pgrep -x nginx\"",
        ),
    };
    let kind: CheckKind = kind.map_err(|problem| {
        at.error(
            raw.target.span(),
            &key("target"),
            problem,
            &format!("write the target as {example}"),
        )
    })?;
    let interval_ms = match &raw.interval_ms {
        Some(value) => in_range(at, value, &key("interval_ms"), 50..=3_600_000)? as u64,
        None => DEFAULT_INTERVAL_MS,
    };
    let timeout_ms = match &raw.timeout_ms {
        Some(value) => {
            let timeout = in_range(at, value, &key("timeout_ms"), 10..=3_600_000)? as u64;
            if timeout >= interval_ms {
                return Err(at.error(
                    value.span(),
                    &key("timeout_ms"),
                    format!("{timeout} ms is not less than interval_ms ({interval_ms} ms)"),
                    "make the timeout shorter than the interval, so that runs never overlap",
                ));
            }
            timeout
        }
        None => DEFAULT_TIMEOUT_MS.min(interval_ms / 2),
    };
    let count = |value: &Option<Spanned<i64>>, name: &str, default: u8| match value {
        Some(value) => in_range(at, value, &key(name), 1..=100).map(|n| n as u8),
        None => Ok(default),
    };
    let fall = count(&raw.fall, "fall", DEFAULT_FALL)?;
    let rise = count(&raw.rise, "rise", DEFAULT_RISE)?;
    let action = match &raw.action {
        Some(value) => choose(
            at,
            value,
            &key("action"),
            &[("drain", CheckAction::Drain), ("stop", CheckAction::Stop)],
        )?,
        None => CheckAction::Drain,
    };
    let guarded = match &raw.rules {
        None => GuardedRules::All,
        Some(names) => {
            let listed: Vec<(&str, std::ops::Range<usize>)> = match names.get_ref() {
                RawRuleNames::One(name) => vec![(name.as_str(), names.span())],
                RawRuleNames::Many(list) => {
                    list.iter().map(|n| (n.as_str(), names.span())).collect()
                }
            };
            if listed.is_empty() {
                return Err(at.error(
                    names.span(),
                    &key("rules"),
                    "the list is empty: the check would guard nothing".to_owned(),
                    "name rules as \"VIP:PORT\", or remove the key to guard all rules",
                ));
            }
            let mut indexes = Vec::new();
            let mut all = false;
            for (target, span) in listed {
                match select(target) {
                    Ok(None) => all = true,
                    Ok(Some(index)) => indexes.push(index),
                    Err(problem) => {
                        return Err(at.error(
                            span,
                            &key("rules"),
                            problem,
                            "name a rule as \"VIP:PORT\" (as for `nlb drain`), or \"all\"",
                        ));
                    }
                }
            }
            indexes.sort_unstable();
            indexes.dedup();
            if all {
                GuardedRules::All
            } else {
                GuardedRules::Some(indexes)
            }
        }
    };
    Ok(CheckSpec {
        name,
        kind,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        fall,
        rise,
        rules: guarded,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use crate::check::{CheckAction, CheckKind, GuardedRules};
    use std::time::Duration;

    const RULES: &str = "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\n[[rule]]\nports = \"443\"\nprotocol = \"tcp\"\n";

    fn with(checks: &str) -> String {
        format!("{MINIMAL}{RULES}{checks}")
    }

    #[test]
    fn checks_parse_with_defaults() {
        let config = parse(&with(
            "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"198.18.0.10:80\"\nrules = [\"198.18.0.10:443\"]\n\
             [[check]]\nname = \"db\"\ntype = \"exec\"\ntarget = \"/usr/bin/pg_isready -q\"\ninterval_ms = 2000\ntimeout_ms = 1500\nfall = 1\nrise = 5\naction = \"stop\"\n",
        ))
        .unwrap();
        let [web, db] = &config.checks[..] else {
            panic!("two checks");
        };
        assert_eq!(web.name, "web");
        assert_eq!(web.rules, GuardedRules::Some(vec![1]));
        assert_eq!(
            (web.interval, web.timeout),
            (Duration::from_millis(1000), Duration::from_millis(500))
        );
        assert_eq!((web.fall, web.rise, web.action), (3, 2, CheckAction::Drain));
        assert_eq!(db.rules, GuardedRules::All);
        assert_eq!((db.fall, db.rise, db.action), (1, 5, CheckAction::Stop));
        assert_eq!(
            db.kind,
            CheckKind::Exec {
                argv: vec!["/usr/bin/pg_isready".into(), "-q".into()]
            }
        );
        assert!(parse(MINIMAL).unwrap().checks.is_empty());
        let one = parse(&with(
            "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"198.18.0.10:80\"\nrules = \"all\"\n",
        ))
        .unwrap();
        assert_eq!(one.checks[0].rules, GuardedRules::All);
    }

    #[test]
    fn check_errors_name_the_table_key_and_fix() {
        let base = "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"198.18.0.10:80\"\n";
        let cases = [
            (
                base.replace("\"tcp\"", "\"icmp\""),
                "check[1].type",
                "one of",
            ),
            (
                base.replace("198.18.0.10:80", "web:80"),
                "check[1].target",
                "198.18.0.10:80",
            ),
            (
                format!("{base}timeout_ms = 2000\n"),
                "check[1].timeout_ms",
                "shorter than the interval",
            ),
            (
                format!("{base}fall = 0\n"),
                "check[1].fall",
                "from 1 to 100",
            ),
            (
                format!("{base}rules = [\"198.18.0.10:25\"]\n"),
                "check[1].rules",
                "VIP:PORT",
            ),
            (
                format!("{base}rules = []\n"),
                "check[1].rules",
                "guard all rules",
            ),
            (
                format!("{base}expect_status = 200\n"),
                "check[1].expect_status",
                "http",
            ),
            (format!("{base}shell = true\n"), "check[1].shell", "exec"),
            (
                format!("{base}action = \"reboot\"\n"),
                "check[1].action",
                "\"drain\"",
            ),
            (
                format!("{base}colour = \"red\"\n"),
                "check[1].colour",
                "remove the key",
            ),
            (
                base.replace("\"web\"", "\"my web\""),
                "check[1].name",
                "letters, digits",
            ),
            (format!("{base}{base}"), "check[2].name", "its own name"),
        ];
        for (checks, key, fix) in cases {
            let err = parse(&with(&checks)).unwrap_err();
            assert_eq!(err.key, key, "{checks}: {err}");
            assert!(err.fix.contains(fix), "{checks}: {err}");
            assert!(err.line > 10, "{checks}: line {}", err.line);
        }
        let many: String = (0..17)
            .map(|i| base.replace("\"web\"", &format!("\"c{i}\"")))
            .collect();
        assert_eq!(parse(&with(&many)).unwrap_err().key, "check");
    }

    #[test]
    fn checks_are_not_cluster_wide() {
        let plain = parse(&with("")).unwrap();
        let checked = parse(&with(
            "[[check]]\nname = \"web\"\ntype = \"http\"\ntarget = \"http://198.18.0.10/health\"\nexpect_status = 204\n",
        ))
        .unwrap();
        assert_eq!(plain.fingerprint(), checked.fingerprint());
        assert_eq!(plain.field_digests(), checked.field_digests());
    }
}
