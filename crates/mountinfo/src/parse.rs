//! Parser for `/proc/PID/mountinfo`.
//!
//! One line per mount:
//!
//! ```text
//! ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNT_OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTS
//! ```
//!
//! The kernel escapes space, tab, newline and backslash as `\ooo` (three octal digits) in the
//! root, mount point, source and file system type, and `,`, `=` and the same characters inside
//! option values. [`parse_mountinfo`] decodes every `\ooo` escape in every text field (bytes, so
//! paths that are not UTF-8 survive). A backslash that is not followed by three octal digits
//! is kept as it is (the kernel never writes one, and keeping it loses nothing).
//!
//! Optional fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`) are decoded;
//! any other tag a future kernel adds is kept verbatim as [`OptionalField::Unknown`], in order.
//! The source may be empty (two spaces in a row) or the literal `none`: both are kept exactly
//! as the kernel wrote them.
//!
//! A malformed line is a [`ParseError`] naming its line number (1-based); the parser never
//! panics on any input.
//!
//! ```
//! use crcli_mountinfo::parse::{parse_mountinfo, OptionalField};
//!
//! let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n";
//! let entries = parse_mountinfo(text.as_bytes()).unwrap();
//! assert_eq!(entries[0].mount_point, std::path::Path::new("/mnt two"));
//! assert_eq!(entries[0].optional, vec![OptionalField::Master(1)]);
//! ```

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::model::DevId;

/// Why a mountinfo line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A line lacks one of the fields every line has.
    #[error("parsing mountinfo line {line}: missing field {field}")]
    MissingField {
        /// 1-based line number.
        line: usize,
        /// Name of the missing field.
        field: &'static str,
    },
    /// A numeric field is not a number.
    #[error("parsing mountinfo line {line}: field {field} is not a valid number: {value:?}")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// Name of the field.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// The device field is not `MAJOR:MINOR`.
    #[error("parsing mountinfo line {line}: device {value:?} is not MAJOR:MINOR")]
    BadDevice {
        /// 1-based line number.
        line: usize,
        /// The text found.
        value: String,
    },
    /// No lone `-` ends the optional fields.
    #[error("parsing mountinfo line {line}: no '-' separator after the optional fields")]
    MissingSeparator {
        /// 1-based line number.
        line: usize,
    },
    /// After the `-` separator there are not exactly three fields.
    #[error("parsing mountinfo line {line}: expected 3 fields after '-', found {found}")]
    WrongFieldCount {
        /// 1-based line number.
        line: usize,
        /// How many fields were found.
        found: usize,
    },
    /// An optional field with a known tag has a bad value (e.g. `shared:x`).
    #[error("parsing mountinfo line {line}: bad optional field {value:?}")]
    BadOptionalField {
        /// 1-based line number.
        line: usize,
        /// The field as written.
        value: String,
    },
    /// A field the kernel only writes in ASCII (mount options, fs type) is not UTF-8.
    #[error("parsing mountinfo line {line}: field {field} is not UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
        /// Name of the field.
        field: &'static str,
    },
}

/// One optional field of a mountinfo line (between the mount options and the `-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OptionalField {
    /// `shared:N`: the mount is in peer group N.
    Shared(u64),
    /// `master:N`: the mount is a slave of peer group N.
    Master(u64),
    /// `propagate_from:N`: receives propagation from peer group N (the closest dominating group
    /// visible from the reader's root, when it differs from the master).
    PropagateFrom(u64),
    /// `unbindable`.
    Unbindable,
    /// A tag this parser does not know, kept verbatim (after unescaping).
    Unknown(String),
}

/// One parsed line of `/proc/PID/mountinfo`, every field decoded, nothing interpreted beyond
/// what the format says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoEntry {
    /// 1-based line number the entry came from.
    pub line: usize,
    /// Field 1: the mount's (old, reusable) id.
    pub mount_id: u32,
    /// Field 2: the parent's old id (the root's parent may not be in the table).
    pub parent_id: u32,
    /// Field 3: `st_dev` of the superblock.
    pub dev: DevId,
    /// Field 4: the mount's root within its file system.
    pub root: PathBuf,
    /// Field 5: the mount point, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Field 6: per-mount options (`rw`, `nosuid`, ...), in order.
    pub mount_options: Vec<String>,
    /// Optional fields, in order, unknown tags kept.
    pub optional: Vec<OptionalField>,
    /// File system type (before the first `.` of the field).
    pub fs_type: String,
    /// File system subtype (after the first `.`, e.g. `sshfs` of `fuse.sshfs`).
    pub fs_subtype: Option<String>,
    /// Mount source exactly as written, decoded: may be empty or `none`.
    pub source: OsString,
    /// Superblock options, split on `,`, each decoded, in order (begins with `ro` or `rw`).
    pub super_options: Vec<OsString>,
}

