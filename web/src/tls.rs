//! From `tls_server_config` to a rustls server configuration: reads the
//! certificate, key and client CA files it names, and maps exporter-
//! toolkit's options (client auth type, versions, cipher suites, curves)
//! onto rustls with the `ring` provider. Refuses what rustls cannot do
//! rather than quietly doing something else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::{ClientAuth, TlsServerConfig, TlsVersion, WebConfigError, resolve};
use crate::fingerprint;

/// A listener's TLS, ready for handshakes.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// For the acceptor.
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the server's own certificate, as `openssl x509
    /// -fingerprint -sha256` prints it (colon-separated hex).
    pub fingerprint: String,
    /// Whether a client certificate, when sent, was verified against the
    /// configured client CA and so identifies the client.
    pub verifies_client_certs: bool,
}

/// The files a TLS configuration reads, for change detection.
pub fn files(tls: &TlsServerConfig, config: &Path) -> Vec<PathBuf> {
    [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
        .into_iter()
        .flatten()
        .map(|f| resolve(config, f))
        .collect()
}

/// Where a PEM item is read from: a file named in the config, or the
/// config's own text.
#[derive(Debug)]
enum Pem<'a> {
    File(PathBuf),
    Inline { key: &'static str, text: &'a str },
}

impl Pem<'_> {
    /// For messages: the file, or the key holding the text.
    fn describe(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Inline { key, .. } => format!("tls_server_config.{key}"),
        }
    }
}

/// The PEM source of one item, given its `<key>_file` and inline `<key>`.
fn pem<'a>(
    config: &Path,
    file: &Option<PathBuf>,
    inline: &'a Option<String>,
    key: &'static str,
) -> Option<Pem<'a>> {
    match (file, inline) {
        (Some(file), _) => Some(Pem::File(resolve(config, file))),
        (None, Some(text)) => Some(Pem::Inline { key, text }),
        (None, None) => None,
    }
}

/// Builds the TLS configuration; `None` when no certificate and no key are
/// set (exporter-toolkit then serves plain HTTP).
pub fn build(tls: &TlsServerConfig, config: &Path) -> Result<Option<ServerTls>, WebConfigError> {
    let invalid = |message: String| WebConfigError::Invalid {
        config: config.to_owned(),
        message,
    };
    let cert = pem(config, &tls.cert_file, &tls.cert, "cert");
    let key = pem(config, &tls.key_file, &tls.key, "key");
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(invalid("tls_server_config: missing key_file".into())),
        (None, Some(_)) => return Err(invalid("tls_server_config: missing cert_file".into())),
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = read_certificates(&cert, config)?;
    let private_key = match &key {
        Pem::File(path) => PrivateKeyDer::from_pem_file(path),
        Pem::Inline { text, .. } => PrivateKeyDer::from_pem_slice(text.as_bytes()),
    }
    .map_err(|err| pem_error(config, &key, "private key", err))?;
    let provider = Arc::new(provider(tls, config)?);
    let versions = versions(tls);
    let verifier = client_verifier(tls, config, &provider)?;
    let fingerprint = fingerprint(&chain[0]);
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|err| invalid(format!("tls_server_config: {err}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|err| {
            invalid(format!(
                "tls_server_config: {} and {} do not make a usable certificate: {err}",
                cert.describe(),
                key.describe()
            ))
        })?;
    // Both servers speak HTTP/1.1 only (`http2` is accepted and ignored).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    Ok(Some(ServerTls {
        config: Arc::new(server),
        fingerprint,
        verifies_client_certs: tls.client_auth_type.verifies(),
    }))
}

fn read_certificates(
    source: &Pem<'_>,
    config: &Path,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let chain = match source {
        Pem::File(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>()),
        Pem::Inline { text, .. } => {
            CertificateDer::pem_slice_iter(text.as_bytes()).collect::<Result<Vec<_>, _>>()
        }
    }
    .map_err(|err| pem_error(config, source, "certificates", err))?;
    if chain.is_empty() {
        return Err(WebConfigError::Invalid {
            config: config.to_owned(),
            message: format!("{}: no PEM certificate in it", source.describe()),
        });
    }
    Ok(chain)
}

