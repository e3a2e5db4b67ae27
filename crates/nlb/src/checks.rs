//! The health-check runner: every probe on a thread of its own, results to the protocol
//! loop through a bounded channel.
//!
//! Contract:
//! - **Checks never delay a heartbeat.** The probes run on the `nlb-checks` thread, with
//!   its own single-threaded runtime: a slow connect, a fork of a large daemon, or a
//!   check program that hangs costs that thread, not the protocol loop. The loop only
//!   receives [`CheckResult`]s; when it falls behind, results are dropped and counted
//!   ([`Runner::dropped`]), never waited for.
//! - **Each run has its own timeout**, counted from its start. A run that times out is a
//!   failure; an exec check's whole process group is killed (SIGKILL), so that a hung
//!   script and the children it started do not pile up. The group is also killed as soon
//!   as the program exits: a check's verdict is its exit status, and what it leaves
//!   running is not the check's to keep. (A child that leaves the group with `setsid`
//!   escapes both.)
//! - **Runs of one check never overlap**: the next starts `interval` after the previous
//!   one started, or at once when the previous one took longer.
//! - **Exec checks** get an empty environment except `PATH=/usr/sbin:/usr/bin:/sbin:/bin`,
//!   stdin from /dev/null, `/` as working directory, and their own process group. At most
//!   [`OUTPUT_KEEP`] bytes of stdout and of stderr are kept (the rest is read and thrown
//!   away, so a chatty program does not block on a full pipe); a failure's text is the
//!   exit status and the first line of stderr (or stdout).

use nlb_core::check::{CheckKind, CheckSpec, Probe};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

/// Bytes of each output stream an exec check keeps.
pub(crate) const OUTPUT_KEEP: u64 = 4096;
/// Results waiting for the protocol loop; more are dropped and counted.
pub(crate) const QUEUE: usize = 64;
/// The environment of exec checks.
const EXEC_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One run's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckResult {
    /// The runner that sent it: after a reload, results of the runner it replaced (whose
    /// indexes may mean other checks now) are told apart and ignored.
    pub generation: u64,
    /// The check's index in the configuration.
    pub index: usize,
    /// Pass or fail, with the reason.
    pub probe: Probe,
    /// How long the run took.
    pub took: Duration,
}

/// The running checks of one configuration. Dropping it stops them without waiting:
/// every task ends at its next await (a running exec check's process group is killed
/// there), and the thread ends with its last task.
pub(crate) struct Runner {
    stop: watch::Sender<bool>,
    dropped: Arc<AtomicU64>,
}

impl Runner {
    /// Starts `specs` on a new thread. Results arrive on `results` in the order runs end,
    /// marked with `generation`.
    pub(crate) fn start(
        specs: Vec<CheckSpec>,
        generation: u64,
        results: mpsc::Sender<CheckResult>,
    ) -> std::io::Result<Runner> {
        let (stop, stopped) = watch::channel(false);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("nlb-checks".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (index, spec) in specs.into_iter().enumerate() {
                        tasks.spawn(run_check(
                            generation,
                            index,
                            spec,
                            results.clone(),
                            stopped.clone(),
                            counter.clone(),
                        ));
                    }
                    while tasks.join_next().await.is_some() {}
                });
            })?;
        Ok(Runner { stop, dropped })
    }

    /// Results the protocol loop was too busy to take.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run_check(
    generation: u64,
    index: usize,
    spec: CheckSpec,
    results: mpsc::Sender<CheckResult>,
    mut stopped: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
) {
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        let started = Instant::now();
        let probe = tokio::select! {
            probe = run_once(&spec) => probe,
            _ = stopped.changed() => return,
        };
        let result = CheckResult {
            generation,
            index,
            probe,
            took: started.elapsed(),
        };
        match results.try_send(result) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// One run of a check, bounded by its timeout.
pub(crate) async fn run_once(spec: &CheckSpec) -> Probe {
    let run = async {
        match &spec.kind {
            CheckKind::Tcp { target } => tcp(*target).await,
            CheckKind::Http {
                addr,
                host,
                path,
                expect_status,
            } => http(*addr, host, path, *expect_status).await,
            CheckKind::Exec { argv } => exec(argv).await,
        }
    };
    match tokio::time::timeout(spec.timeout, run).await {
        Ok(probe) => probe,
        Err(_) => Probe::Fail(format!("timed out after {} ms", spec.timeout.as_millis())),
    }
}

async fn tcp(target: SocketAddr) -> Probe {
    match tokio::net::TcpStream::connect(target).await {
        Ok(_) => Probe::Pass,
        Err(err) => Probe::Fail(format!("connect to {target}: {err}")),
    }
}

async fn http(addr: SocketAddr, host: &str, path: &str, expect_status: Option<u16>) -> Probe {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) => return Probe::Fail(format!("connect to {addr}: {err}")),
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(err) => return Probe::Fail(format!("HTTP handshake with {addr}: {err}")),
    };
    let request = match hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "nlb-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
    {
        Ok(request) => request,
        Err(err) => return Probe::Fail(format!("request for {path}: {err}")),
    };
    // The connection future drives the exchange; it may end (the server closed after
    // answering) before the response future is polled, so a clean end is followed by
    // the response, which is then ready or failed.
    let send = sender.send_request(request);
    tokio::pin!(connection, send);
    let response = tokio::select! {
        biased;
        response = &mut send => response,
        closed = &mut connection => match closed {
            Ok(()) => send.await,
            Err(err) => return Probe::Fail(format!("HTTP from {addr}: {err}")),
        },
    };
    let status = match response {
        Ok(response) => response.status(),
        Err(err) => return Probe::Fail(format!("HTTP from {addr}: {err}")),
    };
    let passed = match expect_status {
        Some(expected) => status.as_u16() == expected,
        None => status.is_success() || status.is_redirection(),
    };
    if passed {
        Probe::Pass
    } else {
        Probe::Fail(match expect_status {
            Some(expected) => format!("GET {path}: status {status}, expected {expected}"),
            None => format!("GET {path}: status {status}"),
        })
    }
}

