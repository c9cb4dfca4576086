//! Key Vault's error answers (`{"error":{"code","message","innererror":{"code"}}}`) and their
//! mapping to [`Error`]s.

use encrypt_repo_keys::Error;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::TYPE;
use crate::http::{Answer, sanitize};

/// The operations, for messages and the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Wrap,
    Unwrap,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "get key",
            Self::Wrap => "wrapkey",
            Self::Unwrap => "unwrapkey",
        }
    }
}

/// What Key Vault said: `code (innererror code): message`, cleaned and shortened.
pub(crate) fn service_message(answer: &Answer) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Inner {
        code: Option<String>,
    }
    #[derive(Deserialize)]
    struct Body {
        code: Option<String>,
        message: Option<String>,
        innererror: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Envelope {
        error: Body,
    }
    match serde_json::from_slice::<Envelope>(&answer.body) {
        Ok(Envelope { error }) => {
            let code = error.code.clone();
            let inner = error.innererror.and_then(|i| i.code);
            let text = format!(
                "{}{}: {}",
                error.code.as_deref().unwrap_or("no code"),
                inner.map(|i| format!(" ({i})")).unwrap_or_default(),
                error.message.as_deref().unwrap_or("no message")
            );
            (code, sanitize(&text, &[]))
        }
        Err(_) => (
            None,
            format!(
                "an answer that is not Key Vault's JSON ({} bytes)",
                answer.body.len()
            ),
        ),
    }
}

/// Maps a non-200 Key Vault answer for `key` (the key identifier). 403 and 404 mean the key
/// cannot be used (the repository locks); 400 on unwrap is a refused ciphertext; the rest
/// (401 after a fresh token, 429 and 5xx after the retries) is a provider failure.
pub(crate) fn failure(op: Op, key: &str, answer: &Answer) -> Error {
    let (_, message) = service_message(answer);
    let status = answer.status;
    let unavailable = |reason: String| Error::KeyUnavailable {
        provider: TYPE.into(),
        key: key.into(),
        reason,
    };
    match status {
        StatusCode::FORBIDDEN => unavailable(format!(
            "{} refused (HTTP 403 {message}); check the key's state and the access policy or \
             RBAC role (keys/get, keys/wrapKey, keys/unwrapKey)",
            op.name()
        )),
        StatusCode::NOT_FOUND => unavailable(format!("not found (HTTP 404 {message})")),
        StatusCode::UNAUTHORIZED => Error::Provider {
            provider: TYPE.into(),
            message: format!(
                "{} on key {key}: the vault refused the bearer token (HTTP 401 {message})",
                op.name()
            ),
        },
        _ => Error::Provider {
            provider: TYPE.into(),
            message: format!(
                "{} on key {key}: HTTP {status}: {message}{}",
                op.name(),
                if answer.attempts > 1 {
                    format!(" (after {} attempts)", answer.attempts)
                } else {
                    String::new()
                }
            ),
        },
    }
}

/// A 200 answer that is not what the operation returns.
pub(crate) fn malformed(op: Op, key: &str, what: &str) -> Error {
    Error::Provider {
        provider: TYPE.into(),
        message: format!("malformed answer to {} on key {key}: {what}", op.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Zeroizing::new(body.as_bytes().to_vec()),
            attempts: 1,
        }
    }

    #[test]
    fn statuses_map_to_errors_naming_key_and_code() {
        let k = "https://v.vault.azure.net/keys/k";
        let e = failure(
            Op::Unwrap,
            k,
            &answer(
                403,
                r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
            ),
        );
        let m = e.to_string();
        assert!(matches!(e, Error::KeyUnavailable { .. }), "{e:?}");
        assert!(
            m.contains(k) && m.contains("Forbidden (KeyDisabled)"),
            "{m}"
        );
        let e = failure(
            Op::Get,
            k,
            &answer(404, r#"{"error":{"code":"KeyNotFound","message":"x"}}"#),
        );
        assert!(matches!(e, Error::KeyUnavailable { .. }) && e.to_string().contains("KeyNotFound"));
        let e = failure(Op::Wrap, k, &answer(503, "<html>oops</html>"));
        let m = e.to_string();
        assert!(
            matches!(e, Error::Provider { .. }) && m.contains("not Key Vault's JSON"),
            "{m}"
        );
        assert!(!m.contains("oops"), "{m}");
    }
}
