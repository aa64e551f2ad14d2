//! How the exporter trusts its receiver over `https://`: the receiver's
//! chain is verified against `--server-ca-file` (or the system's roots),
//! and its certificate must then be the one seen at enrolment, whose
//! SHA-256 fingerprint `enrollment.json` keeps, as SSH's `known_hosts`
//! keeps host keys. A receiver presenting another certificate is refused
//! with both fingerprints named, so a stolen DNS name or a rogue CA cannot
//! collect the fleet's samples. `--insecure-skip-verify` drops the chain
//! check only; the pin still holds.
//!
//! Other remote-write endpoints (Mimir, VictoriaMetrics) are checked
//! against the system's roots without a pin.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// How the receiver's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverTrust {
    /// CA certificates (PEM) the receiver's chain must lead to; the
    /// system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Skip the chain check (the pin, if any, still applies).
    pub insecure_skip_verify: bool,
    /// SHA-256 fingerprint the receiver's certificate must have.
    pub pinned: Option<String>,
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
}

/// The fingerprint of the last certificate a receiver presented, whether or
/// not it was accepted: registration saves it as the pin.
#[derive(Debug, Clone, Default)]
pub struct SeenCertificate(Arc<Mutex<Option<String>>>);

impl SeenCertificate {
    /// The fingerprint seen, if a TLS handshake got that far.
    pub fn fingerprint(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A rustls client configuration for talking to the receiver.
pub fn client_config(
    trust: &ReceiverTrust,
    seen: SeenCertificate,
) -> Result<ClientConfig, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = if trust.insecure_skip_verify {
        ChainCheck::Skip
    } else {
        match &trust.ca_file {
            Some(path) => chain_check(roots_from_file(path)?, &provider)?,
            None => chain_check(system_roots(), &provider)?,
        }
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

fn roots_from_file(path: &Path) -> Result<RootCertStore, TrustError> {
    let bad = |msg: String| TrustError::CaFile {
        path: path.to_owned(),
        msg,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| bad(err.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|err| bad(format!("not a usable CA certificate: {err}")))?;
    }
    Ok(roots)
}

/// The system's roots; none where ca-certificates is not installed, which
/// matters only once an `https://` server is contacted.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// The receiver presented a certificate other than the pinned one.
#[derive(Debug)]
pub struct PinMismatch {
    pinned: String,
    presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the receiver presented certificate SHA-256 {}, not the {} pinned at enrolment \
             (enrollment.json server_fingerprint); if the receiver's certificate was replaced on \
             purpose, put its new fingerprint (logged by the receiver at start) there",
            self.presented, self.pinned
        )
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
    pinned: Option<String>,
    seen: SeenCertificate,
    algorithms: WebPkiSupportedAlgorithms,
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
        *self.seen.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(presented.clone());
        match &self.chain {
            ChainCheck::Verify(chain) => {
                chain.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )?;
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
            // `Other`, whose message rustls displays as written (an
            // `InvalidCertificate` one would show as a debug dump).
            Some(pinned) if !pinned.eq_ignore_ascii_case(&presented) => {
                Err(rustls::Error::Other(OtherError(Arc::new(PinMismatch {
                    pinned: pinned.clone(),
                    presented,
                }))))
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
    fn a_pin_mismatch_names_both_fingerprints_and_the_remedy() {
        let text = PinMismatch {
            pinned: "AA:BB".into(),
            presented: "CC:DD".into(),
        }
        .to_string();
        assert!(text.contains("AA:BB") && text.contains("CC:DD"), "{text}");
        assert!(text.contains("server_fingerprint"), "{text}");
    }
}
