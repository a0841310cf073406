//! Per-client rate limits (SPEC §8 `rate_limit`): on cache misses (renders) and on API
//! writes, keyed by identity, else by viewer IP. Off by default. Refusals are 429 with
//! `Retry-After`.

use crate::error::{Error, ErrorKind};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub struct RateLimits {
    misses: Option<DefaultKeyedRateLimiter<String>>,
    writes: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter(per_s: f64, burst: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    if per_s <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_s);
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?);
    Some(RateLimiter::keyed(quota))
}

impl RateLimits {
    pub fn new(enabled: bool, misses_per_s: f64, writes_per_s: f64, burst: u32) -> Self {
        if !enabled {
            return RateLimits {
                misses: None,
                writes: None,
            };
        }
        RateLimits {
            misses: limiter(misses_per_s, burst),
            writes: limiter(writes_per_s, burst),
        }
    }

    fn check(l: &Option<DefaultKeyedRateLimiter<String>>, client: &str) -> Result<(), Error> {
        let Some(l) = l else { return Ok(()) };
        match l.check_key(&client.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs_f64().ceil().max(1.0) as u32;
                Err(
                    Error::new(ErrorKind::TooManyRequests, "rate limited, retry later")
                        .with_retry_after(secs),
                )
            }
        }
    }

    /// One more render for `client`.
    pub fn check_miss(&self, client: &str) -> Result<(), Error> {
        Self::check(&self.misses, client)
    }

    /// One more API write for `client`.
    pub fn check_write(&self, client: &str) -> Result<(), Error> {
        Self::check(&self.writes, client)
    }

    /// Forgets idle clients so the key space stays bounded.
    pub fn shrink(&self) {
        for l in [&self.misses, &self.writes].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_429() {
        let r = RateLimits::new(true, 1.0, 1.0, 3);
        for _ in 0..3 {
            r.check_miss("a").unwrap();
        }
        let e = r.check_miss("a").unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        r.check_miss("b").unwrap();
        let off = RateLimits::new(false, 1.0, 1.0, 1);
        for _ in 0..10 {
            off.check_miss("a").unwrap();
        }
    }
}
