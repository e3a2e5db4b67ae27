//! IGMP: membership reports (v1, v2, v3) and traffic to IGMP-mode cluster MACs
//! (`01:00:5e:7f:c:d`); `igmp_missing` when such traffic flows and nobody reported the
//! group `239.255.c.d` on its VLAN.

use super::Analyzer;
use crate::finding::{Kind, Severity};
use crate::link::{Frame, Vlan};
use crate::model::Subject;
use nlb_wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_MS_NLB, ETHERTYPE_NLB_HEARTBEAT};
use nlb_wire::igmp::{IgmpCarrier, IgmpDatagram, IgmpRepr, IgmpV3Report, TYPE_REPORT_V3};
use nlb_wire::{Error, MacAddr};
use std::net::Ipv4Addr;

/// IGMP cluster MACs tracked at most.
const MAX_GROUPS: usize = 1024;

/// Frames to one IGMP cluster MAC.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Traffic {
    frames: u64,
    first_frame: u64,
    last_frame: u64,
    first_ts: i64,
    last_ts: i64,
}

fn igmp_reason(err: &Error) -> &'static str {
    match err {
        Error::BadChecksum => "IGMP: bad checksum",
        Error::Truncated { .. } => "IGMP: truncated message",
        _ => "IGMP: malformed message",
    }
}

impl Analyzer {
    pub(super) fn note_igmp_cluster_traffic(&mut self, frame: &Frame<'_>, dst: MacAddr) {
        // Cluster traffic is a unicast IPv4 packet (for the VIP) inside the multicast
        // MAC, or a heartbeat. Ordinary multicast that shares the MAC prefix (SSDP to
        // 239.255.255.250, say) and IGMP reports themselves are not.
        let cluster_traffic = match frame.ethertype {
            ETHERTYPE_IPV4 => frame
                .payload
                .get(16..20)
                .is_some_and(|d| !Ipv4Addr::new(d[0], d[1], d[2], d[3]).is_multicast()),
            ETHERTYPE_NLB_HEARTBEAT | ETHERTYPE_MS_NLB => true,
            _ => false,
        };
        if !cluster_traffic || self.igmp_traffic.len() >= MAX_GROUPS {
            return;
        }
        let traffic = self
            .igmp_traffic
            .entry((frame.vlan, dst))
            .or_insert(Traffic {
                first_frame: frame.number,
                first_ts: frame.ts_ns,
                ..Traffic::default()
            });
        traffic.frames += 1;
        traffic.last_frame = frame.number;
        traffic.last_ts = frame.ts_ns;
    }

    fn reported(&mut self, vlan: Option<Vlan>, group: Ipv4Addr) {
        if self.igmp_reported.len() < self.settings.max_tracked {
            self.igmp_reported.insert((vlan, group));
        }
    }

    pub(super) fn handle_ipv4(&mut self, frame: &Frame<'_>) {
        if frame.payload.get(9) != Some(&2) {
            return;
        }
        let Ok(carrier) = IgmpCarrier::parse(frame.payload) else {
            if !frame.cut {
                self.malformed(frame, "IGMP: bad IPv4 header", Severity::Warning);
            }
            return;
        };
        self.model.counters.igmp += 1;
        if carrier.msg_type() == Some(TYPE_REPORT_V3) {
            match IgmpV3Report::new_checked(carrier.message) {
                Ok(report) => {
                    for record in report.records().filter(|r| r.is_membership()) {
                        self.reported(frame.vlan, record.group);
                    }
                }
                Err(err) if !frame.cut => {
                    self.malformed(frame, igmp_reason(&err), Severity::Warning)
                }
                Err(_) => {}
            }
            return;
        }
        match IgmpDatagram::parse(frame.payload) {
            Ok(datagram) => {
                if let IgmpRepr::MembershipReportV1 { group }
                | IgmpRepr::MembershipReportV2 { group } = datagram.igmp
                {
                    self.reported(frame.vlan, group);
                }
            }
            Err(err) if !frame.cut => self.malformed(frame, igmp_reason(&err), Severity::Warning),
            Err(_) => {}
        }
    }

    /// At the end: an `igmp_missing` record for each IGMP cluster MAC with traffic and no
    /// report for its group.
    pub(super) fn summarise_igmp(&mut self) {
        let missing: Vec<((Option<Vlan>, MacAddr), Traffic)> = self
            .igmp_traffic
            .iter()
            .filter(|((vlan, mac), _)| {
                let group = Ipv4Addr::new(239, 255, mac.0[4], mac.0[5]);
                !self.igmp_reported.contains(&(*vlan, group))
            })
            .map(|(k, t)| (*k, *t))
            .collect();
        for ((vlan, mac), traffic) in missing {
            let group = Ipv4Addr::new(239, 255, mac.0[4], mac.0[5]);
            let index = self.model.record(
                Kind::IgmpMissing,
                Severity::Error,
                vlan,
                Some(group),
                Subject::Mac(mac),
                traffic.first_frame,
                traffic.first_ts,
            );
            let record = &mut self.model.records[index];
            record.count = traffic.frames;
            record.last_frame = traffic.last_frame;
            record.last_ts = traffic.last_ts;
            record.add_mac(mac);
        }
    }
}
