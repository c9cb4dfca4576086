//! Hostile requests: garbage paths, headers, ranges, bodies and credentials never make the
//! service panic or answer with internals; every error is the JSON shape.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{config_yaml_with, node_in};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/",
    "/_snapshot",
    "/_snapshot/h",
    "/_snapshot/h/_verify",
    "/_snapshot/h/_objects",
    "/_snapshot/h/_objects/a",
    "/_snapshot/h/_objects/a/b/c",
    "/_snapshot/h/_objects/%2E%2E/x",
    "/_snapshot/h/_objects/.encrypt-repo/keyring/x.json",
    "/_snapshot/h/_objects/%00",
    "/_snapshot/h/_objects/a%2F%2Fb",
    "/_snapshot/h/_objects?prefix=%FF&delimiter=/",
    "/_snapshot/h/_objects?prefix=../&delimiter=/",
    "/_snapshot/h/_keys",
    "/_snapshot/h/_keys/_rotate",
    "/_snapshot/h/_keys/_rewrap",
    "/_snapshot/h/_keys/_shred",
    "/_snapshot/%FF",
    "/_snapshot/..",
    "/_snapshot/missing/_objects/x",
    "/_plugins/_security/authinfo",
    "/_plugins/_security/api/internalusers/x%00y",
    "/_plugins/_security/api/internalusers/a:b",
];

const BODIES: &[&str] = &[
    "",
    "{}",
    "[]",
    "null",
    "{\"type\":\"fs\",\"settings\":{\"location\":\"/\"},\"encrypted\":false}",
    "{\"type\":\"s3\",\"settings\":{\"bucket\":\"\"},\"encrypted\":true}",
    "{\"crypto_settings\":{\"key_provider_name\":\"x\",\"key_provider_type\":\"exec\",\"settings\":{\"command\":\"/bin/sh\"}}}",
    "{\"data_key_id\":\"ffffffffffffffffffffffffffffffff\"}",
    "{\"all\":\"yes\"}",
    "{\"password\":\"\\u0000\"}",
    "\u{0}\u{1}garbage",
    "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
];

const RANGES: &[&str] = &[
    "bytes=0-0",
    "bytes=18446744073709551615-",
    "bytes=-18446744073709551615",
    "bytes=0-18446744073709551615",
    "bytes=1-0",
    "bytes=--1",
    "bytes= 1 - 2 ",
    "bytes=1-2,3-4",
    "chars=1-2",
];

const AUTHS: &[&str] = &[
    "Basic",
    "Basic ",
    "Basic ====",
    "Basic YWRtaW4=",
    "Bearer",
    "Bearer a.b.c",
    "Negotiate abc",
    "basic YWRtaW46YWRtaW4=",
];

#[tokio::test]
async fn nothing_a_client_sends_makes_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every request here comes from the same (unknown) address: a limiter at OpenSearch's
    // defaults would soon block the admin too, which is right but not what is tested here.
    let listeners = "    auth_failure_listeners:\n      ip: { type: ip, allowed_tries: 100000 }\n      user: { type: username, allowed_tries: 100000 }";
    let n = node_in(
        dir.path(),
        &config_yaml_with(dir.path(), 3600, "", listeners, ""),
    )
    .await;
    n.register("h").await;
    n.admin(Method::PUT, "/_snapshot/h/_objects/a", "hello")
        .await;
    let methods = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
    ];
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for i in 0..600 {
        let method = methods[(g.next() % methods.len() as u64) as usize].clone();
        let path = g.pick(PATHS);
        let body = g.pick(BODIES).to_owned();
        let range = g.pick(RANGES);
        let reply = if g.next().is_multiple_of(4) {
            let auth = g.pick(AUTHS);
            n.call(
                method.clone(),
                path,
                None,
                &[("authorization", auth), ("range", range)],
                body,
            )
            .await
        } else {
            n.call(
                method.clone(),
                path,
                Some(("admin", harness::ADMIN_PASSWORD)),
                &[("range", range)],
                body,
            )
            .await
        };
        let what = format!("#{i} {method} {path} range {range}: {reply:?}");
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        if !reply.status.is_success() && method != Method::HEAD {
            reply.error_type();
        }
        let text = String::from_utf8_lossy(&reply.body);
        // The server's own files never show.
        let system = dir.path().join("system");
        assert!(!text.contains(system.to_str().expect("utf-8")), "{what}");
        assert!(!text.contains("system.key"), "{what}");
        assert!(!text.contains("panicked"), "{what}");
    }
    // The node still serves.
    let r = n
        .admin(Method::GET, "/_plugins/_security/authinfo", "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}
