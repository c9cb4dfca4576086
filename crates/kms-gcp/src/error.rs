//! Cloud KMS error answers (`{"error": {"code", "message", "status"}}`) and their mapping to
//! [`Error`].

use encrypt_repo_keys::{Error, Result};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::TYPE;

/// The call that failed, for messages; decrypt carries the data key, so a refused ciphertext
/// becomes [`Error::UnwrapFailed`] for that data key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// `GET v1/{key_name}`.
    Get,
    /// `POST v1/{key_name}:encrypt`.
    Encrypt,
    /// `POST v1/{key_name}:decrypt` of this data key (hex id).
    Decrypt(&'a str),
}

impl Op<'_> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Get => "cryptoKeys.get",
            Self::Encrypt => "cryptoKeys.encrypt",
            Self::Decrypt(_) => "cryptoKeys.decrypt",
        }
    }
}

/// A Google API error, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoogleError {
    /// HTTP status of the answer.
    pub(crate) http: u16,
    /// The canonical code name (`FAILED_PRECONDITION`, …), or one derived from the HTTP status
    /// when the body is not Google's error JSON.
    pub(crate) status: String,
    /// The server's message, cleaned and shortened.
    pub(crate) message: String,
}

impl GoogleError {
    /// Reads an error answer. Never quotes a body that is not Google's error JSON: it could echo
    /// anything.
    pub(crate) fn parse(http: StatusCode, body: &[u8], token: &str) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            message: String,
            #[serde(default)]
            status: String,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(e) => Self {
                http: http.as_u16(),
                status: if e.error.status.is_empty() {
                    status_for_http(http).to_owned()
                } else {
                    sanitize(&e.error.status, token)
                },
                message: if e.error.message.is_empty() {
                    "no message".to_owned()
                } else {
                    sanitize(&e.error.message, token)
                },
            },
            Err(_) => Self {
                http: http.as_u16(),
                status: status_for_http(http).to_owned(),
                message: format!(
                    "an answer that is not Cloud KMS's error JSON ({} bytes)",
                    body.len()
                ),
            },
        }
    }

    /// `STATUS: message (HTTP n)`.
    pub(crate) fn describe(&self) -> String {
        format!("{}: {} (HTTP {})", self.status, self.message, self.http)
    }

    fn is_key_unavailable(&self) -> bool {
        matches!(
            self.status.as_str(),
            "PERMISSION_DENIED" | "NOT_FOUND" | "FAILED_PRECONDITION"
        ) || matches!(self.http, 403 | 404)
    }
}

/// The canonical code Google uses for an HTTP status, for answers without a readable body.
fn status_for_http(http: StatusCode) -> &'static str {
    match http.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// Keeps a server-supplied message printable, short, and free of the bearer token.
pub(crate) fn sanitize(message: &str, token: &str) -> String {
    encrypt_repo_keys::wire::sanitize(message, &[token])
}

/// Maps an error answer of `op` on `key`:
///
/// | answer | error |
/// |---|---|
/// | `PERMISSION_DENIED` / 403, `NOT_FOUND` / 404, `FAILED_PRECONDITION` (version disabled or destroyed) | [`Error::KeyUnavailable`] (the repository locks) |
/// | `INVALID_ARGUMENT` on decrypt (ciphertext or AAD refused) | [`Error::UnwrapFailed`] |
/// | anything else (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED` and 5xx after retries, …) | [`Error::Provider`] |
pub(crate) fn map_error(op: Op<'_>, key: &str, e: &GoogleError) -> Error {
    if e.is_key_unavailable() {
        return Error::KeyUnavailable {
            provider: TYPE.into(),
            key: key.into(),
            reason: format!("{}: {}", op.name(), e.describe()),
        };
    }
    match op {
        Op::Decrypt(data_key_id) if e.status == "INVALID_ARGUMENT" => Error::UnwrapFailed {
            provider: TYPE.into(),
            data_key_id: data_key_id.into(),
        },
        _ => Error::Provider {
            provider: TYPE.into(),
            message: format!("{} on key {key}: {}", op.name(), e.describe()),
        },
    }
}

/// An answer that is a success by its status but not what Cloud KMS sends.
pub(crate) fn odd_answer(op: Op<'_>, key: &str, what: &str) -> Error {
    Error::Provider {
        provider: TYPE.into(),
        message: format!("{} on key {key}: unexpected answer: {what}", op.name()),
    }
}

