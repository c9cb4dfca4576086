//! `backup` → `restore` through the binary: a tree with everything a backup job meets, over a
//! local directory, S3 (moto) and Azure (azurite), with the `local`, `aws-kms` and `openbao`
//! providers (each backend and each provider at least once, not the cross product; the tree holds
//! a 200 MiB file on all three backends), and a backup killed part-way and re-run.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use filetime::FileTime;

use super::services::{self, Backend};
use super::support::{Cmd, Env, data, er};

/// Writes `len` bytes of test data to `path` in pieces (a 200 MiB file never sits in memory).
fn write_big(path: &Path, len: usize, seed: u64) {
    use std::io::Write as _;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let piece = 4 << 20;
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        let n = left.min(piece);
        f.write_all(&data(n, seed.wrapping_add(i))).unwrap();
        left -= n;
        i += 1;
    }
    f.flush().unwrap();
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    filetime::set_symlink_file_times(
        path,
        FileTime::from_unix_time(secs, nanos),
        FileTime::from_unix_time(secs, nanos),
    )
    .unwrap();
}

/// A tree with nested directories, empty files, a file of `big` bytes, symlinks (to a file, to a
/// directory, dangling, absolute), an empty directory, odd names, odd modes and old mtimes with
/// nanoseconds.
fn make_tree(root: &Path, big: usize) {
    let dirs = ["a", "a/b", "a/b/c", "empty-dir", "odd names", "locked"];
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("top.txt", b"top level\n".to_vec(), 0o644),
        ("a/empty", Vec::new(), 0o644),
        ("a/b/empty-too", Vec::new(), 0o600),
        ("a/b/c/deep.bin", data(3 << 20, 11), 0o640),
        ("a/b/c/script.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        ("a/readonly", b"read only".to_vec(), 0o444),
        ("odd names/with space", b"space".to_vec(), 0o644),
        (
            "odd names/\u{fc}n\u{ef}c\u{f6}d\u{e9} \u{1f512}",
            b"unicode".to_vec(),
            0o644,
        ),
        ("odd names/per%cent#hash?q&amp", b"punct".to_vec(), 0o644),
        ("odd names/star*brackets[1]", b"glob".to_vec(), 0o644),
        ("odd names/-leading-dash", b"dash".to_vec(), 0o644),
        ("odd names/.hidden", b"hidden".to_vec(), 0o644),
        ("odd names/back\\slash", b"backslash".to_vec(), 0o644),
        ("odd names/tab\there", b"tab".to_vec(), 0o644),
        ("odd names/new\nline", b"newline".to_vec(), 0o644),
        ("odd names/colon:semi;", b"colon".to_vec(), 0o644),
        ("locked/inside", b"in a 0700 dir".to_vec(), 0o600),
    ];
    for (name, body, mode) in &files {
        let p = root.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let long = "L".repeat(200);
    std::fs::write(root.join("odd names").join(&long), b"long name").unwrap();
    write_big(&root.join("big.bin"), big, 99);
    std::os::unix::fs::symlink("top.txt", root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("a/b", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("a/absolute")).unwrap();
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Old mtimes with nanoseconds on everything, directories last (writing inside changes them).
    let mut all = Vec::new();
    walk(root, root, &mut all);
    all.sort_by_key(|(rel, m)| (m.is_dir(), std::cmp::Reverse(rel.components().count())));
    for (i, (rel, _)) in all.iter().enumerate() {
        set_mtime(
            &root.join(rel),
            1_500_000_000 + i as i64 * 1000,
            123_456_789,
        );
    }
}

/// Every entry under `root` (relative path, lstat metadata), not following symlinks.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((
            e.path().strip_prefix(root).unwrap().to_path_buf(),
            m.clone(),
        ));
        if m.is_dir() {
            walk(root, &e.path(), out);
        }
    }
}

fn same_contents(a: &Path, b: &Path) -> bool {
    use std::io::Read as _;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    }
}

/// Asserts `restored` is `original`: the same entries, kinds, contents, link targets, modes and
/// mtimes (to the nanosecond).
fn assert_same_tree(original: &Path, restored: &Path) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    walk(original, original, &mut a);
    walk(restored, restored, &mut b);
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    let names =
        |v: &[(PathBuf, std::fs::Metadata)]| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "restored entries differ");
    for ((rel, ma), (_, mb)) in a.iter().zip(&b) {
        let what = rel.display();
        assert_eq!(ma.file_type(), mb.file_type(), "{what}: kind");
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "{what}: size");
            assert!(
                same_contents(&original.join(rel), &restored.join(rel)),
                "{what}: contents"
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(original.join(rel)).unwrap(),
                std::fs::read_link(restored.join(rel)).unwrap(),
                "{what}: link target"
            );
        } else {
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{what}: mode");
        }
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{what}: mtime"
        );
    }
}

