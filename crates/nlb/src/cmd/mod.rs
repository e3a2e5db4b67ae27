//! One module per subcommand. Each has an `Args` (its clap definition) and a `run`.

pub(crate) mod ctl;
pub(crate) mod docs;
pub(crate) mod doctor;
pub(crate) mod ip2mac;
pub(crate) mod keygen;
pub(crate) mod lab;
pub(crate) mod params;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod serve;

use crate::CliError;
use nlb_core::config::Config;
use std::path::Path;

/// Reads and validates a configuration file, with errors that name the file and line.
/// Secure by default: a cluster without a key must say `insecure_no_key = true`.
pub(crate) fn load_config(path: &Path) -> Result<Config, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::bad_input(format!(
            "cannot read the configuration {}: {err}. Check the path given with --config",
            path.display()
        ))
    })?;
    Config::parse_secure(&text, &path.display().to_string())
        .map_err(|err| CliError::bad_input(err.to_string()))
}
