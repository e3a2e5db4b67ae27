//! Statistics, the machine's state, Markdown tables and the JSON report.

use serde::Serialize;

/// Median, p90, p99 and extremes of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    /// How many values.
    pub(crate) n: usize,
    /// The median (the mean of the two middle values for an even count).
    pub(crate) median: f64,
    /// The 90th percentile by nearest rank.
    pub(crate) p90: f64,
    /// The 99th percentile by nearest rank: the maximum for fewer than 100 values.
    pub(crate) p99: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
}

impl Summary {
    /// Summarises `values` (any unit); `None` if empty.
    pub(crate) fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n);
        Some(Summary {
            n,
            median,
            p90: sorted[rank(0.90) - 1],
            p99: sorted[rank(0.99) - 1],
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// Load averages and facts of the machine at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// 1, 5 and 15 minute load averages.
    pub(crate) load: [f64; 3],
    /// Online CPUs.
    pub(crate) cpus: usize,
    /// `uname -r`.
    pub(crate) kernel: String,
}

impl Machine {
    /// Now.
    pub(crate) fn now() -> Machine {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(f64::NAN));
        let mut next = || fields.next().unwrap_or(f64::NAN);
        Machine {
            load: [next(), next(), next()],
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    /// `load average: 1.00, 0.50, 0.25 (2 CPUs)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "load average {:.2}, {:.2}, {:.2} ({} CPUs, Linux {})",
            self.load[0], self.load[1], self.load[2], self.cpus, self.kernel
        )
    }
}

/// A Markdown table being built.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out += &format!("|{}\n", "---|".repeat(self.header.len()));
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

/// Milliseconds, no decimals.
pub(crate) fn ms(value: f64) -> String {
    format!("{value:.0} ms")
}

/// A number with thousands separators.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p99, s.min, s.max), (2.5, 5.0, 1.0, 5.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Summary::of(&hundred).unwrap().p99, 99.0);
        assert_eq!(Summary::of(&hundred).unwrap().p90, 90.0);
        // Ten values: the 9th; five: the largest.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(Summary::of(&ten).unwrap().p90, 9.0);
        assert_eq!(Summary::of(&[3.0, 1.0, 5.0, 2.0, 4.0]).unwrap().p90, 5.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn tables_and_numbers() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.markdown(), "| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(thousands(58296.4), "58,296");
        assert_eq!(thousands(999.0), "999");
    }
}
