//! What the namespace test binaries (`e2e`, `daemon`, `attack`) share: a [`World`] of
//! real `nlb run` daemons on a segment of network namespaces, with an HTTP server on the
//! VIP of every host, a client, and the helpers to drive and watch them.
//!
//! Each test builds its own world, uses only 198.18.0.0/15, and tears everything down
//! when it ends, failed or not: daemons and servers are stopped first, then the
//! namespaces (and with them every interface) are deleted. Namespace names start with
//! the binary's own prefix ([`Setup::prefix`]) and carry the process id, so binaries
//! running side by side never collide.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use nlb_lab::http::http_get;
use nlb_lab::load::{Load, Plan};
use nlb_lab::segment::{Segment, client_addresses, inside};
use nlb_linux::netns::{NetNs, unique_name};
use nlb_wire::addressing::ClusterMode;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The VIP every world serves.
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// The default test rule: TCP port 80, affinity single.
pub(crate) const DEFAULT_RULE: &str =
    "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"single\"\n";

/// The `nlb` binary under test.
pub(crate) fn nlb() -> &'static str {
    env!("CARGO_BIN_EXE_nlb")
}

/// One cluster host of a world.
pub(crate) struct Host {
    pub(crate) id: u8,
    pub(crate) ns: NetNs,
    pub(crate) config: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) log: PathBuf,
    /// `None` while the daemon is not running.
    pub(crate) daemon: Option<Child>,
}

impl Host {
    /// The daemon's process id (`ip netns exec` execs the command in place: the child is
    /// the daemon).
    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        let daemon = self.daemon.as_ref().expect("the daemon runs");
        nix::unistd::Pid::from_raw(daemon.id() as i32)
    }
}

/// How one host differs from the default test host.
#[derive(Default)]
pub(crate) struct HostSetup {
    /// The `[[rule]]` table; the default is [`DEFAULT_RULE`].
    pub(crate) rule: Option<String>,
    /// The contents of the cluster key file (written with mode 0600); without one the
    /// host says `insecure_no_key = true`.
    pub(crate) key: Option<Vec<u8>>,
    /// Extra lines for the `[host]` table.
    pub(crate) host_extra: Option<String>,
    /// Text after the rule (other tables, such as `[metrics]`).
    pub(crate) tail: Option<String>,
}

/// How a world is built.
pub(crate) struct Setup {
    /// The start of every namespace name: unique to the test binary.
    pub(crate) prefix: &'static str,
    pub(crate) mode: ClusterMode,
    pub(crate) hosts: u8,
    /// The client's extra addresses, 198.18.0.101 and up.
    pub(crate) clients: u8,
    /// Daemons start with `initial_state = "stopped"` (then [`World::start`] them).
    pub(crate) stopped: bool,
    /// One `--run-dir` for every daemon (as `/run` shared between namespaces).
    pub(crate) shared_run: bool,
    /// A directory put first on the daemons' PATH (to put a failing `nft` there).
    pub(crate) path_first: Option<PathBuf>,
    /// How long [`World::wait_converged`] waits.
    pub(crate) converge_within: Duration,
}

impl Setup {
    /// `hosts` hosts in `mode`, started stopped, a client with `clients` addresses.
    pub(crate) fn new(prefix: &'static str, mode: ClusterMode, hosts: u8, clients: u8) -> Setup {
        Setup {
            prefix,
            mode,
            hosts,
            clients,
            stopped: true,
            shared_run: false,
            path_first: None,
            converge_within: Duration::from_secs(10),
        }
    }
}

/// One test's world. Dropping it stops every process, then deletes the namespaces.
pub(crate) struct World {
    /// The start of every namespace name of this world.
    pub(crate) prefix: String,
    pub(crate) dir: tempfile::TempDir,
    /// The HTTP servers (host `i`'s at index `i`, pushed first) and other helpers;
    /// killed when the world goes.
    pub(crate) children: Vec<Child>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) client: NetNs,
    pub(crate) switch: NetNs,
    pub(crate) setup: Setup,
}

