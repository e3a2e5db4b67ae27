//! `nlb keygen [--out FILE] [--force] [--json]`: a new cluster key file.
//!
//! 32 random bytes from the kernel, written as 64 hex digits and a newline, in a file
//! created with mode 0600 (see [`crate::keyfile`] for the format and how it is written
//! atomically). An existing file is kept unless `--force`: every host of a cluster needs
//! the same key, so a new one means copying it everywhere again.

use crate::CliError;
use crate::keyfile;
use std::path::PathBuf;

/// Where the key goes when `--out` is not given.
pub(crate) const DEFAULT_KEY_FILE: &str = "/etc/nlb/cluster.key";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key file to create.
    #[arg(long, default_value = DEFAULT_KEY_FILE)]
    out: PathBuf,
    /// Replace the file if it exists (then copy the new key to every host).
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text (the key itself is never printed).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let secret = keyfile::random_secret().map_err(|err| {
        CliError::failed(format!(
            "cannot read random bytes from /dev/urandom: {err}; is /dev mounted?"
        ))
    })?;
    keyfile::write_new(&args.out, &secret, args.force)?;
    let path = args.out.display();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "path": args.out,
                "bytes": keyfile::KEY_BYTES,
                "encoding": "hex",
                "mode": "0600",
            })
        );
    } else {
        println!(
            "wrote a new cluster key to {path} ({} random bytes as hex, mode 0600).\n\
             Copy it to every host of the cluster (same contents, mode 0600, owned by root) \
             and set in [cluster]:\n    key_file = \"{path}\"",
            keyfile::KEY_BYTES
        );
    }
    Ok(())
}
