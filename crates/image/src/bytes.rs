//! Byte strings and paths as stored in an image.
//!
//! Linux names and paths are bytes, not UTF-8. [`OsBytes`] keeps them exact: in the binary image
//! they are raw bytes; in the JSON view (any human-readable serde format) they are a string in
//! which valid UTF-8 stays as is, a backslash is written `\\` and any other byte `\xNN`, so the
//! JSON view is lossless too. [`ImagePath`] is an [`OsBytes`] that is safe to use as a path when
//! restoring: no NUL byte, no `..` component, at most [`MAX_PATH_LEN`] bytes.
//!
//! Both types validate themselves when they are decoded, so a corrupt or malicious image cannot
//! smuggle a path that escapes the directory it is applied to.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest [`ImagePath`] accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The longest [`OsBytes`] accepted, in bytes.
pub const MAX_OS_BYTES_LEN: usize = 65536;

/// Why a byte string was refused as an [`OsBytes`] or [`ImagePath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BytesError {
    /// The value contains a NUL byte.
    #[error("validating {what}: contains a NUL byte")]
    Nul {
        /// What was being validated ("path", "name").
        what: &'static str,
    },
    /// The value is longer than allowed.
    #[error("validating {what}: {len} bytes is longer than the limit of {max}")]
    TooLong {
        /// What was being validated.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path has a `..` component.
    #[error("validating path {path:?}: contains a `..` component")]
    DotDot {
        /// The path, lossily converted for display.
        path: String,
    },
    /// The escaped text form could not be parsed.
    #[error("parsing escaped bytes: {0}")]
    BadEscape(String),
}

/// A byte string from the kernel (a name, a symlink target, a mount source): no NUL byte, at most
/// [`MAX_OS_BYTES_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OsBytes(Vec<u8>);

impl OsBytes {
    /// Checks `bytes` and wraps them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, BytesError> {
        let bytes = bytes.into();
        check_plain("name", &bytes, MAX_OS_BYTES_LEN)?;
        Ok(Self(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The escaped text form used by the JSON view (see the module documentation).
    pub fn to_escaped(&self) -> String {
        escape(&self.0)
    }
}

impl fmt::Debug for OsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", escape(&self.0))
    }
}

impl fmt::Display for OsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl TryFrom<&str> for OsBytes {
    type Error = BytesError;
    fn try_from(s: &str) -> Result<Self, BytesError> {
        Self::new(s.as_bytes())
    }
}

/// A path stored in an image: no NUL byte, no `..` component, at most [`MAX_PATH_LEN`] bytes.
/// Absolute (`/a/b`) and relative (`a/b`) forms are both allowed; which one a field holds is said
/// in that field's documentation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ImagePath(Vec<u8>);

