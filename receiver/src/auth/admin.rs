//! The admin token: random, 256 bits, kept in a 0600 file the receiver
//! creates on first start. It is never logged; the log names the file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why the admin token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading, creating or writing the file failed.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds no usable token.
    #[error("admin token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Length of a generated token: 32 random bytes (256 bits), hex-encoded.
const TOKEN_BYTES: usize = 32;

/// Reads the admin token from `path`, or creates the file (mode 0600, its
/// directory 0700 when new) with a fresh random token. Returns the token and
/// whether it was created. The token itself is never logged.
pub fn load_or_create_admin_token(path: &Path) -> Result<(String, bool), TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if token.len() < 32 {
                return Err(TokenFileError::Invalid {
                    path: path.display().to_string(),
                    reason: "token shorter than 32 characters",
                });
            }
            if std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "admin token file is readable by other users; chmod 600 it");
            }
            Ok((token, false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.exists())
            {
                std::fs::create_dir_all(dir).map_err(io)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
            let mut bytes = [0u8; TOKEN_BYTES];
            getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            let token = dcmon_protocol::identity::hex(&bytes);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(format!("{token}\n").as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((token, true))
        }
        Err(err) => Err(io(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_256_bit_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/admin-token");
        let (token, created) = load_or_create_admin_token(&path).unwrap();
        assert!(created);
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = load_or_create_admin_token(&path).unwrap();
        assert_eq!((again.as_str(), created), (token.as_str(), false));
    }

    #[test]
    fn refuses_a_short_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(load_or_create_admin_token(&path).is_err());
    }
}
