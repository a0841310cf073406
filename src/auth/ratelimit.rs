//! Per-client rate limits (SPEC §8 `rate_limit`): on cache misses (renders) and on API
//! writes, keyed by identity, else by viewer IP. Off by default. Refusals are 429 with
//! `Retry-After`. Failed sign-ins (`POST /api/v1/session`) are limited per name and per
//! address whatever `rate_limit.enabled` says (`FailureLimiter`).

use crate::error::{Error, ErrorKind};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[rate_limit]`, validated.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub misses_per_s: f64,
    pub writes_per_s: f64,
    pub burst: u32,
    pub ipv6_prefix: u8,
}

/// Who a limit applies to. Addresses are kept masked (IPv6 to `rate_limit.ipv6_prefix`
/// bits): one subscriber gets a whole /64, so rotating addresses inside it buys nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(String),
    Admin,
    Ip(IpAddr),
    /// No address known (tests with a fake connection).
    Unknown,
}

type Limiter = DefaultKeyedRateLimiter<ClientKey>;

pub struct RateLimits {
    misses: Option<Limiter>,
    writes: Option<Limiter>,
    ipv6_prefix: u8,
    /// Failed sign-ins; always on.
    pub logins: LoginLimits,
}

fn limiter(per_s: f64, burst: u32) -> Option<Limiter> {
    if per_s <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_s);
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?);
    Some(RateLimiter::keyed(quota))
}

/// `ip` with all but its first `bits` bits cleared; IPv4 (also IPv4-mapped IPv6) is kept
/// whole.
pub fn mask_ip(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

impl RateLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let (misses, writes) = if cfg.enabled {
            (
                limiter(cfg.misses_per_s, cfg.burst),
                limiter(cfg.writes_per_s, cfg.burst),
            )
        } else {
            (None, None)
        };
        RateLimits {
            misses,
            writes,
            ipv6_prefix: cfg.ipv6_prefix,
            logins: LoginLimits::default(),
        }
    }

    /// The key for an anonymous client at `ip`.
    pub fn ip_key(&self, ip: Option<IpAddr>) -> ClientKey {
        ip.map_or(ClientKey::Unknown, |ip| {
            ClientKey::Ip(mask_ip(ip, self.ipv6_prefix))
        })
    }

    fn check(l: &Option<Limiter>, client: &ClientKey) -> Result<(), Error> {
        let Some(l) = l else { return Ok(()) };
        match l.check_key(client) {
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
    pub fn check_miss(&self, client: &ClientKey) -> Result<(), Error> {
        Self::check(&self.misses, client)
    }

    /// One more API write for `client`.
    pub fn check_write(&self, client: &ClientKey) -> Result<(), Error> {
        Self::check(&self.writes, client)
    }

    /// Clients with state held (both limiters).
    pub fn tracked(&self) -> usize {
        [&self.misses, &self.writes]
            .into_iter()
            .flatten()
            .map(|l| l.len())
            .sum()
    }

    /// Forgets clients whose state is back to a fresh one (idle for a full burst refill),
    /// so the key space stays bounded by the clients of the last few seconds.
    pub fn shrink(&self) {
        for l in [&self.misses, &self.writes].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        self.logins.forget_idle();
    }
}

/// Counts failures per key in token buckets: `burst` failures at once, then one more
/// every `refill`. Unlike the governor limiters above it can be asked without spending,
/// so only failures count: a person who signs in correctly is never slowed down.
pub struct FailureLimiter<K> {
    burst: f64,
    refill: Duration,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures still allowed as of `at`.
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// `max_keys` bounds the memory: beyond it new keys are not tracked (the other limit
    /// of a sign-in still applies) until idle ones are forgotten.
    pub fn new(burst: u32, refill: Duration, max_keys: usize) -> Self {
        FailureLimiter {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            max_keys,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        (b.tokens + gained).min(self.burst)
    }

    /// `Some(seconds to wait)` when `key` has no failure left, else `None`.
    pub fn blocked(&self, key: &K) -> Option<u32> {
        self.blocked_at(key, Instant::now())
    }

    fn blocked_at(&self, key: &K, now: Instant) -> Option<u32> {
        let map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = map.get(key).map_or(self.burst, |b| self.refilled(*b, now));
        (tokens < 1.0).then(|| {
            let secs = (1.0 - tokens) * self.refill.as_secs_f64();
            // Float noise (10.000000000000002) must not add a second.
            (secs - 1e-6).ceil().max(1.0) as u32
        })
    }

    /// Counts one failure of `key`.
    pub fn fail(&self, key: &K) {
        self.fail_at(key, Instant::now());
    }

    fn fail_at(&self, key: &K, now: Instant) {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.forget_idle_locked(&mut map, now);
            if map.len() >= self.max_keys {
                return;
            }
        }
        let tokens = map.get(key).map_or(self.burst, |b| self.refilled(*b, now));
        map.insert(
            key.clone(),
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                at: now,
            },
        );
    }

    fn forget_idle_locked(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        map.retain(|_, b| self.refilled(*b, now) < self.burst);
    }

    /// Forgets keys whose bucket is full again.
    pub fn forget_idle(&self) {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_idle_locked(&mut map, Instant::now());
        map.shrink_to_fit();
    }

    /// Keys with state held.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Failed sign-ins allowed per name at once, then one more per `NAME_REFILL`: guessing a
/// password gets ~120 tries an hour; the owner of the name waits at most a minute or so
/// after someone else's failures (SPEC §15).
pub const LOGIN_NAME_BURST: u32 = 10;
pub const LOGIN_NAME_REFILL: Duration = Duration::from_secs(30);
/// Failed sign-ins allowed per address (several people behind one NAT), then one more per
/// `IP_REFILL`: one address cannot spray many names.
pub const LOGIN_IP_BURST: u32 = 30;
pub const LOGIN_IP_REFILL: Duration = Duration::from_secs(10);
const LOGIN_MAX_KEYS: usize = 100_000;

/// The two limits of `POST /api/v1/session`.
pub struct LoginLimits {
    pub names: FailureLimiter<String>,
    pub addresses: FailureLimiter<ClientKey>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            names: FailureLimiter::new(LOGIN_NAME_BURST, LOGIN_NAME_REFILL, LOGIN_MAX_KEYS),
            addresses: FailureLimiter::new(LOGIN_IP_BURST, LOGIN_IP_REFILL, LOGIN_MAX_KEYS),
        }
    }
}

impl LoginLimits {
    /// 429 when either the name or the address used up its failures.
    pub fn check(&self, name: &str, client: &ClientKey) -> Result<(), Error> {
        let wait = self
            .names
            .blocked(&name.to_string())
            .max(self.addresses.blocked(client));
        match wait {
            None => Ok(()),
            Some(secs) => Err(Error::new(
                ErrorKind::TooManyRequests,
                "too many failed sign-ins, retry later",
            )
            .with_retry_after(secs)),
        }
    }

    pub fn fail(&self, name: &str, client: &ClientKey) {
        self.names.fail(&name.to_string());
        self.addresses.fail(client);
    }

    pub fn forget_idle(&self) {
        self.names.forget_idle();
        self.addresses.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_only_count_and_refill() {
        let refill = Duration::from_secs(30);
        let l = FailureLimiter::new(3, refill, 10);
        let k = "alice".to_string();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.blocked_at(&k, t0), None, "asking spends nothing");
        }
        for _ in 0..3 {
            assert_eq!(l.blocked_at(&k, t0), None);
            l.fail_at(&k, t0);
        }
        assert_eq!(l.blocked_at(&k, t0), Some(30));
        assert_eq!(l.blocked_at(&"bob".to_string(), t0), None, "per key");
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(l.blocked_at(&k, t1), Some(10), "the wait shrinks");
        let t2 = t0 + refill;
        assert_eq!(l.blocked_at(&k, t2), None, "one failure refilled");
        l.fail_at(&k, t2);
        assert_eq!(l.blocked_at(&k, t2), Some(30), "and spent");
        // Full again after 3 refills: forgotten.
        let mut map = l.buckets.lock().unwrap();
        l.forget_idle_locked(&mut map, t2 + refill * 2);
        assert_eq!(map.len(), 1, "not full yet");
        l.forget_idle_locked(&mut map, t2 + refill * 3);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn failure_keys_are_bounded() {
        let l = FailureLimiter::new(1, Duration::from_secs(3600), 2);
        for k in ["a", "b", "c", "d"] {
            l.fail(&k.to_string());
        }
        assert_eq!(l.tracked(), 2);
        assert!(l.blocked(&"a".to_string()).is_some());
        assert_eq!(
            l.blocked(&"c".to_string()),
            None,
            "not tracked beyond the cap"
        );
    }

    #[test]
    fn login_limits_by_name_and_address() {
        let l = LoginLimits::default();
        let ip = ClientKey::Ip("192.0.2.1".parse().unwrap());
        for _ in 0..LOGIN_NAME_BURST {
            l.check("alice", &ip).unwrap();
            l.fail("alice", &ip);
        }
        let e = l.check("alice", &ip).unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        // The same name from elsewhere: still refused (the name is the target).
        let other = ClientKey::Ip("192.0.2.2".parse().unwrap());
        assert_eq!(l.check("alice", &other).unwrap_err().status(), 429);
        // Other names from the first address: allowed until the address runs out.
        for n in 0..(LOGIN_IP_BURST - LOGIN_NAME_BURST) {
            let name = format!("user{n}");
            l.check(&name, &ip).unwrap();
            l.fail(&name, &ip);
        }
        assert_eq!(l.check("carol", &ip).unwrap_err().status(), 429);
        l.check("carol", &other).unwrap();
    }

    fn cfg(enabled: bool, per_s: f64, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            enabled,
            misses_per_s: per_s,
            writes_per_s: per_s,
            burst,
            ipv6_prefix: 64,
        }
    }

    fn user(name: &str) -> ClientKey {
        ClientKey::User(name.into())
    }

    #[test]
    fn burst_then_429() {
        let r = RateLimits::new(&cfg(true, 1.0, 3));
        for _ in 0..3 {
            r.check_miss(&user("a")).unwrap();
        }
        let e = r.check_miss(&user("a")).unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        r.check_miss(&user("b")).unwrap();
        let off = RateLimits::new(&cfg(false, 1.0, 1));
        for _ in 0..10 {
            off.check_miss(&user("a")).unwrap();
        }
    }

    /// Regression (security review, finding 8): every address of one IPv6 /64 is one
    /// client; IPv4 and IPv4-mapped addresses stay whole.
    #[test]
    fn ipv6_addresses_share_their_prefix() {
        let r = RateLimits::new(&cfg(true, 1.0, 2));
        let ip = |s: &str| r.ip_key(Some(s.parse().unwrap()));
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(ip("192.0.2.7"), ip("192.0.2.8"));
        r.check_miss(&ip("2001:db8::1")).unwrap();
        r.check_miss(&ip("2001:db8::2")).unwrap();
        assert_eq!(r.check_miss(&ip("2001:db8::3")).unwrap_err().status(), 429);
        let wide = RateLimits::new(&RateLimitConfig {
            ipv6_prefix: 48,
            ..cfg(true, 1.0, 2)
        });
        assert_eq!(
            wide.ip_key(Some("2001:db8:1:2::1".parse().unwrap())),
            wide.ip_key(Some("2001:db8:1:ffff::1".parse().unwrap()))
        );
    }

    /// Regression (finding 8): state of idle clients is freed by `shrink`.
    #[test]
    fn idle_clients_are_forgotten() {
        // A fast refill so the clients are idle again within milliseconds.
        let r = RateLimits::new(&cfg(true, 10_000.0, 1));
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            r.check_miss(&r.ip_key(Some(ip))).unwrap();
        }
        assert_eq!(r.tracked(), 1000);
        for _ in 0..1000 {
            r.shrink();
            if r.tracked() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.tracked(), 0);
    }
}
