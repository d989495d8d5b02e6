//! Command-line arguments.

use std::path::PathBuf;

use argh::FromArgs;

use crate::net::Choice;

/// `--uploads` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadsArg {
    Nobody,
    Known,
    Anyone,
}

impl std::str::FromStr for UploadsArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nobody" => Ok(UploadsArg::Nobody),
            "known" => Ok(UploadsArg::Known),
            "anyone" => Ok(UploadsArg::Anyone),
            _ => Err(format!("{s:?}: expected nobody, known or anyone")),
        }
    }
}

/// Share folders between machines you control. Every byte is verified
/// (BLAKE3) before it is written; files appear only when whole.
#[derive(FromArgs, Debug)]
#[argh(
    note = "PEER is an id from the peer list (peer_settings.txt: lines \"peerID ip port [fingerprint]\", looked \
            up in the current folder, then its parent) or an address host:port.\n\n\
            With an identity (`p2p init`), connections use TLS 1.3 and both sides prove who they are: a peer's \
            certificate must match its pinned fingerprint, else the one it showed first (known_peers.txt beside \
            p2p.ron). Without one, plain TCP as the original tool.\n\n\
            Exit status: 0 when every requested operation succeeded, 1 when any failed, 2 for usage errors.",
    example = "{command_name} serve peer1\n\
               {command_name} filelist peer1 peer2\n\
               {command_name} upload notes.txt peer2 peer3\n\
               {command_name} download notes.txt peer1 peer2\n\
               {command_name} --json filelist 127.0.0.1:5000\n\
               {command_name} init && {command_name} id\n\
               {command_name} tracker --listen 0.0.0.0:6969\n\
               {command_name} serve peer1 --tracker index.lan:6969\n\
               {command_name} filelist --tracker index.lan:6969\n\
               {command_name} shell"
)]
pub(crate) struct Cli {
    /// print results as JSON on stdout (stable format, see the README)
    #[argh(switch)]
    pub(crate) json: bool,
    /// print only errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
    /// the peer list (default: peer_settings.txt in the current folder, then its parent)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
    /// this peer's configuration and identity (default: ./p2p.ron)
    #[argh(option, arg_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// tcp or tls (default: tls when there is an identity or a pinned peer)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust certificates issued by the CA in FILE (PEM) instead of pins and first use
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// threads that run transfers (default: one per core, at least 2); 1 where many peers share few cores
    #[argh(option, arg_name = "N")]
    pub(crate) threads: Option<usize>,
    #[argh(subcommand)]
    pub(crate) command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum Command {
    Init(Init),
    Id(Id),
    Serve(Serve),
    Filelist(Filelist),
    Upload(Upload),
    Download(Download),
    Tracker(Tracker),
    Peers(Peers),
    Shell(Shell),
}

/// Create this peer's identity: a key, a self-signed certificate and p2p.ron.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "init",
    note = "Writes p2p-key.pem (readable by you only), p2p-cert.pem and p2p.ron in the current folder, and prints \
            the fingerprint other peers pin in their peer list (a fourth column). With an identity, p2p uses TLS: \
            every connection encrypted, both sides authenticated. Certificates made with openssl work too: point \
            cert and key in p2p.ron at them.",
    example = "{command_name}\n{command_name} --id peer1 --listen 0.0.0.0:5000"
)]
pub(crate) struct Init {
    /// this peer's id (default: the name of the current folder)
    #[argh(option, arg_name = "NAME")]
    pub(crate) id: Option<String>,
    /// where `serve` listens by default
    #[argh(option, arg_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// replace an existing identity
    #[argh(switch)]
    pub(crate) force: bool,
    /// print the result as JSON
    #[argh(switch)]
    pub(crate) json: bool,
}

/// Print this peer's id and certificate fingerprint.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "id", example = "{command_name}\n{command_name} --json")]
pub(crate) struct Id {
    /// print JSON
    #[argh(switch)]
    pub(crate) json: bool,
}

