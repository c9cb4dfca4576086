//! End-to-end tests of the `encrypt-repo` binary (issue 5, "Must show"): each test runs the real
//! executable with `std::process::Command` in a tempdir of its own and checks what a backup job
//! would see — exit codes, stdout, stderr and the files left behind.
//!
//! ```text
//! bash tests/services.sh start && source target/services.env   # S3, Azure, KMS, OpenBao tests
//! cargo test -p encrypt-repo --test integration cli
//! ```
//!
//! Tests that need a service fail (never skip) with the command above when it is unreachable.
//!
//! Exit codes under test: 0 ok, 1 other, 2 usage, 3 not found, 4 authentication failed, 5 key
//! unavailable or locked, 6 partial failure. Re-running `init` with settings that differ from the
//! registration (another chunk size) is a usage error, exit 2: the command line asks for
//! something the repository cannot become.

// Test code: helpers are `pub` for sibling modules only, and failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod audit;
mod backup;
mod bench;
mod durability;
mod serve;
pub(crate) mod services;
pub(crate) mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::{Env, data, entries, er, flip_byte};

// ---------------------------------------------------------------------------------------------
// init and info

#[test]
fn init_prints_the_id_warns_about_the_key_and_info_shows_the_registration() {
    let env = Env::new();
    let out = env.init(&[]);
    let text = out.text();
    let id = text
        .split_whitespace()
        .find(|w| w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no repository id in {text:?}"));
    assert!(
        out.stderr.contains("BACK IT UP") && out.stderr.contains(&env.key().display().to_string()),
        "no loud warning naming the key file: {}",
        out.stderr
    );
    let mode = std::fs::metadata(env.key()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");

    let info = env.cmd(&["info"], &[]).run();
    info.ok();
    let t = info.text();
    for want in [
        id,
        "key provider: local",
        "data keys: 0",
        "locked: no",
        "encrypted: true",
    ] {
        assert!(t.contains(want), "info lacks {want:?}: {t}");
    }
    let j = env.cmd(&["info"], &["--json"]).run();
    let j = j.ok().json();
    assert_eq!(j["repository_id"], id);
    assert_eq!(
        j["registration"]["crypto_settings"]["key_provider_type"],
        "local"
    );
    assert!(j["data_keys"].is_array() && j["locked"].is_null(), "{j}");

    // The same settings again: fine, same id, no second key warning.
    let again = env.init(&[]);
    assert!(again.text().contains(id), "{}", again.text());
    assert!(!again.stderr.contains("BACK IT UP"), "{}", again.stderr);
    // Another chunk size: refused as a usage error naming the field.
    let other = er(["init", &env.repo(), "--key-provider", "local"])
        .args(["--key-setting", &env.key_arg(), "--chunk-size", "64KiB"])
        .run();
    other.code(2).clean_error();
    assert!(other.stderr.contains("chunk_size"), "{}", other.stderr);
}

#[test]
fn flags_come_from_environment_variables_too() {
    let env = Env::new();
    er(["init"])
        .env("ENCRYPT_REPO_REPOSITORY", env.repo())
        .env("ENCRYPT_REPO_KEY_PROVIDER", "local")
        .env("ENCRYPT_REPO_KEY_SETTING", env.key_arg())
        .env("ENCRYPT_REPO_CHUNK_SIZE", "64KiB")
        .run()
        .ok();
    let j = er(["info"])
        .env("ENCRYPT_REPO_REPOSITORY", env.repo())
        .env("ENCRYPT_REPO_KEY_SETTING", env.key_arg())
        .env("ENCRYPT_REPO_JSON", "true")
        .run();
    let j = j.ok().json();
    assert_eq!(j["registration"]["chunk_size"], 65536, "{j}");
    let v = er(["info"])
        .env("ENCRYPT_REPO_REPOSITORY", env.repo())
        .env("ENCRYPT_REPO_KEY_SETTING", env.key_arg())
        .env("ENCRYPT_REPO_VERBOSE", "1")
        .run();
    assert!(v.ok().stderr.contains("done in"), "{}", v.stderr);
    let q = er(["info"])
        .env("ENCRYPT_REPO_REPOSITORY", env.repo())
        .env("ENCRYPT_REPO_KEY_SETTING", env.key_arg())
        .env("ENCRYPT_REPO_QUIET", "true")
        .run();
    assert!(q.ok().stdout.is_empty(), "{}", q.text());
}

// ---------------------------------------------------------------------------------------------
// put, get, ls, rm, cp

#[test]
fn put_and_get_round_trip_through_files_stdin_and_stdout() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    let original = data(300_000, 1);
    let src = env.file("src.bin", &original);

    // file → file
    env.cmd(&["put"], &["dir/from-file", src.to_str().unwrap()])
        .run()
        .ok();
    let dst = env.path("dst.bin");
    env.cmd(&["get"], &["dir/from-file", dst.to_str().unwrap()])
        .run()
        .ok();
    assert!(
        std::fs::read(&dst).unwrap() == original,
        "file → file differs"
    );

    // stdin (-) → stdout (-)
    env.cmd(&["put"], &["dir/from-stdin", "-"])
        .stdin(&original)
        .run()
        .ok();
    assert!(
        env.get("dir/from-stdin") == original,
        "stdin → stdout differs"
    );
    // stdin by default (no FILE) and stdout by default when stdout is a pipe.
    env.cmd(&["put"], &["empty"]).run().ok();
    let out = env.cmd(&["get"], &["dir/from-file"]).run();
    assert!(
        out.ok().stdout == original,
        "get without FILE to a pipe differs"
    );
    assert!(env.get("empty").is_empty());

    // Overwriting an existing output file replaces it.
    env.cmd(&["get"], &["empty", dst.to_str().unwrap()])
        .run()
        .ok();
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);

    // A missing input file: not found.
    env.cmd(&["put"], &["x", env.path("nope").to_str().unwrap()])
        .run()
        .code(3)
        .clean_error();
}

