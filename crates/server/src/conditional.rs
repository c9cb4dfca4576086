//! Conditional object requests: `If-Match` / `If-None-Match` on `PUT`, `GET` and `HEAD` of
//! `/_snapshot/{repo}/_objects/{path}`.
//!
//! The `ETag` a response carries is the storage service's entity tag of the stored (encrypted)
//! object, passed through verbatim; send it back as received.
//!
//! - `PUT` with `If-None-Match: *` creates only (`PutMode::Create`): 412 if the object exists.
//! - `PUT` with `If-Match: <etag>` replaces only that version (`PutMode::Update`): 412 if the
//!   object changed or is gone. `If-Match: *` replaces only an existing object (its current
//!   version). The `fs` type has no atomic compare-and-swap, so there it is answered with 400
//!   rather than emulated with a check-then-write race; s3, azure and gcs have one.
//! - `GET` / `HEAD` honour `If-None-Match` (304 when it matches) and `If-Match` (412 when it
//!   does not).
//!
//! A conditional `PUT` is one storage request, so its body is held in memory: it is limited to
//! [`MAX_CONDITIONAL_PUT`] (413 beyond). Unconditional uploads stream in parts.

use axum::http::{HeaderMap, StatusCode, header};
use object_store::{PutMode, UpdateVersion};

use crate::error::ApiError;

/// Largest body of a conditional `PUT` (they are typically small markers and index files).
pub const MAX_CONDITIONAL_PUT: usize = 16 << 20;

/// The `If-Match` / `If-None-Match` headers of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `If-Match`.
    pub if_match: Option<String>,
    /// `If-None-Match`.
    pub if_none_match: Option<String>,
}

impl Conditions {
    /// Reads the headers.
    ///
    /// # Errors
    /// 400 for a header that is not visible ASCII.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let get = |name: header::HeaderName| {
            headers
                .get(&name)
                .map(|v| {
                    v.to_str()
                        .map(|s| s.trim().to_owned())
                        .map_err(|_| ApiError::bad_request(format!("{name}: not visible ASCII")))
                })
                .transpose()
        };
        Ok(Self {
            if_match: get(header::IF_MATCH)?,
            if_none_match: get(header::IF_NONE_MATCH)?,
        })
    }

    /// Whether any condition is present.
    #[must_use]
    pub fn any(&self) -> bool {
        self.if_match.is_some() || self.if_none_match.is_some()
    }
}

/// What a conditional `PUT` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// No condition: overwrite, streamed.
    None,
    /// `If-None-Match: *`.
    Create,
    /// `If-Match: <etag>`.
    Update(String),
    /// `If-Match: *`: replace the current version, whatever it is.
    UpdateAny,
}

impl PutCondition {
    /// The condition of a `PUT`.
    ///
    /// # Errors
    /// 400 for both headers at once, or `If-None-Match` other than `*`.
    pub fn from_conditions(c: &Conditions) -> Result<Self, ApiError> {
        match (&c.if_match, &c.if_none_match) {
            (None, None) => Ok(Self::None),
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "If-Match and If-None-Match cannot be combined on PUT",
            )),
            (None, Some(n)) if n == "*" => Ok(Self::Create),
            (None, Some(_)) => Err(ApiError::bad_request(
                "If-None-Match on PUT: only * (create only) is supported",
            )),
            (Some(m), None) if m == "*" => Ok(Self::UpdateAny),
            (Some(m), None) if m.contains(',') => {
                Err(ApiError::bad_request("If-Match on PUT: one entity tag"))
            }
            (Some(m), None) => Ok(Self::Update(m.clone())),
        }
    }

    /// The put mode for an update of the version tagged `e_tag`.
    #[must_use]
    pub fn update_mode(e_tag: String) -> PutMode {
        PutMode::Update(UpdateVersion {
            e_tag: Some(e_tag),
            version: None,
        })
    }
}

/// Maps a storage error of a conditional `PUT`: a lost condition is 412, a backend without
/// conditional updates 400 (the request asks for what this repository's storage cannot do; a
/// 5xx would say the server failed).
#[must_use]
pub fn put_error(repo: &str, path: &str, store_type: &str, e: object_store::Error) -> ApiError {
    use object_store::Error as E;
    match e {
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotFound { .. } => {
            precondition_failed()
        }
        E::NotImplemented { .. } | E::NotSupported { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_supported_exception",
            format!(
                "[{repo}] repositories of type {store_type} have no atomic conditional update; If-Match on PUT needs s3, azure or gcs (If-None-Match: * works everywhere)"
            ),
        ),
        other => crate::error::from_object_store(repo, Some(path), other),
    }
}

/// 412.
#[must_use]
pub fn precondition_failed() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "precondition failed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: Option<&str>, n: Option<&str>) -> Conditions {
        Conditions {
            if_match: m.map(str::to_owned),
            if_none_match: n.map(str::to_owned),
        }
    }

    #[test]
    fn put_conditions() {
        assert_eq!(
            PutCondition::from_conditions(&c(None, None)).ok(),
            Some(PutCondition::None)
        );
        assert_eq!(
            PutCondition::from_conditions(&c(None, Some("*"))).ok(),
            Some(PutCondition::Create)
        );
        assert_eq!(
            PutCondition::from_conditions(&c(Some("\"e1\""), None)).ok(),
            Some(PutCondition::Update("\"e1\"".into()))
        );
        assert_eq!(
            PutCondition::from_conditions(&c(Some("*"), None)).ok(),
            Some(PutCondition::UpdateAny)
        );
        for bad in [
            c(Some("a"), Some("*")),
            c(None, Some("\"e1\"")),
            c(Some("a, b"), None),
        ] {
            let e = PutCondition::from_conditions(&bad).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
