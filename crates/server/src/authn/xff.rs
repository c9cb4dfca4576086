//! The client's address behind reverse proxies: `config.dynamic.http.xff` of seed 003, with the
//! semantics of Tomcat's `RemoteIpValve`, which OpenSearch follows.
//!
//! ```text
//! let xff = if c.enabled {
//!     XffResolver::new(c.internal_proxies.as_deref().unwrap_or_default(), &c.remote_ip_header)?
//!         .with_trusted_proxies(c.trusted_proxies.as_deref())?
//! } else {
//!     XffResolver::disabled()
//! };
//! let client_ip: IpAddr = xff.client_ip(peer_socket_addr.ip(), &headers);  // never panics
//! ```
//!
//! The header is read only when the TCP peer matches `internalProxies`. It is then walked from
//! the right (the entry the nearest proxy added), skipping addresses that match
//! `internalProxies` or `trustedProxies`; the first other address is the client. An entry that
//! is not an address ends the walk at the last proxy reached, so neither a spoofed header from
//! an untrusted peer nor garbage in a trusted one yields an address nobody vouched for.
//! Patterns must match the whole address (`192\.168\.0\.1` does not match `192.168.0.10`), in
//! Rust's textual form: dotted IPv4, compressed lowercase IPv6 (`::1`); IPv4-mapped IPv6 peers
//! are matched as IPv4.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::HeaderName;
use regex::Regex;

/// The header read when `remoteIpHeader` is not set.
pub const DEFAULT_REMOTE_IP_HEADER: &str = "x-forwarded-for";
/// At most this many entries of the header are walked; a longer chain ends at the last proxy.
pub const MAX_HOPS: usize = 32;

/// An unusable xff setting; the message names the key (`internalProxies`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// Why it cannot be used.
    pub reason: String,
}

/// Resolves the client address of a request.
#[derive(Debug, Clone)]
pub struct XffResolver {
    inner: Option<Enabled>,
}

#[derive(Debug, Clone)]
struct Enabled {
    internal_proxies: Regex,
    trusted_proxies: Option<Regex>,
    header: HeaderName,
}

impl XffResolver {
    /// `xff.enabled: false`: the client is always the TCP peer.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// `xff.enabled: true` with `internalProxies` (a regular expression, required and
    /// non-empty) and `remoteIpHeader` (empty for the default `x-forwarded-for`).
    pub fn new(internal_proxies: &str, remote_ip_header: &str) -> Result<Self, ConfigError> {
        if internal_proxies.trim().is_empty() {
            return Err(ConfigError {
                key: "internalProxies",
                reason: "required when xff is enabled".into(),
            });
        }
        let header = match remote_ip_header.trim() {
            "" => DEFAULT_REMOTE_IP_HEADER,
            h => h,
        };
        let header = HeaderName::try_from(header).map_err(|_| ConfigError {
            key: "remoteIpHeader",
            reason: "not a valid HTTP header name".into(),
        })?;
        let internal_proxies = whole_match(internal_proxies, "internalProxies")?;
        Ok(Self {
            inner: Some(Enabled {
                internal_proxies,
                trusted_proxies: None,
                header,
            }),
        })
    }

    /// Adds `trustedProxies`: proxies outside the internal network whose entries are skipped
    /// too, once the walk has started at an internal proxy. `None` or empty: no such proxies.
    pub fn with_trusted_proxies(mut self, pattern: Option<&str>) -> Result<Self, ConfigError> {
        if let (Some(inner), Some(p)) = (&mut self.inner, pattern.filter(|p| !p.trim().is_empty()))
        {
            inner.trusted_proxies = Some(whole_match(p, "trustedProxies")?);
        }
        Ok(self)
    }

    /// Whether the remote-IP header is ever read.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let Some(x) = &self.inner else { return peer };
        if !x.internal_proxies.is_match(&peer.to_string()) {
            return peer;
        }
        let mut client = peer;
        // Several header lines are one comma-separated list, in order (RFC 9110 5.3); walk
        // them from the last. A line that is not visible ASCII ends the walk.
        let lines: Vec<_> = headers.get_all(&x.header).iter().collect();
        let entries = lines
            .iter()
            .rev()
            .map(|line| line.to_str().ok())
            .flat_map(|line| match line {
                Some(text) => text.rsplit(',').map(parse_entry).collect::<Vec<_>>(),
                None => vec![None],
            })
            .take(MAX_HOPS);
        for entry in entries {
            let Some(ip) = entry else { break };
            client = ip;
            if !x.is_proxy(ip) {
                break;
            }
        }
        client
    }

    /// [`client_ip`](Self::client_ip) for a peer socket address.
    pub fn client_ip_of(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        self.client_ip(peer.ip(), headers)
    }
}

impl Enabled {
    fn is_proxy(&self, ip: IpAddr) -> bool {
        let text = ip.to_string();
        self.internal_proxies.is_match(&text)
            || self
                .trusted_proxies
                .as_ref()
                .is_some_and(|t| t.is_match(&text))
    }
}

fn whole_match(pattern: &str, key: &'static str) -> Result<Regex, ConfigError> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ConfigError {
            key,
            reason: format!("not a valid regular expression: {e}"),
        })
}

