//! What the simulator's test files share.

use nlb_sim::{Sim, SimConfig, test_config};
use nlb_wire::addressing::ClusterMode;

/// `n` hosts (ids 1 to `n`) of [`test_config`]'s cluster in `mode`, and one bystander
/// port.
pub(crate) fn cluster(n: u8, mode: ClusterMode, config: SimConfig) -> Sim {
    let configs = (1..=n).map(|id| test_config(id, mode, "", "")).collect();
    Sim::new(config, configs, 1)
}
