//! Small pieces every provider that talks to a key service over HTTP needs: request bodies that
//! hold a data key in a zeroizing buffer until the HTTP stack drops them, server messages made
//! safe to show, and RFC 3339 dates for key metadata.

use bytes::Bytes;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// `buf` as a `Bytes` that owns it: the buffer is wiped when the HTTP stack drops the body.
#[must_use]
pub fn zeroizing_bytes(buf: Zeroizing<Vec<u8>>) -> Bytes {
    Bytes::from_owner(ZeroizingBytes(buf))
}

/// `value` as a JSON body in a zeroizing buffer (see [`zeroizing_bytes`]). `capacity` must be
/// large enough that serialising never reallocates (a reallocation would free an unwiped copy).
///
/// # Errors
/// [`Error::Provider`] naming `provider` if `value` cannot be serialised.
pub fn zeroizing_json(
    provider: &str,
    value: &impl serde::Serialize,
    capacity: usize,
) -> Result<Bytes> {
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buf, value).map_err(|e| Error::Provider {
        provider: provider.into(),
        message: format!("cannot encode a request: {e}"),
    })?;
    Ok(zeroizing_bytes(buf))
}

/// `Zeroizing<Vec<u8>>` as a `Bytes` owner.
struct ZeroizingBytes(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroizingBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Most characters of a server message [`sanitize`] keeps.
pub const MAX_MESSAGE: usize = 300;

/// A server-supplied message made safe for an error: every non-empty `secrets` entry (a token,
/// a client secret) replaced by `<redacted>`, control characters removed, cut to
/// [`MAX_MESSAGE`] bytes (on a character boundary, marked `…`).
#[must_use]
pub fn sanitize(message: &str, secrets: &[&str]) -> String {
    let mut s = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret, "<redacted>");
    }
    s.retain(|c| !c.is_control());
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian; H. Hinnant's civil_from_days),
/// or `None` outside the years 1970 to 9999.
#[must_use]
pub fn rfc3339(secs: i64) -> Option<String> {
    if !(0..=253_402_300_799).contains(&secs) {
        return None;
    }
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            rfc3339(1_709_251_199).as_deref(),
            Some("2024-02-29T23:59:59Z")
        );
        assert_eq!(
            rfc3339(1_700_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            rfc3339(1_798_761_599).as_deref(),
            Some("2026-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339(-1), None);
        assert_eq!(rfc3339(i64::MAX), None);
    }

    #[test]
    fn sanitize_removes_secrets_controls_and_length() {
        assert_eq!(
            sanitize("bad token s.abc\n\u{7}here", &["s.abc", ""]),
            "bad token <redacted>here"
        );
        let long = sanitize(&"é".repeat(400), &[]);
        assert!(long.len() <= MAX_MESSAGE + '…'.len_utf8() && long.ends_with('…'));
    }

    #[test]
    fn a_json_body_holds_the_serialised_value() {
        let b = zeroizing_json("test", &serde_json::json!({"k": "v"}), 64).unwrap_or_default();
        assert_eq!(b.as_ref(), br#"{"k":"v"}"#);
    }
}
