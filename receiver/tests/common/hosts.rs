//! Enrolled hosts for tests: RSA keys, registrations and the RS256 JWTs a
//! host signs, built here the way `dcmon-exporter` builds them.

use std::sync::OnceLock;

use dcmon_protocol::identity::{Claims, RegisterRequest, RegisterResponse, hex};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;

use super::{Receiver, client, now_ms};

/// Two host keys shared by the tests (generating one takes a moment).
pub fn keys() -> &'static [RsaPrivateKey; 2] {
    static KEYS: OnceLock<[RsaPrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        [
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        ]
    })
}

/// Unix seconds.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// 128 random bits, hex.
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    hex(&bytes)
}

/// A fresh, correctly signed registration.
pub fn registration(key: &RsaPrivateKey, host: &str) -> RegisterRequest {
    RegisterRequest::signed(key, host, "0123abcd", now_secs(), &random_nonce(), "0.1.0").unwrap()
}

/// POSTs a registration with `token`; (status, body).
pub fn post_registration(
    receiver: &Receiver,
    token: Option<&str>,
    body: &RegisterRequest,
) -> (u16, serde_json::Value) {
    let mut request = client()
        .post(receiver.url("/api/dcmon/register"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or_default())
}

/// Registers `host` with `key` using the admin token.
pub fn register(receiver: &Receiver, key: &RsaPrivateKey, host: &str) -> RegisterResponse {
    let (status, body) =
        post_registration(receiver, Some(&receiver.token), &registration(key, host));
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Valid claims for `client`, issued now.
pub fn claims(client: &RegisterResponse) -> Claims {
    Claims {
        sub: client.client_id.clone(),
        aud: client.audience.clone(),
        iat: now_secs(),
        exp: now_secs() + 120,
        jti: random_nonce(),
    }
}

/// `claims` signed RS256 with `key`.
pub fn rs256(key: &RsaPrivateKey, claims: &Claims) -> String {
    let der = key.to_pkcs1_der().unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .unwrap()
}

/// A host: its key and registration; signs a fresh token per call.
pub struct Host {
    /// Its key.
    pub key: &'static RsaPrivateKey,
    /// The receiver's answer.
    pub registration: RegisterResponse,
}

impl Host {
    /// Registers `name` with key number `key_index`.
    pub fn enrol(receiver: &Receiver, key_index: usize, name: &str) -> Host {
        let key = &keys()[key_index];
        Host {
            key,
            registration: register(receiver, key, name),
        }
    }

    /// A fresh token.
    pub fn token(&self) -> String {
        rs256(self.key, &claims(&self.registration))
    }
}
