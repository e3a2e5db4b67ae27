//! One module per subcommand. Each has an `Args` (its clap definition) and a `run`.

pub(crate) mod ip2mac;
