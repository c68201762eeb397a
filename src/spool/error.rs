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
        }
    }
}

impl std::error::Error for SpoolError {}

pub(super) fn io(what: &str, path: &Path, e: std::io::Error) -> SpoolError {
    SpoolError::Io(format!("{what} {}: {e}", path.display()))
}
