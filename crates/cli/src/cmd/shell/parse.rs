//! Reading a line of the shell: words (quotes and backslashes as in a
//! POSIX shell, so names with spaces work), the command word (with or
//! without the original tool's `#`, in any letter case), a trailing `&`.
//! The one-shot commands' own parsers (argh) read the rest, so every
//! option works as it does on the command line.

use argh::FromArgs;

use crate::args::{Command, Download, Filelist, Peers, Upload};

/// What a line asks for.
#[derive(Debug)]
pub(super) enum Line {
    /// Nothing: a blank line or a comment.
    Nothing,
    /// One of the one-shot commands.
    Run {
        /// Boxed: a parsed command is large next to the other variants.
        command: Box<Command>,
        /// Ends with `&`: runs in the background.
        background: bool,
        /// The line as typed, without the `&`, for `jobs`.
        text: String,
    },
    /// A command of the shell itself.
    Builtin(Builtin),
    /// Text to show: `COMMAND --help`.
    Show(String),
}

/// The shell's own commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Builtin {
    /// `help [COMMAND]`.
    Help(Option<String>),
    /// `jobs`: the background jobs and their state.
    Jobs,
    /// `wait`: until every background job has ended.
    Wait,
    /// `cancel N`: stop background job N.
    Cancel(u32),
    /// `exit`, `quit`.
    Exit,
}

/// The command words, as `help` and completion list them.
pub(super) const TRANSFERS: [&str; 4] = ["filelist", "upload", "download", "peers"];
pub(super) const BUILTINS: [&str; 6] = ["jobs", "wait", "cancel", "help", "exit", "quit"];

/// One word of a line, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    /// Byte offset in the line where the word starts.
    pub(super) start: usize,
    /// An unquoted `&`: the line runs in the background.
    pub(super) amp: bool,
}

/// The words of a line, and the quote left open at its end (completion
/// works on unfinished lines).
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) words: Vec<Word>,
    pub(super) open_quote: Option<char>,
    /// The line ends inside a word (no space after the last one).
    pub(super) in_word: bool,
}

/// Splits `line` into words: whitespace separates them; '...' keeps
/// everything, "..." keeps everything but `\"` and `\\`; a backslash
/// outside quotes keeps the next character; an unquoted `&` is a word of
/// its own.
pub(super) fn scan(line: &str) -> Scan {
    let mut scan = Scan::default();
    let mut current: Option<Word> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (scan.open_quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => scan.open_quote = None,
            (Some('"'), '\\') if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                if let (Some(w), Some((_, next))) = (current.as_mut(), chars.next()) {
                    w.text.push(next);
                }
            }
            (Some(_), c) => current.get_or_insert_with(|| word(i)).text.push(c),
            (None, c) if c.is_whitespace() => scan.words.extend(current.take()),
            (None, '\'' | '"') => {
                current.get_or_insert_with(|| word(i));
                scan.open_quote = Some(c);
            }
            (None, '\\') => {
                let w = current.get_or_insert_with(|| word(i));
                if let Some((_, next)) = chars.next() {
                    w.text.push(next);
                }
            }
            (None, '&') => {
                scan.words.extend(current.take());
                scan.words.push(Word { text: "&".into(), start: i, amp: true });
            }
            (None, c) => current.get_or_insert_with(|| word(i)).text.push(c),
        }
    }
    scan.in_word = current.is_some();
    scan.words.extend(current);
    scan
}

fn word(start: usize) -> Word {
    Word { text: String::new(), start, amp: false }
}

/// Quotes `text` so that [`scan`] reads it back as one word.
pub(super) fn quote(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '\\' | '&'));
    if plain { text.to_owned() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

/// The command a word names, if any: `#FILELIST`, `filelist`, `FileList`…
pub(super) fn command_word(word: &str) -> Option<&'static str> {
    let bare = word.strip_prefix('#').unwrap_or(word);
    TRANSFERS.iter().chain(&BUILTINS).copied().find(|c| c.eq_ignore_ascii_case(bare))
}

