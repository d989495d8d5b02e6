//! Tab completion: command words, options, peer ids from the peer list,
//! the names peers listed in this session (for download) and the files in
//! ./served_files (for upload).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;

use super::parse::{self, BUILTINS, TRANSFERS, command_word};
use crate::cmd::Listing;
use crate::settings::PeerList;

/// The folder uploads are read from, as in the original tool.
const SERVED: &str = "served_files";

/// The options of each command, and which take a value.
const COMMON: [&str; 7] = ["--timeout", "--transport", "--ca", "--json", "-q", "--settings", "--help"];
const DOWNLOAD: [&str; 8] =
    ["-o", "--output", "--overwrite", "--file", "--all", "--hash", "--chunk-size", "--parallel"];
const WITH_VALUE: [&str; 10] = [
    "-o",
    "--output",
    "--file",
    "--hash",
    "--chunk-size",
    "--parallel",
    "--timeout",
    "--transport",
    "--ca",
    "--settings",
];

/// rustyline's helper: completion only (no hints, colours or validation).
pub(super) struct Completion {
    /// `--settings` given before `shell`.
    settings: Option<PathBuf>,
    listings: mpsc::Receiver<Listing>,
    /// The names each peer listed last, by peer.
    seen: RefCell<BTreeMap<String, Vec<String>>>,
    paths: FilenameCompleter,
}

/// What the word being typed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Command,
    Option(&'static str),
    Peer,
    /// A file in ./served_files, or a path.
    LocalFile,
    /// A name that peers listed.
    RemoteName,
    Path,
    Transport,
    Nothing,
}

impl Completion {
    pub(super) fn new(settings: Option<PathBuf>, listings: mpsc::Receiver<Listing>) -> Self {
        Self { settings, listings, seen: RefCell::default(), paths: FilenameCompleter::new() }
    }

    fn candidates(&self, role: Role, partial: &str) -> Vec<String> {
        let mut all: Vec<String> = match role {
            Role::Command => return commands(partial),
            Role::Option(command) => options(command).map(str::to_owned).collect(),
            Role::Peer => match PeerList::find(self.settings.as_deref()) {
                Ok(Some(list)) => list.peers.into_iter().map(|p| p.id).collect(),
                _ => Vec::new(),
            },
            Role::LocalFile => served_files(Path::new(SERVED)),
            Role::RemoteName => {
                let mut seen = self.seen.borrow_mut();
                for listing in self.listings.try_iter() {
                    seen.insert(listing.peer, listing.names);
                }
                let names: BTreeSet<&String> = seen.values().flatten().collect();
                names.into_iter().cloned().collect()
            }
            Role::Transport => vec!["tcp".into(), "tls".into()],
            Role::Path | Role::Nothing => Vec::new(),
        };
        all.retain(|c| c.starts_with(partial));
        all.sort();
        all.dedup();
        all
    }
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let Some(before) = line.get(..pos) else { return Ok((pos, Vec::new())) };
        // Comments and lines already sent to the background: nothing to add.
        let scan = parse::scan(before.trim_start());
        let offset = before.len() - before.trim_start().len();
        if scan.words.iter().any(|w| w.amp) || before.trim_start().starts_with("# ") {
            return Ok((pos, Vec::new()));
        }
        let mut words = scan.words;
        let (partial, start) = match words.last() {
            Some(w) if scan.in_word => (w.text.clone(), offset + w.start),
            _ => (String::new(), pos),
        };
        if scan.in_word {
            words.pop();
        }
        let typed: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        let role = role(&typed, &partial);
        if role == Role::Path || (role == Role::LocalFile && partial.contains('/')) {
            return self.paths.complete_path(line, pos);
        }
        let pairs = self
            .candidates(role, &partial)
            .into_iter()
            .map(|c| Pair { replacement: format!("{} ", parse::quote(&c)), display: c })
            .collect();
        Ok((start, pairs))
    }
}

/// What the word after `typed` is, `partial` being what there is of it.
fn role(typed: &[&str], partial: &str) -> Role {
    let Some((first, args)) = typed.split_first() else { return Role::Command };
    let Some(command) = command_word(first) else { return Role::Nothing };
    match command {
        "help" if args.is_empty() => return Role::Command,
        "filelist" | "upload" | "download" => {}
        _ => return Role::Nothing,
    }
    if let Some(option) = args.last().filter(|a| WITH_VALUE.contains(a)) {
        return match *option {
            "-o" | "--output" | "--ca" | "--settings" => Role::Path,
            "--file" => Role::RemoteName,
            "--transport" => Role::Transport,
            _ => Role::Nothing,
        };
    }
    if partial.starts_with('-') {
        return Role::Option(command);
    }
    let mut positional = 0;
    let mut skip = false;
    for arg in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if arg.starts_with('-') {
            skip = WITH_VALUE.contains(arg);
        } else {
            positional += 1;
        }
    }
    let every_word_a_peer = args.iter().any(|a| *a == "--all" || *a == "--hash");
    match (command, positional) {
        ("upload", 0) => Role::LocalFile,
        ("download", 0) if !every_word_a_peer => Role::RemoteName,
        _ => Role::Peer,
    }
}

