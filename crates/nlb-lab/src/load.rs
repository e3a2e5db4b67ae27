//! The client load of every lab (`nlb lab`, the benchmarks, the end-to-end and attack
//! tests), run from the client's namespace, and what it saw.
//!
//! Two kinds of client, run together as threads in the client namespace:
//!
//! - **new connections**: a fresh TCP connection from the next of the client's source
//!   addresses with one HTTP request (`Connection: close`, [`crate::http::http_get`]:
//!   connect waits up to 3 s, so one lost SYN is retried by TCP after 1 s), either on a
//!   fixed schedule, each on its own thread so that a slow one never delays the next
//!   ([`Pace::Every`], 10 ms unless told), or one at a time with a pause after each
//!   ([`Pace::OneAtATime`]);
//! - **keep-alive sessions**: one connection per source address, a request every 20 ms;
//!   when a request fails the session records it and connects again, as a real client
//!   would.
//!
//! Every request is an [`Attempt`]: where it came from, when it started, how long it
//! took (its latency), which host answered or how it failed (a reset, a timeout, or
//! something else). From them: failures, stalls (answered, but after more than 500 ms,
//! a SYN retransmission or similar: [`Attempt::prompt`]), [`last_trouble`] (the e2e
//! tests' and `nlb lab`'s outage) and [`outage`] (the benchmarks' outage for the clients
//! a failed host served).

use crate::http::{KeepAlive, http_get};
use nlb_linux::netns::NetNs;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request slower than this stalled (it needed a SYN retransmission or similar).
pub const STALL: Duration = Duration::from_millis(500);

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer answered with a TCP reset (ECONNRESET, ECONNREFUSED or EPIPE).
    Reset,
    /// Nothing came back in time.
    Timeout,
    /// Anything else, such as the server closing the connection.
    Other,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The client address it came from.
    pub src: Ipv4Addr,
    /// When the client started it.
    pub started: Instant,
    /// How long it took, success or not.
    pub took: Duration,
    /// The answering host's name, or how it failed and the error text.
    pub answer: Result<String, (Failure, String)>,
}

impl Attempt {
    /// Answered, and without a SYN retransmission or similar stall (within [`STALL`]).
    pub fn prompt(&self) -> bool {
        self.answer.is_ok() && self.took <= STALL
    }

    /// Answered by host `name` (`host2`).
    pub fn answered_by(&self, name: &str) -> bool {
        self.answer.as_deref().ok() == Some(name)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The kind of failure an error text names.
pub fn classify(text: &str) -> Failure {
    let lower = text.to_ascii_lowercase();
    if [
        "os error 104",
        "os error 111",
        "os error 32",
        "reset",
        "refused",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        Failure::Reset
    } else if ["os error 110", "os error 11", "timed out", "would block"]
        .iter()
        .any(|s| lower.contains(s))
    {
        Failure::Timeout
    } else {
        Failure::Other
    }
}

/// How new connections are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One every interval on a fixed schedule (not an interval after the last one),
    /// each on its own thread.
    Every(Duration),
    /// One at a time: the next starts this long after the last one ended.
    OneAtATime(Duration),
}

/// What load to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the requests go (the VIP's port 80).
    pub target: SocketAddr,
    /// The sources of new connections, used in turn; none: no new connections.
    pub sources: Vec<Ipv4Addr>,
    /// How new connections are paced.
    pub pace: Pace,
    /// One keep-alive session from each of these.
    pub keepalive_from: Vec<Ipv4Addr>,
}

impl Plan {
    /// A new connection to `target` every 10 ms, from `sources` in turn.
    pub fn new_connections(
        target: SocketAddr,
        sources: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Plan {
        Plan {
            target,
            sources: sources.into_iter().collect(),
            pace: Pace::Every(Duration::from_millis(10)),
            keepalive_from: Vec::new(),
        }
    }

    /// With `pace` instead.
    pub fn paced(self, pace: Pace) -> Plan {
        Plan { pace, ..self }
    }

    /// With a keep-alive session from each of `from` too.
    pub fn keepalive(self, from: impl IntoIterator<Item = Ipv4Addr>) -> Plan {
        Plan {
            keepalive_from: from.into_iter().collect(),
            ..self
        }
    }
}

/// What one run of load saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// New-connection requests, by start time.
    pub new: Vec<Attempt>,
    /// Keep-alive requests (connects of the sessions included), by start time.
    pub keepalive: Vec<Attempt>,
}

