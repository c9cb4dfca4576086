//! The provider against a scripted KMS on loopback: retries on throttling and 5xx (how many
//! attempts, what is reported after), and malformed or lying answers (no panic, no plaintext in
//! errors). moto cannot throttle or misbehave on demand, hence this small server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::{Credentials, Region, SharedCredentialsProvider};
use encrypt_repo_format::{DataKeyId, RepositoryId};
use encrypt_repo_keys::{Error, KeyProvider, WrapContext, WrappedKey};
use encrypt_repo_kms_aws::{AwsKmsProvider, MAX_ATTEMPTS, kms_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// base64 of 32 bytes of 0x41 ('A'), and of 5 bytes.
const KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const SHORT_B64: &str = "QUFBQUE=";

/// One scripted answer: HTTP status and JSON body.
type Answer = (u16, String);

fn error(status: u16, code: &str) -> Answer {
    (
        status,
        format!(r#"{{"__type":"{code}","message":"scripted {code}"}}"#),
    )
}

fn describe_ok() -> Answer {
    (
        200,
        format!(
            r#"{{"KeyMetadata":{{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Arn":"{ARN}","Enabled":true,"KeyState":"Enabled","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT"}}}}"#
        ),
    )
}

/// Serves `answers` in order (the last one repeats); returns the endpoint and a request count.
async fn fake_kms(answers: Vec<Answer>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let i = served.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answers[i.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (endpoint, count)
}

fn sdk(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "fake",
        )))
        .build()
}

fn ctx() -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([1; 16]),
        data_key_id: DataKeyId([2; 16]),
    }
}

fn wrapped() -> WrappedKey {
    WrappedKey {
        provider: "aws-kms".into(),
        master_key: ARN.into(),
        ciphertext: vec![1, 2, 3, 4],
    }
}

async fn pinned(answers: Vec<Answer>) -> (AwsKmsProvider, Arc<AtomicUsize>) {
    let (endpoint, count) = fake_kms(answers).await;
    let p = AwsKmsProvider::from_parts(kms_client(&sdk(&endpoint), None, None), ARN, ARN);
    (p, count)
}

