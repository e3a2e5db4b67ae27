//! The namespace lab every network scenario builds, and the cleanup that removes it.
//!
//! A lab is an [`nlb_lab::segment::Segment`] (a Linux bridge, hosts 198.18.0.k and a
//! client 198.18.0.100 with extra addresses, all in namespaces this process creates),
//! a temporary directory for configurations, logs and sockets, and the processes started
//! in it. Dropping the lab kills its processes, deletes its namespaces (and with them
//! every interface and address) and removes the directory.
//!
//! Ctrl-C, SIGTERM and SIGHUP do not kill the benchmark outright: they are blocked in
//! every thread and a dedicated thread waits for them, kills every process group this
//! run started, deletes every namespace whose name carries this run's prefix, removes
//! the temporary directories and exits. Nothing here touches the host's own network.

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::Pid;
use nlb_lab::echo::EchoServer;
use nlb_lab::segment::{Segment, inside};
use nlb_linux::command::run;
use nlb_linux::netns::NetNs;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The virtual IP every scenario serves.
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// The UDP port of every host's datagram echo ([`nlb_lab::echo`]), on the VIP.
pub(crate) const ECHO_PORT: u16 = 7;

/// Extra client addresses (198.18.0.101 and up), rotated by the new-connection load.
pub(crate) const CLIENTS: u8 = 40;

/// Process groups started by this run and still alive.
static PROCESSES: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Temporary directories of labs still alive.
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The prefix of every namespace this run creates.
fn prefix() -> String {
    format!("nbb{}x", std::process::id())
}

/// Turns SIGINT, SIGTERM and SIGHUP into a full cleanup and exit. Call it first, before
/// any thread starts, so that every thread inherits the blocked signals. Child processes
/// start with an empty signal mask (the standard library resets it), so they still
/// stop on the signals this run sends them.
pub(crate) fn install_interrupt_cleanup() -> Result<()> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block()
        .context("could not block SIGINT/SIGTERM for the cleanup thread")?;
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            eprintln!("\nnlb-bench: {signal} received: stopping processes and deleting namespaces");
            cleanup_everything();
            std::process::exit(128 + signal as i32);
        }
    });
    Ok(())
}

/// Kills every process group this run started, deletes this run's namespaces and
/// temporary directories.
fn cleanup_everything() {
    for &group in locked(&PROCESSES).iter() {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    let prefix = prefix();
    if let Ok(list) = run("ip", &["netns", "list"], None) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&prefix) {
                let _ = run("ip", &["netns", "del", name], None);
            }
        }
    }
    for dir in locked(&DIRS).iter() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Fails with the package to install if `program` is not on the PATH.
pub(crate) fn require_tool(program: &str, package: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file());
    if !found {
        bail!(
            "`{program}` is not installed: run `apt-get install -y {package}` (as root), or \
             `sudo bench/run.sh`, which installs what is missing"
        );
    }
    Ok(())
}

/// Fails unless this process may build namespaces.
pub(crate) fn require_root() -> Result<()> {
    nlb_lab::segment::can_build().map_err(|e| anyhow::anyhow!("{e}"))?;
    require_tool("nft", "nftables")
}

/// A process started inside a namespace, in its own process group. Dropping it kills
/// the whole group with SIGKILL.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Option<Child>,
    what: String,
}

impl Proc {
    /// Runs `program args...` inside `ns`, output to `log` (or nowhere).
    pub(crate) fn spawn(
        ns: &NetNs,
        program: &Path,
        args: &[&str],
        log: Option<&Path>,
        what: &str,
    ) -> Result<Proc> {
        let (out, err) = match log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("could not create log {}", path.display()))?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {what} (`ip netns exec {} {} ...`): is iproute2 installed?",
                    ns.name(),
                    program.display()
                )
            })?;
        locked(&PROCESSES).insert(child.id() as i32);
        Ok(Proc {
            child: Some(child),
            what: what.to_owned(),
        })
    }

    /// Sends `signal` to the process group.
    pub(crate) fn signal(&self, signal: Signal) -> Result<()> {
        if let Some(child) = &self.child {
            killpg(Pid::from_raw(child.id() as i32), signal)
                .with_context(|| format!("could not send {signal} to {}", self.what))?;
        }
        Ok(())
    }

    /// Sends `signal` and waits up to `limit` for the process to exit.
    pub(crate) fn stop(mut self, signal: Signal, limit: Duration) -> Result<ExitStatus> {
        self.signal(signal)?;
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("a live Proc has its child");
        loop {
            if let Some(status) = child.try_wait()? {
                locked(&PROCESSES).remove(&(child.id() as i32));
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {limit:?} of {signal}", self.what);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The exit status, if the process has ended.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = child.id() as i32;
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            let _ = child.wait();
            locked(&PROCESSES).remove(&group);
        }
    }
}

/// One scenario's namespaces, directory and servers.
#[derive(Debug)]
pub(crate) struct Lab {
    /// The HTTP server of each host (index `id - 1`), `None` while killed; killed
    /// before the namespaces go.
    servers: Vec<Option<Proc>>,
    /// The datagram echo of each host (a thread of this process in the host's
    /// namespace, on the VIP's [`ECHO_PORT`]); stopped before the namespaces go.
    echoes: Vec<EchoServer>,
    /// The nlb binary, for starting a server again.
    nlb: PathBuf,
    /// The bridge, hosts and client.
    pub(crate) segment: Segment,
    /// Always `Some` until dropped.
    dir: Option<tempfile::TempDir>,
}

