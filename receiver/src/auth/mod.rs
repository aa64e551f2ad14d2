//! Who is calling, and what they may do. Every request must carry
//! `Authorization: Bearer <token>`; the token is resolved to a [`Principal`]
//! before any handler runs (401 otherwise), and each route group states the
//! [`Access`] it needs (403 when the principal lacks it).
//!
//! Principals: the admin (token in a 0600 file, full rights), scoped
//! tokens created by the admin (`read` for Grafana, `write` for a stock
//! Prometheus), stored only as SHA-256 hashes, and enrolled hosts, which
//! sign a short-lived RS256 JWT per request, each used once.
//!
//! The scheme is matched without regard to case (`bearer` works too, as RFC
//! 9110 §11.1 requires).
//!
//! The web configuration (`--web.config.file`) adds two ways in, both with
//! the `read` scope only (Grafana, a browser, a federating Prometheus):
//! `Authorization: Basic` for one of its `basic_auth_users`, and, on a
//! request without an `Authorization` header, a client certificate that
//! TLS verified against its `client_ca_file`. Unlike exporter-toolkit,
//! basic auth does not gate every request here: bearer tokens and host
//! JWTs keep working beside it, and host JWTs remain the only way a host
//! writes.

pub mod admin;
pub mod clients;
pub mod failure_log;
pub mod jwt;
pub mod replay;
pub mod scoped;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dcmon_web::WebConfigSource;
use dcmon_web::basic_auth;
use subtle::ConstantTimeEq;

pub use self::admin::{TokenFileError, load_or_create_admin_token};
pub use self::clients::ClientStore;
use self::failure_log::FailureLog;
use self::replay::{ReplayGuard, ReplayRefusal};
pub use self::scoped::{Scope, TokenStore};
use crate::error::{ApiError, ErrorKind, OrInternal};
use crate::serve::ClientCertificate;

/// The authenticated caller of a request, stored in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holder of the admin token: every right.
    Admin,
    /// Holder of a scoped token.
    Token {
        /// The token's name, for logs and audit.
        name: String,
        /// What it may do.
        scope: Scope,
    },
    /// A caller let in by the web configuration: `user:<name>` for a
    /// basic-auth user, `cert:<SHA-256>` for a verified client
    /// certificate. Read scope.
    Web {
        /// Who, for logs and audit.
        name: String,
    },
    /// An enrolled host, authenticated by its JWT.
    Client {
        /// Client id.
        id: String,
        /// Its host name: the `instance` of everything it writes.
        instance: String,
    },
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated caller (`/health`).
    Any,
    /// Reading: the query API, `/metrics` and the API's OpenAPI document.
    Read,
    /// Writing samples: `/api/v1/write`.
    Write,
    /// A host's own command endpoints (poll, result).
    Host,
    /// Everything else: the dcmon API.
    Admin,
}

impl Principal {
    /// Whether this principal may use a route requiring `access`.
    pub fn may(&self, access: Access) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Token { scope, .. } => match access {
                Access::Any => true,
                Access::Read => *scope == Scope::Read,
                Access::Write => *scope == Scope::Write,
                Access::Host | Access::Admin => false,
            },
            Principal::Web { .. } => matches!(access, Access::Any | Access::Read),
            // Hosts write their own samples; they never read the fleet's.
            Principal::Client { .. } => {
                matches!(access, Access::Any | Access::Write | Access::Host)
            }
        }
    }
}

/// Why a request's credential was not accepted.
#[derive(Debug)]
pub enum AuthFailure {
    /// Refused (401), or the lookup failed (500).
    Api(ApiError),
    /// A valid host token that cannot be remembered now (see
    /// [`replay`]): 503, and the host retries shortly with a fresh token.
    Busy(ReplayRefusal),
}

