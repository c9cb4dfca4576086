//! Format stability: `tests/golden/v1/` was written once by format version 1 (see
//! `tests/golden/make.sh`) and is never rewritten. Every later build must read it byte-exact —
//! each object, the backup snapshot, under the local key and the passphrase — and so must the
//! independent Python reader. A change that breaks this test changes the format: FORMAT.md
//! "Format stability" says what that requires.

use std::path::{Path, PathBuf};

use crate::cli::support::er;

/// A copy of the golden directory (git keeps no file modes, and the key file must be 0600).
fn golden_copy() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst = tmp.path().join("v1");
    copy_tree(&src, &dst);
    for secret in ["local.key", "passphrase.txt"] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dst.join(secret), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    (tmp, dst)
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir").flatten() {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        if from.is_dir() {
            copy_tree(&from, &to);
        } else {
            std::fs::copy(&from, &to).expect("copy");
        }
    }
}

/// Every file under `dir` with its bytes, by relative path, sorted.
pub(crate) fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_version_1_golden_repositories_read_back_byte_exact() {
    let (_tmp, g) = golden_copy();
    let tree = g.join("tree");
    let local = g.join("local").display().to_string();
    let pass = g.join("pass").display().to_string();
    let local_key = format!("key_file={}", g.join("local.key").display());
    let passphrase = format!("passphrase_file={}", g.join("passphrase.txt").display());
    let before = files(&g);

    for (repo, key, objects) in [
        (
            &local,
            &local_key,
            vec![
                ("docs/readme.txt", "notes.txt"),
                ("data/140000.bin", "sub/data.bin"),
                ("empty", "empty"),
            ],
        ),
        (
            &pass,
            &passphrase,
            vec![("notes.txt", "notes.txt"), ("data.bin", "sub/data.bin")],
        ),
    ] {
        for (object, source) in objects {
            let out = er(["get", repo, object, "-"])
                .args(["--key-setting", key])
                .run();
            out.ok();
            let want = std::fs::read(tree.join(source)).expect("source");
            assert!(
                out.stdout == want,
                "{repo} {object}: differs from tree/{source}"
            );
        }
        er(["verify", repo]).args(["--key-setting", key]).run().ok();
    }

    // The snapshot, made on another machine: restored whole, equal to the tree it was made of.
    let snapshots = er(["snapshots", &local, "--json"])
        .args(["--key-setting", &local_key])
        .run();
    snapshots.ok();
    let listed = snapshots.json();
    assert_eq!(listed["bad"], serde_json::json!([]), "{listed}");
    let all = listed["snapshots"].as_array().expect("snapshots");
    assert_eq!(all.len(), 1, "{listed}");
    assert_eq!(all[0]["files"], 4, "{listed}");
    let id = all[0]["id"].as_str().expect("id").to_owned();
    let dest = g.parent().expect("parent").join("restored");
    er([
        "restore",
        &local,
        &dest.display().to_string(),
        "--snapshot",
        &id,
    ])
    .args(["--key-setting", &local_key])
    .run()
    .ok();
    assert_eq!(files(&dest), files(&tree), "restored snapshot differs");

    // The independent reader reads the same objects.
    let out = crate::recover::er_recover(
        &[
            "--key-file",
            &g.join("local.key").display().to_string(),
            &local,
            "cat",
            "data/140000.bin",
        ],
        &[],
    );
    assert_eq!(out.0, 0, "{}", out.2);
    assert!(out.1 == std::fs::read(tree.join("sub/data.bin")).expect("source"));

    // Reading changed nothing in the repositories.
    assert!(
        files(&g) == before,
        "reading the golden repositories changed their files"
    );
}
