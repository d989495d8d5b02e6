//! What a download reports: how it ended, what each source did, and why
//! it failed.

use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{BadBlock, FileInfo};
use crate::store::StoreError;
use crate::transport::Fingerprint;

use super::Wanted;

/// How a download ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was fetched and is now in place.
    Downloaded,
    /// The local folder already had this exact file; nothing was fetched.
    AlreadyPresent,
}

/// The result of a download.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// The file.
    pub info: FileInfo,
    /// What happened.
    pub outcome: Outcome,
    /// Verified bytes found in place from an earlier, interrupted try.
    pub resumed: u64,
    /// Every source, in the order given.
    pub sources: Vec<SourceReport>,
    /// The transport used ("tcp", "tls").
    pub transport: &'static str,
}

/// What one source did.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// The source's label.
    pub label: String,
    /// Verified bytes it delivered (a range fetched twice near the end
    /// counts for the source that delivered it first).
    pub bytes: u64,
    /// Why it delivered less than it could have, if it did.
    pub problem: Option<Problem>,
    /// Its certificate fingerprint, where the transport authenticated it.
    pub identity: Option<Fingerprint>,
}

/// Why a source delivered less than it could have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of trouble.
    pub kind: ProblemKind,
    /// Details for people.
    pub detail: String,
    /// For a block that failed verification: the evidence, which the
    /// index can check before it believes a report.
    pub evidence: Option<BadBlock>,
}

/// Kinds of [`Problem`], for scripts and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// It does not have the file.
    NotFound,
    /// It has other content under that name.
    Different,
    /// It sent data or a manifest that failed verification.
    Corrupt,
    /// It refused (policy).
    Refused,
    /// It stayed busy (serving too many others).
    Busy,
    /// It could not be reached, or the connection failed.
    Unreachable,
    /// It was too slow, or did not answer in time.
    Slow,
    /// It answered too late to take part.
    Late,
    /// Anything else (a protocol violation...).
    Other,
}

impl ProblemKind {
    /// A word for scripts: `not-found`, `different`, `corrupt`, `refused`,
    /// `busy`, `unreachable`, `slow`, `late`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::Different => "different",
            Self::Corrupt => "corrupt",
            Self::Refused => "refused",
            Self::Busy => "busy",
            Self::Unreachable => "unreachable",
            Self::Slow => "slow",
            Self::Late => "late",
            Self::Other => "other",
        }
    }
}

impl Problem {
    pub(super) fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), evidence: None }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No source could provide the file.
    #[error("no source has {wanted}")]
    NoSource {
        /// The file.
        wanted: Wanted,
        /// Each source and why it could not.
        reasons: Vec<(String, Problem)>,
    },
    /// Every source failed before the file was complete.
    #[error("every source failed after {done} of {size} bytes of {name}{}", kept_note(*.kept))]
    SourcesFailed {
        /// The file.
        name: FileName,
        /// Verified bytes in place (including any resumed ones).
        done: u64,
        /// The file size.
        size: u64,
        /// Bytes kept for the next try.
        kept: u64,
        /// Each source and why it failed.
        reasons: Vec<(String, Problem)>,
    },
    /// Something else of that name is already in the local folder: a file
    /// with other content, or something that is not a file.
    #[error("{name} already exists in {location} {}", exists_note(.local))]
    Exists {
        /// The file.
        name: FileName,
        /// The local folder.
        location: String,
        /// Hash of the local file; `None` if it is not a readable file (a
        /// folder, a dangling link).
        local: Option<Hash>,
        /// Whether the name came from a peer (a download by hash alone),
        /// which never replaces anything.
        named_by_peer: bool,
    },
    /// A name already in the local folder would be the same file as this
    /// one on Windows and macOS (they differ only in case or Unicode form).
    #[error(
        "{name} would be the same file as {other} (in {location}) on Windows and macOS: the names differ only \
         in case or Unicode form; not downloaded"
    )]
    Collides {
        /// The file.
        name: FileName,
        /// The file already there.
        other: FileName,
        /// The local folder.
        location: String,
    },
    /// Writing the file here failed (a full disk, say).
    #[error("{error}{}", kept_in(*.kept, location))]
    Write {
        /// What failed.
        error: StoreError,
        /// Verified bytes kept for the next try.
        kept: u64,
        /// The local folder.
        location: String,
    },
    /// The local folder failed.
    #[error("{0}")]
    Local(#[from] StoreError),
}

fn exists_note(local: &Option<Hash>) -> String {
    match local {
        Some(h) => format!("with different content (blake3 {h})"),
        None => "and is not a readable file (a folder, or a link to nothing?)".into(),
    }
}

fn kept_in(kept: u64, location: &str) -> String {
    match kept {
        0 => "; nothing was kept".into(),
        n => format!(
            "; the {} verified so far are kept in {location}/.p2p/resume: run it again to resume (delete that \
             folder to free the space)",
            crate::units::bytes(n)
        ),
    }
}

fn kept_note(kept: u64) -> String {
    if kept > 0 { format!(" ({kept} bytes kept; run it again to resume)") } else { String::new() }
}

impl DownloadError {
    /// Per-source reasons, if the error has them.
    pub fn reasons(&self) -> &[(String, Problem)] {
        match self {
            Self::NoSource { reasons, .. } | Self::SourcesFailed { reasons, .. } => reasons,
            _ => &[],
        }
    }
}

/// Progress of a download, for display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Verified bytes so far (including resumed ones).
    pub done: u64,
    /// File size.
    pub size: u64,
    /// Sources transferring.
    pub active: usize,
}
