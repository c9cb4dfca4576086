//! Snapshots: backup and restore of directory trees (placeholder; being written).

use std::sync::Arc;

use object_store::ObjectStore;
use serde::Serialize;

/// Errors of the snapshot engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not written yet.
    #[error("snapshots are not available in this build yet")]
    Unavailable,
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Progress reports.
pub trait Progress: Send + Sync {
    /// More bytes to process.
    fn add_total(&self, bytes: u64);
    /// Bytes processed.
    fn advance(&self, bytes: u64);
    /// A note (the current file).
    fn note(&self, msg: &str);
}

/// Backup options.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Prefix.
    pub prefix: String,
    /// Files at once.
    pub concurrency: usize,
    /// Write nothing.
    pub dry_run: bool,
}

/// One failed item.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The path.
    pub path: String,
    /// Why.
    pub error: String,
}

/// What a backup did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// Snapshot id.
    pub snapshot_id: Option<String>,
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes.
    pub bytes: u64,
    /// Files uploaded.
    pub uploaded_files: u64,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Files already stored.
    pub skipped_files: u64,
    /// Failures.
    pub failed: Vec<Failure>,
}

/// Restore options.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Prefix.
    pub prefix: String,
    /// Snapshot id.
    pub snapshot: Option<String>,
    /// Files at once.
    pub concurrency: usize,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Snapshot id.
    pub snapshot_id: String,
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes.
    pub bytes: u64,
    /// Failures.
    pub failed: Vec<Failure>,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// Id.
    pub id: String,
    /// Time.
    pub time: String,
    /// Source directory.
    pub source: String,
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Backs up `dir`.
///
/// # Errors
/// Always, for now.
pub async fn backup(
    _store: Arc<dyn ObjectStore>,
    _dir: &std::path::Path,
    _opts: &BackupOptions,
    _progress: &dyn Progress,
) -> Result<BackupReport> {
    Err(Error::Unavailable)
}

/// Restores into `dir`.
///
/// # Errors
/// Always, for now.
pub async fn restore(
    _store: Arc<dyn ObjectStore>,
    _dir: &std::path::Path,
    _opts: &RestoreOptions,
    _progress: &dyn Progress,
) -> Result<RestoreReport> {
    Err(Error::Unavailable)
}

/// Lists snapshots.
///
/// # Errors
/// Always, for now.
pub async fn list_snapshots(
    _store: Arc<dyn ObjectStore>,
    _prefix: &str,
) -> Result<Vec<SnapshotInfo>> {
    Err(Error::Unavailable)
}
