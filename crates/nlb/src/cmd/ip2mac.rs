//! `nlb ip2mac <IPv4>`: the cluster MAC of a VIP in each mode.

use crate::CliError;
use nlb_wire::MacAddr;
use nlb_wire::addressing::{ClusterMode, cluster_mac, igmp_group};
use std::net::Ipv4Addr;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The virtual IP, for example 192.168.128.111.
    ip: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The JSON answer; the keys are a stable interface.
#[derive(Debug, serde::Serialize)]
struct Ip2Mac {
    ip: Ipv4Addr,
    unicast: MacAddr,
    multicast: MacAddr,
    igmp: MacAddr,
    igmp_group: Ipv4Addr,
}

/// What a mode needs from the switch, in one or two sentences.
fn switch_note(mode: ClusterMode, answer: &Ip2Mac) -> String {
    match mode {
        ClusterMode::Unicast => "no host ever sends from this MAC, so switches never learn it and \
             flood it to every port of the VLAN; give the cluster its own VLAN to contain the \
             flooding. No switch configuration is needed."
            .to_owned(),
        ClusterMode::Multicast => format!(
            "switches send it to every port of the VLAN. Some routers refuse an ARP reply that \
             maps a unicast IP to a multicast MAC: add a static ARP entry for {} -> {}, and a \
             static MAC entry for the cluster ports to stop the flooding.",
            answer.ip, answer.multicast
        ),
        ClusterMode::Igmp => format!(
            "hosts join group {}; switches with IGMP snooping (and a querier on the VLAN) send \
             it only to the ports that joined. Without snooping it is flooded like multicast.",
            answer.igmp_group
        ),
    }
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let ip: Ipv4Addr = args.ip.trim().parse().map_err(|_| {
        CliError::bad_input(format!(
            "'{}' is not an IPv4 address: give four numbers 0-255 separated by dots, such as \
             192.168.128.111",
            args.ip
        ))
    })?;
    let answer = Ip2Mac {
        ip,
        unicast: cluster_mac(ip, ClusterMode::Unicast),
        multicast: cluster_mac(ip, ClusterMode::Multicast),
        igmp: cluster_mac(ip, ClusterMode::Igmp),
        igmp_group: igmp_group(ip),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&answer).expect("plain values serialise")
        );
        return Ok(());
    }
    println!("cluster MACs for {ip}:");
    for mode in ClusterMode::ALL {
        let mac = cluster_mac(ip, mode);
        let label = match mode {
            ClusterMode::Igmp => format!("{mac}  (group {})", answer.igmp_group),
            _ => mac.to_string(),
        };
        println!("  {:<10} {label}", mode.name());
        println!("             {}", switch_note(mode, &answer));
    }
    Ok(())
}
