//! Memory of the host tokens already accepted, so a captured token cannot
//! be used a second time. Each accepted token's `(sub, jti)` is kept until
//! the token could no longer verify anyway (`exp` plus the leeway), then
//! forgotten: the memory holds at most a few minutes of requests.
//!
//! The memory is bounded, in all and per host. When it is full, new tokens
//! are refused (503 with `Retry-After`) rather than old ones forgotten:
//! forgetting early would let a replay through, while a refusal only makes
//! the host retry a moment later with a fresh token. (503 rather than 429:
//! the exporter retries both when shipping, but only server errors when
//! posting a command's result.) The memory does not
//! survive a restart; a token captured just before one could be replayed
//! once within the few minutes it has left.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Tokens remembered at most: about 25 MB when full. A host signs a few
/// tokens a minute, each remembered for at most 7 minutes (3 with the
/// exporter's 2-minute tokens), so this holds thousands of hosts.
pub const MAX_REMEMBERED: usize = 262_144;
/// Tokens remembered at most per host, so one host cannot fill the memory
/// for all: still over 150 requests a second for 7 minutes, which a host
/// flushing a long spool as fast as the receiver answers stays below.
pub const MAX_PER_CLIENT: usize = 65_536;

/// Why a verified token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefusal {
    /// The token was used before.
    #[error("client token was already used (replayed jti)")]
    Replayed,
    /// This host has [`MAX_PER_CLIENT`] live tokens remembered.
    #[error("too many requests from this client; retry with a fresh token shortly")]
    ClientBusy,
    /// [`MAX_REMEMBERED`] live tokens are remembered.
    #[error("too many live client tokens; retry with a fresh token shortly")]
    Full,
}

type Key = [u8; 16];

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<Key>,
    /// `(forget_at, key, client)`, earliest first.
    by_expiry: BinaryHeap<Reverse<(i64, Key, Arc<str>)>>,
    per_client: HashMap<Arc<str>, usize>,
}

/// The tokens seen recently.
#[derive(Debug)]
pub struct ReplayGuard {
    inner: Mutex<Inner>,
    capacity: usize,
    per_client: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::with_limits(MAX_REMEMBERED, MAX_PER_CLIENT)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` tokens, `per_client` of one host.
    pub fn with_limits(capacity: usize, per_client: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
            per_client,
        }
    }

    /// Accepts the first use of token `jti` of `client`, to be remembered
    /// until Unix time `forget_at` (after which it is refused as expired).
    pub fn admit(
        &self,
        client: &str,
        jti: &str,
        forget_at: i64,
        now: i64,
    ) -> Result<(), ReplayRefusal> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.forget_before(now);
        // A digest keeps each entry small whatever the `jti`'s length;
        // the NUL keeps ("ab", "c") and ("a", "bc") apart.
        let digest = Sha256::new()
            .chain_update(client.as_bytes())
            .chain_update([0])
            .chain_update(jti.as_bytes())
            .finalize();
        let mut key = Key::default();
        key.copy_from_slice(&digest[..16]);
        if inner.seen.contains(&key) {
            return Err(ReplayRefusal::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(ReplayRefusal::Full);
        }
        let client = match inner.per_client.get_key_value(client) {
            Some((_, &count)) if count >= self.per_client => {
                return Err(ReplayRefusal::ClientBusy);
            }
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(client),
        };
        *inner.per_client.entry(Arc::clone(&client)).or_default() += 1;
        inner.seen.insert(key);
        inner.by_expiry.push(Reverse((forget_at, key, client)));
        Ok(())
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn forget_before(&mut self, now: i64) {
        while let Some(Reverse((forget_at, _, _))) = self.by_expiry.peek()
            && *forget_at < now
        {
            let Some(Reverse((_, key, client))) = self.by_expiry.pop() else {
                break;
            };
            self.seen.remove(&key);
            if let Some(count) = self.per_client.get_mut(&client) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_client.remove(&client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_accepted_once_until_it_expires() {
        let guard = ReplayGuard::default();
        assert_eq!(guard.admit("c1", "j1", 100, 0), Ok(()));
        assert_eq!(
            guard.admit("c1", "j1", 100, 50),
            Err(ReplayRefusal::Replayed)
        );
        assert_eq!(
            guard.admit("c1", "j1", 100, 100),
            Err(ReplayRefusal::Replayed)
        );
        // Another host may pick the same jti; the pair is what counts.
        assert_eq!(guard.admit("c2", "j1", 100, 50), Ok(()));
        assert_eq!(guard.admit("c", "1j1", 100, 50), Ok(()));
        assert_eq!(guard.len(), 3);
        // Once expired it could not verify anyway, so it is forgotten.
        assert_eq!(guard.admit("c1", "j2", 200, 101), Ok(()));
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn a_full_memory_refuses_rather_than_forgets() {
        let guard = ReplayGuard::with_limits(3, 2);
        assert_eq!(guard.admit("a", "1", 100, 0), Ok(()));
        assert_eq!(guard.admit("a", "2", 100, 0), Ok(()));
        assert_eq!(
            guard.admit("a", "3", 100, 0),
            Err(ReplayRefusal::ClientBusy)
        );
        assert_eq!(guard.admit("b", "1", 100, 0), Ok(()));
        assert_eq!(guard.admit("c", "1", 100, 0), Err(ReplayRefusal::Full));
        // Still remembered while full.
        assert_eq!(guard.admit("a", "1", 100, 0), Err(ReplayRefusal::Replayed));
        // Room again once the remembered tokens expire.
        assert_eq!(guard.admit("c", "1", 300, 101), Ok(()));
        assert_eq!(guard.admit("a", "3", 300, 101), Ok(()));
        assert_eq!(guard.len(), 2);
    }
}