impl Lab {
    /// Builds a bridge with `hosts` hosts and a client with [`CLIENTS`] extra addresses,
    /// and starts `nlb serve-http` on port 80 of every host (all addresses, so that the
    /// same server answers on the host's own address and on the VIP) and a datagram
    /// echo on the VIP's UDP port [`ECHO_PORT`] (bound with `IP_FREEBIND`, so it answers
    /// once the host holds the VIP), both answering `host<id>`.
    pub(crate) fn build(nlb: &Path, hosts: u8, igmp_snooping: bool) -> Result<Lab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{}{}", prefix(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new()
            .prefix("nlb-bench-")
            .tempdir()
            .context("could not create a temporary directory")?;
        locked(&DIRS).insert(dir.path().to_owned());
        let segment = Segment::build(&name, hosts, CLIENTS, igmp_snooping)
            .with_context(|| format!("could not build the namespace lab {name}"))?;
        let mut lab = Lab {
            servers: (0..hosts).map(|_| None).collect(),
            echoes: Vec::new(),
            nlb: nlb.to_owned(),
            segment,
            dir: Some(dir),
        };
        for id in 1..=hosts {
            lab.start_server(id)?;
            let echo = EchoServer::start(
                lab.host(id),
                SocketAddrV4::new(VIP, ECHO_PORT),
                &format!("host{id}"),
            )
            .with_context(|| format!("could not start the datagram echo of host {id}"))?;
            lab.echoes.push(echo);
        }
        Ok(lab)
    }

    /// Starts `nlb serve-http` on port 80 of every address of host `id` (answering
    /// `host<id>`), unless it runs already.
    pub(crate) fn start_server(&mut self, id: u8) -> Result<()> {
        if self.servers[usize::from(id) - 1].is_some() {
            return Ok(());
        }
        let server = Proc::spawn(
            self.host(id),
            &self.nlb,
            &[
                "serve-http",
                "--bind",
                "0.0.0.0:80",
                "--name",
                &format!("host{id}"),
            ],
            None,
            &format!("the HTTP server of host {id}"),
        )?;
        self.servers[usize::from(id) - 1] = Some(server);
        Ok(())
    }

    /// Kills host `id`'s HTTP server (SIGKILL) and waits until it has exited: from
    /// then on its port 80 refuses connections.
    pub(crate) fn kill_server(&mut self, id: u8) -> Result<()> {
        let server = self.servers[usize::from(id) - 1]
            .take()
            .with_context(|| format!("the HTTP server of host {id} is not running"))?;
        server.stop(Signal::SIGKILL, Duration::from_secs(5))?;
        Ok(())
    }

    /// The namespace of host `id` (1-based).
    pub(crate) fn host(&self, id: u8) -> &NetNs {
        &self.segment.hosts[usize::from(id) - 1]
    }

    /// The client's namespace.
    pub(crate) fn client(&self) -> &NetNs {
        &self.segment.client
    }

    /// A path in the lab's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir
            .as_ref()
            .map_or_else(PathBuf::new, |d| d.path().to_owned())
            .join(name)
    }

    /// Sets host `id`'s bridge port up or down (the host's side stays as it is).
    pub(crate) fn port(&self, id: u8, up: bool) -> Result<()> {
        self.segment
            .switch
            .ip(&[
                "link",
                "set",
                &Segment::port_of(id),
                if up { "up" } else { "down" },
            ])
            .with_context(|| format!("could not set host {id}'s bridge port"))?;
        Ok(())
    }

    /// Sets host `id`'s own `eth0` up or down (its link to the bridge).
    pub(crate) fn link(&self, id: u8, up: bool) -> Result<()> {
        self.host(id)
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }])
            .with_context(|| format!("could not set host {id}'s eth0"))?;
        Ok(())
    }

    /// Which hosts hold the VIP on an interface now, by host id.
    pub(crate) fn vip_holders(&self) -> Result<Vec<u8>> {
        let mut holders = Vec::new();
        for (index, host) in self.segment.hosts.iter().enumerate() {
            if inside(host, || holds(VIP))
                .with_context(|| format!("could not enter namespace {}", host.name()))??
            {
                holders.push(index as u8 + 1);
            }
        }
        Ok(holders)
    }

    /// Polls every 2 ms until a host other than `except` holds the VIP, or `limit`
    /// passes: the moment it was first seen.
    pub(crate) fn wait_vip_elsewhere(&self, except: u8, limit: Duration) -> Result<Instant> {
        let others: Vec<&NetNs> = self
            .segment
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u8 + 1 != except)
            .map(|(_, h)| h)
            .collect();
        let deadline = Instant::now() + limit;
        // One probe thread that moves from namespace to namespace.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    loop {
                        for host in &others {
                            host.enter_current_thread().with_context(|| {
                                format!("could not enter namespace {}", host.name())
                            })?;
                            if holds(VIP)? {
                                return Ok(Instant::now());
                            }
                        }
                        if Instant::now() > deadline {
                            bail!("no other host took the VIP within {limit:?}");
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the VIP probe thread panicked"))?
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        self.echoes.clear();
        // Unregistered only once deleted, so that an interrupt in between still
        // removes it.
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            let _ = dir.close();
            locked(&DIRS).remove(&path);
        }
    }
}

/// Whether an interface of the current thread's namespace has `address`.
fn holds(address: Ipv4Addr) -> Result<bool> {
    let addresses = nix::ifaddrs::getifaddrs().context("getifaddrs failed")?;
    Ok(addresses
        .filter_map(|a| a.address)
        .filter_map(|a| a.as_sockaddr_in().map(|s| s.ip()))
        .any(|ip| ip == address))
}

/// Waits until `ready()` or `limit` passes, polling every `every`.
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ready()? {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
    Ok(())
}
