//! Enrolled hosts ("clients"): their public keys, which verify the JWTs
//! they sign, and their activity for the clients registry.
//!
//! A host is identified by its host name, which becomes the `instance`
//! label of everything it writes; registering the same host name again
//! (admin token required) replaces its key and keeps its client id. Client
//! ids are 24 lower-case hex digits, a shape no valid host name has, so
//! "id or host name" always names one client (see [`ClientRef`]); a name
//! differing from a registered one only in case is refused, as DNS would
//! not tell them apart. Keys
//! are read from the database on every request, so a revocation, even one
//! made with the CLI while the receiver runs, takes effect at once; parsed
//! keys are cached by fingerprint. Activity (last seen, address, version) is
//! kept in memory and written to the database by the heartbeat.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dcmon_protocol::identity::{
    self, CLIENT_ID_LEN, ClientInfo, ClientRef, REGISTRATION_MAX_SKEW_SECS, RegisterRequest,
    RegisterResponse, VerifiedKey,
};
use jsonwebtoken::DecodingKey;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rusqlite::{Connection, OptionalExtension, params};

use crate::storage::now_ms;
use dcmon_protocol::excerpt::excerpt;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The database failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The registration's nonce was used before.
    #[error("this registration was already used (replayed nonce)")]
    Replayed,
    /// No such client (the reference quoted short).
    #[error("no active client with {0}")]
    Unknown(String),
    /// The host name collides with another client's id or name.
    #[error("host name {name:?} {why}")]
    NameTaken {
        /// The refused name.
        name: String,
        /// What it collides with.
        why: &'static str,
    },
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Random(String),
    /// A stored key does not parse (the database was edited by hand).
    #[error("stored key of client {0} is unreadable")]
    BadStoredKey(String),
}

/// A client allowed to authenticate, and the key its JWTs must verify with.
#[derive(Clone)]
pub struct ActiveClient {
    /// Client id (`sub`).
    pub id: String,
    /// Host name (`instance`).
    pub hostname: String,
    /// Its public key, ready for JWT verification.
    pub key: Arc<DecodingKey>,
}

impl std::fmt::Debug for ActiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveClient")
            .field("id", &self.id)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// What the receiver last saw of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Activity {
    last_seen_ms: i64,
    address: Option<String>,
    version: Option<String>,
}

/// The clients table, with in-memory activity not yet written.
pub struct ClientStore {
    conn: Mutex<Connection>,
    audience: String,
    /// Parsed keys by fingerprint: parsing costs more than verifying.
    keys: Mutex<HashMap<String, Arc<DecodingKey>>>,
    /// Activity since the last flush, by client id.
    activity: Mutex<HashMap<String, Activity>>,
}

impl std::fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStore")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex(bytes: usize) -> Result<String, ClientError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ClientError::Random(e.to_string()))?;
    Ok(identity::hex(&buf))
}

/// How a client's last-seen age reads in the registry.
pub fn status(last_seen_ms: Option<i64>, now_ms: i64, push_interval: Duration) -> &'static str {
    let interval = push_interval.as_millis() as i64;
    match last_seen_ms {
        None => "never",
        Some(seen) if now_ms - seen <= 2 * interval => "online",
        Some(seen) if now_ms - seen <= 10 * interval => "stale",
        Some(_) => "offline",
    }
}

impl ClientStore {
    /// Opens the clients table of the database at `path`, creating the
    /// receiver's JWT audience on first use.
    pub fn open(path: &Path) -> Result<ClientStore, ClientError> {
        let conn = crate::storage::schema::open_writer(path)?;
        let audience = format!("dcmon-receiver/{}", random_hex(16)?);
        conn.execute(
            "INSERT INTO settings (name, value) VALUES ('jwt_audience', ?1)
             ON CONFLICT (name) DO NOTHING",
            params![audience],
        )?;
        let audience: String = conn.query_row(
            "SELECT value FROM settings WHERE name = 'jwt_audience'",
            [],
            |r| r.get(0),
        )?;
        Ok(ClientStore {
            conn: Mutex::new(conn),
            audience,
            keys: Mutex::default(),
            activity: Mutex::default(),
        })
    }

