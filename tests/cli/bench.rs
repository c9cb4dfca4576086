//! `encrypt-repo bench` (issue 6): a small run of the harness through the binary. The figures
//! themselves are not asserted (timings belong in reports, not tests); what is checked is that
//! every figure is there, each comparison names its baseline from the same run, the counted
//! backend reads are exact, and nothing is left in the directory it was given.

use serde_json::Value;

use super::support::{Env, er};

fn figure<'a>(figures: &'a [Value], name: &str) -> &'a Value {
    figures
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {figures:#?}"))
}

#[test]
fn bench_reports_every_figure_with_its_baseline_and_cleans_up() {
    let env = Env::new();
    let dir = env.path("bench");
    let out = er([
        "bench",
        "--size",
        "3MiB",
        "--crypto-size",
        "1MiB",
        "--chunk-size",
        "64KiB",
        "--rounds",
        "1",
        "--json",
        "--dir",
    ])
    .arg(&dir)
    .run();
    out.ok();
    let report = out.json();
    assert_eq!(report["config"]["size"], 3 << 20);
    assert_eq!(report["config"]["chunk_size"], 64 << 10);
    let figures = report["figures"].as_array().expect("figures");

    for (name, baseline) in [
        ("format-seal-1t", "raw-seal-1t"),
        ("format-seal-all", "raw-seal-all"),
        ("format-seal-all scaling", "format-seal-1t"),
        ("format-open-1t", "raw-open-1t"),
        ("format-open-all", "raw-open-all"),
        ("format-open-all scaling", "format-open-1t"),
        ("local put encrypted", "local put unencrypted"),
        ("local get encrypted", "local get unencrypted"),
        (
            "local time to first byte encrypted",
            "local time to first byte unencrypted",
        ),
        ("memory put encrypted", "memory put unencrypted"),
        (
            "1-byte read encrypted, header cached",
            "1-byte read unencrypted",
        ),
    ] {
        let f = figure(figures, name);
        assert_eq!(f["baseline"], baseline, "{name}");
        let ratio = f["ratio"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: ratio {f}"));
        assert!(ratio > 0.0, "{name}: {f}");
        assert!(f["value"].as_f64().is_some_and(|v| v > 0.0), "{name}: {f}");
    }
    // Peak memory is read from the kernel (Linux).
    for name in [
        "local put peak memory encrypted",
        "local get peak memory encrypted",
    ] {
        let mib = figure(figures, name)["value"].as_f64().expect(name);
        assert!(mib > 1.0 && mib < 4096.0, "{name}: {mib} MiB");
    }

    // Counted, not timed (the worst of the reads at random offsets): a 1-byte read fetches the
    // header and one sealed 64 KiB chunk with the header not cached (one request when the byte
    // is in chunk 0, which follows the header, two otherwise); with it cached one request for
    // one sealed chunk (plus the header when the byte is in chunk 0); 1 byte unencrypted.
    let sealed_chunk = (64 << 10) + 16;
    let value = |name: &str| figure(figures, name)["value"].as_u64().expect(name);
    assert_eq!(value("backend requests per read, unencrypted"), 1);
    assert_eq!(value("backend bytes per read, unencrypted"), 1);
    let cold = value("backend requests per read, encrypted, header not cached");
    assert!((1..=2).contains(&cold), "{cold} requests");
    assert_eq!(
        value("backend bytes per read, encrypted, header not cached"),
        96 + sealed_chunk
    );
    assert_eq!(
        value("backend requests per read, encrypted, header cached"),
        1
    );
    let warm = value("backend bytes per read, encrypted, header cached");
    assert!(
        warm == sealed_chunk || warm == 96 + sealed_chunk,
        "{warm} bytes"
    );

    // Its working directory is gone; the directory it was given stays, empty.
    let left: Vec<_> = std::fs::read_dir(&dir).expect("bench dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bench_prints_a_table_and_refuses_bad_options() {
    let env = Env::new();
    let dir = env.path("bench");
    let out = er([
        "bench",
        "--size",
        "1MiB",
        "--crypto-size",
        "1MiB",
        "--rounds",
        "1",
        "--skip-memory-backend",
        "--dir",
    ])
    .arg(&dir)
    .run();
    out.ok();
    let text = out.text();
    assert!(
        text.contains("| figure | median | baseline | ratio | target |"),
        "{text}"
    );
    assert!(text.contains("| format-seal-1t |"), "{text}");
    assert!(!text.contains("memory put"), "{text}");

    er(["bench", "--chunk-size", "3MiB", "--dir"])
        .arg(&dir)
        .run()
        .code(2);
    er(["bench", "--rounds", "0", "--dir"])
        .arg(&dir)
        .run()
        .code(2);
}
