//! Command-line definitions (clap derive). The same definitions generate the completions and
//! the man page, so they cannot drift from the parser.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Client-side encrypting object-storage repository: S3, GCS, Azure Blob or a local disk only
/// ever hold ciphertext; keys stay with your key provider.
#[derive(Debug, Parser)]
#[command(
    name = "encrypt-repo",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 success, 1 other error, 2 usage, 3 not found, \
4 authentication failed (tampered object, wrong key), 5 key unavailable or repository locked, \
6 partial failure (some files or objects failed)."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Key-provider setting K=V (repeatable): all settings at `init`; access settings (key_file,
    /// endpoint, token_file…) on every other command, since the registration records only what
    /// the key is. Never a secret itself: settings name where secrets are.
    #[arg(
        long = "key-setting",
        value_name = "K=V",
        global = true,
        env = "ENCRYPT_REPO_KEY_SETTING",
        value_delimiter = ';',
        value_parser = key_value
    )]
    pub(crate) key_settings: Vec<(String, String)>,
    /// Setting of an escrow provider, NAME:K=V (repeatable): all its settings at `init`, its
    /// access settings (a key file, a token file) on every command that writes.
    #[arg(
        long = "escrow-setting",
        value_name = "NAME:K=V",
        global = true,
        env = "ENCRYPT_REPO_ESCROW_SETTING",
        value_delimiter = ';'
    )]
    pub(crate) escrow_settings: Vec<String>,
    /// object_store option K=V (repeatable), e.g. aws_endpoint=http://127.0.0.1:9000,
    /// aws_allow_http=true, azure_storage_use_emulator=true.
    #[arg(
        long = "store-option",
        value_name = "K=V",
        global = true,
        env = "ENCRYPT_REPO_STORE_OPTION",
        value_delimiter = ';',
        value_parser = key_value
    )]
    pub(crate) store_options: Vec<(String, String)>,
    /// Print one JSON object (the summary, or the error) on stdout.
    #[arg(long, global = true, env = "ENCRYPT_REPO_JSON", value_parser = BoolishValueParser::new())]
    pub(crate) json: bool,
    /// Print nothing on success (errors still go to stderr).
    #[arg(short, long, global = true, env = "ENCRYPT_REPO_QUIET", value_parser = BoolishValueParser::new())]
    pub(crate) quiet: bool,
    /// More detail on stderr (repeat for more).
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        env = "ENCRYPT_REPO_VERBOSE"
    )]
    pub(crate) verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Register a repository (prints its id).
    Init(Init),
    /// Registration, key provider, data keys and lock state of a repository.
    Info(Repo),
    /// Encrypt and upload a file (or standard input) as one object.
    Put(Put),
    /// Download and decrypt one object (only verified bytes reach the output).
    Get(Get),
    /// List objects with their plaintext sizes.
    Ls(Ls),
    /// Delete objects.
    Rm(Rm),
    /// Copy an object (re-encrypted when objects are bound to their path).
    Cp(Cp),
    /// Upload a directory tree as a snapshot; a re-run uploads only what is missing or changed.
    Backup(Backup),
    /// Restore a snapshot into a directory: byte-identical files, modes and mtimes.
    Restore(Restore),
    /// List the snapshots of a backup prefix.
    Snapshots(Snapshots),
    /// Authenticate every object completely and check its data key; names each bad object and
    /// the staging files interrupted writes left in a local repository.
    Verify(Verify),
    /// Remove the staging files interrupted writes left in a local repository directory
    /// (`<name>#N`, `.encrypt-repo-get-*`, `.encrypt-repo-restore-*`) not written to for a while.
    Cleanup(Cleanup),
    /// Key lifecycle: status, rotate, rewrap, shred.
    #[command(subcommand)]
    Keys(Keys),
    /// Run the repository service (HTTP API with OpenSearch-security-style authentication and
    /// roles) until SIGINT or SIGTERM. Prints `listening on ADDRESS` once bound.
    Serve(Serve),
    /// Print the audit events a service stored in its system repository (REPO), in time order.
    Audit(Audit),
    /// Measure this machine: raw AES-256-GCM, the format, and encrypted against unencrypted
    /// puts, gets and range reads, each figure next to its baseline from the same run.
    Bench(Bench),
    /// Print shell completions.
    Completions(Completions),
    /// Print the man page (roff) on standard output.
    Man,
}