    /// The `aud` every client JWT must carry: unique to this receiver's
    /// database, so a token made for one receiver is refused by another.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Stores a verified registration: a new client, or a new key for a
    /// known host name. Refuses a nonce seen before.
    pub fn register(
        &self,
        request: &RegisterRequest,
        key: &VerifiedKey,
    ) -> Result<RegisterResponse, ClientError> {
        let now = now_ms();
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        // Nonces older than the accepted timestamp skew can never verify again.
        tx.execute(
            "DELETE FROM registration_nonces WHERE seen_ms < ?1",
            params![now - 2 * REGISTRATION_MAX_SKEW_SECS * 1000],
        )?;
        let fresh = tx.execute(
            "INSERT INTO registration_nonces (nonce, seen_ms) VALUES (?1, ?2)
             ON CONFLICT (nonce) DO NOTHING",
            params![request.nonce, now],
        )?;
        if fresh == 0 {
            return Err(ClientError::Replayed);
        }
        // Names are checked to never look like ids; this holds for ids
        // stored before that check too.
        let taken: Option<(String, String)> = tx
            .query_row(
                "SELECT id, hostname FROM clients
                 WHERE id = ?1 OR (hostname = ?1 COLLATE NOCASE AND hostname != ?1)
                 LIMIT 1",
                params![request.hostname],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, _)) = taken {
            return Err(ClientError::NameTaken {
                name: excerpt(&request.hostname).into_owned(),
                why: if id == request.hostname {
                    "is another client's id"
                } else {
                    "differs from a registered host name only in case"
                },
            });
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM clients WHERE hostname = ?1",
                params![request.hostname],
                |r| r.get(0),
            )
            .optional()?;
        let replaced = existing.is_some();
        let id = match existing {
            Some(id) => id,
            None => random_hex(CLIENT_ID_LEN / 2)?,
        };
        tx.execute(
            "INSERT INTO clients (id, hostname, machine_id, public_key, fingerprint,
                                  exporter_version, registered_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET
                 machine_id = excluded.machine_id, public_key = excluded.public_key,
                 fingerprint = excluded.fingerprint,
                 exporter_version = excluded.exporter_version,
                 registered_ms = excluded.registered_ms, revoked_ms = NULL",
            params![
                id,
                request.hostname,
                request.machine_id,
                key.pem(),
                key.fingerprint,
                request.exporter_version,
                now
            ],
        )?;
        tx.commit()?;
        Ok(RegisterResponse {
            client_id: id,
            instance: request.hostname.clone(),
            audience: self.audience.clone(),
            replaced,
        })
    }

    /// The client with this id, if it exists and is not revoked.
    pub fn active(&self, id: &str) -> Result<Option<ActiveClient>, ClientError> {
        let row: Option<(String, String, String)> = lock(&self.conn)
            .prepare_cached(
                "SELECT hostname, public_key, fingerprint FROM clients
                 WHERE id = ?1 AND revoked_ms IS NULL",
            )?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((hostname, pem, fingerprint)) = row else {
            return Ok(None);
        };
        let key = self.decoding_key(id, &pem, fingerprint)?;
        Ok(Some(ActiveClient {
            id: id.to_owned(),
            hostname,
            key,
        }))
    }

    fn decoding_key(
        &self,
        id: &str,
        pem: &str,
        fingerprint: String,
    ) -> Result<Arc<DecodingKey>, ClientError> {
        if let Some(key) = lock(&self.keys).get(&fingerprint) {
            return Ok(Arc::clone(key));
        }
        let public = RsaPublicKey::from_public_key_pem(pem)
            .map_err(|_| ClientError::BadStoredKey(id.to_owned()))?;
        let (n, e) = identity::key_components(&public);
        let key = Arc::new(DecodingKey::from_rsa_raw_components(&n, &e));
        lock(&self.keys).insert(fingerprint, Arc::clone(&key));
        Ok(key)
    }

    /// Notes an authenticated request from a client.
    pub fn record_activity(&self, id: &str, address: Option<String>, version: Option<String>) {
        let mut activity = lock(&self.activity);
        let entry = activity.entry(id.to_owned()).or_default();
        entry.last_seen_ms = now_ms();
        if address.is_some() {
            entry.address = address;
        }
        if version.is_some() {
            entry.version = version;
        }
    }

    /// Writes the activity gathered since the last flush.
    pub fn flush_activity(&self) -> Result<(), ClientError> {
        let pending: Vec<(String, Activity)> = lock(&self.activity).drain().collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        for (id, activity) in &pending {
            tx.execute(
                "UPDATE clients SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?2),
                     last_address = coalesce(?3, last_address),
                     exporter_version = coalesce(?4, exporter_version)
                 WHERE id = ?1",
                params![
                    id,
                    activity.last_seen_ms,
                    activity.address,
                    activity.version
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every client, by host name, with its status at `now_ms`.
    pub fn list(
        &self,
        now_ms: i64,
        push_interval: Duration,
    ) -> Result<Vec<ClientInfo>, ClientError> {
        let pending = lock(&self.activity).clone();
        let conn = lock(&self.conn);
        let mut statement = conn.prepare(
            "SELECT id, hostname, machine_id, fingerprint, registered_ms, last_seen_ms,
                    last_address, exporter_version, revoked_ms
             FROM clients ORDER BY hostname",
        )?;
        let rows = statement.query_map([], |row| {
            let id: String = row.get(0)?;
            let fresh = pending.get(&id);
            let stored_seen: Option<i64> = row.get(5)?;
            let last_seen = match (stored_seen, fresh) {
                (Some(a), Some(b)) => Some(a.max(b.last_seen_ms)),
                (a, b) => a.or(b.map(|b| b.last_seen_ms)),
            };
            let revoked: Option<i64> = row.get(8)?;
            let status = match revoked {
                Some(_) => "revoked",
                None => status(last_seen, now_ms, push_interval),
            };
            Ok(ClientInfo {
                hostname: row.get(1)?,
                machine_id: row.get(2)?,
                key_fingerprint: row.get(3)?,
                registered_at: row.get::<_, i64>(4)? as f64 / 1000.0,
                last_seen: last_seen.map(|ms| ms as f64 / 1000.0),
                status: status.to_owned(),
                last_address: fresh.and_then(|a| a.address.clone()).or(row.get(6)?),
                exporter_version: fresh
                    .and_then(|a| a.version.clone())
                    .map_or_else(|| row.get(7), Ok)?,
                id,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a client by id or host name (told apart by shape, see
    /// [`ClientRef`]); its next request is refused. Returns the client id.
    pub fn revoke(&self, id_or_hostname: &str) -> Result<String, ClientError> {
        let target = ClientRef::parse(id_or_hostname);
        let (sql, value) = match target {
            ClientRef::Id(id) => (
                "UPDATE clients SET revoked_ms = ?2
                 WHERE id = ?1 AND revoked_ms IS NULL RETURNING id",
                id,
            ),
            ClientRef::Hostname(name) => (
                "UPDATE clients SET revoked_ms = ?2
                 WHERE hostname = ?1 AND revoked_ms IS NULL RETURNING id",
                name,
            ),
        };
        let id: Option<String> = lock(&self.conn)
            .query_row(sql, params![value, now_ms()], |r| r.get(0))
            .optional()?;
        id.ok_or_else(|| ClientError::Unknown(describe(target)))
    }
}

/// A client reference as error texts quote it: short, and saying which
/// of id or host name it was read as.
pub fn describe(target: ClientRef<'_>) -> String {
    match target {
        ClientRef::Id(id) => format!("id {id}"),
        ClientRef::Hostname(name) => format!("host name {:?}", excerpt(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;

    fn registration(
        key: &RsaPrivateKey,
        host: &str,
        nonce: &str,
    ) -> (RegisterRequest, VerifiedKey) {
        let now = now_ms() / 1000;
        let request = RegisterRequest::signed(key, host, "ab12", now, nonce, "0.1.0").unwrap();
        let verified = request.verify(now).unwrap();
        (request, verified)
    }

    #[test]
    fn register_replace_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = ClientStore::open(&path).unwrap();
        let mut rng = rsa::rand_core::OsRng;
        let first = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let (req, key) = registration(&first, "gpu-01", &"1".repeat(32));
        let registered = store.register(&req, &key).unwrap();
        assert!(!registered.replaced);
        assert_eq!(registered.instance, "gpu-01");
        assert!(registered.audience.starts_with("dcmon-receiver/"));
        assert!(matches!(
            store.register(&req, &key),
            Err(ClientError::Replayed)
        ));

        let second = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let (req2, key2) = registration(&second, "gpu-01", &"2".repeat(32));
        let again = store.register(&req2, &key2).unwrap();
        assert!(again.replaced);
        assert_eq!(again.client_id, registered.client_id);
        let listed = store.list(now_ms(), Duration::from_secs(30)).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key_fingerprint, key2.fingerprint);
        assert_eq!(listed[0].status, "never");

        store.record_activity(&registered.client_id, Some("10.0.0.7:4000".into()), None);
        let listed = store.list(now_ms(), Duration::from_secs(30)).unwrap();
        assert_eq!(listed[0].status, "online");
        assert_eq!(listed[0].last_address.as_deref(), Some("10.0.0.7:4000"));
        store.flush_activity().unwrap();
        let listed = store
            .list(now_ms() + 120_000, Duration::from_secs(30))
            .unwrap();
        assert_eq!(listed[0].status, "stale");
        assert_eq!(listed[0].last_address.as_deref(), Some("10.0.0.7:4000"));

        assert!(store.active(&registered.client_id).unwrap().is_some());
        assert_eq!(store.revoke("gpu-01").unwrap(), registered.client_id);
        assert!(store.active(&registered.client_id).unwrap().is_none());
        assert!(matches!(
            store.revoke("gpu-01"),
            Err(ClientError::Unknown(_))
        ));
        // The audience survives a reopen: tokens stay valid across restarts.
        let audience = store.audience().to_owned();
        drop(store);
        assert_eq!(ClientStore::open(&path).unwrap().audience(), audience);
    }

    #[test]
    fn names_never_collide_with_ids_or_differ_only_in_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClientStore::open(&dir.path().join("db.sqlite")).unwrap();
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let (req, verified) = registration(&key, "gpu-01", &"1".repeat(32));
        let first = store.register(&req, &verified).unwrap();
        assert!(identity::is_client_id(&first.client_id));

        // Such names fail `verify`; the store refuses them on its own too.
        for (name, nonce) in [(first.client_id.as_str(), "2"), ("GPU-01", "3")] {
            let request = RegisterRequest::signed(
                &key,
                name,
                "ab12",
                now_ms() / 1000,
                &nonce.repeat(32),
                "0.1.0",
            )
            .unwrap();
            assert!(
                matches!(
                    store.register(&request, &verified),
                    Err(ClientError::NameTaken { .. })
                ),
                "{name}"
            );
        }
        assert_eq!(
            store.list(now_ms(), Duration::from_secs(30)).unwrap().len(),
            1
        );
        assert!(matches!(
            store.revoke("GPU-01"),
            Err(ClientError::Unknown(_))
        ));
        assert_eq!(store.revoke(&first.client_id).unwrap(), first.client_id);
        let err = store.revoke(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn status_follows_last_seen_age() {
        let interval = Duration::from_secs(30);
        assert_eq!(status(None, 0, interval), "never");
        assert_eq!(status(Some(0), 60_000, interval), "online");
        assert_eq!(status(Some(0), 60_001, interval), "stale");
        assert_eq!(status(Some(0), 300_000, interval), "stale");
        assert_eq!(status(Some(0), 300_001, interval), "offline");
    }
}
