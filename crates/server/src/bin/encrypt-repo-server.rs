//! `encrypt-repo-server --config PATH`: the service as its own process (the CLI's
//! `encrypt-repo serve` calls the same [`encrypt_repo_server::serve`]).
//!
//! Prints `listening on ADDRESS` on stdout once bound. Exit codes: 0 after a clean shutdown
//! (SIGINT/SIGTERM), 1 on any error, 2 on a usage error.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: encrypt-repo-server --config PATH");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => path.clone(),
        [arg] if arg.starts_with("--config=") => arg["--config=".len()..].to_owned(),
        _ => return usage(),
    };
    // Logs on stderr (RUST_LOG, default info); stdout carries only the "listening on" line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let config = match encrypt_repo_server::ServerConfig::load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("encrypt-repo-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    let on_bound: encrypt_repo_server::OnBound = Box::new(|addr| {
        println!("listening on {addr}");
    });
    match encrypt_repo_server::serve_with(config, shutdown, Some(on_bound)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("encrypt-repo-server: {e}");
            ExitCode::FAILURE
        }
    }
}
