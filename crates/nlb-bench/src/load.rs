//! Client load in the client's namespace, and what it saw.
//!
//! Two kinds of client, run together as threads in the client namespace:
//!
//! - **new connections**: every 10 ms (on a fixed schedule, not 10 ms after the last
//!   one), a fresh TCP connection from the next of the client's addresses, one HTTP
//!   request with `Connection: close` ([`nlb_linux::segment::http_get`]: connect waits
//!   up to 3 s, so one lost SYN is retried by TCP after 1 s);
//! - **keep-alive sessions**: one connection per source address, a request every 20 ms;
//!   when a request fails the session records it and connects again, as a real client
//!   would.
//!
//! Every request is an [`Attempt`]: when it started, how long it took, which host
//! answered or how it failed (a reset, a timeout, or something else).

use crate::lab::VIP;
use nlb_linux::segment::http_get;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The peer answered with a TCP reset (ECONNRESET, ECONNREFUSED or EPIPE).
    Reset,
    /// Nothing came back in time.
    Timeout,
    /// Anything else, such as the server closing the connection.
    Other,
}

/// One request.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// The client address it came from.
    pub(crate) src: Ipv4Addr,
    /// When the client started it.
    pub(crate) started: Instant,
    /// How long it took, success or not.
    pub(crate) took: Duration,
    /// The answering host's name, or how it failed and the error text.
    pub(crate) answer: Result<String, (Failure, String)>,
}

impl Attempt {
    /// Answered, and without a SYN retransmission or similar stall (within 500 ms).
    pub(crate) fn prompt(&self) -> bool {
        self.answer.is_ok() && self.took <= Duration::from_millis(500)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn classify(text: &str) -> Failure {
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

/// What one run of load saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// New-connection requests, by start time.
    pub(crate) new: Vec<Attempt>,
    /// Keep-alive requests (connects of the sessions included).
    pub(crate) keepalive: Vec<Attempt>,
}

/// Load running in the client's namespace until [`Load::finish`].
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    new: Arc<Mutex<Vec<Attempt>>>,
    /// Start times of new-connection requests still in flight.
    pending: Arc<Mutex<Vec<Instant>>>,
    keepalive: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts a new connection every 10 ms rotating over `sources`, and one keep-alive
    /// session from each of `keepalive_from`, in namespace `client`.
    pub(crate) fn start(client: &str, sources: &[Ipv4Addr], keepalive_from: &[Ipv4Addr]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let new = Arc::new(Mutex::new(Vec::new()));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let keepalive = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for &src in keepalive_from {
            let (stop, log, client) = (stop.clone(), keepalive.clone(), client.to_owned());
            threads.push(std::thread::spawn(move || {
                if crate::lab::enter(&client).is_ok() {
                    session(src, &stop, &log);
                }
            }));
        }
        if !sources.is_empty() {
            let (stop, log, client) = (stop.clone(), new.clone(), client.to_owned());
            let pending = pending.clone();
            let sources = sources.to_vec();
            threads.push(std::thread::spawn(move || {
                if crate::lab::enter(&client).is_err() {
                    return;
                }
                let mut workers = Vec::new();
                let mut next = Instant::now();
                for src in sources.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (src, log, pending) = (*src, log.clone(), pending.clone());
                    let started = Instant::now();
                    lock(&pending).push(started);
                    // New threads start in this thread's namespace.
                    workers.push(std::thread::spawn(move || {
                        let answer = http_get(src, SocketAddr::from((VIP, 80)))
                            .map_err(|e| (classify(&e), e));
                        let attempt = Attempt {
                            src,
                            started,
                            took: started.elapsed(),
                            answer,
                        };
                        lock(&log).push(attempt);
                        let mut pending = lock(&pending);
                        if let Some(at) = pending.iter().position(|&p| p == started) {
                            pending.swap_remove(at);
                        }
                    }));
                    next += Duration::from_millis(10);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    workers.retain(|w| !w.is_finished());
                }
                for worker in workers {
                    let _ = worker.join();
                }
            }));
        }
        Load {
            stop,
            new,
            pending,
            keepalive,
            threads,
        }
    }

    /// The new-connection requests finished so far, by start time, and the start of
    /// the oldest one still in flight.
    pub(crate) fn new_so_far(&self) -> (Vec<Attempt>, Option<Instant>) {
        // Pending first: a request that finishes in between is then in both or in the
        // finished list, never in neither.
        let oldest = lock(&self.pending).iter().min().copied();
        let mut all = lock(&self.new).clone();
        all.sort_by_key(|a| a.started);
        (all, oldest)
    }

    /// Stops the load, waits for requests in flight (up to a few seconds), and returns
    /// what it saw.
    pub(crate) fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        let take = |log: &Mutex<Vec<Attempt>>| {
            let mut all = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
            all.sort_by_key(|a| a.started);
            all
        };
        Seen {
            new: take(&self.new),
            keepalive: take(&self.keepalive),
        }
    }
}

/// A keep-alive session from `src` until `stop`, reconnecting after a failure.
fn session(src: Ipv4Addr, stop: &AtomicBool, log: &Mutex<Vec<Attempt>>) {
    let record = |attempt: Attempt| log.lock().unwrap_or_else(|p| p.into_inner()).push(attempt);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let stream = match connect(src) {
            Ok(stream) => stream,
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
        let Ok(read_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = std::io::BufReader::new(read_half);
        let mut writer = stream;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = request(&mut reader, &mut writer).map_err(|e| {
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

fn connect(src: Ipv4Addr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((src, 0)).into())?;
    socket.connect_timeout(&SocketAddr::from((VIP, 80)).into(), Duration::from_secs(3))?;
    let stream = std::net::TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request on a kept-alive connection: the body (the host's name).
fn request(
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    writer: &mut std::net::TcpStream,
) -> std::io::Result<String> {
    writer.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// The client-side outage of a failure at `at`, for the clients the failed host served:
/// the time from `at` to the first prompt answer (see [`Attempt::prompt`]) to a new
/// connection from one of `affected` started after the last new connection (from any
/// source) that failed or stalled. `None` if no affected client was served again.
///
/// With a new connection every 10 ms from rotating addresses, an affected address comes
/// up every 10 ms × (hosts / failed hosts) on average, which bounds the resolution.
pub(crate) fn outage(attempts: &[Attempt], at: Instant, affected: &[Ipv4Addr]) -> Option<Duration> {
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

/// The sources whose new connections `host` answered before `at`.
pub(crate) fn served_by(attempts: &[Attempt], host: &str, at: Instant) -> Vec<Ipv4Addr> {
    let mut sources: Vec<Ipv4Addr> = attempts
        .iter()
        .filter(|a| a.started < at && a.answer.as_deref().ok() == Some(host))
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
