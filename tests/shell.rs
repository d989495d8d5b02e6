//! `p2p shell`: the original tool's prompt, typed into a real terminal
//! against running peers, and the same commands piped in as a script.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::fake::{FakePeer, Fault};
use crate::common::proxy::Proxy;
use crate::common::term::{PROMPT, Term};
use crate::common::{Mode, Net, P2P, Run, content, eventually, partials, run_in, wait_with_deadline};

/// The screen as a snapshot: run-specific text (ports, paths, timings, the
/// share each source sent, progress bars caught mid-way) replaced.
fn transcript(net: &Net, term: &Term, others: &[(&str, &str)]) -> String {
    redact(net, &term.screen(), others)
}

/// `text` with what differs between runs replaced: `others`, what the
/// harness redacts, the share each source sent (which peer answers first
/// is a race) and the bytes a resumed download found.
fn redact(net: &Net, text: &str, others: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in others {
        text = text.replace(from, to);
    }
    let lines = net
        .redact(&text)
        .lines()
        // Over TLS, a peer trusted on first use is logged with a time.
        .filter(|l| !l.contains("on first use"))
        .map(|l| match (l.starts_with("downloaded "), l.find(" from ")) {
            (true, Some(i)) => format!("{} from [SOURCES]", &l[..i]),
            _ => match (l.find("resumed: "), l.find(" were")) {
                (Some(i), Some(j)) => format!("{}resumed: [BYTES] of [SIZE]{}", &l[..i], &l[j..]),
                _ => l.to_string(),
            },
        })
        .collect::<Vec<String>>();
    // What a resumed download fetched depends on what arrived before.
    let lines: Vec<String> = (0..lines.len())
        .map(|i| {
            let l = &lines[i];
            let resumed = lines.get(i + 1).is_some_and(|next| next.contains("resumed: [BYTES]"));
            match (resumed && l.starts_with("downloaded "), l.find(": "), l.find(" in [TIME]")) {
                (true, Some(a), Some(b)) if a < b => format!("{}: [FETCHED]{}", &l[..a], &l[b..]),
                _ => l.clone(),
            }
        })
        .collect();
    lines.join("\n") + "\n"
}

fn shell_in(net: &Net, folder: &str) -> Term {
    let mut term = Term::spawn(&net.root.path().join(folder), &["shell"]);
    term.wait_prompt(1, "starting");
    term
}

fn the_original_commands_at_the_prompt(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2", "peer3"]);
    let data = content(3_000_000, 21);
    net.put("peer1", "data.bin", &data);
    net.put("peer2", "data.bin", &data);
    net.put("peer1", "notes.txt", b"hello from peer1\n");
    net.put("client", "report.txt", b"quarterly numbers\n");

    let mut term = shell_in(&net, "client");
    // Tab completes the command word in the original style, then peer ids.
    term.keys("#FIL\t");
    term.wait(&format!("{PROMPT} #FILELIST"), |t| t.last_line() == "p2p> #FILELIST");
    term.keys("peer1 pe\t");
    term.wait("the peers' common prefix", |t| t.last_line() == "p2p> #FILELIST peer1 peer");
    term.run("2");
    term.run("#UPLOAD report.txt peer2 peer3");
    // The names come from the listing just seen.
    term.keys("#DOWNLOAD da\t");
    term.wait("a listed name", |t| t.last_line() == "p2p> #DOWNLOAD data.bin");
    term.run("peer1 peer2");
    term.run("FileList peer3");
    let prompts = term.screen().lines().filter(|l| l.starts_with(PROMPT)).count();
    term.keys("exit\r");
    assert_eq!(term.exit_status(), 0);
    assert_eq!(prompts, 5);

    insta::assert_snapshot!("prompt", transcript(&net, &term, &[]));
    assert_eq!(net.read("peer2", "report.txt"), b"quarterly numbers\n");
    assert_eq!(net.read("peer3", "report.txt"), b"quarterly numbers\n");
    assert_eq!(net.read("client", "data.bin"), data);
    // History is kept in the peer folder, each line as it was typed.
    let history = std::fs::read_to_string(net.root.path().join("client/.p2p/shell_history")).unwrap();
    assert!(
        history.ends_with("#FILELIST peer1 peer2\n#UPLOAD report.txt peer2 peer3\n#DOWNLOAD data.bin peer1 peer2\nFileList peer3\nexit\n"),
        "{history}"
    );
}