/// Reads one line. An error is one line that says what to do.
pub(super) fn parse(line: &str) -> Result<Line, String> {
    let trimmed = line.trim();
    // "# a note", "#!/usr/bin/env p2p shell", "#" alone: comments. "#WORD"
    // is a command of the original tool (or a mistyped one, said so).
    if trimmed.is_empty() || (trimmed.starts_with('#') && !trimmed[1..].starts_with(|c: char| c.is_alphabetic())) {
        return Ok(Line::Nothing);
    }
    let scan = scan(trimmed);
    if let Some(q) = scan.open_quote {
        return Err(format!("a quote ({q}) is not closed"));
    }
    let mut words = scan.words;
    let background = words.last().is_some_and(|w| w.amp);
    if background {
        words.pop();
    }
    if words.iter().any(|w| w.amp) {
        return Err("& goes at the end of a line, to run the command in the background".into());
    }
    let Some((first, rest)) = words.split_first() else {
        return Err("nothing before the &: end a command with & to run it in the background".into());
    };
    let Some(name) = command_word(&first.text) else {
        return Err(format!(
            "unknown command {:?}: the shell runs {}, {} (`help` lists them)",
            first.text,
            TRANSFERS.join(", "),
            BUILTINS.join(", ")
        ));
    };
    let args: Vec<&str> = rest.iter().map(|w| w.text.as_str()).collect();
    let text = match trimmed.strip_suffix('&') {
        Some(t) if background => t.trim_end().to_owned(),
        _ => trimmed.to_owned(),
    };
    let command = match name {
        "filelist" => Filelist::from_args(&[name], &args).map(Command::Filelist),
        "upload" => Upload::from_args(&[name], &args).map(Command::Upload),
        "download" => Download::from_args(&[name], &args).map(Command::Download),
        "peers" => Peers::from_args(&[name], &args).map(Command::Peers),
        _ => {
            if background {
                return Err(format!("{name} runs in the foreground only; drop the &"));
            }
            return builtin(name, &args).map(Line::Builtin);
        }
    };
    match command {
        Ok(command) => Ok(Line::Run { command: Box::new(command), background, text }),
        Err(early) if early.status.is_ok() => Ok(Line::Show(early.output)),
        Err(early) => Err(format!("{name}: {} (`help {name}` shows how)", one_line(&early.output))),
    }
}

fn builtin(name: &'static str, args: &[&str]) -> Result<Builtin, String> {
    match (name, args) {
        ("help", []) => Ok(Builtin::Help(None)),
        ("help", [topic]) => Ok(Builtin::Help(Some((*topic).to_owned()))),
        ("jobs", []) => Ok(Builtin::Jobs),
        ("wait", []) => Ok(Builtin::Wait),
        ("exit" | "quit", []) => Ok(Builtin::Exit),
        ("cancel", [n]) => match n.trim_start_matches('%').parse::<u32>() {
            Ok(n) => Ok(Builtin::Cancel(n)),
            Err(_) => Err(format!("cancel {n}: name a job by its number, as `jobs` shows it (cancel 1)")),
        },
        ("cancel", _) => Err("cancel takes one job number, as `jobs` shows it (cancel 1)".into()),
        ("help", _) => Err("help takes at most one command (help download)".into()),
        (name, _) => Err(format!("{name} takes no arguments")),
    }
}

