//! `nlb plan`: each host's share of the buckets before and after a membership change.
//!
//! Capacity planning for operators, and a way to see the bucket map: it runs the same
//! [`BucketMap::rebalance`] the cluster runs.

use crate::CliError;
use crate::cmd::load_config;
use nlb_core::buckets::{BUCKETS, BucketMap, HostId};
use nlb_core::config::{Rule, RuleMode};
use nlb_core::node::EQUAL_WEIGHT;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file (rules and modes come from it).
    #[arg(long)]
    config: PathBuf,
    /// The hosts in the cluster now, as ids: 1,2,3.
    #[arg(long, value_delimiter = ',', required = true)]
    members: Vec<String>,
    /// Plan the departure of this host.
    #[arg(long, conflicts_with = "add")]
    remove: Option<String>,
    /// Plan the arrival of this host.
    #[arg(long)]
    add: Option<String>,
    /// A host's load weight, 0..=100 (default: equal), as N=W. Repeat for each host.
    #[arg(long = "weight")]
    weights: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct RulePlan {
    rule: usize,
    description: String,
    buckets: u16,
    before: BTreeMap<HostId, usize>,
    after: BTreeMap<HostId, usize>,
    moved: usize,
    ideal_moved: usize,
    max_over_mean_before: f64,
    max_over_mean_after: f64,
}

/// Who takes the traffic no rule covers: the fallback rule's one owner.
#[derive(Debug, serde::Serialize)]
struct FallbackPlan {
    before: Option<HostId>,
    after: Option<HostId>,
}

#[derive(Debug, serde::Serialize)]
struct Plan {
    members_before: Vec<HostId>,
    members_after: Vec<HostId>,
    rules: Vec<RulePlan>,
    fallback: FallbackPlan,
}

/// The owner of the fallback rule ([`Rule::FALLBACK`]) among `members`: a single-host
/// rule without priorities, so the lowest host id. Load weights do not apply to it.
fn fallback_owner(members: &[HostId]) -> Option<HostId> {
    debug_assert!(Rule::FALLBACK.mode == RuleMode::Single && Rule::FALLBACK.priority.is_none());
    members.iter().copied().min()
}

fn host_id(text: &str, what: &str) -> Result<HostId, CliError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|id| (1..=64).contains(id))
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "{what} '{text}' is not a host id: use a number from 1 to 64"
            ))
        })
}

fn max_over_mean(map: &BucketMap, members: &[HostId]) -> f64 {
    let shares: Vec<usize> = members.iter().map(|&h| map.share(h)).collect();
    let owners = shares.iter().filter(|&&s| s > 0).count().max(1);
    let mean = f64::from(BUCKETS) / owners as f64;
    shares.iter().copied().max().unwrap_or(0) as f64 / mean
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let config = load_config(&args.config)?;
    let mut before = Vec::new();
    for text in &args.members {
        let id = host_id(text, "--members")?;
        if before.contains(&id) {
            return Err(CliError::bad_input(format!(
                "--members lists host {id} twice"
            )));
        }
        before.push(id);
    }
    before.sort_unstable();
    let mut weights: BTreeMap<HostId, u32> = BTreeMap::new();
    for text in &args.weights {
        let (host, weight) = text.split_once('=').ok_or_else(|| {
            CliError::bad_input(format!("--weight '{text}' is not N=W, such as 3=50"))
        })?;
        let host = host_id(host, "--weight")?;
        let weight = weight
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| {
                CliError::bad_input(format!("--weight '{text}': the weight must be 0 to 100"))
            })?;
        weights.insert(host, weight);
    }
    let mut after = before.clone();
    let mut ideal_host = None;
    if let Some(text) = &args.remove {
        let id = host_id(text, "--remove")?;
        if !before.contains(&id) {
            return Err(CliError::bad_input(format!(
                "--remove {id}: host {id} is not in --members"
            )));
        }
        after.retain(|&h| h != id);
        ideal_host = Some((id, true));
    }
    if let Some(text) = &args.add {
        let id = host_id(text, "--add")?;
        if before.contains(&id) {
            return Err(CliError::bad_input(format!(
                "--add {id}: host {id} is already in --members"
            )));
        }
        after.push(id);
        after.sort_unstable();
        ideal_host = Some((id, false));
    }
    let weigh = |members: &[HostId]| -> Vec<(HostId, u32)> {
        members
            .iter()
            .map(|&h| (h, weights.get(&h).copied().unwrap_or(EQUAL_WEIGHT)))
            .collect()
    };
    let mut plan = Plan {
        members_before: before.clone(),
        members_after: after.clone(),
        rules: Vec::new(),
        fallback: FallbackPlan {
            before: fallback_owner(&before),
            after: fallback_owner(&after),
        },
    };
    for (index, rule) in config.rules.iter().enumerate() {
        if rule.mode != RuleMode::Multiple {
            continue;
        }
        let map_before = BucketMap::unowned().rebalance(&weigh(&before));
        let map_after = map_before.rebalance(&weigh(&after));
        let ideal_moved = match ideal_host {
            Some((host, true)) => map_before.share(host),
            Some((host, false)) => map_after.share(host),
            None => 0,
        };
        let vip = rule.vip.map_or("all VIPs".to_owned(), |v| v.to_string());
        plan.rules.push(RulePlan {
            rule: index + 1,
            description: format!(
                "{vip}, ports {}-{}, {:?}, affinity {:?}",
                rule.ports.start(),
                rule.ports.end(),
                rule.protocol,
                rule.affinity
            )
            .to_lowercase(),
            buckets: BUCKETS,
            before: before.iter().map(|&h| (h, map_before.share(h))).collect(),
            after: after.iter().map(|&h| (h, map_after.share(h))).collect(),
            moved: map_before.moved_to(&map_after),
            ideal_moved,
            max_over_mean_before: max_over_mean(&map_before, &before),
            max_over_mean_after: max_over_mean(&map_after, &after),
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("plain values serialise")
        );
        return Ok(());
    }
    if plan.rules.is_empty() {
        println!(
            "no multiple-host rules: single-host rules go whole to the live host with the lowest handling priority"
        );
    }
    for rule in &plan.rules {
        println!(
            "rule {} ({}): {} buckets",
            rule.rule, rule.description, rule.buckets
        );
        println!("  {:>6}  {:>8}  {:>8}", "host", "before", "after");
        let hosts: std::collections::BTreeSet<HostId> = rule
            .before
            .keys()
            .chain(rule.after.keys())
            .copied()
            .collect();
        for host in hosts {
            let show = |m: &BTreeMap<HostId, usize>| {
                m.get(&host).map_or("-".to_owned(), |n| n.to_string())
            };
            println!(
                "  {host:>6}  {:>8}  {:>8}",
                show(&rule.before),
                show(&rule.after)
            );
        }
        println!(
            "  moved {} buckets (ideal {}); max/mean {:.3} before, {:.3} after",
            rule.moved, rule.ideal_moved, rule.max_over_mean_before, rule.max_over_mean_after
        );
    }
    let host = |owner: Option<HostId>| owner.map_or("nobody".to_owned(), |h| format!("host {h}"));
    println!(
        "traffic no rule covers (the fallback rule, lowest host id): {} before, {} after",
        host(plan.fallback.before),
        host(plan.fallback.after)
    );
    Ok(())
}