fn pem_error(
    config: &Path,
    source: &Pem<'_>,
    what: &str,
    err: rustls_pki_types::pem::Error,
) -> WebConfigError {
    match (err, source) {
        (rustls_pki_types::pem::Error::Io(source), Pem::File(file)) => WebConfigError::Read {
            config: config.to_owned(),
            file: file.clone(),
            source,
        },
        (rustls_pki_types::pem::Error::NoItemsFound, _) => WebConfigError::Invalid {
            config: config.to_owned(),
            message: format!("{}: no PEM {what} in it", source.describe()),
        },
        (err, _) => WebConfigError::Invalid {
            config: config.to_owned(),
            message: format!("{}: reading the {what}: {err}", source.describe()),
        },
    }
}

fn versions(tls: &TlsServerConfig) -> Vec<&'static SupportedProtocolVersion> {
    let min = tls.min_version.unwrap_or(TlsVersion::TLS12);
    let max = tls.max_version.unwrap_or(TlsVersion::TLS13);
    [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, v)| v)
    .collect()
}

/// The `ring` provider, narrowed to the configured suites and curves.
fn provider(tls: &TlsServerConfig, config: &Path) -> Result<CryptoProvider, WebConfigError> {
    let invalid = |message: String| WebConfigError::Invalid {
        config: config.to_owned(),
        message,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &tls.cipher_suites {
        let all = provider.cipher_suites.clone();
        // Go applies the list to TLS 1.2 only; TLS 1.3's suites stay on.
        let mut chosen: Vec<_> = all
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in names {
            let wanted = go_suite_alias(name);
            let suite = all
                .iter()
                .find(|s| {
                    s.version() == &rustls::version::TLS12 && format!("{:?}", s.suite()) == wanted
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "tls_server_config.cipher_suites: {name} is not supported (available: {})",
                        all.iter()
                            .filter(|s| s.version() == &rustls::version::TLS12)
                            .map(|s| format!("{:?}", s.suite()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if let Some(names) = &tls.curve_preferences {
        let all = provider.kx_groups.clone();
        let mut chosen = Vec::new();
        for name in names {
            let wanted = match name.as_str() {
                "CurveP256" => "secp256r1",
                "CurveP384" => "secp384r1",
                "X25519" => "X25519",
                _ => "",
            };
            let group = all
                .iter()
                .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(wanted))
                .ok_or_else(|| {
                    invalid(format!(
                        "tls_server_config.curve_preferences: {name} is not supported (available: CurveP256, CurveP384, X25519)"
                    ))
                })?;
            chosen.push(*group);
        }
        provider.kx_groups = chosen;
    }
    Ok(provider)
}

/// Go accepts the ChaCha20 suites without their `_SHA256` suffix.
fn go_suite_alias(name: &str) -> String {
    match name {
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            format!("{name}_SHA256")
        }
        _ => name.to_owned(),
    }
}

fn client_verifier(
    tls: &TlsServerConfig,
    config: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    let roots = || -> Result<Arc<RootCertStore>, WebConfigError> {
        let source = pem(config, &tls.client_ca_file, &tls.client_ca, "client_ca")
            .expect("checked when parsed: verifying needs client_ca_file");
        let mut roots = RootCertStore::empty();
        for cert in read_certificates(&source, config)? {
            roots.add(cert).map_err(|err| WebConfigError::Invalid {
                config: config.to_owned(),
                message: format!("{}: not a usable CA certificate: {err}", source.describe()),
            })?;
        }
        Ok(Arc::new(roots))
    };
    let build = |builder: rustls::server::ClientCertVerifierBuilder| {
        builder.build().map_err(|err| WebConfigError::Invalid {
            config: config.to_owned(),
            message: format!("tls_server_config.client_ca_file: {err}"),
        })
    };
    let unverified = |mandatory| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verifier = match tls.client_auth_type {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert => unverified(false),
        ClientAuth::RequireAnyClientCert => unverified(true),
        ClientAuth::VerifyClientCertIfGiven => build(
            WebPkiClientVerifier::builder_with_provider(roots()?, Arc::clone(provider))
                .allow_unauthenticated(),
        )?,
        ClientAuth::RequireAndVerifyClientCert => build(
            WebPkiClientVerifier::builder_with_provider(roots()?, Arc::clone(provider)),
        )?,
    };
    Ok(match &tls.client_allowed_sans {
        Some(allowed) => Arc::new(AllowedSans {
            inner: verifier,
            allowed: allowed.clone(),
        }),
        None => verifier,
    })
}

/// `client_allowed_sans`: after the client auth type's own check, the
/// certificate must name one of the allowed DNS names or IP addresses.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    fn names_an_allowed_san(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        let dns: Vec<&str> = cert.valid_dns_names().collect();
        self.allowed
            .iter()
            .any(|allowed| match allowed.parse::<std::net::IpAddr>() {
                Ok(ip) => cert
                    .verify_is_valid_for_subject_name(&rustls_pki_types::ServerName::IpAddress(
                        ip.into(),
                    ))
                    .is_ok(),
                Err(_) => dns.iter().any(|name| name.eq_ignore_ascii_case(allowed)),
            })
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names_an_allowed_san(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a client may (or
/// must) send a certificate, which proves possession of its key but is
/// not checked against any CA, so it identifies nobody.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and key written beside `config`.
    fn files(dir: &Path) -> PathBuf {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("a.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
        dir.join("web.yml")
    }

    fn tls(extra: &str) -> TlsServerConfig {
        serde_yaml_ng::from_str(&format!("cert_file: a.crt\nkey_file: a.key\n{extra}")).unwrap()
    }

    fn build_err(config: &Path, extra: &str) -> String {
        build(&tls(extra), config).unwrap_err().to_string()
    }

    #[test]
    fn suites_and_curves_by_their_go_names() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        let built = build(
            &tls("cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305]\n\
                  curve_preferences: [X25519, CurveP256]\nmin_version: TLS12\nmax_version: TLS12\n"),
            &config,
        )
        .unwrap()
        .unwrap();
        assert_eq!(built.fingerprint.len(), 32 * 3 - 1);
        assert!(!built.verifies_client_certs);
        let err = build_err(&config, "cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n");
        assert!(
            err.contains("TLS_RSA_WITH_RC4_128_SHA") && err.contains("available"),
            "{err}"
        );
        let err = build_err(&config, "curve_preferences: [CurveP521]\n");
        assert!(err.contains("CurveP521"), "{err}");
    }

    #[test]
    fn files_are_named_when_they_fail() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        let missing = TlsServerConfig {
            key_file: Some("missing.key".into()),
            ..tls("")
        };
        let err = build(&missing, &config).unwrap_err().to_string();
        assert!(err.contains("missing.key"), "{err}");
        let swapped = TlsServerConfig {
            key_file: Some("a.crt".into()),
            ..tls("")
        };
        let err = build(&swapped, &config).unwrap_err().to_string();
        assert!(
            err.contains("a.crt") && err.contains("private key"),
            "{err}"
        );
        let half = TlsServerConfig {
            key_file: None,
            ..tls("")
        };
        let err = build(&half, &config).unwrap_err().to_string();
        assert!(err.contains("missing key_file"), "{err}");
        assert!(
            build(&TlsServerConfig::default(), &config)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn certificate_and_key_may_be_inline() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        let inline = TlsServerConfig {
            cert: Some(std::fs::read_to_string(dir.path().join("a.crt")).unwrap()),
            key: Some(std::fs::read_to_string(dir.path().join("a.key")).unwrap()),
            ..TlsServerConfig::default()
        };
        assert!(build(&inline, &config).unwrap().is_some());
        let broken = TlsServerConfig {
            key: Some("not a key".into()),
            ..inline
        };
        let err = build(&broken, &config).unwrap_err().to_string();
        assert!(err.contains("tls_server_config.key"), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        std::fs::write(
            dir.path().join("a.key"),
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let err = build_err(&config, "");
        assert!(err.contains("usable certificate"), "{err}");
    }

    #[test]
    fn verifying_modes_load_the_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        let built = build(
            &tls("client_auth_type: RequireAndVerifyClientCert\nclient_ca_file: a.crt\n"),
            &config,
        )
        .unwrap()
        .unwrap();
        assert!(built.verifies_client_certs);
        let err = build_err(
            &config,
            "client_auth_type: VerifyClientCertIfGiven\nclient_ca_file: nope.crt\n",
        );
        assert!(err.contains("nope.crt"), "{err}");
    }
}
