//! Shell completions and man pages, generated from the CLI definition so that they never
//! drift from it.

use crate::CliError;
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Write one page per command into this directory (nlb.1, nlb-run.1, ...) instead of
    /// printing nlb.1.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// `nlb completions <shell>`: the completion script on stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<(), CliError> {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "nlb", &mut std::io::stdout());
    Ok(())
}

/// `nlb man [--out-dir DIR]`: the man pages.
pub(crate) fn man(args: &ManArgs) -> Result<(), CliError> {
    let command = crate::Cli::command();
    let write_error =
        |err: std::io::Error| CliError::failed(format!("cannot write the man page: {err}"));
    match &args.out_dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(write_error),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(write_error)?;
            clap_mangen::generate_to(command, dir).map_err(write_error)
        }
    }
}