/// A repository somewhere, with a provider, as flags for every run.
struct Target {
    backend: Backend,
    provider: &'static str,
    key_settings: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Target {
    fn cmd(&self, args: &[&str]) -> Cmd {
        let mut c = self.backend.apply(er(args));
        for s in &self.key_settings {
            c = c.args(["--key-setting", s]);
        }
        for (k, v) in &self.env {
            c = c.env(k, v);
        }
        c
    }

    fn init(&self) {
        self.cmd(&["init", &self.backend.repo, "--key-provider", self.provider])
            .run()
            .ok();
    }

    fn backup(&self, dir: &Path) -> serde_json::Value {
        let out = self
            .cmd(&[
                "backup",
                dir.to_str().unwrap(),
                &self.backend.repo,
                "--json",
            ])
            .run();
        let v = out.ok().json();
        assert!(v["failed"].as_array().is_some_and(Vec::is_empty), "{v}");
        v
    }

    fn restore(&self, dir: &Path) -> serde_json::Value {
        let out = self
            .cmd(&[
                "restore",
                &self.backend.repo,
                dir.to_str().unwrap(),
                "--json",
            ])
            .run();
        out.ok().json()
    }
}

fn local_target(env: &Env) -> Target {
    Target {
        backend: Backend {
            repo: env.repo(),
            options: Vec::new(),
            env: Vec::new(),
        },
        provider: "local",
        key_settings: vec![env.key_arg()],
        env: Vec::new(),
    }
}

/// backup → restore → compare, a second backup uploads nothing, `snapshots` lists both.
fn round_trip(env: &Env, target: &Target, big: usize) {
    let src = env.path("src");
    make_tree(&src, big);
    target.init();
    let started = Instant::now();
    let report = target.backup(&src);
    let backup_time = started.elapsed();
    assert!(report["uploaded_files"].as_u64().unwrap() > 0, "{report}");
    let dst = env.path("restored");
    let started = Instant::now();
    let r = target.restore(&dst);
    eprintln!(
        "{} on {}: backup {backup_time:?}, restore {:?}",
        target.provider,
        target.backend.repo,
        started.elapsed()
    );
    assert!(r["failed"].as_array().is_some_and(Vec::is_empty), "{r}");
    assert_same_tree(&src, &dst);

    let again = target.backup(&src);
    assert_eq!(
        again["uploaded_files"], 0,
        "unchanged tree uploaded again: {again}"
    );
    let list = target
        .cmd(&["snapshots", &target.backend.repo, "--json"])
        .run();
    let list = list.ok().json();
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    // Everything stored authenticates.
    target.cmd(&["verify", &target.backend.repo]).run().ok();
}

#[test]
fn backup_restore_local_directory_local_key_with_a_200_mib_file() {
    let env = Env::new();
    round_trip(&env, &local_target(&env), 200 << 20);
}

#[test]
fn backup_restore_s3_on_moto_with_aws_kms_and_a_200_mib_file() {
    let env = Env::new();
    let backend = services::s3();
    let (key_settings, kms_env) = services::kms_key();
    let target = Target {
        backend,
        provider: "aws-kms",
        key_settings,
        env: kms_env,
    };
    round_trip(&env, &target, 200 << 20);
}

#[test]
fn backup_restore_azure_on_azurite_with_openbao_and_a_200_mib_file() {
    let env = Env::new();
    let bao = services::bao();
    let (_key, _policy, key_settings) = bao.key_with_token(env.tmp.path());
    let target = Target {
        backend: services::azure(),
        provider: "openbao",
        key_settings,
        env: Vec::new(),
    };
    round_trip(&env, &target, 200 << 20);
}

#[test]
fn backup_restore_s3_on_moto_with_a_local_key() {
    let env = Env::new();
    let target = Target {
        backend: services::s3(),
        provider: "local",
        key_settings: vec![env.key_arg()],
        env: Vec::new(),
    };
    round_trip(&env, &target, 8 << 20);
}

/// Regular files under the repository directory outside the reserved prefix.
fn stored_objects(repo: &Path) -> usize {
    let mut all = Vec::new();
    if repo.exists() {
        walk(repo, repo, &mut all);
    }
    all.iter()
        .filter(|(rel, m)| m.is_file() && !rel.starts_with(".encrypt-repo"))
        .count()
}

#[test]
fn an_interrupted_backup_reruns_uploading_only_the_remainder() {
    let env = Env::new();
    let target = local_target(&env);
    target.init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    const FILES: u64 = 40;
    for i in 0..FILES {
        write_big(&src.join(format!("f{i:02}")), 3 << 20, i * 1000);
    }
    let repo = PathBuf::from(env.repo());
    let mut child = target
        .cmd(&[
            "backup",
            src.to_str().unwrap(),
            &env.repo(),
            "--concurrency",
            "1",
        ])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = stored_objects(&repo);
        if stored >= 3 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("backup ended ({status}) before it could be interrupted ({stored} objects)");
        }
        assert!(Instant::now() < deadline, "no data objects within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "backup finished before it was killed");
    let before = stored_objects(&repo);
    assert!(
        (before as u64) < FILES,
        "killed too late: {before} objects stored"
    );

    let report = target.backup(&src);
    let uploaded = report["uploaded_files"].as_u64().unwrap();
    let skipped = report["skipped_files"].as_u64().unwrap();
    assert_eq!(report["files"], FILES, "{report}");
    assert_eq!(uploaded + skipped, FILES, "{report}");
    assert!(
        skipped >= 1,
        "nothing of the interrupted run was reused: {report}"
    );
    assert!(uploaded < FILES, "everything uploaded again: {report}");
    let dst = env.path("restored");
    target.restore(&dst);
    assert_same_tree(&src, &dst);
}

#[test]
fn restore_after_a_stored_file_is_tampered_exits_6_and_restores_the_rest() {
    let env = Env::new();
    let target = local_target(&env);
    target.init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..5u64 {
        std::fs::write(src.join(format!("f{i}")), data(100_000 + i as usize, i)).unwrap();
    }
    target.backup(&src);
    // The largest stored object not under .encrypt-repo is a file's data (manifests are small).
    let repo = PathBuf::from(env.repo());
    let mut all = Vec::new();
    walk(&repo, &repo, &mut all);
    let (victim, _) = all
        .iter()
        .filter(|(rel, m)| m.is_file() && !rel.starts_with(".encrypt-repo"))
        .max_by_key(|(_, m)| m.len())
        .unwrap();
    super::support::flip_byte(&repo.join(victim), 5000);
    let victim_name = victim.to_string_lossy().into_owned();

    let v = target.cmd(&["verify", &env.repo()]).run();
    v.code(6);
    assert!(v.text().contains(&victim_name), "{}", v.text());

    let dst = env.path("restored");
    let out = target
        .cmd(&["restore", &env.repo(), dst.to_str().unwrap(), "--json"])
        .run();
    let r = out.code(6).json();
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r}");
    let bad = failed[0]["path"].as_str().unwrap().trim_start_matches('/');
    for i in 0..5u64 {
        let name = format!("f{i}");
        if name == bad {
            assert!(!dst.join(&name).exists(), "a tampered file was restored");
        } else {
            assert!(
                std::fs::read(dst.join(&name)).unwrap() == data(100_000 + i as usize, i),
                "{name}"
            );
        }
    }
}

