//! Verifies the short-lived JWTs enrolled hosts sign for every request.
//!
//! The algorithm is pinned to RS256 before anything else is read: a token
//! claiming `none` or an HMAC algorithm (keyed, in the classic attack, with
//! the client's public key) is refused without a key lookup, and so is a
//! token with a `crit` header, whose extensions the receiver does not
//! implement (RFC 7515 §4.1.11). The unverified `sub` only selects which
//! stored key to verify with; nothing else from an unverified token is
//! trusted. After the signature, the times are checked on the receiver's
//! clock (`iat`, `exp`, `nbf`, with [`JWT_LEEWAY_SECS`] of skew), and a
//! token is accepted once only (see [`super::replay`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcmon_protocol::identity::{JWT_LEEWAY_SECS, JWT_MAX_LIFETIME_SECS, is_client_id};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::clients::{ClientError, ClientStore};
use super::replay::{ReplayGuard, ReplayRefusal};
use dcmon_protocol::excerpt::excerpt;

/// Longest `jti` accepted (the exporter sends 32 hex digits).
pub const MAX_JTI_LEN: usize = 128;

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
    /// A `crit` header: extensions that must be understood, and are not.
    #[error("client token has critical header extensions (crit), which are not understood")]
    Critical,
    /// `sub` names no active client (quoted short).
    #[error("client {0:?} is unknown or revoked")]
    UnknownClient(String),
    /// Signature or audience check failed.
    #[error("client token rejected: {0}")]
    Invalid(&'static str),
    /// `iat`, `exp` or `nbf` out of bounds.
    #[error("client token {0}")]
    BadLifetime(&'static str),
    /// `jti` missing or not a short printable id.
    #[error("client token needs a jti of 1-{MAX_JTI_LEN} printable ASCII characters")]
    BadId,
    /// Used before, or no room to remember it.
    #[error(transparent)]
    Replay(#[from] ReplayRefusal),
    /// Looking the client up failed.
    #[error(transparent)]
    Store(#[from] ClientError),
}

impl JwtError {
    /// A short, fixed name of the refusal, for rate-limiting its log lines.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            // Fixed names: the algorithm itself is the caller's text.
            JwtError::Algorithm(alg) if alg.eq_ignore_ascii_case("none") => "alg_none",
            JwtError::Algorithm(alg) if alg.starts_with("HS") => "alg_hmac",
            JwtError::Algorithm(_) => "alg_other",
            JwtError::Critical => "crit",
            JwtError::UnknownClient(_) => "unknown_client",
            JwtError::Invalid(why) => why,
            JwtError::BadLifetime(why) => why,
            JwtError::BadId => "jti",
            JwtError::Replay(ReplayRefusal::Replayed) => "replayed",
            JwtError::Replay(_) => "replay_memory_full",
            JwtError::Store(_) => "store",
        }
    }
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

/// The claims checked after the signature. Times are read as any integer
/// and judged here, on the receiver's clock, without overflow.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// The only claim read before the signature is checked.
#[derive(Debug, Deserialize)]
struct Subject {
    sub: String,
}

/// Verifies `token` against the stored key of the client it names, at
/// Unix time `now_secs`, and accepts it only if `replay` has not seen it.
pub fn verify(
    token: &str,
    clients: &ClientStore,
    replay: &ReplayGuard,
    now_secs: i64,
) -> Result<VerifiedClient, JwtError> {
    // Read by hand: the library cannot even represent `none`.
    let header = read_header(token).ok_or(JwtError::Malformed)?;
    if header.algorithm != "RS256" {
        return Err(JwtError::Algorithm(excerpt(&header.algorithm).into_owned()));
    }
    if header.critical {
        return Err(JwtError::Critical);
    }
    let Subject { sub } =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| JwtError::Malformed)?;
    let unknown = || JwtError::UnknownClient(excerpt(&sub).into_owned());
    if !is_client_id(&sub) {
        return Err(unknown());
    }
    let client = clients.active(&sub)?.ok_or_else(unknown)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[clients.audience()]);
    validation.set_required_spec_claims(&["sub", "aud"]);
    // Judged below, on the caller's clock and without overflow.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = jsonwebtoken::decode::<TokenClaims>(token, &client.key, &validation)
        .map_err(|e| JwtError::Invalid(e.kind_text()))?
        .claims;
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(JwtError::Invalid("missing claim iat or exp"));
    };
    let forget_at = check_times(iat, exp, claims.nbf, now_secs)?;
    let jti = claims
        .jti
        .filter(|j| (1..=MAX_JTI_LEN).contains(&j.len()) && j.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(JwtError::BadId)?;
    replay.admit(&client.id, &jti, forget_at, now_secs)?;
    Ok(VerifiedClient {
        id: client.id,
        instance: client.hostname,
    })
}

