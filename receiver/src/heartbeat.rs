//! Presence series for pushed hosts. A scraping Prometheus writes `up` for
//! every target it scrapes; hosts that push have nobody to do that, so the
//! receiver writes, every push interval and for every enrolled client,
//! `up{job="dcmon",instance}` (1 while its writes arrive, 0 once silent for
//! more than two intervals) and `dcmon_client_last_seen_timestamp_seconds`.
//! `up == 0` alerts then work for pushed hosts as for scraped ones.

use std::sync::Arc;
use std::time::Duration;

use dcmon_protocol::remote_write::SeriesSamples;

use crate::auth::ClientStore;
use crate::auth::clients::ClientError;
use crate::storage::Storage;

/// The presence series of every non-revoked client at `now_ms`.
pub fn presence_series(
    clients: &ClientStore,
    now_ms: i64,
    push_interval: Duration,
) -> Result<Vec<SeriesSamples>, ClientError> {
    let mut series = Vec::new();
    for client in clients.list(now_ms, push_interval)? {
        if client.status == "revoked" {
            continue;
        }
        let up = if client.status == "online" { 1.0 } else { 0.0 };
        series.push(SeriesSamples {
            labels: vec![
                ("__name__".into(), "up".into()),
                ("instance".into(), client.hostname.clone()),
                ("job".into(), "dcmon".into()),
            ],
            samples: vec![(now_ms, up)],
        });
        if let Some(seen) = client.last_seen {
            series.push(SeriesSamples {
                labels: vec![
                    (
                        "__name__".into(),
                        "dcmon_client_last_seen_timestamp_seconds".into(),
                    ),
                    ("instance".into(), client.hostname),
                ],
                samples: vec![(now_ms, seen)],
            });
        }
    }
    Ok(series)
}

/// Every `push_interval`, on multiples of it: writes the clients' activity
/// to their table and their presence series to storage.
pub fn spawn(
    clients: Arc<ClientStore>,
    storage: Storage,
    push_interval: Duration,
) -> tokio::task::JoinHandle<()> {
    crate::tick::store_every(storage, push_interval, "client presence", move |tick| {
        let store = Arc::clone(&clients);
        async move {
            tokio::task::spawn_blocking(move || {
                store.flush_activity()?;
                Ok((presence_series(&store, tick, push_interval)?, Vec::new()))
            })
            .await
            .unwrap_or_else(|err| Err(HeartbeatError::Task(err.to_string())))
        }
    })
}

/// Why a heartbeat tick wrote nothing.
#[derive(Debug, thiserror::Error)]
enum HeartbeatError {
    #[error(transparent)]
    Clients(#[from] ClientError),
    #[error("heartbeat task failed: {0}")]
    Task(String),
}
