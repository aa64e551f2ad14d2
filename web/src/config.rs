//! The web configuration file as written: exporter-toolkit's YAML schema
//! (`tls_server_config`, `http_server_config`, `basic_auth_users`), parsed
//! and checked without touching any file it names. Building the TLS
//! configuration from those files is [`crate::tls`]'s job.
//!
//! Every struct refuses keys it does not know, so a misspelt option is an
//! error naming the key rather than a silently open server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    /// TLS for the listener; plain HTTP when absent.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP options.
    #[serde(default)]
    pub http_server_config: Option<HttpServerConfig>,
    /// User name → bcrypt hash of the password.
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, String>>,
    /// Paths served without basic auth (health checks).
    #[serde(default)]
    pub basic_auth_excluded_paths: Option<Vec<String>>,
}

/// `tls_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// The server's certificate chain as PEM text, instead of `cert_file`.
    #[serde(default)]
    pub cert: Option<String>,
    /// The server's private key as PEM text, instead of `key_file`.
    #[serde(default)]
    pub key: Option<String>,
    /// Client CA certificates as PEM text, instead of `client_ca_file`.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// The server's certificate chain (PEM), leaf first.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Whether and how client certificates are asked for.
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    /// CAs that client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Subject alternative names (DNS names, IP addresses) of which a
    /// client certificate must carry one.
    #[serde(default)]
    pub client_allowed_sans: Option<Vec<String>>,
    /// Lowest TLS version accepted (default TLS12).
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version accepted (default TLS13).
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
    /// TLS 1.2 cipher suites, by their IANA (Go) names; TLS 1.3's are
    /// always on, as in Go.
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
    /// Whether the server's suite order wins over the client's.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Key-exchange groups in order of preference, by Go's names.
    #[serde(default)]
    pub curve_preferences: Option<Vec<String>>,
}

/// exporter-toolkit's names for Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified.
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when one is sent.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Whether a certificate the client sends is checked against
    /// `client_ca_file`, so that it proves who the client is.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// TLS protocol versions as exporter-toolkit names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0: refused, rustls does not implement it.
    TLS10,
    /// TLS 1.1: refused, rustls does not implement it.
    TLS11,
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

/// `http_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; both servers speak HTTP/1.1 only.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Headers added to every response.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// The response headers exporter-toolkit lets a web config set.
pub const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Why a web configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or one it names) could not be read.
    #[error("web config {config}: reading {file}: {source}")]
    Read {
        /// The web config file.
        config: PathBuf,
        /// The file that could not be read.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of this schema, or a value is refused.
    #[error("web config {config}: {message}")]
    Invalid {
        /// The web config file.
        config: PathBuf,
        /// What is wrong, naming the key or file.
        message: String,
    },
}

impl WebConfigFile {
    /// Parses a file's text. An empty file is an empty configuration (plain
    /// HTTP, no authentication), as in exporter-toolkit.
    pub fn parse(text: &str, config: &Path) -> Result<Self, WebConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let parsed: Option<Self> =
            serde_yaml_ng::from_str(text).map_err(|err| WebConfigError::Invalid {
                config: config.to_owned(),
                message: err.to_string(),
            })?;
        let parsed = parsed.unwrap_or_default();
        parsed.check(config)?;
        Ok(parsed)
    }

    /// The checks that need no file: versions, headers, hashes.
    fn check(&self, config: &Path) -> Result<(), WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid {
            config: config.to_owned(),
            message,
        };
        if let Some(tls) = &self.tls_server_config {
            for (key, version) in [
                ("min_version", tls.min_version),
                ("max_version", tls.max_version),
            ] {
                if let Some(v @ (TlsVersion::TLS10 | TlsVersion::TLS11)) = version {
                    return Err(invalid(format!(
                        "tls_server_config.{key}: {v:?} is not supported (TLS 1.2 is the oldest version this server speaks); use TLS12 or TLS13"
                    )));
                }
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version)
                && min > max
            {
                return Err(invalid(format!(
                    "tls_server_config: min_version {min:?} is above max_version {max:?}"
                )));
            }
            if let Some(sans) = &tls.client_allowed_sans {
                if !matches!(
                    tls.client_auth_type,
                    ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
                ) {
                    return Err(invalid(format!(
                        "tls_server_config.client_allowed_sans needs client_auth_type \
                         RequireAnyClientCert or RequireAndVerifyClientCert, not {:?}",
                        tls.client_auth_type
                    )));
                }
                if let Some(san) = sans.iter().find(|s| s.contains('@') || s.contains("://")) {
                    return Err(invalid(format!(
                        "tls_server_config.client_allowed_sans: {san:?}: only DNS names and IP \
                         addresses are supported, not e-mail addresses or URIs"
                    )));
                }
            }
            if tls.client_auth_type.verifies()
                && tls.client_ca_file.is_none()
                && tls.client_ca.is_none()
            {
                return Err(invalid(format!(
                    "tls_server_config.client_auth_type {:?} needs client_ca_file",
                    tls.client_auth_type
                )));
            }
            for (inline, file) in [
                ("cert", tls.cert.is_some() && tls.cert_file.is_some()),
                ("key", tls.key.is_some() && tls.key_file.is_some()),
                (
                    "client_ca",
                    tls.client_ca.is_some() && tls.client_ca_file.is_some(),
                ),
            ] {
                if file {
                    return Err(invalid(format!(
                        "tls_server_config: {inline} and {inline}_file are both set; keep one"
                    )));
                }
            }
        }
        if let Some(headers) = self
            .http_server_config
            .as_ref()
            .and_then(|h| h.headers.as_ref())
        {
            for (name, value) in headers {
                check_header(name, value).map_err(|message| {
                    invalid(format!("http_server_config.headers.{name}: {message}"))
                })?;
            }
        }
        for (user, hash) in self.basic_auth_users.iter().flatten() {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (a plaintext password?); \
                     make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
                )));
            }
        }
        Ok(())
    }
}

