//! Incarnations that only grow, even when the clock steps back.
//!
//! A daemon's incarnation tells its peers that it restarted: they accept a higher one as
//! a new life of the same host, and refuse a lower one as a replay. The wall clock alone
//! is not enough: a host whose clock steps back (NTP after a boot with a bad RTC, a VM
//! restored from a snapshot) would restart with a lower incarnation and be refused by
//! every peer until they restart too.
//!
//! So the daemon keeps the last incarnation it used in its run directory, one file per
//! interface, cluster and network namespace (`<interface>-<cluster id>-<netns>.incarnation`,
//! next to the daemon lock, which serializes access), and starts with
//! `max(stored + 1, unix seconds)`. The new value is on disk (written to a temporary file,
//! synced, renamed over the old one, directory synced) before it is returned, so a crash
//! right after start cannot hand the same incarnation out twice. Without a file (first
//! start, or `/run` is a fresh tmpfs after a reboot) it is the clock, as before.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The counter file for this interface and cluster, in this process's network
/// namespace, under `dir`.
pub fn path(dir: &Path, interface: &str, cluster_id: u32) -> PathBuf {
    // The namespace's inode tells apart daemons in different namespaces that share
    // `/run` (the same interface name and cluster in two namespaces).
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    dir.join(format!("{interface}-{cluster_id:08x}-{netns}.incarnation"))
}

/// The next incarnation for `interface` and `cluster_id`: `max(stored + 1, now_unix)`,
/// stored in `dir` before it is returned (see the module docs). `now_unix` is the wall
/// clock in seconds.
pub fn next(dir: &Path, interface: &str, cluster_id: u32, now_unix: u64) -> io::Result<u32> {
    next_at(&path(dir, interface, cluster_id), now_unix)
}

/// [`next`] with the counter file named.
pub fn next_at(file: &Path, now_unix: u64) -> io::Result<u32> {
    let shown = file.display();
    let stored = match std::fs::read_to_string(file) {
        Ok(text) => Some(text.trim().parse::<u32>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the incarnation counter {shown} holds {:?}, not a number; remove it (the \
                     daemon then starts from the clock, which peers accept unless the clock \
                     went back since their last restart)",
                    text.trim()
                ),
            )
        })?),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!("cannot read the incarnation counter {shown}: {err}; run as root"),
            ));
        }
    };
    // Past 2106 the clock no longer fits; the counter still grows from the stored value.
    let clock = u32::try_from(now_unix).unwrap_or(u32::MAX);
    let next = match stored {
        None => clock,
        Some(u32::MAX) => {
            return Err(io::Error::other(format!(
                "the incarnation counter {shown} is at its end (4294967295); stop every host \
                 of the cluster, then remove it on every host"
            )));
        }
        Some(stored) => clock.max(stored + 1),
    };
    store(file, next).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "cannot store the incarnation counter {shown}: {err}; check that its directory \
                 (--run-dir) is writable"
            ),
        )
    })?;
    Ok(next)
}

/// Writes `value` to `file` atomically and durably.
fn store(file: &Path, value: u32) -> io::Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = file.file_name().map_or_else(
        || "incarnation".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut out = File::create(&temp)?;
        writeln!(out, "{value}")?;
        out.sync_all()?;
        std::fs::rename(&temp, file)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nlb-incarnation-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    #[test]
    fn grows_by_the_clock_and_by_one_when_the_clock_stands_or_steps_back() {
        let dir = tempdir();
        let file = dir.path().join("eth0-00000001-1.incarnation");
        // First start: the clock.
        assert_eq!(next_at(&file, 1_800_000_000).unwrap(), 1_800_000_000);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1800000000\n");
        // Restart in the same second: one more.
        assert_eq!(next_at(&file, 1_800_000_000).unwrap(), 1_800_000_001);
        // The clock stepped back an hour: still one more, never lower.
        assert_eq!(next_at(&file, 1_799_996_400).unwrap(), 1_800_000_002);
        assert_eq!(next_at(&file, 0).unwrap(), 1_800_000_003);
        // The clock moves on past the counter: the clock again.
        assert_eq!(next_at(&file, 1_800_000_100).unwrap(), 1_800_000_100);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1800000100\n");
        // Only the counter is left in the directory: no temporary files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_fresh_directory_is_made_and_the_name_is_per_interface_and_cluster() {
        let dir = tempdir();
        let run = dir.path().join("run/nlb");
        assert_eq!(next(&run, "eth0", 0xc612000a, 5).unwrap(), 5);
        assert_eq!(next(&run, "eth0", 0xc612000a, 5).unwrap(), 6);
        assert_eq!(next(&run, "eth1", 0xc612000a, 5).unwrap(), 5);
        assert_eq!(next(&run, "eth0", 0xc612000b, 5).unwrap(), 5);
        let name = path(&run, "eth0", 0xc612000a);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("eth0-c612000a-"), "{name}");
        assert!(name.ends_with(".incarnation"), "{name}");
    }

    #[test]
    fn garbage_and_the_end_of_the_counter_are_errors_with_a_fix() {
        let dir = tempdir();
        let file = dir.path().join("x.incarnation");
        std::fs::write(&file, "twelve\n").unwrap();
        let err = next_at(&file, 5).unwrap_err().to_string();
        assert!(
            err.contains("not a number") && err.contains("remove it"),
            "{err}"
        );
        std::fs::write(&file, "4294967295\n").unwrap();
        let err = next_at(&file, 5).unwrap_err().to_string();
        assert!(err.contains("at its end"), "{err}");
        // Neither error changed the file.
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "4294967295\n");
        // A clock past 2106 is capped, and the counter keeps growing from below it.
        std::fs::write(&file, "7\n").unwrap();
        assert_eq!(next_at(&file, u64::MAX).unwrap(), u32::MAX);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_that_names_it() {
        let err = next_at(Path::new("/proc/nlb-test/x.incarnation"), 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/proc/nlb-test/x.incarnation"), "{err}");
        assert!(err.contains("--run-dir"), "{err}");
    }
}
