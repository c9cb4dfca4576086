//! The HTTP transport: requests with timeouts, bounded retries with backoff on 429 and 5xx, a
//! capped zeroizing answer buffer, and zeroizing request bodies.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use encrypt_repo_keys::{Error, Result};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use url::Url;
use zeroize::Zeroizing;

use crate::TYPE;

/// Largest answer read: Cloud KMS answers to the calls used are well under 4 KiB.
pub(crate) const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Timeouts and retry policy of every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuning {
    /// Limit for one attempt, from connecting to the last byte of the answer.
    pub(crate) timeout: Duration,
    /// Limit for connecting.
    pub(crate) connect_timeout: Duration,
    /// Attempts per call, the first one included.
    pub(crate) max_attempts: u32,
    /// Backoff before the first retry; doubled for each further one, with jitter.
    pub(crate) backoff: Duration,
    /// Largest backoff.
    pub(crate) max_backoff: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub(crate) total: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_attempts: crate::MAX_ATTEMPTS,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            total: Duration::from_secs(60),
        }
    }
}

/// An answer that arrived whole: its status and its body (which may hold a data key).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Zeroizing<Vec<u8>>,
    /// Attempts it took (more than one after retryable failures).
    pub(crate) attempts: u32,
}

/// One request, re-sendable on retry (`Bytes` clones share the zeroizing buffer).
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

/// The reqwest client with this crate's policy.
pub(crate) struct Http {
    client: reqwest::Client,
    pub(crate) tuning: Tuning,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// Whether an answer with this status is worth another attempt.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

impl Http {
    pub(crate) async fn new(ca_file: Option<&Path>, tuning: Tuning) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout.min(tuning.timeout))
            .timeout(tuning.timeout)
            .user_agent(concat!("encrypt-repo/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the bearer token wherever the answer points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = tokio::fs::read(path).await.map_err(|source| Error::Io {
                what: format!("reading the Cloud KMS CA file {}", path.display()),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Setting {
                    provider: TYPE.into(),
                    setting: crate::settings::CA_FILE.into(),
                    problem: format!("{} is not a PEM certificate bundle: {e}", path.display()),
                })?;
            if certs.is_empty() {
                return Err(Error::Setting {
                    provider: TYPE.into(),
                    setting: crate::settings::CA_FILE.into(),
                    problem: format!("{} holds no PEM certificate", path.display()),
                });
            }
            // Added to the platform's roots, not instead of them.
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| Error::Provider {
            provider: TYPE.into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { client, tuning })
    }

    /// Sends `request`, retrying transport failures, 429 and 5xx answers with backoff, at most
    /// [`Tuning::max_attempts`] attempts and no retry after [`Tuning::total`]. Every other status
    /// is returned as an [`Answer`]; the last retryable answer too, once attempts run out.
    /// `what` names the call for messages.
    pub(crate) async fn send(&self, what: &str, request: &Request) -> Result<Answer> {
        let attempts = self.tuning.max_attempts.max(1);
        let start = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let outcome = self.once(request).await;
            let retry = match &outcome {
                Ok(a) => retryable(a.status),
                Err(_) => true,
            };
            let backoff = self.backoff(attempt);
            let out_of_time = start.elapsed() + backoff >= self.tuning.total;
            if !retry || attempt >= attempts || out_of_time {
                return outcome
                    .map(|a| Answer {
                        attempts: attempt,
                        ..a
                    })
                    .map_err(|e| Error::Provider {
                        provider: TYPE.into(),
                        message: format!("{what}: {e} (after {attempt} attempts)"),
                    });
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// Backoff before attempt `attempt + 1`: base · 2^(attempt-1), capped, half of it jittered.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .tuning
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.tuning.max_backoff);
        let mut r = [0u8; 2];
        let jitter = if aws_lc_rs::rand::fill(&mut r).is_ok() {
            f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX)
        } else {
            0.5
        };
        exp / 2 + exp.mul_f64(jitter / 2.0)
    }

    async fn once(&self, request: &Request) -> std::result::Result<Answer, String> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = builder.send().await.map_err(describe)?;
        let status = response.status();
        let body = read_capped(response).await?;
        Ok(Answer {
            status,
            body,
            attempts: 1,
        })
    }
}

/// reqwest's message plus its sources (the useful part, "connection refused", is in a source).
fn describe(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut s = if timed_out {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// Reads the body into a zeroizing buffer, at most [`MAX_RESPONSE_LEN`] bytes. The buffer grows by
/// copying into a new zeroizing buffer, so no copy of a data key is freed without being wiped.
async fn read_capped(
    mut response: reqwest::Response,
) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let too_large = || format!("answer larger than {MAX_RESPONSE_LEN} bytes; not read");
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_RESPONSE_LEN as u64 {
        return Err(too_large());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(
        usize::try_from(announced).unwrap_or(0).max(4096),
    ));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", describe(e)))?
    {
        let needed = out.len() + chunk.len();
        if needed > MAX_RESPONSE_LEN {
            return Err(too_large());
        }
        if needed > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(out.capacity() * 2)));
            bigger.extend_from_slice(&out);
            out = bigger;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A JSON request body in a zeroizing buffer that stays owned until the HTTP stack drops it.
pub(crate) fn json_body(value: &impl serde::Serialize) -> Result<Bytes> {
    // Large enough that serialising a wrap request never reallocates.
    encrypt_repo_keys::wire::zeroizing_json(TYPE, value, 2048)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_throttling_and_server_errors() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 501] {
            assert!(!retryable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
    }

    #[tokio::test]
    async fn backoff_doubles_and_is_capped() {
        let http = Http::new(None, Tuning::default()).await.expect("client");
        for attempt in 1..=10 {
            let d = http.backoff(attempt);
            let exp =
                (Duration::from_millis(500) * (1 << (attempt - 1))).min(Duration::from_secs(8));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }
}
