//! Scoped tokens for callers that cannot sign JWTs: `read` (Grafana's
//! Prometheus data source) and `write` (a stock Prometheus remote-writing).
//! The admin creates them with `dcmon-receiver token create`; the token is
//! printed once and only its SHA-256 hash is stored, in the receiver's
//! database, so a revocation takes effect on the next request.

use std::path::Path;
use std::sync::Mutex;

use dcmon_protocol::identity::hex;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::storage::now_ms;

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// The Prometheus query API and `/metrics`.
    Read,
    /// `POST /api/v1/write` only.
    Write,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Unique name.
    pub name: String,
    /// Scope.
    pub scope: Scope,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Revocation time, ms, if revoked.
    pub revoked_ms: Option<i64>,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The database failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A token with this name exists.
    #[error("a token named {0:?} exists already")]
    Exists(String),
    /// No token with this name.
    #[error("no token named {0:?}")]
    Unknown(String),
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Random(String),
    /// The name is unusable.
    #[error("token names are 1-64 characters of letters, digits, '-', '_' and '.'")]
    BadName,
}

/// Scoped tokens in the receiver's database.
#[derive(Debug)]
pub struct TokenStore {
    conn: Mutex<Connection>,
}

/// Prefix of every scoped token, so a leaked one is recognisable.
const PREFIX: &str = "dcmon_";

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl TokenStore {
    /// Opens the token table of the database at `path` (created and
    /// migrated by the storage on first use).
    pub fn open(path: &Path) -> Result<TokenStore, TokenError> {
        let conn = crate::storage::schema::open_writer(path)?;
        Ok(TokenStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a token and returns its secret, which is not stored.
    pub fn create(&self, name: &str, scope: Scope) -> Result<String, TokenError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(TokenError::BadName);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let secret = format!("{PREFIX}{}", hex(&bytes));
        let inserted = self.conn().execute(
            "INSERT INTO tokens (name, scope, hash, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![name, scope.as_str(), hash(&secret), now_ms()],
        )?;
        if inserted == 0 {
            return Err(TokenError::Exists(name.to_owned()));
        }
        Ok(secret)
    }

    /// Every token, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare("SELECT name, scope, created_ms, revoked_ms FROM tokens ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            Ok(TokenInfo {
                name: row.get(0)?,
                scope: Scope::parse(&row.get::<_, String>(1)?).unwrap_or(Scope::Read),
                created_ms: row.get(2)?,
                revoked_ms: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token by name; effective on the next request.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let changed = self.conn().execute(
            "UPDATE tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, now_ms()],
        )?;
        if changed == 0 {
            return Err(TokenError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    /// The name and scope of a valid (not revoked) token.
    pub fn lookup(&self, token: &str) -> Result<Option<(String, Scope)>, TokenError> {
        if !token.starts_with(PREFIX) {
            return Ok(None);
        }
        let found: Option<(String, String)> = self
            .conn()
            .prepare_cached(
                "SELECT name, scope FROM tokens WHERE hash = ?1 AND revoked_ms IS NULL",
            )?
            .query_row(params![hash(token)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(found.and_then(|(name, scope)| Scope::parse(&scope).map(|s| (name, s))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = TokenStore::open(&path).unwrap();
        let secret = store.create("grafana", Scope::Read).unwrap();
        assert!(secret.starts_with("dcmon_") && secret.len() == 70);
        assert_eq!(
            store.lookup(&secret).unwrap(),
            Some(("grafana".into(), Scope::Read))
        );
        assert_eq!(store.lookup("dcmon_nope").unwrap(), None);
        assert!(matches!(
            store.create("grafana", Scope::Write),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            store.create("bad name", Scope::Write),
            Err(TokenError::BadName)
        ));
        // Only the hash is stored.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
        store.revoke("grafana").unwrap();
        assert_eq!(store.lookup(&secret).unwrap(), None);
        assert!(matches!(
            store.revoke("grafana"),
            Err(TokenError::Unknown(_))
        ));
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_ms.is_some());
    }
}
