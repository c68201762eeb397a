//! The spool's error type. It owns the wording of spool failures; it must not decide what a
//! caller does about them (falling back to a snapshot is the caller's choice).

use crate::base::held_dir::DirError;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum SpoolError {
    Io(String),
    /// The record would take the spool past its cap; the caller must fall back to a snapshot.
    Overflow {
        cap_bytes: u64,
    },
    Corrupt(String),
    /// A record before this one failed while the chain had already moved past it; records
    /// are refused until that failure has owed its snapshot.
    AfterFailedRecord,
    /// Another process owns this spool.
    Locked(PathBuf),
    /// The spool directory (or a file in it) cannot be trusted (a symlink, someone
    /// else's): nothing is written into it and the database is not replicated.
    Refused {
        path: PathBuf,
        reason: String,
    },
    /// The spool cannot be created in the database's directory `dir`: this process may
    /// not write there (permissions, a read-only file system).
    DirectoryNotWritable {
        dir: PathBuf,
        spool: PathBuf,
        error: String,
    },
    /// This process may not write `path`, the spool directory or a file in it (`what`
    /// says what it tried).
    NotWritable {
        path: PathBuf,
        what: &'static str,
        error: String,
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
            SpoolError::AfterFailedRecord => write!(
                f,
                "spool: the record before this one failed; a snapshot will be shipped instead"
            ),
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
            SpoolError::DirectoryNotWritable { dir, spool, error } => write!(
                f,
                "directory {} is not writable ({error}): the spool {} cannot be created there",
                dir.display(),
                spool.display()
            ),
            SpoolError::NotWritable { path, what, error } => {
                write!(f, "spool: {what} {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for SpoolError {}

/// An I/O failure on `path`; one that met a symlink where the spool has its own files (a
/// planted `lock -> victim`) refuses the spool instead, and one this process may not write
/// says so.
pub(super) fn io(what: &'static str, path: &Path, e: std::io::Error) -> SpoolError {
    if crate::base::private_fs::is_symlink_refusal(&e) {
        return SpoolError::Refused {
            path: path.to_path_buf(),
            reason: format!("{what} it: it is a symlink (not followed)"),
        };
    }
    if crate::base::held_dir::is_not_writable(&e) {
        return SpoolError::NotWritable {
            path: path.to_path_buf(),
            what,
            error: e.to_string(),
        };
    }
    SpoolError::Io(format!("{what} {}: {e}", path.display()))
}

/// Why the spool directory `spool` (or its subdirectory `sub`) cannot be held: the
/// database's directory or the spool not writable by this process, or not to be trusted.
pub(super) fn dir_error(spool: &Path, sub: Option<&Path>, e: DirError) -> SpoolError {
    let path = sub.unwrap_or(spool).to_path_buf();
    match (&e, sub) {
        (DirError::Create(err), None) if e.is_not_writable() => SpoolError::DirectoryNotWritable {
            dir: spool
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            spool: spool.to_path_buf(),
            error: err.to_string(),
        },
        (DirError::Create(err), Some(_)) if e.is_not_writable() => SpoolError::NotWritable {
            path,
            what: "creating",
            error: err.to_string(),
        },
        (DirError::Open(err), _) if e.is_not_writable() => SpoolError::NotWritable {
            path,
            what: "opening",
            error: err.to_string(),
        },
        _ => SpoolError::Refused {
            path,
            reason: e.to_string(),
        },
    }
}