/// A file larger than `get`'s early-writeback step (32 MiB): the writeback thread runs while
/// the file is written, and the result is still exactly the object.
#[test]
fn get_of_a_large_object_writes_it_exactly() {
    let env = Env::new();
    env.init(&[]);
    let original = data(70 << 20, 7);
    let src = env.file("big.bin", &original);
    env.cmd(&["put"], &["big", src.to_str().unwrap()])
        .run()
        .ok();
    let dst = env.path("big.out");
    env.cmd(&["get"], &["big", dst.to_str().unwrap()])
        .run()
        .ok();
    assert!(
        std::fs::read(&dst).unwrap() == original,
        "70 MiB get differs"
    );
}

/// `get` to a terminal: refused without `-`, written with it. The terminal is a pty from
/// util-linux `script`, which returns the child's exit code with `-e`.
#[test]
fn get_refuses_to_write_to_a_terminal_unless_given_dash() {
    let env = Env::new();
    env.init(&[]);
    env.put("o", b"terminal bytes");
    let in_pty = |extra: &str| {
        let line = format!(
            "{} get {} o {extra} --key-setting {}",
            support::BIN,
            env.repo(),
            env.key_arg()
        );
        std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running script(1) from util-linux")
    };
    let refused = in_pty("");
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(2), "{text}");
    assert!(
        text.contains("refusing to write") && !text.contains("terminal bytes"),
        "{text}"
    );
    let written = in_pty("-");
    let text = String::from_utf8_lossy(&written.stdout);
    assert_eq!(written.status.code(), Some(0), "{text}");
    assert!(text.contains("terminal bytes"), "{text}");
    assert!(
        !text.contains("ETA"),
        "a progress bar was drawn over the object: {text:?}"
    );
}

