//! Host identity: the registration message an exporter signs with its own
//! RSA key to prove it holds the key it enrols, and the claims of the
//! short-lived JWTs it signs for every later request.
//!
//! The signed message is a fixed, line-based text built from the request's
//! fields, so both sides derive the same bytes without depending on JSON
//! serialisation details.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Key size the exporter generates.
pub const KEY_BITS: usize = 2048;
/// Smallest key the receiver accepts.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest key the receiver accepts (verification cost grows with size).
pub const MAX_KEY_BITS: usize = 8192;
/// How far a registration's timestamp may be from the receiver's clock.
pub const REGISTRATION_MAX_SKEW_SECS: i64 = 300;
/// Longest lifetime a request JWT may claim (`exp - iat`).
pub const JWT_MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on `iat` and `exp`.
pub const JWT_LEEWAY_SECS: i64 = 60;

/// `POST /api/dcmon/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The host's name; becomes its `instance` label.
    pub hostname: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The host's public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key: String,
    /// Unix seconds when the request was signed.
    pub timestamp: i64,
    /// Random hex, never reused: a captured request cannot be replayed.
    pub nonce: String,
    /// Exporter version, for the clients registry.
    pub exporter_version: String,
    /// PKCS#1 v1.5 SHA-256 signature over [`RegisterRequest::signed_message`], base64.
    pub signature: String,
}

/// `POST /api/dcmon/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The client id: the `sub` of every JWT the host signs.
    pub client_id: String,
    /// The `instance` label the receiver puts on the host's samples.
    pub instance: String,
    /// The `aud` every JWT must carry: names this receiver.
    pub audience: String,
    /// Whether this replaced an earlier registration of the host.
    pub replaced: bool,
}

/// A client as `GET /api/dcmon/clients` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Client id.
    pub id: String,
    /// Host name (= `instance`).
    pub hostname: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `SHA256:<hex>` of the public key's DER.
    pub key_fingerprint: String,
    /// Unix seconds of the (latest) registration.
    pub registered_at: f64,
    /// Unix seconds of the last authenticated request, if any.
    pub last_seen: Option<f64>,
    /// `online`, `stale`, `offline`, `never` or `revoked`.
    pub status: String,
    /// Remote address of the last request.
    pub last_address: Option<String>,
    /// Exporter version last reported.
    pub exporter_version: String,
}

/// Claims of a request JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Client id.
    pub sub: String,
    /// The receiver's audience string.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// Why a registration's proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The public key does not parse.
    #[error("the public key is not an RSA SPKI PEM key: {0}")]
    BadKey(String),
    /// The key's size is outside what the receiver accepts.
    #[error("the public key has {0} bits; {MIN_KEY_BITS}..={MAX_KEY_BITS} are accepted")]
    KeySize(usize),
    /// The signature does not verify.
    #[error("the registration signature does not verify with the presented key")]
    BadSignature,
    /// The timestamp is too far from the receiver's clock.
    #[error(
        "the registration timestamp is {0} s away from the receiver's clock (at most {REGISTRATION_MAX_SKEW_SECS} s allowed)"
    )]
    StaleTimestamp(i64),
    /// A field is empty or malformed.
    #[error("invalid field {0}")]
    BadField(&'static str),
}

impl RegisterRequest {
    /// Builds and signs a request with `key`.
    pub fn signed(
        key: &RsaPrivateKey,
        hostname: &str,
        machine_id: &str,
        timestamp: i64,
        nonce: &str,
        exporter_version: &str,
    ) -> Result<RegisterRequest, RegistrationError> {
        let public = RsaPublicKey::from(key);
        let bad_key = |e: rsa::pkcs8::spki::Error| RegistrationError::BadKey(e.to_string());
        let public_key = public.to_public_key_pem(LineEnding::LF).map_err(bad_key)?;
        let der = public.to_public_key_der().map_err(bad_key)?;
        let mut request = RegisterRequest {
            hostname: hostname.to_owned(),
            machine_id: machine_id.to_owned(),
            public_key,
            timestamp,
            nonce: nonce.to_owned(),
            exporter_version: exporter_version.to_owned(),
            signature: String::new(),
        };
        let message = request.signed_message(der.as_bytes());
        let signature = SigningKey::<Sha256>::new(key.clone()).sign(&message);
        request.signature = STANDARD.encode(signature.to_bytes());
        Ok(request)
    }

    /// The exact bytes the signature covers. The key enters as its SHA-256
    /// fingerprint, so PEM line wrapping cannot change the message.
    pub fn signed_message(&self, public_key_der: &[u8]) -> Vec<u8> {
        format!(
            "dcmon registration v1\nhostname: {}\nmachine-id: {}\npublic-key-sha256: {}\ntimestamp: {}\nnonce: {}\nexporter-version: {}\n",
            self.hostname,
            self.machine_id,
            hex(&Sha256::digest(public_key_der)),
            self.timestamp,
            self.nonce,
            self.exporter_version,
        )
        .into_bytes()
    }

    fn parsed_key(&self) -> Result<(RsaPublicKey, Vec<u8>), RegistrationError> {
        let key = RsaPublicKey::from_public_key_pem(self.public_key.trim())
            .map_err(|e| RegistrationError::BadKey(e.to_string()))?;
        let der = key
            .to_public_key_der()
            .map_err(|e| RegistrationError::BadKey(e.to_string()))?;
        Ok((key, der.as_bytes().to_vec()))
    }

