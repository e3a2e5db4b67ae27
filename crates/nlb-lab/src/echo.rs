//! A UDP datagram echo: a server on every host of a lab that answers each datagram with
//! the datagram and its own name, and a client that sends one datagram every few
//! milliseconds and records which host answered each. The failover benchmark's
//! fine-grained measure: a datagram is not retransmitted and needs no handshake, so the
//! client sees the moment the service stopped and the moment it came back to within
//! one send interval.
//!
//! A datagram is [`MAGIC`], a sequence number and the send time (nanoseconds since the
//! client started, both big-endian `u64`); the answer is the same bytes followed by the
//! answering host's name (`host2`). The server binds the VIP itself with `IP_FREEBIND`,
//! so it can be started before the address is there (a keepalived backup), and its
//! answers come from the VIP, as a real service's would.
//!
//! Like the rest of the crate, start these from (or into) the namespace they belong in:
//! [`EchoServer::start`] and [`EchoClient::start`] take the namespace; the `*_here`
//! variants run in the calling thread's namespace.

use nlb_linux::netns::NetNs;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first bytes of every echo datagram.
pub const MAGIC: &[u8; 4] = b"NLBE";

/// Length of a request: magic, sequence number, send time.
const REQUEST: usize = 4 + 8 + 8;

/// How often the server's and the receiver's threads look at their stop flag.
const POLL: Duration = Duration::from_millis(50);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A UDP socket bound to `addr` (with `SO_REUSEADDR`, and `IP_FREEBIND` if `freebind`).
fn udp(addr: SocketAddrV4, freebind: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if freebind {
        socket.set_freebind_v4(true)?;
    }
    socket.bind(&SocketAddr::V4(addr).into())?;
    let socket = UdpSocket::from(socket);
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// An echo server running on a thread until dropped.
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    local: SocketAddrV4,
}

impl EchoServer {
    /// Starts a server in namespace `ns` on `bind` (the VIP's port, say), answering as
    /// `name`.
    pub fn start(ns: &NetNs, bind: SocketAddrV4, name: &str) -> std::io::Result<EchoServer> {
        crate::segment::inside(ns, || Self::start_here(bind, name))?
    }

    /// Starts a server in the calling thread's namespace.
    pub fn start_here(bind: SocketAddrV4, name: &str) -> std::io::Result<EchoServer> {
        let socket = udp(bind, true)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => unreachable!("an IPv4 socket"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.as_bytes().to_vec();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue; // the poll timeout, or an ICMP error of an earlier answer
                };
                if len != REQUEST || &buf[..4] != MAGIC {
                    continue;
                }
                let end = (REQUEST + name.len()).min(buf.len());
                buf[REQUEST..end].copy_from_slice(&name[..end - REQUEST]);
                let _ = socket.send_to(&buf[..end], from);
            }
        });
        Ok(EchoServer {
            stop,
            thread: Some(thread),
            local,
        })
    }

    /// The address the server is bound to.
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One datagram the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoRecord {
    /// Its sequence number, from 0.
    pub seq: u64,
    /// When it was sent.
    pub sent: Instant,
    /// The first answer: the answering host's name and when the answer arrived.
    pub answer: Option<(String, Instant)>,
    /// How many answers came (more than one: two hosts answered).
    pub answers: u32,
}

impl EchoRecord {
    /// Answered by host `name`.
    pub fn answered_by(&self, name: &str) -> bool {
        self.answer.as_ref().is_some_and(|(n, _)| n == name)
    }
}

/// What one request asks.
fn request(seq: u64, since_start: Duration) -> [u8; REQUEST] {
    let mut out = [0u8; REQUEST];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&seq.to_be_bytes());
    out[12..].copy_from_slice(&(since_start.as_nanos() as u64).to_be_bytes());
    out
}

/// The sequence number and the name of an answer.
fn parse_answer(bytes: &[u8]) -> Option<(u64, String)> {
    if bytes.len() < REQUEST || &bytes[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
    Some((seq, String::from_utf8_lossy(&bytes[REQUEST..]).into_owned()))
}

/// One datagram from `src` (any port) to `target`: the local address used and the name
/// of the host that answered within `timeout`, if one did. Call it in the client's
/// namespace; [`EchoClient::start_here`] from the same address then hashes to the same
/// bucket.
pub fn probe(
    src: Ipv4Addr,
    target: SocketAddr,
    timeout: Duration,
) -> std::io::Result<(SocketAddrV4, Option<String>)> {
    let socket = udp(SocketAddrV4::new(src, 0), false)?;
    let local = match socket.local_addr()? {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => unreachable!("an IPv4 socket"),
    };
    let seq = u64::MAX;
    socket.send_to(&request(seq, Duration::ZERO), target)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((local, None));
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((len, _)) => {
                if let Some((s, name)) = parse_answer(&buf[..len])
                    && s == seq
                {
                    return Ok((local, Some(name)));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok((local, None));
            }
            Err(_) => {} // an ICMP error; wait for the deadline
        }
    }
}

