//! The spool's error type. It owns the wording of spool failures; it must not decide what a
//! caller does about them (falling back to a snapshot is the caller's choice).

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum SpoolError {
    Io(String),
    /// The record would take the spool past its cap; the caller must fall back to a snapshot.
    Overflow {
        cap_bytes: u64,
    },
    Corrupt(String),
    /// Another process owns this spool.
    Locked(PathBuf),
    /// The spool directory (or a file in it) cannot be trusted (a symlink, someone
    /// else's): nothing is written into it and the database is not replicated.
    Refused {
        path: PathBuf,
        reason: String,
    },
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Io(m) => write!(f, "spool: {m}"),
            SpoolError::Overflow { cap_bytes } => {
                write!(f, "spool is over its cap of {cap_bytes} bytes; a snapshot will be shipped instead")
            }
            SpoolError::Corrupt(m) => write!(f, "spool is corrupt: {m}"),
            SpoolError::Locked(d) => write!(
                f,
                "another process replicates this database (it holds {}); this process leaves replication to it",
                d.join("lock").display()
            ),
            SpoolError::Refused { path, reason } => write!(
                f,
                "spool {} refused: {reason}; this database is not replicated",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

/// An I/O failure on `path`; one that met a symlink where the spool has its own files (a
/// planted `lock -> victim`) refuses the spool instead.
pub(super) fn io(what: &str, path: &Path, e: std::io::Error) -> SpoolError {
    if crate::base::private_fs::is_symlink_refusal(&e) {
        return SpoolError::Refused {
            path: path.to_path_buf(),
            reason: format!("{what} it: it is a symlink (not followed)"),
        };
    }
    SpoolError::Io(format!("{what} {}: {e}", path.display()))
}
