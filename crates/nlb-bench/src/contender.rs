//! The two contenders on a lab: an nlb cluster (`nlb run` on every host) and a
//! keepalived VRRP pair or trio (one VIP), each with the operations the scenarios need.
//!
//! keepalived runs inside the host namespaces only, in the foreground, with its own
//! configuration and pid files in the lab's temporary directory
//! (`keepalived -n -l -D -P -f CONF -p PID -r VRRP_PID` under `ip netns exec`); the
//! system's keepalived service is never used.

use crate::lab::{ECHO_PORT, Lab, Proc, VIP, wait_until};
use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How a host fails in the failover scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    /// The host's `eth0` goes down.
    LinkDown,
    /// The daemon (nlb, or keepalived's whole process group) gets SIGKILL.
    Sigkill,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::LinkDown => "link down",
            FailureKind::Sigkill => "daemon SIGKILL",
        })
    }
}

/// What a failover trial needs from a contender.
pub(crate) trait Cluster {
    /// The lab the cluster runs on.
    fn lab(&self) -> &Lab;
    /// The host to fail in trial `trial`.
    fn victim(&self, trial: usize) -> u8;
    /// Fails host `id`.
    fn fail(&mut self, id: u8, kind: FailureKind) -> Result<()>;
    /// Waits until the survivors have taken over from `id`: the moment they had.
    fn wait_takeover(&self, id: u8) -> Result<Instant>;
    /// Brings host `id` back after `kind`.
    fn restore(&mut self, id: u8, kind: FailureKind) -> Result<()>;
    /// Waits until every host is back in service and the client is served.
    fn wait_healthy(&self) -> Result<()>;
    /// The daemons' logs, for `NLB_BENCH_DEBUG=1`.
    fn logs(&self) -> String;
}

/// nlb's timers.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct NlbTimers {
    /// Heartbeat period.
    pub(crate) heartbeat_ms: u16,
    /// Missed heartbeats before a member is dead.
    pub(crate) tolerance: u8,
}

impl NlbTimers {
    /// nlb's defaults: 10 ms, 15 missed.
    pub(crate) const DEFAULTS: NlbTimers = NlbTimers {
        heartbeat_ms: 10,
        tolerance: 15,
    };
    /// Matching keepalived's fastest: a 10 ms heartbeat (VRRPv3's shortest advert) and
    /// VRRP's three missed adverts.
    pub(crate) const FAST: NlbTimers = NlbTimers {
        heartbeat_ms: 10,
        tolerance: 3,
    };
}

/// An nlb cluster on a lab.
pub(crate) struct NlbCluster {
    daemons: Vec<Option<Proc>>,
    /// The lab; dropped after the daemons.
    pub(crate) lab: Lab,
    nlb: PathBuf,
    hosts: u8,
}

impl NlbCluster {
    /// A lab with `hosts` hosts, each running `nlb run` in `mode` with `timers`. Hosts in
    /// `started` start at once and the call waits until they form one view; the others
    /// wait in the stopped state. Rule 1 balances HTTP (TCP port 80), rule 2 the
    /// datagram echo (UDP port [`ECHO_PORT`]), both by client address.
    pub(crate) fn build(
        nlb: &Path,
        hosts: u8,
        mode: &str,
        timers: NlbTimers,
        started: &[u8],
    ) -> Result<NlbCluster> {
        Self::build_with(nlb, hosts, mode, timers, started, &|_| String::new())
    }

