//! One remote-write endpoint: where it is, how requests are authorised, and
//! one HTTP attempt classified as delivered, refused for good, or worth
//! retrying (network errors, 5xx and 429, as Prometheus's remote-write
//! client decides), or, for a Remote-Write 2.0 request, not understood by
//! an endpoint that takes only 1.0.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dcmon_protocol::remote_write::{Version, headers};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use sha2::{Digest, Sha256};

use super::batch::Batch;
use super::message::ProtobufMessage;
use super::retry::parse_retry_after;

/// At most this much of an error response body is read and logged
/// (Prometheus's `maxErrMsgLen`).
const MAX_ERROR_BODY: usize = 1024;

/// Produces the `Authorization` header value for one request (called per request, so it may sign a fresh short-lived token).
pub trait RequestSigner: Send + Sync + std::fmt::Debug {
    /// The full header value, e.g. `Bearer <jwt>`.
    fn authorization(&self) -> anyhow::Result<String>;
}

/// How requests to an endpoint are authorised. Secrets are read from their
/// files on every request, so a rotated token is picked up without a
/// restart (as Prometheus does).
#[derive(Debug, Clone)]
pub enum EndpointAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <contents of the file, trimmed>`.
    Bearer(PathBuf),
    /// HTTP basic auth; the password is the file's contents, trimmed.
    Basic {
        /// User name.
        username: String,
        /// File holding the password.
        password_file: PathBuf,
    },
    /// A header value made per request by code, e.g. dcmon's per-host JWT.
    Signer(Arc<dyn RequestSigner>),
}

/// Where to ship and how to authenticate.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The remote-write URL, e.g. `https://receiver:8000/api/v1/write`.
    pub url: String,
    /// Authorisation of every request.
    pub auth: EndpointAuth,
    /// TLS client settings for `https://`; the system's roots when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Which protobuf message the endpoint is sent.
    pub protobuf_message: ProtobufMessage,
}

impl EndpointConfig {
    /// An endpoint at `url` with `auth`.
    pub fn new(url: impl Into<String>, auth: EndpointAuth) -> Self {
        Self {
            url: url.into(),
            auth,
            tls: None,
            protobuf_message: ProtobufMessage::default(),
        }
    }

    /// The same endpoint, sent `message`.
    pub fn with_protobuf_message(mut self, message: ProtobufMessage) -> Self {
        self.protobuf_message = message;
        self
    }

    /// The same endpoint, its server checked by `tls` (the enrolled
    /// receiver's pin).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A short, stable name for this endpoint's spool directory: the first
    /// 12 hex digits of the SHA-256 of its URL.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        dcmon_protocol::identity::hex(&digest[..6])
    }

    /// The URL without any `user:password@`, for logs and metric labels.
    pub fn display_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => self.url.clone(),
        }
    }
}

