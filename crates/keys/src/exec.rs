//! The `exec` provider: every key operation is handed to an external program that speaks the
//! small JSON protocol in `EXEC-PROTOCOL.md` (one request on stdin, one response on stdout, one
//! process per request), so any KMS can be plugged in without recompiling encrypt-repo — in the
//! spirit of age plugins and git credential helpers.
//!
//! Settings: `command` (access: path of the program), `args` (access: JSON array of strings; no
//! secrets, they are visible in `ps`), `timeout_ms` (access: default 30000), `key_id` (identity:
//! passed to the program in every request).
//!
//! The program is untrusted input as far as robustness goes: it may hang, never read its stdin,
//! write megabytes, print garbage or a key of the wrong length. Each of those is a clear error
//! naming the command and the operation, within the timeout, and never shows key material.

use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_format::DataKey;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};
use crate::provider::{
    GeneratedKey, KeyProvider, KeyStatus, RotationInfo, Settings, WrapContext, WrappedKey,
};
use crate::registry::ProviderFactory;

/// Provider type name.
pub const TYPE: &str = "exec";
/// The protocol version sent in every request.
pub const PROTOCOL_VERSION: u32 = 1;
/// How long one invocation may run when `timeout_ms` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted `timeout_ms` (one hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most bytes read from the program's stdout; a program writing more is killed.
pub const MAX_STDOUT: usize = 64 * 1024;
/// Most bytes of the program's stderr kept (the rest is read and discarded).
pub const MAX_STDERR: usize = 4 * 1024;
/// Longest `master_key` string accepted from the program.
const MAX_MASTER_KEY: usize = 1024;
/// Most characters of a program's stderr line or error message shown in an error.
const MAX_SHOWN: usize = 200;
/// A run of this many base64/hex characters in a line may be a key: the line is withheld.
const KEYLIKE_RUN: usize = 40;
/// How long to wait for a killed program to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The four protocol operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Generate,
    Wrap,
    Unwrap,
    Status,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Wrap => "wrap",
            Self::Unwrap => "unwrap",
            Self::Status => "status",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `exec` provider's settings, parsed. None of them is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program (a path, or a name looked up in `PATH`).
    pub command: PathBuf,
    /// Its arguments. Never secrets: they are visible to every user of the machine.
    pub args: Vec<String>,
    /// The master key's identity, passed to the program in every request.
    pub key_id: String,
    /// Wall-clock limit for one invocation.
    pub timeout: Duration,
}

impl ExecConfig {
    /// Parses `command`, `args`, `key_id` and `timeout_ms`.
    ///
    /// # Errors
    /// [`Error::Setting`] for a missing or invalid setting (the value is not echoed).
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let bad = |setting: &str, problem: &str| Error::Setting {
            provider: TYPE.into(),
            setting: setting.into(),
            problem: problem.into(),
        };
        let command = settings
            .get("command")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("command", "is required (path of the key-provider program)"))?;
        let args = match settings.get("args") {
            None => Vec::new(),
            Some(a) => serde_json::from_str::<Vec<String>>(a).map_err(|_| {
                bad(
                    "args",
                    "must be a JSON array of strings, e.g. [\"--region\",\"eu-west-1\"]",
                )
            })?,
        };
        let key_id = settings
            .get("key_id")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                bad(
                    "key_id",
                    "is required (the master key the program should use)",
                )
            })?;
        let timeout = match settings.get("timeout_ms") {
            None => DEFAULT_TIMEOUT,
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    bad(
                        "timeout_ms",
                        &format!(
                            "must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                        ),
                    )
                })?,
        };
        Ok(Self {
            command: command.into(),
            args,
            key_id: key_id.clone(),
            timeout,
        })
    }
}

/// A master key behind an external program.
pub struct ExecProvider {
    config: ExecConfig,
}

impl fmt::Debug for ExecProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecProvider")
            .field("command", &self.config.command)
            .field("args", &self.config.args)
            .field("key_id", &self.config.key_id)
            .field("timeout", &self.config.timeout)
            .finish()
    }
}

impl fmt::Display for ExecProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exec key provider (key {}, command {})",
            self.config.key_id,
            self.config.command.display()
        )
    }
}

impl ExecProvider {
    /// A provider running `config.command`. Does not check the command: see
    /// [`ExecProvider::check_command`].
    #[must_use]
    pub fn new(config: ExecConfig) -> Self {
        Self { config }
    }