#[tokio::test]
async fn throttling_and_limit_exceeded_are_retried() {
    let (endpoint, count) = fake_kms(vec![
        error(400, "ThrottlingException"),
        error(400, "LimitExceededException"),
        describe_ok(),
    ])
    .await;
    let p = AwsKmsProvider::connect(&sdk(&endpoint), ARN)
        .await
        .expect("third attempt succeeds");
    assert_eq!(p.key_arn(), ARN);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (endpoint, count) = fake_kms(vec![
        error(500, "KMSInternalException"),
        error(503, "DependencyTimeoutException"),
        describe_ok(),
    ])
    .await;
    AwsKmsProvider::connect(&sdk(&endpoint), ARN)
        .await
        .expect("third attempt succeeds");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_throttling_gives_up_after_max_attempts_as_a_provider_error() {
    let (endpoint, count) = fake_kms(vec![error(400, "ThrottlingException")]).await;
    let started = std::time::Instant::now();
    match AwsKmsProvider::connect(&sdk(&endpoint), ARN).await {
        Err(Error::Provider { message, .. }) => {
            assert!(message.contains("ThrottlingException"), "{message}");
        }
        other => panic!("expected a Provider error, got {other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), MAX_ATTEMPTS as usize);
    eprintln!(
        "{MAX_ATTEMPTS} attempts under throttling took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn key_errors_are_not_retried() {
    let (endpoint, count) = fake_kms(vec![error(400, "DisabledException")]).await;
    let p = AwsKmsProvider::from_parts(kms_client(&sdk(&endpoint), None, None), ARN, ARN);
    match p.unwrap(&wrapped(), &ctx()).await {
        Err(Error::KeyUnavailable { reason, .. }) => assert!(reason.contains("Disabled")),
        other => panic!("{other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_decrypt_answers_fail_without_panic_or_plaintext() {
    let cases: Vec<(&str, Answer)> = vec![
        (
            "not json",
            (200, format!("{{\"Plaintext\":\"{KEY_B64}\",,,")),
        ),
        ("no plaintext", (200, format!(r#"{{"KeyId":"{ARN}"}}"#))),
        (
            "short key",
            (
                200,
                format!(r#"{{"KeyId":"{ARN}","Plaintext":"{SHORT_B64}"}}"#),
            ),
        ),
        (
            "other key",
            (
                200,
                format!(
                    r#"{{"KeyId":"arn:aws:kms:eu-west-1:111122223333:key/other","Plaintext":"{KEY_B64}"}}"#
                ),
            ),
        ),
        (
            "no key id",
            (200, format!(r#"{{"Plaintext":"{KEY_B64}"}}"#)),
        ),
        (
            "bad base64",
            (200, format!(r#"{{"KeyId":"{ARN}","Plaintext":"%%%"}}"#)),
        ),
        ("html", (200, "<html>proxy</html>".to_owned())),
    ];
    for (what, answer) in cases {
        let (p, _) = pinned(vec![answer]).await;
        let err = p.unwrap(&wrapped(), &ctx()).await.expect_err(what);
        let text = format!("{err} {err:?}");
        assert_no_key(what, &text);
        assert!(
            matches!(err, Error::UnwrapFailed { .. } | Error::Provider { .. }),
            "{what}: {err:?}"
        );
    }
}

#[tokio::test]
async fn malformed_generate_answers_fail_without_panic_or_plaintext() {
    let cases: Vec<(&str, Answer)> = vec![
        ("empty", (200, "{}".to_owned())),
        (
            "other key",
            (
                200,
                format!(
                    r#"{{"KeyId":"arn:aws:kms:eu-west-1:111122223333:key/other","Plaintext":"{KEY_B64}","CiphertextBlob":"AQID"}}"#
                ),
            ),
        ),
        (
            "short key",
            (
                200,
                format!(r#"{{"KeyId":"{ARN}","Plaintext":"{SHORT_B64}","CiphertextBlob":"AQID"}}"#),
            ),
        ),
        (
            "no ciphertext",
            (
                200,
                format!(r#"{{"KeyId":"{ARN}","Plaintext":"{KEY_B64}"}}"#),
            ),
        ),
        (
            "truncated",
            (200, format!(r#"{{"KeyId":"{ARN}","Plaintext":"{KEY_B64}""#)),
        ),
    ];
    for (what, answer) in cases {
        let (p, _) = pinned(vec![answer]).await;
        let err = p.generate_data_key(&ctx()).await.expect_err(what);
        let text = format!("{err} {err:?}");
        assert_no_key(what, &text);
        assert!(matches!(err, Error::Provider { .. }), "{what}: {err:?}");
    }
    // And a well-formed answer is accepted, so the cases above fail for the reason given.
    let (p, _) = pinned(vec![(
        200,
        format!(r#"{{"KeyId":"{ARN}","Plaintext":"{KEY_B64}","CiphertextBlob":"AQID"}}"#),
    )])
    .await;
    let g = p
        .generate_data_key(&ctx())
        .await
        .expect("well-formed answer");
    assert_eq!(g.plaintext.expose_secret(), &[0x41; 32]);
    assert_eq!(g.wrapped.ciphertext, vec![1, 2, 3]);
}

#[tokio::test]
async fn foreign_and_impossible_wrapped_keys_are_refused_before_any_call() {
    let (p, count) = pinned(vec![error(500, "KMSInternalException")]).await;
    let mut other = wrapped();
    other.master_key = "arn:aws:kms:eu-west-1:111122223333:key/other".into();
    assert!(matches!(
        p.unwrap(&other, &ctx()).await,
        Err(Error::ForeignWrappedKey { .. })
    ));
    let mut other = wrapped();
    other.provider = "openbao".into();
    assert!(matches!(
        p.unwrap(&other, &ctx()).await,
        Err(Error::ForeignWrappedKey { .. })
    ));
    for len in [0, 6145] {
        let mut w = wrapped();
        w.ciphertext = vec![7; len];
        assert!(matches!(
            p.unwrap(&w, &ctx()).await,
            Err(Error::UnwrapFailed { .. })
        ));
    }
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

/// The scripted key (32 bytes of 0x41) in any form an error could carry it: base64, hex, ASCII,
/// a `Debug` of its bytes.
#[track_caller]
fn assert_no_key(what: &str, text: &str) {
    for needle in [KEY_B64, "41414141", "AAAA", "65, 65, 65"] {
        assert!(!text.contains(needle), "{what}: shows {needle}: {text}");
    }
}
