//! How the exporter trusts its receiver over `https://`, pinned at
//! enrolment as SSH's `known_hosts` pins host keys, so that a stolen DNS
//! name or a rogue CA cannot collect the fleet's samples:
//!
//! - registered with `--server-ca-file`, the host pins the CA of that file
//!   that the receiver's certificate chains to (`server_ca_fingerprint` in
//!   `enrollment.json`): later connections must chain to that CA alone,
//!   so the receiver may renew its certificate from it at will, and a
//!   certificate of any other CA, even one the file also holds, is refused;
//! - registered against the system's roots, or with
//!   `--insecure-skip-verify` (a self-signed receiver), it pins the
//!   receiver's certificate itself (`server_fingerprint`): a renewed
//!   certificate then needs the new fingerprint there (the receiver logs
//!   it at start). `--insecure-skip-verify` drops the chain check only.
//!
//! A refusal names both fingerprints. Other remote-write endpoints
//! (Mimir, VictoriaMetrics) are checked against the system's roots without
//! a pin.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// What enrolment pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The receiver's own certificate, by SHA-256 fingerprint.
    Certificate(String),
    /// The CA its certificate chains to, by SHA-256 fingerprint; the CA
    /// must be in the CA file.
    Ca(String),
}

/// How the receiver's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverTrust {
    /// CA certificates (PEM) the receiver's chain must lead to; the
    /// system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Skip the chain check (a certificate pin still applies; a CA pin
    /// always checks the chain against that CA).
    pub insecure_skip_verify: bool,
    /// What enrolment pinned.
    pub pinned: Option<Pin>,
}

/// Why no TLS client could be set up.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA file could not be read or holds no certificate.
    #[error("--server-ca-file {path}: {msg}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// No root certificate to verify with.
    #[error("no trusted root certificates: {0}")]
    Roots(String),
    /// Enrolment pinned a CA, but no CA file names it now.
    #[error(
        "the receiver's CA was pinned at enrolment (SHA-256 {0}) but {1}; pass --server-ca-file with that CA"
    )]
    PinnedCaMissing(String, String),
}

/// What a receiver presented in the last handshake, whether or not it was
/// accepted: registration pins from it.
#[derive(Debug, Clone, Default)]
pub struct SeenCertificate(Arc<Mutex<Option<Vec<CertificateDer<'static>>>>>);

impl SeenCertificate {
    /// The fingerprint of the receiver's certificate, if a TLS handshake
    /// got that far.
    pub fn fingerprint(&self) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.as_ref()?
            .first()
            .map(|cert| dcmon_web::fingerprint(cert))
    }

    /// The fingerprint of the certificate among `ca_file`'s that the chain
    /// seen leads to, verified for `host`.
    pub fn anchor(&self, ca_file: &Path, host: &str) -> Result<Option<String>, TrustError> {
        let Some(chain) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Ok(None);
        };
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Ok(None);
        };
        let Ok(name) = ServerName::try_from(host.to_owned()) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // One CA at a time: the one that verifies the chain is its anchor.
        for ca in read_ca_file(ca_file)? {
            let mut roots = RootCertStore::empty();
            if roots.add(ca.clone()).is_err() {
                continue;
            }
            let Ok(verifier) =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
            else {
                continue;
            };
            let verified =
                verifier.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now());
            if verified.is_ok() {
                return Ok(Some(dcmon_web::fingerprint(&ca)));
            }
        }
        Ok(None)
    }
}

/// A rustls client configuration for talking to the receiver.
pub fn client_config(
    trust: &ReceiverTrust,
    seen: SeenCertificate,
) -> Result<ClientConfig, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match (&trust.pinned, &trust.ca_file) {
        (Some(Pin::Ca(pinned)), Some(path)) => {
            let mut roots = RootCertStore::empty();
            for ca in read_ca_file(path)? {
                if dcmon_web::fingerprint(&ca).eq_ignore_ascii_case(pinned) {
                    roots.add(ca).map_err(|err| TrustError::CaFile {
                        path: path.clone(),
                        msg: format!("not a usable CA certificate: {err}"),
                    })?;
                }
            }
            if roots.is_empty() {
                return Err(TrustError::PinnedCaMissing(
                    pinned.clone(),
                    format!("{} does not hold it", path.display()),
                ));
            }
            chain_check(roots, &provider)?
        }
        (Some(Pin::Ca(pinned)), None) => {
            return Err(TrustError::PinnedCaMissing(
                pinned.clone(),
                "no CA file is given".into(),
            ));
        }
        _ if trust.insecure_skip_verify => ChainCheck::Skip,
        (_, Some(path)) => chain_check(roots_from_file(path)?, &provider)?,
        (_, None) => chain_check(system_roots(), &provider)?,
    };
    let verifier = ServerVerifier {
        chain,
        pinned: trust.pinned.clone(),
        seen,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(with_verifier(provider, Arc::new(verifier)))
}

/// A rustls client configuration that checks servers against the system's
/// roots, for endpoints other than the receiver.
pub fn system_client_config() -> Result<ClientConfig, TrustError> {
    client_config(&ReceiverTrust::default(), SeenCertificate::default())
}

fn chain_check(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<ChainCheck, TrustError> {
    if roots.is_empty() {
        return Ok(ChainCheck::NoRoots);
    }
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|err| TrustError::Roots(err.to_string()))?;
    Ok(ChainCheck::Verify(verifier))
}

