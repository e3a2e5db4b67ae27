//! Scenario 4: balance and disruption of the bucket map, from the core alone.
//!
//! For N = 2..=64 hosts, with equal weights (100 each) and with unequal weights (100,
//! 200, 300, 400 repeating), the map is built the way a cluster builds it: host 1 alone,
//! then hosts 2, 3, ... joining one at a time, each map rebalanced from the previous one
//! with [`nlb_core::buckets::BucketMap::rebalance`]. Reported for each N:
//!
//! - **max/ideal share**: the largest `share / (256 · weight / total weight)` over the
//!   hosts; with equal weights that is max/mean;
//! - **join**: buckets that changed owner when host N joined the N−1 others, against
//!   two references: the least any map with the new quotas could move (the buckets by
//!   which each host is over its new quota), and the ideal (the joiner's own quota:
//!   nothing else needs to move). They differ when largest-remainder rounding raises an
//!   old host's quota as a host joins (the "new-state paradox" of apportionment);
//! - **leave**: the same when host ⌈N/2⌉ leaves the N (ideal: the leaver's share).

use crate::report::Table;
use nlb_core::buckets::{BUCKETS, BucketMap, HostId, quotas};
use serde::Serialize;

/// One N and weighting.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BalanceRow {
    /// `equal` or `unequal`.
    pub(crate) weights: &'static str,
    /// Hosts.
    pub(crate) hosts: u8,
    /// Largest share over its ideal.
    pub(crate) max_over_ideal: f64,
    /// Smallest share over its ideal.
    pub(crate) min_over_ideal: f64,
    /// Buckets moved when host N joined.
    pub(crate) join_moved: usize,
    /// The least a map with the new quotas could move.
    pub(crate) join_least: usize,
    /// The joiner's quota.
    pub(crate) join_ideal: usize,
    /// Buckets moved when host ⌈N/2⌉ left.
    pub(crate) leave_moved: usize,
    /// The least a map with the new quotas could move.
    pub(crate) leave_least: usize,
    /// The leaver's share.
    pub(crate) leave_ideal: usize,
}

/// The whole scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BalanceReport {
    /// Every N, both weightings.
    pub(crate) rows: Vec<BalanceRow>,
    /// Worst max/ideal share over all rows with equal weights.
    pub(crate) worst_equal: f64,
    /// Worst max/ideal share over all rows with unequal weights.
    pub(crate) worst_unequal: f64,
    /// Joins and leaves that moved more than the least for their quotas.
    pub(crate) over_least: usize,
    /// Joins and leaves that moved more than the ideal.
    pub(crate) over_ideal: usize,
    /// Buckets moved over all joins and leaves, and the ideal sum.
    pub(crate) total_moved_and_ideal: (usize, usize),
}

fn weight(weights: &str, host: HostId) -> u32 {
    match weights {
        "equal" => 100,
        _ => 100 * (1 + u32::from(host - 1) % 4),
    }
}

/// The buckets by which hosts of `map` are over their quota for `members`.
fn least_moves(map: &BucketMap, members: &[(HostId, u32)]) -> usize {
    let quotas = quotas(BUCKETS, members, |h| map.share(h));
    map.shares()
        .iter()
        .map(|(host, &share)| share.saturating_sub(quotas.get(host).copied().unwrap_or(0)))
        .sum()
}

fn spread(map: &BucketMap, members: &[(HostId, u32)]) -> (f64, f64) {
    let total: u32 = members.iter().map(|m| m.1).sum();
    let ratios = members.iter().map(|&(host, w)| {
        let ideal = f64::from(BUCKETS) * f64::from(w) / f64::from(total);
        map.share(host) as f64 / ideal
    });
    ratios.fold((0.0, f64::INFINITY), |(hi, lo), r| (hi.max(r), lo.min(r)))
}

