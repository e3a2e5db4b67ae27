//! The node's deadlines, named (as quinn-proto's `Timer`): one slot per [`Timer`] in a
//! [`TimerTable`], instead of `Option<Instant>` fields scattered over the node.
//!
//! Contract: [`Node::poll_timeout`](super::Node::poll_timeout) is the earliest armed
//! wake-up timer ([`Timer::wakes`]) or peer expiry; [`Node::handle_timeout`](super::Node::handle_timeout)
//! runs whatever is due. Each subsystem arms and stops its own timers; a timer that is
//! not a wake-up is a deadline checked at the next input. Peers expire on their own
//! deadlines (`last heard + failure window`), kept with the peers in `membership.rs`.

use crate::time::Instant;

/// A named deadline of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The next heartbeat. Always armed: a heartbeat goes out every period, and sooner
    /// when what this host advertises changes.
    Heartbeat,
    /// The next RFC 5227 probe of the VIPs before the first join, or the end of probing
    /// after the last one. Armed while probing.
    Probe,
    /// The end of the wait of a host that just began to take part, before it installs its
    /// first view ([`JOIN_WAIT_PERIODS`](super::JOIN_WAIT_PERIODS)).
    JoinWait,
    /// The end of the listening window after a stall, before which no view is installed.
    /// Not a wake-up: it is checked at the next input (a heartbeat is due within a period
    /// anyway), so that views go in at the same moments as they always have.
    StallWait,
    /// The next VIP announcement of a series ([`ANNOUNCE_OFFSETS`](super::ANNOUNCE_OFFSETS)).
    Announce,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 5] = [
        Timer::Heartbeat,
        Timer::Probe,
        Timer::JoinWait,
        Timer::StallWait,
        Timer::Announce,
    ];

    /// Whether the node asks to be woken for this timer ([`Node::poll_timeout`](super::Node::poll_timeout)).
    pub const fn wakes(self) -> bool {
        !matches!(self, Timer::StallWait)
    }
}

/// When each [`Timer`] expires, if it is armed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `timer` for `at`, replacing any earlier deadline.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    /// Arms `timer` for `at`, or stops it.
    pub(super) fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at;
    }

    /// Stops `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    /// When `timer` expires, if it is armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// Whether `timer` is armed.
    pub(super) fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// Whether `timer` is armed and due at `now`.
    pub(super) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| now >= at)
    }

    /// The earliest armed wake-up timer.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        Timer::ALL
            .into_iter()
            .filter(|timer| timer.wakes())
            .filter_map(|timer| self.get(timer))
            .min()
    }

    /// Every timer with its deadline, in table order (for the protocol digest).
    pub(super) fn iter(&self) -> impl Iterator<Item = (Timer, Option<Instant>)> + '_ {
        Timer::ALL.into_iter().map(|timer| (timer, self.get(timer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_wakeup_is_the_earliest_armed_timer_that_wakes() {
        let mut table = TimerTable::default();
        assert_eq!(table.next_wakeup(), None);
        table.set(Timer::Heartbeat, Instant(300));
        table.set(Timer::StallWait, Instant(100));
        assert_eq!(
            table.next_wakeup(),
            Some(Instant(300)),
            "the stall wait wakes nobody"
        );
        table.set(Timer::Announce, Instant(200));
        assert_eq!(table.next_wakeup(), Some(Instant(200)));
        assert!(table.is_due(Timer::Announce, Instant(200)));
        assert!(!table.is_due(Timer::Announce, Instant(199)));
        table.stop(Timer::Announce);
        assert!(!table.is_armed(Timer::Announce));
        table.set_or_stop(Timer::Probe, Some(Instant(250)));
        assert_eq!(table.next_wakeup(), Some(Instant(250)));
        table.set_or_stop(Timer::Probe, None);
        assert_eq!(table.next_wakeup(), Some(Instant(300)));
        assert_eq!(table.iter().count(), Timer::ALL.len());
    }
}