/// argh's messages, which may span lines, as one line.
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    parts.join(" ").trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        scan(line).words.into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_quotes_and_ampersands() {
        assert_eq!(texts("  #UPLOAD  notes.txt peer2\tpeer3 "), ["#UPLOAD", "notes.txt", "peer2", "peer3"]);
        assert_eq!(texts(r#"upload "my file.txt" 'it''s' a\ b"#), ["upload", "my file.txt", "its", "a b"]);
        assert_eq!(texts(r#"download "say \"hi\".txt" p"#), ["download", "say \"hi\".txt", "p"]);
        assert_eq!(texts("download big.bin peer1&"), ["download", "big.bin", "peer1", "&"]);
        assert_eq!(texts("download 'a&b' p"), ["download", "a&b", "p"]);
        let s = scan("upload \"my fi");
        assert_eq!(s.open_quote, Some('"'));
        assert!(s.in_word);
        assert_eq!(s.words[1].start, 7);
        assert!(!scan("filelist ").in_word);
        for name in ["plain.txt", "my file.txt", "it's", "a&b", "#x", "back\\slash", ""] {
            assert_eq!(texts(&format!("upload {}", quote(name))), ["upload", name], "{name:?}");
        }
    }

    fn run_of(line: &str) -> (Command, bool, String) {
        match parse(line) {
            Ok(Line::Run { command, background, text }) => (*command, background, text),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn the_original_syntax_and_any_case() {
        for line in ["#FILELIST peer1 peer2", "filelist peer1 peer2", "FileList peer1 peer2", "#filelist peer1 peer2"] {
            match run_of(line) {
                (Command::Filelist(a), false, text) => {
                    assert_eq!(a.peers, ["peer1", "peer2"]);
                    assert_eq!(text, line);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        match run_of("#UPLOAD notes.txt peer2 peer3") {
            (Command::Upload(a), false, _) => {
                assert_eq!((a.file.as_str(), a.peers), ("notes.txt", vec!["peer2".to_string(), "peer3".into()]));
            }
            other => panic!("{other:?}"),
        }
        match run_of("#DOWNLOAD big.bin peer1 peer2 &") {
            (Command::Download(a), true, text) => {
                assert_eq!(a.words, ["big.bin", "peer1", "peer2"]);
                assert_eq!(text, "#DOWNLOAD big.bin peer1 peer2");
            }
            other => panic!("{other:?}"),
        }
        match run_of("download --all peer1 -o elsewhere") {
            (Command::Download(a), false, _) => {
                assert!(a.all);
                assert_eq!(a.output.as_deref(), Some(std::path::Path::new("elsewhere")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comments_builtins_and_help() {
        for line in ["", "   ", "# a note", "#", "#!/usr/bin/env p2p shell", "## heading"] {
            assert!(matches!(parse(line), Ok(Line::Nothing)), "{line:?}");
        }
        assert_eq!(builtin_of("jobs"), Builtin::Jobs);
        assert_eq!(builtin_of("EXIT"), Builtin::Exit);
        assert_eq!(builtin_of("quit"), Builtin::Exit);
        assert_eq!(builtin_of("wait"), Builtin::Wait);
        assert_eq!(builtin_of("cancel %2"), Builtin::Cancel(2));
        assert_eq!(builtin_of("help #download"), Builtin::Help(Some("#download".into())));
        match parse("download --help") {
            Ok(Line::Show(text)) => assert!(text.starts_with("Usage: download"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    fn builtin_of(line: &str) -> Builtin {
        match parse(line) {
            Ok(Line::Builtin(b)) => b,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn mistakes_are_one_line_each() {
        let cases = [
            (
                "frobnicate x",
                "unknown command \"frobnicate\": the shell runs filelist, upload, download, peers, jobs, wait, cancel, help, exit, quit (`help` lists them)",
            ),
            (
                "#FILELSIT peer1",
                "unknown command \"#FILELSIT\": the shell runs filelist, upload, download, peers, jobs, wait, cancel, help, exit, quit (`help` lists them)",
            ),
            ("upload notes.txt & peer1", "& goes at the end of a line, to run the command in the background"),
            ("&", "nothing before the &: end a command with & to run it in the background"),
            ("jobs &", "jobs runs in the foreground only; drop the &"),
            ("jobs now", "jobs takes no arguments"),
            ("cancel", "cancel takes one job number, as `jobs` shows it (cancel 1)"),
            ("cancel x", "cancel x: name a job by its number, as `jobs` shows it (cancel 1)"),
            ("upload \"notes.txt peer1", "a quote (\") is not closed"),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).err().as_deref(), Some(want), "{line}");
        }
        for line in ["#UPLOAD", "download --chunk-size", "filelist --bogus peer1", "download x p --timeout soon"] {
            let e = parse(line).err().unwrap_or_default();
            assert!(!e.is_empty() && !e.contains('\n'), "{line}: {e:?}");
            assert!(e.ends_with("shows how)"), "{line}: {e:?}");
        }
    }
}
