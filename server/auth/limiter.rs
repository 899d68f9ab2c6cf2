//! Failed sign-ins per client address: after `limit` failures within `window`, that address's
//! credentialed requests are refused (429) until the failure that brought it to the limit
//! leaves the window.
//!
//! The failures are rows of the index (`sign_in_failures`), so every server sharing it counts
//! the same ones: behind a load balancer, a client gets `limit` tries per window in all, not
//! per replica. Each failure is a row of its own, inserted, never updated, so failures that
//! several servers record at once are all counted.
//!
//! A process remembers only the blocks it has read from the index, until they end: a block
//! never ends early (failures are only added; the rows pruned are outside every window), so
//! the memory can refuse a request the index would refuse, never let one through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::index::{Index, IndexError};

/// Most blocked addresses remembered at once; beyond, the memory is cleared (the index still
/// holds every block).
const CAPACITY: usize = 100_000;

pub struct FailureLimiter {
    index: Index,
    limit: u32,
    window: Duration,
    /// Addresses known to be blocked, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// Now in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl FailureLimiter {
    pub fn new(index: Index, limit: u32, window: Duration) -> Self {
        FailureLimiter {
            index,
            limit: limit.max(1),
            window,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// How long the address must wait, when it is over the limit. An index that cannot be
    /// read is an error: the caller refuses the sign-in rather than let it go uncounted.
    pub async fn blocked(&self, ip: IpAddr) -> Result<Option<Duration>, IndexError> {
        let now = Instant::now();
        {
            let mut blocked = self.blocked.lock().expect("limiter lock");
            match blocked.get(&ip) {
                Some(until) if *until > now => return Ok(Some(*until - now)),
                Some(_) => {
                    blocked.remove(&ip);
                }
                None => {}
            }
        }
        let now_ms = now_ms();
        let Some(at) = self
            .index
            .sign_in_block(&ip.to_string(), now_ms - self.window_ms(), self.limit)
            .await?
        else {
            return Ok(None);
        };
        // Blocked until the failure that brought it to the limit leaves the window.
        let wait = Duration::from_millis(
            u64::try_from(at + self.window_ms() - now_ms)
                .unwrap_or(0)
                .max(1),
        );
        let mut blocked = self.blocked.lock().expect("limiter lock");
        if blocked.len() >= CAPACITY {
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= CAPACITY {
                blocked.clear();
            }
        }
        blocked.insert(ip, now + wait);
        Ok(Some(wait))
    }

    pub async fn failed(&self, ip: IpAddr) -> Result<(), IndexError> {
        let now_ms = now_ms();
        self.index
            .add_sign_in_failure(&ip.to_string(), now_ms, now_ms - self.window_ms())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_after_the_limit_until_the_window_passes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        // Long enough for five fsynced writes on a loaded machine.
        let window = Duration::from_millis(1500);
        let limiter = FailureLimiter::new(index.clone(), 3, window);
        // A second server on the same index counts the same failures.
        let other_server = FailureLimiter::new(index, 3, window);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        limiter.failed(ip).await.unwrap();
        other_server.failed(ip).await.unwrap();
        assert!(limiter.blocked(ip).await.unwrap().is_none());
        assert!(other_server.blocked(ip).await.unwrap().is_none());
        limiter.failed(ip).await.unwrap();
        let wait = other_server
            .blocked(ip)
            .await
            .unwrap()
            .expect("blocked at the limit");
        assert!(wait <= window, "{wait:?}");
        assert!(limiter.blocked(ip).await.unwrap().is_some());
        assert!(limiter.blocked(other).await.unwrap().is_none());
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        assert!(limiter.blocked(ip).await.unwrap().is_none());
        assert!(other_server.blocked(ip).await.unwrap().is_none());
    }
}
