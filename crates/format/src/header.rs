//! The fixed-length object header: parsing and writing (FORMAT.md §2).

use crate::error::{Error, Result};
use crate::keys::{DataKeyId, Salt};
use crate::{CHUNK_LOG2_MAX, CHUNK_LOG2_MIN, ChunkSize};

/// Magic bytes at offset 0. PNG-style: a high-bit byte, then line-ending bytes that reveal
/// text-mode mangling.
pub const MAGIC: [u8; 8] = *b"\x89ERP\r\n\x1a\n";
/// The only format version this build writes and reads.
pub const VERSION_1: u16 = 1;
/// Suite 1: AES-256-GCM chunks, HKDF-SHA-256 key derivation, STREAM nonces (counter ‖ final flag).
pub const SUITE_AES256GCM_HKDF_SHA256: u16 = 1;
/// Length of a version-1 header in bytes.
pub const HEADER_LEN: usize = 96;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Flag bit: the object key is bound to the object's path.
pub const FLAG_PATH_BOUND: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_PATH_BOUND;

// Field offsets (FORMAT.md §2).
const OFF_VERSION: usize = 8;
const OFF_SUITE: usize = 10;
const OFF_CHUNK: usize = 12;
const OFF_FLAGS: usize = 13;
const OFF_RESERVED: usize = 14;
pub(crate) const OFF_DEK_ID: usize = 16;
const OFF_SALT: usize = 32;
const OFF_COMMITMENT: usize = 64;
/// Header bytes covered by the HKDF info: version through data-key id.
pub(crate) const BOUND_FIELDS: std::ops::Range<usize> = OFF_VERSION..OFF_SALT;

/// A parsed, syntactically valid header. Its commitment is not yet checked: that needs the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// Plaintext chunk size.
    pub chunk_size: ChunkSize,
    /// Whether the object key is bound to the object's path.
    pub path_bound: bool,
    /// Which data key sealed the object.
    pub data_key_id: DataKeyId,
    /// The per-object random salt.
    pub salt: Salt,
    /// The key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Salt and commitment are public values; printing them in full is harmless but noisy.
        f.debug_struct("Header")
            .field("chunk_size", &self.chunk_size)
            .field("path_bound", &self.path_bound)
            .field("data_key_id", &self.data_key_id)
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes`. Trailing bytes are ignored, so the start
    /// of a whole object can be passed.
    ///
    /// # Errors
    /// [`Error::TruncatedHeader`], [`Error::BadMagic`], [`Error::UnsupportedVersion`],
    /// [`Error::UnsupportedSuite`], [`Error::InvalidChunkSize`], [`Error::InvalidFlags`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // Magic and version are checked before the length, so a future version with a longer
        // header is reported as "unsupported version", not "truncated".
        if bytes.len() < OFF_VERSION + 2 {
            return Err(Error::TruncatedHeader {
                len: bytes.len(),
                need: HEADER_LEN,
            });
        }
        if bytes[..OFF_VERSION] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[OFF_VERSION], bytes[OFF_VERSION + 1]]);
        if version != VERSION_1 {
            return Err(Error::UnsupportedVersion(version));
        }
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(Error::TruncatedHeader {
                len: bytes.len(),
                need: HEADER_LEN,
            });
        };
        let suite = u16::from_be_bytes([b[OFF_SUITE], b[OFF_SUITE + 1]]);
        if suite != SUITE_AES256GCM_HKDF_SHA256 {
            return Err(Error::UnsupportedSuite(suite));
        }
        let log2 = b[OFF_CHUNK];
        if !(CHUNK_LOG2_MIN..=CHUNK_LOG2_MAX).contains(&log2) {
            return Err(Error::InvalidChunkSize(log2));
        }
        let flags = b[OFF_FLAGS];
        if flags & !KNOWN_FLAGS != 0 || b[OFF_RESERVED] != 0 || b[OFF_RESERVED + 1] != 0 {
            return Err(Error::InvalidFlags);
        }
        Ok(Self {
            chunk_size: ChunkSize::from_log2(log2)?,
            path_bound: flags & FLAG_PATH_BOUND != 0,
            data_key_id: DataKeyId(array(&b[OFF_DEK_ID..OFF_SALT])),
            salt: Salt(array(&b[OFF_SALT..OFF_COMMITMENT])),
            commitment: array(&b[OFF_COMMITMENT..HEADER_LEN]),
        })
    }

    /// Serialises the header to its [`HEADER_LEN`] bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..OFF_VERSION].copy_from_slice(&MAGIC);
        b[OFF_VERSION..OFF_SUITE].copy_from_slice(&VERSION_1.to_be_bytes());
        b[OFF_SUITE..OFF_CHUNK].copy_from_slice(&SUITE_AES256GCM_HKDF_SHA256.to_be_bytes());
        b[OFF_CHUNK] = self.chunk_size.log2();
        b[OFF_FLAGS] = if self.path_bound { FLAG_PATH_BOUND } else { 0 };
        b[OFF_DEK_ID..OFF_SALT].copy_from_slice(&self.data_key_id.0);
        b[OFF_SALT..OFF_COMMITMENT].copy_from_slice(&self.salt.0);
        b[OFF_COMMITMENT..].copy_from_slice(&self.commitment);
        b
    }
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            chunk_size: ChunkSize::from_log2(20).unwrap(),
            path_bound: true,
            data_key_id: DataKeyId([7; 16]),
            salt: Salt([9; 32]),
            commitment: [3; 32],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn every_short_prefix_is_an_error() {
        let b = sample().to_bytes();
        for n in 0..HEADER_LEN {
            assert!(Header::parse(&b[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn unknown_version_suite_chunk_flags() {
        let mut b = sample().to_bytes();
        b[OFF_VERSION + 1] = 2;
        assert_eq!(Header::parse(&b), Err(Error::UnsupportedVersion(2)));
        // A future version is recognised from its first 10 bytes alone.
        assert_eq!(Header::parse(&b[..10]), Err(Error::UnsupportedVersion(2)));
        let mut b = sample().to_bytes();
        b[OFF_SUITE] = 1;
        assert_eq!(Header::parse(&b), Err(Error::UnsupportedSuite(257)));
        for bad in [0u8, 15, 25, 255] {
            let mut b = sample().to_bytes();
            b[OFF_CHUNK] = bad;
            assert_eq!(Header::parse(&b), Err(Error::InvalidChunkSize(bad)));
        }
        let mut b = sample().to_bytes();
        b[OFF_FLAGS] = 0x02;
        assert_eq!(Header::parse(&b), Err(Error::InvalidFlags));
        let mut b = sample().to_bytes();
        b[OFF_RESERVED + 1] = 1;
        assert_eq!(Header::parse(&b), Err(Error::InvalidFlags));
        let mut b = sample().to_bytes();
        b[0] = b'E';
        assert_eq!(Header::parse(&b), Err(Error::BadMagic));
    }
}
