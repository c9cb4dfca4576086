//! Where a secret comes from: an environment variable, a file or a command — never a
//! command-line argument (restic's `--password-file` / `--password-command`).

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provider::Settings;

/// Longest secret accepted from a file or command (1 MiB): a guard against reading a huge file.
pub const MAX_SECRET_LEN: usize = 1 << 20;
/// How long a secret command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One place to read a secret from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (one trailing newline removed).
    File(PathBuf),
    /// The standard output of this command, run with `sh -c` (one trailing newline removed).
    Command(String),
}

impl SecretSource {
    /// Picks the source from settings `<prefix>_env`, `<prefix>_file` or `<prefix>_command`
    /// (exactly one must be present).
    ///
    /// # Errors
    /// [`Error::Setting`] if none or more than one is given.
    pub fn from_settings(provider: &str, prefix: &str, settings: &Settings) -> Result<Self> {
        let get = |suffix: &str| settings.get(&format!("{prefix}_{suffix}")).cloned();
        let found: Vec<Self> = [
            get("env").map(Self::Env),
            get("file").map(|f| Self::File(f.into())),
            get("command").map(Self::Command),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Self; 1]>::try_from(found) {
            Ok([one]) => Ok(one),
            Err(v) => Err(Error::Setting {
                provider: provider.into(),
                setting: format!("{prefix}_env|{prefix}_file|{prefix}_command"),
                problem: if v.is_empty() {
                    "is required (exactly one of them)".into()
                } else {
                    "must be given only once (exactly one of them)".into()
                },
            }),
        }
    }

    /// Reads the secret.
    ///
    /// # Errors
    /// [`Error::Setting`] for a missing variable or an empty secret, [`Error::Io`] for file and
    /// command failures (naming the file or command, never the secret).
    pub async fn read(&self, provider: &str) -> Result<Zeroizing<Vec<u8>>> {
        let mut secret = match self {
            Self::Env(var) => match std::env::var_os(var) {
                Some(v) => Zeroizing::new(v.into_encoded_bytes()),
                None => {
                    return Err(Error::Setting {
                        provider: provider.into(),
                        setting: var.clone(),
                        problem: "names an environment variable that is not set".into(),
                    });
                }
            },
            Self::File(path) => read_file(path).await?,
            Self::Command(cmd) => run_command(cmd).await?,
        };
        if secret.last() == Some(&b'\n') {
            secret.pop();
            if secret.last() == Some(&b'\r') {
                secret.pop();
            }
        }
        if secret.is_empty() {
            return Err(Error::Setting {
                provider: provider.into(),
                setting: self.describe(),
                problem: "yields an empty secret".into(),
            });
        }
        Ok(secret)
    }

    fn describe(&self) -> String {
        match self {
            Self::Env(v) => format!("environment variable {v}"),
            Self::File(p) => format!("file {}", p.display()),
            Self::Command(c) => format!("command {c:?}"),
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    let io = |source| Error::Io {
        what: format!("reading secret file {}", path.display()),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(io)?;
    if meta.len() > MAX_SECRET_LEN as u64 {
        return Err(io(std::io::Error::other(format!(
            "larger than {MAX_SECRET_LEN} bytes"
        ))));
    }
    Ok(Zeroizing::new(tokio::fs::read(path).await.map_err(io)?))
}

async fn run_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let io = |source| Error::Io {
        what: format!("running secret command {cmd:?}"),
        source,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io(std::io::Error::other("no stdout")))?;
    let work = async {
        let mut out = Zeroizing::new(Vec::new());
        (&mut stdout)
            .take(MAX_SECRET_LEN as u64 + 1)
            .read_to_end(&mut out)
            .await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((out, status))
    };
    let (out, status) = tokio::time::timeout(COMMAND_TIMEOUT, work)
        .await
        .map_err(|_| {
            io(std::io::Error::other(format!(
                "timed out after {COMMAND_TIMEOUT:?}"
            )))
        })?
        .map_err(io)?;
    if !status.success() {
        return Err(io(std::io::Error::other(format!("exited with {status}"))));
    }
    if out.len() > MAX_SECRET_LEN {
        return Err(io(std::io::Error::other(format!(
            "printed more than {MAX_SECRET_LEN} bytes"
        ))));
    }
    Ok(out)
}
