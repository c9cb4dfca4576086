//! The HTTP transport shared by the Key Vault and the token calls: a timeout on every attempt,
//! bounded retries with backoff on 429 and 5xx, capped zeroizing answer buffers, and request
//! bodies owned by zeroizing buffers.

use std::time::Duration;

use bytes::Bytes;
use encrypt_repo_keys::{Error, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use zeroize::Zeroizing;

use crate::TYPE;
use crate::settings::{CA_FILE, bad};

/// Largest answer read (1 MiB); a larger one is an error.
pub const MAX_RESPONSE_LEN: usize = 1 << 20;
/// Attempts per call: the first plus up to three retries on 429, 5xx or a refused connection.
pub const MAX_ATTEMPTS: u32 = 4;
/// Longest wait between attempts, whatever `Retry-After` says.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Timeouts and retry pacing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpOptions {
    pub(crate) timeout: Duration,
    pub(crate) retry_delay: Duration,
}

/// One answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
    /// How many attempts it took (for messages).
    pub(crate) attempts: u32,
}

/// One request; cloned for each attempt (the body is reference counted, not copied).
#[derive(Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<(&'static str, Bytes)>,
    /// What the call is, for messages ("wrapkey on https://…/keys/k").
    pub(crate) what: String,
    /// Whether a refused connection is retried (not for IMDS: off Azure nothing is there).
    pub(crate) retry_connect: bool,
}

impl Request {
    pub(crate) fn new(method: Method, url: String, what: String) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            what,
            retry_connect: true,
        }
    }

    /// Adds a header; sensitive ones are marked so (hyper then keeps them out of its `Debug`).
    pub(crate) fn header(
        mut self,
        name: &'static str,
        value: &str,
        sensitive: bool,
    ) -> Result<Self> {
        let mut v = HeaderValue::from_str(value).map_err(|_| Error::Provider {
            provider: TYPE.into(),
            message: format!("{}: a {name} header value cannot be sent", self.what),
        })?;
        v.set_sensitive(sensitive);
        self.headers.insert(HeaderName::from_static(name), v);
        Ok(self)
    }

    pub(crate) fn body(mut self, content_type: &'static str, body: Bytes) -> Self {
        self.body = Some((content_type, body));
        self
    }
}

/// An HTTPS client with the optional extra CA.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    options: HttpOptions,
}

impl Http {
    pub(crate) async fn new(
        ca_file: Option<&std::path::Path>,
        options: HttpOptions,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .timeout(options.timeout)
            .user_agent(concat!("encrypt-repo/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry a bearer token or a client secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never());
        if let Some(path) = ca_file {
            let pem = tokio::fs::read(path).await.map_err(|source| Error::Io {
                what: format!("reading the {CA_FILE} {}", path.display()),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    bad(
                        CA_FILE,
                        format!("{} is not a PEM certificate bundle", path.display()),
                    )
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| Error::Provider {
            provider: TYPE.into(),
            message: format!("cannot build the HTTP client: {}", describe(e)),
        })?;
        Ok(Self { client, options })
    }

    /// Sends `request`, retrying 429, 5xx and refused connections with exponential backoff (or
    /// the answer's `Retry-After`, at most 10 s) up to [`MAX_ATTEMPTS`]. A timeout is not
    /// retried: the server took the whole allowance once already. Every HTTP status is an
    /// [`Answer`]; only transport failures are errors.
    pub(crate) async fn send(&self, request: &Request) -> Result<Answer> {
        let mut attempt = 1;
        loop {
            let result = self.once(request).await;
            let retry_after = match &result {
                Ok(a) if retryable(a.status) => Some(retry_after(&a.headers)),
                Err(Failure::Connect(_)) if request.retry_connect => Some(None),
                _ => None,
            };
            match (retry_after, attempt < MAX_ATTEMPTS) {
                (Some(after), true) => {
                    let backoff = self.options.retry_delay * 2u32.pow(attempt - 1);
                    tokio::time::sleep(after.unwrap_or(backoff).min(MAX_DELAY)).await;
                    attempt += 1;
                }
                _ => {
                    return match result {
                        Ok(mut a) => {
                            a.attempts = attempt;
                            Ok(a)
                        }
                        Err(f) => Err(Error::Provider {
                            provider: TYPE.into(),
                            message: format!(
                                "{}: {}{}",
                                request.what,
                                f.message(self.options.timeout),
                                if attempt > 1 {
                                    format!(" (after {attempt} attempts)")
                                } else {
                                    String::new()
                                }
                            ),
                        }),
                    };
                }
            }
        }
    }

    async fn once(&self, request: &Request) -> std::result::Result<Answer, Failure> {
        let mut r = self
            .client
            .request(request.method.clone(), &request.url)
            .headers(request.headers.clone());
        if let Some((content_type, body)) = &request.body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let response = r.send().await.map_err(Failure::from_send)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response).await?;
        Ok(Answer {
            status,
            headers,
            body,
            attempts: 1,
        })
    }
}

fn retryable(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

enum Failure {
    Connect(String),
    Timeout,
    Other(String),
    TooLarge,
}

impl Failure {
    fn from_send(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect(describe(e))
        } else {
            Self::Other(describe(e))
        }
    }

    fn message(&self, timeout: Duration) -> String {
        match self {
            Self::Connect(m) => format!("cannot connect: {m}"),
            Self::Timeout => format!("no complete answer within {timeout:?} (timed out)"),
            Self::Other(m) => m.clone(),
            Self::TooLarge => {
                format!("the answer is larger than {MAX_RESPONSE_LEN} bytes; not read")
            }
        }
    }
}

/// reqwest's message and its sources, without the URL (the caller names the call).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Reads the body into a zeroizing buffer of at most [`MAX_RESPONSE_LEN`] bytes; growing it copies
/// into a new zeroizing buffer, so no copy of an unwrapped key or a token is freed unwiped.
async fn read_capped(
    mut response: reqwest::Response,
) -> std::result::Result<Zeroizing<Vec<u8>>, Failure> {
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_RESPONSE_LEN as u64 {
        return Err(Failure::TooLarge);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(
        usize::try_from(announced).unwrap_or(0).max(4096),
    ));
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(Failure::Timeout),
            Err(e) => return Err(Failure::Other(describe(e))),
        };
        let needed = out.len() + chunk.len();
        if needed > MAX_RESPONSE_LEN {
            return Err(Failure::TooLarge);
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

/// A JSON body in a zeroizing buffer that stays owned until the HTTP stack drops it.
pub(crate) fn json_body(value: &impl serde::Serialize) -> Result<Bytes> {
    // Large enough that serialising a wrap request never reallocates.
    encrypt_repo_keys::wire::zeroizing_json(TYPE, value, 2048)
}

/// An `application/x-www-form-urlencoded` body (token requests carry a secret or an assertion).
pub(crate) fn form_body(pairs: &[(&str, &str)]) -> Bytes {
    let len: usize = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(len));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            buf.push(b'&');
        }
        percent_encode(k, &mut buf);
        buf.push(b'=');
        percent_encode(v, &mut buf);
    }
    zeroizing_bytes(buf)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

pub(crate) use encrypt_repo_keys::wire::{sanitize, zeroizing_bytes};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_percent_encoded() {
        let b = form_body(&[
            ("scope", "https://vault.azure.net/.default"),
            ("a b", "x+y&z"),
        ]);
        assert_eq!(
            &b[..],
            b"scope=https%3A%2F%2Fvault.azure.net%2F.default&a%20b=x%2By%26z"
        );
    }
}
