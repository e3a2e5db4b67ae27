//! Facts and changes of the host's own interface: its MAC, VIP addresses, the IGMP group
//! membership, and the lock that keeps a second daemon off one interface.

use crate::command::{CommandError, run};
use nlb_wire::MacAddr;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The MAC of `interface`, from sysfs (which `ip netns exec` mounts per namespace).
pub fn interface_mac(interface: &str) -> io::Result<MacAddr> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot read {path}: {err}; is there an interface named {interface}?"),
        )
    })?;
    text.trim()
        .parse()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {err}")))
}

/// The interface index of `interface`.
pub fn interface_index(interface: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(interface).map_err(|err| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {interface}: {err}"),
        )
    })
}

/// Adds `vip/32` to `interface`, without a prefix route. An address that is already
/// there (a stale run's) is fine.
pub fn add_vip(interface: &str, vip: Ipv4Addr) -> Result<(), CommandError> {
    let address = format!("{vip}/32");
    match run(
        "ip",
        &[
            "addr",
            "replace",
            &address,
            "dev",
            interface,
            "noprefixroute",
        ],
        None,
    ) {
        Ok(_) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Removes `vip/32` from `interface`; an address that is not there is fine.
pub fn remove_vip(interface: &str, vip: Ipv4Addr) {
    let address = format!("{vip}/32");
    let _ = run("ip", &["addr", "del", &address, "dev", interface], None);
}

/// Joins an IPv4 multicast group on an interface for as long as the returned socket
/// lives, so that the kernel sends IGMP reports for it and answers queries.
pub fn join_group(group: Ipv4Addr, ifindex: u32) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    socket.join_multicast_v4_n(&group, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
    Ok(socket)
}

/// The inode of the calling thread's network namespace (`/proc/thread-self/ns/net`),
/// which names the namespace on this machine.
pub fn netns_inode() -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino())
}

/// An exclusive lock on one interface and cluster in one network namespace, held for
/// the daemon's life. Daemons in different namespaces that share `/run` (plain
/// `ip netns exec`, containers) do not see each other's locks.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: nix::fcntl::Flock<File>,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the lock for `interface` and `cluster_id` in this network namespace, in
    /// `dir`, or says which process holds it.
    pub fn acquire(dir: &Path, interface: &str, cluster_id: u32) -> io::Result<DaemonLock> {
        std::fs::create_dir_all(dir).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot create the lock directory {}: {err}", dir.display()),
            )
        })?;
        let netns = netns_inode().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot read /proc/thread-self/ns/net ({err}); is /proc mounted?"),
            )
        })?;
        let path = dir.join(format!("{interface}-{cluster_id:08x}-net{netns}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
                Ok(DaemonLock { _lock: lock, path })
            }
            Err((_, _)) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "another nlb daemon (pid {}) already runs this cluster on {interface} in this network namespace; stop it first (lock {})",
                        holder.trim(),
                        path.display()
                    ),
                ))
            }
        }
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