    /// As [`NlbCluster::build`], with `extra(id)` appended to host `id`'s configuration
    /// (`[[check]]` tables, say).
    pub(crate) fn build_with(
        nlb: &Path,
        hosts: u8,
        mode: &str,
        timers: NlbTimers,
        started: &[u8],
        extra: &dyn Fn(u8) -> String,
    ) -> Result<NlbCluster> {
        let lab = Lab::build(nlb, hosts, mode == "igmp")?;
        let mut cluster = NlbCluster {
            daemons: (0..hosts).map(|_| None).collect(),
            lab,
            nlb: nlb.to_owned(),
            hosts,
        };
        // Secure by default, as deployed: one key for the lab, from `nlb keygen`.
        let key = cluster.lab.path("cluster.key");
        let keygen = Command::new(nlb)
            .arg("keygen")
            .arg("--out")
            .arg(&key)
            .output()
            .context("running nlb keygen")?;
        if !keygen.status.success() {
            bail!(
                "nlb keygen failed: {}",
                String::from_utf8_lossy(&keygen.stderr).trim()
            );
        }
        for id in 1..=hosts {
            let state = if started.contains(&id) {
                "started"
            } else {
                "stopped"
            };
            let config = format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"{VIP}\"]\nmode = \"{mode}\"\n\
                 heartbeat_ms = {}\ntolerance = {}\nkey_file = \"{}\"\n\n[host]\nid = {id}\n\
                 initial_state = \"{state}\"\ncontrol_socket = \"{}\"\n\n\
                 [[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"single\"\n\n\
                 [[rule]]\nports = \"{ECHO_PORT}\"\nprotocol = \"udp\"\naffinity = \"single\"\n{}",
                timers.heartbeat_ms,
                timers.tolerance,
                key.display(),
                cluster.socket(id).display(),
                extra(id)
            );
            std::fs::write(cluster.lab.path(&format!("h{id}.toml")), config)?;
            cluster.start_daemon(id)?;
        }
        if !started.is_empty() {
            cluster.wait_converged(started)?;
        }
        Ok(cluster)
    }

    fn socket(&self, id: u8) -> PathBuf {
        self.lab.path(&format!("h{id}.sock"))
    }

    /// The daemon log of host `id`.
    pub(crate) fn log(&self, id: u8) -> String {
        std::fs::read_to_string(self.lab.path(&format!("h{id}.log"))).unwrap_or_default()
    }

    /// Starts `nlb run` on host `id`.
    pub(crate) fn start_daemon(&mut self, id: u8) -> Result<()> {
        let config = self.lab.path(&format!("h{id}.toml"));
        let run_dir = self.lab.path(&format!("run{id}"));
        let log = self.lab.path(&format!("h{id}.log"));
        let daemon = Proc::spawn(
            self.lab.host(id),
            &self.nlb,
            &[
                "run",
                "--config",
                &config.to_string_lossy(),
                "--run-dir",
                &run_dir.to_string_lossy(),
            ],
            Some(&log),
            &format!("nlb run on host {id}"),
        )?;
        self.daemons[usize::from(id) - 1] = Some(daemon);
        Ok(())
    }

    /// `nlb <verb> --json` against host `id`'s daemon; `None` if it does not answer.
    pub(crate) fn ctl(&self, id: u8, verb: &str) -> Option<Value> {
        let out = Command::new(&self.nlb)
            .args([verb, "--json", "--socket"])
            .arg(self.socket(id))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Sends `verb` to host `id`, waiting first for the daemon to answer at all.
    pub(crate) fn command(&self, id: u8, verb: &str) -> Result<Value> {
        wait_until(
            &format!("host {id}'s daemon to answer"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(self.ctl(id, "query").is_some()),
        )
        .with_context(|| format!("daemon log of host {id}:\n{}", self.log(id)))?;
        self.ctl(id, verb)
            .with_context(|| format!("`nlb {verb}` on host {id} gave no answer"))
    }

    /// Waits until exactly `ids` are converged, in one view of just them.
    pub(crate) fn wait_converged(&self, ids: &[u8]) -> Result<()> {
        let members = serde_json::json!(ids);
        wait_until(
            &format!("nlb hosts {ids:?} to converge"),
            Duration::from_secs(15),
            Duration::from_millis(10),
            || {
                Ok(ids.iter().all(|&id| {
                    self.ctl(id, "query")
                        .is_some_and(|q| q["state"] == "converged" && q["view_members"] == members)
                }))
            },
        )
        .with_context(|| {
            let logs: Vec<String> = ids.iter().map(|&id| self.log(id)).collect();
            format!(
                "the last daemon log lines:\n{}",
                logs.iter()
                    .map(|l| l.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            )
        })
    }

    /// Host `id`'s owned buckets of rule 1, if it answers.
    pub(crate) fn owned(&self, id: u8) -> Option<u64> {
        self.ctl(id, "query")
            .and_then(|q| q["owned_buckets"][0].as_u64())
    }

    fn all(&self) -> Vec<u8> {
        (1..=self.hosts).collect()
    }
}

impl Cluster for NlbCluster {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn victim(&self, trial: usize) -> u8 {
        // Alternate the non-lowest hosts, as the e2e failover trials do.
        2 + (trial % usize::from(self.hosts - 1)) as u8
    }

    fn fail(&mut self, id: u8, kind: FailureKind) -> Result<()> {
        fail_host(&self.lab, &mut self.daemons, id, kind, "daemon")
    }

    fn wait_takeover(&self, id: u8) -> Result<Instant> {
        let survivors: Vec<u8> = self.all().into_iter().filter(|&h| h != id).collect();
        self.wait_converged(&survivors)?;
        Ok(Instant::now())
    }

    fn restore(&mut self, id: u8, kind: FailureKind) -> Result<()> {
        match kind {
            FailureKind::LinkDown => self.lab.link(id, true),
            FailureKind::Sigkill => {
                self.start_daemon(id)?;
                let answer = self.command(id, "start")?;
                if answer["ok"] != true {
                    bail!("`nlb start` on host {id} refused: {answer}");
                }
                Ok(())
            }
        }
    }

    fn wait_healthy(&self) -> Result<()> {
        self.wait_converged(&self.all())
    }

    fn logs(&self) -> String {
        self.all()
            .iter()
            .map(|&id| format!("--- host {id}\n{}", self.log(id)))
            .collect()
    }
}

/// keepalived's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum VrrpTimers {
    /// keepalived's defaults: VRRPv2, advert_int 1 s.
    Defaults,
    /// VRRPv3 with the shortest advert interval keepalived accepts, 10 ms.
    Fast,
}

/// Fails host `id` of either contender: its link goes down, or its `what` process gets
/// SIGKILL.
fn fail_host(
    lab: &Lab,
    daemons: &mut [Option<Proc>],
    id: u8,
    kind: FailureKind,
    what: &str,
) -> Result<()> {
    match kind {
        FailureKind::LinkDown => lab.link(id, false),
        FailureKind::Sigkill => {
            let daemon = daemons[usize::from(id) - 1]
                .take()
                .with_context(|| format!("the victim's {what} is not running"))?;
            daemon.stop(Signal::SIGKILL, Duration::from_secs(5))?;
            Ok(())
        }
    }
}

/// A keepalived VRRP cluster on a lab: one instance, one VIP, host 1 the master
/// (priority 100), the others backups (90, 80, ...), preemption on (the default).
pub(crate) struct KeepalivedCluster {
    daemons: Vec<Option<Proc>>,
    /// The lab; dropped after the daemons.
    pub(crate) lab: Lab,
    timers: VrrpTimers,
    /// A `vrrp_script` tracked by the instance: host `id`'s script block, without the
    /// `vrrp_script NAME {}` around it.
    track: Option<TrackScript>,
}

/// A `vrrp_script` for every host: its body (`script`, `interval`, `fall`, ...) for
/// host `id`.
pub(crate) type TrackScript = fn(u8) -> String;

impl KeepalivedCluster {
    /// A lab with `hosts` hosts running keepalived; waits until host 1 holds the VIP.
    pub(crate) fn build(nlb: &Path, hosts: u8, timers: VrrpTimers) -> Result<KeepalivedCluster> {
        Self::build_tracked(nlb, hosts, timers, None)
    }

    /// As [`KeepalivedCluster::build`], the instance tracking `track`'s `vrrp_script`
    /// (`track_script`, weight 0: a failing script puts the instance in the FAULT state).
    pub(crate) fn build_tracked(
        nlb: &Path,
        hosts: u8,
        timers: VrrpTimers,
        track: Option<TrackScript>,
    ) -> Result<KeepalivedCluster> {
        let lab = Lab::build(nlb, hosts, false)?;
        let mut cluster = KeepalivedCluster {
            daemons: (0..hosts).map(|_| None).collect(),
            lab,
            timers,
            track,
        };
        for id in 1..=hosts {
            cluster.write_config(id, None)?;
            cluster.start_daemon(id)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// The default priority of host `id`.
    fn priority(id: u8) -> u8 {
        110 - 10 * id
    }

    /// Writes host `id`'s configuration, with `priority` instead of its default.
    pub(crate) fn write_config(&self, id: u8, priority: Option<u8>) -> Result<()> {
        let (globals, advert) = match self.timers {
            VrrpTimers::Defaults => ("", ""),
            VrrpTimers::Fast => ("  vrrp_version 3\n", "  advert_int 0.01\n"),
        };
        let state = if id == 1 { "MASTER" } else { "BACKUP" };
        // Scripts run as root, said explicitly (keepalived warns otherwise).
        let (script, track) = match self.track {
            Some(body) => (
                format!("vrrp_script chk {{\n{}}}\n", body(id)),
                "  track_script {\n    chk\n  }\n",
            ),
            None => (String::new(), ""),
        };
        let user = if self.track.is_some() {
            "  script_user root\n  enable_script_security\n"
        } else {
            ""
        };
        let config = format!(
            "global_defs {{\n  router_id nlbbench{id}\n{globals}{user}}}\n{script}\
             vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n\
             \x20 priority {}\n{advert}  virtual_ipaddress {{\n    {VIP}/24\n  }}\n{track}}}\n",
            priority.unwrap_or(Self::priority(id))
        );
        std::fs::write(self.lab.path(&format!("ka{id}.conf")), config)?;
        Ok(())
    }

    /// The keepalived log of host `id`.
    pub(crate) fn log(&self, id: u8) -> String {
        std::fs::read_to_string(self.lab.path(&format!("ka{id}.log"))).unwrap_or_default()
    }

    /// Starts keepalived on host `id`.
    pub(crate) fn start_daemon(&mut self, id: u8) -> Result<()> {
        let path = |name: String| self.lab.path(&name).to_string_lossy().into_owned();
        let (conf, pid, vrrp_pid) = (
            path(format!("ka{id}.conf")),
            path(format!("ka{id}.pid")),
            path(format!("ka{id}-vrrp.pid")),
        );
        // A killed keepalived leaves its pid files, and keepalived refuses to start if a
        // live process (or thread: the client load starts many) has the old pid.
        let _ = std::fs::remove_file(&pid);
        let _ = std::fs::remove_file(&vrrp_pid);
        let log = self.lab.path(&format!("ka{id}.log"));
        let daemon = Proc::spawn(
            self.lab.host(id),
            Path::new("keepalived"),
            &[
                "-n", "-l", "-D", "-P", "-f", &conf, "-p", &pid, "-r", &vrrp_pid,
            ],
            Some(&log),
            &format!("keepalived on host {id}"),
        )?;
        self.daemons[usize::from(id) - 1] = Some(daemon);
        Ok(())
    }

    /// Sends `signal` to host `id`'s keepalived (reload on SIGHUP).
    pub(crate) fn signal(&self, id: u8, signal: Signal) -> Result<()> {
        self.daemons[usize::from(id) - 1]
            .as_ref()
            .with_context(|| format!("keepalived is not running on host {id}"))?
            .signal(signal)
    }

    /// Stops host `id`'s keepalived with SIGTERM (it gives up mastership with a
    /// priority-0 advert and removes the VIP).
    pub(crate) fn stop_daemon(&mut self, id: u8) -> Result<()> {
        let daemon = self.daemons[usize::from(id) - 1]
            .take()
            .with_context(|| format!("keepalived is not running on host {id}"))?;
        daemon.stop(Signal::SIGTERM, Duration::from_secs(10))?;
        Ok(())
    }

    /// Waits until exactly host `id` holds the VIP.
    pub(crate) fn wait_vip_on(&self, id: u8, limit: Duration) -> Result<()> {
        wait_until(
            &format!("keepalived to put the VIP on host {id} alone"),
            limit,
            Duration::from_millis(5),
            || Ok(self.lab.vip_holders()? == [id]),
        )
        .with_context(|| format!("keepalived log of host {id}:\n{}", self.log(id)))
    }

    /// Fails with keepalived's log if a daemon has exited on its own.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        for (index, daemon) in self.daemons.iter_mut().enumerate() {
            if let Some(status) = daemon.as_mut().and_then(Proc::exited) {
                bail!(
                    "keepalived on host {} exited ({status}); its log:\n{}",
                    index + 1,
                    self.log(index as u8 + 1)
                );
            }
        }
        Ok(())
    }
}

impl Cluster for KeepalivedCluster {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn victim(&self, _trial: usize) -> u8 {
        1 // the master
    }

    fn fail(&mut self, id: u8, kind: FailureKind) -> Result<()> {
        fail_host(&self.lab, &mut self.daemons, id, kind, "keepalived")
    }

    fn wait_takeover(&self, id: u8) -> Result<Instant> {
        self.lab.wait_vip_elsewhere(id, Duration::from_secs(20))
    }

    fn restore(&mut self, id: u8, kind: FailureKind) -> Result<()> {
        match kind {
            FailureKind::LinkDown => self.lab.link(id, true),
            FailureKind::Sigkill => {
                // A killed keepalived leaves its VIP behind; remove it as an operator
                // would before starting the daemon again.
                let _ = self
                    .lab
                    .host(id)
                    .ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
                self.start_daemon(id)
            }
        }
    }

    fn wait_healthy(&self) -> Result<()> {
        let limit = match self.timers {
            VrrpTimers::Defaults => Duration::from_secs(15),
            VrrpTimers::Fast => Duration::from_secs(5),
        };
        self.wait_vip_on(1, limit)?;
        // The client reaches the master through the VIP (its ARP cache has caught up).
        wait_until(
            "the client to reach host 1 through the VIP",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let answer = nlb_lab::segment::inside(self.lab.client(), || {
                    nlb_lab::http::http_get(nlb_lab::segment::CLIENT, SocketAddr::from((VIP, 80)))
                        .ok()
                })
                .context("could not enter the client's namespace")?;
                Ok(answer.as_deref() == Some("host1"))
            },
        )?;
        Ok(())
    }

    fn logs(&self) -> String {
        (1..=self.daemons.len() as u8)
            .map(|id| format!("--- host {id}\n{}", self.log(id)))
            .collect()
    }
}