/// An echo client: a datagram every `interval` from one address and port until
/// [`EchoClient::finish`] or drop, and a receiver thread that matches the answers.
#[derive(Debug)]
pub struct EchoClient {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<EchoRecord>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoClient {
    /// Starts a client in namespace `ns`, from `src` to `target`.
    pub fn start(
        ns: &NetNs,
        src: SocketAddrV4,
        target: SocketAddr,
        interval: Duration,
    ) -> std::io::Result<EchoClient> {
        crate::segment::inside(ns, || Self::start_here(src, target, interval))?
    }

    /// Starts a client in the calling thread's namespace.
    pub fn start_here(
        src: SocketAddrV4,
        target: SocketAddr,
        interval: Duration,
    ) -> std::io::Result<EchoClient> {
        let sender = udp(src, false)?;
        let receiver = sender.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let records: Arc<Mutex<Vec<EchoRecord>>> = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let send = {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::spawn(move || {
                let mut next = start;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Recorded before it leaves, so that an answer always finds its
                    // record.
                    let sent = Instant::now();
                    lock(&records).push(EchoRecord {
                        seq,
                        sent,
                        answer: None,
                        answers: 0,
                    });
                    // A send error (no route while an address moves) is a lost datagram.
                    let _ = sender.send_to(&request(seq, sent - start), target);
                    seq += 1;
                    // A fixed schedule; after a late wake-up the next goes at once.
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    std::thread::sleep(next - now);
                }
            })
        };
        let receive = {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, _)) = receiver.recv_from(&mut buf) else {
                        continue;
                    };
                    let arrived = Instant::now();
                    let Some((seq, name)) = parse_answer(&buf[..len]) else {
                        continue;
                    };
                    let mut records = lock(&records);
                    // Records are pushed in sequence order from 0.
                    if let Some(record) = usize::try_from(seq)
                        .ok()
                        .and_then(|i| records.get_mut(i))
                        .filter(|r| r.seq == seq)
                    {
                        record.answers += 1;
                        if record.answer.is_none() {
                            record.answer = Some((name, arrived));
                        }
                    }
                }
            })
        };
        Ok(EchoClient {
            stop,
            records,
            threads: vec![send, receive],
        })
    }

    /// Every datagram sent so far, in sequence order.
    pub fn so_far(&self) -> Vec<EchoRecord> {
        lock(&self.records).clone()
    }

    /// Stops sending, waits for the threads (an answer still in flight after the last
    /// send has the receiver's poll interval to arrive), and returns every datagram.
    pub fn finish(mut self) -> Vec<EchoRecord> {
        self.halt();
        std::mem::take(&mut *lock(&self.records))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The outage a failure at `at` caused, as the echo saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoOutage {
    /// From `at` to the send time of the first datagram answered after the last one
    /// lost: the failover measure, with the same reference as the connection-based one.
    /// Zero if no datagram sent after the last answer before `at` was lost.
    pub from_failure: Duration,
    /// From the last datagram answered before the first loss to that first answer
    /// after the last loss: the gap the client saw, whatever the failure's own latency
    /// (a datagram sent just after `at` can still reach the victim while its link is
    /// being taken down). Zero if nothing was lost.
    pub silence: Duration,
    /// The send time of that last answer before the first loss, relative to `at` (ms,
    /// negative: before it).
    pub last_answer_ms: f64,
    /// Who gave that last answer.
    pub last_answer_by: Option<&'static str>,
    /// The send time of the first datagram after `at` that another host than the
    /// victim answered, relative to `at` (ms), if one did.
    pub survivor_first_ms: Option<f64>,
    /// Datagrams lost in the silence.
    pub lost: usize,
    /// Datagrams answered more than once (two hosts answered) in the records.
    pub duplicated: usize,
}

/// The outage a failure of host `victim` (`host2`) at `at` caused, from `records` (in
/// sequence order), counting only datagrams sent before `until` (later ones may still
/// be answered). The outage runs from the last datagram answered before the failure
/// (or `at`) to the first datagram answered after the last one lost. Which host answers
/// it is not asked: a flow the victim already had may go on being answered by the
/// victim (nlb keeps a killed daemon's established flows; keepalived's killed master
/// keeps its VIP), which is service all the same; [`EchoOutage::survivor_first_ms`]
/// tells when a survivor answered. `None` if the victim never answered before `at`
/// (the echo client was not one of the victim's), or if nothing was answered after the
/// last loss (not served again).
pub fn echo_outage(
    records: &[EchoRecord],
    at: Instant,
    victim: &str,
    until: Instant,
) -> Option<EchoOutage> {
    let settled: Vec<&EchoRecord> = records.iter().filter(|r| r.sent < until).collect();
    let since = |t: Instant| {
        if t >= at {
            (t - at).as_secs_f64() * 1e3
        } else {
            -((at - t).as_secs_f64() * 1e3)
        }
    };
    // The victim must have served this client before the failure.
    if !settled.iter().any(|r| r.sent < at && r.answered_by(victim)) {
        return None;
    }
    // The last answer before the failure.
    let before = settled
        .iter()
        .rposition(|r| r.sent < at && r.answer.is_some())?;
    let survivor_first_ms = settled
        .iter()
        .find(|r| r.sent >= at && r.answer.is_some() && !r.answered_by(victim))
        .map(|r| since(r.sent));
    let duplicated = settled.iter().filter(|r| r.answers > 1).count();
    let first_lost = settled
        .iter()
        .enumerate()
        .skip(before + 1)
        .find(|(_, r)| r.answer.is_none())
        .map(|(i, _)| i);
    let Some(first_lost) = first_lost else {
        let last = settled[before];
        return Some(EchoOutage {
            from_failure: Duration::ZERO,
            silence: Duration::ZERO,
            last_answer_ms: since(last.sent),
            last_answer_by: last.answer.as_ref().map(|(n, _)| host_kind(n, victim)),
            survivor_first_ms,
            lost: 0,
            duplicated,
        });
    };
    let last_lost = settled.iter().rposition(|r| r.answer.is_none())?;
    let end = last_lost
        + 1
        + settled[last_lost + 1..]
            .iter()
            .position(|r| r.answer.is_some())?;
    // The last answer before the first loss (at or after `before`).
    let start = first_lost - 1;
    let last = settled[start];
    Some(EchoOutage {
        from_failure: settled[end].sent.saturating_duration_since(at),
        silence: settled[end].sent - last.sent,
        last_answer_ms: since(last.sent),
        last_answer_by: last.answer.as_ref().map(|(n, _)| host_kind(n, victim)),
        survivor_first_ms,
        lost: settled[start + 1..end]
            .iter()
            .filter(|r| r.answer.is_none())
            .count(),
        duplicated,
    })
}

/// `"victim"` or `"survivor"`.
fn host_kind(name: &str, victim: &str) -> &'static str {
    if name == victim { "victim" } else { "survivor" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every 2 ms from `t`: `who[i]` answered datagram `i` (`None`: lost).
    fn records(t: Instant, who: &[Option<&str>]) -> Vec<EchoRecord> {
        who.iter()
            .enumerate()
            .map(|(i, w)| {
                let sent = t + Duration::from_millis(2 * i as u64);
                EchoRecord {
                    seq: i as u64,
                    sent,
                    answer: w.map(|n| (n.to_owned(), sent + Duration::from_micros(100))),
                    answers: u32::from(w.is_some()),
                }
            })
            .collect()
    }

    const V: Option<&str> = Some("host2");
    const S: Option<&str> = Some("host1");
    const L: Option<&str> = None;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn outage_runs_from_the_failure_to_the_first_answer_after_the_loss() {
        let t = Instant::now();
        // Datagrams at 0, 2, ..., 18 ms; the failure at 5 ms; the victim answered the
        // one at 4 ms, 6..=12 were lost, a survivor answered 14 ms on.
        let r = records(t, &[V, V, V, L, L, L, L, S, S, S]);
        let o = echo_outage(&r, t + ms(5), "host2", t + ms(100)).unwrap();
        assert_eq!(o.from_failure, ms(9));
        assert_eq!(o.silence, ms(10));
        assert_eq!(o.last_answer_ms, -1.0);
        assert_eq!(o.last_answer_by, Some("victim"));
        assert_eq!(o.survivor_first_ms, Some(9.0));
        assert_eq!(o.lost, 4);
        assert_eq!(o.duplicated, 0);
    }

    #[test]
    fn the_victim_answering_after_the_failure_instant_shortens_the_silence() {
        let t = Instant::now();
        // The failure command took effect after 6 ms: the victim still answered 6 ms.
        let r = records(t, &[V, V, V, V, L, L, S, S]);
        let o = echo_outage(&r, t + ms(1), "host2", t + ms(100)).unwrap();
        assert_eq!(o.from_failure, ms(11));
        assert_eq!(o.silence, ms(6));
        assert_eq!(o.last_answer_ms, 5.0);
        assert_eq!(o.lost, 2);
    }

    #[test]
    fn a_loss_after_the_first_survivor_answer_moves_the_end() {
        let t = Instant::now();
        // A survivor answered at 8 ms, then 10 ms was lost again (a flapping hand-off):
        // the outage ends at 12 ms, and the silence runs from the victim's last answer.
        let r = records(t, &[V, V, L, L, S, L, S, S, S]);
        let o = echo_outage(&r, t + ms(3), "host2", t + ms(100)).unwrap();
        assert_eq!(o.from_failure, ms(9));
        assert_eq!(o.silence, ms(10));
        assert_eq!(o.survivor_first_ms, Some(5.0));
        assert_eq!(o.lost, 3);
    }

    #[test]
    fn losses_after_until_do_not_count_and_someone_must_answer() {
        let t = Instant::now();
        let r = records(t, &[V, V, L, S, S, L, L]);
        // The losses at 10 and 12 ms are sent after `until` (their answers may still
        // come): the outage ends at 6 ms.
        let o = echo_outage(&r, t + ms(3), "host2", t + ms(10)).unwrap();
        assert_eq!(o.from_failure, ms(3));
        // With them counted, nothing after them was answered: not served again.
        assert_eq!(echo_outage(&r, t + ms(3), "host2", t + ms(100)), None);
        // A client the victim never served measures nothing.
        let r = records(t, &[S, S, L, S, S]);
        assert_eq!(echo_outage(&r, t + ms(3), "host2", t + ms(100)), None);
        // Nor does one with no answer before the failure.
        let r = records(t, &[L, L, V, V]);
        assert_eq!(echo_outage(&r, t + ms(3), "host2", t + ms(100)), None);
    }

    #[test]
    fn the_victim_going_on_is_no_outage() {
        let t = Instant::now();
        // A killed daemon's host keeps its established flow: the victim answers on, a
        // survivor answers too from 6 ms (twice-answered datagrams), nothing is lost.
        let mut r = records(t, &[V, V, V, V, V, V]);
        r[3].answers = 2;
        r[4].answers = 2;
        r[5].answer = Some(("host1".to_owned(), r[5].sent));
        r[5].answers = 2;
        let o = echo_outage(&r, t + ms(3), "host2", t + ms(100)).unwrap();
        assert_eq!(o.from_failure, Duration::ZERO);
        assert_eq!(o.silence, Duration::ZERO);
        assert_eq!(o.lost, 0);
        assert_eq!(o.last_answer_ms, -1.0);
        assert_eq!(o.survivor_first_ms, Some(7.0));
        assert_eq!(o.duplicated, 3);
        // The victim answering again after a loss ends the outage too.
        let r = records(t, &[V, V, L, V, V]);
        let o = echo_outage(&r, t + ms(3), "host2", t + ms(100)).unwrap();
        assert_eq!((o.from_failure, o.silence, o.lost), (ms(3), ms(4), 1));
        assert_eq!(o.survivor_first_ms, None);
    }

    #[test]
    fn a_loss_before_the_failure_does_not_count() {
        let t = Instant::now();
        let r = records(t, &[V, L, V, V, L, S]);
        let o = echo_outage(&r, t + ms(5), "host2", t + ms(100)).unwrap();
        assert_eq!(o.from_failure, ms(5));
        assert_eq!(o.silence, ms(4));
        assert_eq!(o.last_answer_ms, 1.0);
        assert_eq!(o.lost, 1);
        // A datagram sent just before the failure and lost in flight opens the silence.
        let r = records(t, &[V, V, L, L, S]);
        let o = echo_outage(&r, t + ms(5), "host2", t + ms(100)).unwrap();
        assert_eq!((o.from_failure, o.silence, o.lost), (ms(3), ms(6), 2));
        assert_eq!(o.last_answer_ms, -3.0);
    }

    #[test]
    fn echo_over_loopback() {
        let server =
            EchoServer::start_here(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), "host7").unwrap();
        let target = SocketAddr::V4(server.local());
        let (_, name) = probe(Ipv4Addr::LOCALHOST, target, Duration::from_secs(2)).unwrap();
        assert_eq!(name.as_deref(), Some("host7"));
        let client = EchoClient::start_here(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            target,
            Duration::from_millis(2),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while client
            .so_far()
            .iter()
            .filter(|r| r.answer.is_some())
            .count()
            < 10
        {
            assert!(Instant::now() < deadline, "no echoes over loopback");
            std::thread::sleep(Duration::from_millis(5));
        }
        let records = client.finish();
        assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        assert!(records.windows(2).all(|w| w[0].sent <= w[1].sent));
        let answered: Vec<&EchoRecord> = records.iter().filter(|r| r.answer.is_some()).collect();
        assert!(answered.len() >= 10);
        assert!(
            answered
                .iter()
                .all(|r| r.answered_by("host7") && r.answers == 1)
        );
        assert!(
            answered
                .iter()
                .all(|r| r.answer.as_ref().unwrap().1 >= r.sent)
        );
    }
}