/// Command words starting with `partial`, in the style it was begun:
/// `#DOW` gives `#DOWNLOAD`, `DOW` gives `DOWNLOAD`, `dow` gives `download`.
fn commands(partial: &str) -> Vec<String> {
    let hashed = partial.starts_with('#');
    let bare = partial.trim_start_matches('#');
    let upper = hashed || (!bare.is_empty() && bare.chars().all(|c| c.is_ascii_uppercase()));
    // `#` is the original tool's mark for its three commands only.
    let words = TRANSFERS.iter().chain(if hashed { &[][..] } else { &BUILTINS[..] });
    words
        .filter(|w| w.len() >= bare.len() && w[..bare.len()].eq_ignore_ascii_case(bare))
        .map(|w| {
            let w = if upper { w.to_ascii_uppercase() } else { (*w).to_owned() };
            if hashed { format!("#{w}") } else { w }
        })
        .collect()
}

fn options(command: &'static str) -> impl Iterator<Item = &'static str> {
    let download = if command == "download" { &DOWNLOAD[..] } else { &[][..] };
    download.iter().chain(&COMMON).copied()
}

/// The files in `dir` one could upload (not p2p's own `.p2p`).
fn served_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl rustyline::Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_keep_the_style_they_were_begun_in() {
        assert_eq!(commands("#DOW"), ["#DOWNLOAD"]);
        assert_eq!(commands("#f"), ["#FILELIST"]);
        assert_eq!(commands("#"), ["#FILELIST", "#UPLOAD", "#DOWNLOAD", "#PEERS"]);
        assert_eq!(commands("UP"), ["UPLOAD"]);
        assert_eq!(commands("do"), ["download"]);
        assert_eq!(commands("Fi"), ["filelist"]);
        assert_eq!(commands("q"), ["quit"]);
        assert_eq!(commands("").len(), TRANSFERS.len() + BUILTINS.len());
        assert!(commands("x").is_empty());
    }

    #[test]
    fn each_word_has_its_role() {
        assert_eq!(role(&[], ""), Role::Command);
        assert_eq!(role(&["#FILELIST"], ""), Role::Peer);
        assert_eq!(role(&["#FILELIST", "peer1"], "pe"), Role::Peer);
        assert_eq!(role(&["#UPLOAD"], "no"), Role::LocalFile);
        assert_eq!(role(&["upload", "notes.txt"], ""), Role::Peer);
        assert_eq!(role(&["#DOWNLOAD"], ""), Role::RemoteName);
        assert_eq!(role(&["download", "a.txt"], ""), Role::Peer);
        assert_eq!(role(&["download", "--all"], ""), Role::Peer);
        assert_eq!(role(&["download", "--timeout", "5"], ""), Role::RemoteName);
        assert_eq!(role(&["download", "a.txt", "--file"], ""), Role::RemoteName);
        assert_eq!(role(&["download", "a.txt", "-o"], ""), Role::Path);
        assert_eq!(role(&["download", "a.txt", "--transport"], "t"), Role::Transport);
        assert_eq!(role(&["download"], "--a"), Role::Option("download"));
        assert_eq!(role(&["help"], "do"), Role::Command);
        assert_eq!(role(&["jobs"], ""), Role::Nothing);
        assert_eq!(role(&["frobnicate"], ""), Role::Nothing);
    }

    #[test]
    fn names_come_from_the_latest_listing_of_each_peer() {
        let (tx, rx) = mpsc::channel();
        let c = Completion::new(None, rx);
        let listing = |peer: &str, names: &[&str]| Listing {
            peer: peer.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        tx.send(listing("peer1", &["notes.txt", "old.txt"])).unwrap();
        tx.send(listing("peer2", &["notes.txt", "video.bin"])).unwrap();
        assert_eq!(c.candidates(Role::RemoteName, ""), ["notes.txt", "old.txt", "video.bin"]);
        tx.send(listing("peer1", &["new.txt"])).unwrap();
        assert_eq!(c.candidates(Role::RemoteName, "n"), ["new.txt", "notes.txt"]);
        assert_eq!(c.candidates(Role::Option("filelist"), "--t"), ["--timeout", "--transport"]);
        assert_eq!(c.candidates(Role::Option("download"), "--o"), ["--output", "--overwrite"]);
    }

    #[test]
    fn local_files_are_the_served_folder_s() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("a file.txt"), "a").unwrap();
        std::fs::create_dir(dir.path().join(".p2p")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut files = served_files(dir.path());
        files.sort();
        assert_eq!(files, ["a file.txt", "b.txt"]);
    }
}