impl ImagePath {
    /// Checks `bytes` and wraps them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, BytesError> {
        let bytes = bytes.into();
        check_plain("path", &bytes, MAX_PATH_LEN)?;
        if bytes.split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(BytesError::DotDot {
                path: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(Self(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Whether the path starts with `/`.
    pub fn is_absolute(&self) -> bool {
        self.0.first() == Some(&b'/')
    }

    /// The path as a [`std::path::Path`].
    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }

    /// The escaped text form used by the JSON view (see the module documentation).
    pub fn to_escaped(&self) -> String {
        escape(&self.0)
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", escape(&self.0))
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl TryFrom<&str> for ImagePath {
    type Error = BytesError;
    fn try_from(s: &str) -> Result<Self, BytesError> {
        Self::new(s.as_bytes())
    }
}

impl TryFrom<&std::path::Path> for ImagePath {
    type Error = BytesError;
    fn try_from(p: &std::path::Path) -> Result<Self, BytesError> {
        use std::os::unix::ffi::OsStrExt;
        Self::new(p.as_os_str().as_bytes())
    }
}

fn check_plain(what: &'static str, bytes: &[u8], max: usize) -> Result<(), BytesError> {
    if bytes.len() > max {
        return Err(BytesError::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    if bytes.contains(&0) {
        return Err(BytesError::Nul { what });
    }
    Ok(())
}

/// Escapes bytes for the text form: valid UTF-8 stays, `\` becomes `\\`, other bytes `\xNN`.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_ascii_control() {
                // Control bytes (ESC, CR, BEL, …) would drive the terminal a name or path from an
                // image is printed to: written as `\xNN`, which `unescape` reverses.
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else if c.is_control() {
                // C1 controls (U+0080..U+009F; CSI is U+009B): their UTF-8 bytes as `\xNN`.
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape`].
pub(crate) fn unescape(s: &str) -> Result<Vec<u8>, BytesError> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or_else(|| {
                    BytesError::BadEscape(format!("truncated \\x escape in {s:?}"))
                })?;
                let b = u8::from_str_radix(hex, 16)
                    .map_err(|_| BytesError::BadEscape(format!("bad \\x escape in {s:?}")))?;
                out.push(b);
                i += 4;
            }
            _ => return Err(BytesError::BadEscape(format!("lone backslash in {s:?}"))),
        }
    }
    Ok(out)
}

thread_local! {
    /// The message of the last validation failure inside a decode. postcard turns custom errors
    /// into a bare `SerdeDeCustom`; the codec picks the message up from here.
    static PROBLEM: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Turns a validation error into a serde error, keeping its message for [`take_problem`].
pub(crate) fn problem<E: de::Error>(e: BytesError) -> E {
    let msg = e.to_string();
    PROBLEM.with(|p| *p.borrow_mut() = Some(msg.clone()));
    E::custom(msg)
}

/// Takes the message kept by [`problem`], if any.
pub(crate) fn take_problem() -> Option<String> {
    PROBLEM.with(|p| p.borrow_mut().take())
}

/// Deserializes a list of at most `MAX` elements (`#[serde(deserialize_with =
/// "crate::bytes::bounded_vec::<MAX, _, _>")]`): a decoder stops at the limit instead of
/// building a huge list of tiny elements (a 16 MiB record of 2-byte elements would otherwise
/// become hundreds of MiB in memory).
pub(crate) fn bounded_vec<'de, const MAX: usize, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<const MAX: usize, T>(std::marker::PhantomData<T>);
    impl<'de, const MAX: usize, T: Deserialize<'de>> Visitor<'de> for V<MAX, T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX} elements")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            if let Some(n) = seq.size_hint() {
                if n > MAX {
                    return Err(limit(n, MAX));
                }
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(4096));
            while let Some(v) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(limit(MAX + 1, MAX));
                }
                charge::<A::Error>(std::mem::size_of::<T>())?;
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<MAX, T>(std::marker::PhantomData))
}

thread_local! {
    /// Bytes of list elements the current record decode may still build (`None`: no decode
    /// with a budget is running).
    static BUDGET: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (one record decode) with a budget of `bytes` bytes of list elements, over all the
/// lists of the record, nested ones included; returns `f`'s result and the bytes left.
pub(crate) fn with_budget<R>(bytes: usize, f: impl FnOnce() -> R) -> (R, usize) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BUDGET.with(|b| b.set(None));
        }
    }
    BUDGET.with(|b| b.set(Some(bytes)));
    let _reset = Reset;
    let r = f();
    let left = BUDGET.with(|b| b.get()).unwrap_or(0);
    (r, left)
}

fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
    BUDGET.with(|b| match b.get() {
        None => Ok(()),
        Some(left) if left >= bytes => {
            b.set(Some(left - bytes));
            Ok(())
        }
        Some(_) => {
            let msg = "its lists would take more memory than the decoding limit".to_string();
            PROBLEM.with(|p| *p.borrow_mut() = Some(msg.clone()));
            Err(E::custom(msg))
        }
    })
}

fn limit<E: de::Error>(n: usize, max: usize) -> E {
    let msg = format!("a list of {n} elements exceeds the limit of {max}");
    PROBLEM.with(|p| *p.borrow_mut() = Some(msg.clone()));
    E::custom(msg)
}

/// Serde helpers for raw byte blobs (`Vec<u8>` fields): bytes in the binary image, a hex string
/// in the JSON view.
pub(crate) mod hex {
    use super::*;

    fn to_hex(b: &[u8]) -> String {
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        s
    }

