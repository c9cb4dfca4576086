//! Leftovers of interrupted writes in a local repository directory.
//!
//! object_store's `LocalFileSystem` writes every object into a staging file `<name>#<n>` and
//! renames it into place when the write completes; a process killed part-way leaves the staging
//! file behind, and no listing shows it (object_store skips such names). `get` and `restore`
//! write into `.encrypt-repo-get-*` and `.encrypt-repo-restore-*` files beside their targets and
//! rename them once verified. `verify` reports the ones in a repository directory and `cleanup`
//! removes those not written to for a while.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Name prefixes of the temporary files `get` and `restore` create.
const TEMP_PREFIXES: [&str; 2] = [".encrypt-repo-get-", ".encrypt-repo-restore-"];

/// One leftover file.
#[derive(Debug, Clone)]
pub(crate) struct Leftover {
    /// Its path relative to the repository directory.
    pub(crate) relative: String,
    /// Its full path.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) bytes: u64,
    /// Its last modification (the last byte an interrupted writer wrote).
    pub(crate) modified: SystemTime,
}

impl Leftover {
    /// How long ago it was last written, seen from `now` (zero if its time is in the future).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.modified).unwrap_or_default()
    }
}

/// Whether `name` has the form of a `LocalFileSystem` staging file, `<base>#<digits>` (which
/// is why no local repository can store an object of that name).
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Whether `name` is a staging or temporary file name of an interrupted write.
pub(crate) fn is_leftover_name(name: &str) -> bool {
    is_staging_name(name) || TEMP_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every leftover under `root`, sorted by path. Symbolic links are not followed; directories
/// that cannot be read are skipped (the listing that follows reports what is unreadable).
pub(crate) fn find(root: &Path) -> Vec<Leftover> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name();
            if !meta.is_file() || !is_leftover_name(&name.to_string_lossy()) {
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push(Leftover {
                relative,
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            });
        }
    }
    out.sort_by(|a, b| a.relative.cmp(&b.relative));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_and_temporary_names_are_recognised_and_object_names_are_not() {
        for name in [
            "big.bin#1",
            "a#b#12",
            ".encrypt-repo-get-x1Yz",
            ".encrypt-repo-restore-0011",
        ] {
            assert!(is_leftover_name(name), "{name}");
        }
        for name in [
            "big.bin",
            "#1",
            "a#",
            "a#1b",
            "encrypt-repo-get-x",
            "notes#",
        ] {
            assert!(!is_leftover_name(name), "{name}");
        }
    }
}
