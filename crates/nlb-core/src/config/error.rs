//! Configuration errors: every one names the file, line, column and dotted key, says
//! what is wrong and how to fix it.
//!
//! [`ConfigError`] is the error of [`Config::parse`](super::Config::parse). Its
//! `Display` is `file:line:column: key: problem. Fix: fix`, the form editors and
//! terminals turn into links. `Locator` turns the byte spans TOML gives into lines and
//! columns, and the dotted key (`cluster.vips`, `rule[2].ports`) from the table a span
//! falls in, for semantic errors and for the parser's own (unknown keys, missing keys,
//! wrong types).

use std::fmt;
use std::ops::Range;

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
pub(super) struct Locator<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
}

impl Locator<'_> {
    pub(super) fn error(
        &self,
        span: Range<usize>,
        key: &str,
        problem: String,
        fix: &str,
    ) -> ConfigError {
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
        // Each array of tables (`[[rule]]`, `[[check]]`) is numbered on its own.
        let mut counts: Vec<(String, usize)> = Vec::new();
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
                let name = name.trim().to_owned();
                let count = match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        counts.push((name.clone(), 1));
                        1
                    }
                };
                table = Some(format!("{name}[{count}]"));
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

    pub(super) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
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
