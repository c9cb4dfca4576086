//! Failed-login rate limiting by client address and by user name, separately: OpenSearch's
//! `auth_failure_listeners` of type `ip` and `username`, with its defaults (10 failures within an
//! hour block the address or user for 10 minutes).
//!
//! ```text
//! let limiter = LoginRateLimiter::new(RateLimitConfig::default(), RateLimitConfig::default())?;
//! limiter.check(ip, Some(user), Instant::now())?;        // Err(Blocked): refuse unverified
//! match verify(...) {
//!     ok  => limiter.record_success(ip, Some(user), Instant::now()),
//!     bad => limiter.record_failure(ip, Some(user), Instant::now()),
//! }
//! ```
//!
//! Time is always passed in, so tests need no sleeping. Memory is bounded: each tracker keeps at
//! most `max_tracked_clients` failure histories of at most `allowed_tries` instants and
//! `max_blocked_clients` blocks, evicting the oldest. User names are kept as SHA-256 digests
//! (fixed size, and no user names sit in memory); IPv6 clients are counted per /64, since one
//! host commonly has a whole /64 to pick addresses from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use serde::Deserialize;

/// One tracker's settings (`auth_failure_listeners.<name>` without `type`), OpenSearch's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Failures within `time_window_seconds` that trigger a block (default 10).
    pub allowed_tries: u32,
    /// The window failures are counted in (default 3600).
    pub time_window_seconds: u64,
    /// How long a block lasts (default 600).
    pub block_expiry_seconds: u64,
    /// Most blocks held at once; the oldest is dropped first (default 100 000).
    pub max_blocked_clients: usize,
    /// Most failure histories held at once; the least recently failed is dropped (default 100 000).
    pub max_tracked_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            allowed_tries: 10,
            time_window_seconds: 3600,
            block_expiry_seconds: 600,
            max_blocked_clients: 100_000,
            max_tracked_clients: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// Refuses zeros (which would block everyone, or nobody ever); the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            ("allowed_tries", self.allowed_tries == 0),
            ("time_window_seconds", self.time_window_seconds == 0),
            ("block_expiry_seconds", self.block_expiry_seconds == 0),
            ("max_blocked_clients", self.max_blocked_clients == 0),
            ("max_tracked_clients", self.max_tracked_clients == 0),
        ];
        match checks.into_iter().find(|(_, zero)| *zero) {
            Some((key, _)) => Err(ConfigError { key }),
            None => Ok(()),
        }
    }
}

/// A rate-limit setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` must be greater than 0")]
pub struct ConfigError {
    /// The offending key, e.g. `allowed_tries`.
    pub key: &'static str,
}

/// Which limit refused the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedBy {
    /// Too many failures from the client's address.
    Ip,
    /// Too many failures for the user name.
    User,
}

/// A refused login attempt: do not check the credentials, answer 401 or 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; try again in {} s", self.retry_after_secs())]
pub struct Blocked {
    /// The limit that refused.
    pub by: BlockedBy,
    /// Time until the block ends.
    pub retry_after: Duration,
}

impl Blocked {
    /// Whole seconds until the block ends, rounded up (for a `Retry-After` header).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// The limiter: one tracker per client address, one per user name.
pub struct LoginRateLimiter {
    by_ip: Mutex<Tracker<IpAddr>>,
    by_user: Mutex<Tracker<[u8; 32]>>,
}

impl fmt::Debug for LoginRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = lock(&self.by_ip);
        let user = lock(&self.by_user);
        f.debug_struct("LoginRateLimiter")
            .field("ip", &ip.config)
            .field("user", &user.config)
            .field("tracked_ips", &ip.failures.len())
            .field("blocked_ips", &ip.blocked.len())
            .field("tracked_users", &user.failures.len())
            .field("blocked_users", &user.blocked.len())
            .finish()
    }
}

impl Default for LoginRateLimiter {
    fn default() -> Self {
        Self {
            by_ip: Mutex::new(Tracker::new(RateLimitConfig::default())),
            by_user: Mutex::new(Tracker::new(RateLimitConfig::default())),
        }
    }
}

impl LoginRateLimiter {
    /// A limiter with separate settings for addresses and user names.
    pub fn new(ip: RateLimitConfig, user: RateLimitConfig) -> Result<Self, ConfigError> {
        ip.validate()?;
        user.validate()?;
        Ok(Self {
            by_ip: Mutex::new(Tracker::new(ip)),
            by_user: Mutex::new(Tracker::new(user)),
        })
    }

