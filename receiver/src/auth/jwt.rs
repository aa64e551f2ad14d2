//! Verifies the short-lived JWTs enrolled hosts sign for every request.
//!
//! The algorithm is pinned to RS256 before anything else is read: a token
//! claiming `none` or an HMAC algorithm (keyed, in the classic attack, with
//! the client's public key) is refused without a key lookup. The unverified
//! `sub` only selects which stored key to verify with; nothing else from an
//! unverified token is trusted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcmon_protocol::identity::{Claims, JWT_LEEWAY_SECS, JWT_MAX_LIFETIME_SECS};
use jsonwebtoken::{Algorithm, Validation};

use super::clients::{ClientError, ClientStore};

/// Why a client token is refused. The text goes back to the caller in a
/// 401, so it names the problem without leaking anything.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT at all.
    #[error("malformed client token")]
    Malformed,
    /// Signed with something other than RS256.
    #[error("client token algorithm {0} is not accepted (RS256 only)")]
    Algorithm(String),
    /// `sub` names no active client.
    #[error("client {0:?} is unknown or revoked")]
    UnknownClient(String),
    /// Signature, audience or expiry check failed.
    #[error("client token rejected: {0}")]
    Invalid(String),
    /// `iat` in the future or lifetime too long.
    #[error("client token {0}")]
    BadLifetime(&'static str),
    /// Looking the client up failed.
    #[error(transparent)]
    Store(#[from] ClientError),
}

/// A verified client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClient {
    /// Client id.
    pub id: String,
    /// Host name, the `instance` of its samples.
    pub instance: String,
}

/// Whether a bearer credential has a JWT's shape (three dot-separated
/// parts); scoped and admin tokens never contain dots.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Verifies `token` against the stored key of the client it names, at
/// Unix time `now_secs`.
pub fn verify(
    token: &str,
    clients: &ClientStore,
    now_secs: i64,
) -> Result<VerifiedClient, JwtError> {
    // Read by hand: the library cannot even represent `none`.
    let algorithm = header_algorithm(token).ok_or(JwtError::Malformed)?;
    if algorithm != "RS256" {
        return Err(JwtError::Algorithm(algorithm));
    }
    let unverified: Claims =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| JwtError::Malformed)?;
    let client = clients
        .active(&unverified.sub)?
        .ok_or_else(|| JwtError::UnknownClient(unverified.sub.clone()))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[clients.audience()]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "aud"]);
    validation.leeway = JWT_LEEWAY_SECS as u64;
    let claims = jsonwebtoken::decode::<Claims>(token, &client.key, &validation)
        .map_err(|e| JwtError::Invalid(e.kind_text()))?
        .claims;
    if claims.iat > now_secs + JWT_LEEWAY_SECS {
        return Err(JwtError::BadLifetime("issued in the future"));
    }
    if claims.exp - claims.iat > JWT_MAX_LIFETIME_SECS {
        return Err(JwtError::BadLifetime("lives longer than 5 minutes"));
    }
    Ok(VerifiedClient {
        id: client.id,
        instance: client.hostname,
    })
}

/// The `alg` of a token's header.
fn header_algorithm(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let algorithm = header.get("alg")?.as_str()?;
    Some(algorithm.chars().take(16).collect())
}

/// Short, caller-safe names for the library's errors.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for jsonwebtoken::errors::Error {
    fn kind_text(&self) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::InvalidAudience => "wrong audience".into(),
            ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
            ErrorKind::InvalidAlgorithm => "algorithm mismatch".into(),
            _ => "invalid token".into(),
        }
    }
}