/// Judges a token's times at Unix time `now`: refuses one issued in the
/// future, living longer than [`JWT_MAX_LIFETIME_SECS`], expired, or not
/// valid yet (`nbf`), each with [`JWT_LEEWAY_SECS`] of clock skew. Returns
/// the last second at which the token is acceptable. Computed in `i128`:
/// no `i64` the caller sends can overflow it.
pub fn check_times(iat: i64, exp: i64, nbf: Option<i64>, now: i64) -> Result<i64, JwtError> {
    let (iat, exp, now) = (i128::from(iat), i128::from(exp), i128::from(now));
    let leeway = i128::from(JWT_LEEWAY_SECS);
    if iat > now + leeway {
        return Err(JwtError::BadLifetime("issued in the future"));
    }
    let lifetime = exp - iat;
    if lifetime > i128::from(JWT_MAX_LIFETIME_SECS) {
        return Err(JwtError::BadLifetime("lives longer than 5 minutes"));
    }
    if lifetime < 0 {
        return Err(JwtError::BadLifetime("expires before it is issued"));
    }
    let last_valid = exp + leeway;
    if last_valid < now {
        return Err(JwtError::BadLifetime("expired"));
    }
    if nbf.is_some_and(|nbf| i128::from(nbf) > now + leeway) {
        return Err(JwtError::BadLifetime("not valid yet (nbf)"));
    }
    // In range: `exp` is at most `now` plus the leeway and the lifetime.
    Ok(i64::try_from(last_valid).unwrap_or(i64::MAX))
}

/// The parts of a token's header read before anything is verified.
struct RawHeader {
    algorithm: String,
    critical: bool,
}

fn read_header(token: &str) -> Option<RawHeader> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let algorithm = header.get("alg")?.as_str()?;
    Some(RawHeader {
        algorithm: algorithm.chars().take(16).collect(),
        critical: header.get("crit").is_some(),
    })
}

/// Short, caller-safe names for the library's errors.
trait KindText {
    fn kind_text(&self) -> &'static str;
}

impl KindText for jsonwebtoken::errors::Error {
    fn kind_text(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::InvalidAudience => "wrong audience",
            // Only `sub` and `aud` are required of the library.
            ErrorKind::MissingRequiredClaim(_) => "missing claim sub or aud",
            ErrorKind::InvalidAlgorithm => "algorithm mismatch",
            _ => "invalid token",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    fn refusal(result: Result<i64, JwtError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(JwtError::BadLifetime(why)) => why,
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn times_are_judged_with_the_leeway() {
        assert_eq!(check_times(NOW, NOW + 120, None, NOW).unwrap(), NOW + 180);
        assert_eq!(refusal(check_times(NOW, NOW + 300, None, NOW)), "ok");
        assert_eq!(
            refusal(check_times(NOW, NOW + 301, None, NOW)),
            "lives longer than 5 minutes"
        );
        assert_eq!(
            refusal(check_times(NOW + 61, NOW + 100, None, NOW)),
            "issued in the future"
        );
        assert_eq!(refusal(check_times(NOW - 200, NOW - 60, None, NOW)), "ok");
        assert_eq!(
            refusal(check_times(NOW - 200, NOW - 61, None, NOW)),
            "expired"
        );
        assert_eq!(
            refusal(check_times(NOW, NOW - 1, None, NOW)),
            "expires before it is issued"
        );
        assert_eq!(
            refusal(check_times(NOW, NOW + 60, Some(NOW + 60), NOW)),
            "ok"
        );
        assert_eq!(
            refusal(check_times(NOW, NOW + 60, Some(NOW + 61), NOW)),
            "not valid yet (nbf)"
        );
    }

    #[test]
    fn extreme_times_never_make_a_never_expiring_token() {
        for (iat, exp) in [
            (NOW, i64::MAX),
            (-1_000, i64::MAX),
            (i64::MIN, i64::MAX),
            (i64::MIN, NOW),
            (i64::MAX, i64::MIN),
        ] {
            assert!(check_times(iat, exp, None, NOW).is_err(), "{iat}..{exp}");
        }
        assert!(check_times(NOW, NOW, Some(i64::MAX), NOW).is_err());
        assert!(check_times(NOW, NOW, Some(i64::MIN), NOW).is_ok());
    }

    proptest! {
        /// Any `iat`, `exp`, `nbf` and clock: a decision without a panic,
        /// and an accepted token is live now and for at most its lifetime
        /// plus the leeway.
        #[test]
        fn any_times_are_judged_without_overflow(
            iat in any::<i64>(),
            exp in any::<i64>(),
            nbf in proptest::option::of(any::<i64>()),
            now in any::<i64>(),
            near in -400i64..400,
        ) {
            for (iat, exp) in [(iat, exp), (now.saturating_add(near), now.saturating_add(near / 2))] {
                if let Ok(last_valid) = check_times(iat, exp, nbf, now) {
                    prop_assert!(last_valid >= now);
                    prop_assert!(
                        i128::from(last_valid) - i128::from(now)
                            <= i128::from(JWT_MAX_LIFETIME_SECS + 2 * JWT_LEEWAY_SECS)
                    );
                    prop_assert!(i128::from(exp) - i128::from(iat) <= i128::from(JWT_MAX_LIFETIME_SECS));
                }
            }
        }
    }
}
