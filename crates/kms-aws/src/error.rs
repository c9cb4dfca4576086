//! One mapping from AWS SDK errors to [`encrypt_repo_keys::Error`], for every KMS operation.
//!
//! | KMS answer | error |
//! |---|---|
//! | `DisabledException`, `KMSInvalidStateException` (pending deletion, pending import, …), `AccessDeniedException` / `AccessDenied`, `NotFoundException`, `KeyUnavailableException` | [`Error::KeyUnavailable`]: the repository locks |
//! | `InvalidCiphertextException`, `IncorrectKeyException` (a wrong encryption context is an `InvalidCiphertextException`), `ValidationException` from Decrypt | [`Error::UnwrapFailed`] (from Decrypt; elsewhere [`Error::Provider`]) |
//! | throttling, 5xx, timeouts, network, unreadable answers, missing credentials, anything else | [`Error::Provider`] (transient; the SDK has already retried) |
//!
//! Messages carry the AWS error code and message, the operation and the key; never a request
//! or response body, so no key material and no credential.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::{
    decrypt::DecryptError, describe_key::DescribeKeyError, encrypt::EncryptError,
    generate_data_key::GenerateDataKeyError, get_key_rotation_status::GetKeyRotationStatusError,
    list_key_rotations::ListKeyRotationsError,
};
use encrypt_repo_keys::Error;

use crate::TYPE;

/// How an AWS error code is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The key cannot be used: lock.
    Unavailable,
    /// The key answered, but refuses this ciphertext / context.
    BadCiphertext,
    /// Anything else: retryable later.
    Other,
}

/// Classifies an AWS error code (the modeled exception name, or the wire code of an unmodeled
/// one such as `AccessDeniedException`).
pub(crate) fn classify(code: &str) -> Class {
    match code {
        "DisabledException"
        | "KMSInvalidStateException"
        | "AccessDeniedException"
        | "AccessDenied"
        | "NotFoundException"
        | "KeyUnavailableException" => Class::Unavailable,
        "InvalidCiphertextException" | "IncorrectKeyException" => Class::BadCiphertext,
        _ => Class::Other,
    }
}

/// True for the codes that mean the caller may not use the key.
pub(crate) fn is_access_denied(code: &str) -> bool {
    matches!(code, "AccessDeniedException" | "AccessDenied")
}

/// An operation error enum from aws-sdk-kms. The name comes from the modeled variant where there
/// is one (so it does not depend on the error metadata being filled in), else from the code on
/// the wire (`AccessDeniedException` is not modeled in the KMS API).
pub(crate) trait KmsOperationError:
    ProvideErrorMetadata + std::error::Error + Send + Sync + 'static
{
    /// The AWS error code.
    fn name(&self) -> Option<&str>;
    /// The AWS error message (a modeled exception's own field, else the metadata's).
    fn text(&self) -> Option<&str>;
}

macro_rules! modeled {
    ($ty:ty { $($variant:ident => $code:literal),* $(,)? }) => {
        impl KmsOperationError for $ty {
            fn name(&self) -> Option<&str> {
                match self {
                    $(Self::$variant(_) => Some($code),)*
                    _ => self.code(),
                }
            }
            fn text(&self) -> Option<&str> {
                match self {
                    $(Self::$variant(e) => e.message().or_else(|| self.message()),)*
                    _ => self.message(),
                }
            }
        }
    };
}

modeled!(DescribeKeyError {
    NotFoundException => "NotFoundException",
});
modeled!(GenerateDataKeyError {
    DisabledException => "DisabledException",
    KmsInvalidStateException => "KMSInvalidStateException",
    NotFoundException => "NotFoundException",
    KeyUnavailableException => "KeyUnavailableException",
});
modeled!(EncryptError {
    DisabledException => "DisabledException",
    KmsInvalidStateException => "KMSInvalidStateException",
    NotFoundException => "NotFoundException",
    KeyUnavailableException => "KeyUnavailableException",
});
modeled!(DecryptError {
    DisabledException => "DisabledException",
    KmsInvalidStateException => "KMSInvalidStateException",
    NotFoundException => "NotFoundException",
    KeyUnavailableException => "KeyUnavailableException",
    InvalidCiphertextException => "InvalidCiphertextException",
    IncorrectKeyException => "IncorrectKeyException",
});
modeled!(GetKeyRotationStatusError {
    KmsInvalidStateException => "KMSInvalidStateException",
    NotFoundException => "NotFoundException",
});
modeled!(ListKeyRotationsError {
    KmsInvalidStateException => "KMSInvalidStateException",
    NotFoundException => "NotFoundException",
});

