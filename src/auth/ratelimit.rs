//! Per-client rate limits (SPEC §8 `rate_limit`): on cache misses (renders) and on API
//! writes, keyed by identity, else by viewer IP. Off by default. Refusals are 429 with
//! `Retry-After`.

use crate::error::{Error, ErrorKind};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
