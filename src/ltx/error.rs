//! The LTX codec's error type: what was wrong with a file (or the I/O under it), worded for
//! the status and log lines that show it. It holds no logic beyond mapping I/O errors.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum LtxError {
    Io(io::Error),
    /// The input ended before the structure being read was complete.
    Truncated,
    BadMagic,
    /// An age file where an LTX file belongs: an encrypted replica read without its keys.
    Encrypted,
    BadHeader(String),
    BadPage(String),
    BadIndex(String),
    BadTrailer(String),
    /// The trailer's file checksum does not match the file's contents.
    ChecksumMismatch {
        expected: u64,
        actual: u64,
    },
    /// A snapshot's post-apply checksum does not match the checksum of its pages.
    PostApplyChecksumMismatch {
        expected: u64,
        actual: u64,
    },
}

impl fmt::Display for LtxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LtxError::Io(e) => write!(f, "ltx i/o error: {e}"),
            LtxError::Truncated => write!(f, "ltx file is truncated"),
            LtxError::BadMagic => write!(f, "not an ltx file (magic is not \"LTX1\")"),
            LtxError::Encrypted => write!(
                f,
                "the object is age-encrypted: give the replica's identity (`age: identities:` in its config, or REPLICA_AGE_IDENTITY_FILE)"
            ),
            LtxError::BadHeader(m) => write!(f, "invalid ltx header: {m}"),
            LtxError::BadPage(m) => write!(f, "invalid ltx page: {m}"),
            LtxError::BadIndex(m) => write!(f, "invalid ltx page index: {m}"),
            LtxError::BadTrailer(m) => write!(f, "invalid ltx trailer: {m}"),
            LtxError::ChecksumMismatch { expected, actual } => write!(
                f,
                "ltx file checksum mismatch: trailer says {expected:016x}, contents hash to {actual:016x}"
            ),
            LtxError::PostApplyChecksumMismatch { expected, actual } => write!(
                f,
                "ltx snapshot post-apply checksum mismatch: trailer says {expected:016x}, pages sum to {actual:016x}"
            ),
        }
    }
}

impl std::error::Error for LtxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LtxError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LtxError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LtxError::Truncated
        } else {
            LtxError::Io(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_clearly() {
        let e = LtxError::ChecksumMismatch {
            expected: 1,
            actual: 2,
        };
        assert_eq!(
            e.to_string(),
            "ltx file checksum mismatch: trailer says 0000000000000001, contents hash to 0000000000000002"
        );
        assert_eq!(LtxError::Truncated.to_string(), "ltx file is truncated");
    }
}
