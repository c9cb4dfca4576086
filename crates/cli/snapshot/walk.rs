//! Walking the tree to back up, without following symbolic links.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::manifest::{Entry, Kind};
use super::{Error, Failure, Result, chain};

/// A regular file found by the walk, to be hashed and uploaded.
#[derive(Debug)]
pub(crate) struct FileJob {
    /// Relative path bytes.
    pub(crate) rel: Vec<u8>,
    pub(crate) abs: PathBuf,
    /// Size at walk time (for progress; the file is stat'ed again when read).
    pub(crate) size: u64,
}

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Directories and symlinks, complete.
    pub(crate) entries: Vec<Entry>,
    pub(crate) files: Vec<FileJob>,
    pub(crate) failed: Vec<Failure>,
}

/// Modification time of `m`: seconds and nanoseconds.
pub(crate) fn mtime(m: &Metadata) -> (i64, u32) {
    (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap_or(0))
}

fn join(parent: &[u8], name: &OsStr) -> Vec<u8> {
    let mut rel = parent.to_vec();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name.as_bytes());
    rel
}

fn fail(rel: &[u8], error: String) -> Failure {
    Failure {
        path: String::from_utf8_lossy(rel).into_owned(),
        error,
    }
}

/// Walks `root` (a directory). An unreadable root is an error; anything unreadable below it
/// is a [`Failure`] and the walk goes on.
pub(crate) fn walk(root: &Path) -> Result<Walked> {
    let mut out = Walked::default();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        let reader = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if rel.is_empty() => return Err(Error::io(dir, e)),
            Err(e) => {
                out.failed
                    .push(fail(&rel, format!("reading the directory: {}", chain(&e))));
                continue;
            }
        };
        for item in reader {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    out.failed
                        .push(fail(&rel, format!("reading the directory: {}", chain(&e))));
                    break;
                }
            };
            let child_rel = join(&rel, &item.file_name());
            let abs = item.path();
            if let Err(e) = visit(&abs, child_rel.clone(), &mut out, &mut stack) {
                out.failed.push(fail(&child_rel, e));
            }
        }
    }
    Ok(out)
}

fn visit(
    abs: &Path,
    rel: Vec<u8>,
    out: &mut Walked,
    stack: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(abs).map_err(|e| chain(&e))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        out.entries
            .push(Entry::new(&rel, Kind::Dir, meta.mode(), mtime(&meta)));
        stack.push((abs.to_path_buf(), rel));
    } else if ft.is_symlink() {
        let target = std::fs::read_link(abs).map_err(|e| chain(&e))?;
        out.entries.push(
            Entry::new(&rel, Kind::Symlink, meta.mode(), mtime(&meta))
                .with_target(target.as_os_str().as_bytes()),
        );
    } else if ft.is_file() {
        out.files.push(FileJob {
            rel,
            abs: abs.to_path_buf(),
            size: meta.len(),
        });
    } else {
        let what = if ft.is_fifo() {
            "a named pipe"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "of an unknown type"
        };
        return Err(format!("not backed up: {what}"));
    }
    Ok(())
}
