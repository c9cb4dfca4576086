//! The file `put` uploads, read so that a file changing underneath never becomes a torn object.
//!
//! A log being appended to, or a file rewritten in place while `put` reads it, would otherwise
//! be stored as a mix of old and new bytes that authenticates perfectly. [`SourceFile`] notes
//! the size and modification time at open and, when reading reaches the end (or goes past the
//! size noted), compares them again and the bytes read with that size; any difference is a
//! read error, so the upload is aborted and nothing is stored.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A regular file read once from start to end, checked for changes at the end.
#[derive(Debug)]
pub(crate) struct SourceFile {
    file: std::fs::File,
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    read: u64,
}

impl SourceFile {
    /// Opens `path` and notes its size and modification time.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            file,
            path: path.to_owned(),
            len: meta.len(),
            modified: meta.modified().ok(),
            read: 0,
        })
    }

    /// The size at open.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn check_unchanged(&self) -> io::Result<()> {
        let now = self.file.metadata()?;
        let modified = now.modified().ok();
        if now.len() == self.len && modified == self.modified && self.read == self.len {
            return Ok(());
        }
        let detail = if modified != self.modified {
            "its modification time changed".to_owned()
        } else {
            format!(
                "{} bytes at open, {} now, {} read",
                self.len,
                now.len(),
                self.read
            )
        };
        Err(io::Error::other(format!(
            "{} changed while being read ({detail}); nothing was stored, run put again once \
             it is quiet",
            self.path.display()
        )))
    }
}

impl Read for SourceFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read > self.len {
            self.check_unchanged()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn read_all(f: &mut SourceFile) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        f.read_to_end(&mut v).map(|_| v)
    }

    #[test]
    fn an_unchanged_file_reads_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").expect("write");
        let mut f = SourceFile::open(&p).expect("open");
        assert_eq!(f.len(), 10);
        assert_eq!(read_all(&mut f).expect("read"), b"0123456789");
    }

    #[test]
    fn a_file_appended_to_while_being_read_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        std::fs::write(&p, b"0123456789").expect("write");
        let mut f = SourceFile::open(&p).expect("open");
        let mut first = [0u8; 4];
        f.read_exact(&mut first).expect("read");
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("append");
        w.write_all(b"more").expect("append");
        let e = read_all(&mut f).expect_err("a grown file");
        assert!(e.to_string().contains("changed while being read"), "{e}");
    }

    #[test]
    fn a_file_rewritten_in_place_with_the_same_size_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        std::fs::write(&p, b"0123456789").expect("write");
        let old = std::fs::metadata(&p)
            .expect("stat")
            .modified()
            .expect("mtime");
        let mut f = SourceFile::open(&p).expect("open");
        let mut first = [0u8; 4];
        f.read_exact(&mut first).expect("read");
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open for writing");
        (&w).write_all(b"abcdefghij").expect("rewrite");
        // Set explicitly: the rewrite may fall in the same timestamp tick as the first write.
        w.set_modified(old + std::time::Duration::from_secs(1))
            .expect("set mtime");
        let e = read_all(&mut f).expect_err("a rewritten file");
        assert!(e.to_string().contains("modification time"), "{e}");
    }

    #[test]
    fn a_file_truncated_while_being_read_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t");
        std::fs::write(&p, b"0123456789").expect("write");
        let mut f = SourceFile::open(&p).expect("open");
        let mut first = [0u8; 4];
        f.read_exact(&mut first).expect("read");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|w| w.set_len(6))
            .expect("truncate");
        assert!(read_all(&mut f).is_err());
    }
}