/// Kills a process group when dropped: the timeout drops the run's future, and with it
/// this guard, so a hung check and its children die with the run.
struct GroupKill(Option<nix::unistd::Pid>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

async fn exec(argv: &[String]) -> Probe {
    let Some((program, args)) = argv.split_first() else {
        return Probe::Fail("empty command".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", EXEC_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return Probe::Fail(format!("cannot run {program}: {err}")),
    };
    let guard = GroupKill(
        child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(nix::unistd::Pid::from_raw),
    );
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // The verdict is the program's exit. Once it has exited, what it left behind in its
    // group is killed: that also closes the pipes such children hold, so reading them
    // ends, and a check cannot leak processes run after run.
    let exited = async move {
        let status = child.wait().await;
        drop(guard);
        status
    };
    let (status, stdout, stderr) = tokio::join!(exited, keep(stdout), keep(stderr));
    match status {
        Ok(status) if status.success() => Probe::Pass,
        Ok(status) => {
            let said = first_line(&stderr).or_else(|| first_line(&stdout));
            Probe::Fail(match said {
                Some(said) => format!("{program}: {status}: {said}"),
                None => format!("{program}: {status}"),
            })
        }
        Err(err) => Probe::Fail(format!("waiting for {program}: {err}")),
    }
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_KEEP`] bytes.
async fn keep(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = (&mut pipe).take(OUTPUT_KEEP).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    }
    kept
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_core::check::{CheckAction, GuardedRules, parse_exec_target, parse_http_target};
    use tokio::io::AsyncWriteExt;

    fn spec(kind: CheckKind, timeout_ms: u64) -> CheckSpec {
        CheckSpec {
            name: "t".into(),
            kind,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(timeout_ms),
            fall: 1,
            rise: 1,
            rules: GuardedRules::All,
            action: CheckAction::Drain,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn tcp_passes_on_a_listener_and_fails_on_a_closed_port() {
        runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let open = listener.local_addr().unwrap();
            let pass = run_once(&spec(CheckKind::Tcp { target: open }, 1000)).await;
            assert_eq!(pass, Probe::Pass);
            drop(listener);
            let Probe::Fail(why) = run_once(&spec(CheckKind::Tcp { target: open }, 1000)).await
            else {
                panic!("a closed port passed");
            };
            assert!(why.contains("refused"), "{why}");
        });
    }

    /// Serves one canned HTTP response per connection, forever.
    async fn http_server(response: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await;
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    #[test]
    fn http_judges_the_status() {
        runtime().block_on(async {
            let ok = http_server("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await;
            let down = http_server("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n").await;
            let url = |addr: SocketAddr| format!("http://{addr}/health");
            let check = |url: String, expect| spec(parse_http_target(&url, expect).unwrap(), 1000);
            assert_eq!(run_once(&check(url(ok), None)).await, Probe::Pass);
            let Probe::Fail(why) = run_once(&check(url(down), None)).await else {
                panic!("503 passed");
            };
            assert!(why.contains("503"), "{why}");
            assert_eq!(run_once(&check(url(down), Some(503))).await, Probe::Pass);
            assert!(matches!(
                run_once(&check(url(ok), Some(200))).await,
                Probe::Fail(_)
            ));
        });
    }

    #[test]
    fn http_that_never_answers_times_out() {
        runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let url = format!("http://{addr}/");
            let probe = run_once(&spec(parse_http_target(&url, None).unwrap(), 200)).await;
            assert_eq!(probe, Probe::Fail("timed out after 200 ms".into()));
            drop(listener);
        });
    }

    #[test]
    fn exec_reports_the_exit_status_and_stderr_in_a_clean_environment() {
        runtime().block_on(async {
            let exec = |line: &str| spec(parse_exec_target(line, true).unwrap(), 2000);
            assert_eq!(run_once(&exec("exit 0")).await, Probe::Pass);
            let Probe::Fail(why) = run_once(&exec("echo 'db is down' >&2; exit 3")).await else {
                panic!("exit 3 passed");
            };
            assert!(why.contains("3") && why.ends_with("db is down"), "{why}");
            // Nothing of the daemon's environment leaks into a check (cargo runs the
            // tests with CARGO_* variables set).
            assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
            let clean = "test -z \"$CARGO_PKG_NAME$HOME\" && test \"$PATH\" = /usr/sbin:/usr/bin:/sbin:/bin && test \"$(pwd)\" = /";
            assert_eq!(run_once(&exec(clean)).await, Probe::Pass);
            // A program that writes far more than is kept still passes.
            let chatty = "head -c 1000000 /dev/zero; exit 0";
            assert_eq!(run_once(&exec(chatty)).await, Probe::Pass);
        });
    }

    /// Whether the process whose pid `pidfile` holds is dead within 2 s, and its pid. It
    /// may linger as a zombie until init reaps it, so its state counts, not only whether
    /// it exists.
    fn dies_soon(pidfile: &std::path::Path) -> (i32, bool) {
        let pid: i32 = std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit(')').next().map(|s| s.trim().to_string()));
            let dead = state.is_none_or(|s| s.starts_with('Z') || s.starts_with('X'));
            if !dead {
                std::thread::sleep(Duration::from_millis(10));
            }
            dead
        });
        (pid, gone)
    }

    #[test]
    fn a_hanging_exec_check_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let line = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        runtime().block_on(async {
            let check = spec(parse_exec_target(&line, true).unwrap(), 1000);
            let started = Instant::now();
            assert_eq!(
                run_once(&check).await,
                Probe::Fail("timed out after 1000 ms".into())
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        });
        let (pid, gone) = dies_soon(&pidfile);
        assert!(gone, "the hung check's child {pid} survived the timeout");
    }

    #[test]
    fn a_program_that_exits_passes_and_what_it_leaves_behind_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let line = format!("sleep 60 & echo $! > {}; exit 0", pidfile.display());
        let started = Instant::now();
        let probe = runtime().block_on(run_once(&spec(
            parse_exec_target(&line, true).unwrap(),
            2000,
        )));
        assert_eq!(probe, Probe::Pass);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let (pid, gone) = dies_soon(&pidfile);
        assert!(gone, "the check's leftover child {pid} survived");
    }

    #[test]
    fn the_runner_delivers_results_and_stops_when_dropped() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let specs = vec![
            spec(CheckKind::Tcp { target }, 500),
            spec(parse_exec_target("exit 1", true).unwrap(), 500),
        ];
        let runner = Runner::start(specs, 7, tx).unwrap();
        let mut seen = [false, false];
        while !(seen[0] && seen[1]) {
            let result = rx.blocking_recv().expect("the runner stopped early");
            assert_eq!(result.generation, 7);
            match result.index {
                0 => assert_eq!(result.probe, Probe::Pass),
                1 => assert!(matches!(result.probe, Probe::Fail(_))),
                other => panic!("no check {other}"),
            }
            seen[result.index] = true;
        }
        drop(runner);
        // Stopped: the channel closes once the runner's thread has ended.
        while rx.blocking_recv().is_some() {}
    }
}