    /// `Err` when the address or the user is blocked at `now`; the address is checked first.
    pub fn check(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Result<(), Blocked> {
        if let Some(retry_after) = lock(&self.by_ip).blocked_for(&ip_key(ip), now) {
            return Err(Blocked {
                by: BlockedBy::Ip,
                retry_after,
            });
        }
        if let Some(user) = user
            && let Some(retry_after) = lock(&self.by_user).blocked_for(&user_key(user), now)
        {
            return Err(Blocked {
                by: BlockedBy::User,
                retry_after,
            });
        }
        Ok(())
    }

    /// Counts a failed login against the address and, when given, the user name.
    pub fn record_failure(&self, ip: IpAddr, user: Option<&str>, now: Instant) {
        let origin = ip_key(ip);
        lock(&self.by_ip).failure(origin, origin, now);
        if let Some(user) = user {
            lock(&self.by_user).failure(user_key(user), origin, now);
        }
    }

    /// A successful login from `ip` clears the failures *that address* built up against the
    /// user (its owner's typos), never those from other addresses: otherwise the owner logging
    /// in would reset the count of someone guessing the password elsewhere. The address's own
    /// counter is not cleared either: one valid account would let its holder reset it while
    /// guessing other users' passwords.
    pub fn record_success(&self, ip: IpAddr, user: Option<&str>, _now: Instant) {
        if let Some(user) = user {
            lock(&self.by_user).forget_from(&user_key(user), ip_key(ip));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The trackers hold no invariant a panic elsewhere could break halfway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// IPv4-mapped IPv6 counts as IPv4; other IPv6 addresses by their /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

fn user_key(user: &str) -> [u8; 32] {
    let mut key = [0; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, user.as_bytes()).as_ref());
    key
}

/// Failure histories and blocks of one kind of key. `seq` orders entries for eviction.
struct Tracker<K> {
    config: RateLimitConfig,
    /// Per key: the failures in the window, each with the (normalised) address it came from.
    failures: HashMap<K, (VecDeque<(Instant, IpAddr)>, u64)>,
    failure_order: BTreeMap<u64, K>,
    blocked: HashMap<K, (Instant, u64)>,
    blocked_order: BTreeMap<u64, K>,
    next_seq: u64,
}

impl<K: Hash + Eq + Clone> Tracker<K> {
    fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            failures: HashMap::new(),
            failure_order: BTreeMap::new(),
            blocked: HashMap::new(),
            blocked_order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Time left on `key`'s block; an expired block is dropped.
    fn blocked_for(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let &(until, seq) = self.blocked.get(key)?;
        if now < until {
            return Some(until - now);
        }
        self.blocked.remove(key);
        self.blocked_order.remove(&seq);
        None
    }

    fn failure(&mut self, key: K, origin: IpAddr, now: Instant) {
        // Failures while blocked (the caller skipped `check`) neither count nor extend the block.
        if self.blocked_for(&key, now).is_some() {
            return;
        }
        let window = Duration::from_secs(self.config.time_window_seconds);
        let allowed = self.config.allowed_tries as usize;
        let mut times = match self.failures.remove(&key) {
            Some((times, seq)) => {
                self.failure_order.remove(&seq);
                times
            }
            None => VecDeque::new(),
        };
        times.retain(|&(t, _)| now.saturating_duration_since(t) < window);
        times.push_back((now, origin));
        while times.len() > allowed {
            times.pop_front();
        }
        if times.len() >= allowed {
            self.block(key, now);
            return;
        }
        let seq = self.seq();
        self.failure_order.insert(seq, key.clone());
        self.failures.insert(key, (times, seq));
        while self.failures.len() > self.config.max_tracked_clients {
            let Some((_, oldest)) = self.failure_order.pop_first() else {
                break;
            };
            self.failures.remove(&oldest);
        }
    }

    fn block(&mut self, key: K, now: Instant) {
        let until = now + Duration::from_secs(self.config.block_expiry_seconds);
        let seq = self.seq();
        self.blocked_order.insert(seq, key.clone());
        self.blocked.insert(key, (until, seq));
        // Blocks all last as long, so the oldest is also the first to end.
        while self.blocked.len() > self.config.max_blocked_clients {
            let Some((_, oldest)) = self.blocked_order.pop_first() else {
                break;
            };
            self.blocked.remove(&oldest);
        }
    }

    /// Drops `key`'s failures that came from `origin`.
    fn forget_from(&mut self, key: &K, origin: IpAddr) {
        let Some((times, seq)) = self.failures.get_mut(key) else {
            return;
        };
        times.retain(|&(_, from)| from != origin);
        if times.is_empty() {
            let seq = *seq;
            self.failures.remove(key);
            self.failure_order.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_are_opensearch_s() {
        let c = RateLimitConfig::default();
        assert_eq!(
            (
                c.allowed_tries,
                c.time_window_seconds,
                c.block_expiry_seconds
            ),
            (10, 3600, 600)
        );
        let parsed: RateLimitConfig = serde_json::from_value(json!({"allowed_tries": 3})).unwrap();
        assert_eq!(
            parsed,
            RateLimitConfig {
                allowed_tries: 3,
                ..c.clone()
            }
        );
        let e = serde_json::from_value::<RateLimitConfig>(json!({"allowed_trys": 3})).unwrap_err();
        assert!(e.to_string().contains("allowed_trys"), "{e}");
        let zero = RateLimitConfig {
            block_expiry_seconds: 0,
            ..c.clone()
        };
        let e = LoginRateLimiter::new(c, zero).unwrap_err();
        assert!(e.to_string().contains("block_expiry_seconds"), "{e}");
    }

    #[test]
    fn ten_failures_from_one_address_block_it_for_ten_minutes() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..9 {
            let user = format!("user{i}");
            l.record_failure(ip(1), Some(&user), t0 + secs(i));
            assert!(
                l.check(ip(1), Some("other"), t0 + secs(i)).is_ok(),
                "after {} failures",
                i + 1
            );
        }
        l.record_failure(ip(1), Some("user9"), t0 + secs(9));
        let b = l.check(ip(1), Some("other"), t0 + secs(9)).unwrap_err();
        assert_eq!(b.by, BlockedBy::Ip);
        assert_eq!(b.retry_after, secs(600));
        assert_eq!(b.retry_after_secs(), 600);
        assert!(l.check(ip(1), None, t0 + secs(9 + 599)).is_err());
        assert!(
            l.check(ip(2), Some("other"), t0 + secs(10)).is_ok(),
            "other addresses"
        );
        // Released after the block, with a fresh count.
        let after = t0 + secs(9 + 600);
        assert!(l.check(ip(1), None, after).is_ok());
        l.record_failure(ip(1), None, after);
        assert!(l.check(ip(1), None, after).is_ok());
    }

    #[test]
    fn ten_failures_for_one_user_block_it_from_every_address() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..10 {
            l.record_failure(ip(i), Some("alice"), t0);
        }
        let b = l.check(ip(200), Some("alice"), t0).unwrap_err();
        assert_eq!(b.by, BlockedBy::User);
        assert!(l.check(ip(200), Some("bob"), t0).is_ok());
        assert!(
            l.check(ip(200), Some("Alice"), t0).is_ok(),
            "user names are case-sensitive"
        );
        assert!(l.check(ip(200), Some("alice"), t0 + secs(600)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..9 {
            l.record_failure(ip(1), None, t0 + secs(i));
        }
        // The first nine are an hour old when the tenth comes.
        l.record_failure(ip(1), None, t0 + secs(3600 + 8));
        assert!(l.check(ip(1), None, t0 + secs(3600 + 8)).is_ok());
        // Spread over less than an hour, they do.
        l.record_failure(ip(2), None, t0);
        for i in 1..10 {
            l.record_failure(ip(2), None, t0 + secs(399 * i));
        }
        assert!(l.check(ip(2), None, t0 + secs(3599)).is_err());
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..9 {
            l.record_failure(ip(1), Some("alice"), t0);
        }
        l.record_success(ip(1), Some("alice"), t0);
        l.record_failure(ip(3), Some("alice"), t0);
        assert!(
            l.check(ip(3), Some("alice"), t0).is_ok(),
            "the user's count from that address restarted"
        );
        l.record_failure(ip(1), Some("bob"), t0);
        assert_eq!(l.check(ip(1), None, t0).unwrap_err().by, BlockedBy::Ip);
    }

    #[test]
    fn success_keeps_the_failures_other_addresses_built_up_against_the_user() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        // An attacker guesses alice's password from eight addresses (10 failures block).
        for i in 0..8 {
            l.record_failure(ip(100 + i), Some("alice"), t0);
        }
        // Alice mistypes once at home, then logs in: her own failure is forgiven, the
        // attacker's eight are not, so two more from the attacker block her account.
        l.record_failure(ip(1), Some("alice"), t0);
        l.record_success(ip(1), Some("alice"), t0);
        l.record_failure(ip(108), Some("alice"), t0);
        assert!(
            l.check(ip(1), Some("alice"), t0).is_ok(),
            "nine failures left"
        );
        l.record_failure(ip(109), Some("alice"), t0);
        let b = l.check(ip(1), Some("alice"), t0).unwrap_err();
        assert_eq!(b.by, BlockedBy::User);
        // A success from an address that never failed changes nothing.
        let l = LoginRateLimiter::default();
        for i in 0..9 {
            l.record_failure(ip(100 + i), Some("bob"), t0);
        }
        l.record_success(ip(1), Some("bob"), t0);
        l.record_failure(ip(200), Some("bob"), t0);
        assert_eq!(
            l.check(ip(1), Some("bob"), t0).unwrap_err().by,
            BlockedBy::User
        );
    }

    #[test]
    fn failures_while_blocked_do_not_extend_the_block() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            l.record_failure(ip(1), None, t0);
        }
        for i in 0..100 {
            l.record_failure(ip(1), None, t0 + secs(i));
        }
        assert!(l.check(ip(1), None, t0 + secs(600)).is_ok());
    }

    #[test]
    fn addresses_are_normalised() {
        let l = LoginRateLimiter::default();
        let t0 = Instant::now();
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        for i in 0..10 {
            l.record_failure(v6(&format!("2001:db8:1:2::{i:x}")), None, t0);
        }
        assert!(
            l.check(v6("2001:db8:1:2:ffff::1"), None, t0).is_err(),
            "same /64"
        );
        assert!(
            l.check(v6("2001:db8:1:3::1"), None, t0).is_ok(),
            "another /64"
        );
        for _ in 0..10 {
            l.record_failure(v6("::ffff:192.0.2.7"), None, t0);
        }
        assert!(l.check(ip(7), None, t0).is_err(), "IPv4-mapped is IPv4");
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_first() {
        let cap = RateLimitConfig {
            allowed_tries: 3,
            max_tracked_clients: 4,
            max_blocked_clients: 2,
            ..RateLimitConfig::default()
        };
        let l = LoginRateLimiter::new(cap.clone(), cap).unwrap();
        let t0 = Instant::now();
        l.record_failure(ip(0), None, t0);
        l.record_failure(ip(0), None, t0);
        for i in 1..=1000u32 {
            l.record_failure(IpAddr::V4(Ipv4Addr::from(i)), Some(&i.to_string()), t0);
        }
        {
            let t = lock(&l.by_ip);
            assert_eq!((t.failures.len(), t.failure_order.len()), (4, 4));
            assert_eq!(lock(&l.by_user).failures.len(), 4);
        }
        // ip(0)'s two failures were evicted: a third one does not block.
        l.record_failure(ip(0), None, t0);
        assert!(l.check(ip(0), None, t0).is_ok());
        for last in 10..13 {
            for _ in 0..3 {
                l.record_failure(ip(last), None, t0 + secs(u64::from(last)));
            }
        }
        let t = t0 + secs(13);
        assert!(
            l.check(ip(10), None, t).is_ok(),
            "the oldest block was dropped"
        );
        assert!(l.check(ip(11), None, t).is_err() && l.check(ip(12), None, t).is_err());
        let b = lock(&l.by_ip);
        assert_eq!((b.blocked.len(), b.blocked_order.len()), (2, 2));
    }

    #[test]
    fn debug_shows_no_user_names() {
        let l = LoginRateLimiter::default();
        l.record_failure(ip(1), Some("secret-user"), Instant::now());
        let text = format!("{l:?}");
        assert!(
            !text.contains("secret-user") && text.contains("tracked_users: 1"),
            "{text}"
        );
    }
}