    /// The settings this provider runs with.
    #[must_use]
    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// Checks that the command exists and is an executable file (looking it up in `PATH` if it
    /// is a bare name), so a typo is reported when the repository is opened.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the command.
    pub fn check_command(&self) -> Result<()> {
        let cmd = &self.config.command;
        let bad = |problem: String| Error::Setting {
            provider: TYPE.into(),
            setting: "command".into(),
            problem,
        };
        if cmd.components().count() > 1 {
            return match std::fs::metadata(cmd) {
                Err(e) => Err(bad(format!("{}: {e}", cmd.display()))),
                Ok(m) if !m.is_file() => Err(bad(format!("{} is not a file", cmd.display()))),
                Ok(m) if !is_executable(&m) => Err(bad(format!(
                    "{} is not executable (chmod +x it)",
                    cmd.display()
                ))),
                Ok(_) => Ok(()),
            };
        }
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(cmd)).is_ok_and(|m| m.is_file() && is_executable(&m))
            })
        });
        if found {
            Ok(())
        } else {
            Err(bad(format!(
                "{}: no executable of that name in PATH",
                cmd.display()
            )))
        }
    }

    fn command_name(&self) -> std::path::Display<'_> {
        self.config.command.display()
    }

    /// A transient failure of one invocation, naming the command and the operation; with the
    /// first line of stderr when there is one (redacted, see [`shown`]).
    fn fail(&self, op: Op, problem: impl fmt::Display, stderr: &[u8]) -> Error {
        let mut message = format!("command {} ({op}): {problem}", self.command_name());
        if let Some(line) = shown(stderr) {
            message.push_str("; stderr: ");
            message.push_str(&line);
        }
        Error::Provider {
            provider: TYPE.into(),
            message,
        }
    }

    /// Serializes a request into a zeroizing buffer large enough never to reallocate (a
    /// reallocation would leave an unzeroized copy of a wrap request's plaintext behind).
    fn request(
        &self,
        op: Op,
        ctx: Option<&WrapContext>,
        plaintext: Option<&str>,
        wrapped: Option<&WrappedKey>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ciphertext = wrapped.map(|w| b64_encode(&w.ciphertext));
        let req = Request {
            protocol: PROTOCOL_VERSION,
            op: op.as_str(),
            key_id: &self.config.key_id,
            context: ctx.map(|c| WireContext {
                repository_id: c.repository_id.to_hex(),
                data_key_id: c.data_key_id.to_hex(),
            }),
            plaintext,
            ciphertext: ciphertext.as_deref().map(String::as_str),
            master_key: wrapped.map(|w| w.master_key.as_str()),
        };
        // JSON escaping at most sextuples a character (\u00XX); base64 needs no escaping.
        let capacity = 256
            + 6 * (self.config.key_id.len() + wrapped.map_or(0, |w| w.master_key.len()))
            + plaintext.map_or(0, str::len)
            + ciphertext.as_ref().map_or(0, |c| c.len());
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        serde_json::to_writer(&mut *out, &req).map_err(|e| Error::Provider {
            provider: TYPE.into(),
            message: format!("could not encode the {op} request: {e}"),
        })?;
        Ok(out)
    }

    /// Runs the program once: writes `request`, reads the response, maps error responses.
    async fn call(
        &self,
        op: Op,
        request: &[u8],
        ctx: Option<&WrapContext>,
    ) -> Result<(WireResponse, Vec<u8>)> {
        let mut child = tokio::process::Command::new(&self.config.command)
            .args(&self.config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!(
                    "key provider {TYPE}: starting command {} ({op})",
                    self.command_name()
                ),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.fail(op, "standard streams were not captured", &[]));
        };
        // stderr lives outside the exchange so what was read survives a timeout or overflow.
        let mut err_buf = Vec::with_capacity(MAX_STDERR);
        // Writing, reading stdout and reading stderr run concurrently: a program that never
        // reads its stdin, or fills a pipe before reading, cannot deadlock us.
        let exchange = async {
            let ((), out, ()) = tokio::try_join!(
                write_request(stdin, request),
                read_stdout(stdout),
                drain_stderr(stderr, &mut err_buf),
            )?;
            let status = child.wait().await.map_err(Failure::Io)?;
            Ok::<_, Failure>((out, status))
        };
        let outcome = tokio::time::timeout(self.config.timeout, exchange).await;
        let (out, status) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(failure)) => {
                kill(&mut child).await;
                let problem = match failure {
                    Failure::Overflow => {
                        format!("wrote more than {MAX_STDOUT} bytes on stdout; killed it")
                    }
                    Failure::Io(e) => format!("talking to the program failed: {e}"),
                };
                return Err(self.fail(op, problem, &err_buf));
            }
            Err(_elapsed) => {
                kill(&mut child).await;
                let problem = format!(
                    "timed out after {} ms; killed it",
                    self.config.timeout.as_millis()
                );
                return Err(self.fail(op, problem, &err_buf));
            }
        };
        if !status.success() {
            return Err(self.fail(op, exit_problem(status), &err_buf));
        }
        let resp = self.parse(op, &out, &err_buf)?;
        match resp {
            Parsed::Response(r) => Ok((r, err_buf)),
            Parsed::Error(e) => Err(self.error_response(op, &e, ctx)),
        }
    }

    fn parse(&self, op: Op, out: &[u8], stderr: &[u8]) -> Result<Parsed> {
        if out.iter().all(u8::is_ascii_whitespace) {
            return Err(self.fail(op, "wrote no response on stdout", stderr));
        }
        // The serde message is not shown: it may quote stdout, and stdout may hold a key.
        let mut resp: WireResponse = serde_json::from_slice(out).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "a response of the wrong shape",
                _ => "malformed JSON",
            };
            self.fail(
                op,
                format!(
                    "wrote {what} on stdout (at line {} column {})",
                    e.line(),
                    e.column()
                ),
                stderr,
            )
        })?;
        Ok(match resp.error.take() {
            Some(e) => Parsed::Error(e),
            None => Parsed::Response(resp),
        })
    }

    /// Maps a well-formed error response (stderr is not shown: the program answered).
    fn error_response(&self, op: Op, e: &WireError, ctx: Option<&WrapContext>) -> Error {
        let reason = shown(e.message.as_bytes()).unwrap_or_else(|| "no reason given".into());
        match (e.kind.as_str(), op, ctx) {
            ("key_unavailable", ..) => Error::KeyUnavailable {
                provider: TYPE.into(),
                key: self.config.key_id.clone(),
                reason,
            },
            ("unwrap_failed", Op::Unwrap, Some(ctx)) => Error::UnwrapFailed {
                provider: TYPE.into(),
                data_key_id: ctx.data_key_id.to_hex(),
            },
            ("key_version_retired", Op::Unwrap, _) => Error::KeyVersionRetired {
                provider: TYPE.into(),
                key: self.config.key_id.clone(),
                reason,
            },
            (kind, ..) => {
                let kind = shown(kind.as_bytes()).unwrap_or_else(|| "other".into());
                self.fail(
                    op,
                    format!("the program reported an error ({kind}): {reason}"),
                    &[],
                )
            }
        }
    }

    fn required(&self, op: Op, v: Option<String>, name: &str, stderr: &[u8]) -> Result<String> {
        v.ok_or_else(|| self.fail(op, format!("response lacks \"{name}\""), stderr))
    }

    fn plaintext(&self, op: Op, resp: &mut WireResponse, stderr: &[u8]) -> Result<DataKey> {
        let b64 = Zeroizing::new(self.required(op, resp.plaintext.take(), "plaintext", stderr)?);
        let bytes = b64_decode(&b64)
            .ok_or_else(|| self.fail(op, "\"plaintext\" is not valid base64", stderr))?;
        if bytes.len() != encrypt_repo_format::DATA_KEY_LEN {
            return Err(self.fail(
                op,
                format!(
                    "returned a {}-byte plaintext; data keys are {} bytes",
                    bytes.len(),
                    encrypt_repo_format::DATA_KEY_LEN
                ),
                stderr,
            ));
        }
        Ok(DataKey::try_from_slice(&bytes)?)
    }

    fn wrapped(&self, op: Op, resp: &mut WireResponse, stderr: &[u8]) -> Result<WrappedKey> {
        let ct = self.required(op, resp.ciphertext.take(), "ciphertext", stderr)?;
        let ciphertext = b64_decode(&ct)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| self.fail(op, "\"ciphertext\" is empty or not base64", stderr))?;
        let master_key = self.required(op, resp.master_key.take(), "master_key", stderr)?;
        if master_key.is_empty() || master_key.len() > MAX_MASTER_KEY {
            return Err(self.fail(
                op,
                format!("\"master_key\" must be 1 to {MAX_MASTER_KEY} bytes"),
                stderr,
            ));
        }
        Ok(WrappedKey {
            provider: TYPE.into(),
            master_key,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

#[async_trait::async_trait]
impl KeyProvider for ExecProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.config.key_id.clone()
    }

    async fn generate_data_key(&self, ctx: &WrapContext) -> Result<GeneratedKey> {
        let req = self.request(Op::Generate, Some(ctx), None, None)?;
        let (mut resp, stderr) = self.call(Op::Generate, &req, Some(ctx)).await?;
        let plaintext = self.plaintext(Op::Generate, &mut resp, &stderr)?;
        let wrapped = self.wrapped(Op::Generate, &mut resp, &stderr)?;
        Ok(GeneratedKey { plaintext, wrapped })
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        let b64 = b64_encode(key.expose_secret());
        let req = self.request(Op::Wrap, Some(ctx), Some(&b64), None)?;
        drop(b64);
        let (mut resp, stderr) = self.call(Op::Wrap, &req, Some(ctx)).await?;
        drop(req);
        self.wrapped(Op::Wrap, &mut resp, &stderr)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        if wrapped.provider != TYPE {
            return Err(Error::ForeignWrappedKey {
                found: wrapped.provider.clone(),
                expected: TYPE.into(),
            });
        }
        if wrapped.ciphertext.is_empty() {
            return Err(Error::UnwrapFailed {
                provider: TYPE.into(),
                data_key_id: ctx.data_key_id.to_hex(),
            });
        }
        let req = self.request(Op::Unwrap, Some(ctx), None, Some(wrapped))?;
        let (mut resp, stderr) = self.call(Op::Unwrap, &req, Some(ctx)).await?;
        self.plaintext(Op::Unwrap, &mut resp, &stderr)
    }

    async fn status(&self) -> Result<KeyStatus> {
        let req = self.request(Op::Status, None, None, None)?;
        let (mut resp, stderr) = self.call(Op::Status, &req, None).await?;
        let state = self.required(Op::Status, resp.state.take(), "state", &stderr)?;
        Ok(match state.as_str() {
            "usable" => KeyStatus::Usable {
                rotation: resp.rotation.take().map(|r| RotationInfo {
                    automatic: r.automatic,
                    current_version: r.current_version,
                    last_rotated: r.last_rotated,
                }),
            },
            "disabled" => KeyStatus::Disabled,
            "revoked" => KeyStatus::Revoked,
            "access_denied" => KeyStatus::AccessDenied,
            "not_found" => KeyStatus::NotFound,
            other => {
                let other = shown(other.as_bytes()).unwrap_or_default();
                return Err(self.fail(
                    Op::Status,
                    format!(
                        "unknown state {other:?} (expected usable, disabled, revoked, access_denied or not_found)"
                    ),
                    &stderr,
                ));
            }
        })
    }
}