/// Serve a folder to other peers until Ctrl-C.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "serve",
    note = "Listens on the address the peer list gives PEER_ID (or --listen). Files under their names in the \
            folder are listed and served; uploads land in it only once complete and verified. p2p keeps its own \
            state (partial files, cached hashes) in DIR/.p2p. One log line per transfer goes to stderr.\n\n\
            Over TLS, a client is known when its certificate matches the pin of the id it claims in the peer list \
            or p2p.ron, or, for a listed id without a pin, the certificate it showed first.",
    example = "{command_name} peer1\n{command_name} peer1 --dir ~/shared --allow-overwrite\n{command_name} me --listen 127.0.0.1:0"
)]
pub(crate) struct Serve {
    /// this peer's id in the peer list (default: the id in p2p.ron)
    #[argh(positional, arg_name = "PEER_ID")]
    pub(crate) peer_id: Option<String>,
    /// the folder to serve (default: ./served_files, created if missing)
    #[argh(option, arg_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// listen on this address instead of the peer list's (port 0 picks a free port)
    #[argh(option, arg_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// let uploads replace a file that has different content
    #[argh(switch)]
    pub(crate) allow_overwrite: bool,
    /// who may push files: nobody, known or anyone (default: known over TLS, anyone over plain TCP)
    #[argh(option, arg_name = "WHO")]
    pub(crate) uploads: Option<UploadsArg>,
    /// refuse all uploads (same as --uploads nobody)
    #[argh(switch)]
    pub(crate) no_uploads: bool,
    /// only known peers may list and download
    #[argh(switch)]
    pub(crate) private: bool,
    /// announce the served files to this index (an id from the peer list, or host:port; default: tracker in p2p.ron)
    #[argh(option, arg_name = "PEER")]
    pub(crate) tracker: Option<String>,
    /// tcp or tls (default: tls when this peer has an identity)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust client certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// seconds a connection may stall mid-transfer, or stay idle, before it is dropped (default 30)
    #[argh(option, default = "30", arg_name = "SECS")]
    pub(crate) timeout: u64,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
    /// print the startup line as JSON
    #[argh(switch)]
    pub(crate) json: bool,
    /// log only warnings and errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
}

/// List the files of one or more peers (asked at once), or of the whole network.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "filelist",
    note = "For each peer: every file's name, size and BLAKE3 hash (the hash b3sum prints). Without a PEER, the \
            index (--tracker, or tracker in p2p.ron) lists the whole network: every file with the number of peers \
            serving it; a name served with different contents shows once per content.",
    example = "{command_name} peer1 peer2\n{command_name} --json peer1\n{command_name} --tracker index.lan:6969"
)]
pub(crate) struct Filelist {
    /// peers to ask (none: ask the index)
    #[argh(positional, arg_name = "PEER")]
    pub(crate) peers: Vec<String>,
    /// the index to ask when no PEER is named (an id from the peer list, or host:port; default: tracker in p2p.ron)
    #[argh(option, arg_name = "PEER")]
    pub(crate) tracker: Option<String>,
    #[argh(option, default = "30", arg_name = "SECS")]
    /// seconds to wait for a peer that stops answering; a whole answer may take 20 times that (default 30)
    pub(crate) timeout: u64,
    /// tcp or tls (default: tls when there is an identity or a pinned peer)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// print JSON on stdout
    #[argh(switch)]
    pub(crate) json: bool,
    /// print only errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
}

/// Push a file to one or more peers (all at once).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "upload",
    note = "FILE is a name in ./served_files or a path. It lands in each peer's served folder under its own name, \
            after the peer has verified every block. A peer refuses a name that is being uploaded already, and a \
            name it has with different content unless it runs with --allow-overwrite.",
    example = "{command_name} notes.txt peer2 peer3\n{command_name} ./build/app.tar.gz 10.0.0.5:5000"
)]
pub(crate) struct Upload {
    /// the file to push
    #[argh(positional, arg_name = "FILE")]
    pub(crate) file: String,
    /// peers to push to
    #[argh(positional, arg_name = "PEER")]
    pub(crate) peers: Vec<String>,
    #[argh(option, default = "30", arg_name = "SECS")]
    /// seconds to wait for a peer that stops answering; a whole answer may take 20 times that (default 30)
    pub(crate) timeout: u64,
    /// tcp or tls (default: tls when there is an identity or a pinned peer)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// print JSON on stdout
    #[argh(switch)]
    pub(crate) json: bool,
    /// print only errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
}