/// What the failing call was doing: names the operation, and for Decrypt the data key, so a
/// refused ciphertext becomes [`Error::UnwrapFailed`] for that data key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    /// DescribeKey, GetKeyRotationStatus, ListKeyRotations, GenerateDataKey, Encrypt.
    Op(&'static str),
    /// Decrypt of the data key with this id (hex).
    Decrypt(&'a str),
}

impl Call<'_> {
    fn op(&self) -> &'static str {
        match self {
            Self::Op(op) => op,
            Self::Decrypt(_) => "Decrypt",
        }
    }
}

/// The `Display` of `err`'s source chain, joined by ": ". Never `DisplayErrorContext` or `Debug`:
/// those print the raw HTTP response, body included.
fn sources(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = err.source();
    while let Some(e) = next {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
        next = e.source();
    }
    if out.is_empty() { err.to_string() } else { out }
}

/// The AWS error code of a service error, if `err` is one.
pub(crate) fn service_code<E: KmsOperationError>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().name(),
        _ => None,
    }
}

/// Maps any KMS operation's error. `key` names the key as registered (for messages).
pub(crate) fn map_sdk_error<E: KmsOperationError>(
    err: SdkError<E>,
    key: &str,
    call: Call<'_>,
) -> Error {
    let op = call.op();
    let provider_error = |message: String| Error::Provider {
        provider: TYPE.into(),
        message: format!("{op} on key {key}: {message}"),
    };
    let service = match &err {
        SdkError::ServiceError(ctx) => ctx,
        SdkError::TimeoutError(_) => return provider_error("timed out".into()),
        SdkError::DispatchFailure(_) => {
            return provider_error(format!("could not reach KMS: {}", sources(&err)));
        }
        // Not even the parser's message: it may quote the body, and a Decrypt or GenerateDataKey
        // body holds a plaintext data key.
        SdkError::ResponseError(r) => {
            return provider_error(format!(
                "unreadable answer from KMS (HTTP {})",
                r.raw().status().as_u16()
            ));
        }
        // Building the request failed: no region, no credentials, an invalid endpoint.
        _ => return provider_error(sources(&err)),
    };
    let status = service.raw().status().as_u16();
    let code = service.err().name().unwrap_or("unknown error");
    let message = service.err().text().unwrap_or("no message");
    let reason = format!("{code}: {message}");
    match (classify(code), call) {
        (Class::Unavailable, _) => Error::KeyUnavailable {
            provider: TYPE.into(),
            key: key.into(),
            reason: format!("{op}: {reason}"),
        },
        (Class::BadCiphertext, Call::Decrypt(data_key_id)) => Error::UnwrapFailed {
            provider: TYPE.into(),
            data_key_id: data_key_id.into(),
        },
        // Decrypt's only caller-controlled, attacker-reachable input is the ciphertext (length
        // 1..=6144): a validation failure there is a malformed keyring record.
        (Class::Other, Call::Decrypt(data_key_id)) if code == "ValidationException" => {
            Error::UnwrapFailed {
                provider: TYPE.into(),
                data_key_id: data_key_id.into(),
            }
        }
        _ => provider_error(format!("{reason} (HTTP {status})")),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::types::error::{
        DisabledException, IncorrectKeyException, InvalidCiphertextException,
        KeyUnavailableException, KmsInternalException, KmsInvalidStateException, NotFoundException,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    const KEY: &str = "alias/backups (arn:aws:kms:eu-west-1:111122223333:key/k1)";
    const DEK: &str = "0202020202020202";

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from("{\"Plaintext\":\"c2VjcmV0\"}"),
        )
    }

    fn service<E>(e: E, status: u16) -> SdkError<E> {
        SdkError::service_error(e, response(status))
    }

    fn unmodeled(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn decrypt(e: DecryptError, status: u16) -> Error {
        map_sdk_error(service(e, status), KEY, Call::Decrypt(DEK))
    }

    #[track_caller]
    fn assert_unavailable(err: Error, code: &str) {
        match err {
            Error::KeyUnavailable {
                provider,
                key,
                reason,
            } => {
                assert_eq!(provider, "aws-kms");
                assert_eq!(key, KEY);
                assert!(reason.contains(code), "{reason}");
            }
            other => panic!("expected KeyUnavailable for {code}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_unwrap_failed(err: Error) {
        match err {
            Error::UnwrapFailed {
                provider,
                data_key_id,
            } => {
                assert_eq!(provider, "aws-kms");
                assert_eq!(data_key_id, DEK);
            }
            other => panic!("expected UnwrapFailed, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_provider(err: Error, needle: &str) {
        match &err {
            Error::Provider { provider, message } => {
                assert_eq!(provider, "aws-kms");
                assert!(message.contains(needle), "{message}");
                assert!(message.contains(KEY), "{message}");
            }
            other => panic!("expected Provider, got {other:?}"),
        }
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn disabled_is_key_unavailable() {
        let e = DecryptError::DisabledException(
            DisabledException::builder()
                .message("arn:aws:kms:eu-west-1:111122223333:key/k1 is disabled.")
                .build(),
        );
        assert_unavailable(decrypt(e, 400), "DisabledException");
        let e = GenerateDataKeyError::DisabledException(DisabledException::builder().build());
        assert_unavailable(
            map_sdk_error(service(e, 400), KEY, Call::Op("GenerateDataKey")),
            "DisabledException",
        );
    }

    #[test]
    fn invalid_state_and_pending_deletion_are_key_unavailable() {
        let e = DecryptError::KmsInvalidStateException(
            KmsInvalidStateException::builder()
                .message("arn:aws:kms:eu-west-1:111122223333:key/k1 is pending deletion.")
                .build(),
        );
        let err = decrypt(e, 400);
        assert_unavailable(err, "pending deletion");
        let e = EncryptError::KmsInvalidStateException(KmsInvalidStateException::builder().build());
        assert_unavailable(
            map_sdk_error(service(e, 400), KEY, Call::Op("Encrypt")),
            "KMSInvalidStateException",
        );
    }

    #[test]
    fn access_denied_exception_is_key_unavailable() {
        let e = DecryptError::generic(unmodeled(
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/x is not authorized to perform: kms:Decrypt",
        ));
        assert_unavailable(decrypt(e, 400), "AccessDeniedException");
    }

    #[test]
    fn access_denied_code_is_key_unavailable() {
        let e = DescribeKeyError::generic(unmodeled("AccessDenied", "denied"));
        assert_unavailable(
            map_sdk_error(service(e, 403), KEY, Call::Op("DescribeKey")),
            "AccessDenied",
        );
    }

    #[test]
    fn not_found_is_key_unavailable() {
        let e = DescribeKeyError::NotFoundException(
            NotFoundException::builder()
                .message("Key 'arn:aws:kms:eu-west-1:111122223333:key/k1' does not exist")
                .build(),
        );
        assert_unavailable(
            map_sdk_error(service(e, 400), KEY, Call::Op("DescribeKey")),
            "does not exist",
        );
    }

    #[test]
    fn key_unavailable_exception_is_key_unavailable() {
        let e = DecryptError::KeyUnavailableException(KeyUnavailableException::builder().build());
        assert_unavailable(decrypt(e, 500), "KeyUnavailableException");
    }

    #[test]
    fn invalid_ciphertext_is_unwrap_failed() {
        let e =
            DecryptError::InvalidCiphertextException(InvalidCiphertextException::builder().build());
        assert_unwrap_failed(decrypt(e, 400));
    }

    #[test]
    fn wrong_encryption_context_is_unwrap_failed() {
        // KMS reports a wrong encryption context as InvalidCiphertextException (with no message).
        let e = DecryptError::InvalidCiphertextException(
            InvalidCiphertextException::builder()
                .meta(unmodeled("InvalidCiphertextException", ""))
                .build(),
        );
        assert_unwrap_failed(decrypt(e, 400));
    }

    #[test]
    fn incorrect_key_is_unwrap_failed() {
        let e = DecryptError::IncorrectKeyException(
            IncorrectKeyException::builder()
                .message("The key ID in the request does not identify a KMS key that can perform this operation.")
                .build(),
        );
        assert_unwrap_failed(decrypt(e, 400));
    }

    #[test]
    fn decrypt_validation_error_is_unwrap_failed() {
        let e = DecryptError::generic(unmodeled(
            "ValidationException",
            "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint",
        ));
        assert_unwrap_failed(decrypt(e, 400));
    }

    #[test]
    fn bad_ciphertext_outside_decrypt_is_a_provider_error() {
        let e = EncryptError::generic(unmodeled("InvalidCiphertextException", "odd"));
        assert_provider(
            map_sdk_error(service(e, 400), KEY, Call::Op("Encrypt")),
            "InvalidCiphertextException",
        );
    }

    #[test]
    fn throttling_is_a_provider_error() {
        let e = GenerateDataKeyError::generic(unmodeled("ThrottlingException", "Rate exceeded"));
        assert_provider(
            map_sdk_error(service(e, 400), KEY, Call::Op("GenerateDataKey")),
            "ThrottlingException: Rate exceeded (HTTP 400)",
        );
        let e = DecryptError::generic(unmodeled("LimitExceededException", "too many"));
        assert_provider(decrypt(e, 400), "LimitExceededException");
    }

    #[test]
    fn internal_error_is_a_provider_error() {
        let e = DecryptError::KmsInternalException(KmsInternalException::builder().build());
        let err = decrypt(e, 500);
        assert_provider(err, "HTTP 500");
    }

    #[test]
    fn credentials_errors_are_provider_errors() {
        for code in [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        ] {
            let e = DescribeKeyError::generic(unmodeled(code, "The security token is invalid."));
            assert_provider(
                map_sdk_error(service(e, 400), KEY, Call::Op("DescribeKey")),
                code,
            );
        }
    }

    #[test]
    fn timeout_is_a_provider_error() {
        let e: SdkError<DecryptError> = SdkError::timeout_error(
            "operation timeout (all attempts including retries) occurred after 60s",
        );
        assert_provider(map_sdk_error(e, KEY, Call::Decrypt(DEK)), "timed out");
    }

    #[test]
    fn network_failure_is_a_provider_error() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e: SdkError<DecryptError> = SdkError::dispatch_failure(ConnectorError::io(io.into()));
        assert_provider(
            map_sdk_error(e, KEY, Call::Decrypt(DEK)),
            "connection refused",
        );
    }

    #[test]
    fn unreadable_answer_is_a_provider_error() {
        let e: SdkError<DecryptError> =
            SdkError::response_error("invalid JSON at offset 3", response(200));
        let err = map_sdk_error(e, KEY, Call::Decrypt(DEK));
        assert!(!format!("{err:?}").contains("c2VjcmV0"), "{err:?}");
        assert_provider(err, "unreadable answer from KMS (HTTP 200)");
    }

    #[test]
    fn construction_failure_is_a_provider_error() {
        let e: SdkError<DecryptError> = SdkError::construction_failure("no region configured");
        assert_provider(map_sdk_error(e, KEY, Call::Decrypt(DEK)), "no region");
    }

    #[test]
    fn classification_table() {
        assert_eq!(classify("DisabledException"), Class::Unavailable);
        assert_eq!(classify("InvalidCiphertextException"), Class::BadCiphertext);
        assert_eq!(classify("ThrottlingException"), Class::Other);
        assert!(is_access_denied("AccessDenied") && is_access_denied("AccessDeniedException"));
        assert!(!is_access_denied("NotFoundException"));
    }
}