/// Builds [`ExecProvider`]s from settings.
#[derive(Debug, Default)]
pub struct ExecFactory;

#[async_trait::async_trait]
impl ProviderFactory for ExecFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn known_settings(&self) -> Option<&'static [&'static str]> {
        Some(&["command", "args", "key_id", "timeout_ms"])
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &["key_id"]
    }

    fn key_name_settings(&self) -> &'static [&'static str] {
        &["key_id"]
    }

    /// Validates the settings and asks the program for the key's status: a key that is not
    /// usable is refused at registration.
    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        let provider = ExecProvider::new(ExecConfig::from_settings(settings)?);
        provider.check_command()?;
        match provider.status().await? {
            KeyStatus::Usable { .. } => Ok(false),
            status => Err(Error::KeyUnavailable {
                provider: TYPE.into(),
                key: provider.config.key_id.clone(),
                reason: format!("the program reports {status:?} at registration"),
            }),
        }
    }

    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        let provider = ExecProvider::new(ExecConfig::from_settings(settings)?);
        provider.check_command()?;
        Ok(Arc::new(provider))
    }
}

// ---- wire types ----

#[derive(Serialize)]
struct Request<'a> {
    protocol: u32,
    op: &'static str,
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<WireContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_key: Option<&'a str>,
}