/// Computes the scenario (a few milliseconds).
pub(crate) fn run() -> BalanceReport {
    let mut rows = Vec::new();
    for weights in ["equal", "unequal"] {
        let mut map = BucketMap::unowned().rebalance(&[(1, weight(weights, 1))]);
        for n in 2..=64u8 {
            let members: Vec<(HostId, u32)> = (1..=n).map(|h| (h, weight(weights, h))).collect();
            let joined = map.rebalance(&members);
            let join_ideal = quotas(BUCKETS, &members, |h| map.share(h))[&n];
            let join_moved = map.moved_to(&joined);
            let (max_over_ideal, min_over_ideal) = spread(&joined, &members);
            let leaver = n.div_ceil(2);
            let rest: Vec<(HostId, u32)> =
                members.iter().copied().filter(|m| m.0 != leaver).collect();
            let left = joined.rebalance(&rest);
            rows.push(BalanceRow {
                weights,
                hosts: n,
                max_over_ideal,
                min_over_ideal,
                join_moved,
                join_least: least_moves(&map, &members),
                join_ideal,
                leave_moved: joined.moved_to(&left),
                leave_least: least_moves(&joined, &rest),
                leave_ideal: joined.share(leaver),
            });
            map = joined;
        }
    }
    let worst = |w: &str| {
        rows.iter()
            .filter(|r| r.weights == w)
            .map(|r| r.max_over_ideal)
            .fold(0.0, f64::max)
    };
    BalanceReport {
        worst_equal: worst("equal"),
        worst_unequal: worst("unequal"),
        over_least: rows
            .iter()
            .map(|r| {
                usize::from(r.join_moved > r.join_least)
                    + usize::from(r.leave_moved > r.leave_least)
            })
            .sum(),
        over_ideal: rows
            .iter()
            .map(|r| {
                usize::from(r.join_moved > r.join_ideal)
                    + usize::from(r.leave_moved > r.leave_ideal)
            })
            .sum(),
        total_moved_and_ideal: rows.iter().fold((0, 0), |(m, i), r| {
            (
                m + r.join_moved + r.leave_moved,
                i + r.join_ideal + r.leave_ideal,
            )
        }),
        rows,
    }
}

/// The Markdown: a selection of N (every N is in the JSON) and the summary.
pub(crate) fn markdown(report: &BalanceReport) -> String {
    let mut table = Table::new(&[
        "weights",
        "hosts",
        "max/ideal share",
        "min/ideal share",
        "join: moved / least / ideal",
        "leave: moved / least / ideal",
    ]);
    let shown = [2, 3, 4, 5, 7, 8, 16, 31, 32, 42, 48, 63, 64];
    for row in report.rows.iter().filter(|r| shown.contains(&r.hosts)) {
        table.row(vec![
            row.weights.to_owned(),
            row.hosts.to_string(),
            format!("{:.3}", row.max_over_ideal),
            format!("{:.3}", row.min_over_ideal),
            format!(
                "{} / {} / {}",
                row.join_moved, row.join_least, row.join_ideal
            ),
            format!(
                "{} / {} / {}",
                row.leave_moved, row.leave_least, row.leave_ideal
            ),
        ]);
    }
    format!(
        "{}\nOver every N from 2 to 64: worst max/ideal share {:.3} with equal weights \
         (a share of ⌈256/N⌉ against a mean of 256/N), {:.3} with unequal weights \
         (100/200/300/400 repeating). Of {} joins and leaves, {} moved more than the least \
         their new quotas allow and {} more than the ideal; all together they moved {} \
         buckets against an ideal {}.\n",
        table.markdown(),
        report.worst_equal,
        report.worst_unequal,
        report.rows.len() * 2,
        report.over_least,
        report.over_ideal,
        report.total_moved_and_ideal.0,
        report.total_moved_and_ideal.1,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_and_leaves_move_only_what_they_must() {
        let report = super::run();
        assert_eq!(report.rows.len(), 126);
        assert_eq!(report.over_least, 0);
        assert!(
            report
                .rows
                .iter()
                .filter(|r| r.weights == "equal")
                .all(|r| r.join_moved == r.join_ideal && r.leave_moved == r.leave_ideal)
        );
        assert!(report.worst_equal <= 1.0 + 64.0 / 256.0);
        let two = &report.rows[0];
        assert_eq!((two.join_moved, two.join_ideal), (128, 128));
    }
}
