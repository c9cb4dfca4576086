//! `encrypt-repo`: the command-line tool for backup jobs and snapshot uploaders.
//!
//! Exit codes: 0 success, 1 other error, 2 usage, 3 not found, 4 authentication failed
//! (tampered object, wrong key), 5 key unavailable or repository locked, 6 partial failure.

mod app;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use app::args::{Cli, Command};
use app::exit::{Exit, classify, render, summary_printed};
use app::output::Output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are "errors" that exit 0; usage errors exit 2.
            if !e.use_stderr() {
                let _ = e.print();
                return Exit::Success.code();
            }
            if json_requested() {
                let msg = e.kind().to_string();
                let detail = e.render().to_string();
                let first = detail.lines().next().unwrap_or(&msg);
                println!(
                    "{}",
                    serde_json::json!({"error": first.trim_start_matches("error: "),
                                       "exit_code": Exit::Usage as u8})
                );
            }
            let _ = e.print();
            return Exit::Usage.code();
        }
    };
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("encrypt-repo: cannot start the async runtime: {e}");
            return Exit::Other.code();
        }
    };
    let started = std::time::Instant::now();
    match runtime.block_on(run(&cli, &out)) {
        Ok((human, json)) => {
            out.done(&human, json);
            out.note(&format!("encrypt-repo: done in {:.1?}", started.elapsed()));
            Exit::Success.code()
        }
        Err(e) => {
            let exit = classify(&e);
            let message = render(&e);
            if out.json {
                // Partial failures and `keys status` already printed their summary object.
                if !summary_printed(&e) {
                    println!(
                        "{}",
                        serde_json::json!({"error": message, "exit_code": exit as u8})
                    );
                }
            } else {
                eprintln!("encrypt-repo: {message}");
                // -v: every error of the chain on a line of its own, as the libraries said it.
                for cause in e.chain() {
                    out.note(&format!("  caused by: {cause}"));
                }
            }
            exit.code()
        }
    }
}

/// `--json` (or `ENCRYPT_REPO_JSON`) on a command line clap could not parse: its usage error
/// is printed as JSON too, so scripts always get one object.
fn json_requested() -> bool {
    let flag = std::env::args_os().skip(1).any(|a| a == "--json");
    let env = std::env::var("ENCRYPT_REPO_JSON")
        .is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no" | "off"));
    flag || env
}

async fn run(cli: &Cli, out: &Output) -> anyhow::Result<(String, serde_json::Value)> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => app::commands::init(a, g, out).await,
        Command::Info(a) => app::commands::info(a, g).await,
        Command::Put(a) => app::commands::put(a, g, out).await,
        Command::Get(a) => app::commands::get(a, g, out).await,
        Command::Ls(a) => app::commands::ls(a, g, out).await,
        Command::Rm(a) => app::commands::rm(a, g).await,
        Command::Cp(a) => app::commands::cp(a, g).await,
        Command::Backup(a) => app::commands::backup(a, g, out).await,
        Command::Restore(a) => app::commands::restore(a, g, out).await,
        Command::Snapshots(a) => app::commands::snapshots(a, g, out).await,
        Command::Verify(a) => app::commands::verify(a, g, out).await,
        Command::Cleanup(a) => app::listing::cleanup(a, g, out).await,
        Command::Keys(k) => app::commands::keys(k, g, out).await,
        Command::Bench(a) => app::bench::bench(a, out).await,
        Command::Serve(a) => app::commands::serve(a, out).await,
        Command::Audit(a) => app::audit::audit(a, g, out).await,
        Command::Completions(a) => {
            let shell = match a.shell {
                app::args::Shell::Bash => clap_complete::Shell::Bash,
                app::args::Shell::Zsh => clap_complete::Shell::Zsh,
                app::args::Shell::Fish => clap_complete::Shell::Fish,
                app::args::Shell::Powershell => clap_complete::Shell::PowerShell,
                app::args::Shell::Elvish => clap_complete::Shell::Elvish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "encrypt-repo",
                &mut std::io::stdout(),
            );
            Ok((String::new(), serde_json::Value::Null))
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            use std::io::Write as _;
            std::io::stdout().write_all(&buf)?;
            Ok((String::new(), serde_json::Value::Null))
        }
    }
}
