//! Rate-limited warnings for refused credentials. Each refusal reason
//! writes at most one line per [`INTERVAL`]; the next line it writes says
//! how many were left out in between. A flood of forged tokens thus costs a
//! few lines a minute, and the first of each kind is still logged at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two lines of the same reason.
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Reason {
    last_logged: Instant,
    suppressed: u64,
}

/// Per-reason state of the refusal warnings.
#[derive(Debug, Default)]
pub struct FailureLog {
    reasons: Mutex<HashMap<&'static str, Reason>>,
}

impl FailureLog {
    /// Notes a refusal for `reason` at `now`; returns how many refusals of
    /// this reason went unlogged before it when this one is to be logged,
    /// `None` when it is to be left out.
    pub fn admit(&self, reason: &'static str, now: Instant) -> Option<u64> {
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        match reasons.get_mut(reason) {
            Some(state) if now.saturating_duration_since(state.last_logged) < INTERVAL => {
                state.suppressed = state.suppressed.saturating_add(1);
                None
            }
            Some(state) => {
                let suppressed = std::mem::take(&mut state.suppressed);
                state.last_logged = now;
                Some(suppressed)
            }
            None => {
                reasons.insert(
                    reason,
                    Reason {
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Logs a refused client token, unless this reason was logged less
    /// than [`INTERVAL`] ago. `error` must already be short
    /// (see [`dcmon_protocol::excerpt`]).
    pub fn client_token_refused(&self, reason: &'static str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.admit(reason, Instant::now()) {
            tracing::warn!(
                reason,
                error = %error,
                suppressed,
                "client token refused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_with_the_count_left_out() {
        let log = FailureLog::default();
        let start = Instant::now();
        assert_eq!(log.admit("expired", start), Some(0));
        assert_eq!(log.admit("bad_signature", start), Some(0));
        for i in 1..=5 {
            assert_eq!(log.admit("expired", start + Duration::from_secs(i)), None);
        }
        assert_eq!(log.admit("expired", start + INTERVAL), Some(5));
        assert_eq!(log.admit("expired", start + INTERVAL), None);
        assert_eq!(log.admit("expired", start + 3 * INTERVAL), Some(1));
    }
}
