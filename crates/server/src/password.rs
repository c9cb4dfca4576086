//! Password hashes of internal users: argon2id (m = 19456 KiB, t = 2, p = 1, the OWASP baseline)
//! for new passwords; bcrypt (`$2a$`, `$2b$`, `$2y$`) accepted for users imported from
//! OpenSearch's `internal_users.yml`.
//!
//! Argon2id hashes are PHC strings: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (unpadded
//! standard base64). Parameters read from a stored hash are capped, so a planted hash cannot
//! make a login cost minutes.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use zeroize::Zeroizing;

/// Memory cost, KiB.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Iterations.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;
const OUT_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// Largest parameters accepted from a stored hash.
const MAX_M_KIB: u32 = 262_144;
const MAX_T: u32 = 16;
const MAX_P: u32 = 16;
/// Largest bcrypt cost accepted from a stored hash.
const MAX_BCRYPT_COST: u32 = 14;
/// Longest password looked at (bcrypt reads 72 bytes; argon2 takes any length, but a 1 MB
/// password is an attack, not a password).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a hash could not be made or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashError {
    /// The stored hash is not one this module understands.
    #[error("unsupported or malformed password hash")]
    Malformed,
    /// No randomness.
    #[error("no random bytes for a salt")]
    Random,
}

fn argon2(m: u32, t: u32, p: u32) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(m, t, p, Some(OUT_LEN)).map_err(|_| HashError::Malformed)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with argon2id and a fresh random salt.
///
/// # Errors
/// [`HashError::Random`] when the system has no randomness.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Random)?;
    let mut out = Zeroizing::new([0u8; OUT_LEN]);
    argon2(ARGON2_M_KIB, ARGON2_T, ARGON2_P)?
        .hash_password_into(password.as_bytes(), &salt, out.as_mut())
        .map_err(|_| HashError::Malformed)?;
    Ok(format!(
        "$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out.as_ref())
    ))
}

/// Whether `stored` is a hash [`verify`] can check.
#[must_use]
pub fn is_supported(stored: &str) -> bool {
    parse_argon2(stored).is_some() || bcrypt_cost(stored).is_some()
}

/// Checks `password` against `stored`, in constant time with respect to the hash. A malformed
/// hash or an overlong password verifies as false after the same work as a wrong password.
#[must_use]
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        dummy_verify(password);
        return false;
    }
    if let Some(p) = parse_argon2(stored) {
        let Ok(a) = argon2(p.m, p.t, p.p) else {
            return false;
        };
        let mut out = Zeroizing::new(vec![0u8; p.hash.len()]);
        if a.hash_password_into(password.as_bytes(), &p.salt, &mut out)
            .is_err()
        {
            return false;
        }
        return aws_lc_rs::constant_time::verify_slices_are_equal(&out, &p.hash).is_ok();
    }
    if bcrypt_cost(stored).is_some() {
        // bcrypt compares in constant time itself.
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    dummy_verify(password);
    false
}

/// Spends the time of one argon2id verification, so an unknown user costs what a wrong
/// password costs.
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| {
        hash("encrypt-repo dummy password").unwrap_or_else(|_| {
            // Without randomness a fixed salt is fine: nothing verifies against this hash.
            "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()
        })
    });
    let truncated = &password.as_bytes()[..password.len().min(MAX_PASSWORD_LEN)];
    if let Some(p) = parse_argon2(stored)
        && let Ok(a) = argon2(p.m, p.t, p.p)
    {
        let mut out = Zeroizing::new(vec![0u8; p.hash.len()]);
        let _ = a.hash_password_into(truncated, &p.salt, &mut out);
    }
}

struct Argon2Hash {
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_argon2(s: &str) -> Option<Argon2Hash> {
    let mut parts = s.strip_prefix("$argon2id$")?.split('$');
    if parts.next()? != "v=19" {
        return None;
    }
    let params = parts.next()?;
    let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    let hash = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || salt.len() < 8 || !(16..=64).contains(&hash.len()) {
        return None;
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    let (m, t, p) = (m?, t?, p?);
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P || t == 0 || p == 0 {
        return None;
    }
    Some(Argon2Hash {
        m,
        t,
        p,
        salt,
        hash,
    })
}

fn bcrypt_cost(s: &str) -> Option<u32> {
    let rest = s
        .strip_prefix("$2a$")
        .or_else(|| s.strip_prefix("$2b$"))
        .or_else(|| s.strip_prefix("$2y$"))?;
    let cost: u32 = rest.get(..2)?.parse().ok()?;
    (rest.len() == 2 + 1 + 53 && (4..=MAX_BCRYPT_COST).contains(&cost)).then_some(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_owasp_parameters() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct hors", &h));
        assert!(!verify("", &h));
        assert_ne!(hash("correct horse").expect("hash"), h, "salted");
    }

    #[test]
    fn imported_bcrypt_hashes_verify() {
        // OpenSearch's demo `admin` user: admin / admin.
        let h = "$2a$12$VcCDgh2NDk07JGN0rjGbM.Ad41qVR/YFJcgHp0UGns5JDymv..TOG";
        assert!(verify("admin", h));
        assert!(!verify("Admin", h));
        for prefix in ["$2b$", "$2y$"] {
            let other = h.replacen("$2a$", prefix, 1);
            assert!(is_supported(&other));
            assert!(verify("admin", &other), "{prefix}");
        }
    }

    #[test]
    fn malformed_and_hostile_hashes_never_verify() {
        for bad in [
            "",
            "admin",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=99999,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
            "$2a$31$VcCDgh2NDk07JGN0rjGbM.Ad41qVR/YFJcgHp0UGns5JDymv..TOG",
            "$2a$12$short",
        ] {
            assert!(!is_supported(bad), "{bad}");
            assert!(!verify("admin", bad), "{bad}");
        }
    }

    #[test]
    fn overlong_passwords_are_refused() {
        let h = hash("x").expect("hash");
        assert!(!verify(&"x".repeat(MAX_PASSWORD_LEN + 1), &h));
    }
}
