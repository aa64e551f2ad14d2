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

/// `POST /api/dcmon/register` body: a host's proof that it holds the key
/// it enrols. The signature covers a fixed text built from the fields
/// (`RegisterRequest::signed_message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// The host's name; becomes its `instance` label.
    pub hostname: String,
    /// `/etc/machine-id`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-fA-F]{1,64}$"))]
    pub machine_id: String,
    /// The host's public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`): RSA,
    /// 2048 to 8192 bits.
    pub public_key: String,
    /// Unix seconds when the request was signed; at most 300 s from the
    /// receiver's clock.
    pub timestamp: i64,
    /// Random hex, never reused: a captured request cannot be replayed.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-fA-F]{16,128}$"))]
    pub nonce: String,
    /// Exporter version, for the clients registry.
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub exporter_version: String,
    /// PKCS#1 v1.5 SHA-256 signature over `RegisterRequest::signed_message`, base64.
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub signature: String,
}

/// `POST /api/dcmon/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    /// The client id: the `sub` of every JWT the host signs.
    pub client_id: String,
    /// The `instance` label the receiver puts on the host's samples.
    pub instance: String,
    /// The `aud` every JWT must carry: names this receiver.
    pub audience: String,
    /// Whether this replaced an earlier registration of the host name
    /// (same id, new key).
    pub replaced: bool,
}

/// A client as `GET /api/dcmon/clients` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_seen: Option<f64>,
    /// `online`, `stale`, `offline`, `never` or `revoked`.
    #[cfg_attr(feature = "openapi", schema(schema_with = client_status))]
    pub status: String,
    /// Remote address of the last request.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_address: Option<String>,
    /// Exporter version last reported.
    pub exporter_version: String,
}

