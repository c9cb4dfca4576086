//! Unit tests of the JWT authenticator: tokens signed here with aws-lc-rs (the independent
//! implementation's tokens are in tests/jwt_pyjwt.rs).

use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
use serde_json::json;

use super::*;

const T0: u64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

struct Keys {
    rsa: RsaKeyPair,
    p256: EcdsaKeyPair,
    p384: EcdsaKeyPair,
    p521: EcdsaKeyPair,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
        p256: EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        p384: EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
        p521: EcdsaKeyPair::generate(&sig::ECDSA_P521_SHA512_FIXED_SIGNING).unwrap(),
    })
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn signing_key(family: KeyFamily) -> String {
    let k = keys();
    match family {
        KeyFamily::Hmac => STANDARD.encode(SECRET),
        KeyFamily::Rsa => pem(k.rsa.public_key().as_der().unwrap().as_ref()),
        KeyFamily::EcP256 => pem(k.p256.public_key().as_der().unwrap().as_ref()),
        KeyFamily::EcP384 => pem(k.p384.public_key().as_der().unwrap().as_ref()),
        KeyFamily::EcP521 => pem(k.p521.public_key().as_der().unwrap().as_ref()),
    }
}

fn config(family: KeyFamily, extra: Value) -> JwtConfig {
    let mut map = json!({ "signing_key": signing_key(family) });
    for (k, v) in extra.as_object().unwrap() {
        map[k] = v.clone();
    }
    JwtConfig::from_value(map).unwrap()
}

fn auth(family: KeyFamily, extra: Value) -> JwtAuthenticator {
    JwtAuthenticator::new(config(family, extra)).unwrap()
}

fn part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn raw_sign(alg: JwsAlgorithm, input: &[u8]) -> Vec<u8> {
    use JwsAlgorithm::*;
    let k = keys();
    let rng = SystemRandom::new();
    let hmac_alg = match alg {
        HS256 => Some(hmac::HMAC_SHA256),
        HS384 => Some(hmac::HMAC_SHA384),
        HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    };
    if let Some(h) = hmac_alg {
        return hmac::sign(&hmac::Key::new(h, SECRET), input)
            .as_ref()
            .to_vec();
    }
    let rsa_alg: Option<&'static dyn sig::RsaEncoding> = match alg {
        RS256 => Some(&sig::RSA_PKCS1_SHA256),
        RS384 => Some(&sig::RSA_PKCS1_SHA384),
        RS512 => Some(&sig::RSA_PKCS1_SHA512),
        PS256 => Some(&sig::RSA_PSS_SHA256),
        PS384 => Some(&sig::RSA_PSS_SHA384),
        PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    };
    if let Some(r) = rsa_alg {
        let mut out = vec![0; k.rsa.public_modulus_len()];
        k.rsa.sign(r, &rng, input, &mut out).unwrap();
        return out;
    }
    let ec = match alg {
        ES256 => &k.p256,
        ES384 => &k.p384,
        _ => &k.p521,
    };
    ec.sign(&rng, input).unwrap().as_ref().to_vec()
}

