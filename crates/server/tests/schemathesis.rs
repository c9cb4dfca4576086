//! schemathesis (PyPI, in the test venv) against `GET /_openapi.json` of a node served over
//! loopback: property-based requests (the document's examples, boundary values, random
//! fuzzing, chained calls) to the documented operations, as admin, checking that no answer is
//! a 5xx and that every answer's status, content type, headers and body conform to the
//! document. Bounded by the number of examples per operation and phase and a request timeout
//! (about 75 s for both runs on an idle 2-core machine); a 10-minute limit per schemathesis
//! process only catches a hang — it is not a speed check, and a loaded machine stays under it.
//!
//! The node starts with one repository (`main`) holding one object (`docs/readme.txt`), the
//! examples the document gives for the path parameters. Two runs:
//! 1. the repository API (tags cluster, repositories, objects, keys) with `repo` always
//!    `main`, so object and key operations reach real data; excluded there: unregistering
//!    `main` and shredding its keys, which would end it;
//! 2. every operation of the document with generated parameters, nothing excluded; it may
//!    unregister `main` or shred its keys, after which others answer 404 or 422 — documented
//!    statuses, still checked.
//!
//! Needs `.venv/bin/schemathesis`: `bash tests/services.sh venv` installs it. The test fails,
//! naming that command, when it is missing.
//!
//! Knobs: `ER_SCHEMATHESIS_MAX_EXAMPLES` (default 50), `ER_SCHEMATHESIS_SEED` (reproduce a run;
//! schemathesis prints its seed).

mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{ADMIN_PASSWORD, config_yaml, start};
use reqwest::{Client, StatusCode};

/// Hang guard for one schemathesis process (the work is bounded by `MAX_EXAMPLES`; 85 s was
/// exceeded once on a 2-core machine busy compiling).
const PROCESS_TIMEOUT: Duration = Duration::from_secs(600);
/// Test cases per operation and phase, unless `ER_SCHEMATHESIS_MAX_EXAMPLES` says otherwise.
const MAX_EXAMPLES: &str = "50";

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schemathesis() -> PathBuf {
    let bin = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        bin.is_file(),
        "{} is missing: install it with `bash tests/services.sh venv` \
         (or `.venv/bin/python -m pip install schemathesis==4.32.5`) at the workspace root",
        bin.display()
    );
    bin
}

async fn seed_data(c: &Client, base: &str, dir: &Path) {
    let body = serde_json::json!({
        "type": "fs",
        "settings": { "location": dir.join("repos/main").to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
            "settings": {} }
    });
    let r = c
        .put(format!("{base}/_snapshot/main"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = c
        .put(format!("{base}/_snapshot/main/_objects/docs/readme.txt"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("hello from the schemathesis test\n")
        .send()
        .await
        .expect("put object");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
}

/// What one schemathesis run printed, and whether it passed.
struct Run {
    passed: bool,
    stdout: String,
}

/// Runs schemathesis against `base` with the TOML `config` (admin's basic auth is added) and
/// `args`, printing its report.
async fn schemathesis_run(label: &str, base: &str, dir: &Path, config: &str, args: &[&str]) -> Run {
    // The password reaches schemathesis through its environment, not its command line.
    let file = dir.join(format!("schemathesis-{label}.toml"));
    std::fs::write(
        &file,
        format!(
            "[auth.basic]\nusername = \"admin\"\npassword = \"${{ER_TEST_ADMIN_PASSWORD}}\"\n{config}"
        ),
    )
    .expect("config");
    let max_examples =
        std::env::var("ER_SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned());
    let mut cmd = tokio::process::Command::new(schemathesis());
    cmd.arg("--config-file")
        .arg(&file)
        .arg("--no-color")
        .arg("run")
        .arg(format!("{base}/_openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &max_examples])
        .args(["--request-timeout", "20"])
        // One worker: with several, hypothesis describes filters by parsing source with `ast`
        // from several threads at once, which CPython 3.11 can fail with "AST constructor
        // recursion depth mismatch" (a tool error that fails the run without any finding).
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--max-failures", "50"])
        .args(args);
    if let Ok(seed) = std::env::var("ER_SCHEMATHESIS_SEED") {
        cmd.args(["--seed", &seed]);
    }
    cmd.current_dir(dir)
        .env("ER_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().expect("schemathesis starts");
    let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ({label}) ran longer than {PROCESS_TIMEOUT:?}"))
        .expect("schemathesis output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("===== schemathesis run: {label} =====\n{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "===== schemathesis run {label}: exit {:?} after {:.1?} =====",
        out.status.code(),
        started.elapsed()
    );
    Run {
        passed: out.status.success(),
        stdout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    schemathesis();
    let dir = tempfile::tempdir().expect("tempdir");
    // A key provider creates its key file where crypto_settings say; a generated relative
    // `key_file` must land in the temporary directory, not in the source tree. (This binary
    // has this one test, so changing the process's directory affects nothing else.)
    std::env::set_current_dir(dir.path()).expect("chdir");
    let server = start(dir.path(), &config_yaml(dir.path(), 3600, "")).await;
    let client = Client::builder().no_proxy().build().expect("client");
    seed_data(&client, &server.base, dir.path()).await;

    // 1. The repository API on the repository `main` (so object and key operations reach
    //    real data: ranges of real objects, listings with prefixes), except the two
    //    operations that would end it: unregistering it and shredding its keys. Only these
    //    tags, so that operations merged from other modules (the security API) cannot lock
    //    the admin out before this run is done.
    let on_main = schemathesis_run(
        "repository-main",
        &server.base,
        dir.path(),
        "[parameters]\nrepo = \"main\"\n",
        &[
            "--include-tag",
            "cluster",
            "--include-tag",
            "repositories",
            "--include-tag",
            "objects",
            "--include-tag",
            "keys",
            "--exclude-operation-id",
            "delete_repository",
            "--exclude-operation-id",
            "shred_keys",
        ],
    )
    .await;
    // 2. Every operation of the document, whatever module added it, with generated
    //    parameters (and the document's examples, which name `main`: this run may unregister
    //    it or shred its keys).
    let all = schemathesis_run("all-operations", &server.base, dir.path(), "", &[]).await;
    server.stop().await;

    for (label, run) in [("repository-main", &on_main), ("all-operations", &all)] {
        assert!(
            run.passed,
            "schemathesis run {label} found problems; its report is above"
        );
        // A run that tested nothing must not pass.
        assert!(
            run.stdout.contains("Tested:") && !run.stdout.contains("Tested: 0"),
            "schemathesis run {label} did not report tested operations"
        );
    }
}