#[derive(Serialize)]
struct WireContext {
    repository_id: String,
    data_key_id: String,
}

/// Every member any response may have; unknown members are ignored. Zeroizes the plaintext on
/// drop, whatever path the response takes.
#[derive(Deserialize)]
struct WireResponse {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    master_key: Option<String>,
    state: Option<String>,
    rotation: Option<WireRotation>,
    error: Option<WireError>,
}

impl Drop for WireResponse {
    fn drop(&mut self) {
        if let Some(p) = &mut self.plaintext {
            p.zeroize();
        }
    }
}

#[derive(Deserialize)]
struct WireRotation {
    automatic: Option<bool>,
    current_version: Option<u64>,
    last_rotated: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    message: String,
}

enum Parsed {
    Response(WireResponse),
    Error(WireError),
}

// ---- process plumbing ----

enum Failure {
    Io(std::io::Error),
    Overflow,
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Writes the request and closes stdin. A program that exits without reading it is not an
/// error here (its answer, or its exit status, says what happened).
async fn write_request(
    mut stdin: tokio::process::ChildStdin,
    request: &[u8],
) -> Result<(), Failure> {
    let written = async {
        stdin.write_all(request).await?;
        stdin.shutdown().await
    };
    match written.await {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Io(e)),
        _ => Ok(()),
    }
}