fn token_with_header(alg: JwsAlgorithm, header: Value, claims: Value) -> String {
    let input = format!("{}.{}", part(&header), part(&claims));
    let signature = raw_sign(alg, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn token(alg: JwsAlgorithm, claims: Value) -> String {
    token_with_header(alg, json!({ "alg": alg.name(), "typ": "JWT" }), claims)
}

fn claims() -> Value {
    json!({ "sub": "alice", "iat": T0, "nbf": T0, "exp": T0 + 300 })
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

fn check(a: &JwtAuthenticator, token: &str) -> Result<JwtIdentity, JwtError> {
    a.authenticate(&bearer(token), None, at(T0))
        .map(|id| id.expect("a token was present"))
}

#[test]
fn all_twelve_algorithms_with_their_own_family_only() {
    use KeyFamily::*;
    let families = [Hmac, Rsa, EcP256, EcP384, EcP521];
    let auths: Vec<_> = families.iter().map(|&f| auth(f, json!({}))).collect();
    for alg in JwsAlgorithm::ALL {
        let t = token(alg, claims());
        for (family, a) in families.iter().zip(&auths) {
            let got = check(a, &t);
            if alg.key_family() == *family {
                assert_eq!(got.unwrap().subject, "alice", "{alg}");
            } else {
                assert_eq!(
                    got.unwrap_err(),
                    JwtError::AlgorithmNotAllowed { alg, key: *family },
                    "{alg} with {family}"
                );
            }
        }
    }
}

#[test]
fn unsigned_and_confused_tokens_are_refused() {
    let rsa = auth(KeyFamily::Rsa, json!({}));
    let none = format!("{}.{}.", part(&json!({"alg": "none"})), part(&claims()));
    assert_eq!(check(&rsa, &none).unwrap_err(), JwtError::AlgNone);
    let none = format!("{}.{}.", part(&json!({"alg": "NONE"})), part(&claims()));
    assert_eq!(check(&rsa, &none).unwrap_err(), JwtError::AlgNone);
    let other = format!("{}.{}.AA", part(&json!({"alg": "EdDSA"})), part(&claims()));
    assert_eq!(
        check(&rsa, &other).unwrap_err(),
        JwtError::UnsupportedAlgorithm
    );
    // HS256 keyed with the PEM text of the configured RSA public key.
    let input = format!("{}.{}", part(&json!({"alg": "HS256"})), part(&claims()));
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, signing_key(KeyFamily::Rsa).as_bytes()),
        input.as_bytes(),
    );
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac));
    assert!(matches!(
        check(&rsa, &forged).unwrap_err(),
        JwtError::AlgorithmNotAllowed {
            alg: JwsAlgorithm::HS256,
            key: KeyFamily::Rsa
        }
    ));
    let crit = token_with_header(
        JwsAlgorithm::RS256,
        json!({"alg": "RS256", "crit": ["exp"]}),
        claims(),
    );
    assert_eq!(check(&rsa, &crit).unwrap_err(), JwtError::CriticalHeader);
}

#[test]
fn bad_and_zero_signatures_are_refused() {
    for alg in JwsAlgorithm::ALL {
        let a = auth(alg.key_family(), json!({}));
        let t = token(alg, claims());
        let (input, signature) = t.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
        raw[0] ^= 1;
        let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            check(&a, &flipped).unwrap_err(),
            JwtError::InvalidSignature,
            "{alg}"
        );
        let zero = format!("{input}.{}", URL_SAFE_NO_PAD.encode(vec![0; raw.len()]));
        assert_eq!(
            check(&a, &zero).unwrap_err(),
            JwtError::InvalidSignature,
            "{alg}"
        );
        let empty = format!("{input}.");
        assert_eq!(
            check(&a, &empty).unwrap_err(),
            JwtError::InvalidSignature,
            "{alg}"
        );
        // A changed payload under the original signature.
        let (header, _) = input.split_once('.').unwrap();
        let other = json!({ "sub": "mallory", "exp": T0 + 300 });
        let swapped = format!("{header}.{}.{signature}", part(&other));
        assert_eq!(
            check(&a, &swapped).unwrap_err(),
            JwtError::InvalidSignature,
            "{alg}"
        );
    }
}

#[test]
fn time_claims_with_skew() {
    let a = auth(KeyFamily::Hmac, json!({}));
    let with = |claims: Value| check(&a, &token(JwsAlgorithm::HS256, claims));
    assert!(
        with(json!({"sub": "a", "exp": T0 - 29})).is_ok(),
        "within the 30 s skew"
    );
    assert_eq!(
        with(json!({"sub": "a", "exp": T0 - 30})).unwrap_err(),
        JwtError::Expired
    );
    assert_eq!(
        with(json!({"sub": "a", "exp": T0 - 3600})).unwrap_err(),
        JwtError::Expired
    );
    assert!(with(json!({"sub": "a", "nbf": T0 + 30})).is_ok());
    assert_eq!(
        with(json!({"sub": "a", "nbf": T0 + 31})).unwrap_err(),
        JwtError::NotYetValid
    );
    assert!(with(json!({"sub": "a", "iat": T0 + 30})).is_ok());
    assert_eq!(
        with(json!({"sub": "a", "iat": T0 + 31})).unwrap_err(),
        JwtError::IssuedInFuture
    );
    assert!(
        with(json!({"sub": "a", "exp": (T0 + 1) as f64 + 0.5})).is_ok(),
        "float dates"
    );
    for name in ["exp", "nbf", "iat"] {
        for bad in [
            json!("1800000300"),
            json!(null),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            let mut c = json!({"sub": "a"});
            c[name] = bad;
            assert_eq!(
                with(c).unwrap_err(),
                JwtError::InvalidClaim(name.into()),
                "{name}"
            );
        }
    }
    let strict = auth(
        KeyFamily::Hmac,
        json!({"jwt_clock_skew_tolerance_seconds": 0}),
    );
    let t = token(JwsAlgorithm::HS256, json!({"sub": "a", "exp": T0}));
    assert_eq!(check(&strict, &t).unwrap_err(), JwtError::Expired);
    assert!(strict.verify(&t, at(T0 - 1)).is_ok());
}

