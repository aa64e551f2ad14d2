//! `basic_auth_users`: checks an `Authorization: Basic` value against the
//! configured bcrypt hashes.
//!
//! bcrypt costs tens of milliseconds by design, and Prometheus sends the
//! same credentials on every scrape, so a verified credential is
//! remembered by the SHA-256 of user and password: the cache holds no
//! password, and a lookup reveals nothing about one. The cache belongs to
//! one loaded configuration, so a changed or removed user is forgotten as
//! soon as the file is re-read.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Remembered credentials at most; the set is emptied when full, so a
/// flood of distinct passwords costs bcrypt time, never memory.
const CACHE_LIMIT: usize = 1024;

/// Users and their bcrypt hashes.
#[derive(Debug, Default)]
pub struct BasicAuthUsers {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuthUsers {
    /// Users from the config (hashes already checked to be bcrypt).
    pub fn new(users: BTreeMap<String, String>) -> Self {
        Self {
            users,
            verified: Mutex::default(),
        }
    }

    /// Whether basic auth is off (no users configured).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user named by an `Authorization` header value, if it is a Basic
    /// credential with the right password.
    pub fn verify_header(&self, value: &str) -> Option<String> {
        let (user, password) = basic_credentials(value)?;
        self.verify(&user, &password).then_some(user)
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let key = cache_key(user, password);
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.contains(&key) {
            return true;
        }
        drop(verified);
        let ok = match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                // Spend the same time on an unknown user as on a known one,
                // so timing does not tell which users exist.
                if let Some(hash) = self.users.values().next() {
                    let _ = bcrypt::verify(password, hash);
                }
                false
            }
        };
        if ok {
            verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= CACHE_LIMIT {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    // The length first, so ("ab", "c") and ("a", "bc") differ.
    digest.update((user.len() as u64).to_be_bytes());
    digest.update(user.as_bytes());
    digest.update(password.as_bytes());
    digest.finalize().into()
}

/// User and password of an `Authorization` value of the `Basic` scheme
/// (scheme in any case, RFC 9110 §11.1).
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BasicAuthUsers {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuthUsers::new(BTreeMap::from([("alice".to_owned(), hash)]))
    }

    fn header(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn the_right_password_and_only_it() {
        let users = users();
        assert_eq!(
            users.verify_header(&header("alice", "s3cret")).as_deref(),
            Some("alice")
        );
        // Cached now; still the same answer.
        assert!(users.verify("alice", "s3cret"));
        assert!(!users.verify("alice", "s3cret "));
        assert!(!users.verify("bob", "s3cret"));
        assert_eq!(users.verify_header(&header("alice", "wrong")), None);
    }

    #[test]
    fn malformed_headers_are_no_credentials() {
        for value in ["Bearer abc", "Basic !!!", "Basic", "Basic YWxpY2U="] {
            assert_eq!(basic_credentials(value), None, "{value}");
        }
        assert_eq!(
            basic_credentials("basic YTpiOmM="),
            Some(("a".to_owned(), "b:c".to_owned()))
        );
    }

    #[test]
    fn the_cache_key_separates_user_from_password() {
        assert_ne!(cache_key("ab", "c"), cache_key("a", "bc"));
    }
}
