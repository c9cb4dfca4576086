//! Transit's wire shapes: request and answer bodies, the `vault:vN:` ciphertext, key metadata.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use encrypt_repo_keys::{Error, Result, RotationInfo};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::TYPE;

/// Longest ciphertext accepted locally: a wrapped 32-byte key is 9 + 80 characters; this leaves
/// room for large versions and other AEADs while keeping junk off the network.
const MAX_CIPHERTEXT_LEN: usize = 512;

/// Checks that `bytes` is a transit ciphertext in canonical form — `vault:v{N}:` with `N` ≥ 1
/// and no leading zero, then canonical padded base64 — and returns it with its version.
///
/// Transit itself reads `v0` as version 1 and may accept a few non-canonical spellings; doing the
/// check here means any change to a stored ciphertext is refused, not just most.
pub(crate) fn parse_ciphertext(bytes: &[u8]) -> Option<(&str, u64)> {
    if bytes.len() > MAX_CIPHERTEXT_LEN {
        return None;
    }
    let s = std::str::from_utf8(bytes).ok()?;
    let (version, b64) = s.strip_prefix("vault:v")?.split_once(':')?;
    if version.is_empty()
        || version.len() > 10
        || version.starts_with('0')
        || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let decoded = STANDARD.decode(b64).ok()?;
    // nonce (12) + tag (16) at the least
    if decoded.len() < 28 || STANDARD.encode(&decoded) != b64 {
        return None;
    }
    Some((s, version.parse().ok()?))
}

/// Standard base64 into a zeroizing string, sized so it never reallocates.
pub(crate) fn encode_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    STANDARD.encode_string(bytes, &mut out);
    out
}

/// Decodes a base64 data key straight into a zeroizing buffer; `None` unless it is 32 bytes.
pub(crate) fn decode_data_key(b64: &str) -> Option<encrypt_repo_format::DataKey> {
    let mut buf = Zeroizing::new([0u8; 48]);
    let n = STANDARD.decode_slice(b64, &mut *buf).ok()?;
    encrypt_repo_format::DataKey::try_from_slice(&buf[..n]).ok()
}

/// Body of `datakey/plaintext`.
#[derive(Serialize)]
pub(crate) struct DataKeyRequest<'a> {
    pub(crate) bits: u32,
    pub(crate) context: &'a str,
}

/// Body of `encrypt`.
#[derive(Serialize)]
pub(crate) struct EncryptRequest<'a> {
    pub(crate) plaintext: &'a str,
    pub(crate) context: &'a str,
}

/// Body of `decrypt` and `rewrap`.
#[derive(Serialize)]
pub(crate) struct CiphertextRequest<'a> {
    pub(crate) ciphertext: &'a str,
    pub(crate) context: &'a str,
}

/// `{"data": …}`, the envelope of every transit answer.
#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) data: T,
}

/// Answer of `datakey/plaintext`.
#[derive(Deserialize)]
pub(crate) struct DataKeyAnswer {
    #[serde(deserialize_with = "zeroizing")]
    pub(crate) plaintext: Zeroizing<String>,
    pub(crate) ciphertext: String,
}

/// Answer of `decrypt`.
#[derive(Deserialize)]
pub(crate) struct DecryptAnswer {
    #[serde(deserialize_with = "zeroizing")]
    pub(crate) plaintext: Zeroizing<String>,
}

/// Answer of `encrypt` and `rewrap`.
#[derive(Deserialize)]
pub(crate) struct CiphertextAnswer {
    pub(crate) ciphertext: String,
}

fn zeroizing<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// What `GET {mount}/keys/{key}` says about a transit key (the fields this provider uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct TransitKeyInfo {
    /// The key's name.
    #[serde(default)]
    pub name: String,
    /// Key type (`aes256-gcm96`, `chacha20-poly1305`, …).
    #[serde(rename = "type", default)]
    pub key_type: String,
    /// Whether the key derives a key per context (required by this provider).
    #[serde(default)]
    pub derived: bool,
    /// The version new wraps use.
    pub latest_version: u64,
    /// Ciphertexts of older versions are refused by transit.
    #[serde(default)]
    pub min_decryption_version: u64,
    /// Whether the key may be deleted.
    #[serde(default)]
    pub deletion_allowed: bool,
    /// OpenBao's soft deletion: the key is kept but refuses to work.
    #[serde(default)]
    pub soft_deleted: bool,
    /// Seconds between automatic rotations (0: off).
    #[serde(default, deserialize_with = "period_seconds")]
    pub auto_rotate_period: u64,
    /// When the latest version was created (RFC 3339), if transit said.
    #[serde(skip)]
    pub latest_created: Option<String>,
}

