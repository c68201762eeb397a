//! Not replicated: databases the configuration selects that this process does not replicate,
//! and why: opened read-only (`mode=ro`, `immutable=1`, a file it may not write), a spool it
//! may not create or write (a read-only directory), or a spool that cannot be trusted (a
//! symlink, another user's). The application's database opens and works normally; it is
//! simply not replicated, and `replica_status()` and `replica_sync()` say why. It must not
//! write anything into a refused spool.

use crate::base::lock::lock;
use crate::config::ReplicaConfig;
use crate::spool::SpoolError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why SQLite opened a main database file read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnlyOpen {
    /// `immutable=1` in its URI: SQLite takes the file for one that never changes.
    Immutable,
    /// `mode=ro` in its URI.
    ModeRo,
    /// The application asked for it (`SQLITE_OPEN_READONLY`).
    Asked,
    /// Asked read-write, but the file could only be opened for reading.
    FileNotWritable,
}

impl ReadOnlyOpen {
    /// What an open tells: its URI's `immutable` (as SQLite reads the boolean) and `mode`,
    /// whether read-only was asked for, and whether the file was opened read-only.
    pub fn of_open(
        immutable: bool,
        mode: Option<&str>,
        asked_read_only: bool,
        opened_read_only: bool,
    ) -> Option<ReadOnlyOpen> {
        if immutable {
            Some(ReadOnlyOpen::Immutable)
        } else if asked_read_only && mode == Some("ro") {
            Some(ReadOnlyOpen::ModeRo)
        } else if asked_read_only {
            Some(ReadOnlyOpen::Asked)
        } else if opened_read_only {
            Some(ReadOnlyOpen::FileNotWritable)
        } else {
            None
        }
    }
}

/// Why a database the configuration selects is not replicated by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReplicated {
    /// Opened read-only: this connection commits nothing, and takes no spool.
    ReadOnly(ReadOnlyOpen),
    /// The spool cannot be created: this process may not write the database's directory.
    DirectoryNotWritable {
        dir: PathBuf,
        spool: PathBuf,
        error: String,
    },
    /// The spool exists, but this process may not write `path` (the spool or a file in it).
    SpoolNotWritable {
        spool: PathBuf,
        path: PathBuf,
        what: &'static str,
        error: String,
    },
    /// The spool cannot be trusted (a symlink, another user's); the text names the path.
    SpoolRefused(String),
}

impl NotReplicated {
    /// Why a spool error means "not replicated", for the errors that do.
    fn of_spool(spool: &Path, e: &SpoolError) -> Option<NotReplicated> {
        Some(match e {
            SpoolError::Refused { .. } => NotReplicated::SpoolRefused(e.to_string()),
            SpoolError::DirectoryNotWritable { dir, spool, error } => {
                NotReplicated::DirectoryNotWritable {
                    dir: dir.clone(),
                    spool: spool.clone(),
                    error: error.clone(),
                }
            }
            SpoolError::NotWritable { path, what, error } => NotReplicated::SpoolNotWritable {
                spool: spool.to_path_buf(),
                path: path.clone(),
                what,
                error: error.clone(),
            },
            _ => return None,
        })
    }

    /// Whether something is wrong (a spool that should work does not), as opposed to a
    /// database that is read-only where it is.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            NotReplicated::SpoolNotWritable { .. } | NotReplicated::SpoolRefused(_)
        )
    }
}

impl std::fmt::Display for NotReplicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReplicated::ReadOnly(how) => f.write_str(match how {
                ReadOnlyOpen::Immutable => "not replicating: opened with immutable=1",
                ReadOnlyOpen::ModeRo => "not replicating: opened read-only (mode=ro)",
                ReadOnlyOpen::Asked => {
                    "not replicating: opened read-only (SQLITE_OPEN_READONLY)"
                }
                ReadOnlyOpen::FileNotWritable => {
                    "not replicating: opened read-only (this process may not write the database file)"
                }
            }),
            NotReplicated::DirectoryNotWritable { dir, spool, error } => write!(
                f,
                "not replicating: directory {} is not writable ({error}), so the spool {} cannot be created",
                dir.display(),
                spool.display()
            ),
            NotReplicated::SpoolNotWritable {
                spool, path, error, ..
            } if path == spool => write!(
                f,
                "not replicating: spool directory {}: {error}",
                spool.display()
            ),
            NotReplicated::SpoolNotWritable {
                spool,
                path,
                what,
                error,
            } => write!(
                f,
                "not replicating: spool directory {} is not writable: {what} {}: {error}",
                spool.display(),
                path.display()
            ),
            NotReplicated::SpoolRefused(text) => f.write_str(text),
        }
    }
}

