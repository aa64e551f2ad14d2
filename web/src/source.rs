//! The web configuration in force, re-read when it changes: the config
//! file and every file it names are stat'ed on each new connection, and a
//! change (modification time, size or inode: a rename over the file counts)
//! rebuilds everything, so a renewed certificate or a new user needs no
//! restart. A change that does not load is logged once and the previous
//! configuration stays in force; at start, an error stops the program.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue};

use crate::basic_auth::BasicAuthUsers;
use crate::config::{WebConfigError, WebConfigFile};
use crate::tls::{self, ServerTls};

/// A loaded, usable web configuration.
#[derive(Debug, Default)]
pub struct WebConfig {
    /// TLS for the listener; plain HTTP when `None`.
    pub tls: Option<ServerTls>,
    /// Basic-auth users; empty when basic auth is off.
    pub users: BasicAuthUsers,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Paths the exporter serves without basic auth.
    pub basic_auth_excluded_paths: Vec<String>,
}

impl WebConfig {
    /// Reads and checks `path` and every file it names.
    pub fn load(path: &Path) -> Result<(Self, Vec<PathBuf>), WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            config: path.to_owned(),
            file: path.to_owned(),
            source,
        })?;
        let file = WebConfigFile::parse(&text, path)?;
        let mut files = vec![path.to_owned()];
        let tls = match &file.tls_server_config {
            Some(config) => {
                files.extend(tls::files(config, path));
                tls::build(config, path)?
            }
            None => None,
        };
        let mut headers = Vec::new();
        for (name, value) in file
            .http_server_config
            .as_ref()
            .and_then(|h| h.headers.clone())
            .into_iter()
            .flatten()
        {
            let parsed = HeaderName::try_from(name.as_str())
                .ok()
                .zip(HeaderValue::try_from(value.as_str()).ok())
                .ok_or_else(|| WebConfigError::Invalid {
                    config: path.to_owned(),
                    message: format!("http_server_config.headers.{name}: not a valid header"),
                })?;
            headers.push(parsed);
        }
        let users = BasicAuthUsers::new(file.basic_auth_users.clone().unwrap_or_default());
        Ok((
            WebConfig {
                tls,
                users,
                headers,
                basic_auth_excluded_paths: file.basic_auth_excluded_paths.unwrap_or_default(),
            },
            files,
        ))
    }

    /// `https` or `http`, for logs.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// What a file looked like when last read.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn stamps(files: &[PathBuf]) -> Vec<(PathBuf, Stamp)> {
    files.iter().map(|f| (f.clone(), stamp(f))).collect()
}

#[derive(Debug)]
struct State {
    current: Arc<WebConfig>,
    /// What the files looked like when `current` (or a failed reload,
    /// already logged) was read.
    seen: Vec<(PathBuf, Stamp)>,
}

/// The web configuration of a program, from `--web.config.file`.
#[derive(Debug)]
pub struct WebConfigSource {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl WebConfigSource {
    /// Loads `path` (no file: plain HTTP, no authentication). Errors name
    /// the key or file at fault.
    pub fn load(path: Option<&Path>) -> Result<Self, WebConfigError> {
        let (config, files) = match path {
            Some(path) => WebConfig::load(path)?,
            None => (WebConfig::default(), Vec::new()),
        };
        Ok(Self {
            path: path.map(Path::to_owned),
            state: Mutex::new(State {
                current: Arc::new(config),
                seen: stamps(&files),
            }),
        })
    }

    /// Whether a web config file was given.
    pub fn is_configured(&self) -> bool {
        self.path.is_some()
    }

    /// The configuration in force, re-read first if any of its files
    /// changed since it was last read.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &self.path else {
            return Arc::clone(&state.current);
        };
        let changed = state.seen.iter().any(|(file, seen)| stamp(file) != *seen);
        if changed {
            match WebConfig::load(path) {
                Ok((config, files)) => {
                    tracing::info!(
                        path = %path.display(),
                        scheme = config.scheme(),
                        fingerprint = config.tls.as_ref().map(|t| t.fingerprint.as_str()),
                        "web config re-read"
                    );
                    state.current = Arc::new(config);
                    state.seen = stamps(&files);
                }
                Err(err) => {
                    tracing::error!(
                        error = %err,
                        "the changed web config does not load; keeping the previous one"
                    );
                    // Not retried (nor logged again) until a file changes.
                    state.seen = state
                        .seen
                        .iter()
                        .map(|(f, _)| (f.clone(), stamp(f)))
                        .collect();
                }
            }
        }
        Arc::clone(&state.current)
    }
}
