//! The crate's error type at the SQL boundary, and its one mapping to SQLite result codes.
//! It owns wording that users see; it must not carry secrets (stores redact before they
//! build an error).

use std::fmt;

#[derive(Debug)]
pub enum Error {
    Config(crate::config::ConfigError),
    Store(crate::store::StoreError),
    Ltx(crate::ltx::LtxError),
    Wal(crate::wal::WalError),
    Spool(crate::spool::SpoolError),
    Io(String),
    Sqlite {
        code: i32,
        message: String,
    },
    /// The database named is not replicated by this process.
    NotReplicated(String),
    InvalidArgument(String),
    Timeout(String),
    /// A restore failed; what kind of failure decides the code SQLite reports.
    Restore(RestoreFailure, String),
    Unsupported(String),
    /// The database is not (yet) in WAL mode, so there is nothing to replicate from.
    NotWal(String),
    /// An upload a caller waited for failed (it is retried in the background).
    Upload(String),
    /// Another uploader (another host, or a container with its own volume) holds the
    /// replica's lease until the time given (ms): this one must not write to the replica.
    LeaseHeld(String, u64),
    /// A bug of the extension caught at the SQL boundary (a panic), named with the function
    /// it happened in: an error, so that the call never reads as a success.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Ltx(e) => write!(f, "LTX: {e}"),
            Error::Wal(e) => write!(f, "WAL: {e}"),
            Error::Spool(e) => write!(f, "{e}"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Sqlite { message, .. } => write!(f, "{message}"),
            Error::NotReplicated(m) => write!(f, "{m}"),
            Error::InvalidArgument(m) => write!(f, "{m}"),
            Error::Timeout(m) => write!(f, "{m}"),
            Error::Restore(_, m) => write!(f, "restore failed: {m}"),
            Error::Unsupported(m) | Error::NotWal(m) | Error::Upload(m) | Error::Internal(m) => {
                write!(f, "{m}")
            }
            Error::LeaseHeld(owner, until) => write!(
                f,
                "another uploader holds this replica's lease ({owner}, until {}); this process keeps its commits in the spool and takes over when the lease expires",
                crate::base::clock::format_rfc3339(*until)
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Why a restore failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFailure {
    /// The replica's content is damaged or does not fit together: a file whose name,
    /// header, checksums, pages or page 1 disagree, a chain with a gap, a result that fails
    /// its integrity check, a replica that restores to another database than the live one.
    Corrupt,
    /// The replica could not be read: a download that kept failing.
    Unreadable,
    /// The replica holds nothing to restore for what was asked: no files, no snapshot, a
    /// point past its end or compacted away, or the files of several replicas (a URL that
    /// names none of them).
    NothingToRestore,
    /// The restore failed on this side (a worker that stopped), not because of the replica.
    Local,
}

impl RestoreFailure {
    /// The kind of restore failure an error of another step stands for (the boot-time
    /// restore wraps whatever stopped it): damaged content stays damaged content.
    pub fn of(e: &Error) -> RestoreFailure {
        match e {
            Error::Restore(kind, _) => *kind,
            Error::Ltx(_) | Error::Wal(_) => RestoreFailure::Corrupt,
            Error::Store(_) => RestoreFailure::Unreadable,
            _ => RestoreFailure::Local,
        }
    }
}

impl Error {
    /// The SQLite result code an error surfaces as: the only place this mapping lives.
    pub fn sqlite_code(&self) -> i32 {
        use libsqlite3_sys as sys;
        match self {
            Error::Sqlite { code, .. } => *code,
            // SQLITE_MISUSE is for an application that calls SQLite's C API wrongly (hosts
            // raise it as a programming error: Python's InterfaceError, Ruby's
            // MisuseException); a bad argument to a SQL function is an ordinary error, as
            // with SQLite's own functions.
            Error::InvalidArgument(_) | Error::NotReplicated(_) => sys::SQLITE_ERROR,
            Error::Timeout(_) => sys::SQLITE_BUSY,
            Error::Io(_) | Error::Spool(_) => sys::SQLITE_IOERR,
            // Only content that is damaged is SQLITE_CORRUPT ("database disk image is
            // malformed", Python's DatabaseError): a replica that cannot be reached or holds
            // nothing to restore is an ordinary error the caller can act on.
            Error::Ltx(_) | Error::Wal(_) | Error::Restore(RestoreFailure::Corrupt, _) => {
                sys::SQLITE_CORRUPT
            }
            Error::Restore(..) => sys::SQLITE_ERROR,
            Error::Config(_)
            | Error::Store(_)
            | Error::Unsupported(_)
            | Error::NotWal(_)
            | Error::Upload(_) => sys::SQLITE_ERROR,
            Error::LeaseHeld(..) => sys::SQLITE_BUSY,
            Error::Internal(_) => sys::SQLITE_INTERNAL,
        }
    }
}

macro_rules! from {
    ($t:ty, $v:ident) => {
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(e)
            }
        }
    };
}
from!(crate::config::ConfigError, Config);
from!(crate::store::StoreError, Store);
from!(crate::ltx::LtxError, Ltx);
from!(crate::wal::WalError, Wal);
from!(crate::spool::SpoolError, Spool);

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