#[test]
fn ls_shows_plaintext_sizes_and_hides_the_reserved_prefix_rm_deletes_cp_reencrypts() {
    let env = Env::new();
    env.init(&[]);
    env.put("a/one", &data(1234, 2));
    env.put("a/two", &data(70_000, 3));
    env.put("b", b"");

    let ls = env.cmd(&["ls"], &[]).run();
    let t = ls.ok().text();
    assert!(!t.contains(".encrypt-repo"), "{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(
        lines[0].trim_start().starts_with("1234 ") && lines[0].ends_with("a/one"),
        "{t}"
    );
    assert!(
        lines[1].trim_start().starts_with("70000 ") && lines[1].ends_with("a/two"),
        "{t}"
    );
    assert!(
        lines[2].trim_start().starts_with("0 ") && lines[2].ends_with(" b"),
        "{t}"
    );
    let under_a = env.cmd(&["ls"], &["a"]).run();
    assert_eq!(under_a.ok().text().lines().count(), 2);
    let j = env.cmd(&["ls"], &["--json"]).run();
    let j = j.ok().json();
    assert_eq!(j["objects"][1]["size"], 70_000, "{j}");

    // cp re-encrypts: the copy reads, and its stored bytes are not the original's (path binding).
    env.cmd(&["cp"], &["a/two", "c/copy"]).run().ok();
    assert!(env.get("c/copy") == data(70_000, 3));
    let raw_from = std::fs::read(env.path("repo/a/two")).unwrap();
    let raw_to = std::fs::read(env.path("repo/c/copy")).unwrap();
    assert_ne!(
        raw_from, raw_to,
        "cp copied ciphertext bound to the old path"
    );
    // A raw copy (not through encrypt-repo) is refused: objects are bound to their path.
    std::fs::copy(env.path("repo/a/two"), env.path("repo/moved")).unwrap();
    env.cmd(&["get"], &["moved", "-"])
        .run()
        .code(4)
        .clean_error();
    std::fs::remove_file(env.path("repo/moved")).unwrap();

    env.cmd(&["rm"], &["a/one", "b"]).run().ok();
    let t = env.cmd(&["ls"], &[]).run().text();
    assert!(!t.contains("a/one") && !t.contains(" b\n"), "{t}");
    assert!(t.contains("a/two") && t.contains("c/copy"), "{t}");
    env.cmd(&["get"], &["a/one", "-"])
        .run()
        .code(3)
        .clean_error();
    // The reserved prefix is not an object name.
    env.cmd(&["put"], &[".encrypt-repo/registration.json", "-"])
        .stdin(b"x")
        .run()
        .code(2)
        .clean_error();
}

// ---------------------------------------------------------------------------------------------
// ranges

#[test]
fn ranges_equal_the_same_slice_of_the_original() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    const C: usize = 64 << 10;
    let n = 3 * C + 5000; // four chunks, the last one short
    let original = data(n, 4);
    env.put("obj", &original);
    let incl = |a: usize, b: usize| (format!("{a}-{b}"), a..b + 1);
    let cases = [
        incl(0, 0),
        incl(0, 99),
        incl(1000, 2000),                          // inside the first chunk
        incl(C + 10, C + 20000),                   // the middle of the object
        incl(C - 5, C + 4),                        // across one boundary
        incl(C - 1, 2 * C),                        // a whole chunk and a byte either side
        incl(100, 3 * C + 10),                     // across three boundaries
        incl(3 * C, n - 1),                        // exactly the last chunk
        incl(n - 10, n - 1),                       // the end
        incl(n - 1, n - 1),                        // the last byte
        (format!("{}-", 2 * C + 7), 2 * C + 7..n), // START-
        ("0-".to_owned(), 0..n),
        ("-5000".to_owned(), n - 5000..n),     // the last N bytes
        (format!("-{}", C + 1), n - C - 1..n), // a suffix across a boundary
    ];
    for (range, slice) in cases {
        let out = env.cmd(&["get"], &["obj", "-", "--range", &range]).run();
        out.ok();
        assert!(
            out.stdout == original[slice.clone()],
            "--range {range}: got {} bytes, expected {} (bytes {slice:?})",
            out.stdout.len(),
            slice.len()
        );
        // The same through a file.
        let f = env.path("range.out");
        env.cmd(&["get"], &["obj", f.to_str().unwrap(), "-r", &range])
            .run()
            .ok();
        assert!(
            std::fs::read(&f).unwrap() == original[slice],
            "--range {range} to a file"
        );
    }
    for bad in ["abc", "5-2", "-", "", "1-x", "x-", "--3", "1-2-3"] {
        let out = env
            .cmd(&["get"], &["obj", "-", &format!("--range={bad}")])
            .run();
        out.code(2).clean_error();
        assert!(out.stdout.is_empty(), "--range {bad:?} wrote output");
    }
    // A range that starts past the end is a usage error too.
    env.cmd(
        &["get"],
        &["obj", "-", "--range", &format!("{}-{}", n + 10, n + 20)],
    )
    .run()
    .code(2)
    .clean_error();
}

