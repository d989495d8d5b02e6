//! `help` and `help COMMAND`.

use argh::FromArgs;

use super::parse::command_word;
use crate::args::{Download, Filelist, Peers, Upload};

/// What `help` prints.
pub(super) const OVERVIEW: &str = "\
Commands (any letter case; the original tool's #FILELIST, #UPLOAD, #DOWNLOAD work too):
  filelist PEER...        list the files of peers           #FILELIST peer1 peer2
  upload FILE PEER...     push a file from ./served_files   #UPLOAD notes.txt peer2 peer3
  download NAME PEER...   fetch a file from several peers   #DOWNLOAD notes.txt peer1 peer2
  peers                   the peers the index knows online  (with --tracker, or tracker in p2p.ron)
  jobs                    the background jobs and their state
  wait                    wait until the background jobs end
  cancel N                cancel background job N
  help [COMMAND]          this, or a command's options      help download
  exit, quit, Ctrl-D      leave

The one-shot commands' options work (download --all peer1, filelist --json peer1).
With an index (--tracker ADDR, or tracker in p2p.ron or config.json), filelist and
download need no PEER: the index names them.
End a line with & to run it in the background; its results are printed when it ends.
Tab completes commands, peer ids and file names. Ctrl-C clears the line, or cancels
the command running (a cancelled download resumes when run again).
";

/// `help COMMAND`.
pub(super) fn topic(word: &str) -> Result<String, String> {
    let name = command_word(word).ok_or_else(|| format!("no command {word:?} (`help` lists them)"))?;
    let text = match name {
        "filelist" => usage(Filelist::from_args(&[name], &["--help"]).err()),
        "upload" => usage(Upload::from_args(&[name], &["--help"]).err()),
        "download" => usage(Download::from_args(&[name], &["--help"]).err()),
        "peers" => usage(Peers::from_args(&[name], &["--help"]).err()),
        "jobs" => "jobs: lists the background jobs: running, done, failed or cancelled. A job that has \
                   ended is listed once more, then forgotten."
            .into(),
        "wait" => "wait: waits until every background job has ended (Ctrl-C stops waiting; the jobs go on).".into(),
        "cancel" => "cancel N: cancels background job N (as `jobs` numbers it). A cancelled download keeps \
                     what arrived for the next try."
            .into(),
        "help" => "help [COMMAND]: the commands, or one command's options.".into(),
        _ => "exit, quit (or Ctrl-D): leaves the shell. With jobs still running it says so first; \
              a second exit cancels them."
            .into(),
    };
    Ok(text)
}

/// argh's `--help` text, which it hands back as an early exit.
fn usage(early: Option<argh::EarlyExit>) -> String {
    early.map(|e| e.output).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_help() {
        for word in super::super::parse::TRANSFERS.iter().chain(&super::super::parse::BUILTINS) {
            let text = topic(word).unwrap();
            assert!(text.contains(word), "{word}: {text}");
        }
        let text = topic("#DOWNLOAD").unwrap();
        assert!(text.starts_with("Usage: download ") && text.contains("Fetch a file"), "{text}");
        assert_eq!(topic("nope").unwrap_err(), "no command \"nope\" (`help` lists them)");
    }
}
