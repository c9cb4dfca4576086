//! The snapshot manifest (`P/snapshots/<id>.json`): what a tree looked like, entry by entry.

use std::time::{SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{Error, Result, hex, unhex};

/// The only manifest version this build reads and writes.
pub(crate) const VERSION: u32 = 1;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or symbolic link, relative to the tree's root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The path for people (lossy where not UTF-8); `path_hex` is authoritative.
    pub(crate) path: String,
    /// The raw path bytes, components separated by `/`.
    pub(crate) path_hex: String,
    pub(crate) kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub(crate) mode: u32,
    /// Modification time: seconds since the epoch and nanoseconds.
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: u32,
    /// Bytes (files only; 0 otherwise).
    #[serde(default)]
    pub(crate) size: u64,
    /// The content id (non-empty files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<String>,
    /// The link target for people (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    /// The raw link target bytes (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target_hex: Option<String>,
}

impl Entry {
    /// An entry for `path` (raw bytes).
    pub(crate) fn new(path: &[u8], kind: Kind, mode: u32, mtime: (i64, u32)) -> Self {
        Self {
            path: String::from_utf8_lossy(path).into_owned(),
            path_hex: hex(path),
            kind,
            mode: mode & 0o7777,
            mtime: mtime.0,
            mtime_nsec: mtime.1,
            size: 0,
            content: None,
            target: None,
            target_hex: None,
        }
    }

    /// Sets the link target (raw bytes).
    pub(crate) fn with_target(mut self, target: &[u8]) -> Self {
        self.target = Some(String::from_utf8_lossy(target).into_owned());
        self.target_hex = Some(hex(target));
        self
    }

    /// The raw path bytes, if `path_hex` is hex.
    pub(crate) fn raw_path(&self) -> Option<Vec<u8>> {
        unhex(&self.path_hex)
    }

    /// The path's components, refusing anything that could leave the restore directory or
    /// name it ambiguously: an empty or absolute path, `.`, `..`, empty components, NUL.
    pub(crate) fn safe_components(&self) -> Result<Vec<Vec<u8>>, String> {
        let raw = self.raw_path().ok_or("path_hex is not hex")?;
        if raw.is_empty() {
            return Err("empty path".into());
        }
        if raw.first() == Some(&b'/') {
            return Err("absolute path refused".into());
        }
        if raw.contains(&0) {
            return Err("path contains a NUL byte".into());
        }
        let parts: Vec<Vec<u8>> = raw.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
        for p in &parts {
            match p.as_slice() {
                b"" => return Err("empty path component".into()),
                b"." | b".." => return Err("`.` or `..` in path refused".into()),
                _ => {}
            }
        }
        Ok(parts)
    }

    /// The link target bytes of a symlink entry.
    pub(crate) fn raw_target(&self) -> Option<Vec<u8>> {
        self.target_hex.as_deref().and_then(unhex)
    }
}

/// A snapshot: the tree and where and when it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) version: u32,
    pub(crate) id: String,
    /// RFC 3339, UTC, with nanoseconds.
    pub(crate) time: String,
    /// The same instant: seconds since the epoch and nanoseconds (orders snapshots of one
    /// second).
    pub(crate) time_unix: i64,
    pub(crate) time_nsec: u32,
    /// The directory backed up (lossy where not UTF-8).
    pub(crate) source: String,
    pub(crate) host: String,
    pub(crate) files: u64,
    pub(crate) dirs: u64,
    pub(crate) symlinks: u64,
    pub(crate) bytes: u64,
    /// Sorted by raw path bytes.
    pub(crate) entries: Vec<Entry>,
}

impl Manifest {
    /// A manifest of `entries` (sorted here) taken at `at`.
    pub(crate) fn new(id: String, at: &Instant, source: String, mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.path_hex.cmp(&b.path_hex));
        let count = |k: Kind| entries.iter().filter(|e| e.kind == k).count() as u64;
        Self {
            version: VERSION,
            id,
            time: at.rfc3339(),
            time_unix: at.secs,
            time_nsec: at.nsec,
            source,
            host: host_name(),
            files: count(Kind::File),
            dirs: count(Kind::Dir),
            symlinks: count(Kind::Symlink),
            bytes: entries
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum(),
            entries,
        }
    }

    /// Parses and checks a manifest read from `path`. Entry paths are checked one by one at
    /// restore time, so one bad entry fails only itself.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let m: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(path, format!("not a snapshot manifest: {e}")))?;
        if m.version != VERSION {
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest version {} is not supported (this build reads version {VERSION})",
                    m.version
                ),
            ));
        }
        if !is_snapshot_id(&m.id) {
            return Err(Error::corrupt(
                path,
                "the manifest's id is not a snapshot id",
            ));
        }
        Ok(m)
    }
}

/// A point in time, UTC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instant {
    secs: i64,
    nsec: u32,
}

impl Instant {
    pub(crate) fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        }
    }

    fn civil(&self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let rem = rem as u32; // 0..86_400
        (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
    }

    /// `YYYYMMDDTHHMMSSZ`.
    pub(crate) fn compact(&self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
    }

    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    fn rfc3339(&self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:09}Z",
            self.nsec
        )
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A new snapshot id for a backup started at `at`: `YYYYMMDDTHHMMSSZ-<8 hex random>`.
pub(crate) fn new_snapshot_id(at: &Instant) -> Result<String> {
    let mut r = [0u8; 4];
    aws_lc_rs::rand::fill(&mut r)
        .map_err(|_| Error::Internal("the system random generator failed".into()))?;
    Ok(format!("{}-{}", at.compact(), hex(&r)))
}

/// Whether `s` has the shape of a snapshot id.
pub(crate) fn is_snapshot_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 25
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// This machine's name, from the kernel (or `unknown`).
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
