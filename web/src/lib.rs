//! The web configuration both dcmon servers read with
//! `--web.config.file`, in the format and with the meaning of Prometheus's
//! exporter-toolkit: TLS (`tls_server_config`), response headers
//! (`http_server_config`) and basic-auth users (`basic_auth_users`).
//!
//! [`config`] parses the YAML, [`tls`] builds the rustls configuration
//! from the files it names, [`basic_auth`] checks credentials,
//! [`source`] keeps the configuration in force and re-reads it when a
//! file changes, [`listener`] accepts connections under it and [`gate`]
//! applies it to requests.
#![deny(missing_docs)]

pub mod basic_auth;
pub mod config;
pub mod gate;
pub mod listener;
pub mod source;
pub mod tls;

use sha2::{Digest, Sha256};

pub use config::WebConfigError;
pub use source::{WebConfig, WebConfigSource};

/// Makes `ring` the process's rustls provider. Anything that builds a TLS
/// client without naming a provider (reqwest does) needs one installed;
/// a second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// SHA-256 of a DER certificate, as `openssl x509 -noout -fingerprint
/// -sha256` prints it (upper-case hex pairs joined by colons).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