fn a_second_upload_of_a_name_is_refused_while_a_background_one_runs(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(1_000_000, 22);
    net.put("client", "same.bin", &data);
    // "via" is peer1 behind a proxy that lets the first 64 KiB of the
    // upload through and holds the rest: the upload stays in progress.
    let proxy = Proxy::start(&net.peer("peer1").addr, 0);
    proxy.hold_after(64 * 1024);
    let (host, port) = proxy.addr.rsplit_once(':').unwrap();
    let line = format!("via {host} {port} {}", net.fingerprint("peer1").unwrap_or_default());
    net.write_settings(&[line.trim_end()]);

    let mut term = shell_in(&net, "client");
    term.run("#UPLOAD same.bin via &");
    assert!(
        eventually(Duration::from_secs(20), || partials(&net.served("peer1")) == 1),
        "peer1 is receiving the first upload"
    );
    term.run("jobs");
    term.run("#UPLOAD same.bin peer1");
    assert!(term.screen().contains("same.bin is already being uploaded"), "{}", term.screen());

    proxy.release();
    // The job's report is printed above a prompt drawn again: wait for
    // both, so that the next command's prompt is counted from there.
    term.wait("the job's report and the prompt again", |t| t.screen().contains("[1] done") && t.last_line() == PROMPT);
    term.run("jobs");
    term.run("jobs");
    term.keys("\x04"); // Ctrl-D
    assert_eq!(term.exit_status(), 0);
    insta::assert_snapshot!("background_upload", transcript(&net, &term, &[(&proxy.addr, "[VIA]")]));
    assert_eq!(net.read("peer1", "same.bin"), data, "the first upload is intact");
    assert_eq!(partials(&net.served("peer1")), 0);
}

fn ctrl_c_cancels_the_command_not_the_shell(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(3_000_000, 23);
    let stalling = FakePeer::start(mode, "big.bin", data.clone(), Fault::Stall { after: 1_500_000 });
    let served = net.served("client");

    let mut term = shell_in(&net, "client");
    // At the prompt, Ctrl-C drops the line being typed.
    term.keys("#FILELIST pe");
    term.wait("the line typed", |t| t.last_line() == "p2p> #FILELIST pe");
    term.ctrl_c();
    term.wait_prompt(2, "Ctrl-C at the prompt");

    // While a command runs, it cancels the command.
    term.keys(&format!("#DOWNLOAD big.bin {}\r", stalling.addr));
    assert!(eventually(Duration::from_secs(20), || resume_records(&served) == 1), "the download saved a record");
    term.ctrl_c();
    term.wait_prompt(3, "Ctrl-C during a download");
    assert!(term.screen().contains("cancelled (what arrived is kept"), "{}", term.screen());
    assert!(!served.join("big.bin").exists(), "nothing partial under the final name");

    // The shell goes on, and the same download resumes from a real peer.
    net.put("peer1", "big.bin", &data);
    term.run("#DOWNLOAD big.bin peer1");
    assert!(term.screen().contains("resumed: "), "{}", term.screen());
    assert_eq!(net.read("client", "big.bin"), data);

    // Leaving with a job running asks first; a second exit cancels it.
    std::fs::remove_file(served.join("big.bin")).unwrap();
    term.run(&format!("download big.bin {} &", stalling.addr));
    term.run("exit");
    term.keys("exit\r");
    assert_eq!(term.exit_status(), 0);
    let others = [(stalling.addr.as_str(), "[STALLING]")];
    insta::assert_snapshot!("ctrl_c", transcript(&net, &term, &others));
    assert!(!served.join("big.bin").exists());
}

