//! The systemd notification protocol (sd_notify(3)), without libsystemd: datagrams to
//! `$NOTIFY_SOCKET`. Outside systemd the variable is unset and every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where to send notifications, if systemd asked for them.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            use std::os::linux::net::SocketAddrExt;
            let address = match path.strip_prefix('@') {
                Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?,
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            // Never block the daemon on a slow or absent reader.
            let socket = UnixDatagram::unbound().ok()?;
            socket.set_nonblocking(true).ok()?;
            Some((socket, address))
        });
        Notifier { socket }
    }

    /// Sends one notification, such as `READY=1`; errors are ignored, as sd_notify does.
    pub fn notify(&self, state: &str) {
        if let Some((socket, address)) = &self.socket {
            let _ = socket.send_to_addr(state.as_bytes(), address);
        }
    }

    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, if the watchdog is on.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