/// Decodes the kernel's `\ooo` octal escapes. A backslash not followed by three octal digits
/// encoding a byte is kept literally.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b == b'\\' && i + 4 <= field.len() {
            let d = &field[i + 1..i + 4];
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn unescape_os(field: &[u8]) -> OsString {
    OsString::from_vec(unescape(field))
}

fn unescape_utf8(field: &[u8], line: usize, name: &'static str) -> Result<String, ParseError> {
    String::from_utf8(unescape(field)).map_err(|_| ParseError::NotUtf8 { line, field: name })
}

fn number<T: std::str::FromStr>(
    field: &[u8],
    line: usize,
    name: &'static str,
) -> Result<T, ParseError> {
    std::str::from_utf8(field)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ParseError::BadNumber {
            line,
            field: name,
            value: String::from_utf8_lossy(field).into_owned(),
        })
}

fn parse_optional(field: &[u8], line: usize) -> Result<OptionalField, ParseError> {
    let bad = || ParseError::BadOptionalField {
        line,
        value: String::from_utf8_lossy(field).into_owned(),
    };
    let tagged = |prefix: &[u8]| -> Option<Result<u64, ParseError>> {
        field.strip_prefix(prefix).map(|rest| {
            std::str::from_utf8(rest)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        })
    };
    if let Some(v) = tagged(b"shared:") {
        return v.map(OptionalField::Shared);
    }
    if let Some(v) = tagged(b"master:") {
        return v.map(OptionalField::Master);
    }
    if let Some(v) = tagged(b"propagate_from:") {
        return v.map(OptionalField::PropagateFrom);
    }
    if field == b"unbindable" {
        return Ok(OptionalField::Unbindable);
    }
    Ok(OptionalField::Unknown(
        String::from_utf8_lossy(&unescape(field)).into_owned(),
    ))
}

/// Parses one mountinfo line (without its newline). `line` is its 1-based number, used in
/// errors.
pub fn parse_line(text: &[u8], line: usize) -> Result<MountInfoEntry, ParseError> {
    let fields: Vec<&[u8]> = text.split(|&b| b == b' ').collect();
    let get = |i: usize, name: &'static str| -> Result<&[u8], ParseError> {
        fields
            .get(i)
            .copied()
            .ok_or(ParseError::MissingField { line, field: name })
    };
    let mount_id = number(get(0, "mount id")?, line, "mount id")?;
    let parent_id = number(get(1, "parent id")?, line, "parent id")?;
    let dev_text = get(2, "major:minor")?;
    let dev = {
        let bad = || ParseError::BadDevice {
            line,
            value: String::from_utf8_lossy(dev_text).into_owned(),
        };
        let mut it = dev_text.splitn(2, |&b| b == b':');
        let major = it.next().ok_or_else(bad)?;
        let minor = it.next().ok_or_else(bad)?;
        DevId {
            major: number(major, line, "major").map_err(|_| bad())?,
            minor: number(minor, line, "minor").map_err(|_| bad())?,
        }
    };
    let root = PathBuf::from(unescape_os(get(3, "root")?));
    let mount_point = PathBuf::from(unescape_os(get(4, "mount point")?));
    let opts = get(5, "mount options")?;
    let mount_options = unescape_utf8(opts, line, "mount options")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let sep = fields[6.min(fields.len())..]
        .iter()
        .position(|f| *f == b"-")
        .map(|p| p + 6)
        .ok_or(ParseError::MissingSeparator { line })?;
    let optional = fields[6..sep]
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| parse_optional(f, line))
        .collect::<Result<Vec<_>, _>>()?;
    let tail = &fields[sep + 1..];
    if tail.len() != 3 {
        return Err(ParseError::WrongFieldCount {
            line,
            found: tail.len(),
        });
    }
    let full_type = unescape_utf8(tail[0], line, "fs type")?;
    if full_type.is_empty() {
        return Err(ParseError::MissingField {
            line,
            field: "fs type",
        });
    }
    let (fs_type, fs_subtype) = match full_type.split_once('.') {
        Some((t, s)) => (t.to_owned(), Some(s.to_owned())),
        None => (full_type, None),
    };
    let source = unescape_os(tail[1]);
    let super_options = tail[2]
        .split(|&b| b == b',')
        .filter(|s| !s.is_empty())
        .map(unescape_os)
        .collect();
    Ok(MountInfoEntry {
        line,
        mount_id,
        parent_id,
        dev,
        root,
        mount_point,
        mount_options,
        optional,
        fs_type,
        fs_subtype,
        source,
        super_options,
    })
}

/// Parses a whole mountinfo file. Empty lines are skipped (the file ends with a newline);
/// any malformed line stops the parse with an error naming it.
pub fn parse_mountinfo(text: &[u8]) -> Result<Vec<MountInfoEntry>, ParseError> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}