/// What one attempt to deliver a batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: stored.
    Delivered,
    /// A 4xx other than 429: the request can never succeed; drop it.
    Refused {
        /// The status.
        status: StatusCode,
        /// The start of the response body.
        body: String,
    },
    /// A Remote-Write 2.0 request the endpoint showed it does not take
    /// (a 415, or a 2xx without the samples-written header 2.0 requires),
    /// under `auto`: send it again as 1.0.
    NotUnderstood {
        /// What showed it, for the log.
        reason: String,
    },
    /// A network error, a 5xx or a 429: try again later.
    Retry {
        /// What went wrong, for the log.
        reason: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

/// A remote-write endpoint with its HTTP client.
#[derive(Debug, Clone)]
pub struct Endpoint {
    config: EndpointConfig,
    client: reqwest::Client,
}

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL does not parse or is not http(s).
    #[error("remote-write URL {url:?}: {msg}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        msg: String,
    },
    /// No TLS trust could be set up (no system roots).
    #[error("setting up TLS for {url}: {msg}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        msg: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("building the HTTP client for {url}: {source}")]
    Client {
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

impl Endpoint {
    /// Checks the URL and builds the client; `timeout` bounds one request,
    /// `user_agent` names the program. Without TLS settings of its own, an
    /// `https://` endpoint is checked against the system's roots.
    pub fn new(
        config: EndpointConfig,
        timeout: Duration,
        user_agent: &str,
    ) -> Result<Self, EndpointError> {
        let bad = |msg: String| EndpointError::BadUrl {
            url: config.url.clone(),
            msg,
        };
        let url = reqwest::Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported".into()));
        }
        let tls = match &config.tls {
            Some(tls) => rustls::ClientConfig::clone(tls),
            None => crate::tls::TlsOptions::default()
                .client_config()
                .map_err(|err| EndpointError::Tls {
                    url: config.display_url(),
                    msg: err.to_string(),
                })?,
        };
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|source| EndpointError::Client {
                url: config.display_url(),
                source,
            })?;
        Ok(Self { config, client })
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Sends `batch` once, in the message it holds, and classifies the
    /// answer.
    pub async fn send(&self, batch: &Batch) -> Attempt {
        let request = self
            .client
            .post(&self.config.url)
            .header(CONTENT_TYPE, batch.version.content_type())
            .header(CONTENT_ENCODING, headers::SNAPPY)
            .header(headers::VERSION, batch.version.version_header())
            .body(batch.body.clone());
        let request = match self.authorize(request) {
            Ok(request) => request,
            // A missing token file may appear later (provisioning races),
            // and a signer may recover: retry rather than drop.
            Err(err) => {
                return Attempt::Retry {
                    reason: format!("preparing credentials: {err:#}"),
                    retry_after: None,
                };
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Attempt::Retry {
                    reason: describe_error(&err),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let v2 = batch.version == Version::V2;
        let auto = self.config.protobuf_message == ProtobufMessage::Auto;
        if status.is_success() {
            // 2.0 makes the header mandatory; a 1.x receiver that ignored
            // the Content-Type decoded an empty 1.0 request and stored
            // nothing.
            if v2 && batch.samples > 0 && !response.headers().contains_key(headers::SAMPLES_WRITTEN)
            {
                let reason = format!(
                    "HTTP {status} without {} to a 2.0 request",
                    headers::SAMPLES_WRITTEN
                );
                if auto {
                    return Attempt::NotUnderstood { reason };
                }
                tracing::debug!(endpoint = %self.config, "{reason}; counted as delivered, as protobuf_message is v2");
            }
            return Attempt::Delivered;
        }
        if v2 && auto && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Attempt::NotUnderstood {
                reason: format!("HTTP {status}: {}", read_excerpt(response).await),
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_excerpt(response).await;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry {
                reason: format!("HTTP {status}: {body}"),
                retry_after,
            }
        } else {
            Attempt::Refused { status, body }
        }
    }

    /// Adds the `Authorization` header, with secrets read fresh for this
    /// request.
    fn authorize(&self, request: RequestBuilder) -> anyhow::Result<RequestBuilder> {
        use anyhow::Context;
        let read_secret = |path: &PathBuf| -> anyhow::Result<String> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(text.trim().to_owned())
        };
        Ok(match &self.config.auth {
            EndpointAuth::None => request,
            EndpointAuth::Bearer(path) => request.bearer_auth(read_secret(path)?),
            EndpointAuth::Basic {
                username,
                password_file,
            } => request.basic_auth(username, Some(read_secret(password_file)?)),
            EndpointAuth::Signer(signer) => request.header(AUTHORIZATION, signer.authorization()?),
        })
    }
}

/// reqwest's error with its causes ("error sending request: connection
/// refused"), which its `Display` alone leaves out.
pub fn describe_error(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The first [`MAX_ERROR_BODY`] bytes of a response body, as text.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).trim().to_owned()
}

impl fmt::Display for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_id_is_short_stable_and_differs_per_url() {
        let a = EndpointConfig::new("http://a:9871/api/v1/write", EndpointAuth::None);
        let b = EndpointConfig::new("http://b:9871/api/v1/write", EndpointAuth::None);
        assert_eq!(a.id().len(), 12);
        assert_eq!(a.id(), a.clone().id());
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn credentials_in_the_url_are_not_displayed() {
        let config =
            EndpointConfig::new("https://user:secret@mimir/api/v1/push", EndpointAuth::None);
        assert_eq!(config.display_url(), "https://mimir/api/v1/push");
    }

    #[test]
    fn https_endpoints_build_a_client() {
        let config = EndpointConfig::new(
            "https://receiver.example:8000/api/v1/write",
            EndpointAuth::None,
        );
        Endpoint::new(config, Duration::from_secs(5), "test").unwrap();
    }

    #[test]
    fn other_schemes_are_refused() {
        let config = EndpointConfig::new("ftp://x/y", EndpointAuth::None);
        let err = Endpoint::new(config, Duration::from_secs(5), "test").unwrap_err();
        assert!(err.to_string().contains("only http and https"), "{err}");
    }
}
