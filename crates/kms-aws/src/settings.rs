//! The `aws-kms` settings map: parsing and validation, without any network call.

use encrypt_repo_keys::{Error, Result, Settings};

use crate::TYPE;

/// Identity: the key as the user named it (key id, key ARN, alias name or alias ARN).
pub(crate) const KEY_ID: &str = "key_id";
/// Identity: the key ARN that `key_id` resolved to at registration.
pub(crate) const KEY_ARN: &str = "key_arn";
/// Access: AWS region.
pub(crate) const REGION: &str = "region";
/// Access: endpoint URL override (a VPC endpoint, moto).
pub(crate) const ENDPOINT: &str = "endpoint";
/// Access: named profile from the shared AWS config and credentials files.
pub(crate) const PROFILE: &str = "profile";

const KNOWN: [&str; 5] = [KEY_ID, KEY_ARN, REGION, ENDPOINT, PROFILE];
/// KMS accepts key identifiers of at most 2048 characters.
const MAX_KEY_ID_LEN: usize = 2048;

/// Parsed and validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsKmsSettings {
    pub(crate) key_id: String,
    pub(crate) key_arn: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) profile: Option<String>,
}

pub(crate) fn bad(setting: &str, problem: impl Into<String>) -> Error {
    Error::Setting {
        provider: TYPE.into(),
        setting: setting.into(),
        problem: problem.into(),
    }
}

impl AwsKmsSettings {
    /// Validates `settings`. Unknown names are refused: a typo such as `regoin` would otherwise
    /// be ignored silently, and credentials must never be settings at all.
    pub(crate) fn parse(settings: &Settings) -> Result<Self> {
        if let Some(name) = settings.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let hint = if is_credential_name(name) {
                "is not accepted: credentials come from the AWS environment (AWS_ACCESS_KEY_ID, \
                 AWS_PROFILE, web identity, instance role), never from settings"
                    .to_owned()
            } else {
                format!("is unknown; known settings: {}", KNOWN.join(", "))
            };
            return Err(bad(name, hint));
        }
        let key_id = settings.get(KEY_ID).ok_or_else(|| {
            bad(
                KEY_ID,
                "is required (key id, key ARN, alias/NAME or alias ARN)",
            )
        })?;
        validate_key_id(key_id)?;
        let key_arn = settings.get(KEY_ARN).cloned();
        if let Some(arn) = &key_arn {
            check_key_arn(key_id, arn)?;
        }
        let region = settings.get(REGION).cloned();
        if let Some(r) = &region {
            validate_region(r)?;
        }
        let endpoint = settings.get(ENDPOINT).cloned();
        if let Some(e) = &endpoint {
            validate_endpoint(e)?;
        }
        let profile = settings.get(PROFILE).cloned();
        if let Some(p) = &profile
            && (p.is_empty() || p.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(bad(PROFILE, "must be a profile name without spaces"));
        }
        Ok(Self {
            key_id: key_id.clone(),
            key_arn,
            region,
            endpoint,
            profile,
        })
    }

    /// The region to use when neither the settings nor the AWS environment name one: the key
    /// ARN's (or an ARN `key_id`'s) region.
    pub(crate) fn region_from_arn(&self) -> Option<String> {
        let arn = self.key_arn.as_deref().unwrap_or(&self.key_id);
        arn_parts(arn).map(|p| p.region.to_owned())
    }
}

fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["secret", "access_key", "session_token", "token", "password"]
        .iter()
        .any(|w| n.contains(w))
}

/// The pieces of `arn:PARTITION:kms:REGION:ACCOUNT:RESOURCE`.
struct ArnParts<'a> {
    region: &'a str,
    resource: &'a str,
}

fn arn_parts(s: &str) -> Option<ArnParts<'_>> {
    let mut it = s.splitn(6, ':');
    let (arn, partition, service) = (it.next()?, it.next()?, it.next()?);
    let (region, account, resource) = (it.next()?, it.next()?, it.next()?);
    let ok = arn == "arn"
        && !partition.is_empty()
        && service == "kms"
        && !region.is_empty()
        && validate_region(region).is_ok()
        && !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(ArnParts { region, resource })
}

fn is_key_uuid(s: &str) -> bool {
    let s = s.strip_prefix("mrk-").unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_alias_name(s: &str) -> bool {
    s.strip_prefix("alias/").is_some_and(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    })
}

/// Accepts the four forms KMS accepts: key id, key ARN, `alias/NAME`, alias ARN.
fn validate_key_id(key_id: &str) -> Result<()> {
    let problem = if key_id.is_empty() {
        "is empty".to_owned()
    } else if key_id.len() > MAX_KEY_ID_LEN {
        format!("is longer than {MAX_KEY_ID_LEN} characters")
    } else if key_id.starts_with("arn:") {
        match arn_parts(key_id) {
            Some(p)
                if p.resource.strip_prefix("key/").is_some_and(is_key_uuid)
                    || is_alias_name(p.resource) =>
            {
                return Ok(());
            }
            _ => format!(
                "{key_id:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or alias ARN \
                 (arn:aws:kms:REGION:ACCOUNT:alias/NAME)"
            ),
        }
    } else if key_id.starts_with("alias/") {
        if is_alias_name(key_id) {
            return Ok(());
        }
        format!("{key_id:?}: alias names use letters, digits, '/', '_' and '-'")
    } else if is_key_uuid(key_id) {
        return Ok(());
    } else {
        format!("{key_id:?} is not a key id, key ARN, alias/NAME or alias ARN")
    };
    Err(bad(KEY_ID, problem))
}