/// Whether a header may be set, and to this value (exporter-toolkit's rules).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "not a header a web config may set (allowed: {})",
            ALLOWED_HEADERS.join(", ")
        ));
    }
    let allowed: &[&str] = if name.eq_ignore_ascii_case("X-Frame-Options") {
        &["deny", "sameorigin"]
    } else if name.eq_ignore_ascii_case("X-Content-Type-Options") {
        &["nosniff"]
    } else {
        &[]
    };
    if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        return Err(format!("{value:?} is not one of {allowed:?}"));
    }
    Ok(())
}

/// A path from the config, relative ones taken from the config's directory
/// as exporter-toolkit does.
pub fn resolve(config: &Path, file: &Path) -> PathBuf {
    match config.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfigFile, String> {
        WebConfigFile::parse(text, Path::new("/etc/web.yml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_parses() {
        // The example in exporter-toolkit's web configuration documentation.
        let config = parse(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n  \
             bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m\n",
        )
        .unwrap();
        let tls = config.tls_server_config.unwrap();
        assert_eq!(tls.cert_file.unwrap(), Path::new("server.crt"));
        assert_eq!(config.basic_auth_users.unwrap().len(), 2);
    }

    #[test]
    fn the_toolkit_sample_file_parses() {
        // exporter-toolkit's docs/web-config.yml, comments included.
        let config = parse(
            "# TLS and basic authentication configuration example.\n#\n\
             tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\n\
             # Usernames and passwords required to connect.\n\
             basic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n  \
             bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m\n\n\
             # Exclude /-/healthy and /-/ready from basic authentication\n\
             basic_auth_excluded_paths:\n- /-/healthy\n- /-/ready\n",
        )
        .unwrap();
        assert_eq!(config.basic_auth_excluded_paths.unwrap().len(), 2);
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        assert!(parse("").unwrap().tls_server_config.is_none());
        assert!(parse("# nothing\n").unwrap().basic_auth_users.is_none());
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = parse("tls_server_config:\n  cert_fille: a.crt\n").unwrap_err();
        assert!(err.contains("cert_fille"), "{err}");
        let err = parse("basic_auth:\n  a: b\n").unwrap_err();
        assert!(err.contains("basic_auth"), "{err}");
    }

    #[test]
    fn tls_1_0_and_1_1_are_refused() {
        for v in ["TLS10", "TLS11"] {
            let err = parse(&format!("tls_server_config:\n  min_version: {v}\n")).unwrap_err();
            assert!(err.contains("min_version") && err.contains(v), "{err}");
        }
        let err = parse("tls_server_config:\n  min_version: TLS14\n").unwrap_err();
        assert!(err.contains("TLS14"), "{err}");
        let err =
            parse("tls_server_config:\n  min_version: TLS13\n  max_version: TLS12\n").unwrap_err();
        assert!(err.contains("above"), "{err}");
    }

    #[test]
    fn a_plaintext_password_is_refused() {
        let err = parse("basic_auth_users:\n  alice: hunter2\n").unwrap_err();
        assert!(
            err.contains("basic_auth_users.alice") && err.contains("bcrypt"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "the password must not be echoed: {err}"
        );
    }

    #[test]
    fn only_toolkit_headers_with_valid_values() {
        parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n").unwrap();
        let err =
            parse("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").unwrap_err();
        assert!(err.contains("X-Frame-Options"), "{err}");
        let err = parse("http_server_config:\n  headers:\n    Server: me\n").unwrap_err();
        assert!(err.contains("headers.Server"), "{err}");
    }

    #[test]
    fn inline_and_file_forms_of_one_item_are_exclusive() {
        let err = parse("tls_server_config:\n  cert: x\n  cert_file: a.crt\n").unwrap_err();
        assert!(err.contains("cert and cert_file"), "{err}");
    }

    #[test]
    fn allowed_sans_need_a_required_certificate_and_name_hosts_only() {
        parse("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a.example, 10.0.0.1]\n")
            .unwrap();
        let err = parse("tls_server_config:\n  client_allowed_sans: [a.example]\n").unwrap_err();
        assert!(err.contains("client_allowed_sans needs"), "{err}");
        let err = parse(
            "tls_server_config:\n  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [ops@example.org]\n",
        )
        .unwrap_err();
        assert!(err.contains("ops@example.org"), "{err}");
    }

    #[test]
    fn verifying_client_certs_needs_a_ca() {
        let err = parse("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n")
            .unwrap_err();
        assert!(err.contains("client_ca_file"), "{err}");
        let err = parse("tls_server_config:\n  client_auth_type: Sometimes\n").unwrap_err();
        assert!(err.contains("Sometimes"), "{err}");
    }

    #[test]
    fn relative_files_are_beside_the_config() {
        let config = Path::new("/etc/dcmon/web.yml");
        assert_eq!(
            resolve(config, Path::new("tls/a.crt")),
            Path::new("/etc/dcmon/tls/a.crt")
        );
        assert_eq!(
            resolve(config, Path::new("/x/a.crt")),
            Path::new("/x/a.crt")
        );
    }
}
