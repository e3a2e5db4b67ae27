//! The daemon's kernel worker: one thread that runs everything that can block on the
//! kernel or on a child process (nft batches, lease refreshes and ownership changes on
//! the `nft -i` session, `ss` connection counts), in the order the protocol loop queued
//! it, and reports each result back to the loop with the time it completed.
//!
//! One thread, first in first out, is part of the ordering contract (see
//! [`crate::cmd::run`]): a lease refresh queued after a release is applied after it.
//! The daemon runs a second one for the counts of draining buckets' connections
//! ([`Job::LiveBuckets`]: conntrack, `ss` and the `recent` set), which need no order
//! and must not delay the first.

use nlb_core::config::{Config, Protocol};
use nlb_core::filter::{Flow, cluster_seed, decide};
use nlb_linux::nft::{NftSession, SessionError, apply};
use nlb_wire::bitmap::BucketBitmap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a lease refresh may take before the session is called dead.
const SESSION_TIMEOUT: Duration = Duration::from_secs(1);

/// Work for the kernel thread.
#[derive(Debug)]
pub(crate) enum Job {
    /// Apply these nft batches, in order, each atomically.
    Apply { id: u64, batches: Vec<String> },
    /// Refresh the lease with this command, on the `nft -i` session.
    Lease { command: String },
    /// Apply this line of element changes ([`nlb_linux::ruleset::Update::Elements`]) on
    /// the `nft -i` session; done as [`Done::Applied`].
    Update { id: u64, line: String },
    /// Which buckets of each rule slot of `config` hold a conntrack entry to a VIP that
    /// is not over, or a TCP connection of this host (from a VIP, any state but
    /// listening, closed and time-wait), or are in the `recent` set of the inet table
    /// `table` (a packet of a connection conntrack knows came in them lately, or they
    /// were released lately). The daemon sends it to a second worker of its own, so
    /// that a slow count never delays an ownership change.
    /// Flows to a port in `local_ports` (`ip_local_port_range`) are left out: the
    /// netdev stage never judges those by bucket.
    LiveBuckets {
        config: Box<Config>,
        table: String,
        local_ports: (u16, u16),
    },
    /// Count the established TCP connections from these VIPs; done on the counting
    /// worker too.
    CountConnections { vips: Vec<Ipv4Addr> },
    /// Put a VIP back on the interface.
    AddVip { interface: String, vip: Ipv4Addr },
    /// Check that these tables (`family name`) exist, and read `ip_local_port_range`.
    CheckTables { tables: Vec<String> },
}

/// A finished job.
#[derive(Debug)]
pub(crate) enum Done {
    Applied {
        id: u64,
        result: Result<(), String>,
        at: Instant,
    },
    Lease {
        result: Result<(), String>,
        at: Instant,
    },
    /// The count of a [`Job::CountConnections`]; the failed command if `ss` failed.
    Connections(Result<u32, String>),
    /// The answer to [`Job::LiveBuckets`]: per rule slot, the buckets with a connection,
    /// listed from `started` on; what failed if `ss`, `nft` or `conntrack` did; and what
    /// the count read.
    LiveBuckets {
        live: Result<Vec<BucketBitmap>, String>,
        sources: DrainSources,
        started: Instant,
    },
    VipAdded {
        vip: Ipv4Addr,
        result: Result<(), String>,
    },
    /// The tables of a [`Job::CheckTables`] that are missing, and the kernel's
    /// `ip_local_port_range` now (an operator may change it at run time).
    Tables {
        missing: Vec<String>,
        local_ports: (u16, u16),
    },
}