/// The end-to-end integrity check failed: the request or the answer was corrupted on the way.
/// Not retried: a path that corrupts data is reported, not hammered.
pub(crate) fn integrity(op: Op<'_>, key: &str, what: &str) -> Error {
    Error::Provider {
        provider: TYPE.into(),
        message: format!(
            "{} on key {key}: CRC32C integrity check failed: {what}; the request or the answer \
             was corrupted in transit (not retried)",
            op.name()
        ),
    }
}

/// Parses a success answer's JSON, or reports it without quoting it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    op: Op<'_>,
    key: &str,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        odd_answer(
            op,
            key,
            &format!(
                "not the JSON Cloud KMS sends ({} bytes; {} at line {} column {})",
                body.len(),
                match e.classify() {
                    serde_json::error::Category::Data => "missing or mistyped field",
                    serde_json::error::Category::Eof => "truncated",
                    _ => "syntax error",
                },
                e.line(),
                e.column()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k";

    fn google(http: u16, status: &str, message: &str) -> GoogleError {
        let body =
            serde_json::json!({"error": {"code": http, "message": message, "status": status}});
        GoogleError::parse(
            StatusCode::from_u16(http).expect("status"),
            body.to_string().as_bytes(),
            "ya29.secret",
        )
    }

    #[track_caller]
    fn assert_unavailable(err: Error, needle: &str) {
        match err {
            Error::KeyUnavailable {
                provider,
                key,
                reason,
            } => {
                assert_eq!(provider, TYPE);
                assert_eq!(key, KEY);
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("expected KeyUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn key_state_and_permission_answers_are_key_unavailable() {
        let disabled = google(
            400,
            "FAILED_PRECONDITION",
            "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.",
        );
        assert_unavailable(
            map_error(Op::Encrypt, KEY, &disabled),
            "FAILED_PRECONDITION",
        );
        let denied = google(
            403,
            "PERMISSION_DENIED",
            "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied",
        );
        assert_unavailable(map_error(Op::Decrypt("02"), KEY, &denied), "useToDecrypt");
        let missing = google(404, "NOT_FOUND", "CryptoKey k not found.");
        assert_unavailable(map_error(Op::Get, KEY, &missing), "NOT_FOUND");
    }

    #[test]
    fn invalid_argument_on_decrypt_is_unwrap_failed_elsewhere_provider() {
        let e = google(
            400,
            "INVALID_ARGUMENT",
            "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
        );
        match map_error(Op::Decrypt("0202"), KEY, &e) {
            Error::UnwrapFailed { data_key_id, .. } => assert_eq!(data_key_id, "0202"),
            other => panic!("{other:?}"),
        }
        match map_error(Op::Encrypt, KEY, &e) {
            Error::Provider { message, .. } => {
                assert!(
                    message.contains("INVALID_ARGUMENT") && message.contains(KEY),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unauthenticated_and_unavailable_are_provider_errors_without_the_token() {
        let e = google(401, "UNAUTHENTICATED", "token ya29.secret is invalid\n");
        match map_error(Op::Get, KEY, &e) {
            Error::Provider { message, .. } => {
                assert!(
                    message.contains("UNAUTHENTICATED: token <redacted> is invalid (HTTP 401)"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let e = google(503, "UNAVAILABLE", "The service is currently unavailable.");
        assert!(matches!(
            map_error(Op::Encrypt, KEY, &e),
            Error::Provider { .. }
        ));
    }

    #[test]
    fn a_body_that_is_not_google_json_is_never_quoted() {
        let e = GoogleError::parse(
            StatusCode::BAD_GATEWAY,
            b"<html>ya29.secret plaintext</html>",
            "",
        );
        assert_eq!(e.status, "UNKNOWN");
        assert!(!e.message.contains("secret"), "{e:?}");
        let e = GoogleError::parse(StatusCode::FORBIDDEN, b"nope", "");
        assert_eq!(e.status, "PERMISSION_DENIED");
        assert_unavailable(map_error(Op::Get, KEY, &e), "HTTP 403");
        let err =
            parse_json::<serde_json::Value>(Op::Decrypt("01"), KEY, b"{\"plaintext\": \"c2Vj")
                .expect_err("truncated");
        assert!(!err.to_string().contains("c2Vj"), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn long_messages_are_cut() {
        let s = sanitize(&"é".repeat(400), "");
        assert!(s.len() <= 304 && s.ends_with('…'));
    }
}