impl TransitKeyInfo {
    /// Parses the `data` of a key read, including the creation time of the latest version.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(flatten)]
            info: TransitKeyInfo,
            #[serde(default)]
            keys: BTreeMap<String, serde_json::Value>,
        }
        let Envelope { data: raw } = serde_json::from_slice::<Envelope<Raw>>(body).ok()?;
        let mut info = raw.info;
        info.latest_created =
            raw.keys
                .get(&info.latest_version.to_string())
                .and_then(|v| match v {
                    // symmetric keys: Unix seconds; asymmetric: an object with `creation_time`
                    serde_json::Value::Number(n) => {
                        n.as_i64().and_then(encrypt_repo_keys::wire::rfc3339)
                    }
                    serde_json::Value::Object(o) => o
                        .get("creation_time")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned),
                    _ => None,
                });
        Some(info)
    }

    /// The rotation facts for [`encrypt_repo_keys::KeyStatus::Usable`].
    #[must_use]
    pub fn rotation(&self) -> RotationInfo {
        RotationInfo {
            automatic: Some(self.auto_rotate_period > 0),
            current_version: Some(self.latest_version),
            last_rotated: self.latest_created.clone(),
        }
    }

    /// Refuses a key whose wraps could not be bound to their context.
    pub(crate) fn check_derived(&self, master_key: &str) -> Result<()> {
        if self.derived {
            return Ok(());
        }
        Err(Error::Setting {
            provider: TYPE.into(),
            setting: "key_name".into(),
            problem: format!(
                "transit key {master_key} is not a derived key: transit would ignore the wrap \
                 context, so wraps could not be bound to their repository and data key; use a key \
                 created with derived=true (bao write transit/keys/NAME derived=true)"
            ),
        })
    }
}

/// `auto_rotate_period`: seconds as a number, or a Go duration string (`"0s"`, `"24h0m0s"`).
fn period_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => u64::from(s.chars().any(|c| ('1'..='9').contains(&c))),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "vault:v12:RotXhV8QiQt4aOvVVF0XDt4dAseBRt2jFnWT7X7441hbwDaXe5dF9G3PYhyqHxyZrf9UzIZzpWBobt2w";

    #[test]
    fn ciphertext_canonical_form_only() {
        assert_eq!(parse_ciphertext(GOOD.as_bytes()).map(|c| c.1), Some(12));
        let v0 = GOOD.replace("v12", "v0");
        let lead = GOOD.replace("v12", "v012");
        for bad in [
            "",
            "vault:v1:",
            "vault:v:AAAA",
            "vault:v1:AAAA", // too short for nonce + tag
            &v0,
            &lead,
            &GOOD.replace("vault", "vaulu"),
            &format!("{GOOD}\0"),
            &format!("{GOOD}="),
            &GOOD[..GOOD.len() - 1],
        ] {
            assert!(
                parse_ciphertext(bad.as_bytes()).is_none(),
                "{bad:?} accepted"
            );
        }
        assert!(parse_ciphertext(&[0xff, 0xfe]).is_none());
        // every single-bit flip is refused locally or left for transit's GCM tag
        for i in 0..GOOD.len() {
            let mut b = GOOD.as_bytes().to_vec();
            b[i] ^= 1;
            if let Some((s, _)) = parse_ciphertext(&b) {
                assert_ne!(s, GOOD);
            }
        }
    }

    #[test]
    fn data_key_decoding() {
        let k = encode_secret(&[7u8; 32]);
        assert_eq!(k.len(), 44);
        assert_eq!(decode_data_key(&k).map(|k| k.expose_secret()[0]), Some(7));
        assert!(decode_data_key(&encode_secret(&[7u8; 31])).is_none());
        assert!(decode_data_key(&encode_secret(&[7u8; 33])).is_none());
        assert!(decode_data_key(&encode_secret(&[7u8; 100])).is_none());
        assert!(decode_data_key("!!!").is_none());
    }

    #[test]
    fn key_info_parsing() {
        let body = br#"{"data":{"name":"k","type":"aes256-gcm96","derived":true,
            "latest_version":2,"min_decryption_version":1,"deletion_allowed":false,
            "auto_rotate_period":86400,"keys":{"1":1795607332,"2":1795607354}}}"#;
        let info = TransitKeyInfo::parse(body).expect("parses");
        assert_eq!(info.latest_version, 2);
        assert!(info.derived);
        let r = info.rotation();
        assert_eq!(r.automatic, Some(true));
        assert_eq!(r.current_version, Some(2));
        assert_eq!(r.last_rotated.as_deref(), Some("2026-11-25T11:49:14Z"));
        let s = br#"{"data":{"latest_version":1,"auto_rotate_period":"0s"}}"#;
        assert_eq!(
            TransitKeyInfo::parse(s).map(|i| i.auto_rotate_period),
            Some(0)
        );
        for junk in [&b"{}"[..], b"[]", b"null", b"{\"data\":{}}", b"\xff"] {
            assert!(TransitKeyInfo::parse(junk).is_none());
        }
    }
}