/// Fetch a file, from several peers at once.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "download",
    note = "A download is for one content: the --hash given, the hash the index named, or else the content \
            offered from the most distinct hosts (peers on one machine are one vote; among equals the \
            first-named peer's). A peer offering other content is dropped and named, and the file is saved \
            under the name asked for (with --hash alone, the first peer's name, which never replaces a local \
            file). Ranges of the file come from every peer that has it at once, as many from each as its speed \
            deserves; near the end fast peers take over what slow ones still hold. Every block is verified \
            against the file's BLAKE3 hash before it is written, and the file appears under its name only \
            when complete. A peer that fails or sends bad data is dropped and the others finish the file. \
            An interrupted download (Ctrl-C, a crash, every peer gone) keeps what arrived in \
            DIR/.p2p/resume; the same command again checks it and fetches only the rest. \
            While it downloads, it serves the blocks it has verified to the other peers fetching the same \
            file (it swarms): peers learn of each other from the peers they fetch from, and a file spreads \
            block by block instead of from one peer to each. Only what this command downloads is served, \
            by hash, never listed (--listen sets the address, --listen off serves nothing). \
            With --all or --hash there is no NAME: every word is a PEER (add names with --file). \
            Without a PEER, the index (--tracker, or tracker in p2p.ron) names every peer serving the file; a \
            name served with different contents is refused with the candidates listed: choose with --hash. \
            With several files, each gets one line (with --json, one object per line) and a summary \
            line ends the output. On a terminal, bars show bytes, rate, time left and peers in use.",
    example = "{command_name} notes.txt peer1 peer2\n{command_name} notes.txt peer1 --output ~/Downloads\n\
               {command_name} a.txt --file b.txt peer1\n{command_name} --all peer1 peer2\n\
               {command_name} --hash 6a0c...e1 peer1\n{command_name} notes.txt --tracker index.lan:6969"
)]
pub(crate) struct Download {
    /// the file's name, then the peers to fetch from (with --all or --hash only peers; without peers, every peer the index names)
    #[argh(positional, arg_name = "NAME PEER")]
    pub(crate) words: Vec<String>,
    /// the index that names the peers when none is given (an id from the peer list, or host:port; default: tracker in p2p.ron)
    #[argh(option, arg_name = "PEER")]
    pub(crate) tracker: Option<String>,
    /// where to put the file (default: ./served_files, created if missing)
    #[argh(option, short = 'o', arg_name = "DIR")]
    pub(crate) output: Option<PathBuf>,
    /// replace a local file of the same name that has different content
    #[argh(switch)]
    pub(crate) overwrite: bool,
    /// another file to download (repeat for more)
    #[argh(option, arg_name = "NAME")]
    pub(crate) file: Vec<String>,
    /// every file the peers serve
    #[argh(switch)]
    pub(crate) all: bool,
    /// the file with this BLAKE3 hash, whatever its name; no other content is taken (repeat for more)
    #[argh(option, arg_name = "HEX")]
    pub(crate) hash: Vec<String>,
    /// bytes per request, e.g. 100 or 1MiB (default: adapts to each peer's speed)
    #[argh(option, arg_name = "SIZE")]
    pub(crate) chunk_size: Option<String>,
    /// where to serve what this download has so far to the other peers fetching the same file (default: 0.0.0.0:0, a free port; "off" serves nothing)
    #[argh(option, arg_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// once done, keep serving the file to peers still fetching it until none has for 3 s, but at most this long, e.g. 30s or 5m (default 2m; 0 stops at once)
    #[argh(option, arg_name = "DURATION")]
    pub(crate) seed_for: Option<String>,
    /// files downloaded at once with --all or several names (default 8)
    #[argh(option, default = "8", arg_name = "N")]
    pub(crate) parallel: usize,
    #[argh(option, default = "30", arg_name = "SECS")]
    /// seconds to wait for a peer that stops answering; a whole answer may take 20 times that (default 30)
    pub(crate) timeout: u64,
    /// tcp or tls (default: tls when there is an identity or a pinned peer)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// print JSON on stdout
    #[argh(switch)]
    pub(crate) json: bool,
    /// print only errors and the final result line
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
}

