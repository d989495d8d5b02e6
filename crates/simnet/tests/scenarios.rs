//! Every scenario in `scenarios/` must pass, replay identically, and report
//! exactly what its snapshot says. A new file there is tested with no code
//! change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use p2p_simnet::{Options, Scenario, run};

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_passes_replays_and_matches_its_snapshot() {
    let files = scenario_files();
    assert!(files.len() >= 7, "the scenarios folder has its files: {files:?}");
    let mut failed = Vec::new();
    for path in &files {
        let scenario = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
        // The replay runs beside the first run: CI has two cores, and the
        // crowds of 50 take most of this test's time.
        let (first, again) = std::thread::scope(|s| {
            let again = s.spawn(|| run(&scenario, Options::default()));
            let first = run(&scenario, Options::default());
            (first, again.join().expect("the replay ran"))
        });
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if !first.report.passed() {
            failed.push(format!("{stem}:\n{}", first.report.human()));
        }
        assert_eq!(first.events, again.events, "{stem}: the same seed replays the same events");
        insta::assert_snapshot!(stem, first.report.human());
    }
    assert!(failed.is_empty(), "scenarios failed:\n{}", failed.join("\n"));
}

#[test]
fn another_seed_changes_the_jitter_but_not_the_outcome() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/partition_heal.ron");
    let scenario = Scenario::load(&path).unwrap();
    let a = run(&scenario, Options { seed: Some(1) });
    let b = run(&scenario, Options { seed: Some(2) });
    assert!(a.report.passed() && b.report.passed());
    assert_ne!(a.report.events_hash, b.report.events_hash, "jitter is drawn from the seed");
}

#[test]
fn a_malformed_scenario_names_line_column_and_what_was_expected() {
    let text = "(\n    name: \"x\",\n    peers: [(name: \"a\", count: \"many\")],\n)";
    let e = Scenario::parse(text, "bad.ron").unwrap_err().to_string();
    assert!(e.starts_with("bad.ron:3:"), "{e}");
    assert!(e.contains("Expected"), "{e}");

    let e = Scenario::parse("(name: \"x\", peers: [(name: \"a\", link: \"lan\")])", "bad.ron").unwrap_err();
    assert_eq!(e.to_string(), "bad.ron: no link profile named \"lan\"");
    let text = "(name: \"x\", peers: [(name: \"a\")], timeline: [(action: Crash(\"b\"))])";
    let e = Scenario::parse(text, "bad.ron").unwrap_err();
    assert_eq!(e.to_string(), "bad.ron: no peer named \"b\" (peers: a)");
    let e = Scenario::parse("(name: \"x\", peers: [(name: \"a\", files: [(name: \"f\", size: \"3 parsecs\")])])", "b")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown size unit"), "{e}");
}

#[test]
fn a_failing_expectation_fails_the_run_and_says_why() {
    let text = r#"(
        name: "wrong hash",
        peers: [(name: "a", files: [(name: "f.bin", size: "1KiB")]), (name: "b")],
        timeline: [(id: "get", action: Download(by: "b", name: "f.bin", from: ["a"]), expect: Error(NotFound))],
        expect: [Eventually(within: "5s", check: FileHash(peer: "b", name: "f.bin", hash: "00"))],
    )"#;
    let report = run(&Scenario::parse(text, "inline").unwrap(), Options::default()).report;
    assert!(!report.passed());
    let text = report.human();
    assert!(text.contains("failure: step get (b downloads f.bin from a): ok: downloaded 1024 bytes"), "{text}");
    assert!(text.contains("failure: within 5.000s: b has f.bin with blake3 00: b has f.bin with blake3 "), "{text}");
    assert!(text.ends_with("verdict: fail\n"), "{text}");
}

#[test]
fn crashed_peers_lose_partial_files_and_keep_whole_ones() {
    let text = r#"(
        name: "crash during an upload",
        links: {"slow": (up: "8Mbit")},
        peers: [(name: "a", link: "slow", files: [(name: "big.bin", size: "4MiB")]), (name: "b", files: [(name: "old.txt", size: "10")])],
        timeline: [
            (id: "push", action: Upload(by: "a", name: "big.bin", to: ["b"]), expect: Error(Connection)),
            (at: "1s", action: Crash("b")),
            (at: "2s", action: Restart("b")),
            (id: "list", at: "3s", action: FileList(by: "a", peers: ["b"])),
        ],
        expect: [Always(NoFile(peer: "b", name: "big.bin")), Eventually(within: "1m", check: StepDone("list"))],
    )"#;
    let report = run(&Scenario::parse(text, "inline").unwrap(), Options::default()).report;
    assert!(report.passed(), "{}", report.human());
    assert!(report.steps[3].parts[0].result.contains("1 file [old.txt]"), "{}", report.human());
}

#[test]
fn a_deadlock_fails_the_run_and_names_what_each_peer_waits_for() {
    let text = r#"(
        name: "stuck",
        peers: [(name: "a"), (name: "b")],
        timeline: [
            (at: "0s", action: Pause("a")),
            (id: "list", at: "1s", action: FileList(by: "a", peers: ["b"])),
        ],
    )"#;
    let report = run(&Scenario::parse(text, "inline").unwrap(), Options::default()).report;
    assert!(!report.passed());
    assert_eq!(
        report.failures[0],
        "deadlock: nothing can run and no timer is set; step list (a lists b, since 1.000s): a is paused"
    );
}