/// Load running in the client's namespace until [`Load::finish`] or drop.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    new: Arc<Mutex<Vec<Attempt>>>,
    /// Start times of new-connection requests still in flight.
    pending: Arc<Mutex<Vec<Instant>>>,
    keepalive: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `plan` in namespace `client`. Fails only if no thread can enter it.
    pub fn start(client: &NetNs, plan: Plan) -> std::io::Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let new = Arc::new(Mutex::new(Vec::new()));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let keepalive = Arc::new(Mutex::new(Vec::new()));
        // Started from a thread in the client's namespace, every thread is there too.
        let threads = crate::segment::inside(client, || {
            let mut threads = Vec::new();
            for &src in &plan.keepalive_from {
                let (stop, log, target) = (stop.clone(), keepalive.clone(), plan.target);
                threads.push(std::thread::spawn(move || {
                    session(src, target, &stop, &log);
                }));
            }
            if !plan.sources.is_empty() {
                let (stop, log, pending) = (stop.clone(), new.clone(), pending.clone());
                let plan = plan.clone();
                threads.push(std::thread::spawn(move || {
                    new_connections(&plan, &stop, &log, &pending);
                }));
            }
            threads
        })?;
        Ok(Load {
            stop,
            new,
            pending,
            keepalive,
            threads,
        })
    }

    /// The new-connection requests finished so far, by start time, and the start of
    /// the oldest one still in flight.
    pub fn new_so_far(&self) -> (Vec<Attempt>, Option<Instant>) {
        // Pending first: a request that finishes in between is then in both or in the
        // finished list, never in neither (it is recorded before it leaves pending).
        let oldest = lock(&self.pending).iter().min().copied();
        let mut all = lock(&self.new).clone();
        all.sort_by_key(|a| a.started);
        (all, oldest)
    }

    /// Waits (up to `limit`) until every new-connection request started before `before`
    /// has ended, and returns the new-connection requests finished by then.
    pub fn settled(&self, before: Instant, limit: Duration) -> Vec<Attempt> {
        let deadline = Instant::now() + limit;
        loop {
            let now = Instant::now();
            let (so_far, oldest) = self.new_so_far();
            if (now >= before && oldest.is_none_or(|p| p >= before)) || now > deadline {
                return so_far;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    /// Stops the load, waits for requests in flight (up to a few seconds), and returns
    /// what it saw.
    pub fn finish(mut self) -> Seen {
        self.halt();
        let take = |log: &Mutex<Vec<Attempt>>| {
            let mut all = std::mem::take(&mut *lock(log));
            all.sort_by_key(|a| a.started);
            all
        };
        Seen {
            new: take(&self.new),
            keepalive: take(&self.keepalive),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// New connections from `plan.sources` in turn until `stop`.
fn new_connections(
    plan: &Plan,
    stop: &AtomicBool,
    log: &Arc<Mutex<Vec<Attempt>>>,
    pending: &Arc<Mutex<Vec<Instant>>>,
) {
    let target = plan.target;
    let one = move |src: Ipv4Addr,
                    started: Instant,
                    log: &Mutex<Vec<Attempt>>,
                    pending: &Mutex<Vec<Instant>>| {
        let answer = http_get(src, target).map_err(|e| (classify(&e), e));
        lock(log).push(Attempt {
            src,
            started,
            took: started.elapsed(),
            answer,
        });
        let mut pending = lock(pending);
        if let Some(at) = pending.iter().position(|&p| p == started) {
            pending.swap_remove(at);
        }
    };
    // Taken under the lock, so that a request is pending from the moment it starts.
    let begin = || {
        let mut pending = lock(pending);
        let started = Instant::now();
        pending.push(started);
        started
    };
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut next = Instant::now();
    for &src in plan.sources.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match plan.pace {
            Pace::Every(interval) => {
                let started = begin();
                let (log, pending) = (log.clone(), pending.clone());
                // New threads start in this thread's namespace.
                workers.push(std::thread::spawn(move || {
                    one(src, started, &log, &pending)
                }));
                next += interval;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                workers.retain(|w| !w.is_finished());
            }
            Pace::OneAtATime(pause) => {
                one(src, begin(), log, pending);
                std::thread::sleep(pause);
            }
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// A keep-alive session from `src` until `stop`, reconnecting after a failure.
fn session(src: Ipv4Addr, target: SocketAddr, stop: &AtomicBool, log: &Mutex<Vec<Attempt>>) {
    let record = |attempt: Attempt| lock(log).push(attempt);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut connection = match KeepAlive::connect(src, target) {
            Ok(connection) => connection,
            Err(err) => {
                let text = err.to_string();
                record(Attempt {
                    src,
                    started,
                    took: started.elapsed(),
                    answer: Err((classify(&text), format!("connect from {src}: {text}"))),
                });
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = connection.get().map_err(|e| {
                let text = e.to_string();
                let kind = match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Failure::Other,
                    _ => classify(&text),
                };
                (kind, format!("keep-alive from {src}: {text}"))
            });
            let failed = answer.is_err();
            record(Attempt {
                src,
                started,
                took: started.elapsed(),
                answer,
            });
            if failed {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The outage a failure at `at` caused, as the end-to-end tests and `nlb lab` measure
/// it: from `at` to the start of the last request started in `at..until` that failed or
/// stalled; zero if none did.
pub fn last_trouble(attempts: &[Attempt], at: Instant, until: Instant) -> Duration {
    attempts
        .iter()
        .filter(|a| a.started >= at && a.started < until)
        .filter(|a| !a.prompt())
        .map(|a| a.started.saturating_duration_since(at))
        .max()
        .unwrap_or_default()
}

/// The client-side outage of a failure at `at`, for the clients the failed host served,
/// as the benchmarks measure it: the time from `at` to the first prompt answer (see
/// [`Attempt::prompt`]) to a new connection from one of `affected` started after the
/// last new connection (from any source) that failed or stalled. `None` if no affected
/// client was served again.
///
/// With a new connection every 10 ms from rotating addresses, an affected address comes
/// up every 10 ms × (hosts / failed hosts) on average, which bounds the resolution.
pub fn outage(attempts: &[Attempt], at: Instant, affected: &[Ipv4Addr]) -> Option<Duration> {
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.started >= at).collect();
    let last_bad = after
        .iter()
        .filter(|a| !a.prompt())
        .map(|a| a.started)
        .max();
    after
        .iter()
        .filter(|a| a.prompt() && affected.contains(&a.src))
        .filter(|a| last_bad.is_none_or(|bad| a.started > bad))
        .map(|a| a.started)
        .min()
        .map(|first| first.duration_since(at))
}

/// The sources whose requests `host` answered before `at`.
pub fn served_by(attempts: &[Attempt], host: &str, at: Instant) -> Vec<Ipv4Addr> {
    let mut sources: Vec<Ipv4Addr> = attempts
        .iter()
        .filter(|a| a.started < at && a.answered_by(host))
        .map(|a| a.src)
        .collect();
    sources.sort();
    sources.dedup();
    sources
}
#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at: Instant, ms: u64, ok: bool, took_ms: u64) -> Attempt {
        Attempt {
            src: Ipv4Addr::new(198, 18, 0, 101 + (ms / 10) as u8 % 2),
            started: at + Duration::from_millis(ms),
            took: Duration::from_millis(took_ms),
            answer: if ok {
                Ok("host1".to_owned())
            } else {
                Err((Failure::Timeout, "timed out".to_owned()))
            },
        }
    }

    #[test]
    fn outage_runs_to_the_first_success_after_the_last_failure() {
        let t = Instant::now();
        let attempts = vec![
            attempt(t, 0, true, 1),
            attempt(t, 10, false, 3000),
            attempt(t, 20, true, 1),
            attempt(t, 30, true, 1001),
            attempt(t, 40, true, 1),
            attempt(t, 50, true, 1),
        ];
        let all = [
            Ipv4Addr::new(198, 18, 0, 101),
            Ipv4Addr::new(198, 18, 0, 102),
        ];
        assert_eq!(
            outage(&attempts, t + Duration::from_millis(5), &all),
            Some(Duration::from_millis(35))
        );
        // Only .101 (started at 0, 20, 40 ms) was affected.
        assert_eq!(
            outage(&attempts, t + Duration::from_millis(5), &all[..1]),
            Some(Duration::from_millis(35))
        );
        assert_eq!(
            outage(&attempts, t + Duration::from_millis(5), &all[1..]),
            Some(Duration::from_millis(45))
        );
        assert_eq!(outage(&attempts[..1], t, &all), Some(Duration::ZERO));
        assert_eq!(outage(&attempts[1..2], t, &all), None);
        assert_eq!(
            served_by(&attempts, "host1", t + Duration::from_millis(25)),
            all[..1]
        );
    }

    #[test]
    fn last_trouble_is_the_start_of_the_last_failure_or_stall_in_the_window() {
        let t = Instant::now();
        let attempts = vec![
            attempt(t, 0, false, 3000),
            attempt(t, 10, true, 1),
            attempt(t, 20, true, 1001),
            attempt(t, 30, true, 1),
            attempt(t, 40, false, 5),
            attempt(t, 50, true, 1),
        ];
        let at = |ms| t + Duration::from_millis(ms);
        // From 5 ms on: the stall at 20 ms and the failure at 40 ms; the last counts.
        assert_eq!(
            last_trouble(&attempts, at(5), at(100)),
            Duration::from_millis(35)
        );
        // Up to 40 ms (excluded): the stall at 20 ms.
        assert_eq!(
            last_trouble(&attempts, at(5), at(40)),
            Duration::from_millis(15)
        );
        // Nothing went wrong from 45 ms on, and the failure before `at` does not count.
        assert_eq!(last_trouble(&attempts, at(45), at(100)), Duration::ZERO);
        assert_eq!(last_trouble(&attempts[1..2], t, at(100)), Duration::ZERO);
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(
            classify("connect from 1.2.3.4: Connection refused (os error 111)"),
            Failure::Reset
        );
        assert_eq!(
            classify("read: Connection reset by peer (os error 104)"),
            Failure::Reset
        );
        assert_eq!(
            classify("connect from x: connection timed out"),
            Failure::Timeout
        );
        assert_eq!(classify("empty answer"), Failure::Other);
    }
}