/// Run the index: the network's file list, with direct transfers between peers.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "tracker",
    note = "Peers that serve with --tracker keep a session to the index and publish their file list and its \
            changes; the index forgets a peer when its session ends or stays silent for --ttl seconds. Clients ask \
            it with `p2p filelist`, `p2p download NAME` and `p2p peers` without naming peers, then talk to the \
            peers directly: no file data passes through the index.\n\n\
            With an identity (`p2p init` in this folder) it speaks TLS and knows each peer by its certificate; \
            --private admits only peers it knows (pinned in the peer list or p2p.ron, or remembered).",
    example = "{command_name}\n{command_name} --listen 0.0.0.0:6969 --ttl 30\n{command_name} --private"
)]
pub(crate) struct Tracker {
    /// where to listen (default: listen in p2p.ron, or host:port of config.json's server section, else 0.0.0.0:6969; port 0 picks a free one)
    #[argh(option, arg_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// seconds of silence after which a peer is forgotten (default 30)
    #[argh(option, default = "30", arg_name = "SECS")]
    pub(crate) ttl: u64,
    /// only known peers may announce and ask (TLS)
    #[argh(switch)]
    pub(crate) private: bool,
    /// tcp or tls (default: tls when this folder has an identity)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust client certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// seconds a connection may stall mid-message, or stay idle unjoined, before it is dropped (default 30)
    #[argh(option, default = "30", arg_name = "SECS")]
    pub(crate) timeout: u64,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
    /// print the startup line as JSON
    #[argh(switch)]
    pub(crate) json: bool,
    /// log only warnings and errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
}

/// List the peers the index knows to be online.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "peers",
    note = "Each peer's id, the address it serves on, how many files it serves and, over TLS, its fingerprint.",
    example = "{command_name}\n{command_name} --tracker index.lan:6969 --json"
)]
pub(crate) struct Peers {
    /// the index to ask (an id from the peer list, or host:port; default: tracker in p2p.ron)
    #[argh(option, arg_name = "PEER")]
    pub(crate) tracker: Option<String>,
    #[argh(option, default = "30", arg_name = "SECS")]
    /// seconds to wait for the index; a whole answer may take 20 times that (default 30)
    pub(crate) timeout: u64,
    /// tcp or tls (default: tls when there is an identity or a pinned peer)
    #[argh(option, arg_name = "NAME")]
    pub(crate) transport: Option<Choice>,
    /// trust certificates issued by the CA in FILE
    #[argh(option, arg_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// print JSON on stdout
    #[argh(switch)]
    pub(crate) json: bool,
    /// print only errors
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,
    /// the peer list (default: peer_settings.txt in . or ..)
    #[argh(option, arg_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
}

/// An interactive prompt for filelist, upload and download, as the original tool had.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "shell",
    note = "Commands: filelist PEER..., upload FILE PEER..., download NAME PEER... (with the options of the \
            one-shot commands, e.g. download --all peer1), in any letter case and with or without the original \
            tool's #: #FILELIST peer1 peer2, #UPLOAD notes.txt peer2 peer3, #DOWNLOAD notes.txt peer1 peer2. \
            Options before `shell` (--json, -q, --settings, --config, --transport, --ca) hold for every command. \
            Quote names with spaces (\"my file.txt\").\n\n\
            End a line with & to run it in the background; `jobs` lists the background jobs and their state, \
            `wait` waits for them, `cancel N` stops job N. A job's results are printed when it ends. \
            `help` lists the commands, `help COMMAND` shows a command's options; `exit`, `quit` or Ctrl-D leave \
            (a second `exit` cancels jobs still running).\n\n\
            Tab completes command words, peer ids (from peer_settings.txt), names the peers listed in this \
            session (for download) and files in ./served_files (for upload). Ctrl-C clears the line; while a \
            command runs, Ctrl-C cancels it and the prompt comes back (a download keeps what arrived, and the \
            same command resumes it). History is kept in .p2p/shell_history in a peer's folder (one holding \
            served_files/ or p2p.ron), else in $XDG_STATE_HOME/p2p/shell_history (~/.local/state/p2p/...).\n\n\
            Run from a peer's folder, as the original tool: uploads are read from and downloads land in its \
            served_files, and the peer list is found in it or its parent.\n\n\
            When standard input is not a terminal (p2p shell < script.txt), commands are read from it with no \
            prompt, colours or progress: one result line per command on stdout, errors on stderr. Blank lines \
            and comments (# and a space, or #!) are skipped; background jobs are waited for at the end. Exit \
            status: 0 when every command succeeded, 1 when any failed, 130 when stopped by Ctrl-C.",
    example = "{command_name}\n\
               printf '#FILELIST peer1\\n#DOWNLOAD notes.txt peer1\\n' | {command_name}"
)]
pub(crate) struct Shell {
    /// the history file (default: .p2p/shell_history in a peer's folder, else under $XDG_STATE_HOME or ~/.local/state)
    #[argh(option, arg_name = "FILE")]
    pub(crate) history: Option<PathBuf>,
}
