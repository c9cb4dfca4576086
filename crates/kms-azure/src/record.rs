//! The stored ciphertext of a wrapped data key (layout 1) and its binding MAC.
//!
//! ```text
//! offset        size  field
//! 0             1     layout version, 0x01
//! 1             1     L, length of the key version id (32)
//! 2             L     the Key Vault key version that wrapped it, ASCII lower-case hex
//! 2+L           2     W, length of the wrapped key, big-endian (the RSA modulus size: 256, 384, 512)
//! 4+L           W     the RSA-OAEP-256 ciphertext of the 32-byte data key, as `wrapkey` returned it
//! 4+L+W         32    MAC = HMAC-SHA-256(key = data key, MAC_LABEL || repository id || data-key id)
//! ```
//!
//! The record is exactly `4 + L + W + 32` bytes; anything else is refused.

use aws_lc_rs::hmac;
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::WrapContext;

use crate::settings::is_version;

/// Layout version of [`Record`].
pub const LAYOUT_V1: u8 = 1;
/// The fixed label of the binding MAC: 32 ASCII bytes, no terminator.
pub const MAC_LABEL: &[u8; 32] = b"encrypt-repo/azure-key-vault/v1\0";
/// Length of the binding MAC.
pub const MAC_LEN: usize = 32;
/// Largest wrapped key accepted (an RSA-4096 ciphertext).
const MAX_WRAPPED_LEN: usize = 512;

/// A parsed record. Holds no secret: the wrapped key is ciphertext, the MAC a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The Key Vault key version that wrapped the data key (32 lower-case hex characters).
    pub version: String,
    /// The `RSA-OAEP-256` ciphertext `wrapkey` returned.
    pub wrapped: Vec<u8>,
    /// The binding MAC ([`binding_mac`]).
    pub mac: [u8; MAC_LEN],
}

impl Record {
    /// The record's bytes (layout 1).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.version.len() + self.wrapped.len() + MAC_LEN);
        out.push(LAYOUT_V1);
        // Both lengths are checked where the values come from (a 32-character version, a
        // wrapped key of at most 512 bytes).
        out.push(u8::try_from(self.version.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(
            &u16::try_from(self.wrapped.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.wrapped);
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses attacker-controlled bytes; `None` for anything that is not a layout-1 record.
    #[must_use]
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (&layout, rest) = b.split_first()?;
        if layout != LAYOUT_V1 {
            return None;
        }
        let (&l, rest) = rest.split_first()?;
        let (version, rest) = rest.split_at_checked(usize::from(l))?;
        let version = std::str::from_utf8(version).ok()?;
        // Lower case only: an upper-case copy of a version would be another valid record.
        if !is_version(version) || version.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        let (w, rest) = rest.split_at_checked(2)?;
        let w = usize::from(u16::from_be_bytes([w[0], w[1]]));
        if w == 0 || w > MAX_WRAPPED_LEN {
            return None;
        }
        let (wrapped, mac) = rest.split_at_checked(w)?;
        let mac: [u8; MAC_LEN] = mac.try_into().ok()?;
        Some(Self {
            version: version.to_owned(),
            wrapped: wrapped.to_vec(),
            mac,
        })
    }

    pub(crate) fn check_sizes(version: &str, wrapped: &[u8]) -> bool {
        is_version(version) && !wrapped.is_empty() && wrapped.len() <= MAX_WRAPPED_LEN
    }
}

fn mac_key(key: &DataKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret())
}

fn mac_input(ctx: &WrapContext) -> Vec<u8> {
    ctx.aad(MAC_LABEL)
}

/// The binding MAC of `key` to `ctx`: HMAC-SHA-256 keyed by the data key over
/// [`MAC_LABEL`] `||` repository id `||` data-key id.
#[must_use]
pub fn binding_mac(key: &DataKey, ctx: &WrapContext) -> [u8; MAC_LEN] {
    let tag = hmac::sign(&mac_key(key), &mac_input(ctx));
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Verifies the binding MAC in constant time.
#[must_use]
pub fn verify_mac(key: &DataKey, ctx: &WrapContext, mac: &[u8]) -> bool {
    hmac::verify(&mac_key(key), &mac_input(ctx), mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use encrypt_repo_format::{DataKeyId, RepositoryId};

    fn record() -> Record {
        Record {
            version: "0123456789abcdef0123456789abcdef".into(),
            wrapped: vec![7; 256],
            mac: [9; 32],
        }
    }

    #[test]
    fn records_round_trip_and_the_layout_is_as_documented() {
        let r = record();
        let b = r.encode();
        assert_eq!(b.len(), 4 + 32 + 256 + 32);
        assert_eq!(&b[..2], &[1, 32]);
        assert_eq!(&b[2..34], r.version.as_bytes());
        assert_eq!(&b[34..36], &[1, 0]);
        assert_eq!(&b[36..292], &[7; 256][..]);
        assert_eq!(&b[292..], &[9; 32]);
        assert_eq!(Record::decode(&b), Some(r));
    }

    #[test]
    fn malformed_records_are_refused() {
        let b = record().encode();
        for len in 0..b.len() {
            assert_eq!(Record::decode(&b[..len]), None, "truncated to {len}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Record::decode(&longer), None);
        for (i, v) in [(0, 2), (1, 31), (2, b'A'), (2, b'g'), (34, 0x80)] {
            let mut t = b.clone();
            t[i] = v;
            assert_eq!(Record::decode(&t), None, "byte {i} = {v}");
        }
    }

    #[test]
    fn the_mac_is_hmac_sha256_over_label_and_ids() {
        let key = DataKey::from_bytes([0x11; 32]);
        let ctx = WrapContext {
            repository_id: RepositoryId([1; 16]),
            data_key_id: DataKeyId([2; 16]),
        };
        let mac = binding_mac(&key, &ctx);
        let mut msg = MAC_LABEL.to_vec();
        msg.extend_from_slice(&[1; 16]);
        msg.extend_from_slice(&[2; 16]);
        let expect = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[0x11; 32]), &msg);
        assert_eq!(&mac[..], expect.as_ref());
        assert!(verify_mac(&key, &ctx, &mac));
        let moved = WrapContext {
            data_key_id: DataKeyId([3; 16]),
            ..ctx
        };
        assert!(!verify_mac(&key, &moved, &mac));
        assert!(!verify_mac(&key, &ctx, &mac[..31]));
    }
}