/// Reads stdout into a zeroizing buffer allocated once (it may hold a plaintext key, and a
/// growing `Vec` would leave copies behind); more than [`MAX_STDOUT`] bytes is an overflow.
async fn read_stdout(
    mut stdout: tokio::process::ChildStdout,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_STDOUT + 1]);
    let mut len = 0;
    loop {
        let n = stdout.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if len > MAX_STDOUT {
            return Err(Failure::Overflow);
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Keeps the first [`MAX_STDERR`] bytes of stderr in `kept` and discards the rest, reading to
/// the end so a chatty program never blocks on a full pipe.
async fn drain_stderr(
    mut stderr: impl AsyncRead + Unpin,
    kept: &mut Vec<u8>,
) -> Result<(), Failure> {
    let mut chunk = [0u8; 4096];
    loop {
        let n = stderr.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let room = MAX_STDERR.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// Kills the program and reaps it (bounded), so no zombie or runaway process is left.
async fn kill(child: &mut tokio::process::Child) {
    // An error means it has already exited; kill_on_drop stays as a last resort.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
}

fn exit_problem(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => format!("exited with {status}"),
    }
}

/// What may be shown of a program's stderr or error message: the first non-empty line, at most
/// [`MAX_SHOWN`] characters, control characters replaced — or a placeholder if the line holds a
/// run of base64/hex characters long enough to be a key.
fn shown(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    if looks_like_key_material(line) {
        return Some("<withheld: may contain key material>".into());
    }
    let mut out: String = line
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if line.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    Some(out)
}

fn looks_like_key_material(line: &str) -> bool {
    let mut run = 0;
    for b in line.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_') {
            run += 1;
            if run >= KEYLIKE_RUN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

// ---- base64 (RFC 4648 §4, standard alphabet, padded) ----

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes into a zeroizing string allocated at its exact final size.
fn b64_encode(data: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(data.len().div_ceil(3) * 4));
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let mut n = (b(0) << 16) | (b(1) << 8) | b(2);
        let sym = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
        n.zeroize();
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes canonical padded base64 into a zeroizing buffer allocated at its exact final size.
/// `None` for anything else (wrong length, stray characters, non-zero trailing bits).
fn b64_decode(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &s[..s.len() - pad];
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() * 3 / 4));
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        acc = ((acc << 6) | b64_value(c)?) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    let canonical = acc & ((1 << bits) - 1) == 0;
    acc.zeroize();
    canonical.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(*b64_encode(plain.as_bytes()), enc);
            assert_eq!(
                b64_decode(enc).as_deref().map(Vec::as_slice),
                Some(plain.as_bytes())
            );
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(b64_decode(&b64_encode(&all)).as_deref(), Some(&all));
    }

    #[test]
    fn base64_rejects_non_canonical_input() {
        for bad in [
            "Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zm 9v", "Zm9v\n", "Z=g=", "Zm9v====", "é===",
        ] {
            assert!(b64_decode(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn shown_redacts_and_bounds() {
        assert_eq!(shown(b"\n  first line\nsecond"), Some("first line".into()));
        assert_eq!(shown(b"a\x1bb"), Some("a?b".into()));
        assert_eq!(shown(b"   \n"), None);
        let key = b"key=q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=";
        assert_eq!(
            shown(key),
            Some("<withheld: may contain key material>".into())
        );
        let hex = "ab".repeat(32);
        assert!(shown(hex.as_bytes()).is_some_and(|s| s.contains("withheld")));
        let long = "word ".repeat(100);
        let s = shown(long.as_bytes()).unwrap_or_default();
        assert!(
            s.chars().count() <= MAX_SHOWN + 1 && s.ends_with('…'),
            "{s}"
        );
        assert!(!looks_like_key_material(
            "/usr/local/bin/my-kms-plugin: permission denied"
        ));
    }
}
