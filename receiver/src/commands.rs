//! The command queue: admins create commands for one host; the host
//! long-polls, takes its oldest pending command (moving it to `delivered`
//! in the same statement, so no command is handed out twice), runs it and
//! reports the result.
//!
//! A batch is one command created for many hosts at once (a list of ids
//! or names, or every active host): one command per host, each with the
//! usual life, tied together by a batch id so they can be listed and
//! cancelled as a whole. A host the batch names but the queue cannot reach
//! (unknown, revoked, listed twice) is reported for that host alone.
//!
//! States: `pending → delivered → succeeded | failed`, `pending → expired |
//! cancelled`; a delivered command whose result does not arrive by its
//! deadline becomes `failed`. Every transition keeps its time; finished
//! commands are kept for the retention window.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dcmon_protocol::commands::{
    Command, CommandResult, CommandStatus, DeliveredCommand, MAX_OUTPUT_BYTES,
};
use dcmon_protocol::identity::ClientRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use tokio::sync::Notify;

use crate::auth::clients::describe;
use crate::storage::now_ms;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No such command (or not this host's).
    #[error("no command {0}")]
    NotFound(i64),
    /// No active client with this id or host name (quoted short).
    #[error("no active client with {0}")]
    UnknownClient(String),
    /// The expiry does not fit the clock's range.
    #[error("the expiry is out of range")]
    BadExpiry,
    /// The command is not in a state that allows this.
    #[error("command {id} is {status}, not {expected}")]
    WrongState {
        /// Command id.
        id: i64,
        /// Its status.
        status: &'static str,
        /// The status the operation needs.
        expected: &'static str,
    },
    /// A result other than succeeded/failed.
    #[error("a result must be succeeded or failed")]
    BadResult,
}

/// A command as the API lists it: the command's `type` and `params` plus
/// its lifecycle. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CommandRecord {
    /// Id.
    pub id: i64,
    /// Target client id.
    pub client_id: String,
    /// Target host name; null if the client is gone.
    #[schema(required = true)]
    pub hostname: Option<String>,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
    /// Current status.
    pub status: CommandStatus,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds after which a pending command expires.
    pub expires_at: f64,
    /// Unix seconds of delivery.
    #[schema(required = true)]
    pub delivered_at: Option<f64>,
    /// Unix seconds by which a delivered command's result is due.
    #[schema(required = true)]
    pub deadline: Option<f64>,
    /// Unix seconds of the final transition.
    #[schema(required = true)]
    pub finished_at: Option<f64>,
    /// The host's exit code.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// The host's output.
    #[schema(required = true)]
    pub output: Option<String>,
    /// Why it failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// The batch it was created in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub batch_id: Option<i64>,
}

/// The hosts a batch is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchTargets {
    /// Every active (not revoked) host.
    All,
    /// These client ids or host names.
    Listed(Vec<String>),
}

/// What became of one host of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BatchEntry {
    /// The id or name as the batch named it.
    pub target: String,
    /// The command queued for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub command: Option<CommandRecord>,
    /// Why nothing was queued for it (unknown, revoked, listed twice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

/// The queue.
pub struct CommandQueue {
    conn: Mutex<Connection>,
    /// Woken when a command is created, so long polls answer at once.
    created: Notify,
    result_timeout: Duration,
    keep_for: Duration,
}

impl std::fmt::Debug for CommandQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandQueue").finish_non_exhaustive()
    }
}

const SELECT: &str = "SELECT c.id, c.client_id, k.hostname, c.command, c.status, c.created_by,
        c.created_ms, c.expires_ms, c.delivered_ms, c.deadline_ms, c.finished_ms,
        c.exit_code, c.output, c.error, b.batch_id
    FROM commands c LEFT JOIN clients k ON k.id = c.client_id
        LEFT JOIN command_batch_members b ON b.command_id = c.id";

