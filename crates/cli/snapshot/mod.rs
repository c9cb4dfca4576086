//! Snapshots: backup and restore of directory trees into any `ObjectStore`.
//!
//! The store handed to [`backup`], [`restore`] and [`list_snapshots`] is normally an
//! [`EncryptedStore`](crate::store::EncryptedStore), so every object written here is encrypted
//! and authenticated underneath; this module deals with no key of the repository. Object
//! *names* are not encrypted, so none of them reveals a file name or content. Under a prefix `P`:
//!
//! | object | what it holds |
//! |---|---|
//! | `P/config` | `{"version": 1, "content_key": "<64 hex>"}`: a random key, created once (only ever stored encrypted) |
//! | `P/data/<id>` | one object per distinct file content; `id` is HMAC-SHA-256(content key, bytes) in hex, so identical files are stored once and the name does not confirm a known file |
//! | `P/snapshots/<YYYYMMDDTHHMMSSZ>-<8 hex>.json` | the manifest, written last: id, time, source, host and every entry (raw path bytes, kind, mode, mtime, size, content id, link target) sorted by path |
//!
//! A backup hashes each file streaming, asks whether `P/data/<id>` exists and uploads it only
//! if not, so a re-run after an interrupted backup uploads only what is missing. A restore
//! downloads each file into a temporary file beside its target and renames it only once the
//! whole object was authenticated by the store *and* its keyed hash matched the manifest.
//!
//! Memory is bounded whatever the file sizes: per file in flight one read buffer (1 MiB), a
//! multipart writer's part being filled and up to [`UPLOAD_PARTS_IN_FLIGHT`] parts in flight
//! (5 MiB each, plus the encrypting store's own part buffer); files under 1 MiB are read
//! whole. `concurrency` files are processed at once.

mod backup;
mod config;
mod manifest;
mod restore;
mod walk;

use std::error::Error as StdError;
use std::path::PathBuf;

use object_store::path::Path;
use serde::Serialize;

pub use backup::backup;
pub use restore::{list_snapshots, restore};

/// Plaintext bytes handed to the multipart writer per part.
pub const UPLOAD_PART_SIZE: usize = 5 << 20;

/// Part uploads one file keeps in flight at once.
pub const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// Errors of the snapshot engine.
///
/// Store errors keep the `object_store::Error` (and through it the
/// [`store::Error`](crate::store::Error) of an encrypting store) as their source, so a caller
/// can walk the chain to tell a tampered object or a wrong key from a missing one. Messages
/// never hold key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A local file or directory could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The requested snapshot does not exist.
    #[error(
        "snapshot {id} not found under {prefix}/snapshots/ (`encrypt-repo snapshots <REPO> --prefix {prefix}` lists them)"
    )]
    SnapshotNotFound {
        /// The id asked for.
        id: String,
        /// The backup prefix.
        prefix: String,
        /// The store's not-found answer.
        #[source]
        source: object_store::Error,
    },
    /// A snapshot id prefix that matches more than one snapshot.
    #[error("snapshot id {id} is ambiguous: it matches {matches}")]
    AmbiguousSnapshot {
        /// The id prefix asked for.
        id: String,
        /// The snapshots it matches, comma-separated.
        matches: String,
    },
    /// Snapshots exist, but none of the host (and directory) asked for.
    #[error(
        "no snapshot {what} under {prefix}/snapshots/ (`encrypt-repo snapshots <REPO> --prefix {prefix}` lists them with their hosts)"
    )]
    NoMatchingSnapshot {
        /// What was asked for: `of host H`, `of host H and directory D`.
        what: String,
        /// The backup prefix.
        prefix: String,
        /// The store's not-found answer.
        #[source]
        source: object_store::Error,
    },
    /// Nothing was backed up under this prefix.
    #[error("no snapshots under {prefix}/ (nothing has been backed up with this prefix)")]
    NoSnapshots {
        /// The backup prefix.
        prefix: String,
        /// The store's not-found answer.
        #[source]
        source: object_store::Error,
    },
    /// Reading or writing a repository object failed: the store's error (authentication
    /// failure, wrong key, locked repository, network) is the source.
    #[error("{op} {path}")]
    Store {
        /// What was being done (`reading`, `writing`, `listing`, `uploading`).
        op: &'static str,
        /// The object's location.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A repository object that decrypted fine but is not what this module writes.
    #[error("corrupt {path}: {message}")]
    Corrupt {
        /// The object's location.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An invalid option.
    #[error("invalid {option}: {problem}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A worker task ended abnormally (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether this says a snapshot (or the whole backup prefix) does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::SnapshotNotFound { .. }
                | Self::NoSnapshots { .. }
                | Self::NoMatchingSnapshot { .. }
        )
    }

    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    fn store(op: &'static str, path: &Path, source: object_store::Error) -> Self {
        Self::Store {
            op,
            path: path.to_string(),
            source,
        }
    }

    fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Receives progress reports of a backup or restore (a progress bar, a log).
