//! What the CLI prints: a human summary on stdout, or with `--json` one JSON object; progress
//! bars on stderr when it is a terminal (and neither `-q` nor `--json`).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// How to print.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) verbose: u8,
}

impl Output {
    /// Prints the command's result: `human` unless quiet, or `json` as one object.
    pub(crate) fn done(&self, human: &str, json: Value) {
        let mut out = std::io::stdout().lock();
        // Null: the command printed its JSON itself (audit's JSON lines) or has nothing to say
        // (serve after a clean shutdown).
        if self.json {
            if !json.is_null() {
                let _ = writeln!(out, "{json}");
            }
        } else if !self.quiet && !human.is_empty() {
            let _ = write!(out, "{human}");
            if !human.ends_with('\n') {
                let _ = writeln!(out);
            }
        }
    }

    /// Prints a note on stderr with `-v` (never with `-q` or `--json`).
    pub(crate) fn note(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet && !self.json {
            eprintln!("{msg}");
        }
    }

    /// Prints a warning on stderr, even with `-q` or `--json`: warnings are what a job's log
    /// must keep (stdout still carries only the result).
    pub(crate) fn warn(&self, msg: &str) {
        eprintln!("encrypt-repo: {msg}");
    }

    /// A byte progress bar, hidden unless stderr is a terminal and the output is for people.
    pub(crate) fn progress(&self, total: Option<u64>, what: &str) -> Progress {
        let visible = !self.quiet && !self.json && std::io::stderr().is_terminal();
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        };
        if visible {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_message(what.to_owned());
        Progress(Arc::new(bar))
    }

    /// A progress bar counting `total` steps (hidden as [`Output::progress`] is), each step
    /// named as it starts.
    pub(crate) fn steps(&self, total: u64, what: &str) -> Progress {
        let p = self.progress(Some(total), what);
        if let Ok(style) = ProgressStyle::with_template("{msg:40} {bar:30} {pos}/{len} {elapsed}") {
            p.0.set_style(style);
        }
        p
    }
}

/// A progress bar shared with library code (implements the snapshot module's `Progress`).
#[derive(Debug, Clone)]
pub(crate) struct Progress(Arc<ProgressBar>);

impl Progress {
    pub(crate) fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    /// Starts the next step of a [`Output::steps`] bar.
    pub(crate) fn step(&self, what: &str) {
        self.0.set_message(what.to_owned());
        self.0.inc(1);
    }

    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl encrypt_repo::snapshot::Progress for Progress {
    fn add_total(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn note(&self, msg: &str) {
        self.0.set_message(msg.to_owned());
    }
}

/// Bytes for people: 1.5 GiB.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
