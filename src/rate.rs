//! Rate limits: one token bucket for every limit (a name's messages, a
//! session's polls and uploads, typing notices).
//!
//! Plain data: whoever owns a bucket keeps it behind its own lock (the
//! lock table in `src/lib.rs`).

use crate::protocol::{ClientError, ErrorCode};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys (sessions, names, addresses) whose buckets are kept at once; past
/// it, the idle ones are dropped.
const MAX_TRACKED_KEYS: usize = 10_000;
/// A bucket unused this long is full again: forgetting it changes nothing
/// (every limit here refills within it).
const IDLE_FORGET: Duration = Duration::from_secs(120);

/// One bucket per key (a session, a name, a client address), behind its own
/// mutex, held only to take a token. Bounded: a client cannot grow it
/// without end by inventing keys.
pub struct RateLimits<K> {
    buckets: Mutex<HashMap<K, RateLimit>>,
    per_sec: f64,
    burst: f64,
}

impl<K: Hash + Eq + Clone> RateLimits<K> {
    pub fn new(per_sec: f64, burst: f64) -> RateLimits<K> {
        RateLimits {
            buckets: Mutex::default(),
            per_sec,
            burst,
        }
    }

    /// Takes a token from `key`'s bucket: false when it is empty.
    pub fn allow(&self, key: &K) -> bool {
        let mut buckets = crate::lock(&self.buckets);
        if buckets.len() >= MAX_TRACKED_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, rate| rate.last_used().elapsed() < IDLE_FORGET);
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| RateLimit::new(self.per_sec, self.burst))
            .allow()
    }
}

/// Messages a name may send: 20 a second on average, bursts of up to 40
/// (all its connections and polls on one server together).
pub const RATE_PER_SEC: f64 = 20.0;
pub const RATE_BURST: f64 = 40.0;
/// At most one typing notice per connection this often is relayed.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);

/// A token bucket: `burst` tokens, refilled at `per_sec` a second. Used for
/// every rate limit (a connection's messages, a session's polls and says).
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// One typing notice per [`TYPING_EVERY`].
    pub fn typing() -> RateLimit {
        RateLimit::new(1.0 / TYPING_EVERY.as_secs_f64(), 1.0)
    }

    pub fn new(per_sec: f64, burst: f64) -> RateLimit {
        RateLimit {
            per_sec,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the bucket was last used.
    pub fn last_used(&self) -> Instant {
        self.last
    }
}

/// The error a client gets past the message rate.
pub fn rate_limited() -> ClientError {
    ClientError::new(
        ErrorCode::RateLimited,
        format!("Slow down: at most {RATE_PER_SEC} messages a second."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_bursts_then_the_rate() {
        let mut rate = RateLimit::new(RATE_PER_SEC, RATE_BURST);
        assert_eq!(
            (0..60).filter(|_| rate.allow()).count(),
            RATE_BURST as usize
        );
        rate.last -= Duration::from_millis(500); // half a second later
        assert_eq!(
            (0..60).filter(|_| rate.allow()).count(),
            (RATE_PER_SEC / 2.0) as usize
        );
    }
}