// ---------------------------------------------------------------------------------------------
// tampering, wrong keys, not found, usage

#[test]
fn a_flipped_byte_is_named_by_verify_refused_by_get_and_harms_nothing_else() {
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    let objects = [
        ("good/one", data(10, 5)),
        ("good/two", data(200_000, 6)),
        ("bad/victim", data(200_000, 7)),
        ("good/three", Vec::new()),
    ];
    for (name, body) in &objects {
        env.put(name, body);
    }
    env.cmd(&["verify"], &[]).run().ok();
    // In the third chunk (96-byte header, 64 KiB + 16-byte tag per chunk): the first two chunks
    // verify and would reach a careless output file before the failure.
    flip_byte(&env.path("repo/bad/victim"), 96 + 2 * (65_536 + 16) + 100);

    let v = env.cmd(&["verify"], &[]).run();
    v.code(6);
    let bad_lines: Vec<&str> = std::str::from_utf8(&v.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("BAD"))
        .collect();
    assert_eq!(bad_lines.len(), 1, "{}", v.text());
    assert!(bad_lines[0].contains("bad/victim"), "{}", v.text());
    let j = env.cmd(&["verify"], &["--json"]).run();
    let j = j.code(6).json();
    assert_eq!(j["bad"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["bad"][0]["object"], "bad/victim", "{j}");
    assert_eq!(j["objects"], 4, "{j}");
    // Only the damaged prefix, then only the healthy one.
    env.cmd(&["verify"], &["--prefix", "bad"]).run().code(6);
    env.cmd(&["verify"], &["--prefix", "good"]).run().ok();

    let outdir = env.path("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("victim");
    let get = env
        .cmd(&["get"], &["bad/victim", target.to_str().unwrap()])
        .run();
    get.code(4).clean_error();
    assert!(get.stderr.contains("bad/victim"), "{}", get.stderr);
    assert!(
        get.stderr.contains("authentication failed"),
        "{}",
        get.stderr
    );
    assert!(
        entries(&outdir).is_empty(),
        "get of a tampered object left {:?}",
        entries(&outdir)
    );
    // A range inside the intact chunks still reads; one touching the damaged chunk does not.
    let head = env
        .cmd(&["get"], &["bad/victim", "-", "--range", "0-65535"])
        .run();
    assert!(head.ok().stdout == objects[2].1[..65_536]);
    env.cmd(&["get"], &["bad/victim", "-", "--range", "140000-140010"])
        .run()
        .code(4);

    for (name, body) in objects.iter().filter(|(n, _)| n.starts_with("good")) {
        let f = outdir.join("ok");
        env.cmd(&["get"], &[name, f.to_str().unwrap()]).run().ok();
        assert!(
            &std::fs::read(&f).unwrap() == body,
            "{name} no longer reads"
        );
    }
}

#[test]
fn a_wrong_key_file_exits_4_saying_the_key_does_not_match() {
    let env = Env::new();
    env.init(&[]);
    env.put("o", b"secret");
    // Another local key: created by registering a second repository with it.
    let other_key = env.path("other.key");
    er(["init", env.path("other-repo").to_str().unwrap()])
        .args(["--key-provider", "local", "--key-setting"])
        .arg(support::key_file_arg(&other_key))
        .run()
        .ok();
    for args in [&["get", "o", "-"][..], &["ls"], &["info"], &["verify"]] {
        let out = er(&args[..1])
            .arg(env.repo())
            .args(&args[1..])
            .args(["--key-setting", &support::key_file_arg(&other_key)])
            .run();
        out.code(4).clean_error();
        assert!(out.stdout.is_empty(), "{}", out.text());
        assert!(out.stderr.contains("does not match"), "{}", out.stderr);
        assert!(out.stderr.contains("other.key"), "{}", out.stderr);
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    }
    // A key file that is not there: the key is unavailable (5), and the message names the file.
    let gone = env.path("gone.key");
    let out = er(["get", &env.repo(), "o", "-", "--key-setting"])
        .arg(support::key_file_arg(&gone))
        .run();
    out.code(5).clean_error();
    assert!(out.stderr.contains("gone.key"), "{}", out.stderr);
    // The right key still reads.
    assert_eq!(env.get("o"), b"secret");
}

/// The registration records what the key is (its fingerprint), never where the key file is:
/// a command without `--key-setting` is refused naming `key_file` (it does not quietly use a
/// path recorded at `init`), and a misspelled setting name is a usage error naming it.
#[test]
fn the_key_file_is_named_on_every_run_and_misspelled_settings_are_refused() {
    let env = Env::new();
    env.init(&[]);
    env.put("o", b"secret");
    let reg = std::fs::read_to_string(env.path("repo/.encrypt-repo/registration.json")).unwrap();
    let reg: serde_json::Value = serde_json::from_str(&reg).unwrap();
    let settings = &reg["crypto_settings"]["settings"];
    assert!(
        settings["fingerprint"].is_string() && settings.as_object().unwrap().len() == 1,
        "the registration records more than the key's identity: {reg}"
    );
    assert!(!reg.to_string().contains("master.key"), "{reg}");

    let out = er(["get", &env.repo(), "o", "-"]).run();
    out.code(2).clean_error();
    assert!(out.stderr.contains("key_file"), "{}", out.stderr);

    let typo = er(["get", &env.repo(), "o", "-"])
        .args([
            "--key-setting",
            &env.key_arg(),
            "--key-setting",
            "key_fiel=x",
        ])
        .run();
    typo.code(2).clean_error();
    assert!(
        typo.stderr.contains("key_fiel") && typo.stderr.contains("unknown"),
        "{}",
        typo.stderr
    );
    let typo = er([
        "init",
        env.path("r2").to_str().unwrap(),
        "--key-provider",
        "local",
    ])
    .args(["--key-setting", "key-file=x"])
    .run();
    typo.code(2).clean_error();
    assert!(typo.stderr.contains("key-file"), "{}", typo.stderr);
    assert!(!env.path("r2/.encrypt-repo/registration.json").exists());
    assert_eq!(env.get("o"), b"secret");
}

#[test]
fn missing_repositories_objects_and_bad_flags_have_their_exit_codes() {
    let env = Env::new();
    // No directory at all.
    let missing = env.path("nowhere").display().to_string();
    er(["info", &missing]).run().code(3).clean_error();
    er(["get", &missing, "o", "-"]).run().code(3).clean_error();
    // A directory that holds no repository.
    std::fs::create_dir(env.path("empty")).unwrap();
    let out = er(["ls", env.path("empty").to_str().unwrap()]).run();
    out.code(3).clean_error();
    assert!(out.stderr.contains("init"), "{}", out.stderr);

    env.init(&[]);
    let out = env.cmd(&["get"], &["no/such/object", "-"]).run();
    out.code(3).clean_error();
    assert!(out.stderr.contains("no/such/object"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let target = env.path("never");
    env.cmd(&["get"], &["no/such/object", target.to_str().unwrap()])
        .run()
        .code(3);
    assert!(!target.exists());
    env.cmd(&["rm"], &["no/such/object"]).run().code(3);
    env.cmd(&["cp"], &["no/such/object", "x"]).run().code(3);

    er(["--no-such-flag"]).run().code(2);
    er(["get"]).run().code(2);
    er(["frobnicate"]).run().code(2);
    env.cmd(&["ls"], &["--bogus"]).run().code(2);
    er(["init", &env.repo()]).run().code(2); // no --key-provider
    er([
        "init",
        env.path("r2").to_str().unwrap(),
        "--key-provider",
        "no-such-type",
    ])
    .run()
    .code(2)
    .clean_error();
    env.cmd(&["ls"], &[])
        .arg("--key-setting=novalue")
        .run()
        .code(2);
    er(["--help"]).run().ok();
    er(["--version"]).run().ok();
}

// ---------------------------------------------------------------------------------------------
// OpenBao: a revoked key

#[test]
fn a_withdrawn_openbao_policy_exits_5_naming_provider_and_key() {
    let bao = services::bao();
    let env = Env::new();
    let (key, policy, settings) = bao.key_with_token(env.tmp.path());
    let mut init = er(["init", &env.repo(), "--key-provider", "openbao"]);
    for s in &settings {
        init = init.args(["--key-setting", s]);
    }
    init.run().ok();
    let with_settings = |cmd: support::Cmd| {
        settings
            .iter()
            .fold(cmd, |c, s| c.args(["--key-setting", s]))
    };
    with_settings(er(["put", &env.repo(), "o", "-"]))
        .stdin(b"under openbao")
        .run()
        .ok();
    let out = with_settings(er(["get", &env.repo(), "o", "-"])).run();
    assert_eq!(out.ok().stdout, b"under openbao");

    bao.set_policy(
        &policy,
        r#"path "transit/keys/none" { capabilities = ["read"] }"#,
    );
    let target = env.path("o.out");
    let out = with_settings(er(["get", &env.repo(), "o", target.to_str().unwrap()])).run();
    out.code(5).clean_error();
    assert!(
        out.stderr.contains("openbao") && out.stderr.contains(&key),
        "does not name provider and key: {}",
        out.stderr
    );
    assert!(!target.exists());
    let out = with_settings(er(["keys", "status", &env.repo()])).run();
    out.code(5).clean_error();
    // Access restored: it reads again.
    bao.set_policy(&policy, &services::minimal_policy(&key));
    let out = with_settings(er(["get", &env.repo(), "o", "-"])).run();
    assert_eq!(out.ok().stdout, b"under openbao");
}

// ---------------------------------------------------------------------------------------------
// --json and -q

#[test]
fn json_output_of_every_command_parses_and_quiet_prints_nothing() {
    let env = Env::new();
    let j = er(["init", &env.repo(), "--key-provider", "local", "--json"])
        .args(["--key-setting", &env.key_arg()])
        .run();
    let j = j.ok().json();
    assert_eq!(j["newly_registered"], true, "{j}");
    assert_eq!(j["created_key_material"], true, "{j}");
    // The key warning is in the object and still on stderr, for the job's log.
    assert!(j["warning"].as_str().unwrap().contains("BACK IT UP"), "{j}");
    let j = er([
        "init",
        env.path("r-q").to_str().unwrap(),
        "--key-provider",
        "local",
        "-q",
    ])
    .args(["--key-setting"])
    .arg(support::key_file_arg(&env.path("q.key")))
    .run();
    assert!(
        j.ok().stdout.is_empty() && j.stderr.contains("BACK IT UP"),
        "{j:?}"
    );
    let src = env.file("src", b"json please");
    let dst = env.path("dst");
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let tree = env.path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/file"), b"in a tree").unwrap();
    let tree_dir = tree.to_str().unwrap();
    let restored = env.path("restored");
    let restore_dir = restored.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["info"],
        vec!["put", "o", s],
        vec!["get", "o", d],
        vec!["get", "o", d, "--range", "0-3"],
        vec!["ls"],
        vec!["cp", "o", "p"],
        vec!["verify"],
        vec!["rm", "p"],
        vec!["keys", "status"],
        vec!["keys", "rotate"],
        vec!["backup", tree_dir],
        vec!["snapshots"],
        vec!["restore", restore_dir],
    ];
    for c in &commands {
        let (cmd, rest) = split_command(c);
        let out = env.cmd(&cmd, &rest).arg("--json").run();
        let v = out.ok().json();
        assert!(v.get("error").is_none(), "{c:?}: {v}");
    }
    // Errors: one object with the message and the exit code, on stdout.
    let errors: Vec<(Vec<&str>, i32)> = vec![
        (vec!["get", "missing", d], 3),
        (vec!["get", "o", "-", "--range", "9-1"], 2),
        (vec!["keys", "shred", "--all"], 2),
        (vec!["rm", "missing"], 3),
    ];
    for (c, code) in &errors {
        let (cmd, rest) = split_command(c);
        let out = env.cmd(&cmd, &rest).arg("--json").run();
        let v = out.code(*code).json();
        assert_eq!(v["exit_code"], *code, "{c:?}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{c:?}: {v}"
        );
    }
    let v = er(["info", env.path("nowhere").to_str().unwrap(), "--json"]).run();
    assert_eq!(v.code(3).json()["exit_code"], 3);
    // Usage errors found by the parser are JSON too.
    let v = er(["ls", "--json", "--bogus"]).run();
    assert_eq!(v.code(2).json()["exit_code"], 2);

    // -q: nothing on stdout for every command that succeeds (and `get` to a file).
    for c in &commands {
        let (cmd, rest) = split_command(c);
        let out = env.cmd(&cmd, &rest).arg("-q").run();
        out.ok();
        assert!(out.stdout.is_empty(), "{c:?} -q printed {:?}", out.text());
    }
    let again = er(["init", &env.repo(), "--key-provider", "local", "-q"])
        .args(["--key-setting", &env.key_arg()])
        .run();
    assert!(again.ok().stdout.is_empty(), "{}", again.text());
    // -q still reports errors on stderr.
    let out = env.cmd(&["get"], &["missing", d, "-q"]).run();
    out.code(3).clean_error();
}

fn split_command<'a>(c: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    // `keys` has subcommands; `backup` takes its directory before the repository.
    let n = if matches!(c[0], "keys" | "backup") {
        2
    } else {
        1
    };
    (c[..n].to_vec(), c[n..].to_vec())
}

// ---------------------------------------------------------------------------------------------
// key lifecycle

#[test]
fn keys_status_rotate_shred_and_rewrap_to_another_local_key() {
    let env = Env::new();
    env.init(&[]);
    env.put("first", b"one");
    let status = env.cmd(&["keys", "status"], &["--json"]).run();
    let status = status.ok().json();
    assert_eq!(status["data_keys"].as_array().unwrap().len(), 1, "{status}");
    let t = env.cmd(&["keys", "status"], &[]).run();
    assert!(t.ok().text().contains("local"), "{}", t.text());

    let first_key = status["data_keys"][0]["id"].as_str().unwrap().to_owned();

    let r = env.cmd(&["keys", "rotate"], &["--json"]).run();
    let r = r.ok().json();
    let (before, after) = (
        r["data_keys_before"].as_u64().unwrap(),
        r["data_keys_after"].as_u64().unwrap(),
    );
    assert_eq!((before, after), (1, 2), "{r}");
    env.put("second", b"two");
    let keys = env.cmd(&["keys", "status"], &["--json"]).run().json();
    let ids: Vec<&str> = keys["data_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    // Each writing process starts a data key of its own (none is reused across processes).
    assert!(
        ids.len() >= 2 && ids.contains(&first_key.as_str()),
        "{keys}"
    );

    // Rewrap to a new local key (created by the rewrap itself).
    let new_key = env.path("new.key");
    let rw = er(["keys", "rewrap", &env.repo(), "--to-provider", "local"])
        .args(["--key-setting", &env.key_arg(), "--to-setting"])
        .arg(support::key_file_arg(&new_key))
        .run();
    rw.ok();
    assert!(
        new_key.exists(),
        "rewrap did not create {}",
        new_key.display()
    );
    let with_new = |c: &[&str]| {
        let (cmd, rest) = split_command(c);
        er(cmd)
            .arg(env.repo())
            .args(rest)
            .args(["--key-setting", &support::key_file_arg(&new_key)])
            .run()
    };
    assert_eq!(with_new(&["get", "first", "-"]).ok().stdout, b"one");
    assert_eq!(with_new(&["get", "second", "-"]).ok().stdout, b"two");
    let old = env.cmd(&["get"], &["first", "-"]).run();
    old.code(4).clean_error();

    // Shred needs --yes.
    with_new(&["keys", "shred", &first_key])
        .code(2)
        .clean_error();
    with_new(&["keys", "shred", "not-hex", "--yes"]).code(2);
    with_new(&["keys", "shred", &first_key, "--yes"]).ok();
    // The object under the shredded key is gone for good (exit 5); the other still reads.
    let gone = with_new(&["get", "first", "-"]);
    gone.code(5).clean_error();
    assert!(gone.stderr.contains("shredded"), "{}", gone.stderr);
    assert_eq!(with_new(&["get", "second", "-"]).ok().stdout, b"two");
    with_new(&["keys", "shred", "--all", "--yes"]).ok();
    with_new(&["get", "second", "-"]).code(5).clean_error();
}

// ---------------------------------------------------------------------------------------------
// completions and man

#[test]
fn completions_and_man_page_are_printed() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = er(["completions", shell]).run();
        assert!(out.ok().text().contains("encrypt-repo"), "{shell}");
    }
    er(["completions", "tcsh"]).run().code(2);
    let man = er(["man"]).run();
    let t = man.ok().text();
    assert!(t.contains(".TH") && t.contains("encrypt-repo"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// cloud backends through repository URLs

/// put/get/ls/range/verify/rm over a cloud repository URL with the provider given.
fn objects_round_trip(target: &services::Backend, provider: &str, key_settings: &[String]) {
    let with = |args: &[&str]| {
        let mut c = target.apply(er(args));
        for s in key_settings {
            c = c.args(["--key-setting", s]);
        }
        c
    };
    let repo = target.repo.as_str();
    with(&[
        "init",
        repo,
        "--key-provider",
        provider,
        "--chunk-size",
        "64KiB",
    ])
    .run()
    .ok();
    let body = data(300_000, 21);
    with(&["put", repo, "dir/obj", "-"]).stdin(&body).run().ok();
    let out = with(&["get", repo, "dir/obj", "-"]).run();
    assert!(
        out.ok().stdout == body,
        "{provider} on {repo}: round trip differs"
    );
    let out = with(&["get", repo, "dir/obj", "-", "--range", "65530-131080"]).run();
    assert!(out.ok().stdout == body[65_530..131_081]);
    let ls = with(&["ls", repo, "--json"]).run();
    let ls = ls.ok().json();
    assert_eq!(ls["objects"].as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls["objects"][0]["size"], 300_000, "{ls}");
    with(&["verify", repo]).run().ok();
    with(&["rm", repo, "dir/obj"]).run().ok();
    with(&["get", repo, "dir/obj", "-"])
        .run()
        .code(3)
        .clean_error();
}

#[test]
fn objects_round_trip_over_s3_on_moto_with_aws_kms() {
    let (key_settings, env) = services::kms_key();
    let mut backend = services::s3();
    backend.env.extend(env);
    objects_round_trip(&backend, "aws-kms", &key_settings);
    // Store options are access settings: an unknown one is a usage error, not ignored.
    backend
        .apply(er([
            "ls",
            &backend.repo,
            "--store-option",
            "no_such_option=1",
        ]))
        .run()
        .code(2)
        .clean_error();
}

#[test]
fn objects_round_trip_over_azure_on_azurite_with_openbao() {
    let bao = services::bao();
    let env = Env::new();
    let (_key, _policy, key_settings) = bao.key_with_token(env.tmp.path());
    objects_round_trip(&services::azure(), "openbao", &key_settings);
}

/// The README's quick start: `backup DIR REPO --init --key-setting key_file=…` registers a new
/// local repository with a new key (warning to back it up), a second run is a no-op
/// registration that uploads nothing, and `restore` gives the tree back.
#[test]
fn quick_start_backup_with_init_then_restore() {
    let env = Env::new();
    let docs = env.path("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.txt"), b"hello").unwrap();
    std::fs::write(docs.join("sub/b.txt"), data(3, 200_000)).unwrap();
    let backup = || {
        er(["backup"])
            .arg(&docs)
            .arg(env.repo())
            .args(["--init", "--json", "--key-setting", &env.key_arg()])
            .run()
    };
    let first = backup();
    first.ok();
    assert!(first.stderr.contains("BACK IT UP"), "{}", first.stderr);
    assert_eq!(first.json()["uploaded_files"], 2);
    let second = backup();
    second.ok();
    assert!(!second.stderr.contains("BACK IT UP"), "{}", second.stderr);
    assert_eq!(second.json()["uploaded_files"], 0);
    let restored = env.path("restored");
    er(["restore"])
        .arg(env.repo())
        .arg(&restored)
        .args(["--key-setting", &env.key_arg()])
        .run()
        .ok();
    for f in ["a.txt", "sub/b.txt"] {
        assert_eq!(
            std::fs::read(docs.join(f)).unwrap(),
            std::fs::read(restored.join(f)).unwrap(),
            "{f}"
        );
    }
}
