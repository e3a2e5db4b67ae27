//! A whole Ethernet segment in network namespaces: a Linux bridge as the switch, cluster
//! hosts, and a client with many addresses. The lab and the end-to-end tests build on it.
//!
//! Addresses come from 198.18.0.0/24 (RFC 2544 benchmarking space) and exist only inside
//! the namespaces: host `k` is 198.18.0.k, the client 198.18.0.100 and 198.18.0.101 and
//! up. Dropping the segment deletes every namespace, and with them every interface.

use nlb_linux::command::{CommandError, run};
use nlb_linux::netns::NetNs;
use std::net::Ipv4Addr;

/// The address of host `id`.
pub fn host_address(id: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, id)
}

/// The client's main address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

/// The client's extra addresses, 198.18.0.101 and up.
pub fn client_addresses(count: u8) -> impl Iterator<Item = Ipv4Addr> {
    (1..=count).map(|i| Ipv4Addr::new(198, 18, 0, 100 + i))
}

/// The namespaces of one segment.
#[derive(Debug)]
pub struct Segment {
    /// Holds the bridge `br0`; host `k`'s port is `p<k>`, the client's `pc`.
    pub switch: NetNs,
    /// The hosts, in id order; each has `eth0`.
    pub hosts: Vec<NetNs>,
    /// The client; it has `eth0`.
    pub client: NetNs,
}

impl Segment {
    /// Builds a segment with `hosts` hosts and a client with `client_extra` extra
    /// addresses. With `igmp_snooping`, the bridge snoops IGMP and runs a querier that
    /// asks every 2 s (1 s at start) and forgets members after 5 s without a report.
    /// Namespace names start with `prefix`, which should be unique on the machine.
    pub fn build(
        prefix: &str,
        hosts: u8,
        client_extra: u8,
        igmp_snooping: bool,
    ) -> Result<Segment, CommandError> {
        let switch = NetNs::create(&format!("{prefix}-sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        if igmp_snooping {
            switch.ip(&[
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "1",
                "mcast_querier",
                "1",
                "mcast_query_interval",
                "200",
                "mcast_query_response_interval",
                "100",
                "mcast_membership_interval",
                "500",
                "mcast_startup_query_interval",
                "100",
            ])?;
        }
        switch.ip(&["link", "set", "br0", "up"])?;
        let mut segment = Segment {
            client: NetNs::create(&format!("{prefix}-c"))?,
            hosts: Vec::new(),
            switch,
        };
        for id in 1..=hosts {
            let host = NetNs::create(&format!("{prefix}-h{id}"))?;
            segment.attach(&host, &format!("p{id}"))?;
            host.ip(&[
                "addr",
                "add",
                &format!("{}/24", host_address(id)),
                "dev",
                "eth0",
            ])?;
            segment.hosts.push(host);
        }
        let client = &segment.client;
        segment.attach(client, "pc")?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        for address in client_addresses(client_extra) {
            client.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        }
        Ok(segment)
    }

    /// Connects `ns` to the bridge: `eth0` inside, `port` on the bridge.
    fn attach(&self, ns: &NetNs, port: &str) -> Result<(), CommandError> {
        attach(&self.switch, ns, port)
    }

    /// The bridge port of host `id`.
    pub fn port_of(id: u8) -> String {
        format!("p{id}")
    }

    /// Runs `bridge args...` in the switch namespace.
    pub fn bridge(&self, args: &[&str]) -> Result<String, CommandError> {
        self.switch.exec("bridge", args, None)
    }
}

/// Connects namespace `ns` to the bridge `br0` in `switch` (a [`Segment::switch`]):
/// `eth0` inside `ns`, up, and `port` on the bridge, for one more port beside the
/// segment's own (`p<id>` and `pc` are taken).
pub fn attach(switch: &NetNs, ns: &NetNs, port: &str) -> Result<(), CommandError> {
    // Created in the switch namespace, so the names cannot clash with the host's.
    switch.ip(&[
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    switch.ip(&["link", "set", port, "master", "br0", "up"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}

/// Whether this process may build segments: root, with `ip` available.
pub fn can_build() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("building network namespaces needs root: run it with sudo".to_owned());
    }
    run("ip", &["-V"], None)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Runs `work` on a thread inside `ns` and returns what it returned; `Err` if the
/// thread could not enter the namespace. A panic in `work` goes on in the caller.
/// Threads that `work` starts are in `ns` too (a new thread starts in the namespace of
/// the thread that starts it), which is how [`crate::load::Load`] puts its clients there.
pub fn inside<T: Send>(ns: &NetNs, work: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        match scope
            .spawn(|| {
                ns.enter_current_thread()?;
                Ok(work())
            })
            .join()
        {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