fn errors_do_not_end_the_shell(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    net.put("peer1", "a.txt", b"a");
    let mut term = shell_in(&net, "client");
    for line in [
        "frobnicate peer1",
        "#UPLOAD",
        "#UPLOAD missing.txt peer1",
        "#DOWNLOAD missing.txt peer1",
        "#FILELIST peer7",
        "download a.txt peer1 & peer1",
        "cancel 3",
        "help",
        "#filelist peer1",
    ] {
        term.run(line);
    }
    term.keys("quit\r");
    assert_eq!(term.exit_status(), 0);
    insta::assert_snapshot!("errors", transcript(&net, &term, &[]));
}

/// Runs `p2p shell` in `folder` with `script` on its standard input.
pub(crate) fn script(net: &Net, folder: &str, script: &str) -> Run {
    let mut child = Command::new(P2P)
        .arg("shell")
        .current_dir(net.root.path().join(folder))
        .env("P2P_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    wait_with_deadline(child, Duration::from_secs(60))
}

fn a_script_gets_one_line_per_command(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2", "peer3"]);
    net.put("peer1", "notes.txt", b"hello from peer1\n");
    net.put("peer2", "notes.txt", b"hello from peer1\n");
    net.put("peer3", "a.txt", b"a");
    net.put("peer3", "b.txt", b"bb");
    net.put("client", "report.txt", b"quarterly numbers\n");
    let run = script(
        &net,
        "client",
        "# the README's session\n\
         #FILELIST peer1 peer2\n\
         \n\
         #UPLOAD report.txt peer2 peer3\n\
         #DOWNLOAD notes.txt peer1 peer2\n\
         download --all peer3 -o everything\n\
         upload report.txt peer1 &\n\
         wait\n\
         #upload report.txt peer1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    insta::assert_snapshot!("script", redact(&net, &run.stdout, &[]));
    assert_eq!(net.read("client", "notes.txt"), b"hello from peer1\n");
    assert_eq!(std::fs::read(net.root.path().join("client/everything/b.txt")).unwrap(), b"bb");

    let run = script(
        &net,
        "client",
        "filelist peer3\nfrobnicate\n#DOWNLOAD missing.txt peer1\ndownload missing.txt peer1 &\nfilelist --json peer1\n",
    );
    assert_eq!(run.code, 1, "a command failed");
    let out = redact(&net, &run.stdout, &[]);
    insta::assert_snapshot!("script_failing", format!("stdout:\n{out}stderr:\n{}", redact(&net, &run.stderr, &[])));
}

fn in_a_serving_peer_s_folder(mode: Mode) {
    // The original layout: the shell runs in peer1's own folder while
    // peer1 serves it, so downloads land where peer1 serves them from.
    let net = Net::start(mode, &["peer1", "peer2"]);
    net.put("peer1", "mine.txt", b"peer1's own\n");
    net.put("peer2", "notes.txt", b"from peer2\n");
    let run = script(&net, "peer1", "#DOWNLOAD notes.txt peer2\n#FILELIST peer1\n#UPLOAD mine.txt peer2\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        net.redact(&run.stdout),
        "downloaded notes.txt: 11 B in [TIME] from peer2 (11 B)\n\
         peer1: mine.txt (12 B), notes.txt (11 B)\n\
         mine.txt: stored on peer2\n"
    );
    assert_eq!(net.read("peer1", "notes.txt"), b"from peer2\n");
    assert_eq!(net.read("peer2", "mine.txt"), b"peer1's own\n");
}

#[test]
fn help() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &["shell", "--help"]);
    assert_eq!(run.code, 0);
    insta::assert_snapshot!("help_shell", run.stdout);
}

fn resume_records(served: &std::path::Path) -> usize {
    std::fs::read_dir(served.join(".p2p/resume"))
        .map_or(0, |d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "resume")).count())
}

both_modes!(
    the_original_commands_at_the_prompt,
    a_second_upload_of_a_name_is_refused_while_a_background_one_runs,
    ctrl_c_cancels_the_command_not_the_shell,
    errors_do_not_end_the_shell,
    a_script_gets_one_line_per_command,
    in_a_serving_peer_s_folder,
);
