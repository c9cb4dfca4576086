//! Running the real `encrypt-repo` binary: a command builder that isolates the child from the
//! caller's `ENCRYPT_REPO_*` variables, its captured output, and a tempdir per test holding a
//! repository and its key file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// How to get the services the cloud and KMS tests need.
pub const START: &str = "bash tests/services.sh start && source target/services.env";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_encrypt-repo");

/// One run of the binary, not yet started.
pub struct Cmd {
    inner: Command,
    shown: Vec<String>,
    stdin: Option<Vec<u8>>,
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Out {
    /// The arguments, for messages.
    pub shown: String,
    /// The exit code.
    pub code: i32,
    /// Standard output, raw.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

/// `encrypt-repo ARGS…`.
pub fn er<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut inner = Command::new(BIN);
    // The CLI reads every flag from ENCRYPT_REPO_* too: a caller's variable must not leak in.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ENCRYPT_REPO_") && !k.starts_with("ENCRYPT_REPO_TEST_") {
            inner.env_remove(k.as_ref());
        }
    }
    // A backtrace must never reach users, even with this set.
    inner.env("RUST_BACKTRACE", "1");
    let mut cmd = Cmd {
        inner,
        shown: Vec::new(),
        stdin: None,
    };
    cmd = cmd.args(args);
    cmd
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.shown.push(a.as_ref().to_string_lossy().into_owned());
        self.inner.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.inner.env(k, v);
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// Starts the binary without waiting (stdout and stderr piped, stdin closed).
    pub fn spawn(mut self) -> std::process::Child {
        self.inner
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"))
    }

    /// Runs to the end; stdin is the bytes given or empty.
    pub fn run(mut self) -> Out {
        let mut child = self
            .inner
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = self.stdin.take().unwrap_or_default();
        // Written from a thread: the child may fill its stdout pipe before reading all of stdin.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("waiting for the binary");
        writer.join().expect("stdin writer");
        Out {
            shown: self.shown.join(" "),
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Standard output as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit code `code`; returns self for more checks.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "encrypt-repo {}\nexit {} (expected {code})\nstdout: {}\nstderr: {}",
            self.shown,
            self.code,
            self.text(),
            self.stderr
        );
        self
    }

    /// Asserts success.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.code(0)
    }

    /// Asserts a failure printed the way users should see it: one `encrypt-repo:` line chain on
    /// stderr, no panic, no backtrace.
    #[track_caller]
    pub fn clean_error(&self) -> &Self {
        assert!(
            self.stderr.starts_with("encrypt-repo: ") || self.stderr.starts_with("error: "),
            "encrypt-repo {}: stderr does not start with the program's prefix: {}",
            self.shown,
            self.stderr
        );
        for bad in [
            "panicked",
            "stack backtrace",
            "Stack backtrace",
            "RUST_BACKTRACE",
        ] {
            assert!(
                !self.stderr.contains(bad),
                "encrypt-repo {}: stderr has {bad:?}: {}",
                self.shown,
                self.stderr
            );
        }
        self
    }

    /// Stdout parsed as exactly one JSON object.
    #[track_caller]
    pub fn json(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "encrypt-repo {}: stdout is not one JSON value ({e}): {:?}\nstderr: {}",
                self.shown,
                self.text(),
                self.stderr
            )
        });
        assert!(
            v.is_object(),
            "encrypt-repo {}: not an object: {v}",
            self.shown
        );
        v
    }
}

/// A test's own directory with a repository path and a local key file in it.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::Builder::new()
                .prefix("encrypt-repo-cli-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// The repository directory, as a plain path.
    pub fn repo(&self) -> String {
        self.path("repo").display().to_string()
    }

    pub fn key(&self) -> PathBuf {
        self.path("master.key")
    }

    /// `--key-setting key_file=<this test's key>`.
    pub fn key_arg(&self) -> String {
        key_file_arg(&self.key())
    }

    /// `init` of a local repository with the local key; extra flags appended.
    pub fn init(&self, extra: &[&str]) -> Out {
        let out = er(["init", &self.repo(), "--key-provider", "local"])
            .args(["--key-setting", &self.key_arg()])
            .args(extra)
            .run();
        out.ok();
        out
    }

    /// `encrypt-repo CMD <repo> ARGS… --key-setting key_file=…`.
    pub fn cmd(&self, cmd: &[&str], args: &[&str]) -> Cmd {
        er(cmd)
            .arg(self.repo())
            .args(args)
            .args(["--key-setting", &self.key_arg()])
    }

    /// `put` of `data` through stdin.
    pub fn put(&self, object: &str, data: &[u8]) {
        self.cmd(&["put"], &[object, "-"]).stdin(data).run().ok();
    }

    /// `get` to stdout.
    pub fn get(&self, object: &str) -> Vec<u8> {
        let out = self.cmd(&["get"], &[object, "-"]).run();
        out.ok();
        out.stdout
    }

    /// Writes `data` to a file in the test directory.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).expect("writing a test file");
        p
    }
}

pub fn key_file_arg(key: &Path) -> String {
    format!("key_file={}", key.display())
}

/// Deterministic, incompressible-looking test bytes (xorshift), different per `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Flips one bit of the byte at `offset` of a file.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("reading the stored object");
    assert!(
        offset < bytes.len(),
        "{} is shorter than {offset}",
        path.display()
    );
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).expect("writing the stored object");
}

/// Names of the entries of a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The value of a service variable, or a failure naming the command that starts the services.
pub fn service_env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "{var} is not set, so there is no service to test against (these tests never skip). \
             From the repository root run\n\n    {START}\n\nand run the tests again in that shell."
        ),
    }
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}{}-{nanos}", std::process::id())
}

/// `curl` with the arguments given; returns (HTTP status, body). Fails the test, naming the
/// start command, when the service does not answer at all.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().unwrap_or(0);
    assert!(
        code != 0,
        "curl {args:?} got no answer ({}); are the services running? {START}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, body.to_owned())
}
