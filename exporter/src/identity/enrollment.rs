//! The state directory: where the host key and enrollment live. It must not
//! be writable by other users (anyone who can replace the key or the
//! enrollment can impersonate the host), and the key must not be readable
//! by them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::{Deserialize, Serialize};

/// File name of the private key.
pub const KEY_FILE: &str = "client.key";
/// File name of the enrollment.
pub const ENROLLMENT_FILE: &str = "enrollment.json";

/// What registration left behind: enough to ship without the admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Receiver base URL, e.g. `https://dcmon.example:8000`.
    pub server: String,
    /// Client id (`sub`).
    pub client_id: String,
    /// The `instance` label the receiver gives this host.
    pub instance: String,
    /// JWT audience naming the receiver.
    pub audience: String,
    /// SHA-256 fingerprint of the certificate an `https://` receiver
    /// presented at enrolment, when no CA file was given; later
    /// connections must see the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_fingerprint: Option<String>,
    /// SHA-256 fingerprint of the CA of `server_ca_file` that the
    /// receiver's certificate chained to at enrolment; later certificates
    /// must chain to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca_fingerprint: Option<String>,
    /// The `--server-ca-file` given at enrolment, used unless the service
    /// names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca_file: Option<PathBuf>,
}

impl Enrollment {
    /// What the receiver's certificate was pinned to, if anything.
    pub fn pin(&self) -> Option<crate::receiver_tls::Pin> {
        use crate::receiver_tls::Pin;
        match (&self.server_ca_fingerprint, &self.server_fingerprint) {
            (Some(ca), _) => Some(Pin::Ca(ca.clone())),
            (None, Some(certificate)) => Some(Pin::Certificate(certificate.clone())),
            (None, None) => None,
        }
    }

    /// The receiver's remote-write URL.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.server.trim_end_matches('/'))
    }
}

/// The host's private key and enrollment, kept in the checked state
/// directory ([`crate::state_dir`]).
#[derive(Debug, Clone)]
pub struct IdentityStore {
    path: PathBuf,
}

impl IdentityStore {
    /// Opens `path`, creating it (mode 0700) if missing. Refuses a
    /// directory other users can write to (see [`crate::state_dir`]).
    pub fn open(path: &Path) -> anyhow::Result<IdentityStore> {
        crate::state_dir::prepare(path)?;
        Ok(IdentityStore {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The enrollment, if this host was registered. Refuses a file other
    /// users can write to: whoever rewrites it chooses where the host's
    /// tokens go and which client it claims to be.
    pub fn enrollment(&self) -> anyhow::Result<Option<Enrollment>> {
        let file = self.path.join(ENROLLMENT_FILE);
        let mode = match fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
        };
        if mode & 0o022 != 0 {
            bail!(
                "refusing enrollment {}: writable by other users (mode {:o}); chmod 600 it",
                file.display(),
                mode & 0o7777
            );
        }
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let enrollment =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        Ok(Some(enrollment))
    }

    /// The host's private key. Refuses a key file other users can read.
    pub fn private_key(&self) -> anyhow::Result<RsaPrivateKey> {
        let file = self.path.join(KEY_FILE);
        let mode = fs::metadata(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "refusing private key {}: readable by other users (mode {:o}); chmod 600 it",
                file.display(),
                mode & 0o7777
            );
        }
        let pem =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        RsaPrivateKey::from_pkcs8_pem(&pem).with_context(|| format!("parsing {}", file.display()))
    }

    /// Stores a new key and its enrollment, each replacing the old one
    /// atomically (write beside, fsync, rename).
    pub fn save(&self, key: &RsaPrivateKey, enrollment: &Enrollment) -> anyhow::Result<()> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding the private key")?;
        self.replace(KEY_FILE, pem.as_bytes())?;
        let json = serde_json::to_vec_pretty(enrollment).context("encoding the enrollment")?;
        self.replace(ENROLLMENT_FILE, &json)
    }

    fn replace(&self, name: &str, contents: &[u8]) -> anyhow::Result<()> {
        let target = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, &target)
            .with_context(|| format!("replacing {}", target.display()))?;
        fs::File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_world_writable_dirs_and_exposed_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let state = IdentityStore::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(state.enrollment().unwrap().is_none());

        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let enrollment = Enrollment {
            server: "http://127.0.0.1:8000/".into(),
            client_id: "c1".into(),
            instance: "gpu-01".into(),
            audience: "dcmon-receiver/x".into(),
            server_fingerprint: None,
            server_ca_fingerprint: None,
            server_ca_file: None,
        };
        state.save(&key, &enrollment).unwrap();
        assert_eq!(state.enrollment().unwrap(), Some(enrollment.clone()));
        assert_eq!(enrollment.write_url(), "http://127.0.0.1:8000/api/v1/write");
        assert_eq!(state.private_key().unwrap(), key);
        let key_file = dir.join(KEY_FILE);
        assert_eq!(
            fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = state.private_key().unwrap_err().to_string();
        assert!(err.contains("readable by other users"), "{err}");

        let enrollment_file = dir.join(ENROLLMENT_FILE);
        for mode in [0o666, 0o620, 0o602] {
            fs::set_permissions(&enrollment_file, fs::Permissions::from_mode(mode)).unwrap();
            let err = state.enrollment().unwrap_err().to_string();
            assert!(err.contains("writable by other users"), "{mode:o}: {err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
        fs::set_permissions(&enrollment_file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(state.enrollment().unwrap(), Some(enrollment));

        for mode in [0o777, 0o770] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let err = IdentityStore::open(&dir).unwrap_err().to_string();
            assert!(err.contains("writable by other users"), "{mode:o}: {err}");
        }
    }
}