fn with_verifier(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> ClientConfig {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// The certificates of a CA file; an error names the file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    dcmon_ship::tls::read_certs(path).map_err(ca_file_error(path))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TrustError> {
    dcmon_ship::tls::roots_from_file(path).map_err(ca_file_error(path))
}

/// `--server-ca-file`'s error for what reading `path` found wrong.
fn ca_file_error(path: &Path) -> impl Fn(dcmon_ship::tls::TlsError) -> TrustError + '_ {
    move |err| TrustError::CaFile {
        path: path.to_owned(),
        msg: err.msg,
    }
}

/// The system's roots; none where ca-certificates is not installed, which
/// matters only once an `https://` server is contacted.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// The receiver presented a certificate the pin does not allow.
#[derive(Debug)]
pub enum PinMismatch {
    /// Another certificate than the pinned one.
    Certificate {
        /// The pinned fingerprint.
        pinned: String,
        /// The presented certificate's.
        presented: String,
    },
    /// A certificate that does not chain to the pinned CA.
    Ca {
        /// The pinned CA's fingerprint.
        pinned: String,
        /// The presented certificate's.
        presented: String,
        /// Why the chain check failed.
        reason: String,
    },
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinMismatch::Certificate { pinned, presented } => write!(
                f,
                "the receiver presented certificate SHA-256 {presented}, not the {pinned}                  pinned at enrolment (enrollment.json server_fingerprint); if the receiver's                  certificate was replaced on purpose, put its new fingerprint (logged by the                  receiver at start) there"
            ),
            PinMismatch::Ca {
                pinned,
                presented,
                reason,
            } => write!(
                f,
                "the receiver presented certificate SHA-256 {presented}, which does not chain                  to the CA SHA-256 {pinned} pinned at enrolment (enrollment.json                  server_ca_fingerprint): {reason}"
            ),
        }
    }
}

impl std::error::Error for PinMismatch {}

/// How a server's chain is checked.
#[derive(Debug)]
enum ChainCheck {
    /// Against these roots.
    Verify(Arc<WebPkiServerVerifier>),
    /// Not at all (`--insecure-skip-verify`).
    Skip,
    /// There is nothing to check against: every server is refused.
    NoRoots,
}

/// The chain check, then the pin.
#[derive(Debug)]
struct ServerVerifier {
    chain: ChainCheck,
    pinned: Option<Pin>,
    seen: SeenCertificate,
    algorithms: WebPkiSupportedAlgorithms,
}

/// rustls shows an `Other` error's message as written (an
/// `InvalidCertificate` one would show as a debug dump).
fn refusal(mismatch: PinMismatch) -> rustls::Error {
    rustls::Error::Other(OtherError(Arc::new(mismatch)))
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = dcmon_web::fingerprint(end_entity);
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|cert| cert.clone().into_owned())
            .collect();
        *self.seen.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(chain);
        match &self.chain {
            ChainCheck::Verify(chain) => {
                let verified = chain.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
                match (verified, &self.pinned) {
                    (Ok(_), _) => {}
                    (Err(err), Some(Pin::Ca(pinned))) => {
                        return Err(refusal(PinMismatch::Ca {
                            pinned: pinned.clone(),
                            presented,
                            reason: err.to_string(),
                        }));
                    }
                    (Err(err), _) => return Err(err),
                }
            }
            ChainCheck::Skip => {}
            ChainCheck::NoRoots => {
                return Err(rustls::Error::General(
                    "no trusted root certificates: the system has none (install ca-certificates) \
                     and no --server-ca-file was given"
                        .into(),
                ));
            }
        }
        match &self.pinned {
            Some(Pin::Certificate(pinned)) if !pinned.eq_ignore_ascii_case(&presented) => {
                Err(refusal(PinMismatch::Certificate {
                    pinned: pinned.clone(),
                    presented,
                }))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let trust = ReceiverTrust {
            ca_file: Some(file.clone()),
            ..ReceiverTrust::default()
        };
        let err = client_config(&trust, SeenCertificate::default()).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        let trust = ReceiverTrust {
            ca_file: Some(dir.path().join("missing.pem")),
            ..ReceiverTrust::default()
        };
        let err = client_config(&trust, SeenCertificate::default()).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_pinned_ca_must_be_in_the_ca_file() {
        let trust = ReceiverTrust {
            pinned: Some(Pin::Ca("AA:BB".into())),
            ..ReceiverTrust::default()
        };
        let err = client_config(&trust, SeenCertificate::default()).unwrap_err();
        assert!(err.to_string().contains("AA:BB"), "{err}");
    }

    #[test]
    fn a_pin_mismatch_names_both_fingerprints_and_the_remedy() {
        let text = PinMismatch::Certificate {
            pinned: "AA:BB".into(),
            presented: "CC:DD".into(),
        }
        .to_string();
        assert!(text.contains("AA:BB") && text.contains("CC:DD"), "{text}");
        assert!(text.contains("server_fingerprint"), "{text}");
        let text = PinMismatch::Ca {
            pinned: "AA:BB".into(),
            presented: "CC:DD".into(),
            reason: "UnknownIssuer".into(),
        }
        .to_string();
        assert!(
            text.contains("AA:BB") && text.contains("server_ca_fingerprint"),
            "{text}"
        );
    }
}
