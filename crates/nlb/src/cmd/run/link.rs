//! The watched interface (rtnetlink): deleted, the daemon exits non-zero so that its
//! supervisor restarts it once the interface is back; down and up are logged; a new MAC
//! makes the host rejoin with it, as a successor node under the next incarnation; a VIP
//! removed by hand is put back, off the loop.

use super::{Daemon, cluster_key};
use crate::CliError;
use crate::kernel::Job;
use nlb_linux::netlink::LinkEvent;

impl Daemon {
    /// Something happened to the interface. `Err` ends the daemon.
    pub(super) fn link_event(&mut self, event: LinkEvent) -> Result<(), CliError> {
        let interface = self.config.cluster.interface.clone();
        match event {
            LinkEvent::Deleted => {
                tracing::error!(event = "nlb.interface_deleted", interface = %interface);
                return Err(CliError::failed(format!(
                    "the interface {interface} was deleted; nlb exits so that its service \
                     manager restarts it (systemd: Restart=on-failure) once {interface} is back"
                )));
            }
            LinkEvent::State { up, carrier } => {
                if up && carrier {
                    tracing::info!(event = "nlb.link_up", interface = %interface);
                } else {
                    tracing::warn!(event = "nlb.link_down", interface = %interface, up, carrier,
                        "no frames pass; peers will see this host leave, and it will rejoin \
                         when the link is back");
                }
            }
            LinkEvent::Mac(mac) if mac != self.mac => {
                tracing::warn!(event = "nlb.mac_changed", interface = %interface,
                    from = %self.mac, to = %mac, "rejoining the cluster with the new MAC");
                let now = self.clock.now();
                let key = cluster_key(&self.config)?;
                self.mac = mac;
                let stored = self.stored_incarnation();
                self.node = self
                    .node
                    .successor(now, self.config.clone(), mac, key, stored);
                self.publish_now = true;
            }
            LinkEvent::Mac(_) => {}
            LinkEvent::AddressRemoved(ip) if self.config.cluster.vips.contains(&ip) => {
                self.kernel.submit(Job::AddVip { interface, vip: ip });
            }
            LinkEvent::AddressRemoved(_) => {}
        }
        Ok(())
    }
}