#[test]
fn dry_run_writes_nothing_and_missing_things_exit_3() {
    let env = Env::new();
    let target = local_target(&env);
    target.init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"dry").unwrap();
    let repo = PathBuf::from(env.repo());
    let out = target
        .cmd(&[
            "backup",
            src.to_str().unwrap(),
            &env.repo(),
            "--dry-run",
            "--json",
        ])
        .run();
    let report = out.ok().json();
    assert_eq!(report["files"], 1, "{report}");
    let stored = stored_objects(&repo);
    assert_eq!(stored, 0, "--dry-run stored {stored} objects");

    let missing = env.path("no-such-dir");
    target
        .cmd(&["backup", missing.to_str().unwrap(), &env.repo()])
        .run()
        .code(3)
        .clean_error();
    // Nothing backed up yet: no snapshot to restore.
    let dst = env.path("restored");
    target
        .cmd(&["restore", &env.repo(), dst.to_str().unwrap()])
        .run()
        .code(3)
        .clean_error();
    target.backup(&src);
    let out = target
        .cmd(&[
            "restore",
            &env.repo(),
            dst.to_str().unwrap(),
            "--snapshot",
            "20000101T000000Z-deadbeef",
        ])
        .run();
    out.code(3).clean_error();
    assert!(
        out.stderr.contains("20000101T000000Z-deadbeef"),
        "{}",
        out.stderr
    );
}
