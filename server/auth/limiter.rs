//! Failed sign-ins per client address: after `limit` failures within `window`, that address's
//! credentialed requests are refused (429) until the oldest failure leaves the window.
//!
//! Kept in this process's memory: with several replicas behind a load balancer, each counts
//! the failures it sees, so a client may try up to `limit` times per replica and window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once; beyond, the oldest entries are dropped first.
const CAPACITY: usize = 100_000;

pub struct FailureLimiter {
    limit: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureLimiter {
            limit: limit.max(1) as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long the address must wait, when it is over the limit.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("limiter lock");
        let times = failures.get_mut(&ip)?;
        let now = Instant::now();
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.is_empty() {
            failures.remove(&ip);
            return None;
        }
        if times.len() < self.limit {
            return None;
        }
        // Blocked until the failure that brought it to the limit leaves the window.
        let oldest = times[times.len() - self.limit];
        Some(self.window.saturating_sub(now - oldest))
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().expect("limiter lock");
        let now = Instant::now();
        if failures.len() >= CAPACITY && !failures.contains_key(&ip) {
            let window = self.window;
            failures.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
            if failures.len() >= CAPACITY {
                failures.clear();
            }
        }
        let times = failures.entry(ip).or_default();
        times.push_back(now);
        // Only the last `limit` failures matter.
        while times.len() > self.limit {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(200));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            limiter.failed(ip);
        }
        assert!(limiter.blocked(ip).is_none());
        limiter.failed(ip);
        let wait = limiter.blocked(ip).expect("blocked at the limit");
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.blocked(other).is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.blocked(ip).is_none());
    }
}
