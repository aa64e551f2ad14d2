//! One endpoint as a config-file table, named as in Prometheus's
//! `remote_write` configuration, shared by the exporter's
//! `[[remote_write]]` and the receiver's `[[forward]]` tables:
//!
//! ```toml
//! [[remote_write]]
//! url = "https://mimir.example/api/v1/push"
//! basic_auth = { username = "fleet", password_file = "/etc/dcmon/mimir-password" }
//! tls_config = { ca_file = "/etc/dcmon/mimir-ca.pem" }
//! protobuf_message = "v1"
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use crate::endpoint::{EndpointAuth, EndpointConfig};
use crate::message::ProtobufMessage;
use crate::tls::TlsOptions;

/// One endpoint table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpoint {
    /// The remote-write URL.
    pub url: String,
    /// File holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth.
    pub basic_auth: Option<FileBasicAuth>,
    /// `v1`, `v2` or `auto` (the default).
    #[serde(default)]
    pub protobuf_message: ProtobufMessage,
    /// TLS settings for an `https://` URL; the system's roots without.
    #[serde(default)]
    pub tls_config: Option<FileTls>,
}

/// `basic_auth` of an endpoint table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBasicAuth {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

/// `tls_config` of an endpoint table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// CA certificates (PEM) the server's chain must lead to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

impl FileEndpoint {
    /// The endpoint the table describes; `section` names the table kind in
    /// errors (`remote_write`, `forward`).
    pub fn endpoint_config(&self, section: &str) -> Result<EndpointConfig, String> {
        let auth = match (&self.bearer_token_file, &self.basic_auth) {
            (None, None) => EndpointAuth::None,
            (Some(file), None) => EndpointAuth::Bearer(file.clone()),
            (None, Some(basic)) => EndpointAuth::Basic {
                username: basic.username.clone(),
                password_file: basic.password_file.clone(),
            },
            (Some(_), Some(_)) => {
                return Err(format!(
                    "[[{section}]] {}: bearer_token_file and basic_auth exclude each other",
                    self.url
                ));
            }
        };
        let mut config = EndpointConfig::new(self.url.clone(), auth)
            .with_protobuf_message(self.protobuf_message);
        if let Some(tls) = &self.tls_config {
            let options = TlsOptions {
                ca_file: tls.ca_file.clone(),
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
            };
            let built = options
                .client_config()
                .map_err(|err| format!("[[{section}]] {}: tls_config: {err}", self.url))?;
            config = config.with_tls(Arc::new(built));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table, written as JSON: serde sees the same shape as in TOML.
    fn table(text: &str) -> Result<FileEndpoint, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_kinds_exclude_each_other_and_name_the_section() {
        let both = table(
            r#"{"url": "http://a/w", "bearer_token_file": "/t",
                "basic_auth": {"username": "u", "password_file": "/p"}}"#,
        )
        .unwrap();
        let err = both.endpoint_config("forward").unwrap_err();
        assert!(err.contains("[[forward]] http://a/w"), "{err}");
        let basic = table(
            r#"{"url": "http://a/w", "basic_auth": {"username": "u", "password_file": "/p"},
                "protobuf_message": "v1"}"#,
        )
        .unwrap()
        .endpoint_config("forward")
        .unwrap();
        assert!(matches!(basic.auth, EndpointAuth::Basic { ref username, .. } if username == "u"));
        assert_eq!(basic.protobuf_message, ProtobufMessage::V1);
    }

    #[test]
    fn unknown_keys_and_a_bad_ca_file_are_refused() {
        assert!(table(r#"{"url": "http://a/w", "bearer_token": "x"}"#).is_err());
        let bad_ca =
            table(r#"{"url": "https://a/w", "tls_config": {"ca_file": "/nonexistent.pem"}}"#)
                .unwrap();
        let err = bad_ca.endpoint_config("forward").unwrap_err();
        assert!(
            err.contains("tls_config") && err.contains("/nonexistent.pem"),
            "{err}"
        );
    }
}