/// A repository URL: a path, file:///…, s3://bucket/prefix, az://container/prefix,
/// gs://bucket/prefix.
#[derive(Debug, Args)]
pub(crate) struct Repo {
    /// The repository (path or URL).
    #[arg(env = "ENCRYPT_REPO_REPOSITORY")]
    pub(crate) repo: String,
}

/// `init`.
#[derive(Debug, Args)]
pub(crate) struct Init {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Key provider type: local, passphrase, aws-kms, openbao, exec.
    #[arg(
        long,
        env = "ENCRYPT_REPO_KEY_PROVIDER",
        required_unless_present = "no_encryption"
    )]
    pub(crate) key_provider: Option<String>,
    /// A name for the key provider, for people (default: its type).
    #[arg(long, env = "ENCRYPT_REPO_KEY_PROVIDER_NAME")]
    pub(crate) key_provider_name: Option<String>,
    /// Escrow provider TYPE:NAME (repeatable); its settings with --escrow-setting NAME:K=V.
    #[arg(
        long = "escrow-provider",
        value_name = "TYPE:NAME",
        env = "ENCRYPT_REPO_ESCROW_PROVIDER",
        value_delimiter = ';'
    )]
    pub(crate) escrow_providers: Vec<String>,
    /// Plaintext chunk size: a power of two from 64KiB to 16MiB (default 1MiB).
    #[arg(long, value_name = "SIZE", env = "ENCRYPT_REPO_CHUNK_SIZE", value_parser = size)]
    pub(crate) chunk_size: Option<u64>,
    /// Store objects unencrypted (a pass-through repository).
    #[arg(
        long,
        env = "ENCRYPT_REPO_NO_ENCRYPTION",
        conflicts_with = "key_provider",
        value_parser = BoolishValueParser::new()
    )]
    pub(crate) no_encryption: bool,
    /// Do not bind objects to their paths (allows server-side copies; moved objects go undetected).
    #[arg(long, env = "ENCRYPT_REPO_NO_PATH_BINDING", value_parser = BoolishValueParser::new())]
    pub(crate) no_path_binding: bool,
}

/// `put`.
#[derive(Debug, Args)]
pub(crate) struct Put {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Object name inside the repository.
    pub(crate) object: String,
    /// File to upload, or - for standard input (the default).
    pub(crate) file: Option<PathBuf>,
    /// Upload pieces (4 MiB) sealed and in flight at once. Default: 2 for a local directory
    /// (its writes to one file are serialised anyway; more only holds more memory), 4 for
    /// object stores (overlapping requests hides their latency).
    #[arg(long, value_name = "N", env = "ENCRYPT_REPO_PARTS_IN_FLIGHT", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) parts_in_flight: Option<u16>,
}

/// `get`.
#[derive(Debug, Args)]
pub(crate) struct Get {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Object name inside the repository.
    pub(crate) object: String,
    /// Output file (written to a temporary file and renamed once everything verified), or -
    /// for standard output. Without it, standard output, unless that is a terminal.
    pub(crate) file: Option<PathBuf>,
    /// Inclusive byte range START-END, START- (to the end) or -N (the last N bytes), as curl -r.
    // -N (a suffix) starts with a hyphen but is a value, not a flag.
    #[arg(
        long,
        short = 'r',
        value_name = "START-END",
        allow_hyphen_values = true
    )]
    pub(crate) range: Option<String>,
}

