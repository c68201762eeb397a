//! The `-wal` file as the shim finds it on disk: which database a WAL path belongs to, the
//! log's header, read and parsed by the shared WAL header reader and parser, and how far
//! SQLite has published the log as committed (its WAL index, now or as this process's write
//! lock found it: `database::WriteLockNote`). It must not decide anything about replication.

use crate::base::io::ReadAt;
use crate::database::WriteLockNote;
use crate::error::Error;
use crate::snapshot::read_wal_header;
use crate::wal::{WalHeader, WalIndexHeader, WalIndexState};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

thread_local! {
    /// Set while this thread's connection, holding the WAL write lock, writes the header of
    /// the next log (see [`restarting_the_log`]).
    static RESTARTING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `settle` on the thread whose connection is about to write a new log header: it holds
/// the write lock (SQLite writes a header nowhere else), so the note that lock made is fresh,
/// while the WAL index already describes the next log. [`published_end`] then takes the note
/// first: reading the index (a file of our own opened to join SQLite's mapping) would only
/// miss, tens of µs on every restart.
pub(super) fn restarting_the_log<R>(settle: impl FnOnce() -> R) -> R {
    struct Unset;
    impl Drop for Unset {
        fn drop(&mut self) {
            RESTARTING.set(false);
        }
    }
    RESTARTING.set(true);
    let _unset = Unset;
    settle()
}

/// The database a `-wal` path belongs to.
pub(super) fn db_path_of(wal_path: &str) -> Option<PathBuf> {
    wal_path.strip_suffix("-wal").map(PathBuf::from)
}

/// The log's header on disk: `None` when the file is shorter than a header or the header
/// does not parse (no log yet, as far as SQLite is concerned).
pub(super) fn header_on_disk(file: &mut dyn ReadAt) -> Result<Option<WalHeader>, Error> {
    Ok(read_wal_header(&mut Some(file))?.and_then(|h| WalHeader::parse(&h).ok()))
}

/// The salts of the log's header on disk, if it has one (a log that cannot be read has none).
pub(super) fn salts_on_disk(file: &mut dyn ReadAt) -> Option<(u32, u32)> {
    header_on_disk(file).ok().flatten().map(|h| h.salts())
}

/// Reads a database's WAL index as this process's SQLite shares it (given by the FFI layer,
/// which maps it through the base VFS: a descriptor of the `-shm` opened and closed here
/// would drop the locks SQLite holds on that file).
static INDEX_READER: OnceLock<fn(&Path) -> Option<WalIndexState>> = OnceLock::new();

/// Installs the WAL index reader (once, at load).
pub fn set_index_reader(read: fn(&Path) -> Option<WalIndexState>) {
    let _ = INDEX_READER.set(read);
}

/// The WAL index of the database at `db_path`; `None` without a reader (unit tests) or an
/// index to read.
pub(super) fn index_on_disk(db_path: &Path) -> Option<WalIndexState> {
    INDEX_READER.get().and_then(|read| read(db_path))
}

/// The last frame of the log with `salts` that SQLite has published as committed (the WAL
/// index's `mxFrame`): from the index when it is of that log, else from what this process's
/// write lock found (`note`), while held. Frames past it are no commit even where their
/// checksums chain on: a writer killed after writing its commit frame but before publishing
/// it (SQLite syncs the log between the two) leaves them, no reader sees them and the next
/// writer overwrites them. `u32::MAX` when no index says (none yet: the next connection
/// rebuilds it from the log, taking every chained commit, as the checksum chain alone does).
/// While this thread restarts the log, the note first (see [`restarting_the_log`]).
pub(super) fn published_end(db_path: &Path, note: &WriteLockNote, salts: (u32, u32)) -> u32 {
    if RESTARTING.get() {
        if let Some(end) = note.published_end(salts) {
            return end;
        }
    }
    let of_log = |i: &WalIndexHeader| (i.salt1, i.salt2) == salts;
    if let Some(i) = index_on_disk(db_path).map(|s| s.header).filter(of_log) {
        return i.mx_frame;
    }
    note.published_end(salts).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The restart's note comes first only while the restart runs, and not after it, even
    /// when it panicked.
    #[test]
    fn only_the_restart_itself_takes_the_note_first() {
        assert!(!RESTARTING.get());
        assert!(restarting_the_log(|| RESTARTING.get()));
        assert!(!RESTARTING.get());
        let panicked = std::panic::catch_unwind(|| restarting_the_log(|| panic!("in the restart")));
        assert!(panicked.is_err());
        assert!(!RESTARTING.get());
    }
}
