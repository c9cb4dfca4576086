//! `encrypt-repo audit` (issue 8, item 5) end to end: `encrypt-repo serve` logs events as JSON
//! lines on stdout and, at SIGTERM, flushes them into encrypted objects of its system
//! repository; `encrypt-repo audit` reads them back in time order, filtered by time and
//! category, as a table or JSON lines. No password, credential or key appears in anything the
//! service or the command printed, nor in the system repository's files.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;

use serde_json::{Value, json};

use super::serve::{basic, config};
use super::support::{Env, er, key_file_arg};

const ADMIN: &str = "cli-audit-Admin-Pa55";
const KIM: &str = "cli-audit-Kim-Pa55";
const MALLORY: &str = "cli-audit-Mallory-Pa55";
const OBJECT: &str = "cli-audit-object-body";

/// One request over a fresh connection; the status.
fn call(addr: &str, method: &str, path: &str, auth: Option<(&str, &str)>, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = auth
        .map(|(u, p)| format!("Authorization: Basic {}\r\n", basic(u, p)))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {reply}"))
}

fn files(dir: &Path, out: &mut Vec<u8>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn audit_reads_back_what_serve_logged_by_time_and_category_without_secrets() {
    let env = Env::new();
    let dir = env.tmp.path();
    std::fs::create_dir_all(dir.join("repos")).unwrap();
    let cfg = env.path("config.yml");
    let yaml = format!(
        "{}  audit: {{ node_id: cli-node, flush_seconds: 3600 }}\n",
        config(dir)
    );
    std::fs::write(&cfg, yaml).unwrap();
    let mut child = er(["serve", "--config"])
        .arg(&cfg)
        .env("ENCRYPT_REPO_ADMIN_PASSWORD", ADMIN)
        .spawn();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        child.kill().ok();
        panic!("no 'listening on' line: {line:?}");
    };
    let addr = addr.to_owned();

    assert_eq!(call(&addr, "GET", "/", Some(("mallory", MALLORY)), ""), 401);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mid = chrono_like_now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let everything = json!({"audit": {"disabled_rest_categories": [], "log_request_body": true},
                            "compliance": {"write_log_diffs": true}});
    let admin = Some(("admin", ADMIN));
    assert_eq!(
        call(
            &addr,
            "PUT",
            "/_plugins/_security/api/audit/config",
            admin,
            &everything.to_string()
        ),
        200
    );
    assert_eq!(
        call(
            &addr,
            "PUT",
            "/_plugins/_security/api/internalusers/kim",
            admin,
            &json!({"password": KIM}).to_string()
        ),
        201
    );
    let repo = json!({"type": "fs", "settings": {"location": dir.join("repos/r").to_str().unwrap()},
        "encrypted": true, "crypto_settings": {"key_provider_name": "main", "key_provider_type": "local",
        "settings": {}}});
    assert_eq!(
        call(&addr, "PUT", "/_snapshot/r", admin, &repo.to_string()),
        200
    );
    assert_eq!(
        call(
            &addr,
            "PUT",
            "/_snapshot/r/_objects/o",
            Some(("kim", KIM)),
            OBJECT
        ),
        403
    );
    assert_eq!(
        call(&addr, "PUT", "/_snapshot/r/_objects/o", admin, OBJECT),
        201
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .ok();

    // stdout: JSON lines, one per event.
    let printed: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let cats = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["category"].as_str().unwrap().to_owned())
            .collect()
    };
    let printed_cats = cats(&printed);
    for want in [
        "FAILED_LOGIN",
        "SECURITY_CONFIG_CHANGE",
        "REPOSITORY_REGISTER",
        "MISSING_PRIVILEGES",
        "OBJECT_WRITE",
    ] {
        assert!(
            printed_cats.iter().any(|c| c == want),
            "{want} not in {printed_cats:?}"
        );
    }

    // The system repository, read back by the CLI: the same events, in time order.
    let sys = dir.join("system");
    let key = key_file_arg(&dir.join("system.key"));
    let audit = |extra: &[&str]| {
        er(["audit"])
            .arg(&sys)
            .args(["--key-setting", &key])
            .args(extra)
            .run()
    };
    let all = audit(&["--json"]);
    all.ok();
    let stored: Vec<Value> = all
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stored.len(), printed.len(), "{}", all.text());
    let times: Vec<&str> = stored
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(stored.iter().all(|e| e["node"] == "cli-node"));

    let failed = audit(&["--json", "--category", "FAILED_LOGIN"]);
    let failed: Vec<Value> = failed
        .ok()
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cats(&failed), ["FAILED_LOGIN"], "{failed:?}");
    assert_eq!(failed[0]["user"], "mallory");
    let two = audit(&[
        "--json",
        "--category",
        "object_write",
        "--category",
        "REPOSITORY_REGISTER",
    ]);
    let two: Vec<Value> = two
        .ok()
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cats(&two), ["REPOSITORY_REGISTER", "OBJECT_WRITE"]);
    let before = audit(&["--json", "--to", &mid]);
    assert_eq!(
        cats(
            &before
                .ok()
                .text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        ),
        ["FAILED_LOGIN"]
    );
    let after = audit(&["--json", "--from", &mid]);
    let after: Vec<Value> = after
        .ok()
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after.len(), stored.len() - 1);
    assert!(!cats(&after).contains(&"FAILED_LOGIN".to_owned()));
    let today = &mid[..10];
    let day = audit(&["--json", "--from", today, "--to", today]);
    assert_eq!(day.ok().text().lines().count(), stored.len());

    // The table.
    let table = audit(&["--category", "FAILED_LOGIN"]);
    let t = table.ok().text();
    assert!(
        t.contains("FAILED_LOGIN") && t.contains("mallory") && t.contains("401"),
        "{t}"
    );
    assert_eq!(t.lines().count(), 1, "{t}");

    // Usage errors and a missing repository.
    audit(&["--category", "NOPE"]).code(2).clean_error();
    audit(&["--from", "yesterday"]).code(2).clean_error();
    er(["audit"])
        .arg(dir.join("nowhere"))
        .args(["--key-setting", &key])
        .run()
        .code(3)
        .clean_error();

    // No secret anywhere: stdout, stderr, what `audit` printed, the raw system repository.
    let mut raw = Vec::new();
    files(&sys, &mut raw);
    let key_text = std::fs::read_to_string(dir.join("system.key")).unwrap();
    // The one key file the server made for repository r.
    let made: Vec<_> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let repo_key = std::fs::read_to_string(&made[0]).unwrap();
    let secrets = [
        ADMIN.to_owned(),
        KIM.to_owned(),
        MALLORY.to_owned(),
        OBJECT.to_owned(),
        basic("admin", ADMIN),
        basic("kim", KIM),
        basic("mallory", MALLORY),
        key_text.trim().to_owned(),
        repo_key.trim().to_owned(),
    ];
    let outputs = [
        ("serve stdout", rest.clone()),
        ("serve stderr", stderr.clone()),
        ("audit --json", all.text()),
        ("audit table", t.clone()),
    ];
    assert!(
        all.text().contains("request_body"),
        "bodies are logged (redacted): {}",
        all.text()
    );
    for s in &secrets {
        for (name, text) in &outputs {
            assert!(
                !text.contains(s.as_str()),
                "{name} holds a secret ({} bytes)",
                s.len()
            );
        }
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_bytes()),
            "the system repository holds a secret in clear"
        );
    }
    // And no event in clear in the files.
    assert!(!raw.windows(12).any(|w| w == b"FAILED_LOGIN"));
}

/// Now as RFC 3339 UTC, from the system clock (no chrono in this crate's tests).
fn chrono_like_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