/// A database not replicated, and why.
#[derive(Debug, Clone)]
pub struct RefusedDatabase {
    pub path: PathBuf,
    pub config: ReplicaConfig,
    pub reason: NotReplicated,
}

static REFUSED: Mutex<Vec<RefusedDatabase>> = Mutex::new(Vec::new());

/// Opening `path` met the spool error `e`: if it means the database cannot be replicated
/// here (see [`NotReplicated`]), remember why, logging it once, and return true.
pub(super) fn refuse(path: &Path, cfg: &ReplicaConfig, e: &SpoolError) -> bool {
    let spool = crate::spool::Spool::dir_for(path);
    match NotReplicated::of_spool(&spool, e) {
        Some(reason) => {
            note(path, cfg, reason, true);
            true
        }
        None => false,
    }
}

/// Records why `path` is not replicated; `replace` says whether this reason wins over one
/// already recorded (a read-only open does not hide a spool problem found earlier).
pub(super) fn note(path: &Path, cfg: &ReplicaConfig, reason: NotReplicated, replace: bool) {
    let mut refused = lock(&REFUSED);
    if let Some(r) = refused.iter_mut().find(|r| r.path == path) {
        if replace {
            r.reason = reason;
        }
        return;
    }
    let line = format!("{}: {reason}", path.display());
    if reason.is_error() {
        crate::base::log::error(&line);
    } else {
        crate::base::log::notice(&line);
    }
    refused.push(RefusedDatabase {
        path: path.to_path_buf(),
        config: cfg.clone(),
        reason,
    });
}

/// `path` is replicated now (another connection opened it read-write, or its spool became
/// usable): it is no longer listed as not replicated.
pub(super) fn forget(path: &Path) {
    lock(&REFUSED).retain(|r| r.path != path);
}

/// The databases this process does not replicate, with the reasons.
pub fn refused_databases() -> Vec<RefusedDatabase> {
    lock(&REFUSED).clone()
}

/// Why `path` is not replicated, if this process recorded a reason.
pub fn refused_reason(path: &Path) -> Option<String> {
    lock(&REFUSED)
        .iter()
        .find(|r| r.path == path)
        .map(|r| r.reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_is_read_only_for_the_first_reason_that_holds() {
        use ReadOnlyOpen::*;
        let of = ReadOnlyOpen::of_open;
        assert_eq!(of(true, Some("ro"), true, true), Some(Immutable));
        assert_eq!(of(false, Some("ro"), true, true), Some(ModeRo));
        assert_eq!(of(false, None, true, true), Some(Asked));
        assert_eq!(of(false, Some("rw"), false, true), Some(FileNotWritable));
        assert_eq!(of(false, Some("rwc"), false, false), None);
    }

    #[test]
    fn each_reason_says_why_and_names_the_path() {
        let spool = PathBuf::from("/x/app.db-replica");
        let unwritable = |path: &Path| {
            NotReplicated::of_spool(
                &spool,
                &SpoolError::NotWritable {
                    path: path.to_path_buf(),
                    what: "opening",
                    error: "Permission denied (os error 13)".into(),
                },
            )
            .unwrap()
        };
        let lock = unwritable(&spool.join("lock"));
        assert!(lock.is_error());
        assert_eq!(
            lock.to_string(),
            "not replicating: spool directory /x/app.db-replica is not writable: opening /x/app.db-replica/lock: Permission denied (os error 13)"
        );
        assert!(unwritable(&spool)
            .to_string()
            .starts_with("not replicating: spool directory /x/app.db-replica: Permission denied"));
        let dir = NotReplicated::of_spool(
            &spool,
            &SpoolError::DirectoryNotWritable {
                dir: "/x".into(),
                spool: spool.clone(),
                error: "Read-only file system (os error 30)".into(),
            },
        )
        .unwrap();
        assert!(!dir.is_error());
        assert!(dir
            .to_string()
            .starts_with("not replicating: directory /x is not writable (Read-only file system"));
        assert_eq!(
            NotReplicated::ReadOnly(ReadOnlyOpen::ModeRo).to_string(),
            "not replicating: opened read-only (mode=ro)"
        );
        assert!(NotReplicated::of_spool(&spool, &SpoolError::Io("x".into())).is_none());
    }
}
