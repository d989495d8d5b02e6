//! File names that are safe to write: the one place that decides.
//!
//! Every name that arrives from a peer, a command line or a directory
//! listing goes through [`FileName::new`] before anything is read or written
//! under it. A `FileName` is a single path component that means the same
//! file on Linux, macOS and Windows, so a name accepted by one peer can be
//! stored by every other peer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted name, in bytes of UTF-8 (the common file-system limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The folder each store keeps its own state in (partial files, manifests).
/// It is never listed and never accepted as a file name.
pub const STATE_DIR: &str = ".p2p";

/// A checked file name: one component, portable, never escaping its folder.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FileName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("the name is {0} bytes long; the limit is 255")]
    TooLong(usize),
    /// `.` or `..`: they name a folder, not a file.
    #[error("`.` and `..` are not file names")]
    DotName,
    /// A path separator: names are single components.
    #[error("the name contains a path separator {0:?}")]
    Separator(char),
    /// A control character (including NUL).
    #[error("the name contains the control character U+{0:04X}")]
    Control(u32),
    /// An invisible or direction-changing character, which can make a name
    /// look like another in a listing.
    #[error("the name contains the invisible character U+{0:04X}")]
    Invisible(u32),
    /// A character that looks like a path separator or a dot (`∕`, `／`,
    /// `․`...): `..∕..∕etc∕passwd` would read as a path that escapes.
    #[error("the name contains U+{0:04X}, which looks like a path separator or a dot")]
    LookAlike(u32),
    /// A character Windows does not allow in names (`<>:"|?*`); `:` also
    /// covers drive prefixes such as `C:` and alternate data streams.
    #[error("the name contains {0:?}, which Windows does not allow in file names")]
    WindowsChar(char),
    /// A device name Windows reserves (CON, NUL, COM1...), with or without
    /// an extension.
    #[error("{0:?} is a reserved device name on Windows")]
    Reserved(String),
    /// Windows strips a trailing dot or space, so the name would change.
    #[error("the name ends with a dot or a space")]
    TrailingDotOrSpace,
    /// The store's own state folder.
    #[error("`.p2p` is reserved for p2p's own state")]
    StateDir,
}

impl FileName {
    /// Checks `name` and wraps it. This is the only way to make a `FileName`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        check(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in Unicode's composed form (NFC): how a name that arrives
    /// from elsewhere is written, so that it is one file on every file
    /// system (macOS composes names, Linux keeps them as given).
    pub fn to_nfc(&self) -> FileName {
        use unicode_normalization::UnicodeNormalization;
        // Composing keeps every rule here, but may change the length in
        // bytes: it is checked again (and the name kept as given if not).
        let nfc: String = self.0.nfc().collect();
        FileName::new(&nfc).unwrap_or_else(|_| self.clone())
    }

