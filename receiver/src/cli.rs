//! Command-line flags, spelled the Prometheus way.

use std::path::PathBuf;

use clap::Parser;
use dcmon_protocol::logging::{LogFormat, parse_level};

/// dcmon-receiver: remote-write ingest, storage, PromQL API and command queue.
#[derive(Debug, Parser)]
#[command(name = "dcmon-receiver", version)]
pub struct Cli {
    /// Address to listen on (`:9871` listens on every address).
    #[arg(long = "web.listen-address", default_value = ":9871")]
    pub listen_address: String,

    /// File holding the admin token. Created with a random 256-bit token
    /// (mode 0600) when missing.
    #[arg(long = "admin-token-file", default_value = "./data/admin-token")]
    pub admin_token_file: PathBuf,

    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = parse_level)]
    pub log_level: String,

    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