/// `ls`.
#[derive(Debug, Args)]
pub(crate) struct Ls {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Only objects under this prefix.
    pub(crate) prefix: Option<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub(crate) struct Rm {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Objects to delete.
    #[arg(required = true)]
    pub(crate) objects: Vec<String>,
}

/// `cp`.
#[derive(Debug, Args)]
pub(crate) struct Cp {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Source object.
    pub(crate) from: String,
    /// Destination object.
    pub(crate) to: String,
}

/// `backup`.
#[derive(Debug, Args)]
pub(crate) struct Backup {
    /// Directory to back up.
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Prefix inside the repository that holds the backups.
    #[arg(long, default_value = "backup", env = "ENCRYPT_REPO_PREFIX")]
    pub(crate) prefix: String,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 4, env = "ENCRYPT_REPO_CONCURRENCY")]
    pub(crate) concurrency: usize,
    /// Walk and hash, report what would be uploaded, write nothing.
    #[arg(long, env = "ENCRYPT_REPO_DRY_RUN", value_parser = BoolishValueParser::new())]
    pub(crate) dry_run: bool,
    /// Register the repository first unless it already is, as `init` would: with
    /// --key-provider (default local) and the --key-setting values. A new local key file is
    /// created (mode 0600) with a warning to back it up.
    #[arg(long, env = "ENCRYPT_REPO_INIT", value_parser = BoolishValueParser::new())]
    pub(crate) init: bool,
    /// Key provider type for --init (ignored without it, so the variable can be set for both).
    #[arg(long, default_value = "local", env = "ENCRYPT_REPO_KEY_PROVIDER")]
    pub(crate) key_provider: String,
}

/// `serve`.
#[derive(Debug, Args)]
pub(crate) struct Serve {
    /// The service configuration (config.yml shape; see crates/server/config.example.yml). The
    /// admin password of the first start comes from ENCRYPT_REPO_ADMIN_PASSWORD or the file
    /// named by ENCRYPT_REPO_ADMIN_PASSWORD_FILE; there is no default password.
    #[arg(long, value_name = "PATH", env = "ENCRYPT_REPO_SERVER_CONFIG")]
    pub(crate) config: PathBuf,
}

/// `audit`.
#[derive(Debug, Args)]
pub(crate) struct Audit {
    /// The service's system repository (path or URL), opened with --key-setting as any other.
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Only events at or after this time: RFC 3339 (2026-01-31T12:00:00Z) or a date (the start of
    /// that day, UTC).
    #[arg(long, value_name = "TIME")]
    pub(crate) from: Option<String>,
    /// Only events before this time: RFC 3339, or a date (through the end of that day, UTC).
    #[arg(long, value_name = "TIME")]
    pub(crate) to: Option<String>,
    /// Only this category (repeatable): FAILED_LOGIN, OBJECT_WRITE, SECURITY_CONFIG_CHANGE, …
    #[arg(long = "category", value_name = "CATEGORY")]
    pub(crate) categories: Vec<String>,
}

/// `bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Bench {
    /// Bytes per object put and got.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = size, env = "ENCRYPT_REPO_BENCH_SIZE")]
    pub(crate) size: u64,
    /// Bytes sealed and opened per pass by the crypto figures.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = size)]
    pub(crate) crypto_size: u64,
    /// Plaintext chunk size of the format.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = size)]
    pub(crate) chunk_size: u64,
    /// Backend part size of the encrypted store's multipart uploads.
    #[arg(long, value_name = "SIZE", default_value = "5MiB", value_parser = size)]
    pub(crate) part_size: u64,
    /// Upload pieces (4 MiB, as `put` reads files) in flight per object.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Rounds of each figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: u32,
    /// Directory for the local stores (a temporary directory is made inside it and removed).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".",
        env = "ENCRYPT_REPO_BENCH_DIR"
    )]
    pub(crate) dir: PathBuf,
    /// Skip the InMemory pair (it holds two copies of --size in memory).
    #[arg(long)]
    pub(crate) skip_memory_backend: bool,
}

