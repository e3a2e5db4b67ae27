//! Health checks: what a `[[check]]` table asks for, and how a run of results becomes a
//! verdict.
//!
//! This module is sans-IO. The daemon runs the probes off the protocol loop and hands each
//! result to [`CheckTracker::record`]; the tracker turns them into a verdict with
//! hysteresis, as keepalived's `fall`/`rise` and HAProxy's health checks do:
//!
//! - a check starts [`Health::Up`], so that a host whose checks have not run yet is not
//!   kept out (a check that fails its first `fall` runs takes the host out after
//!   `fall × interval`);
//! - `fall` consecutive failures turn an up check [`Health::Down`];
//! - `rise` consecutive successes turn a down check up again;
//! - any other sequence leaves the verdict alone.
//!
//! What a down check does to the cluster (drain or stop the rules it guards, and the rule
//! that a check down on every live host is ignored so that the VIP is never black-holed)
//! is the node's business: see `node/health.rs`.

use crate::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest error text a tracker keeps, in bytes; longer texts are cut at a character
/// boundary. The text comes from a probe (an exec check's stderr, an HTTP status line),
/// so its length is not ours to choose.
pub const MAX_ERROR_LEN: usize = 256;

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CheckKind {
    /// Passes if a TCP connection to the address opens within the timeout.
    Tcp {
        /// `IP:PORT`.
        target: SocketAddr,
    },
    /// Passes if a `GET` of the URL answers within the timeout with a 2xx or 3xx
    /// status, or with `expect_status` when given.
    Http {
        /// The address to connect to, from the URL (an IP literal: a health check must
        /// not depend on DNS).
        addr: SocketAddr,
        /// The `Host` header: the URL's authority as written.
        host: String,
        /// The path and query, `/` when the URL has none.
        path: String,
        /// The one status that passes, instead of any 2xx or 3xx.
        expect_status: Option<u16>,
    },
    /// Passes if the program exits 0 within the timeout. It runs with an empty
    /// environment (`PATH=/usr/sbin:/usr/bin:/sbin:/bin` only), no shell unless
    /// `shell = true`, stdin closed, and its output captured and cut.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// What a host does with the rules a check guards while the check is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// No new connections; existing ones finish (as `nlb drain`).
    Drain,
    /// No new connections, and the host's existing connections of those rules are cut
    /// too: their next packets reach the bucket's new owner, which resets them, so the
    /// clients reconnect to a live service at once.
    Stop,
}

/// The rules a check guards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardedRules {
    /// Every configured rule.
    All,
    /// These configured rules (0-based indexes, sorted, no duplicates).
    Some(Vec<usize>),
}

impl GuardedRules {
    /// Whether configured rule `index` is guarded.
    pub fn guards(&self, index: usize) -> bool {
        match self {
            GuardedRules::All => true,
            GuardedRules::Some(indexes) => indexes.binary_search(&index).is_ok(),
        }
    }
}

/// One validated `[[check]]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckSpec {
    /// Shown in query, metrics, events and the status page; unique in the file.
    pub name: String,
    /// What it probes.
    pub kind: CheckKind,
    /// Time from the start of one run to the start of the next.
    #[serde(rename = "interval_ms", serialize_with = "millis")]
    pub interval: Duration,
    /// How long one run may take before it counts as a failure (and, for exec, is
    /// killed). Less than the interval.
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    pub timeout: Duration,
    /// Consecutive failures before the check is down, 1..=100.
    pub fall: u8,
    /// Consecutive successes before a down check is up again, 1..=100.
    pub rise: u8,
    /// The rules it guards.
    pub rules: GuardedRules,
    /// What a down check does.
    pub action: CheckAction,
}

/// A duration as whole milliseconds, as the file writes it.
fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passing, or not yet failed `fall` times in a row.
    Up,
    /// Failed `fall` times in a row, and not yet passed `rise` times in a row since.
    Down,
}

/// The result of one run, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The run passed.
    Pass,
    /// The run failed; the text says how ("connection refused", "status 503", "timed
    /// out after 300 ms", "exit status 2: `<stderr>`").
    Fail(String),
}

/// A check's state: its verdict, the runs that lead to it, and what operators see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckTracker {
    /// The verdict.
    pub health: Health,
    /// Consecutive failures, up to `fall` (then counting stops).
    pub failures: u8,
    /// Consecutive successes, up to `rise`.
    pub successes: u8,
    /// Whether the last run passed; `None` before the first.
    pub last_passed: Option<bool>,
    /// The last failure's text, cut to [`MAX_ERROR_LEN`] bytes.
    pub last_error: Option<String>,
    /// Runs so far.
    pub runs: u64,
    /// Verdict changes so far.
    pub transitions: u64,
    /// When the verdict last changed.
    #[serde(skip)]
    pub changed_at: Option<Instant>,
}

