//! Exit codes (documented in the README and in `--help`) and how an error maps to one.

use std::process::ExitCode;

use encrypt_repo::format::Error as FormatError;
use encrypt_repo::keys::Error as KeysError;
use encrypt_repo::store::Error as StoreError;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: success.
    Success = 0,
    /// 1: any other error.
    Other = 1,
    /// 2: usage (bad flags or arguments; clap exits with 2 itself).
    Usage = 2,
    /// 3: repository, object or snapshot not found.
    NotFound = 3,
    /// 4: authentication failed: a tampered or truncated object, a wrong key.
    Auth = 4,
    /// 5: the key is unavailable (disabled, revoked, denied, shredded, a missing key file) or
    /// the repository is locked.
    KeyUnavailable = 5,
    /// 6: partial failure: some files or objects failed in backup, restore or verify.
    Partial = 6,
}

impl Exit {
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub(crate) String);

/// The key is unusable or the repository locked, found by a command that still printed its
/// summary (`keys status`): exit 5.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KeyUnavailable(pub(crate) String);

/// Some items failed; the summary was printed (exit 6).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} {what} failed")]
pub(crate) struct Partial {
    pub(crate) failed: usize,
    pub(crate) total: usize,
    pub(crate) what: &'static str,
}

fn format_error(e: &FormatError) -> Exit {
    match e {
        FormatError::CommitmentMismatch
        | FormatError::BindingMismatch { .. }
        | FormatError::Authentication { .. }
        | FormatError::Truncated { .. }
        | FormatError::TrailingData { .. }
        | FormatError::TruncatedHeader { .. }
        | FormatError::BadMagic
        | FormatError::InvalidFlags
        | FormatError::InvalidCiphertextLength(_) => Exit::Auth,
        FormatError::RangeOutOfBounds { .. } => Exit::Usage,
        _ => Exit::Other,
    }
}

fn keys_error(e: &KeysError) -> Exit {
    match e {
        KeysError::KeyUnavailable { .. } | KeysError::KeyVersionRetired { .. } => {
            Exit::KeyUnavailable
        }
        KeysError::UnwrapFailed { .. }
        | KeysError::WrongMasterKey { .. }
        | KeysError::ForeignWrappedKey { .. } => Exit::Auth,
        KeysError::UnknownProvider { .. } | KeysError::Setting { .. } => Exit::Usage,
        // A key file (or passphrase file) that is missing or unreadable: the key is unavailable.
        KeysError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Exit::KeyUnavailable
        }
        KeysError::Format(f) => format_error(f),
        _ => Exit::Other,
    }
}

fn store_error(e: &StoreError) -> Exit {
    match e {
        StoreError::Object { source, .. } => format_error(source),
        StoreError::DataKey { source, .. } => keys_error(source),
        StoreError::MissingDataKey { .. } => Exit::Auth,
        StoreError::DataKeyShredded { .. } | StoreError::Locked { .. } => Exit::KeyUnavailable,
        StoreError::NotRegistered(_) | StoreError::UnknownDataKey(_) => Exit::NotFound,
        // The command line asks for what the repository cannot be or hold.
        StoreError::Range { .. }
        | StoreError::Setting { .. }
        | StoreError::RegistrationConflict { .. }
        | StoreError::Reserved(_) => Exit::Usage,
        StoreError::Keys(k) => keys_error(k),
        StoreError::Store(s) => object_store_error(s),
        _ => Exit::Other,
    }
}

fn object_store_error(e: &object_store::Error) -> Exit {
    match e {
        object_store::Error::NotFound { .. } => Exit::NotFound,
        _ => Exit::Other,
    }
}

/// Whether the summary object was already printed for this error (`--json` prints no second
/// object then).
pub(crate) fn summary_printed(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.is::<Partial>() || c.is::<KeyUnavailable>())
}

/// The error chain on one line, like `{:#}`, without the repetition of library errors whose
/// message already includes their source's ("object x: authentication failed: authentication
/// failed").
pub(crate) fn render(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        // object_store wraps our store's errors as "Generic EncryptedStore error: …".
        let msg = match msg
            .strip_prefix("Generic ")
            .and_then(|m| m.split_once(" error: "))
        {
            Some((_store, rest)) => rest.to_owned(),
            None => msg,
        };
        if msg.is_empty() || parts.last().is_some_and(|prev| prev.contains(&msg)) {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

/// The exit code for `e`: the first error in its chain that says something specific.
pub(crate) fn classify(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        let exit = if cause.is::<Usage>() {
            Exit::Usage
        } else if cause.is::<Partial>() {
            Exit::Partial
        } else if cause.is::<KeyUnavailable>() {
            Exit::KeyUnavailable
        } else if cause.is::<crate::app::open::NotFound>() {
            Exit::NotFound
        } else if let Some(s) = cause.downcast_ref::<StoreError>() {
            store_error(s)
        } else if let Some(k) = cause.downcast_ref::<KeysError>() {
            keys_error(k)
        } else if let Some(f) = cause.downcast_ref::<FormatError>() {
            format_error(f)
        } else if let Some(o) = cause.downcast_ref::<object_store::Error>() {
            object_store_error(o)
        } else {
            continue;
        };
        if exit != Exit::Other {
            return exit;
        }
    }
    Exit::Other
}
