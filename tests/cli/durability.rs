//! Durability and self-healing of local repositories (issue 14), through the binary: every write
//! is fsynced (file and directory), stray and damaged files are named and skipped, leftovers of
//! interrupted writes are found and removed, tampered manifests do not hide the others, and the
//! command line refuses what it cannot do with exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::{Env, data, er, flip_byte};

// ---------------------------------------------------------------------------------------------
// fsync, seen from outside the process

/// An `LD_PRELOAD` library that appends the path of every descriptor given to `fsync` or
/// `fdatasync` to the file named by `FSYNC_LOG`, then calls the real function: a record of
/// what the binary synced, without strace.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void note(int fd) {
    const char *log = getenv("FSYNC_LOG");
    char link[64], path[4096];
    ssize_t n;
    int out;
    if (!log) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n++] = '\n';
    out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0) return;
    (void) !write(out, path, (size_t) n);
    close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int)) dlsym(RTLD_NEXT, "fsync");
    note(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    note(fd);
    return real(fd);
}
"#;

/// Builds the shim with the system C compiler into `dir`.
fn build_shim(dir: &Path) -> PathBuf {
    let src = dir.join("fsync_log.c");
    let lib = dir.join("fsync_log.so");
    std::fs::write(&src, SHIM).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("running cc (a C compiler is needed to watch fsync without strace)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// The paths a command synced, in order.
fn synced(env: &Env, shim: &Path, log: &str, cmd: super::support::Cmd) -> Vec<String> {
    let log = env.path(log);
    cmd.env("LD_PRELOAD", shim)
        .env("FSYNC_LOG", &log)
        .run()
        .ok();
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_synced(what: &str, log: &[String], path: &str) {
    assert!(
        log.iter().any(|l| l == path),
        "{what}: {path} was not fsynced; synced: {log:#?}"
    );
}

#[test]
fn every_write_to_a_local_repository_is_fsynced_file_and_directory() {
    let env = Env::new();
    let shim = build_shim(env.tmp.path());
    std::fs::create_dir(env.path("repo")).unwrap();
    let repo = env
        .path("repo")
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    let init = er(["init", &env.repo(), "--key-provider", "local"])
        .args(["--key-setting", &env.key_arg()]);
    let log = synced(&env, &shim, "init.log", init);
    // The registration and the first keyring record are published through staging files
    // (`<name>#<n>`) that are synced before their rename; the directory is synced after it.
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("{repo}/.encrypt-repo/registration.json#"))),
        "registration not synced before its rename: {log:#?}"
    );
    assert_synced("init", &log, &format!("{repo}/.encrypt-repo"));

    // A multipart put (stdin) and a small put through `cp`.
    let put = env
        .cmd(&["put"], &["dir/object", "-"])
        .stdin(&data(300_000, 1));
    let log = synced(&env, &shim, "put.log", put);
    assert_synced("put", &log, &format!("{repo}/dir/object#1"));
    assert_synced("put", &log, &format!("{repo}/dir"));
    let log = synced(
        &env,
        &shim,
        "cp.log",
        env.cmd(&["cp"], &["dir/object", "copy"]),
    );
    assert_synced("cp", &log, &format!("{repo}/copy#1"));
    assert_synced("cp", &log, &repo);

    // A backup: content objects, the snapshot config and the manifest.
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"backed up").unwrap();
    let backup = er(["backup"])
        .arg(&src)
        .arg(env.repo())
        .args(["--key-setting", &env.key_arg()]);
    let log = synced(&env, &shim, "backup.log", backup);
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("{repo}/backup/snapshots/")) && l.contains(".json#")),
        "manifest not synced before its rename: {log:#?}"
    );
    assert_synced("backup", &log, &format!("{repo}/backup/snapshots"));
    assert_synced("backup", &log, &format!("{repo}/backup/data"));
}

// ---------------------------------------------------------------------------------------------
// stray and damaged files