    fn from_hex(s: &str) -> Result<Vec<u8>, BytesError> {
        if s.len() % 2 != 0 || !s.is_ascii() {
            return Err(BytesError::BadEscape(format!(
                "bad hex string of length {}",
                s.len()
            )));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&s[i..i + 2], 16)
                    .map_err(|_| BytesError::BadEscape(format!("bad hex digits at {i}")))
            })
            .collect()
    }

    struct BlobVisitor;
    impl<'de> Visitor<'de> for BlobVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            from_hex(v).map_err(problem)
        }
    }

    /// Serializes a blob.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&to_hex(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    /// Deserializes a blob.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BlobVisitor)
        } else {
            d.deserialize_byte_buf(BlobVisitor)
        }
    }

    /// Serde helpers for a list of blobs.
    pub mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        struct Blob<'a>(&'a [u8]);
        impl Serialize for Blob<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, s)
            }
        }
        struct OwnedBlob(Vec<u8>);
        impl<'de> Deserialize<'de> for OwnedBlob {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(OwnedBlob)
            }
        }

        /// Serializes a list of blobs.
        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for b in v {
                seq.serialize_element(&Blob(b))?;
            }
            seq.end()
        }

        /// The most blobs a list may hold.
        pub const MAX: usize = 1 << 16;

        /// Deserializes a list of at most [`MAX`] blobs.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            let v: Vec<OwnedBlob> = crate::bytes::bounded_vec::<MAX, _, _>(d)?;
            Ok(v.into_iter().map(|b| b.0).collect())
        }
    }
}

macro_rules! serde_bytes_type {
    ($ty:ident, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&escape(&self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        $ty::new(v).map_err(problem)
                    }
                    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<$ty, E> {
                        $ty::new(v).map_err(problem)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::new(unescape(v).map_err(problem)?).map_err(problem)
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
    };
}

serde_bytes_type!(OsBytes, "a byte string without NUL");
serde_bytes_type!(ImagePath, "a path without NUL or `..` components");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_invalid_utf8_and_backslashes() {
        let raw = b"a\\b\xff\xfe\xc3\xa9z".to_vec();
        let e = escape(&raw);
        assert_eq!(e, "a\\\\b\\xff\\xfe\u{e9}z");
        assert_eq!(unescape(&e).unwrap(), raw);
    }

    #[test]
    fn escape_writes_control_characters_as_hex() {
        let raw = "a\x1b[31mred\r\x07\u{9b}2Jz\x7f".as_bytes().to_vec();
        let e = escape(&raw);
        assert_eq!(e, "a\\x1b[31mred\\x0d\\x07\\xc2\\x9b2Jz\\x7f");
        assert!(!e.chars().any(char::is_control));
        assert_eq!(unescape(&e).unwrap(), raw);
    }

    #[test]
    fn image_path_refuses_dotdot_and_nul() {
        assert!(matches!(
            ImagePath::new("a/../b"),
            Err(BytesError::DotDot { .. })
        ));
        assert!(matches!(
            ImagePath::new(".."),
            Err(BytesError::DotDot { .. })
        ));
        assert!(matches!(
            ImagePath::new(b"a\0b".to_vec()),
            Err(BytesError::Nul { .. })
        ));
        assert!(ImagePath::new("a/..b/c..").is_ok());
        assert!(ImagePath::new(vec![b'a'; MAX_PATH_LEN + 1]).is_err());
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert!(unescape("\\").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unescape("\\xzz").is_err());
        assert!(unescape("\\q").is_err());
    }
}

#[cfg(test)]
mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(1u8..=255, 0..12)
                .prop_filter("not ..", |c| c != b".." && !c.contains(&b'/')),
            Just(b".".to_vec()),
            Just("\u{e9}t\u{e9}".as_bytes().to_vec()),
            Just(b"\\x41\\".to_vec()),
        ]
    }

    impl Arbitrary for ImagePath {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            (any::<bool>(), proptest::collection::vec(component(), 0..6))
                .prop_map(|(abs, comps)| {
                    let mut p = if abs { b"/".to_vec() } else { vec![] };
                    p.extend(comps.join(&b'/'));
                    ImagePath::new(p).expect("generated paths are valid")
                })
                .boxed()
        }
    }

    impl Arbitrary for OsBytes {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            proptest::collection::vec(1u8..=255, 0..40)
                .prop_map(|b| OsBytes::new(b).expect("no NUL"))
                .boxed()
        }
    }
}