fn seconds(ms: Option<i64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

fn record(row: &Row<'_>) -> rusqlite::Result<CommandRecord> {
    let command: String = row.get(3)?;
    let status: String = row.get(4)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("stored {what} unreadable").into(),
        )
    };
    Ok(CommandRecord {
        id: row.get(0)?,
        client_id: row.get(1)?,
        hostname: row.get(2)?,
        command: serde_json::from_str(&command).map_err(|_| bad("command"))?,
        status: CommandStatus::parse(&status).ok_or_else(|| bad("status"))?,
        created_by: row.get(5)?,
        created_at: row.get::<_, i64>(6)? as f64 / 1000.0,
        expires_at: row.get::<_, i64>(7)? as f64 / 1000.0,
        delivered_at: seconds(row.get(8)?),
        deadline: seconds(row.get(9)?),
        finished_at: seconds(row.get(10)?),
        exit_code: row.get(11)?,
        output: row.get(12)?,
        error: row.get(13)?,
        batch_id: row.get(14)?,
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Unix milliseconds `expires_in` after `now_ms`, refused rather than
/// wrapped when it does not fit.
pub fn expiry_ms(now_ms: i64, expires_in: Duration) -> Result<i64, QueueError> {
    // Added in i128 (a u128 of milliseconds from a Duration fits it), so
    // only a sum past i64 is refused, not a long duration from a negative clock.
    i128::try_from(expires_in.as_millis())
        .ok()
        .and_then(|ms| i64::try_from(i128::from(now_ms) + ms).ok())
        .ok_or(QueueError::BadExpiry)
}

/// The id of the active client `client` names (id or host name).
fn resolve(conn: &Connection, client: &str) -> Result<String, QueueError> {
    let target = ClientRef::parse(client);
    let (sql, value) = match target {
        ClientRef::Id(id) => (
            "SELECT id FROM clients WHERE id = ?1 AND revoked_ms IS NULL",
            id,
        ),
        ClientRef::Hostname(name) => (
            "SELECT id FROM clients WHERE hostname = ?1 AND revoked_ms IS NULL",
            name,
        ),
    };
    conn.query_row(sql, params![value], |r| r.get(0))
        .optional()?
        .ok_or_else(|| QueueError::UnknownClient(describe(target)))
}

/// Inserts one pending command; its id.
fn insert(
    conn: &Connection,
    client_id: &str,
    command: &Command,
    created_by: &str,
    now: i64,
    expires_ms: i64,
) -> Result<i64, QueueError> {
    let json = serde_json::to_string(command).expect("commands always serialize");
    conn.execute(
        "INSERT INTO commands (client_id, command, status, created_by, created_ms, expires_ms)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
        params![client_id, json, created_by, now, expires_ms],
    )?;
    Ok(conn.last_insert_rowid())
}

impl CommandQueue {
    /// Opens the queue in the database at `path`. A delivered command
    /// fails when no result arrives within `result_timeout`; finished
    /// commands are kept for `keep_for`.
    pub fn open(
        path: &Path,
        result_timeout: Duration,
        keep_for: Duration,
    ) -> Result<CommandQueue, QueueError> {
        let conn = crate::storage::schema::open_writer(path)?;
        Ok(CommandQueue {
            conn: Mutex::new(conn),
            created: Notify::new(),
            result_timeout,
            keep_for,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `command` for the active client named by id or host name
    /// (told apart by shape, see [`ClientRef`]).
    pub fn create(
        &self,
        client: &str,
        command: &Command,
        created_by: &str,
        expires_in: Duration,
    ) -> Result<CommandRecord, QueueError> {
        let now = now_ms();
        let expires_ms = expiry_ms(now, expires_in)?;
        let id = {
            let conn = self.conn();
            let client_id = resolve(&conn, client)?;
            insert(&conn, &client_id, command, created_by, now, expires_ms)?
        };
        // Read before waking pollers: the answer shows the command as created.
        let record = self.read(id)?.ok_or(QueueError::NotFound(id))?;
        self.created.notify_waiters();
        Ok(record)
    }

    /// Queues `command` once for each host of `targets` under a new batch
    /// id, in one transaction. Hosts that cannot be reached get an error
    /// entry and nothing queued; the others are queued all the same. With
    /// nothing queued at all, nothing is kept and the batch id is `None`.
    pub fn create_batch(
        &self,
        targets: &BatchTargets,
        command: &Command,
        created_by: &str,
        expires_in: Duration,
    ) -> Result<(Option<i64>, Vec<BatchEntry>), QueueError> {
        let now = now_ms();
        let expires_ms = expiry_ms(now, expires_in)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO command_batches (created_by, created_ms) VALUES (?1, ?2)",
            params![created_by, now],
        )?;
        let batch_id = tx.last_insert_rowid();
        let names: Vec<String> = match targets {
            BatchTargets::Listed(names) => names.clone(),
            BatchTargets::All => {
                let mut statement = tx.prepare(
                    "SELECT id FROM clients WHERE revoked_ms IS NULL ORDER BY hostname, id",
                )?;
                let ids = statement.query_map([], |r| r.get(0))?;
                ids.collect::<Result<_, _>>()?
            }
        };
        let mut queued: Vec<(usize, i64)> = Vec::new();
        let mut entries = Vec::with_capacity(names.len());
        let mut seen: Vec<String> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut entry = BatchEntry {
                target: name.clone(),
                command: None,
                error: None,
            };
            match resolve(&tx, name) {
                Err(QueueError::UnknownClient(what)) => {
                    entry.error = Some(format!("no active client with {what}"));
                }
                Err(err) => return Err(err),
                Ok(client_id) if seen.contains(&client_id) => {
                    entry.error = Some(format!("{name} names a host this batch lists already"));
                }
                Ok(client_id) => {
                    let id = insert(&tx, &client_id, command, created_by, now, expires_ms)?;
                    tx.execute(
                        "INSERT INTO command_batch_members (command_id, batch_id) VALUES (?1, ?2)",
                        params![id, batch_id],
                    )?;
                    seen.push(client_id);
                    queued.push((i, id));
                }
            }
            entries.push(entry);
        }
        if queued.is_empty() {
            tx.rollback()?;
            return Ok((None, entries));
        }
        tx.commit()?;
        drop(conn);
        for (i, id) in queued {
            entries[i].command = self.read(id)?;
        }
        self.created.notify_waiters();
        Ok((Some(batch_id), entries))
    }

    /// A batch's commands, oldest first; `None` when there is no such batch.
    pub fn batch(&self, batch_id: i64) -> Result<Option<Vec<CommandRecord>>, QueueError> {
        self.sweep()?;
        let conn = self.conn();
        let exists = conn
            .query_row(
                "SELECT 1 FROM command_batches WHERE id = ?1",
                params![batch_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let mut statement =
            conn.prepare(&format!("{SELECT} WHERE b.batch_id = ?1 ORDER BY c.id"))?;
        let rows = statement.query_map(params![batch_id], record)?;
        Ok(Some(rows.collect::<Result<_, _>>()?))
    }

    /// Cancels every still-pending command of a batch; the batch as it
    /// then stands (`None`: no such batch).
    pub fn cancel_batch(&self, batch_id: i64) -> Result<Option<Vec<CommandRecord>>, QueueError> {
        self.sweep()?;
        self.conn().execute(
            "UPDATE commands SET status = 'cancelled', finished_ms = ?2
             WHERE status = 'pending'
               AND id IN (SELECT command_id FROM command_batch_members WHERE batch_id = ?1)",
            params![batch_id, now_ms()],
        )?;
        self.batch(batch_id)
    }

    /// One command.
    pub fn get(&self, id: i64) -> Result<Option<CommandRecord>, QueueError> {
        self.sweep()?;
        self.read(id)
    }

    /// One command as stored, for operations that have swept already.
    fn read(&self, id: i64) -> Result<Option<CommandRecord>, QueueError> {
        Ok(self
            .conn()
            .query_row(&format!("{SELECT} WHERE c.id = ?1"), params![id], record)
            .optional()?)
    }

    /// Commands, newest first, optionally for one client (id or host
    /// name) and in one status.
    pub fn list(
        &self,
        client: Option<&str>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, QueueError> {
        self.list_in(client, status, None, limit)
    }

    /// [`CommandQueue::list`], optionally only one batch's commands.
    pub fn list_in(
        &self,
        client: Option<&str>,
        status: Option<CommandStatus>,
        batch: Option<i64>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, QueueError> {
        self.sweep()?;
        let (by_id, by_name) = match client.map(ClientRef::parse) {
            None => (None, None),
            Some(ClientRef::Id(id)) => (Some(id), None),
            Some(ClientRef::Hostname(name)) => (None, Some(name)),
        };
        let conn = self.conn();
        let mut statement = conn.prepare(&format!(
            "{SELECT} WHERE (?1 IS NULL OR c.client_id = ?1) AND (?4 IS NULL OR k.hostname = ?4)
                AND (?2 IS NULL OR c.status = ?2) AND (?5 IS NULL OR b.batch_id = ?5)
             ORDER BY c.id DESC LIMIT ?3"
        ))?;
        let rows = statement.query_map(
            params![
                by_id,
                status.map(CommandStatus::name),
                i64::try_from(limit).unwrap_or(i64::MAX),
                by_name,
                batch
            ],
            record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Cancels a pending command.
    pub fn cancel(&self, id: i64) -> Result<CommandRecord, QueueError> {
        self.sweep()?;
        let changed = self.conn().execute(
            "UPDATE commands SET status = 'cancelled', finished_ms = ?2
             WHERE id = ?1 AND status = 'pending'",
            params![id, now_ms()],
        )?;
        let current = self.read(id)?.ok_or(QueueError::NotFound(id))?;
        if changed == 0 {
            return Err(QueueError::WrongState {
                id,
                status: current.status.name(),
                expected: "pending",
            });
        }
        Ok(current)
    }

    /// Hands out `client_id`'s oldest pending command, marking it delivered
    /// in the same statement: two pollers never get the same command.
    pub fn take_next(&self, client_id: &str) -> Result<Option<DeliveredCommand>, QueueError> {
        self.sweep()?;
        let now = now_ms();
        let deadline = now + self.result_timeout.as_millis() as i64;
        let taken: Option<(i64, String)> = self
            .conn()
            .query_row(
                "UPDATE commands SET status = 'delivered', delivered_ms = ?2, deadline_ms = ?3
                 WHERE id = (SELECT id FROM commands
                             WHERE client_id = ?1 AND status = 'pending' AND expires_ms > ?2
                             ORDER BY id LIMIT 1)
                 RETURNING id, command",
                params![client_id, now, deadline],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, command)) = taken else {
            return Ok(None);
        };
        let command = serde_json::from_str(&command).map_err(|_| QueueError::NotFound(id))?;
        Ok(Some(DeliveredCommand {
            id,
            command,
            deadline: deadline / 1000,
        }))
    }

    /// Waits up to `timeout` for a command for `client_id`.
    pub async fn wait_next(
        self: &std::sync::Arc<Self>,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Option<DeliveredCommand>, QueueError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a command created in between
            // still wakes this poll.
            let created = self.created.notified();
            tokio::pin!(created);
            created.as_mut().enable();
            let queue = std::sync::Arc::clone(self);
            let client = client_id.to_owned();
            let taken = tokio::task::spawn_blocking(move || queue.take_next(&client))
                .await
                .expect("queue task panicked")?;
            if taken.is_some() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(until, created).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Records the host's result for its delivered command.
    pub fn finish(
        &self,
        client_id: &str,
        id: i64,
        result: CommandResult,
    ) -> Result<CommandRecord, QueueError> {
        if !matches!(
            result.status,
            CommandStatus::Succeeded | CommandStatus::Failed
        ) {
            return Err(QueueError::BadResult);
        }
        self.sweep()?;
        let changed = self.conn().execute(
            "UPDATE commands SET status = ?3, finished_ms = ?4, exit_code = ?5, output = ?6,
                 error = ?7
             WHERE id = ?1 AND client_id = ?2 AND status = 'delivered'",
            params![
                id,
                client_id,
                result.status.name(),
                now_ms(),
                result.exit_code,
                truncate(result.output, MAX_OUTPUT_BYTES),
                result.error.map(|e| truncate(e, 4096)),
            ],
        )?;
        let current = self
            .read(id)?
            .filter(|c| c.client_id == client_id)
            .ok_or(QueueError::NotFound(id))?;
        if changed == 0 {
            return Err(QueueError::WrongState {
                id,
                status: current.status.name(),
                expected: "delivered",
            });
        }
        Ok(current)
    }

    /// Expires pending commands past their expiry, fails delivered ones
    /// past their deadline, and forgets finished ones past the keep time.
    pub fn sweep(&self) -> Result<(), QueueError> {
        let now = now_ms();
        let conn = self.conn();
        conn.execute(
            "UPDATE commands SET status = 'expired', finished_ms = ?1
             WHERE status = 'pending' AND expires_ms <= ?1",
            params![now],
        )?;
        conn.execute(
            "UPDATE commands SET status = 'failed', finished_ms = ?1, error = 'no result'
             WHERE status = 'delivered' AND deadline_ms <= ?1",
            params![now],
        )?;
        conn.execute(
            "DELETE FROM commands WHERE finished_ms < ?1",
            params![now - self.keep_for.as_millis() as i64],
        )?;
        // Batches whose commands are all gone go with them.
        conn.execute(
            "DELETE FROM command_batch_members
             WHERE command_id NOT IN (SELECT id FROM commands)",
            [],
        )?;
        conn.execute(
            "DELETE FROM command_batches
             WHERE id NOT IN (SELECT batch_id FROM command_batch_members)
               AND created_ms < ?1",
            params![now - self.keep_for.as_millis() as i64],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_expiry_past_the_clock_range_is_refused() {
        assert_eq!(expiry_ms(1_000, Duration::from_secs(1)).unwrap(), 2_000);
        assert!(matches!(
            expiry_ms(1_000, Duration::MAX),
            Err(QueueError::BadExpiry)
        ));
        assert!(matches!(
            expiry_ms(i64::MAX, Duration::from_millis(1)),
            Err(QueueError::BadExpiry)
        ));
        // A duration past i64 milliseconds still fits from a negative clock.
        assert_eq!(
            expiry_ms(-2, Duration::from_millis(i64::MAX as u64 + 1)).unwrap(),
            i64::MAX - 1
        );
    }

    proptest! {
        #[test]
        fn any_expiry_is_added_without_overflow(now in any::<i64>(), secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let expires_in = Duration::new(secs, nanos);
            let exact = i128::from(now) + i128::try_from(expires_in.as_millis()).unwrap_or(i128::MAX);
            match expiry_ms(now, expires_in) {
                Ok(ms) => prop_assert_eq!(i128::from(ms), exact),
                Err(_) => prop_assert!(exact > i128::from(i64::MAX)),
            }
        }
    }
}
