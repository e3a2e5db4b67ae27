//! One node's lifecycle driven by hand: reloads (in place, rejoin, refused), successors,
//! connection counts, and its named timers.

use nlb_core::config::Config;
use nlb_core::node::{Command, CommandError, Node};
use nlb_core::time::Instant;
use nlb_wire::bitmap::BucketBitmap;
use nlb_wire::heartbeat::HostState;
use std::time::Duration;

mod common;
use common::{MY_MAC, config, ms, now_of, run_until, running_node};

/// The reload policy: this host's weight in place, the cluster-wide timers by a
/// successor under the next incarnation, the addressing and the id refused.
#[test]
fn reload_applies_in_place_rejoins_or_refuses() {
    use nlb_core::node::{ReloadError, ReloadOutcome};
    let with = |cluster: &str, rule: &str| {
        Config::parse(
            &format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n{cluster}\n[host]\nid = 1\n\
                 [[rule]]\nports = \"80\"\nmode = \"multiple\"\n{rule}\n"
            ),
            "t.toml",
        )
        .unwrap()
    };
    let rule = |cluster: &str| with(cluster, "");
    let mut node = Node::new(rule(""), MY_MAC, 7, None, ms(0));
    run_until(&mut node, ms(1000));
    assert!(matches!(
        node.reload(ms(1000), with("", "weight = 50")),
        Ok(ReloadOutcome::InPlace)
    ));
    assert_eq!(node.config().rules[0].weight, Some(50));

    let before = node.clone();
    let Ok(ReloadOutcome::Rejoin(rejoin)) = node.reload(ms(1000), rule("tolerance = 5")) else {
        panic!("a new tolerance needs a rejoin");
    };
    assert_eq!(rejoin.field, "cluster.tolerance");
    assert!(rejoin.to_string().starts_with("cluster.tolerance changed"));
    assert_eq!(
        node.protocol_digest(ms(1000)),
        before.protocol_digest(ms(1000)),
        "a rejoin leaves the node as it was"
    );
    let next = node.successor(ms(1000), *rejoin.config, MY_MAC, None, None);
    assert_eq!(next.incarnation(), 8);
    assert_eq!(next.config().cluster.tolerance, 5);
    let stored = node.successor(ms(1000), rule(""), MY_MAC, None, Some(100));
    assert_eq!(
        stored.incarnation(),
        100,
        "the stored counter when it is ahead"
    );
    let behind = node.successor(ms(1000), rule(""), MY_MAC, None, Some(3));
    assert_eq!(
        behind.incarnation(),
        8,
        "never below the current incarnation"
    );

    let refused = |node: &mut Node, text: &str| {
        node.reload(ms(1000), Config::parse(text, "t.toml").unwrap())
            .unwrap_err()
    };
    let other = |cluster: &str, id: u8| {
        format!(
            "[cluster]\n{cluster}\n[host]\nid = {id}\n[[rule]]\nports = \"80\"\nmode = \"multiple\"\n"
        )
    };
    let here = "interface = \"eth0\"\nvips = [\"198.18.0.10\"]";
    assert_eq!(refused(&mut node, &other(here, 2)), ReloadError::HostId);
    assert_eq!(
        refused(
            &mut node,
            &other("interface = \"eth1\"\nvips = [\"198.18.0.10\"]", 1)
        ),
        ReloadError::Interface
    );
    assert_eq!(
        refused(
            &mut node,
            &other("interface = \"eth0\"\nvips = [\"198.18.0.11\"]", 1)
        ),
        ReloadError::Vips
    );
    let mode = refused(&mut node, &other(&format!("{here}\nmode = \"unicast\""), 1));
    assert_eq!(mode, ReloadError::Mode);
    assert!(mode.to_string().starts_with("cluster.mode changed"));
}

/// A successor keeps the host's state: a stopped or suspended host stays so, and a
/// data plane that fails still fails closed.
#[test]
fn a_successor_keeps_the_state_and_the_data_plane_health() {
    let mut node = running_node();
    let now = Instant(now_of(&node));
    node.handle_command(now, Command::Suspend).unwrap();
    node.handle_dataplane(now, false);
    let mut next = node.successor(now, config(""), MY_MAC, None, None);
    assert_eq!(next.state(), HostState::Suspended);
    next.handle_command(now, Command::Resume).unwrap();
    run_until(&mut next, now + Duration::from_secs(2));
    assert!(
        next.owned().iter().all(BucketBitmap::is_empty),
        "a failing data plane accepts nothing"
    );
}

/// Connection counts are telemetry: they reach a suspended host, which refuses commands.
#[test]
fn connection_counts_reach_a_suspended_host() {
    let mut node = running_node();
    let now = Instant(now_of(&node));
    node.handle_command(now, Command::Suspend).unwrap();
    assert_eq!(node.handle_connections(now, 5), HostState::Suspended);
    assert_eq!(
        node.handle_command(now, Command::Start),
        Err(CommandError::Suspended)
    );
}

/// The node wakes for the earliest named timer that wakes it; the stall wait is checked
/// at the next input.
#[test]
fn poll_timeout_is_the_earliest_wakeup_timer() {
    use nlb_core::node::Timer;
    let mut node = Node::new(config(""), MY_MAC, 1, None, ms(0));
    for _ in 0..20 {
        let next = node.poll_timeout();
        node.handle_timeout(next);
        let earliest = Timer::ALL
            .into_iter()
            .filter(|timer| timer.wakes())
            .filter_map(|timer| node.timer(timer))
            .min()
            .unwrap();
        assert!(node.timer(Timer::Heartbeat).is_some(), "always armed");
        assert_eq!(node.poll_timeout(), earliest, "alone: no peer expires");
    }
    assert!(!Timer::StallWait.wakes());
}