#[test]
fn a_stray_file_is_named_by_ls_and_verify_and_everything_else_is_still_checked() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    env.put("a", &data(1000, 1));
    env.put("b/c", &data(200_000, 2));
    // Someone saved a note into the repository directory: no sealed object has 6 bytes.
    std::fs::write(env.path("repo/notes.txt"), b"hello\n").unwrap();

    let ls = env.cmd(&["ls"], &[]).run();
    ls.code(6).clean_error();
    let listed = ls.text();
    assert!(
        listed.contains(" a\n") && listed.contains(" b/c\n"),
        "{listed}"
    );
    assert!(!listed.contains("notes.txt"), "{listed}");
    assert!(ls.stderr.contains("BAD notes.txt"), "{}", ls.stderr);
    let j = env.cmd(&["ls"], &["--json"]).run();
    let j = j.code(6).json();
    assert_eq!(j["objects"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["bad"][0]["object"], "notes.txt", "{j}");

    let v = env.cmd(&["verify"], &["--json"]).run();
    let v = v.code(6).json();
    assert_eq!(v["objects"], 3, "{v}");
    assert_eq!(v["bad"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["bad"][0]["object"], "notes.txt", "{v}");
    assert_eq!(v["bytes"], 201_000, "the other two were read whole: {v}");
}

#[test]
fn verify_quiet_still_names_every_bad_object_on_stderr() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    env.put("good", &data(10, 1));
    env.put("victim", &data(200_000, 2));
    flip_byte(&env.path("repo/victim"), 96 + 65_536 + 16 + 10);
    std::fs::write(env.path("repo/stray"), b"x").unwrap();
    let v = env.cmd(&["verify"], &["-q"]).run();
    v.code(6);
    assert!(v.stdout.is_empty(), "-q prints no summary: {}", v.text());
    let bad: Vec<&str> = v.stderr.lines().filter(|l| l.contains("BAD ")).collect();
    assert_eq!(bad.len(), 2, "{}", v.stderr);
    assert!(
        bad[0].contains("stray") && bad[1].contains("victim"),
        "{bad:?}"
    );
    assert!(v.stderr.contains("2 of 3 objects failed"), "{}", v.stderr);
}

/// The single content object of a backup prefix.
fn only_content_object(env: &Env) -> PathBuf {
    let dir = env.path("repo/backup/data");
    let names = super::support::entries(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    dir.join(&names[0])
}

#[test]
fn backup_uploads_again_a_content_object_that_fails_to_verify() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let body = data(100_000, 3);
    std::fs::write(src.join("file"), &body).unwrap();
    let backup = || {
        er(["backup"])
            .arg(&src)
            .arg(env.repo())
            .args(["--key-setting", &env.key_arg(), "--json"])
            .run()
    };
    backup().ok();
    let content = only_content_object(&env);

    // Damaged in its last chunk, then cut to a length no sealed object has: each time the
    // next backup stores it again instead of counting it as stored.
    flip_byte(&content, 96 + 65_536 + 16 + 5);
    env.cmd(&["verify"], &[]).run().code(6);
    let again = backup();
    let j = again.ok().json();
    assert_eq!(
        (j["uploaded_files"].as_u64(), j["skipped_files"].as_u64()),
        (Some(1), Some(0)),
        "{j}"
    );
    env.cmd(&["verify"], &[]).run().ok();

    std::fs::write(&content, b"short").unwrap();
    let j = backup().ok().json();
    assert_eq!(j["uploaded_files"], 1, "{j}");
    env.cmd(&["verify"], &[]).run().ok();

    // And a healthy one is not uploaded again.
    let j = backup().ok().json();
    assert_eq!(
        (j["uploaded_files"].as_u64(), j["skipped_files"].as_u64()),
        (Some(0), Some(1)),
        "{j}"
    );
    let out = env.path("out");
    env.cmd(&["restore"], &[out.to_str().unwrap()]).run().ok();
    assert_eq!(std::fs::read(out.join("file")).unwrap(), body);
}

// ---------------------------------------------------------------------------------------------
// leftovers of interrupted writes

#[test]
fn leftover_staging_files_are_reported_by_verify_and_removed_by_cleanup() {
    let env = Env::new();
    env.init(&[]);
    env.put("big.bin", &data(1000, 1));
    // What a put killed part-way leaves (object_store's staging names), and a get's temporary.
    std::fs::write(env.path("repo/big.bin#1"), data(5000, 2)).unwrap();
    std::fs::create_dir_all(env.path("repo/sub")).unwrap();
    std::fs::write(env.path("repo/sub/part#12"), b"partial").unwrap();
    std::fs::create_dir_all(env.path("repo/.encrypt-repo/keyring")).unwrap();
    std::fs::write(env.path("repo/.encrypt-repo/keyring/0a1b#1"), b"{").unwrap();

    let v = env.cmd(&["verify"], &[]).run();
    v.ok();
    for name in ["big.bin#1", "sub/part#12", ".encrypt-repo/keyring/0a1b#1"] {
        assert!(v.stderr.contains(name), "{name}: {}", v.stderr);
    }
    assert!(
        v.text().contains("3 leftover staging file(s)"),
        "{}",
        v.text()
    );
    let j = env.cmd(&["verify"], &["--json"]).run();
    assert_eq!(j.ok().json()["leftovers"].as_array().unwrap().len(), 3);

    // Fresh files are kept by the default bound (a write may still be going on).
    let c = env.cmd(&["cleanup"], &["--json"]).run();
    let c = c.ok().json();
    assert_eq!(
        (c["removed"].as_array().unwrap().len(), c["kept"].as_u64()),
        (0, Some(3)),
        "{c}"
    );
    let c = env
        .cmd(&["cleanup"], &["--older-than", "0", "--dry-run", "--json"])
        .run();
    assert_eq!(c.ok().json()["removed"].as_array().unwrap().len(), 3);
    assert!(
        env.path("repo/big.bin#1").exists(),
        "a dry run removes nothing"
    );
    env.cmd(&["cleanup"], &["--older-than", "0"]).run().ok();
    for name in ["big.bin#1", "sub/part#12", ".encrypt-repo/keyring/0a1b#1"] {
        assert!(!env.path("repo").join(name).exists(), "{name}");
    }
    let j = env.cmd(&["verify"], &["--json"]).run();
    let j = j.ok().json();
    assert_eq!(j["leftovers"].as_array().unwrap().len(), 0, "{j}");
    assert_eq!(env.get("big.bin"), data(1000, 1));
}

