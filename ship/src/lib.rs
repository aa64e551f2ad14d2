//! Remote-write delivery, shared by the exporter (which ships its own
//! samples) and the receiver (which forwards what it accepted upstream):
//!
//! - [`batch`]: a compressed Remote-Write request and its re-encoding,
//! - [`config`]: an endpoint as a config-file table,
//! - [`message`]: which protobuf message (2.0 or 1.0) each endpoint gets,
//! - [`endpoint`]: one HTTP attempt, its auth and its classification,
//! - [`tls`]: the TLS client settings of an endpoint,
//! - [`retry`]: backoff with jitter and `Retry-After`,
//! - [`spool`]: the crash-safe on-disk queue of one endpoint,
//! - [`worker`]: the loop feeding one endpoint from a channel and its spool,
//! - [`lane`]: an endpoint opened, its worker started, and the outlet a
//!   producer hands batches to,
//! - [`metrics`]: one endpoint's counters.
//!
//! It decides nothing about what is sent: the programs build the batches.

pub mod batch;
pub mod config;
pub mod endpoint;
pub mod lane;
pub mod message;
pub mod metrics;
pub mod retry;
pub mod spool;
pub mod tls;
pub mod worker;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