///
/// # Contract
/// Called from the task running [`backup`] or [`restore`], never concurrently with itself;
/// implementations must return quickly and must not panic.
pub trait Progress: Send + Sync {
    /// `bytes` more bytes will be processed (hashed, uploaded or downloaded).
    fn add_total(&self, bytes: u64);
    /// `bytes` more bytes were processed.
    fn advance(&self, bytes: u64);
    /// What is happening now (the file being started, the phase).
    fn note(&self, msg: &str);
}

/// A [`Progress`] that ignores every report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_total(&self, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn note(&self, _msg: &str) {}
}

/// Options of [`backup`].
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The backup prefix in the store (`backup` in the CLI).
    pub prefix: String,
    /// Files hashed and uploaded at once (at least 1).
    pub concurrency: usize,
    /// Walk and hash, report what would be uploaded, write nothing.
    pub dry_run: bool,
}

/// One file or directory that could not be backed up or restored.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Its path relative to the tree's root (lossy where not UTF-8).
    pub path: String,
    /// Why, with the whole error chain.
    pub error: String,
}

/// What a [`backup`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// The snapshot written (`None` on a dry run).
    pub snapshot_id: Option<String>,
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot (the root not counted).
    pub dirs: u64,
    /// Symbolic links in the snapshot.
    pub symlinks: u64,
    /// Bytes of the files in the snapshot.
    pub bytes: u64,
    /// Contents uploaded (on a dry run: that would be uploaded).
    pub uploaded_files: u64,
    /// Bytes uploaded (on a dry run: that would be uploaded).
    pub uploaded_bytes: u64,
    /// Non-empty files whose content was already stored. Empty files need no content, so
    /// `files` = `uploaded_files` + `skipped_files` + empty files.
    pub skipped_files: u64,
    /// What could not be backed up (unreadable, changed while being read, unsupported type).
    pub failed: Vec<Failure>,
}

/// Options of [`restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup prefix in the store.
    pub prefix: String,
    /// The snapshot (an id or a unique prefix of one); if `None`, the latest of `host` and
    /// `source`.
    pub snapshot: Option<String>,
    /// Without `snapshot`: only snapshots taken on this host (any host if `None`;
    /// [`this_host`] is the machine's own name).
    pub host: Option<String>,
    /// Without `snapshot`: only snapshots of this backed-up directory (any if `None`).
    pub source: Option<String>,
    /// Files downloaded at once (at least 1).
    pub concurrency: usize,
}

/// What a [`restore`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symbolic links restored.
    pub symlinks: u64,
    /// Bytes of the files restored.
    pub bytes: u64,
    /// What could not be restored; nothing partial is left for them.
    pub failed: Vec<Failure>,
    /// Manifests that could not be read (tampered, truncated, not a manifest) and were passed
    /// over while looking for the latest snapshot.
    pub skipped_manifests: Vec<Failure>,
    /// Temporary files an earlier, interrupted restore left in the directories restored into,
    /// removed by this one.
    pub removed_leftovers: u64,
}

/// One snapshot, as [`list_snapshots`] describes it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// The snapshot id.
    pub id: String,
    /// When the backup started, RFC 3339 UTC.
    pub time: String,
    /// The directory that was backed up.
    pub source: String,
    /// The host it was backed up on.
    pub host: String,
    /// Regular files.
    pub files: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

/// What [`list_snapshots`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotList {
    /// The snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Manifests that could not be read or parsed (tampered, truncated, not a manifest), each
    /// named by its location; the others are listed all the same.
    pub bad: Vec<Failure>,
}

/// This machine's name, as backups record it in their manifests.
#[must_use]
pub fn this_host() -> String {
    manifest::host_name()
}

/// Object locations under a backup prefix.
#[derive(Debug, Clone)]
struct Layout {
    prefix: Path,
}

impl Layout {
    fn new(prefix: &str) -> Result<Self> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Err(Error::InvalidOption {
                option: "prefix",
                problem: "must not be empty".into(),
            });
        }
        let prefix = Path::parse(trimmed).map_err(|e| Error::InvalidOption {
            option: "prefix",
            problem: e.to_string(),
        })?;
        Ok(Self { prefix })
    }

    fn config(&self) -> Path {
        self.prefix.clone().join("config")
    }

    fn data(&self, id: &str) -> Path {
        self.prefix.clone().join("data").join(id)
    }

    fn snapshots(&self) -> Path {
        self.prefix.clone().join("snapshots")
    }

    fn snapshot(&self, id: &str) -> Path {
        self.snapshots().join(format!("{id}.json").as_str())
    }
}

/// A progress report sent from a worker task to the task that owns the [`Progress`].
#[derive(Debug, Clone, Copy)]
enum Event {
    /// [`Progress::add_total`].
    Total(u64),
    /// [`Progress::advance`].
    Done(u64),
}

impl Event {
    fn report(self, progress: &dyn Progress) {
        match self {
            Self::Total(n) => progress.add_total(n),
            Self::Done(n) => progress.advance(n),
        }
    }
}

type ProgressTx = tokio::sync::mpsc::UnboundedSender<Event>;

/// `e` and its sources, joined by `: `, skipping a source whose text its parent already shows.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Bytes of lowercase or uppercase hex `s`; `None` if it is not hex.
fn unhex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}
