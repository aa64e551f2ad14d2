//! `dcmon-exporter config show | check FILE`: the local counterpart of the
//! `config_update` command. `show` prints the runtime configuration kept in
//! the state directory (and whether it awaits confirmation); `check`
//! validates a runtime configuration or a fan policy file against this
//! host's duty floor with exactly the host's rules, naming the field at
//! fault, and changes nothing.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::cli::Cli;
use crate::fans::Policy;
use crate::runtime_config::{self, CURRENT_FILE, UNCONFIRMED_FILE};

/// `dcmon-exporter config …`
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCliAction {
    /// Prints the runtime configuration in force (TOML), its version and hash.
    Show,
    /// Checks a runtime configuration or fan policy file (TOML).
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs one action.
pub fn run(cli: &Cli, action: &ConfigCliAction) -> anyhow::Result<()> {
    let min_duty = cli.fans.min_duty;
    match action {
        ConfigCliAction::Show => {
            let path = cli.state_dir.join(CURRENT_FILE);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    println!(
                        "# no runtime configuration in {}: the flags and --fans.policy-file rule",
                        cli.state_dir.display()
                    );
                    return Ok(());
                }
                Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
            };
            let config = runtime_config::parse(&text, min_duty)
                .with_context(|| format!("{}", path.display()))?;
            println!(
                "# version {} hash {}",
                config.version,
                runtime_config::hash(&config)
            );
            if let Ok(pending) = std::fs::read_to_string(cli.state_dir.join(UNCONFIRMED_FILE)) {
                println!(
                    "# unconfirmed: rolls back unless confirmed ({})",
                    pending.trim().replace('\n', ", ")
                );
            }
            print!("{}", runtime_config::to_toml(&config));
            Ok(())
        }
        ConfigCliAction::Check { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            // A fan policy has zones at the top; a runtime configuration
            // holds its policy under `fan_policy`.
            let is_policy = text
                .parse::<toml::Table>()
                .map(|table| table.contains_key("zone"))
                .unwrap_or(false);
            if is_policy {
                let policy = Policy::parse(&text, min_duty)
                    .with_context(|| format!("{}", file.display()))?;
                println!(
                    "{}: fan policy {} (hash {}) is valid on this host (floor {min_duty}%)",
                    file.display(),
                    policy.doc.version,
                    policy.hash
                );
            } else {
                let config = runtime_config::parse(&text, min_duty)
                    .with_context(|| format!("{}", file.display()))?;
                println!(
                    "{}: runtime configuration {} (hash {}) is valid on this host (floor {min_duty}%)",
                    file.display(),
                    config.version,
                    runtime_config::hash(&config)
                );
            }
            Ok(())
        }
    }
}