/// [`ClientInfo::status`]'s values, described.
#[cfg(feature = "openapi")]
fn client_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["online", "stale", "offline", "never", "revoked"]))
        .description(Some(
            "stale after two push intervals of silence, offline after ten.",
        ))
        .build()
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
    StaleTimestamp(u64),
    /// The host name is not one the receiver accepts.
    #[error("invalid host name: {0}")]
    BadHostname(HostnameError),
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
        check_hostname(&self.hostname).map_err(RegistrationError::BadHostname)?;
        check_field("machine_id", &self.machine_id, |s| {
            s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        check_field("nonce", &self.nonce, |s| {
            (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        check_field("exporter_version", &self.exporter_version, |s| {
            s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
        })?;
        // `abs_diff` cannot overflow, whatever the request claims.
        let skew = self.timestamp.abs_diff(now_secs);
        if skew > REGISTRATION_MAX_SKEW_SECS.unsigned_abs() {
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

/// Longest host name, as in DNS.
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label of a host name, as in DNS.
pub const MAX_LABEL_LEN: usize = 63;
/// Length of a client id: 12 random bytes in lower-case hex.
pub const CLIENT_ID_LEN: usize = 24;

/// Why a host name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    /// Empty, or longer than [`MAX_HOSTNAME_LEN`].
    #[error("host names are 1-253 characters")]
    Length,
    /// A label is empty (`a..b`, a leading or trailing dot) or too long.
    #[error("each dot-separated label must be 1-63 characters")]
    Label,
    /// A character other than a letter, digit, `-` or `.`.
    #[error("only letters, digits, '-' and '.' are allowed")]
    Character,
    /// A label starting or ending with `-` (`-rf` reads as an option).
    #[error("a label may not start or end with '-'")]
    Hyphen,
    /// Shaped like a client id, so "id or host name" would be ambiguous.
    #[error("24 hex digits is the shape of a client id")]
    LooksLikeClientId,
}

/// Checks a host name as the receiver accepts it for `instance`: RFC 1123
/// labels (letters, digits, `-` not at either end, 1-63 each) joined by
/// dots, 1-253 characters in all; no `_`, no empty label, no trailing dot.
/// A name of 24 hex digits is refused too: it could be read as a client id,
/// and every API that takes "client id or host name" tells them apart by
/// that shape alone.
pub fn check_hostname(name: &str) -> Result<(), HostnameError> {
    if name.is_empty() || name.len() > MAX_HOSTNAME_LEN {
        return Err(HostnameError::Length);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(HostnameError::Label);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(HostnameError::Character);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostnameError::Hyphen);
        }
    }
    if name.len() == CLIENT_ID_LEN && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HostnameError::LooksLikeClientId);
    }
    Ok(())
}

/// Whether [`check_hostname`] accepts `name`.
pub fn is_hostname(name: &str) -> bool {
    check_hostname(name).is_ok()
}

/// Whether `text` has the shape of a client id (24 lower-case hex digits).
/// No valid host name has it (see [`check_hostname`]).
pub fn is_client_id(text: &str) -> bool {
    text.len() == CLIENT_ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A client named by an admin: by id or by host name, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRef<'a> {
    /// A client id.
    Id(&'a str),
    /// A host name (also one registered before names were checked).
    Hostname(&'a str),
}

impl<'a> ClientRef<'a> {
    /// Reads "client id or host name": the shape decides, so one string
    /// can never name two clients.
    pub fn parse(text: &'a str) -> ClientRef<'a> {
        if is_client_id(text) {
            ClientRef::Id(text)
        } else {
            ClientRef::Hostname(text)
        }
    }
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
            RegistrationError::BadHostname(HostnameError::Character)
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

    #[test]
    fn host_names_are_dns_like_and_never_shaped_like_a_client_id() {
        for good in [
            "gpu-01",
            "GPU-01",
            "a",
            "node7.rack-3.dc.example",
            "10.0.0.7",
            "0123456789abcdef0123456", // 23 hex digits: not an id's shape
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert_eq!(check_hostname(good), Ok(()), "{good}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        for (bad, why) in [
            ("", HostnameError::Length),
            (long.as_str(), HostnameError::Length),
            ("..", HostnameError::Label),
            (".", HostnameError::Label),
            ("gpu-01.", HostnameError::Label),
            (".gpu-01", HostnameError::Label),
            (&"a".repeat(64), HostnameError::Label),
            ("-rf", HostnameError::Hyphen),
            ("gpu-", HostnameError::Hyphen),
            ("a.-b", HostnameError::Hyphen),
            ("gpu_01", HostnameError::Character),
            ("gpu 01", HostnameError::Character),
            ("gpü", HostnameError::Character),
            ("../etc", HostnameError::Label),
            ("0123456789abcdef01234567", HostnameError::LooksLikeClientId),
            ("0123456789ABCDEF01234567", HostnameError::LooksLikeClientId),
        ] {
            assert_eq!(check_hostname(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn id_or_host_name_is_read_by_its_shape() {
        let id = "0123456789abcdef01234567";
        assert!(is_client_id(id));
        assert_eq!(ClientRef::parse(id), ClientRef::Id(id));
        assert_eq!(ClientRef::parse("gpu-01"), ClientRef::Hostname("gpu-01"));
        // Upper case is not an id (ids are lower case); as a name it is refused.
        assert!(!is_client_id("0123456789ABCDEF01234567"));
        assert!(!is_hostname("0123456789ABCDEF01234567"));
    }

    #[test]
    fn the_most_extreme_timestamps_are_refused_without_overflow() {
        for (timestamp, now) in [
            (i64::MIN, 1_000),
            (i64::MAX, 1_000),
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
        ] {
            assert!(
                matches!(
                    request(timestamp).verify(now),
                    Err(RegistrationError::StaleTimestamp(_))
                ),
                "{timestamp} at {now}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Any timestamp against any clock: a refusal exactly when the
            /// two are more than the allowed skew apart, never a panic.
            #[test]
            fn any_timestamp_is_judged_without_overflow(
                timestamp in any::<i64>(),
                now in any::<i64>(),
                near in -400i64..=400,
            ) {
                for (timestamp, now) in [(timestamp, now), (now.saturating_add(near), now)] {
                    let outcome = request(timestamp).verify(now);
                    let far = i128::from(timestamp) - i128::from(now);
                    if far.abs() > i128::from(REGISTRATION_MAX_SKEW_SECS) {
                        prop_assert!(
                            matches!(outcome, Err(RegistrationError::StaleTimestamp(s)) if i128::from(s) == far.abs())
                        );
                    } else {
                        prop_assert!(outcome.is_ok(), "{outcome:?}");
                    }
                }
            }

            /// Any text: judged without a panic; what passes has the
            /// documented shape.
            #[test]
            fn any_text_is_judged_as_a_host_name(name in "\\PC{0,300}|[a-zA-Z0-9.-]{0,80}") {
                if check_hostname(&name).is_ok() {
                    prop_assert!((1..=MAX_HOSTNAME_LEN).contains(&name.len()));
                    prop_assert!(!is_client_id(&name));
                    for label in name.split('.') {
                        prop_assert!((1..=MAX_LABEL_LEN).contains(&label.len()));
                        prop_assert!(!label.starts_with('-') && !label.ends_with('-'));
                        prop_assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                    }
                }
            }
        }
    }
}
