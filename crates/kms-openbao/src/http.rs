//! The HTTP transport: one request to the OpenBao / Vault API, with a timeout, a capped and
//! zeroizing answer buffer, and the token re-read once when the server refuses it.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use encrypt_repo_keys::{Error, Result, SecretSource};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use zeroize::Zeroizing;

use crate::{MAX_RESPONSE_LEN, TYPE};

/// An answer that arrived whole: its status and its body (which may hold a data key).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// The server's `errors` list joined, cleaned and shortened; never the body itself when it
    /// is not the expected JSON (it could echo anything).
    pub(crate) fn error_message(&self, token: &str) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        match serde_json::from_slice::<Errors>(&self.body) {
            Ok(e) if !e.errors.is_empty() => sanitize(&e.errors.join("; "), token),
            Ok(_) => "no error message".into(),
            Err(_) => format!(
                "an answer that is not OpenBao's JSON ({} bytes)",
                self.body.len()
            ),
        }
    }
}

/// Keeps a server-supplied message printable, short, and free of the token.
fn sanitize(message: &str, token: &str) -> String {
    encrypt_repo_keys::wire::sanitize(message, &[token])
}

/// A client for one OpenBao server with one token.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The server's base address, without a trailing slash.
    pub(crate) address: String,
    namespace: Option<HeaderValue>,
    token: RwLock<Zeroizing<String>>,
    token_source: SecretSource,
}

impl Client {
    pub(crate) async fn new(
        address: String,
        namespace: Option<String>,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
        token_source: SecretSource,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("encrypt-repo/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the token to wherever the answer points: point `address`
            // at the active node or a load balancer instead.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = tokio::fs::read(path).await.map_err(|source| Error::Io {
                what: format!("reading OpenBao CA file {}", path.display()),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Setting {
                    provider: TYPE.into(),
                    setting: "ca_file".into(),
                    problem: format!("{} is not a PEM certificate bundle: {e}", path.display()),
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| Error::Provider {
            provider: TYPE.into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        let namespace = namespace
            .map(|n| {
                HeaderValue::from_str(&n).map_err(|_| Error::Setting {
                    provider: TYPE.into(),
                    setting: "namespace".into(),
                    problem: "contains characters that cannot be sent in an HTTP header".into(),
                })
            })
            .transpose()?;
        let token = read_token(&token_source).await?;
        Ok(Self {
            http,
            address,
            namespace,
            token: RwLock::new(token),
            token_source,
        })
    }

    /// Where the token comes from, for `Debug` (never the token).
    pub(crate) fn token_source(&self) -> String {
        match &self.token_source {
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Command(_) => "a command".into(),
        }
    }

    /// The current token, for scrubbing it out of server messages.
    pub(crate) fn token(&self) -> Zeroizing<String> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends one request to `/v1/{path}`. A 403 makes it read the token source again (the token
    /// may have been replaced in its file) and, if the token changed, retry once.
    ///
    /// Only transport failures are errors here; every HTTP status is an [`Answer`].
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        let answer = self.send(method.clone(), path, body.clone()).await?;
        if answer.status != StatusCode::FORBIDDEN {
            return Ok(answer);
        }
        let Ok(fresh) = read_token(&self.token_source).await else {
            return Ok(answer);
        };
        if *fresh == **self.token.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(answer);
        }
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        self.send(method, path, body).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Answer> {
        let url =
            Url::parse(&format!("{}/v1/{path}", self.address)).map_err(|e| Error::Setting {
                provider: TYPE.into(),
                setting: "address".into(),
                problem: format!("does not make a valid URL with /v1/{path}: {e}"),
            })?;
        let mut headers = HeaderMap::new();
        {
            let token = self.token.read().unwrap_or_else(PoisonError::into_inner);
            // Checked to be visible ASCII when read, so this cannot fail; a failure is reported
            // without the value all the same.
            let mut value = HeaderValue::from_str(&token).map_err(|_| Error::Setting {
                provider: TYPE.into(),
                setting: "token".into(),
                problem: "cannot be sent in an HTTP header".into(),
            })?;
            value.set_sensitive(true);
            headers.insert("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            headers.insert("X-Vault-Namespace", ns.clone());
        }
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let transport = |what: &str, e: reqwest::Error| Error::Provider {
            provider: TYPE.into(),
            message: format!("{what} {}/v1/{path}: {}", self.address, describe(e)),
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport("request to", e))?;
        let status = response.status();
        let body = read_capped(response).await.map_err(|e| match e {
            ReadError::TooLarge => Error::Provider {
                provider: TYPE.into(),
                message: format!(
                    "answer from {}/v1/{path} is larger than {MAX_RESPONSE_LEN} bytes; not read",
                    self.address
                ),
            },
            ReadError::Http(e) => transport("reading the answer from", e),
        })?;
        Ok(Answer { status, body })
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
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads the body into a zeroizing buffer, at most [`MAX_RESPONSE_LEN`] bytes. The buffer grows by
/// copying into a new zeroizing buffer, so no copy of a data key is freed without being wiped.
async fn read_capped(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_RESPONSE_LEN as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(
        usize::try_from(announced).unwrap_or(0).max(4096),
    ));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        let needed = out.len() + chunk.len();
        if needed > MAX_RESPONSE_LEN {
            return Err(ReadError::TooLarge);
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

/// Reads the token; it must be visible ASCII (it goes into an HTTP header).
async fn read_token(source: &SecretSource) -> Result<Zeroizing<String>> {
    let mut raw = source.read(TYPE).await?;
    if !raw.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Setting {
            provider: TYPE.into(),
            setting: "token_env|token_file|token_command".into(),
            problem: "yields a token with characters that cannot be sent in an HTTP header".into(),
        });
    }
    let bytes = std::mem::take(&mut *raw);
    // All ASCII, checked above: from_utf8 cannot fail and keeps the same buffer.
    String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        Error::Setting {
            provider: TYPE.into(),
            setting: "token_env|token_file|token_command".into(),
            problem: "yields a token that is not UTF-8".into(),
        }
    })
}

/// A JSON request body in a zeroizing buffer that stays owned until the HTTP stack drops it.
pub(crate) fn json_body(value: &impl serde::Serialize) -> Result<Bytes> {
    encrypt_repo_keys::wire::zeroizing_json(TYPE, value, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_removes_token_controls_and_length() {
        let s = sanitize("bad token s.abc\n\u{7}here", "s.abc");
        assert_eq!(s, "bad token <redacted>here");
        let long = "é".repeat(400);
        let s = sanitize(&long, "");
        assert!(s.len() <= 304 && s.ends_with('…'));
    }

    #[test]
    fn error_message_never_echoes_a_non_json_body() {
        let a = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Zeroizing::new(b"<html>secret-token</html>".to_vec()),
        };
        let m = a.error_message("secret-token");
        assert!(
            !m.contains("secret") && m.contains("not OpenBao's JSON"),
            "{m}"
        );
    }
}