/// The handle of the kernel thread.
#[derive(Debug)]
pub(crate) struct Kernel {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kernel {
    /// Starts the thread; results go to `done`.
    pub(crate) fn spawn(done: tokio::sync::mpsc::UnboundedSender<Done>) -> std::io::Result<Kernel> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("nlb-kernel".into())
            .spawn(move || {
                let mut session: Option<NftSession> = None;
                for job in rx {
                    let result = match job {
                        Job::Apply { id, batches } => Done::Applied {
                            id,
                            result: apply(&batches).map_err(|e| e.to_string()),
                            at: Instant::now(),
                        },
                        Job::Lease { command } => Done::Lease {
                            result: refresh(&mut session, &command),
                            at: Instant::now(),
                        },
                        Job::Update { id, line } => Done::Applied {
                            id,
                            result: update(&mut session, &line),
                            at: Instant::now(),
                        },
                        Job::LiveBuckets {
                            config,
                            table,
                            local_ports,
                        } => {
                            let started = Instant::now();
                            let (live, sources) = live_buckets(&config, &table, local_ports);
                            Done::LiveBuckets {
                                live,
                                sources,
                                started,
                            }
                        }
                        Job::CountConnections { vips } => {
                            Done::Connections(count_connections(&vips))
                        }
                        Job::AddVip { interface, vip } => Done::VipAdded {
                            vip,
                            result: nlb_linux::host::add_vip(&interface, vip)
                                .map_err(|e| e.to_string()),
                        },
                        Job::CheckTables { tables } => Done::Tables {
                            missing: missing_tables(&tables),
                            local_ports: nlb_linux::ruleset::local_port_range(),
                        },
                    };
                    if done.send(result).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Kernel {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a job. The thread only stops when the daemon drops the handle.
    pub(crate) fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Lets the thread finish what it was given, and waits for it.
    pub(crate) fn finish(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The session, started if there is none.
fn live_session(session: &mut Option<NftSession>) -> Result<&mut NftSession, String> {
    if session.is_none() {
        let started = NftSession::start()
            .map_err(|err| format!("cannot start `nft -i` ({err}); is nftables installed?"))?;
        *session = Some(started);
    }
    Ok(session.as_mut().expect("started above"))
}

/// Applies one line of element changes. Unlike a lease refresh it is not tried again on
/// a fresh session: a line that timed out may have committed, and its deletes would
/// then be refused. The caller fails closed and replaces the tables instead.
fn update(slot: &mut Option<NftSession>, line: &str) -> Result<(), String> {
    let result = live_session(slot)?.run(line, SESSION_TIMEOUT);
    match result {
        Ok(()) => Ok(()),
        Err(err @ SessionError::Refused { .. }) => Err(err.to_string()),
        Err(err) => {
            *slot = None;
            Err(err.to_string())
        }
    }
}

/// Refreshes the lease on the session, starting one if needed. A session that fails is
/// dropped and the refresh is tried once on a fresh one, so that a dead `nft -i` costs
/// one refresh's delay and not the lease.
fn refresh(session: &mut Option<NftSession>, command: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..2 {
        match live_session(session)?.run(command, SESSION_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(err @ SessionError::Refused { .. }) => {
                // nft itself said no (the table is gone, say): a new session would too.
                return Err(err.to_string());
            }
            Err(err) => {
                last = err.to_string();
                *session = None;
            }
        }
    }
    Err(last)
}

/// How long one tool of a count (`ss`, `nft list set`, `conntrack -L`) may run before
/// it is killed and the count fails: a hung netlink dump must not stop every later
/// count, and so keep every released bucket draining without a word.
const COUNT_DEADLINE_SECS: &str = "10";

/// `program args` run under coreutils' `timeout`, killed after [`COUNT_DEADLINE_SECS`].
fn bounded<'a>(program: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    ["-s", "KILL", COUNT_DEADLINE_SECS, program]
        .into_iter()
        .chain(args.iter().copied())
        .collect()
}

/// The TCP connections in `states` (an `ss` state filter) whose local address is one of
/// `vips`, as (local, peer); what failed if `ss` did, or printed a line
/// [`parse_ss_line`] cannot read.
fn vip_connections(
    vips: &[Ipv4Addr],
    states: &[&str],
) -> Result<Vec<(SocketAddrV4, SocketAddrV4)>, String> {
    let mut out = Vec::new();
    for vip in vips {
        let filter = format!("src {vip}");
        let mut args = vec!["-Htn"];
        args.extend_from_slice(states);
        args.push(&filter);
        let text = nlb_linux::command::run("timeout", &bounded("ss", &args), None)
            .map_err(|e| e.to_string())?;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            out.push(parse_ss_line(line).ok_or_else(|| format!("`ss` printed {line:?}"))?);
        }
    }
    Ok(out)
}

/// The local and the peer address of one line of `ss -Htn` (the last two columns; ss
/// prints a state column first when more than one state is asked for). An IPv4 socket
/// address can come as `198.18.0.10:80`, as `198.18.0.10%eth0:80` (a socket bound to a
/// device), or as `[::ffff:198.18.0.10]:80` (an IPv4 connection of a dual-stack
/// socket: `ss` lists those for an IPv4 `src` filter). `None` for anything else: the
/// caller then calls the whole count failed, since a connection it cannot read must
/// not let its bucket stop draining.
fn parse_ss_line(line: &str) -> Option<(SocketAddrV4, SocketAddrV4)> {
    fn v4(text: &str) -> Option<SocketAddrV4> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.split_once('%').map_or(host, |(host, _scope)| host);
        let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok()?.to_ipv4_mapped()?,
            None => host.parse::<Ipv4Addr>().ok()?,
        };
        Some(SocketAddrV4::new(ip, port))
    }
    let mut fields = line.split_whitespace().rev();
    let peer = v4(fields.next()?)?;
    let local = v4(fields.next()?)?;
    Some((local, peer))
}

/// The number of established TCP connections whose local address is one of `vips`
/// (`ss`). An error, not 0, when `ss` fails: a drainstop that read 0 would end and cut
/// every connection.
pub(crate) fn count_connections(vips: &[Ipv4Addr]) -> Result<u32, String> {
    vip_connections(vips, &["state", "established"]).map(|c| c.len() as u32)
}

/// What a count of the draining buckets' connections read: always this host's TCP
/// sockets (`ss`) and the `recent` set; conntrack's entries too unless the `conntrack`
/// tool is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainSources {
    /// `ss`, `recent` and conntrack.
    WithConntrack,
    /// `ss` and `recent` only: `conntrack` (Debian package `conntrack`) is not installed.
    WithoutConntrack,
}

/// Per rule slot of `config`, the buckets that hold one of this host's connections:
/// the buckets in the `recent` set of the inet table `table`, those of this host's TCP
/// sockets on the VIPs (any state in which the peer may still send: all but listening,
/// closed and time-wait), and those of conntrack's TCP and UDP entries whose original
/// destination is a VIP (a TCP entry in any state but time-wait and close), each put
/// into its slot and bucket by [`live_flow`]. What failed if any of them cannot be read;
/// without the `conntrack` tool, the first two only ([`DrainSources`]).
fn live_buckets(
    config: &Config,
    table: &str,
    local_ports: (u16, u16),
) -> (Result<Vec<BucketBitmap>, String>, DrainSources) {
    let mut live = vec![BucketBitmap::new(nlb_core::buckets::BUCKETS); config.rules.len() + 1];
    let seed = cluster_seed(config);
    // The set first: a bucket that leaves it after the listing was idle, and one that
    // `ss` or conntrack lists later is live.
    let counted = (|| {
        let args = ["-j", "list", "set", "inet", table, "recent"];
        let json = nlb_linux::command::run("timeout", &bounded("nft", &args), None)
            .map_err(|e| e.to_string())?;
        let recent = nlb_linux::ruleset::parse_recent(&json)
            .ok_or("`nft -j list set` printed JSON nlb cannot read")?;
        for (slot, bucket) in recent {
            if let Some(slot) = live.get_mut(slot) {
                slot.insert(bucket);
            }
        }
        let states = ["state", "connected", "exclude", "time-wait"];
        for (local, peer) in vip_connections(&config.cluster.vips, &states)? {
            let flow = Flow {
                src: *peer.ip(),
                src_port: peer.port(),
                dst: *local.ip(),
                dst_port: local.port(),
                protocol: Protocol::Tcp,
            };
            live_flow(config, seed, local_ports, &mut live, &flow);
        }
        Ok::<(), String>(())
    })();
    if let Err(err) = counted {
        return (Err(err), DrainSources::WithConntrack);
    }
    let mut sources = DrainSources::WithConntrack;
    for &vip in &config.cluster.vips {
        match conntrack_flows(vip, |flow| {
            live_flow(config, seed, local_ports, &mut live, flow)
        }) {
            Conntrack::Listed => {}
            Conntrack::Missing => sources = DrainSources::WithoutConntrack,
            Conntrack::Failed(err) => return (Err(err), sources),
        }
    }
    (Ok(live), sources)
}

/// Marks `flow`'s rule slot and bucket live in `live`, by [`decide`], the cluster's one
/// packet decision (`seed`: [`cluster_seed`] of `config`). Not a flow to a port in
/// `local_ports` (an outbound connection from a VIP, which `ss` lists by its VIP
/// source: the netdev stage defers its packets whatever the bucket), nor one from a
/// loopback address or a VIP (a local client: its packets come in on `lo`, which nlb
/// accepts whatever the bucket).
fn live_flow(
    config: &Config,
    seed: u32,
    local_ports: (u16, u16),
    live: &mut [BucketBitmap],
    flow: &Flow,
) {
    let (low, high) = local_ports;
    if (low..=high).contains(&flow.dst_port)
        || flow.src.is_loopback()
        || config.cluster.vips.contains(&flow.src)
    {
        return;
    }
    let decision = decide(config, &[], seed, flow);
    if let (Some(bucket), Some(slot)) = (decision.bucket, live.get_mut(decision.slot)) {
        slot.insert(bucket);
    }
}

/// The most conntrack entries one VIP's listing may hold; beyond it the count fails
/// (the buckets keep draining) rather than parse without end.
const CONNTRACK_MAX_ENTRIES: u64 = 16 << 20;
/// The longest line of `conntrack -L` read (a line is about 250 bytes).
const CONNTRACK_MAX_LINE: u64 = 4096;

/// How a conntrack listing went.
#[derive(Debug, PartialEq, Eq)]
enum Conntrack {
    Listed,
    /// The `conntrack` tool is not installed.
    Missing,
    /// It failed, timed out, printed a line [`parse_conntrack_line`] cannot read, or
    /// too many: what went wrong.
    Failed(String),
}

/// Streams `conntrack -L -f ipv4 --orig-dst vip` and gives `each` the flow of every
/// live TCP or UDP entry ([`parse_conntrack_line`]) as its original tuple: the client
/// as source, the VIP as destination, whatever DNAT made of the reply. Stores no entry.
fn conntrack_flows(vip: Ipv4Addr, mut each: impl FnMut(&Flow)) -> Conntrack {
    use std::io::{BufRead, BufReader, Read};
    let vip_text = vip.to_string();
    let command = format!("conntrack -L -f ipv4 --orig-dst {vip_text}");
    let child = std::process::Command::new("timeout")
        .args(bounded(
            "conntrack",
            &["-L", "-f", "ipv4", "--orig-dst", &vip_text],
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Conntrack::Failed(format!("cannot run `timeout {command}`: {e}")),
    };
    let Some(stdout) = child.stdout.take() else {
        return Conntrack::Failed(format!("`{command}` gave no output pipe"));
    };
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut entries = 0u64;
    let mut ok = true;
    let mut why = String::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(CONNTRACK_MAX_LINE)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                why = format!("reading its output: {e}");
                ok = false;
                break;
            }
        }
        entries += 1;
        let text = std::str::from_utf8(&line).ok();
        if line.last() != Some(&b'\n') || entries > CONNTRACK_MAX_ENTRIES || text.is_none() {
            why = format!(
                "entry {entries}: a line longer than {CONNTRACK_MAX_LINE} bytes, not UTF-8, \
                 or more than {CONNTRACK_MAX_ENTRIES} entries"
            );
            ok = false;
            break;
        }
        let text = text.unwrap_or_default();
        if text.trim().is_empty() {
            continue;
        }
        match parse_conntrack_line(text) {
            Some(Some(flow)) if flow.dst == vip => each(&flow),
            Some(None) | Some(Some(_)) => {}
            None => {
                why = format!("a line nlb cannot read: {:?}", text.trim_end());
                ok = false;
                break;
            }
        }
    }
    if !ok {
        // SIGTERM, which `timeout` passes on to conntrack; a SIGKILL would stop
        // `timeout` alone and leave conntrack running.
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    match child.wait().map(|status| status.code()) {
        Ok(Some(0)) if ok => Conntrack::Listed,
        // timeout(1): 127, the command was not found.
        Ok(Some(127)) => Conntrack::Missing,
        _ if !ok => Conntrack::Failed(format!("`{command}`: {why}")),
        Ok(Some(124 | 137) | None) => Conntrack::Failed(format!(
            "`{command}` ran longer than {COUNT_DEADLINE_SECS} s and was killed"
        )),
        Ok(Some(code)) => Conntrack::Failed(format!(
            "`{command}` exited with {code} (is the nf_conntrack_netlink module loadable?)"
        )),
        Err(e) => Conntrack::Failed(format!("`{command}`: {e}")),
    }
}

/// One line of `conntrack -L` (conntrack-tools 1.4): `Some(Some(flow))` for a TCP or
/// UDP entry whose connection may still carry packets, its original tuple as the flow;
/// `Some(None)` for an entry that counts for nothing: a TCP one in `TIME_WAIT` or
/// `CLOSE`, another protocol's, or one `[UNREPLIED]` (this host never answered it, so
/// it is no connection of this host's: the draining stage drops its packets as new,
/// while each of them keeps the entry alive, so counting it would let a one-way sender
/// keep a bucket draining for ever). `None` for a line it cannot read, which fails the
/// whole count, as an unreadable `ss` line does.
fn parse_conntrack_line(line: &str) -> Option<Option<Flow>> {
    let mut fields = line.split_whitespace();
    let protocol = match (fields.next()?, fields.next()?) {
        ("tcp", "6") => Protocol::Tcp,
        ("udp", "17") => Protocol::Udp,
        (name, number) => {
            // Another protocol's entry (icmp 1, sctp 132, ...; its name, number and
            // timeout): well formed, not counted.
            number.parse::<u8>().ok()?;
            fields.next()?.parse::<u64>().ok()?;
            return name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                .then_some(None);
        }
    };
    let _timeout: u64 = fields.next()?.parse().ok()?;
    let mut rest = fields.peekable();
    if protocol == Protocol::Tcp {
        let state = rest.next()?;
        // `SYN_SENT2` has a digit (libnetfilter_conntrack's state names).
        let named = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
        if !state.bytes().all(named) || state.is_empty() {
            return None;
        }
        if matches!(state, "TIME_WAIT" | "CLOSE") {
            return Some(None);
        }
    }
    // The original tuple: the first src=, dst=, sport=, dport=, in that order.
    let mut value = |key: &str| -> Option<&str> {
        let field = rest.next()?;
        field.strip_prefix(key)?.strip_prefix('=')
    };
    let src: Ipv4Addr = value("src")?.parse().ok()?;
    let dst: Ipv4Addr = value("dst")?.parse().ok()?;
    let src_port: u16 = value("sport")?.parse().ok()?;
    let dst_port: u16 = value("dport")?.parse().ok()?;
    // Flags and counters (`packets=`, `bytes=`, `zone=`) may come between the original
    // tuple and `[UNREPLIED]`; the reply tuple begins at the next `src=`.
    if rest
        .take_while(|field| !field.starts_with("src="))
        .any(|field| field == "[UNREPLIED]")
    {
        return Some(None);
    }
    Some(Some(Flow {
        src,
        src_port,
        dst,
        dst_port,
        protocol,
    }))
}

/// Which of `tables` (`family name`) `nft list tables` does not list; none if nft
/// itself fails (the next batch reports that).
fn missing_tables(tables: &[String]) -> Vec<String> {
    let Ok(listed) = nlb_linux::command::run("nft", &["list", "tables"], None) else {
        return Vec::new();
    };
    let present: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table "))
        .collect();
    tables
        .iter()
        .filter(|table| !present.contains(&table.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_of_every_ipv4_form_are_read_and_others_fail_the_count() {
        let addr = |text: &str| text.parse::<SocketAddrV4>().unwrap();
        // Lines as `ss -Htn state connected exclude time-wait src 198.18.0.10` prints
        // them (iproute2 6.1): an IPv4 socket, a dual-stack one, one bound to a device.
        let cases = [
            "ESTAB 0      0               198.18.0.10:80          198.19.0.7:53128   ",
            "ESTAB 0      0      [::ffff:198.18.0.10]:80    [::ffff:198.19.0.7]:53128",
            "SYN-RECV 0   0          198.18.0.10%veth0:80          198.19.0.7:53128",
        ];
        for line in cases {
            assert_eq!(
                parse_ss_line(line),
                Some((addr("198.18.0.10:80"), addr("198.19.0.7:53128"))),
                "{line}"
            );
        }
        for line in [
            "ESTAB 0 0 [2001:db8::1]:80 [2001:db8::2]:53128",
            "ESTAB 0 0 198.18.0.10:http 198.19.0.7:53128",
            "garbage",
        ] {
            assert_eq!(parse_ss_line(line), None, "{line}");
        }
    }

    #[test]
    fn conntrack_lines_give_their_original_tuple_and_unreadable_ones_fail_the_count() {
        let flow = |src: [u8; 4], sport, dport, protocol| Flow {
            src: Ipv4Addr::from(src),
            src_port: sport,
            dst: Ipv4Addr::new(198, 18, 0, 10),
            dst_port: dport,
            protocol,
        };
        // Lines as `conntrack -L -f ipv4 --orig-dst 198.18.0.10` prints them (1.4.7): a
        // DNAT'd TCP connection (its reply from the server behind it), a UDP flow.
        let dnat = "tcp      6 431999 ESTABLISHED src=198.19.0.7 dst=198.18.0.10 sport=53128 dport=80 src=198.18.99.1 dst=198.19.0.7 sport=8080 dport=53128 [ASSURED] mark=0 use=1";
        assert_eq!(
            parse_conntrack_line(dnat),
            Some(Some(flow([198, 19, 0, 7], 53128, 80, Protocol::Tcp)))
        );
        let udp = "udp      17 29 src=198.19.0.8 dst=198.18.0.10 sport=5000 dport=53 src=198.18.0.10 dst=198.19.0.8 sport=53 dport=5000 mark=0 use=1";
        assert_eq!(
            parse_conntrack_line(udp),
            Some(Some(flow([198, 19, 0, 8], 5000, 53, Protocol::Udp)))
        );
        let open2 = "tcp      6 117 SYN_SENT2 src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80 src=198.18.0.10 dst=198.19.0.7 sport=80 dport=1 mark=0 use=1";
        assert!(matches!(parse_conntrack_line(open2), Some(Some(_))));
        // Answered (no `[UNREPLIED]`), with counters: live.
        let counted = "udp      17 170 src=198.19.0.8 dst=198.18.0.10 sport=5000 dport=53 packets=3 bytes=228 src=198.18.0.10 dst=198.19.0.8 sport=53 dport=5000 packets=3 bytes=300 [ASSURED] mark=0 use=1";
        assert!(matches!(parse_conntrack_line(counted), Some(Some(_))));
        let fin = "tcp      6 117 FIN_WAIT src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80 src=198.18.0.10 dst=198.19.0.7 sport=80 dport=1 [ASSURED] mark=0 use=1";
        assert!(matches!(parse_conntrack_line(fin), Some(Some(_))));
        // Over: counted as nothing; another protocol: nothing.
        for line in [
            "tcp      6 117 TIME_WAIT src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80 src=198.18.0.10 dst=198.19.0.7 sport=80 dport=1 [ASSURED] mark=0 use=1",
            "tcp      6 9 CLOSE src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80 src=198.18.0.10 dst=198.19.0.7 sport=80 dport=1 mark=0 use=1",
            "icmp     1 29 src=198.19.0.7 dst=198.18.0.10 type=8 code=0 id=7 src=198.18.0.10 dst=198.19.0.7 type=0 code=0 id=7 mark=0 use=1",
            // Never answered: a one-way sender's, or a SYN before the release.
            "udp      17 29 src=198.19.0.8 dst=198.18.0.10 sport=5000 dport=53 [UNREPLIED] src=198.18.0.10 dst=198.19.0.8 sport=53 dport=5000 mark=0 use=1",
            "tcp      6 119 SYN_SENT src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80 [UNREPLIED] src=198.18.0.10 dst=198.19.0.7 sport=80 dport=1 mark=0 use=1",
            // With nf_conntrack_acct=1, the counters come first.
            "udp      17 29 src=198.19.0.8 dst=198.18.0.10 sport=5000 dport=53 packets=3 bytes=228 [UNREPLIED] src=198.18.0.10 dst=198.19.0.8 sport=53 dport=5000 packets=0 bytes=0 mark=0 use=1",
        ] {
            assert_eq!(parse_conntrack_line(line), Some(None), "{line}");
        }
        for line in [
            "garbage",
            "tcp      6 431999 ESTABLISHED src=2001:db8::1 dst=2001:db8::2 sport=1 dport=80",
            "tcp      6 431999 src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80",
            "udp      17 29 dst=198.18.0.10 src=198.19.0.8 sport=5000 dport=53",
            "tcp      6 431999 ESTABLISHED src=198.19.0.7 dst=198.18.0.10 sport=x dport=80",
            "ipv4     2 tcp      6 431999 ESTABLISHED src=198.19.0.7 dst=198.18.0.10 sport=1 dport=80",
        ] {
            assert_eq!(parse_conntrack_line(line), None, "{line}");
        }
    }
}