/// `key_arn` must be a key ARN, and must be the key `key_id` names when `key_id` names a key
/// rather than an alias (an alias may point anywhere, so it is resolved only at registration).
fn check_key_arn(key_id: &str, arn: &str) -> Result<()> {
    let Some(id) = arn_parts(arn).and_then(|p| p.resource.strip_prefix("key/")) else {
        return Err(bad(KEY_ARN, format!("{arn:?} is not a KMS key ARN")));
    };
    let names_alias = key_id.starts_with("alias/") || key_id.contains(":alias/");
    let consistent = names_alias || key_id == arn || key_id == id;
    if !consistent {
        return Err(bad(
            KEY_ARN,
            format!("{arn} is not the key {key_id} names; the registration was changed"),
        ));
    }
    Ok(())
}

fn validate_region(r: &str) -> Result<()> {
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(REGION, format!("{r:?} is not an AWS region name")))
    }
}

/// `https://…`, or `http://…` on a loopback address only: GenerateDataKey and Decrypt answers
/// carry plaintext data keys, which must not cross a network unencrypted.
fn validate_endpoint(e: &str) -> Result<()> {
    let (scheme, rest) = e.split_once("://").ok_or_else(|| {
        bad(
            ENDPOINT,
            format!("{e:?} is not a URL (https://HOST[:PORT])"),
        )
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() || authority.contains('@') {
        return Err(bad(
            ENDPOINT,
            format!("{e:?} has no host (or has user info)"),
        ));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(bad(
            ENDPOINT,
            format!(
                "{e:?} is plain http to a non-loopback host: data keys would cross the network \
                 unencrypted; use https"
            ),
        )),
        _ => Err(bad(ENDPOINT, format!("{e:?}: the scheme must be https"))),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn setting_error(pairs: &[(&str, &str)]) -> String {
        match AwsKmsSettings::parse(&settings(pairs)) {
            Err(Error::Setting { setting, .. }) => setting,
            other => panic!("expected a setting error for {pairs:?}, got {other:?}"),
        }
    }

    const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn accepts_the_four_key_id_forms() {
        for id in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            ARN,
            "alias/backups",
            "arn:aws:kms:eu-west-1:111122223333:alias/backups/prod_1",
        ] {
            let s = AwsKmsSettings::parse(&settings(&[("key_id", id)])).expect(id);
            assert_eq!(s.key_id, id);
        }
    }

    #[test]
    fn refuses_malformed_key_ids() {
        for id in [
            "",
            "alias/",
            "alias/has space",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:eu-west-1:111122223333:key/",
            "arn:aws:kms:eu-west-1:acct:key/abc",
            "not a key",
        ] {
            assert_eq!(setting_error(&[("key_id", id)]), "key_id", "{id:?}");
        }
        assert_eq!(setting_error(&[("region", "eu-west-1")]), "key_id");
        let long = "a".repeat(MAX_KEY_ID_LEN + 1);
        assert_eq!(setting_error(&[("key_id", &long)]), "key_id");
    }

    #[test]
    fn refuses_unknown_settings_and_credentials() {
        for name in [
            "aws_secret_access_key",
            "secret_access_key",
            "session_token",
        ] {
            let err = AwsKmsSettings::parse(&settings(&[("key_id", "alias/x"), (name, "x")]))
                .expect_err(name)
                .to_string();
            assert!(err.contains("never from settings"), "{err}");
            assert!(!err.contains("\"x\""), "{err}");
        }
        assert_eq!(
            setting_error(&[("key_id", "alias/x"), ("regoin", "eu-west-1")]),
            "regoin"
        );
    }

    #[test]
    fn key_arn_must_match_a_key_id() {
        let ok = [("key_id", "alias/x"), ("key_arn", ARN)];
        assert!(AwsKmsSettings::parse(&settings(&ok)).is_ok());
        let ok = [
            ("key_id", "1234abcd-12ab-34cd-56ef-1234567890ab"),
            ("key_arn", ARN),
        ];
        assert!(AwsKmsSettings::parse(&settings(&ok)).is_ok());
        let other = [
            ("key_id", "ffffffff-12ab-34cd-56ef-1234567890ab"),
            ("key_arn", ARN),
        ];
        assert_eq!(setting_error(&other), "key_arn");
        assert_eq!(
            setting_error(&[("key_id", "alias/x"), ("key_arn", "alias/y")]),
            "key_arn"
        );
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for e in [
            "https://kms.eu-west-1.amazonaws.com",
            "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com:443/",
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "http://[::1]:5000",
        ] {
            let s = [("key_id", "alias/x"), ("endpoint", e)];
            assert!(AwsKmsSettings::parse(&settings(&s)).is_ok(), "{e}");
        }
        for e in [
            "http://kms.example.com",
            "http://10.0.0.1:5000",
            "ftp://127.0.0.1",
            "kms.example.com",
            "https://",
            "https://user@host",
        ] {
            assert_eq!(
                setting_error(&[("key_id", "alias/x"), ("endpoint", e)]),
                "endpoint",
                "{e}"
            );
        }
    }

    #[test]
    fn region_comes_from_an_arn_when_not_set() {
        let s = AwsKmsSettings::parse(&settings(&[("key_id", ARN)])).expect("parse");
        assert_eq!(s.region_from_arn().as_deref(), Some("eu-west-1"));
        let s = AwsKmsSettings::parse(&settings(&[("key_id", "alias/x")])).expect("parse");
        assert_eq!(s.region_from_arn(), None);
        assert_eq!(
            setting_error(&[("key_id", "alias/x"), ("region", "EU West")]),
            "region"
        );
        assert_eq!(
            setting_error(&[("key_id", "alias/x"), ("profile", "")]),
            "profile"
        );
    }
}