impl Drop for World {
    fn drop(&mut self) {
        for index in 0..self.hosts.len() {
            self.stop_daemon(index);
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `nlb serve-http` on the VIP inside `ns`, answering `host<id>`.
fn serve_http(ns: &NetNs, id: u8) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), nlb(), "serve-http", "--bind"])
        .arg(format!("{VIP}:80"))
        .args(["--name", &format!("host{id}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl World {
    /// Kills host `index`'s HTTP server and waits for it: new connections to it are
    /// refused from then on.
    pub(crate) fn kill_server(&mut self, index: usize) {
        let server = &mut self.children[index];
        let _ = server.kill();
        let _ = server.wait();
    }

    /// Starts host `index`'s HTTP server again (after [`World::kill_server`]) and waits
    /// until it accepts connections on the VIP inside its namespace.
    pub(crate) fn restart_server(&mut self, index: usize) {
        self.children[index] = serve_http(&self.hosts[index].ns, self.hosts[index].id);
        let listening = in_ns(&self.hosts[index].ns, || {
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if std::net::TcpStream::connect((VIP, 80)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        });
        assert!(listening, "host {} server did not come back", index + 1);
    }

    /// The world of `setup`, every host as `host(id)` says; daemons started, and HTTP
    /// servers answering with `host<id>` on the VIP.
    pub(crate) fn build(setup: Setup, host: impl Fn(u8) -> HostSetup) -> World {
        let prefix = format!("{}{}", setup.prefix, unique_name(""));
        let Segment {
            switch,
            hosts: namespaces,
            client,
        } = Segment::build(
            &prefix,
            setup.hosts,
            setup.clients,
            setup.mode == ClusterMode::Igmp,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut world = World {
            prefix,
            dir,
            children: Vec::new(),
            hosts: Vec::new(),
            client,
            switch,
            setup,
        };
        for (id, ns) in (1..=world.setup.hosts).zip(namespaces) {
            let path = |name: &str| world.dir.path().join(format!("h{id}.{name}"));
            let (socket, config, log) = (path("sock"), path("toml"), path("log"));
            let HostSetup {
                rule,
                key,
                host_extra,
                tail,
            } = host(id);
            let key_line = match key {
                Some(secret) => {
                    use std::os::unix::fs::PermissionsExt;
                    let key = path("key");
                    std::fs::write(&key, secret).unwrap();
                    // The daemon refuses a key file others may read.
                    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
                    format!("key_file = \"{}\"\n", key.display())
                }
                // Keyless on purpose: such tests are about the rest of the cluster.
                None => "insecure_no_key = true\n".to_owned(),
            };
            let initial = if world.setup.stopped {
                "initial_state = \"stopped\"\n"
            } else {
                ""
            };
            std::fs::write(
                &config,
                format!(
                    "[cluster]\ninterface = \"eth0\"\nvips = [\"{VIP}\"]\nmode = \"{}\"\n{key_line}\n[host]\nid = {id}\n{initial}control_socket = \"{}\"\n{}\n{}{}",
                    world.setup.mode,
                    socket.display(),
                    host_extra.as_deref().unwrap_or(""),
                    rule.as_deref().unwrap_or(DEFAULT_RULE),
                    tail.as_deref().map_or(String::new(), |t| format!("\n{t}")),
                ),
            )
            .unwrap();
            world.children.push(serve_http(&ns, id));
            world.hosts.push(Host {
                id,
                ns,
                config,
                socket,
                log,
                daemon: None,
            });
        }
        for index in 0..world.hosts.len() {
            world.start_daemon(index);
        }
        world
    }

    /// The run directory of host `index`'s daemon.
    pub(crate) fn run_dir(&self, index: usize) -> PathBuf {
        if self.setup.shared_run {
            self.dir.path().join("run")
        } else {
            self.dir.path().join(format!("run{}", self.hosts[index].id))
        }
    }

    /// `ip netns exec <host> nlb run --config ... --run-dir ...` for host `index`, its
    /// log to the host's log file; for a caller that adds to it before spawning.
    pub(crate) fn daemon_command(&self, index: usize) -> Command {
        let host = &self.hosts[index];
        let log = std::fs::File::create(&host.log).unwrap();
        let mut command = Command::new("ip");
        if let Some(first) = &self.setup.path_first {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", first.display()));
        }
        command
            .args(["netns", "exec", host.ns.name(), nlb(), "run", "--config"])
            .arg(&host.config)
            .arg("--run-dir")
            .arg(self.run_dir(index))
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    /// Starts host `index`'s daemon (a fresh log).
    pub(crate) fn start_daemon(&mut self, index: usize) {
        let daemon = self.daemon_command(index).spawn().unwrap();
        self.hosts[index].daemon = Some(daemon);
    }

    /// Sends `signal` to host `index`'s daemon.
    pub(crate) fn signal_daemon(&self, index: usize, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.hosts[index].pid(), signal).unwrap();
    }

    /// Stops host `index`'s daemon with SIGTERM and waits for it, if it runs.
    pub(crate) fn stop_daemon(&mut self, index: usize) {
        if let Some(mut daemon) = self.hosts[index].daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(daemon.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = daemon.wait();
        }
    }

    /// Kills host `index`'s daemon with SIGKILL and waits for it: its kernel keeps the
    /// last ruleset, lease included.
    pub(crate) fn kill_daemon(&mut self, index: usize) {
        self.signal_daemon(index, nix::sys::signal::Signal::SIGKILL);
        let mut daemon = self.hosts[index].daemon.take().unwrap();
        let _ = daemon.wait();
    }

    /// Host `index`'s log.
    pub(crate) fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.hosts[index].log).unwrap_or_default()
    }

    /// Every host's log.
    pub(crate) fn logs(&self) -> String {
        (0..self.hosts.len())
            .map(|i| format!("host {}:\n{}", self.hosts[i].id, self.log(i)))
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// The log lines of host `index` from the `skip`-th on.
    pub(crate) fn log_lines_from(&self, index: usize, skip: usize) -> Vec<String> {
        self.log(index)
            .lines()
            .skip(skip)
            .map(str::to_owned)
            .collect()
    }

    /// `nlb <verb> --json` against host `index`'s daemon.
    pub(crate) fn ctl(&self, index: usize, verb: &str) -> Option<Value> {
        let out = Command::new(nlb())
            .args([verb, "--json", "--socket"])
            .arg(&self.hosts[index].socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until `ready`, up to `limit`, polling every 20 ms at first and every 200 ms
    /// at most; panics with every daemon's log if it times out.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut(&World) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(20);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; daemon logs:\n{}",
                self.logs()
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Starts every host at once and waits until all are converged in one view.
    pub(crate) fn start_all(&self) {
        let all = self.all();
        self.start(&all);
        self.wait_converged(&all);
    }

    /// Every host's index.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// Starts these hosts at once (so that they usually form one view in one step).
    pub(crate) fn start(&self, indices: &[usize]) {
        self.wait_for("the daemons to answer", Duration::from_secs(10), |w| {
            indices.iter().all(|&i| w.ctl(i, "query").is_some())
        });
        std::thread::scope(|scope| {
            for &index in indices {
                scope.spawn(move || assert_eq!(self.ctl(index, "start").unwrap()["ok"], true));
            }
        });
    }

    /// Waits until exactly these hosts are converged, in one view of just them.
    pub(crate) fn wait_converged(&self, indices: &[usize]) {
        let members: Vec<u8> = indices.iter().map(|&i| self.hosts[i].id).collect();
        self.wait_for("convergence", self.setup.converge_within, |w| {
            indices.iter().all(|&i| {
                w.ctl(i, "query").is_some_and(|q| {
                    q["state"] == "converged" && q["view_members"] == serde_json::json!(members)
                })
            })
        });
    }

    /// Runs `work` on a thread inside the client's namespace.
    pub(crate) fn in_client<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.client, work)
    }

    /// Requests from every client address to the VIP; the answering host of each.
    pub(crate) fn serve_all(&self) -> Vec<(Ipv4Addr, Result<String, String>)> {
        self.serve_all_at(VIP)
    }

    /// Requests from every client address to `vip`; the answering host of each.
    pub(crate) fn serve_all_at(&self, vip: Ipv4Addr) -> Vec<(Ipv4Addr, Result<String, String>)> {
        self.in_client(|| {
            client_addresses(self.setup.clients)
                .map(|src| (src, http_get(src, SocketAddr::from((vip, 80)))))
                .collect()
        })
    }

    /// One request from every client address: all must be answered.
    pub(crate) fn assert_all_served(&self) {
        for (src, answer) in self.serve_all() {
            if let Err(err) = answer {
                panic!("{src} was not served: {err}\n{}", self.logs());
            }
        }
    }

    /// A new connection to the VIP every 10 ms from the client's addresses in turn,
    /// with a keep-alive session from each of `keepalive_from`.
    pub(crate) fn load(&self, keepalive_from: &[Ipv4Addr]) -> Load {
        self.load_of(
            Plan::new_connections(
                SocketAddr::from((VIP, 80)),
                client_addresses(self.setup.clients),
            )
            .keepalive(keepalive_from.iter().copied()),
        )
    }

    /// The client load of `plan`.
    pub(crate) fn load_of(&self, plan: Plan) -> Load {
        Load::start(&self.client, plan).unwrap()
    }
}

/// Runs `work` on a thread inside `ns` ([`inside`], which must be able to enter it).
pub(crate) fn in_ns<T: Send>(ns: &NetNs, work: impl FnOnce() -> T + Send) -> T {
    inside(ns, work).unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
}

/// One HTTP GET of the metrics on 127.0.0.1:9102 inside `ns`, with a deadline.
pub(crate) fn scrape(ns: &NetNs) -> Result<String, String> {
    use std::io::{Read, Write};
    inside(ns, || {
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", 9102)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(text)
    })
    .map_err(|e| format!("entering {}: {e}", ns.name()))?
}