/// One list entry: `1.2.3.4`, `1.2.3.4:567`, `::1`, `[::1]`, `[::1]:567`; anything else `None`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if entry.len() > 64 {
        return None;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|v6| IpAddr::V6(v6).to_canonical())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const PROXIES: &str = r"192\.168\.0\.10|192\.168\.0\.11";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn resolver() -> XffResolver {
        XffResolver::new(PROXIES, "x-forwarded-for").unwrap()
    }

    #[test]
    fn trusted_proxy_header_gives_the_client() {
        let r = resolver();
        let h = xff(&["203.0.113.5"]);
        assert_eq!(r.client_ip(ip("192.168.0.10"), &h), ip("203.0.113.5"));
        let chain = xff(&["198.51.100.1, 203.0.113.5, 192.168.0.11"]);
        assert_eq!(
            r.client_ip(ip("192.168.0.10"), &chain),
            ip("203.0.113.5"),
            "from the right"
        );
        let lines = xff(&["198.51.100.1, 203.0.113.5", "192.168.0.11"]);
        assert_eq!(
            r.client_ip(ip("192.168.0.10"), &lines),
            ip("203.0.113.5"),
            "lines joined"
        );
        let ports = xff(&["[2001:db8::1]:4711, 203.0.113.9:80"]);
        assert_eq!(r.client_ip(ip("192.168.0.10"), &ports), ip("203.0.113.9"));
        let v6 = xff(&["[2001:db8::1]"]);
        assert_eq!(r.client_ip(ip("192.168.0.10"), &v6), ip("2001:db8::1"));
        // Only proxies in the list: the leftmost proxy is as far as anyone vouches.
        let all = xff(&["192.168.0.11, 192.168.0.10"]);
        assert_eq!(r.client_ip(ip("192.168.0.10"), &all), ip("192.168.0.11"));
        assert_eq!(
            r.client_ip(ip("192.168.0.10"), &HeaderMap::new()),
            ip("192.168.0.10")
        );
    }

    #[test]
    fn spoofed_header_from_an_untrusted_peer_changes_nothing() {
        let r = resolver();
        let h = xff(&["192.168.0.10, 10.0.0.1"]);
        for peer in [
            "203.0.113.7",
            "192.168.0.100",
            "192.168.0.1",
            "::1",
            "1192.168.0.10",
        ] {
            let Ok(peer) = peer.parse::<IpAddr>() else {
                continue;
            };
            assert_eq!(r.client_ip(peer, &h), peer, "{peer}");
        }
        assert_eq!(
            XffResolver::disabled().client_ip(ip("192.168.0.10"), &h),
            ip("192.168.0.10")
        );
        assert!(!XffResolver::disabled().is_enabled());
    }

    #[test]
    fn malformed_headers_never_panic_and_stop_at_the_last_proxy() {
        let r = resolver();
        let peer = ip("192.168.0.10");
        for v in [
            "",
            ",",
            " , ,",
            "unknown",
            "garbage",
            "1.2.3",
            "[::1",
            "::1]",
            "1.2.3.4:99999",
            "300.1.1.1",
            "%%%",
            "[1.2.3.4]",
            "\t",
            &"1".repeat(10_000),
        ] {
            assert_eq!(r.client_ip(peer, &xff(&[v])), peer, "{v:?}");
        }
        // Garbage left of a real client is never reached.
        assert_eq!(
            r.client_ip(peer, &xff(&["garbage, 203.0.113.5"])),
            ip("203.0.113.5")
        );
        // Garbage right of a proxy: the walk ends at that proxy.
        assert_eq!(
            r.client_ip(peer, &xff(&["203.0.113.5, garbage"])),
            peer,
            "the peer added garbage"
        );
        assert_eq!(
            r.client_ip(peer, &xff(&["203.0.113.5, unknown", "192.168.0.11"])),
            ip("192.168.0.11")
        );
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.5\xff").unwrap(),
        );
        assert_eq!(r.client_ip(peer, &h), peer);
        // A very long chain of proxies is cut at MAX_HOPS.
        let long = vec!["192.168.0.11"; 10 * MAX_HOPS].join(",");
        let h = xff(&[&format!("203.0.113.5,{long}")]);
        assert_eq!(r.client_ip(peer, &h), ip("192.168.0.11"));
    }

    #[test]
    fn patterns_match_whole_addresses() {
        let r = XffResolver::new(r"192\.168\.0\.1", "").unwrap();
        let h = xff(&["203.0.113.5"]);
        assert_eq!(r.client_ip(ip("192.168.0.10"), &h), ip("192.168.0.10"));
        assert_eq!(r.client_ip(ip("192.168.0.1"), &h), ip("203.0.113.5"));
        // IPv4-mapped peers match as IPv4; IPv6 in Rust's compressed form.
        assert_eq!(r.client_ip(ip("::ffff:192.168.0.1"), &h), ip("203.0.113.5"));
        let v6 = XffResolver::new("::1", "").unwrap();
        assert_eq!(v6.client_ip(ip("::1"), &h), ip("203.0.113.5"));
        assert_eq!(
            v6.client_ip_of("[::1]:8080".parse().unwrap(), &h),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn custom_header_and_trusted_proxies() {
        let r = XffResolver::new(PROXIES, "X-Real-Client")
            .unwrap()
            .with_trusted_proxies(Some(r"198\.51\.100\.\d+"))
            .unwrap();
        let mut h = xff(&["203.0.113.99"]);
        h.insert(
            "x-real-client",
            "203.0.113.5, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(r.client_ip(ip("192.168.0.10"), &h), ip("203.0.113.5"));
        // A trusted (not internal) proxy as the peer is not enough.
        assert_eq!(r.client_ip(ip("198.51.100.7"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let e = XffResolver::new("", "x-forwarded-for").unwrap_err();
        assert_eq!(e.key, "internalProxies");
        assert_eq!(
            XffResolver::new("(", "").unwrap_err().key,
            "internalProxies"
        );
        assert_eq!(
            XffResolver::new("a", "bad header").unwrap_err().key,
            "remoteIpHeader"
        );
        let e = resolver().with_trusted_proxies(Some("[")).unwrap_err();
        assert_eq!(e.key, "trustedProxies");
        assert!(e.to_string().starts_with("`trustedProxies`"), "{e}");
    }
}
