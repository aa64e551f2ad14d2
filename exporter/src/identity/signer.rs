//! Signs the short-lived RS256 JWT that authenticates each request of an
//! enrolled host. A fresh token per request: a captured one is useless
//! after a few minutes, and no token is ever stored.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use dcmon_protocol::identity::{self, Claims};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;

use super::Enrollment;

/// How long each token is valid (the receiver accepts at most 5 minutes).
pub const TOKEN_LIFETIME_SECS: i64 = 120;

/// Signs request tokens for one enrollment.
pub struct JwtSigner {
    client_id: String,
    audience: String,
    key: EncodingKey,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A signer for `enrollment` with the host's `key`.
    pub fn new(enrollment: &Enrollment, key: &RsaPrivateKey) -> anyhow::Result<JwtSigner> {
        let der = key.to_pkcs1_der().context("encoding the host key")?;
        Ok(JwtSigner {
            client_id: enrollment.client_id.clone(),
            audience: enrollment.audience.clone(),
            key: EncodingKey::from_rsa_der(der.as_bytes()),
        })
    }

    /// A token issued at Unix time `now_secs`.
    pub fn token_at(&self, now_secs: i64) -> anyhow::Result<String> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).context("no randomness for the token id")?;
        let claims = Claims {
            sub: self.client_id.clone(),
            aud: self.audience.clone(),
            iat: now_secs,
            exp: now_secs + TOKEN_LIFETIME_SECS,
            jti: identity::hex(&jti),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .context("signing the request token")
    }

    /// `Authorization` header value for a request made now.
    pub fn authorization(&self) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(format!("Bearer {}", self.token_at(now)?))
    }
}

impl crate::shipper::RequestSigner for JwtSigner {
    fn authorization(&self) -> anyhow::Result<String> {
        JwtSigner::authorization(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receiver accepts each token once: every request needs its own
    /// random `jti`, even two signed in the same second.
    #[test]
    fn every_token_has_a_fresh_random_id() {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let enrollment = Enrollment {
            server: "http://127.0.0.1:1".into(),
            client_id: "0123456789abcdef01234567".into(),
            instance: "gpu-01".into(),
            audience: "dcmon-receiver/x".into(),
            server_fingerprint: None,
            server_ca_fingerprint: None,
            server_ca_file: None,
        };
        let signer = JwtSigner::new(&enrollment, &key).unwrap();
        let ids: std::collections::HashSet<String> = (0..50)
            .map(|_| {
                let token = signer.token_at(1_000).unwrap();
                let claims: Claims =
                    jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
                assert_eq!(
                    (claims.iat, claims.exp),
                    (1_000, 1_000 + TOKEN_LIFETIME_SECS)
                );
                assert_eq!(claims.jti.len(), 32);
                claims.jti
            })
            .collect();
        assert_eq!(ids.len(), 50);
    }
}