impl From<ApiError> for AuthFailure {
    fn from(err: ApiError) -> Self {
        AuthFailure::Api(err)
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        match self {
            AuthFailure::Api(err) => err.into_response(),
            AuthFailure::Busy(refusal) => {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                let body = serde_json::json!({
                    "status": "error",
                    "errorType": "unavailable",
                    "error": refusal.to_string(),
                });
                let mut response = (status, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// Resolves bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: Arc<str>,
    tokens: Option<Arc<TokenStore>>,
    clients: Option<Arc<ClientStore>>,
    replay: Arc<ReplayGuard>,
    failures: Arc<FailureLog>,
    web: Option<Arc<WebConfigSource>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { admin_token: <redacted> }")
    }
}

impl Authenticator {
    /// Checks tokens against `admin_token` only.
    pub fn new(admin_token: impl Into<Arc<str>>) -> Self {
        Self {
            admin_token: admin_token.into(),
            tokens: None,
            clients: None,
            replay: Arc::default(),
            failures: Arc::default(),
            web: None,
        }
    }

    /// Also accepts the basic-auth users of the web configuration, and
    /// the client certificates its TLS verified (read scope).
    pub fn with_web_config(mut self, web: Arc<WebConfigSource>) -> Self {
        self.web = Some(web);
        self
    }

    /// The principal of a request without a bearer token: a basic-auth
    /// user of the web config, else a verified client certificate.
    fn web_principal(
        &self,
        authorization: Option<&str>,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Principal, ApiError> {
        let refused = |msg: &str| ApiError::new(ErrorKind::Unauthorized, msg.to_owned());
        let web = self.web.as_ref().map(|w| w.current());
        match authorization {
            Some(value) if basic_auth::basic_credentials(value).is_some() => {
                let user = web
                    .filter(|w| !w.users.is_empty())
                    .and_then(|w| w.users.verify_header(value))
                    .ok_or_else(|| refused("invalid user name or password"))?;
                Ok(Principal::Web {
                    name: format!("user:{user}"),
                })
            }
            Some(_) => Err(refused("missing 'Authorization: Bearer <token>' header")),
            None => match certificate {
                Some(cert) if web.is_some() => Ok(Principal::Web {
                    name: format!("cert:{}", cert.fingerprint),
                }),
                _ => Err(refused("missing 'Authorization: Bearer <token>' header")),
            },
        }
    }

    /// Also accepts the scoped tokens of `tokens`.
    pub fn with_tokens(mut self, tokens: Arc<TokenStore>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Also accepts JWTs signed by the clients of `clients`.
    pub fn with_clients(mut self, clients: Arc<ClientStore>) -> Self {
        self.clients = Some(clients);
        self
    }

    /// Resolves a bearer token: the admin token (compared in constant
    /// time), a client JWT, else a scoped token that is not revoked.
    pub fn principal(&self, token: &str) -> Result<Option<Principal>, AuthFailure> {
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            return Ok(Some(Principal::Admin));
        }
        if let Some(clients) = &self.clients
            && jwt::looks_like_jwt(token)
        {
            let now = crate::storage::now_ms() / 1000;
            return match jwt::verify(token, clients, &self.replay, now) {
                Ok(client) => Ok(Some(Principal::Client {
                    id: client.id,
                    instance: client.instance,
                })),
                Err(jwt::JwtError::Store(err)) => {
                    Err(
                        ApiError::internal("client lookup failed", "client lookup failed", err)
                            .into(),
                    )
                }
                Err(err) => {
                    // Every quoted part of `err` is already cut short.
                    self.failures.client_token_refused(err.reason(), &err);
                    Err(match err {
                        jwt::JwtError::Replay(
                            refusal @ (ReplayRefusal::Full | ReplayRefusal::ClientBusy),
                        ) => AuthFailure::Busy(refusal),
                        err => ApiError::new(ErrorKind::Unauthorized, err.to_string()).into(),
                    })
                }
            };
        }
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let found = tokens
            .lookup(token)
            .or_internal("token lookup failed", "token lookup failed")?;
        Ok(found.map(|(name, scope)| Principal::Token { name, scope }))
    }
}

/// The credentials of an `Authorization` value of the `Bearer` scheme, in
/// any case.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Rejects any request without a valid bearer token (401), otherwise
/// records the [`Principal`] for the handlers.
pub async fn require_principal(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Result<Response, AuthFailure> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match authorization.and_then(bearer_credentials) {
        Some(token) => auth
            .principal(token)?
            .ok_or_else(|| ApiError::new(ErrorKind::Unauthorized, "invalid or revoked token"))?,
        None => auth.web_principal(authorization, request.extensions().get())?,
    };
    if let (Principal::Client { id, .. }, Some(clients)) = (&principal, &auth.clients) {
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.to_string());
        // `dcmon-exporter/<version>`: the registry shows what each host runs.
        let version = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.strip_prefix("dcmon-exporter/"))
            .map(|v| v.chars().take(64).collect());
        clients.record_activity(id, address, version);
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Refuses (403) a principal that lacks the route group's access.
pub async fn require_access(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allowed = request
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.may(access));
    if !allowed {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "this token's scope does not allow {} access",
                format!("{access:?}").to_lowercase()
            ),
        ));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_admin() {
        let auth = Authenticator::new("a".repeat(64));
        assert_eq!(
            auth.principal(&"a".repeat(64)).unwrap(),
            Some(Principal::Admin)
        );
        assert_eq!(auth.principal(&"a".repeat(63)).unwrap(), None);
        assert_eq!(auth.principal("").unwrap(), None);
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc "] {
            assert_eq!(bearer_credentials(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearerabc", "abc", "Bearer"] {
            assert_eq!(bearer_credentials(value), None, "{value}");
        }
    }

    #[test]
    fn a_full_replay_memory_answers_503_with_retry_after() {
        for refusal in [ReplayRefusal::Full, ReplayRefusal::ClientBusy] {
            let response = AuthFailure::Busy(refusal).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }

    #[test]
    fn scopes_grant_only_their_routes() {
        let read = Principal::Token {
            name: "grafana".into(),
            scope: Scope::Read,
        };
        let write = Principal::Token {
            name: "prom".into(),
            scope: Scope::Write,
        };
        assert!(read.may(Access::Read) && read.may(Access::Any));
        assert!(!read.may(Access::Write) && !read.may(Access::Admin));
        assert!(write.may(Access::Write) && !write.may(Access::Read) && !write.may(Access::Admin));
        assert!(Principal::Admin.may(Access::Admin));
        let host = Principal::Client {
            id: "c1".into(),
            instance: "gpu-01".into(),
        };
        assert!(host.may(Access::Write) && host.may(Access::Any));
        assert!(host.may(Access::Host));
        assert!(!host.may(Access::Read) && !host.may(Access::Admin));
        assert!(!read.may(Access::Host) && !write.may(Access::Host));
        // Web-config users and verified client certificates only read.
        let web = Principal::Web {
            name: "user:grafana".into(),
        };
        assert!(web.may(Access::Read) && web.may(Access::Any));
        assert!(!web.may(Access::Write) && !web.may(Access::Host) && !web.may(Access::Admin));
    }
}