impl Default for CheckTracker {
    fn default() -> Self {
        CheckTracker {
            health: Health::Up,
            failures: 0,
            successes: 0,
            last_passed: None,
            last_error: None,
            runs: 0,
            transitions: 0,
            changed_at: None,
        }
    }
}

impl CheckTracker {
    /// Takes one result; returns the new verdict if it changed.
    pub fn record(&mut self, now: Instant, spec: &CheckSpec, probe: Probe) -> Option<Health> {
        self.runs = self.runs.saturating_add(1);
        let before = self.health;
        match probe {
            Probe::Pass => {
                self.last_passed = Some(true);
                self.failures = 0;
                self.successes = self.successes.saturating_add(1).min(spec.rise);
                if self.health == Health::Down && self.successes >= spec.rise {
                    self.health = Health::Up;
                }
            }
            Probe::Fail(error) => {
                self.last_passed = Some(false);
                self.last_error = Some(cut(error));
                self.successes = 0;
                self.failures = self.failures.saturating_add(1).min(spec.fall);
                if self.health == Health::Up && self.failures >= spec.fall {
                    self.health = Health::Down;
                }
            }
        }
        (self.health != before).then(|| {
            self.transitions += 1;
            self.changed_at = Some(now);
            self.health
        })
    }
}

/// Reads a `tcp` check's target, `IP:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_tcp_target(target: &str) -> Result<CheckKind, String> {
    let addr = target
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("'{target}' is not IP:PORT, e.g. \"198.18.0.10:80\""))?;
    reachable(addr)?;
    Ok(CheckKind::Tcp { target: addr })
}

/// Refuses an address no probe can ever reach: port 0, or the unspecified address.
fn reachable(addr: SocketAddr) -> Result<(), String> {
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(format!(
            "{addr} can never be reached: name the service's own address and port"
        ));
    }
    Ok(())
}

/// Reads an `http` check's target, `http://IP[:PORT][/PATH]`. Only plain HTTP, and only an
/// IP literal as host: a check that needs DNS or TLS fails for reasons that are not the
/// service's (run it as an `exec` check with curl instead).
pub fn parse_http_target(url: &str, expect_status: Option<u16>) -> Result<CheckKind, String> {
    let url = url.trim();
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("'{url}' is not an http:// URL (https and other schemes: use an exec check)")
    })?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_string()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_string()),
    };
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "'{url}': the path holds spaces or control characters"
        ));
    }
    let addr = authority
        .parse::<SocketAddr>()
        .or_else(|_| {
            let ip = authority.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 80))
        })
        .map_err(|_| {
            format!(
                "'{url}': the host must be an IP address (a health check must not depend on DNS)"
            )
        })?;
    reachable(addr)?;
    if let Some(status) = expect_status
        && !(100..=599).contains(&status)
    {
        return Err(format!(
            "expect_status {status} is not an HTTP status (100..=599)"
        ));
    }
    Ok(CheckKind::Http {
        addr,
        host: authority.to_string(),
        path,
        expect_status,
    })
}

/// Reads an `exec` check's target: a command line split as a POSIX shell splits words
/// (quotes and backslashes, no expansion), or with `shell`, one argument to `/bin/sh -c`.
/// The program must be an absolute path: the check's environment has a fixed `PATH`, and
/// a relative name would depend on the daemon's working directory.
pub fn parse_exec_target(command: &str, shell: bool) -> Result<CheckKind, String> {
    if command.trim().is_empty() {
        return Err("the command is empty".to_string());
    }
    let argv = if shell {
        vec!["/bin/sh".to_string(), "-c".to_string(), command.to_string()]
    } else {
        shlex::split(command).ok_or_else(|| format!("'{command}' has an unclosed quote"))?
    };
    match argv.first() {
        None => Err("the command is empty".to_string()),
        Some(program) if !program.starts_with('/') => Err(format!(
            "'{program}' is not an absolute path; write e.g. \"/usr/bin/{program}\""
        )),
        Some(_) if argv.iter().any(|arg| arg.contains('\0')) => {
            Err("the command holds a NUL byte".to_string())
        }
        Some(_) => Ok(CheckKind::Exec { argv }),
    }
}