    /// What two names that would collide on a case-insensitive or
    /// normalizing file system (Windows, macOS) have in common: composed,
    /// then in lower case.
    pub fn folded(&self) -> String {
        use unicode_normalization::UnicodeNormalization;
        self.0.nfc().flat_map(char::to_lowercase).collect::<String>().nfc().collect()
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        FileName::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// Windows device names, reserved in every folder and with any extension.
/// The superscript digits are reserved too (Windows treats ¹²³ as digits).
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
    "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Format characters that change how text displays without showing:
/// bidirectional overrides and isolates, zero-width characters, the byte
/// order mark. (`a\u{202E}txt.exe` displays as `aexe.txt`.)
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Characters that look like a path separator or a dot: division slash,
/// fraction slash, fullwidth and big solidus, set minus and the reverse
/// solidus look-alikes; one- and two-dot leaders, ellipsis, small and
/// fullwidth full stops.
fn is_look_alike(c: char) -> bool {
    matches!(
        c,
        '\u{2215}'
            | '\u{2044}'
            | '\u{FF0F}'
            | '\u{29F8}'
            | '\u{2571}'
            | '\u{FF3C}'
            | '\u{2216}'
            | '\u{29F9}'
            | '\u{FE68}'
            | '\u{2572}'
            | '\u{2024}'
            | '\u{2025}'
            | '\u{2026}'
            | '\u{FE52}'
            | '\u{FF0E}'
    )
}

fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    // `..` is only a traversal as a whole component; separators are refused
    // below, so `a..b` is an ordinary name.
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    for c in name.chars() {
        match c {
            '/' | '\\' => return Err(NameError::Separator(c)),
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => return Err(NameError::WindowsChar(c)),
            c if c.is_control() => return Err(NameError::Control(c as u32)),
            c if is_invisible(c) => return Err(NameError::Invisible(c as u32)),
            c if is_look_alike(c) => return Err(NameError::LookAlike(c as u32)),
            _ => {}
        }
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(NameError::TrailingDotOrSpace);
    }
    // Windows matches device names on the part before the first dot, after
    // dropping trailing spaces: "nul.tar.gz" and "COM1 .txt" are devices.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err(NameError::Reserved(name.to_owned()));
    }
    if name.eq_ignore_ascii_case(STATE_DIR) {
        return Err(NameError::StateDir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use NameError::*;
        let long = "a".repeat(256);
        let max = "a".repeat(255);
        // Four bytes per char: 64 chars = 256 bytes.
        let long_utf8 = "𝄞".repeat(64);
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("notes.txt", Ok(())),
            ("a..b", Ok(())),
            (".bashrc", Ok(())),
            ("..hidden", Ok(())),
            ("résumé – final.pdf", Ok(())),
            ("with space.txt", Ok(())),
            ("CONSOLE.txt", Ok(())),
            ("com10", Ok(())),
            ("nullish", Ok(())),
            (&max, Ok(())),
            ("", Err(Empty)),
            (&long, Err(TooLong(256))),
            (&long_utf8, Err(TooLong(256))),
            (".", Err(DotName)),
            ("..", Err(DotName)),
            ("../etc/passwd", Err(Separator('/'))),
            ("a/b", Err(Separator('/'))),
            ("/etc/passwd", Err(Separator('/'))),
            ("..\\windows", Err(Separator('\\'))),
            ("\\\\server\\share", Err(Separator('\\'))),
            ("C:", Err(WindowsChar(':'))),
            ("C:evil", Err(WindowsChar(':'))),
            ("file.txt:stream", Err(WindowsChar(':'))),
            ("what?", Err(WindowsChar('?'))),
            ("a*b", Err(WindowsChar('*'))),
            ("a<b", Err(WindowsChar('<'))),
            ("a|b", Err(WindowsChar('|'))),
            ("a\"b", Err(WindowsChar('"'))),
            ("nul\0byte", Err(Control(0))),
            ("line\nbreak", Err(Control(0x0a))),
            ("tab\t", Err(Control(0x09))),
            ("del\u{7f}", Err(Control(0x7f))),
            ("c1\u{85}", Err(Control(0x85))),
            ("evil\u{202E}txt.exe", Err(Invisible(0x202E))),
            ("zero\u{200B}width", Err(Invisible(0x200B))),
            ("\u{FEFF}bom", Err(Invisible(0xFEFF))),
            ("CON", Err(Reserved("CON".into()))),
            ("con", Err(Reserved("con".into()))),
            ("nul.txt", Err(Reserved("nul.txt".into()))),
            ("NUL.tar.gz", Err(Reserved("NUL.tar.gz".into()))),
            ("COM1", Err(Reserved("COM1".into()))),
            ("lpt9.log", Err(Reserved("lpt9.log".into()))),
            ("COM1 .txt", Err(Reserved("COM1 .txt".into()))),
            ("COM¹", Err(Reserved("COM¹".into()))),
            ("AUX", Err(Reserved("AUX".into()))),
            ("PRN.doc", Err(Reserved("PRN.doc".into()))),
            ("trailing.", Err(TrailingDotOrSpace)),
            ("trailing ", Err(TrailingDotOrSpace)),
            ("...", Err(TrailingDotOrSpace)),
            (".p2p", Err(StateDir)),
            (".P2P", Err(StateDir)),
            // Look-alikes of separators and dots.
            ("..\u{2215}..\u{2215}etc\u{2215}passwd", Err(LookAlike(0x2215))),
            ("a\u{FF0F}b", Err(LookAlike(0xFF0F))),
            ("1\u{2044}2", Err(LookAlike(0x2044))),
            ("a\u{FF3C}b", Err(LookAlike(0xFF3C))),
            ("\u{2025}", Err(LookAlike(0x2025))),
            ("x\u{2024}\u{2024}y", Err(LookAlike(0x2024))),
            ("\u{FF0E}\u{FF0E}", Err(LookAlike(0xFF0E))),
            ("wait\u{2026}", Err(LookAlike(0x2026))),
            // Composed and decomposed forms are both names; they fold alike.
            ("cafe\u{301}.txt", Ok(())),
            ("caf\u{e9}.txt", Ok(())),
        ];
        for (name, want) in cases {
            assert_eq!(FileName::new(name).map(|_| ()), *want, "name {name:?} should give {want:?}");
        }
    }

    #[test]
    fn names_that_collide_elsewhere_fold_alike() {
        let n = |s: &str| FileName::new(s).unwrap();
        assert_eq!(n("cafe\u{301}.txt").to_nfc().as_str(), "caf\u{e9}.txt");
        assert_eq!(n("caf\u{e9}.txt").to_nfc().as_str(), "caf\u{e9}.txt");
        assert_eq!(n("Cafe\u{301}.TXT").folded(), n("caf\u{e9}.txt").folded());
        assert_eq!(n("README.md").folded(), n("readme.md").folded());
        assert_ne!(n("a.txt").folded(), n("b.txt").folded());
        // The German sharp s lowercases to itself, ẞ to ß.
        assert_eq!(n("STRA\u{1E9E}E").folded(), n("stra\u{df}e").folded());
    }

    #[test]
    fn deserialize_checks() {
        let good: Result<FileName, _> = postcard::from_bytes(&postcard::to_stdvec("ok.txt").unwrap());
        assert_eq!(good.unwrap().as_str(), "ok.txt");
        let bad: Result<FileName, _> = postcard::from_bytes(&postcard::to_stdvec("../x").unwrap());
        assert!(bad.is_err());
    }
}