#[test]
fn audience_and_issuer() {
    let a = auth(
        KeyFamily::EcP256,
        json!({"required_audience": "repo", "required_issuer": "https://idp.example"}),
    );
    let with = |extra: Value| {
        let mut c = json!({"sub": "a", "aud": "repo", "iss": "https://idp.example"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        check(&a, &token(JwsAlgorithm::ES256, c))
    };
    assert!(with(json!({})).is_ok());
    assert!(with(json!({"aud": ["other", "repo"]})).is_ok());
    for aud in [
        json!("other"),
        json!(["other"]),
        json!([]),
        json!(null),
        json!(["Repo"]),
    ] {
        assert_eq!(
            with(json!({"aud": aud})).unwrap_err(),
            JwtError::WrongAudience
        );
    }
    for iss in [
        json!("https://evil.example"),
        json!(null),
        json!(["https://idp.example"]),
    ] {
        assert_eq!(
            with(json!({"iss": iss})).unwrap_err(),
            JwtError::WrongIssuer
        );
    }
    // Without requirements, aud and iss are not checked.
    let open = auth(KeyFamily::EcP256, json!({}));
    let t = token(
        JwsAlgorithm::ES256,
        json!({"sub": "a", "aud": "x", "iss": 5}),
    );
    assert!(check(&open, &t).is_ok());
}

#[test]
fn subject_and_roles() {
    let a = auth(
        KeyFamily::Hmac,
        json!({"subject_key": "user", "roles_key": "roles"}),
    );
    let with = |c: Value| check(&a, &token(JwsAlgorithm::HS512, c));
    let id = with(json!({"user": "bob", "sub": "ignored", "roles": "admin, ops,,x"})).unwrap();
    assert_eq!(id.subject, "bob");
    assert_eq!(id.backend_roles, ["admin", " ops", "x"], "not trimmed");
    let id = with(json!({"user": "bob", "roles": [" admin ", "ops", ""]})).unwrap();
    assert_eq!(id.backend_roles, [" admin ", "ops"]);
    assert!(
        with(json!({"user": "bob"}))
            .unwrap()
            .backend_roles
            .is_empty()
    );
    for bad in [json!(5), json!({"a": 1}), json!(["ok", 5]), json!(true)] {
        assert_eq!(
            with(json!({"user": "bob", "roles": bad})).unwrap_err(),
            JwtError::InvalidClaim("roles".into())
        );
    }
    assert_eq!(
        with(json!({"sub": "bob"})).unwrap_err(),
        JwtError::MissingSubject("user".into())
    );
    assert_eq!(
        with(json!({"user": ""})).unwrap_err(),
        JwtError::MissingSubject("user".into())
    );
    assert_eq!(
        with(json!({"user": 7})).unwrap_err(),
        JwtError::InvalidClaim("user".into())
    );
    // Without roles_key no roles are read.
    let plain = auth(KeyFamily::Hmac, json!({}));
    let t = token(JwsAlgorithm::HS256, json!({"sub": "bob", "roles": "admin"}));
    assert!(check(&plain, &t).unwrap().backend_roles.is_empty());
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let a = auth(KeyFamily::Hmac, json!({}));
    // Not even base64: the size is checked first.
    let big = "!".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(a.verify(&big, at(T0)).unwrap_err(), JwtError::TooLarge);
    assert_eq!(check(&a, &big).unwrap_err(), JwtError::TooLarge);
    // A validly signed token that is too long.
    let t = token(
        JwsAlgorithm::HS256,
        json!({"sub": "a", "pad": "x".repeat(MAX_TOKEN_BYTES)}),
    );
    assert_eq!(check(&a, &t).unwrap_err(), JwtError::TooLarge);
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {}", "a".repeat(200_000)).parse().unwrap(),
    );
    assert_eq!(
        a.authenticate(&h, None, at(T0)).unwrap_err(),
        JwtError::TooLarge
    );
    let q = format!("jwt={}", "a".repeat(MAX_TOKEN_BYTES + 1));
    let by_url = auth(KeyFamily::Hmac, json!({"jwt_url_parameter": "jwt"}));
    assert_eq!(
        by_url
            .authenticate(&HeaderMap::new(), Some(&q), at(T0))
            .unwrap_err(),
        JwtError::TooLarge
    );
    // Just at the limit it is read (and here fails on its signature, not its size).
    let edge = format!(
        "{}.{}.",
        part(&json!({"alg": "HS256"})),
        "A".repeat(MAX_TOKEN_BYTES)
    );
    let edge = &edge[edge.len() - MAX_TOKEN_BYTES..];
    assert_ne!(a.verify(edge, at(T0)).unwrap_err(), JwtError::TooLarge);
}

#[test]
fn malformed_tokens_never_panic() {
    let a = auth(KeyFamily::EcP521, json!({}));
    for t in [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b.c.d",
        "e30.e30.",
        "e30.e30.e30",
        "eyJhbGciOjF9.e30.",
        "W10.e30.",
        "bnVsbA.e30.",
        "eyJhbGciOiJFUzUxMiJ9.bm90IGpzb24.",
        "eyJhbGciOiJFUzUxMiJ9.e30=.AA",
        "\u{e9}.\u{e9}.\u{e9}",
    ] {
        assert!(a.verify(t, at(T0)).is_err(), "{t:?}");
    }
    // A valid signature over a payload that is not an object.
    let input = format!(
        "{}.{}",
        part(&json!({"alg": "ES512"})),
        part(&json!([1, 2]))
    );
    let t = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(raw_sign(JwsAlgorithm::ES512, input.as_bytes()))
    );
    assert_eq!(
        a.verify(&t, at(T0)).unwrap_err(),
        JwtError::Malformed("payload is not a JSON object")
    );
    // Dates far in the past or future, and a clock before 1970, are just compared.
    let t = token(
        JwsAlgorithm::ES512,
        json!({"sub": "a", "exp": 1e300, "nbf": -1e300}),
    );
    assert!(a.verify(&t, at(T0)).is_ok());
    assert!(a.verify(&t, UNIX_EPOCH - Duration::from_secs(5)).is_ok());
}