/// `restore`.
#[derive(Debug, Args)]
pub(crate) struct Restore {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Directory to restore into (created if missing).
    pub(crate) dir: PathBuf,
    /// Prefix inside the repository that holds the backups.
    #[arg(long, default_value = "backup", env = "ENCRYPT_REPO_PREFIX")]
    pub(crate) prefix: String,
    /// Snapshot id, or a unique prefix of one (default: the latest of --host and --path).
    #[arg(long, env = "ENCRYPT_REPO_SNAPSHOT")]
    pub(crate) snapshot: Option<String>,
    /// Without --snapshot: the latest snapshot taken on this host (default: this machine's
    /// name), as restic's --host.
    #[arg(
        long,
        value_name = "HOST",
        env = "ENCRYPT_REPO_HOST",
        conflicts_with = "any_host"
    )]
    pub(crate) host: Option<String>,
    /// Without --snapshot: the latest snapshot of any host.
    #[arg(long, value_parser = BoolishValueParser::new())]
    pub(crate) any_host: bool,
    /// Without --snapshot: the latest snapshot of this backed-up directory (as `snapshots`
    /// shows it in its source column).
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<String>,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 4, env = "ENCRYPT_REPO_CONCURRENCY")]
    pub(crate) concurrency: usize,
}

/// `snapshots`.
#[derive(Debug, Args)]
pub(crate) struct Snapshots {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Prefix inside the repository that holds the backups.
    #[arg(long, default_value = "backup", env = "ENCRYPT_REPO_PREFIX")]
    pub(crate) prefix: String,
}

/// `verify`.
#[derive(Debug, Args)]
pub(crate) struct Verify {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Only objects under this prefix.
    #[arg(long, env = "ENCRYPT_REPO_PREFIX")]
    pub(crate) prefix: Option<String>,
}

/// `cleanup`.
#[derive(Debug, Args)]
pub(crate) struct Cleanup {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Only files not written to for this long (30s, 15m, 12h, 7d; 0 for every leftover). A
    /// write still in progress touches its file all the time, so the default cannot catch one.
    #[arg(long, value_name = "AGE", default_value = "1d", value_parser = duration)]
    pub(crate) older_than: std::time::Duration,
    /// List what would be removed, remove nothing.
    #[arg(long, value_parser = BoolishValueParser::new())]
    pub(crate) dry_run: bool,
}

/// `keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum Keys {
    /// Ask the provider whether the key is usable; list the data keys.
    Status(Repo),
    /// Start a new data key for the next write.
    Rotate(Repo),
    /// Move every data key to a new provider or key; old wrapped copies are removed. Data
    /// objects are not read or written.
    Rewrap(Rewrap),
    /// Destroy data keys: objects under them can never be decrypted again.
    Shred(Shred),
}

/// `keys rewrap`.
#[derive(Debug, Args)]
pub(crate) struct Rewrap {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// The new provider's type.
    #[arg(long)]
    pub(crate) to_provider: String,
    /// The new provider's name (default: its type).
    #[arg(long)]
    pub(crate) to_name: Option<String>,
    /// The new provider's settings, K=V (repeatable).
    #[arg(long = "to-setting", value_name = "K=V", value_parser = key_value)]
    pub(crate) to_settings: Vec<(String, String)>,
}

/// `keys shred`.
#[derive(Debug, Args)]
pub(crate) struct Shred {
    #[command(flatten)]
    pub(crate) repo: Repo,
    /// Data key ids (32 hex digits) to shred.
    #[arg(required_unless_present = "all")]
    pub(crate) ids: Vec<String>,
    /// Shred every data key in the repository.
    #[arg(long, conflicts_with = "ids")]
    pub(crate) all: bool,
    /// Confirm: shredding cannot be undone.
    #[arg(long)]
    pub(crate) yes: bool,
}

/// `completions`.
#[derive(Debug, Args)]
pub(crate) struct Completions {
    /// The shell.
    pub(crate) shell: Shell,
}

/// Shells completions are generated for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
    /// PowerShell
    Powershell,
    /// elvish
    Elvish,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// `0`, `90s`, `15m`, `12h`, `7d` (a bare number is seconds).
pub(crate) fn duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {s:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("duration too long: {s:?}"))
}

/// `1048576`, `64KiB`, `1MiB`, `16M`, `1m`.
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}