#[test]
fn restore_removes_the_temporary_files_an_interrupted_restore_left() {
    let env = Env::new();
    env.init(&[]);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("top"), b"top").unwrap();
    std::fs::write(src.join("sub/inner"), b"inner").unwrap();
    er(["backup"])
        .arg(&src)
        .arg(env.repo())
        .args(["--key-setting", &env.key_arg()])
        .run()
        .ok();
    let out = env.path("out");
    std::fs::create_dir_all(out.join("sub")).unwrap();
    // What a restore killed part-way leaves beside its targets, and a file of the user's.
    std::fs::write(out.join(".encrypt-repo-restore-0a1b2c"), b"partial").unwrap();
    std::fs::write(out.join("sub/.encrypt-repo-restore-3d4e5f"), b"partial").unwrap();
    std::fs::write(out.join("mine"), b"keep").unwrap();
    let r = env
        .cmd(&["restore"], &[out.to_str().unwrap(), "--json"])
        .run();
    let j = r.ok().json();
    assert_eq!(j["removed_leftovers"], 2, "{j}");
    assert_eq!(
        super::support::entries(&out),
        ["mine", "sub", "top"],
        "nothing but the snapshot and the user's file"
    );
    assert_eq!(super::support::entries(&out.join("sub")), ["inner"]);
}

// ---------------------------------------------------------------------------------------------
// snapshots

#[test]
fn a_tampered_manifest_is_named_and_skipped_by_snapshots_and_restore() {
    let env = Env::new();
    env.init(&[]);
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let backup = || {
        er(["backup"])
            .arg(&src)
            .arg(env.repo())
            .args(["--key-setting", &env.key_arg()])
            .run()
            .ok();
    };
    std::fs::write(src.join("f"), b"first").unwrap();
    backup();
    std::fs::write(src.join("f"), b"second").unwrap();
    backup();
    let list = env.cmd(&["snapshots"], &["--json"]).run();
    let list = list.ok().json();
    let ids: Vec<String> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let host = list["snapshots"][0]["host"].as_str().unwrap().to_owned();
    assert!(!host.is_empty());
    flip_byte(
        &env.path(&format!("repo/backup/snapshots/{}.json", ids[1])),
        120,
    );

    let s = env.cmd(&["snapshots"], &[]).run();
    s.code(6).clean_error();
    assert!(
        s.text().contains(&ids[0]) && !s.text().contains(&ids[1]),
        "{}",
        s.text()
    );
    assert!(
        s.stderr
            .contains(&format!("BAD backup/snapshots/{}.json", ids[1])),
        "{}",
        s.stderr
    );

    let out = env.path("out");
    let r = env
        .cmd(&["restore"], &[out.to_str().unwrap(), "--json"])
        .run();
    let j = r.ok().json();
    assert_eq!(j["snapshot_id"], ids[0].as_str(), "{j}");
    assert!(
        r.stderr.contains(&ids[1]),
        "the skipped manifest is named: {}",
        r.stderr
    );
    assert_eq!(std::fs::read(out.join("f")).unwrap(), b"first");

    // Only this host's snapshots unless told otherwise.
    let other = env
        .cmd(
            &["restore"],
            &[env.path("o").to_str().unwrap(), "--host", "no-such-host"],
        )
        .run();
    other.code(3).clean_error();
    assert!(
        other.stderr.contains("of host no-such-host"),
        "{}",
        other.stderr
    );
    env.cmd(
        &["restore"],
        &[env.path("o2").to_str().unwrap(), "--host", &host],
    )
    .run()
    .ok();
    env.cmd(
        &["restore"],
        &[env.path("o3").to_str().unwrap(), "--any-host"],
    )
    .run()
    .ok();
}

