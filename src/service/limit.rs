//! Per-token rate limits: a token bucket per token id, refilled continuously. Kept in memory:
//! a restart refills every bucket, which costs at most one minute's allowance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets by token id. Only authenticated tokens get one, so the map is as large as the
/// number of tokens in use.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request from `token`'s bucket, which holds `per_minute` and refills at
    /// `per_minute` a minute. Refused: the seconds until one is available again.
    pub fn take(&self, token: &str, per_minute: u32) -> Result<(), u64> {
        let capacity = f64::from(per_minute.max(1));
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (level, at) = buckets.entry(token.to_owned()).or_insert((capacity, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *level) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_and_names_the_wait() {
        let l = RateLimiter::default();
        for _ in 0..60 {
            assert!(l.take("a", 60).is_ok());
        }
        let wait = l.take("a", 60).unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        // Another token has its own bucket.
        assert!(l.take("b", 60).is_ok());
    }
}
