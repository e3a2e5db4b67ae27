//! The daemon's kernel worker: one thread that runs everything that can block on the
//! kernel or on a child process (nft batches, lease refreshes on the `nft -i` session,
//! `ss` connection counts), in the order the protocol loop queued it, and reports each
//! result back to the loop with the time it completed.
//!
//! One thread, first in first out, is part of the ordering contract (see
//! [`crate::cmd::run`]): a lease refresh queued after a release is applied after it.

use nlb_linux::nft::{NftSession, apply};
use std::net::Ipv4Addr;
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
    /// Count the established TCP connections from these VIPs.
    CountConnections { vips: Vec<Ipv4Addr> },
    /// Put a VIP back on the interface.
    AddVip { interface: String, vip: Ipv4Addr },
    /// Check that these tables (`family name`) exist.
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
    Connections(u32),
    VipAdded {
        vip: Ipv4Addr,
        result: Result<(), String>,
    },
    /// The tables of a [`Job::CheckTables`] that are missing.
    Tables {
        missing: Vec<String>,
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

/// Refreshes the lease on the session, starting one if needed. A session that fails is
/// dropped and the refresh is tried once on a fresh one, so that a dead `nft -i` costs
/// one refresh's delay and not the lease.
fn refresh(session: &mut Option<NftSession>, command: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..2 {
        if session.is_none() {
            match NftSession::start() {
                Ok(started) => *session = Some(started),
                Err(err) => {
                    return Err(format!(
                        "cannot start `nft -i` ({err}); is nftables installed?"
                    ));
                }
            }
        }
        let live = session.as_mut().expect("started above");
        match live.run(command, SESSION_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(err @ nlb_linux::nft::SessionError::Refused { .. }) => {
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

/// The number of established TCP connections whose local address is one of `vips`
/// (`ss`), 0 where `ss` fails.
pub(crate) fn count_connections(vips: &[Ipv4Addr]) -> u32 {
    let mut total = 0;
    for vip in vips {
        let filter = format!("src {vip}");
        if let Ok(out) =
            nlb_linux::command::run("ss", &["-Htn", "state", "established", &filter], None)
        {
            total += out.lines().filter(|l| !l.trim().is_empty()).count() as u32;
        }
    }
    total
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