#[test]
fn token_sources() {
    let t = token(JwsAlgorithm::HS256, claims());
    let a = auth(KeyFamily::Hmac, json!({}));
    let with = |a: &JwtAuthenticator, name: &str, value: &str, q: Option<&str>| {
        let mut h = HeaderMap::new();
        h.append(HeaderName::try_from(name).unwrap(), value.parse().unwrap());
        a.authenticate(&h, q, at(T0))
    };
    assert!(
        with(&a, "authorization", &format!("Bearer {t}"), None)
            .unwrap()
            .is_some()
    );
    assert!(
        with(&a, "authorization", &format!("bearer  {t} "), None)
            .unwrap()
            .is_some()
    );
    assert!(
        with(&a, "authorization", &t, None).unwrap().is_some(),
        "no scheme"
    );
    assert!(
        with(&a, "authorization", "Basic YTpi", None)
            .unwrap()
            .is_none()
    );
    assert!(with(&a, "authorization", "  ", None).unwrap().is_none());
    assert!(with(&a, "x-other", &t, None).unwrap().is_none());
    assert!(
        a.authenticate(&HeaderMap::new(), Some(&format!("jwt={t}")), at(T0))
            .unwrap()
            .is_none()
    );
    assert!(with(&a, "authorization", "Bearer ", None).is_err());
    let mut two = bearer(&t);
    two.append(
        http::header::AUTHORIZATION,
        format!("Bearer {t}").parse().unwrap(),
    );
    assert!(a.authenticate(&two, None, at(T0)).is_err());
    let mut latin1 = HeaderMap::new();
    latin1.insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xe9").unwrap(),
    );
    assert!(a.authenticate(&latin1, None, at(T0)).is_err());

    let custom = auth(
        KeyFamily::Hmac,
        json!({"jwt_header": "X-JWT", "jwt_url_parameter": "tok"}),
    );
    assert!(with(&custom, "x-jwt", &t, None).unwrap().is_some());
    assert!(
        with(&custom, "authorization", &format!("Bearer {t}"), None)
            .unwrap()
            .is_none()
    );
    let q = format!("a=1&tok={t}&b");
    let id = custom
        .authenticate(&HeaderMap::new(), Some(&q), at(T0))
        .unwrap()
        .unwrap();
    assert_eq!(id.subject, "alice");
    let escaped = format!("t%6Fk={}", t.replace('.', "%2E"));
    assert!(
        custom
            .authenticate(&HeaderMap::new(), Some(&escaped), at(T0))
            .unwrap()
            .is_some()
    );
    assert!(
        custom
            .authenticate(&HeaderMap::new(), Some("a=1"), at(T0))
            .unwrap()
            .is_none()
    );
    for bad in [
        format!("tok={t}&tok={t}"),
        "tok=".into(),
        "tok=%zz".into(),
        "tok=%ff".into(),
    ] {
        assert!(
            custom
                .authenticate(&HeaderMap::new(), Some(&bad), at(T0))
                .is_err(),
            "{bad}"
        );
    }
    // The header wins over the parameter.
    let id = with(&custom, "x-jwt", &t, Some("tok=garbage")).unwrap();
    assert!(id.is_some());
}

