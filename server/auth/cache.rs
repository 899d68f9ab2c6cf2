//! Remembers recent successful password checks, so that a script sending HTTP Basic on every
//! request pays for Argon2 about once a minute instead of on every request.
//!
//! An entry is keyed by user and holds a keyed SHA-256 of the password (the key is random per
//! process, so the cache holds nothing an attacker could test guesses against offline) and the
//! stored hash it was checked against: when that hash changes (a new password), the entry no
//! longer matches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::passwords::random_bytes;

/// How long a successful check is remembered.
const TTL: Duration = Duration::from_secs(60);
/// Most users remembered at once.
const CAPACITY: usize = 1024;

struct Entry {
    digest: [u8; 32],
    stored_hash: String,
    at: Instant,
}

pub struct VerifiedCache {
    key: [u8; 32],
    entries: Mutex<HashMap<String, Entry>>,
}

impl VerifiedCache {
    pub fn new() -> Self {
        VerifiedCache {
            key: random_bytes::<32>(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update((user.len() as u64).to_be_bytes());
        hasher.update(user.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// Whether this password was verified for this user, against this stored hash, lately.
    pub fn holds(&self, user: &str, password: &str, stored_hash: &str) -> bool {
        let digest = self.digest(user, password);
        let entries = self.entries.lock().expect("cache lock");
        entries.get(user).is_some_and(|entry| {
            entry.at.elapsed() < TTL
                && entry.stored_hash == stored_hash
                && bool::from(entry.digest.ct_eq(&digest))
        })
    }

    pub fn insert(&self, user: &str, password: &str, stored_hash: &str) {
        let digest = self.digest(user, password);
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= CAPACITY && !entries.contains_key(user) {
            entries.retain(|_, entry| entry.at.elapsed() < TTL);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            user.to_string(),
            Entry {
                digest,
                stored_hash: stored_hash.to_string(),
                at: Instant::now(),
            },
        );
    }

    /// Forgets a user (password changed or user removed through this process).
    pub fn forget(&self, user: &str) {
        self.entries.lock().expect("cache lock").remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_same_password_and_hash() {
        let cache = VerifiedCache::new();
        cache.insert("ann", "password one", "$h1");
        assert!(cache.holds("ann", "password one", "$h1"));
        assert!(!cache.holds("ann", "password two", "$h1"));
        assert!(!cache.holds("ann", "password one", "$h2"), "hash changed");
        assert!(!cache.holds("bob", "password one", "$h1"));
        cache.forget("ann");
        assert!(!cache.holds("ann", "password one", "$h1"));
    }
}
