//! Frame corruption: a station whose frames arrive with flipped bytes (a failing NIC, a
//! driver or offload bug, a cable, a switch port) is not sixteen devices on one address.
//!
//! The rule, and how it keeps real duplicates and the Windows NLB masking pattern
//! apart, is stated in the [analyzer](super) docs ("Frame corruption").
//!
//! Bounded: at most [`MAX_STATIONS`] stations (by VLAN and MAC) are tracked; each keeps
//! at most [`MAX_COPIES`] damaged copies; confirmation needs [`CONFIRM_COPIES`] copies,
//! or one and [`CONFIRM_MALFORMED`] malformed frames; damaged IPs are recognised after
//! [`ESTABLISHED_CLAIMS`] claims of the station's own address.

use super::Analyzer;
use crate::finding::{Kind, Severity};
use crate::link::{Frame, Vlan};
use crate::model::{Corruption, Evidence, MAX_COPIES, Subject};
use nlb_wire::MacAddr;
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::arp::ArpRepr;
use std::net::Ipv4Addr;

/// Stations tracked at most.
pub(super) const MAX_STATIONS: usize = 4096;
/// Distinct damaged copies that confirm a station's corruption.
const CONFIRM_COPIES: usize = 3;
/// Malformed frames that, with one damaged copy, confirm it.
const CONFIRM_MALFORMED: u64 = 2;
/// Claims of its own address before a station's damaged IPs are recognised.
const ESTABLISHED_CLAIMS: u64 = 8;

/// One station seen sending damaged or malformed frames.
#[derive(Debug, Clone, Default)]
pub(super) struct Station {
    ip: Option<Ipv4Addr>,
    /// Consistent claims of `ip` since some station's corruption was confirmed.
    own_claims: u64,
    facts: Corruption,
    /// Damaged ARP frames (a frame with both MACs damaged counts once).
    frames: u64,
    copies: Vec<MacAddr>,
    first: Option<(u64, i64)>,
    last: (u64, i64),
    /// Its `frame_corruption` record, once confirmed.
    record: Option<usize>,
}

/// How many of the six bytes of `a` and `b` differ.
fn bytes_apart(a: MacAddr, b: MacAddr) -> usize {
    a.0.iter().zip(b.0).filter(|(x, y)| **x != *y).count()
}

/// Whether `a` and `b` differ in one or two of their six bytes.
pub(crate) fn close(a: MacAddr, b: MacAddr) -> bool {
    (1..=2).contains(&bytes_apart(a, b))
}

fn close_ip(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    let differ = a
        .octets()
        .iter()
        .zip(b.octets())
        .filter(|(x, y)| **x != *y)
        .count();
    (1..=2).contains(&differ)
}

/// Whether `mac` is an NLB cluster MAC (unicast, multicast or IGMP): NLB's own ARP
/// patterns put one in a field, on purpose.
fn cluster_mac(mac: MacAddr) -> bool {
    matches!(
        classify_mac(mac),
        Some(NlbMac::UnicastCluster(_) | NlbMac::MulticastCluster(_) | NlbMac::IgmpCluster(_))
    )
}

/// The station of a damaged frame, or `None` if the frame is not damaged (rules in the
/// module docs). `owner` is the MAC that owns the frame's sender IP, `confirmed` says
/// whether a MAC's corruption is confirmed.
pub(super) fn damaged_station(
    src: MacAddr,
    repr: &ArpRepr,
    owner: Option<MacAddr>,
    confirmed: impl Fn(MacAddr) -> bool,
) -> Option<MacAddr> {
    let sender = repr.sender_mac;
    if src == sender || cluster_mac(src) || cluster_mac(sender) {
        return None;
    }
    if let Some(owner) = owner {
        // A confirmed station's copies may be one byte further off.
        let lenient = confirmed(owner);
        let near = |mac: MacAddr| {
            mac == owner || close(mac, owner) || (lenient && bytes_apart(mac, owner) <= 3)
        };
        let sender_damaged = sender != owner && near(sender) && near(src);
        let source_damaged = sender == owner && near(src);
        if sender_damaged || source_damaged {
            return Some(owner);
        }
    }
    // No owner to tell which field is the damaged one: a confirmed station, else the
    // Ethernet source.
    close(src, sender).then(|| {
        if !confirmed(src) && confirmed(sender) {
            sender
        } else {
            src
        }
    })
}

impl Analyzer {
    /// Whether `mac`'s corruption is confirmed on `vlan`.
    pub(super) fn confirmed(&self, vlan: Option<Vlan>, mac: MacAddr) -> bool {
        self.stations
            .get(&(vlan, mac))
            .is_some_and(|s| s.record.is_some())
    }

