//! Usage errors exit with status 2; `--help` answers questions.

use crate::common::run_in;

fn run(args: &[&str]) -> crate::common::Run {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), args)
}

#[test]
fn help() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("help", r.stdout);
    for cmd in ["serve", "filelist", "upload", "download"] {
        let r = run(&[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}");
        insta::assert_snapshot!(format!("help_{cmd}"), r.stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["filelist"],
        &["upload", "notes.txt"],
        &["download", "notes.txt"],
        &["download"],
        &["serve"],
        &["filelist", "peer1", "--timeout", "soon"],
        &["filelist", "--bogus", "peer1"],
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("p2p --help"), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
    }
}
