//! Tokens made by an independent implementation (PyJWT with `cryptography`, in the project's
//! `.venv`): all twelve algorithms accepted, and every forgery an honest library can be made to
//! produce refused. `tests/jwt/make_tokens.py` generates fresh keys on every run.
//!
//! Needs `.venv/bin/python` with PyJWT: `bash tests/services.sh venv` (or `start`) installs it.
//! Without it this test fails; it never passes silently.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use encrypt_repo_server::authn::jwt::{JwsAlgorithm, JwtAuthenticator, JwtConfig, JwtError};
use http::HeaderMap;
use serde_json::{Value, json};

/// The time the tokens are made for and checked at (fixed, so no test depends on the clock).
const NOW: u64 = 1_800_000_000;
const INSTALL: &str = "run: bash tests/services.sh venv (or: bash tests/services.sh start)";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pyjwt_output() -> Value {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; {INSTALL}",
        python.display()
    );
    let probe = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .output()
        .expect("run .venv/bin/python");
    assert!(
        probe.status.success(),
        "PyJWT with cryptography is not installed in .venv ({}); {INSTALL}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jwt/make_tokens.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(NOW.to_string())
        .output()
        .expect("run make_tokens.py");
    assert!(
        out.status.success(),
        "make_tokens.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("make_tokens.py prints JSON")
}

fn authenticator(keys: &Value, key: &str, extra: &Value) -> JwtAuthenticator {
    let mut config = json!({ "signing_key": keys[key] });
    for (k, v) in extra.as_object().expect("config object") {
        config[k] = v.clone();
    }
    JwtAuthenticator::new(JwtConfig::from_value(config).expect("config")).expect("authenticator")
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn matches(expect: &str, err: &JwtError) -> bool {
    match (expect.split_once(':'), err) {
        (Some(("InvalidClaim", claim)), JwtError::InvalidClaim(c)) => c == claim,
        (None, JwtError::AlgNone) => expect == "AlgNone",
        (None, JwtError::AlgorithmNotAllowed { .. }) => expect == "AlgorithmNotAllowed",
        (None, JwtError::InvalidSignature) => expect == "InvalidSignature",
        (None, JwtError::Expired) => expect == "Expired",
        (None, JwtError::NotYetValid) => expect == "NotYetValid",
        (None, JwtError::IssuedInFuture) => expect == "IssuedInFuture",
        (None, JwtError::WrongAudience) => expect == "WrongAudience",
        (None, JwtError::WrongIssuer) => expect == "WrongIssuer",
        (None, JwtError::TooLarge) => expect == "TooLarge",
        _ => false,
    }
}

#[test]
fn pyjwt_tokens_are_accepted_and_forgeries_refused() {
    let out = pyjwt_output();
    let keys = &out["keys"];
    let cases = out["cases"].as_array().expect("cases");
    let mut accepted_algs = Vec::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let key = case["key"].as_str().expect("key");
        let token = case["token"].as_str().expect("token");
        let expect = case["expect"].as_str().expect("expect");
        let auth = authenticator(keys, key, &case["config"]);
        let got = auth.authenticate(&bearer(token), None, now());
        let ok = match (&got, expect) {
            (Ok(Some(id)), "ok") => {
                let roles: Vec<&str> = case["roles"]
                    .as_array()
                    .expect("roles")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if name.ends_with(" accepted") {
                    accepted_algs.push(name.trim_end_matches(" accepted").to_owned());
                }
                id.subject == case["subject"] && id.backend_roles == roles
            }
            (Err(e), expect) => {
                // No error may carry the token or a key.
                let text = format!("{e} {e:?}");
                assert!(!text.contains(&token[token.len() - 16..]), "{name}: {text}");
                matches(expect, e)
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {expect}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let all: Vec<&str> = JwsAlgorithm::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(
        accepted_algs, all,
        "PyJWT {} made tokens for all twelve",
        out["pyjwt"]
    );
}

#[test]
fn pyjwt_tokens_are_refused_with_a_key_of_another_family() {
    let out = pyjwt_output();
    let keys = &out["keys"];
    let families = ["hmac", "rsa", "p256", "p384", "p521"];
    let mut checked = 0;
    for case in out["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let Some(alg) = name.strip_suffix(" accepted") else {
            continue;
        };
        let alg = JwsAlgorithm::from_name(alg).expect("algorithm name");
        let token = case["token"].as_str().expect("token");
        for key in families.iter().filter(|&&k| k != case["key"]) {
            let auth = authenticator(keys, key, &case["config"]);
            let got = auth.verify(token, now());
            assert!(
                matches!(got, Err(JwtError::AlgorithmNotAllowed { alg: a, .. }) if a == alg),
                "{name} with the {key} key: {got:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12 * 4);
}

#[test]
fn pyjwt_weak_rsa_key_is_refused_in_the_configuration() {
    let out = pyjwt_output();
    let config =
        JwtConfig::from_value(json!({ "signing_key": out["keys"]["rsa_1024"] })).expect("config");
    let err = JwtAuthenticator::new(config).expect_err("a 1024-bit RSA key");
    let text = err.to_string();
    assert!(
        text.contains("signing_key") && text.contains("2048"),
        "{text}"
    );
    assert!(!text.contains("BEGIN"), "the key is not echoed: {text}");
}