    /// Checks the fields, the key size, the timestamp against `now_secs`
    /// and the proof of possession. Replay (nonce reuse) is the caller's
    /// check: it needs memory of earlier nonces.
    pub fn verify(&self, now_secs: i64) -> Result<VerifiedKey, RegistrationError> {
        check_field("hostname", &self.hostname, is_hostname)?;
        check_field("machine_id", &self.machine_id, |s| {
            s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        check_field("nonce", &self.nonce, |s| {
            (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        check_field("exporter_version", &self.exporter_version, |s| {
            s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
        })?;
        let skew = self.timestamp.saturating_sub(now_secs);
        if skew.abs() > REGISTRATION_MAX_SKEW_SECS {
            return Err(RegistrationError::StaleTimestamp(skew));
        }
        let (key, der) = self.parsed_key()?;
        let bits = key.size() * 8;
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(RegistrationError::KeySize(bits));
        }
        let signature = STANDARD
            .decode(self.signature.trim())
            .ok()
            .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
            .ok_or(RegistrationError::BadSignature)?;
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(&self.signed_message(&der), &signature)
            .map_err(|_| RegistrationError::BadSignature)?;
        Ok(VerifiedKey {
            fingerprint: fingerprint(&der),
            key,
        })
    }
}

/// A public key whose possession was proven.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    /// The key.
    pub key: RsaPublicKey,
    /// `SHA256:<hex>` of its DER.
    pub fingerprint: String,
}

impl VerifiedKey {
    /// The key as SPKI PEM, for storage.
    pub fn pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an RSA public key always encodes")
    }
}

/// `SHA256:<hex>` of a public key's DER, as listed in the clients registry.
pub fn fingerprint(public_key_der: &[u8]) -> String {
    format!("SHA256:{}", hex(&Sha256::digest(public_key_der)))
}

/// The RSA modulus and exponent, big-endian: what a JWT library verifies with.
pub fn key_components(key: &RsaPublicKey) -> (Vec<u8>, Vec<u8>) {
    (key.n().to_bytes_be(), key.e().to_bytes_be())
}

/// Host names as the receiver accepts them for `instance`: RFC 1123
/// characters, at most 253 bytes.
pub fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn check_field(
    name: &'static str,
    value: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<(), RegistrationError> {
    if value.is_empty() || !valid(value) {
        return Err(RegistrationError::BadField(name));
    }
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One 2048-bit key for all tests: generating one costs ~0.1-1 s.
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).unwrap())
    }

    fn request(timestamp: i64) -> RegisterRequest {
        RegisterRequest::signed(
            key(),
            "gpu-07",
            "0123456789abcdef0123456789abcdef",
            timestamp,
            "00112233445566778899aabbccddeeff",
            "0.1.0",
        )
        .unwrap()
    }

    #[test]
    fn a_signed_request_verifies() {
        let verified = request(1_000).verify(1_010).unwrap();
        assert!(verified.fingerprint.starts_with("SHA256:"));
        assert_eq!(verified.fingerprint.len(), 7 + 64);
        assert_eq!(verified.key, RsaPublicKey::from(key()));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let good = request(1_000);
        let mut changed = Vec::new();
        let mut r = good.clone();
        r.hostname = "gpu-08".into();
        changed.push(r);
        let mut r = good.clone();
        r.machine_id = "ff".into();
        changed.push(r);
        let mut r = good.clone();
        r.timestamp += 1;
        changed.push(r);
        let mut r = good.clone();
        r.nonce = "ffffffffffffffffffffffffffffffff".into();
        changed.push(r);
        let mut r = good.clone();
        r.exporter_version = "9.9.9".into();
        changed.push(r);
        for request in changed {
            assert_eq!(
                request.verify(1_000).unwrap_err(),
                RegistrationError::BadSignature,
                "{request:?}"
            );
        }
    }

    #[test]
    fn another_key_cannot_sign_for_a_presented_key() {
        let other = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).unwrap();
        let mut forged = request(1_000);
        let by_other = RegisterRequest::signed(
            &other,
            &forged.hostname,
            &forged.machine_id,
            forged.timestamp,
            &forged.nonce,
            &forged.exporter_version,
        )
        .unwrap();
        forged.signature = by_other.signature;
        assert_eq!(
            forged.verify(1_000).unwrap_err(),
            RegistrationError::BadSignature
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        assert!(matches!(
            request(1_000).verify(1_000 + REGISTRATION_MAX_SKEW_SECS + 1),
            Err(RegistrationError::StaleTimestamp(_))
        ));
        assert!(matches!(
            request(1_000).verify(1_000 - REGISTRATION_MAX_SKEW_SECS - 1),
            Err(RegistrationError::StaleTimestamp(_))
        ));
        assert!(
            request(1_000)
                .verify(1_000 + REGISTRATION_MAX_SKEW_SECS)
                .is_ok()
        );
    }

    #[test]
    fn malformed_fields_are_named() {
        let mut r = request(1_000);
        r.hostname = "gpu 07; rm -rf".into();
        assert_eq!(
            r.verify(1_000).unwrap_err(),
            RegistrationError::BadField("hostname")
        );
        let mut r = request(1_000);
        r.signature = "not base64!".into();
        assert_eq!(
            r.verify(1_000).unwrap_err(),
            RegistrationError::BadSignature
        );
        let mut r = request(1_000);
        r.public_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into();
        assert!(matches!(r.verify(1_000), Err(RegistrationError::BadKey(_))));
    }

    #[test]
    fn small_keys_are_refused() {
        let small = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let r = RegisterRequest::signed(&small, "h", "ab", 5, &"a".repeat(32), "1").unwrap();
        assert_eq!(r.verify(5).unwrap_err(), RegistrationError::KeySize(1024));
    }
}