#[test]
fn configuration_is_checked() {
    let msg = |v: Value| match JwtConfig::from_value(v) {
        Err(e) => e.to_string(),
        Ok(c) => JwtAuthenticator::new(c).unwrap_err().to_string(),
    };
    let hs = STANDARD.encode(SECRET);
    assert!(msg(json!({"signing_key": hs, "jwt_heder": "x"})).contains("jwt_heder"));
    assert!(msg(json!({"subject_key": "sub"})).contains("signing_key"));
    assert!(msg(json!({"signing_key": "a3M5MjEwamRqOTAxOTJqZDE="})).contains("at least 32"));
    assert!(msg(json!({"signing_key": "not base64 !"})).contains("signing_key"));
    assert!(msg(json!({"signing_key": ""})).contains("signing_key"));
    assert!(msg(json!({"signing_key": hs, "jwt_header": "bad header"})).contains("jwt_header"));
    assert!(msg(json!({"signing_key": hs, "roles_key": ""})).contains("roles_key"));
    assert!(
        msg(json!({"signing_key": hs, "jwt_clock_skew_tolerance_seconds": 86_401}))
            .contains("jwt_clock_skew_tolerance_seconds")
    );
    assert!(
        msg(json!({"signing_key": hs, "jwt_clock_skew_tolerance_seconds": "30"}))
            .contains("invalid type")
    );
    let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
    assert!(msg(json!({"signing_key": private})).contains("private key"));
    let truncated = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----";
    assert!(msg(json!({"signing_key": truncated})).contains("public key"));
    assert!(msg(json!({"signing_key": "-----BEGIN PUBLIC KEY-----\nAAAA"})).contains("PEM"));
    assert!(msg(json!({"signing_key": "x"})).contains("neither base64"));
    // PEM with CRLF line ends and surrounding blank lines, as YAML block scalars may give it.
    let crlf = format!(
        "\n{}\n",
        signing_key(KeyFamily::EcP384).replace('\n', "\r\n")
    );
    let a = JwtAuthenticator::new(JwtConfig::from_value(json!({"signing_key": crlf})).unwrap());
    assert_eq!(a.unwrap().key_family(), KeyFamily::EcP384);
    // Nulls, as in seed 003's example, mean the defaults.
    let c = JwtConfig::from_value(json!({
        "signing_key": hs, "jwt_header": null, "jwt_url_parameter": null,
        "subject_key": null, "roles_key": null
    }))
    .unwrap();
    let a = JwtAuthenticator::new(c).unwrap();
    assert_eq!(a.key_family(), KeyFamily::Hmac);
    assert!(check(&a, &token(JwsAlgorithm::HS384, claims())).is_ok());
}

#[test]
fn secrets_never_printed() {
    let hs = STANDARD.encode(SECRET);
    let c = config(KeyFamily::Hmac, json!({}));
    let secret_text = String::from_utf8_lossy(SECRET).into_owned();
    for text in [
        format!("{c:?}"),
        format!("{:?}", JwtAuthenticator::new(c).unwrap()),
    ] {
        assert!(
            !text.contains(&hs) && !text.contains(&secret_text),
            "{text}"
        );
        assert!(text.contains("redacted"), "{text}");
    }
    // Errors carry no part of the token.
    let a = auth(KeyFamily::Hmac, json!({"required_audience": "r"}));
    let t = token(
        JwsAlgorithm::HS256,
        json!({"sub": "secret-subject", "aud": "zz"}),
    );
    let e = check(&a, &t).unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("secret-subject") && !text.contains(&t[..20]),
        "{text}"
    );
}