/// Cuts a text to [`MAX_ERROR_LEN`] bytes at a character boundary, and to its first line,
/// with other control characters (a terminal's escape sequences) replaced by `?`: the text
/// comes from the probed service and is printed on operators' terminals.
fn cut(text: String) -> String {
    let mut text: String = text
        .split(['\n', '\r'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fall: u8, rise: u8) -> CheckSpec {
        CheckSpec {
            name: "web".into(),
            kind: CheckKind::Tcp {
                target: "198.18.0.10:80".parse().unwrap(),
            },
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(300),
            fall,
            rise,
            rules: GuardedRules::All,
            action: CheckAction::Drain,
        }
    }

    fn fail() -> Probe {
        Probe::Fail("connection refused".into())
    }

    #[test]
    fn goes_down_after_fall_failures_in_a_row_and_up_after_rise_successes() {
        let spec = spec(2, 3);
        let now = Instant::ZERO;
        let mut t = CheckTracker::default();
        assert_eq!(t.record(now, &spec, fail()), None);
        assert_eq!(t.health, Health::Up);
        assert_eq!(t.record(now, &spec, fail()), Some(Health::Down));
        assert_eq!(t.last_error.as_deref(), Some("connection refused"));
        assert_eq!(t.record(now, &spec, Probe::Pass), None);
        assert_eq!(t.record(now, &spec, Probe::Pass), None);
        assert_eq!(t.health, Health::Down);
        assert_eq!(t.record(now, &spec, Probe::Pass), Some(Health::Up));
        assert_eq!((t.runs, t.transitions), (5, 2));
    }

    #[test]
    fn an_interrupted_run_starts_counting_again() {
        let spec = spec(3, 2);
        let now = Instant::ZERO;
        let mut t = CheckTracker::default();
        for probe in [fail(), fail(), Probe::Pass, fail(), fail()] {
            assert_eq!(t.record(now, &spec, probe), None);
        }
        assert_eq!(t.health, Health::Up);
        assert_eq!(t.record(now, &spec, fail()), Some(Health::Down));
        for probe in [Probe::Pass, fail(), Probe::Pass] {
            assert_eq!(t.record(now, &spec, probe), None);
        }
        assert_eq!(t.health, Health::Down);
        assert_eq!(t.record(now, &spec, Probe::Pass), Some(Health::Up));
    }

    #[test]
    fn counters_stay_bounded_over_long_runs() {
        let spec = spec(2, 2);
        let now = Instant::ZERO;
        let mut t = CheckTracker::default();
        for _ in 0..1000 {
            t.record(now, &spec, fail());
        }
        assert_eq!((t.failures, t.health, t.transitions), (2, Health::Down, 1));
    }

    #[test]
    fn error_text_is_cut_to_one_line_and_a_bounded_length() {
        let spec = spec(1, 1);
        let mut t = CheckTracker::default();
        t.record(Instant::ZERO, &spec, Probe::Fail("é".repeat(400)));
        let kept = t.last_error.clone().unwrap();
        assert!(kept.len() <= MAX_ERROR_LEN && kept.len() > MAX_ERROR_LEN - 2);
        t.record(Instant::ZERO, &spec, Probe::Fail("first\nsecond".into()));
        assert_eq!(t.last_error.as_deref(), Some("first"));
        t.record(
            Instant::ZERO,
            &spec,
            Probe::Fail("red \u{1b}[31mtext".into()),
        );
        assert_eq!(t.last_error.as_deref(), Some("red ?[31mtext"));
    }

    #[test]
    fn guarded_rules_by_index() {
        let some = GuardedRules::Some(vec![0, 2]);
        assert!(some.guards(0) && !some.guards(1) && some.guards(2));
        assert!(GuardedRules::All.guards(31));
    }
    #[test]
    fn targets_are_read_strictly() {
        assert_eq!(
            parse_tcp_target("198.18.0.10:80"),
            Ok(CheckKind::Tcp {
                target: "198.18.0.10:80".parse().unwrap()
            })
        );
        assert!(parse_tcp_target("web:80").is_err());
        assert!(parse_tcp_target("198.18.0.10:0").is_err());
        assert!(parse_tcp_target("0.0.0.0:80").is_err());
        assert!(parse_exec_target("   ", true).is_err());
        assert_eq!(
            parse_http_target("http://198.18.0.10:8080/health?x=1", None),
            Ok(CheckKind::Http {
                addr: "198.18.0.10:8080".parse().unwrap(),
                host: "198.18.0.10:8080".into(),
                path: "/health?x=1".into(),
                expect_status: None,
            })
        );
        let CheckKind::Http { addr, path, .. } =
            parse_http_target("http://[2001:db8::1]", None).unwrap()
        else {
            panic!("http")
        };
        assert_eq!(
            (addr, path.as_str()),
            ("[2001:db8::1]:80".parse().unwrap(), "/")
        );
        assert!(parse_http_target("https://198.18.0.10/", None).is_err());
        assert!(parse_http_target("http://example.com/", None).is_err());
        assert!(parse_http_target("http://198.18.0.10/a b", None).is_err());
        assert!(parse_http_target("http://198.18.0.10/", Some(999)).is_err());
        assert_eq!(
            parse_exec_target("/usr/bin/test -e '/run/my app'", false),
            Ok(CheckKind::Exec {
                argv: vec!["/usr/bin/test".into(), "-e".into(), "/run/my app".into()]
            })
        );
        assert!(parse_exec_target("pgrep nginx", false).is_err());
        assert!(parse_exec_target("/bin/true 'open", false).is_err());
        assert!(parse_exec_target("", false).is_err());
        let CheckKind::Exec { argv } = parse_exec_target("pgrep nginx | grep -q .", true).unwrap()
        else {
            panic!("exec")
        };
        assert_eq!(argv[..2], ["/bin/sh".to_string(), "-c".to_string()]);
    }
}
