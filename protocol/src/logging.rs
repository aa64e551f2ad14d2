//! `--log.level` / `--log.format`, as Prometheus components spell them, for
//! both programs: logfmt (the default) or JSON lines on stderr.

use std::str::FromStr;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `ts=… level=info msg="…" key=value`, as Prometheus logs.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logfmt" => Ok(Self::Logfmt),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (use logfmt or json)")),
        }
    }
}

/// Checks a `--log.level` value (`debug`, `info`, `warn`, `error`).
pub fn parse_level(s: &str) -> Result<String, String> {
    match s {
        "debug" | "info" | "warn" | "error" => Ok(s.to_owned()),
        other => Err(format!(
            "unknown log level {other:?} (use debug, info, warn or error)"
        )),
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, refines the level.
pub fn init(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}