    fn station(&mut self, vlan: Option<Vlan>, mac: MacAddr) -> Option<&mut Station> {
        let full = self.stations.len() >= MAX_STATIONS;
        match self.stations.entry((vlan, mac)) {
            std::collections::hash_map::Entry::Occupied(entry) => Some(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(_) if full => {
                self.model.counters.untracked += 1;
                None
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                Some(entry.insert(Station::default()))
            }
        }
    }

    /// Counts a damaged ARP frame of `station` (see [`damaged_station`]).
    #[cold]
    pub(super) fn damaged_frame(
        &mut self,
        frame: &Frame<'_>,
        repr: &ArpRepr,
        src: MacAddr,
        station_mac: MacAddr,
        owner: Option<MacAddr>,
    ) {
        let Some(station) = self.station(frame.vlan, station_mac) else {
            return;
        };
        if owner == Some(station_mac) && !repr.sender_ip.is_unspecified() {
            station.ip = Some(repr.sender_ip);
        }
        station.frames += 1;
        for (mac, counter) in [
            (repr.sender_mac, &mut station.facts.sender_mac),
            (src, &mut station.facts.source_mac),
        ] {
            if mac != station_mac {
                *counter += 1;
                if !station.copies.contains(&mac) && station.copies.len() < MAX_COPIES {
                    station.copies.push(mac);
                }
            }
        }
        self.station_event(frame, station_mac);
    }

    /// Counts a malformed frame from `src`, if it is a station already seen damaged or
    /// any source while there is room (malformed frames can come first).
    pub(super) fn malformed_from(&mut self, frame: &Frame<'_>, src: MacAddr) {
        let Some(station) = self.station(frame.vlan, src) else {
            return;
        };
        station.facts.malformed += 1;
        self.station_event(frame, src);
    }

    /// A consistent ARP frame (Ethernet source = sender MAC): whether it is a damaged
    /// IP of a confirmed station (not a claim), counted if so.
    pub(super) fn damaged_ip(&mut self, frame: &Frame<'_>, repr: &ArpRepr) -> bool {
        // The caller tests `corruption_confirmed` first: the common case costs no call.
        if repr.sender_ip.is_unspecified() {
            return false;
        }
        let Some(station) = self.stations.get_mut(&(frame.vlan, repr.sender_mac)) else {
            return false;
        };
        let Some(ip) = station.ip else {
            return false;
        };
        if repr.sender_ip == ip {
            station.own_claims += 1;
            return false;
        }
        if station.record.is_none()
            || station.own_claims < ESTABLISHED_CLAIMS
            || !close_ip(repr.sender_ip, ip)
        {
            return false;
        }
        station.facts.sender_ip += 1;
        self.station_event(frame, repr.sender_mac);
        true
    }

    /// After a station's counters moved: its time span, confirmation, and its record.
    fn station_event(&mut self, frame: &Frame<'_>, mac: MacAddr) {
        let Some(station) = self.stations.get_mut(&(frame.vlan, mac)) else {
            return;
        };
        let here = (frame.number, frame.ts_ns);
        let first = *station.first.get_or_insert(here);
        station.last = here;
        station.facts.copies = station.copies.len() as u32;
        let damaged = station.facts.sender_mac + station.facts.source_mac > 0;
        let confirmed = station.record.is_some()
            || station.copies.len() >= CONFIRM_COPIES
            || (damaged && station.facts.malformed >= CONFIRM_MALFORMED);
        if !confirmed {
            return;
        }
        let count = station.frames + station.facts.sender_ip + station.facts.malformed;
        let (ip, facts, copies) = (station.ip, station.facts, station.copies.clone());
        let index = match station.record {
            Some(index) => index,
            None => {
                let index = self.model.record(
                    Kind::FrameCorruption,
                    Severity::Error,
                    frame.vlan,
                    None,
                    Subject::Station(mac),
                    first.0,
                    first.1,
                );
                if let Some(station) = self.stations.get_mut(&(frame.vlan, mac)) {
                    station.record = Some(index);
                }
                self.corruption_confirmed = true;
                index
            }
        };
        let record = &mut self.model.records[index];
        record.ip = ip;
        record.count = count;
        record.last_frame = record.last_frame.max(here.0);
        record.last_ts = record.last_ts.max(here.1);
        record.add_mac(mac);
        for copy in copies {
            record.add_mac(copy);
        }
        let absorbed = match record.evidence {
            Evidence::Corruption(old) => old.mismatches_absorbed,
            _ => 0,
        };
        record.evidence = Evidence::Corruption(Corruption {
            mismatches_absorbed: absorbed,
            ..facts
        });
    }

    /// At the end: the `sender_mac_mismatch` findings made of a confirmed station's
    /// damaged copies are part of its `frame_corruption`.
    pub(super) fn absorb_damaged_mismatches(&mut self) {
        let mut folded: Vec<(usize, u64)> = Vec::new();
        for record in &mut self.model.records {
            if record.kind != Kind::SenderMacMismatch {
                continue;
            }
            let Evidence::Damaged { station } = record.evidence else {
                continue;
            };
            // The station chosen then, or either MAC of the pair if that one's
            // corruption was confirmed only later.
            let mut candidates = [Some(station), None, None];
            if let Subject::Mismatch { source, sender } = record.subject {
                candidates[1..].copy_from_slice(&[Some(source), Some(sender)]);
            }
            if let Some(index) = candidates
                .into_iter()
                .flatten()
                .find_map(|mac| self.stations.get(&(record.vlan, mac))?.record)
            {
                record.absorbed = true;
                folded.push((index, 1));
            }
        }
        for record in &mut self.model.records {
            if let Evidence::Corruption(facts) = &mut record.evidence {
                facts.mismatches_absorbed = 0;
            }
        }
        for (index, n) in folded {
            if let Evidence::Corruption(facts) = &mut self.model.records[index].evidence {
                facts.mismatches_absorbed += n;
            }
        }
    }
}
