//! The failed-login limiter keyed by the address the xff resolver gives: a spoofed
//! `X-Forwarded-For` from an untrusted peer changes neither the key nor the block; behind a
//! trusted proxy each client is counted on its own. Time is passed in; nothing sleeps.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use encrypt_repo_server::authn::ratelimit::{BlockedBy, LoginRateLimiter, RateLimitConfig};
use encrypt_repo_server::authn::xff::XffResolver;
use http::HeaderMap;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn forwarded_for(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", value.parse().expect("header"));
    h
}

#[test]
fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_block() {
    let xff = XffResolver::new(r"192\.168\.0\.10|192\.168\.0\.11", "x-forwarded-for").expect("xff");
    let limiter = LoginRateLimiter::default();
    let t0 = Instant::now();
    let attacker = ip("203.0.113.66");
    for i in 0..10u64 {
        // A different forged client address and user on every attempt.
        let headers = forwarded_for(&format!("198.51.100.{i}, 192.168.0.10"));
        let client = xff.client_ip(attacker, &headers);
        assert_eq!(client, attacker, "the spoofed header is ignored");
        let user = format!("user{i}");
        let now = t0 + Duration::from_secs(i);
        limiter
            .check(client, Some(&user), now)
            .expect("not yet blocked");
        limiter.record_failure(client, Some(&user), now);
    }
    let headers = forwarded_for("198.51.100.200");
    let client = xff.client_ip(attacker, &headers);
    let blocked = limiter.check(client, Some("fresh-user"), t0 + Duration::from_secs(10));
    assert_eq!(blocked.expect_err("blocked").by, BlockedBy::Ip);
    // Released after the block time (10 minutes after the tenth failure).
    assert!(
        limiter
            .check(client, None, t0 + Duration::from_secs(9 + 600))
            .is_ok()
    );
}

#[test]
fn behind_a_trusted_proxy_clients_are_counted_separately() {
    let xff = XffResolver::new(r"192\.168\.0\.10", "").expect("xff");
    let config = RateLimitConfig {
        allowed_tries: 3,
        ..RateLimitConfig::default()
    };
    let limiter = LoginRateLimiter::new(config.clone(), config).expect("limiter");
    let proxy = ip("192.168.0.10");
    let t0 = Instant::now();
    for _ in 0..3 {
        let client = xff.client_ip(proxy, &forwarded_for("203.0.113.1"));
        limiter.record_failure(client, None, t0);
    }
    let first = xff.client_ip(proxy, &forwarded_for("203.0.113.1"));
    let second = xff.client_ip(proxy, &forwarded_for("203.0.113.2"));
    assert!(limiter.check(first, None, t0).is_err());
    assert!(limiter.check(second, None, t0).is_ok());
    assert!(
        limiter.check(proxy, None, t0).is_ok(),
        "the proxy itself is not blocked"
    );
}
