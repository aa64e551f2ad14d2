//! TLS client settings of an endpoint reached over `https://`: the
//! server's chain checked against a CA file or the system's roots, and
//! optionally a client certificate (mutual TLS, as Mimir or a
//! VictoriaMetrics cluster behind a proxy may ask for).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where an endpoint's TLS material lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM) the server's chain must lead to; the system's
    /// roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), sent when the server asks.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct TlsError {
    /// The file at fault (or a description of the setting).
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

impl TlsOptions {
    /// The rustls client settings these options describe.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.ca_file {
            Some(path) => roots_from_file(path)?,
            None => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                roots
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError {
                    path: key.display().to_string(),
                    msg: err.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|err| TlsError {
                        path: cert.display().to_string(),
                        msg: err.to_string(),
                    })
            }
            _ => Err(TlsError {
                path: "cert_file/key_file".into(),
                msg: "a client certificate needs both cert_file and key_file".into(),
            }),
        }
    }
}

/// The PEM certificates of `path`; an error names the file, as does one
/// for a file without any.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |msg: String| TlsError {
        path: path.display().to_string(),
        msg,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| bad(err.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// A root store of the CA certificates in `path`.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|err| TlsError {
            path: path.display().to_string(),
            msg: format!("not a usable CA certificate: {err}"),
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_build_a_config() {
        TlsOptions::default().client_config().unwrap();
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("absent.pem"), empty.clone()] {
            let options = TlsOptions {
                ca_file: Some(path.clone()),
                ..TlsOptions::default()
            };
            let err = options.client_config().unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let half = TlsOptions {
            cert_file: Some(empty),
            ..TlsOptions::default()
        };
        let err = half.client_config().unwrap_err();
        assert!(err.to_string().contains("needs both"), "{err}");
    }
}
