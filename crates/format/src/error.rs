//! The format crate's error type.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while sealing or opening an object.
///
/// Cryptographic failures are deliberately opaque: they say *where* (chunk index) and *what kind*,
/// never any key material, derived value or expected tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than a header were supplied.
    #[error("object is too short to hold an encrypt-repo header ({len} bytes, need {need})")]
    TruncatedHeader {
        /// Bytes available.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// The first bytes are not the encrypt-repo magic.
    #[error("not an encrypt-repo object (bad magic)")]
    BadMagic,
    /// A format version this build does not know.
    #[error("unsupported format version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// A cipher suite this build does not know.
    #[error("unsupported cipher suite {0} (this build knows suite 1: AES-256-GCM/HKDF-SHA-256)")]
    UnsupportedSuite(u16),
    /// The header's chunk size is outside the allowed range.
    #[error("invalid chunk size exponent {0} (allowed 16..=24, i.e. 64 KiB to 16 MiB)")]
    InvalidChunkSize(u8),
    /// Unknown flag bits or non-zero reserved bytes in the header.
    #[error("header has unknown flags or non-zero reserved bytes")]
    InvalidFlags,
    /// The object's path binding does not match what the reader expects.
    #[error(
        "object path binding mismatch: header says bound={header}, reader expects bound={expected}"
    )]
    BindingMismatch {
        /// What the header says.
        header: bool,
        /// What the reader's context says.
        expected: bool,
    },
    /// The key commitment does not match: wrong data key, wrong repository, moved object or
    /// swapped header. Raised before any chunk is opened.
    #[error(
        "key commitment mismatch: wrong data key, wrong repository, or object moved/header swapped"
    )]
    CommitmentMismatch,
    /// A chunk failed authentication (tampered, reordered, spliced, or truncated/extended).
    #[error("authentication failed at chunk {chunk}")]
    Authentication {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The ciphertext ended before the final chunk.
    #[error("object is truncated: ciphertext ended at chunk {chunk} without a final chunk")]
    Truncated {
        /// Index of the chunk where the data ran out.
        chunk: u64,
    },
    /// Bytes follow the final chunk.
    #[error("object has {extra} trailing bytes after its final chunk")]
    TrailingData {
        /// Number of unexpected bytes (may be a lower bound in streaming mode).
        extra: u64,
    },
    /// A ciphertext length that no plaintext length maps to.
    #[error("invalid ciphertext length {0} for this chunk size")]
    InvalidCiphertextLength(u64),
    /// The object would exceed the format's limits.
    #[error("object exceeds the format limit ({what})")]
    TooLarge {
        /// Which limit.
        what: &'static str,
    },
    /// A requested byte range lies outside the object.
    #[error("range {start}..{end} is outside an object of {len} bytes")]
    RangeOutOfBounds {
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// Plaintext length.
        len: u64,
    },
    /// A data key of the wrong length.
    #[error("data key must be 32 bytes")]
    InvalidKeyLength,
    /// The system random generator failed.
    #[error("system random number generator failed")]
    Random,
    /// A caller broke an API precondition (a bug in the caller, never caused by object bytes).
    #[error("invalid use of the format API: {0}")]
    Usage(&'static str),
}