#[test]
fn backup_init_runs_racing_for_a_new_key_file_all_succeed() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            er(["backup", "--init"])
                .arg(&src)
                .arg(env.repo())
                .args(["--key-setting", &env.key_arg()])
                .spawn()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = env.cmd(&["snapshots"], &["--json"]).run();
    assert_eq!(list.ok().json()["snapshots"].as_array().unwrap().len(), 4);
    // No temporary key file is left beside the key.
    let names = super::support::entries(env.tmp.path());
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

// ---------------------------------------------------------------------------------------------
// the command line

#[test]
fn a_user_object_named_rotation_check_survives_keys_rotate() {
    let env = Env::new();
    env.init(&[]);
    env.put(".rotation-check", b"mine");
    let before = env.cmd(&["info"], &["--json"]).run();
    let before = before.ok().json()["data_keys"].as_array().unwrap().len();
    env.cmd(&["keys", "rotate"], &[]).run().ok();
    assert_eq!(env.get(".rotation-check"), b"mine");
    let after = env.cmd(&["info"], &["--json"]).run();
    assert_eq!(
        after.ok().json()["data_keys"].as_array().unwrap().len(),
        before + 1
    );
    // The probe is gone from the reserved prefix too.
    assert!(!env.path("repo/.encrypt-repo/rotation/check").exists());
    let ls = env.cmd(&["ls"], &[]).run();
    assert_eq!(ls.ok().text().lines().count(), 1, "{}", ls.text());
}

#[test]
fn boolean_environment_variables_accept_1_0_true_false_yes_no() {
    let env = Env::new();
    env.init(&[]);
    env.put("o", b"x");
    for (value, quiet) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("no", false),
    ] {
        let out = env.cmd(&["ls"], &[]).env("ENCRYPT_REPO_QUIET", value).run();
        out.ok();
        assert_eq!(
            out.stdout.is_empty(),
            quiet,
            "ENCRYPT_REPO_QUIET={value}: {}",
            out.text()
        );
        let out = env.cmd(&["ls"], &[]).env("ENCRYPT_REPO_JSON", value).run();
        out.ok();
        assert_eq!(
            out.text().starts_with('{'),
            quiet,
            "ENCRYPT_REPO_JSON={value}: {}",
            out.text()
        );
    }
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"f").unwrap();
    let dry = er(["backup"])
        .arg(&src)
        .arg(env.repo())
        .args(["--key-setting", &env.key_arg(), "--json"])
        .env("ENCRYPT_REPO_DRY_RUN", "yes")
        .run();
    assert!(dry.ok().json()["snapshot_id"].is_null());
    let fresh = env.path("fresh");
    let init = er(["backup"])
        .arg(&src)
        .arg(&fresh)
        .args([
            "--key-setting",
            &super::support::key_file_arg(&env.path("fresh.key")),
        ])
        .env("ENCRYPT_REPO_INIT", "1")
        .run();
    init.ok();
    er(["ls"])
        .arg(&fresh)
        .env("ENCRYPT_REPO_QUIET", "maybe")
        .run()
        .code(2);
}

#[test]
fn an_out_of_bounds_range_is_a_usage_error_in_plaintext_offsets() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    env.put("o", &data(100, 1));
    env.put("empty", b"");
    for range in ["100-200", "5000-", "100-", "70000-", "70000-80000"] {
        let out = env.cmd(&["get"], &["o", "-", "--range", range]).run();
        out.code(2).clean_error();
        assert!(
            out.stderr.contains("has 100 bytes") && out.stderr.contains("0-99"),
            "{range}: {}",
            out.stderr
        );
    }
    let out = env.cmd(&["get"], &["empty", "-", "--range", "0-"]).run();
    out.code(2).clean_error();
    // A range running past the end is cut there, as HTTP ranges are.
    let out = env.cmd(&["get"], &["o", "-", "--range", "90-5000"]).run();
    assert_eq!(out.ok().stdout, data(100, 1)[90..]);
}

#[test]
fn names_the_backend_cannot_store_are_usage_errors_with_our_message() {
    let env = Env::new();
    env.init(&[]);
    let long_segment = "a".repeat(300);
    let too_long = vec!["segment"; 150].join("/");
    for (name, says) in [
        ("a#1", "#<digits>"),
        ("dir/b#22", "#<digits>"),
        (
            long_segment.as_str(),
            "cannot be stored by this repository's backend",
        ),
        (too_long.as_str(), "at most 1024"),
    ] {
        let out = env.cmd(&["put"], &[name, "-"]).stdin(b"x").run();
        out.code(2).clean_error();
        assert!(out.stderr.contains(says), "{name}: {}", out.stderr);
    }
    // Names that only look similar are fine.
    env.put("a#b", b"ok");
    env.put("a#1b", b"ok");
    assert_eq!(env.get("a#1b"), b"ok");
}
