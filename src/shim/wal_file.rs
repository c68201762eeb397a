//! The `-wal` file as the shim finds it on disk: which database a WAL path belongs to, the
//! log's header, read and parsed by the shared WAL header reader and parser, and how far
//! SQLite has published the log as committed (its WAL index, now or as this process's write
//! lock found it). It must not decide anything about replication.

use crate::base::io::ReadAt;
use crate::base::lock::{tries, try_lock_yielding};
use crate::error::Error;
use crate::snapshot::read_wal_header;
use crate::wal::{WalHeader, WalIndexHeader, WalIndexState};
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

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

/// The WAL index each database's write lock found when a connection of this process took it
/// (the FFI layer notes it), while that lock is held. A restart or truncation of the log
/// happens under it, after SQLite has reset the index for the next log: this is then the
/// only record of how far the old one was committed.
/// An entry stays once made (`None` while the lock is not held), so noting the lock on
/// every write transaction allocates nothing.
static WRITE_LOCKED: Mutex<WriteLocks> = Mutex::new(Vec::new());

/// Each database's path and the WAL index its write lock found, while held.
type WriteLocks = Vec<(PathBuf, Option<WalIndexHeader>)>;

thread_local! {
    /// The write lock this thread took while [`WRITE_LOCKED`] could not be had (its
    /// database's path hashed, and what its index was), kept where no lock guards it; cleared
    /// whenever the table takes a note again. A restart is handed off or
    /// settled by the thread that holds the write lock, and in a forked child the shared
    /// table's lock may stay held by a thread of the parent that does not exist there: without
    /// this, the child would read the old log past what SQLite published.
    static THIS_THREAD_LOCKED: Cell<Option<(u64, WalIndexHeader)>> = const { Cell::new(None) };
}

fn path_key(db_path: &Path) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    db_path.hash(&mut h);
    h.finish()
}

/// A connection of this process took the write lock of the database at `db_path`, finding
/// the WAL index `index` (`Some`), or released it (`None`).
pub fn note_write_lock(db_path: &Path, index: Option<WalIndexHeader>) {
    let Some(mut held) = write_locked() else {
        // Only here is the thread's own note needed (and its path hashed): this runs on
        // every write transaction, and the table is what `published_end` reads when it can.
        let note = index.map(|i| (path_key(db_path), i));
        THIS_THREAD_LOCKED.with(|own| own.set(note));
        return;
    };
    THIS_THREAD_LOCKED.with(|own| own.set(None));
    match held.iter_mut().find(|(p, _)| p == db_path) {
        Some((_, noted)) => *noted = index,
        None if index.is_some() => held.push((db_path.to_path_buf(), index)),
        None => {}
    }
}

/// The last frame of the log with `salts` that SQLite has published as committed (the WAL
/// index's `mxFrame`): from the index when it is of that log, else from the one this
/// process's write lock found, while held. Frames past it are no commit even where their
/// checksums chain on: a writer killed after writing its commit frame but before publishing
/// it (SQLite syncs the log between the two) leaves them, no reader sees them and the next
/// writer overwrites them. `u32::MAX` when no index says (none yet: the next connection
/// rebuilds it from the log, taking every chained commit, as the checksum chain alone does).
pub(super) fn published_end(db_path: &Path, salts: (u32, u32)) -> u32 {
    let of_log = |i: &WalIndexHeader| (i.salt1, i.salt2) == salts;
    if let Some(i) = index_on_disk(db_path).map(|s| s.header).filter(of_log) {
        return i.mx_frame;
    }
    let noted = match write_locked() {
        Some(held) => held
            .iter()
            .find_map(|(p, i)| i.filter(|i| p == db_path && of_log(i))),
        // Only when the table cannot be had (see THIS_THREAD_LOCKED): the thread's own note
        // can be stale where a lock taken on this thread was released on another.
        None => {
            let key = path_key(db_path);
            THIS_THREAD_LOCKED
                .with(|held| held.get())
                .filter(|(k, i)| *k == key && of_log(i))
                .map(|(_, i)| i)
        }
    };
    noted.map_or(u32::MAX, |i| i.mx_frame)
}

/// Forgets this thread's note (in a forked child: it holds no lock its parent's thread did).
pub fn forget_this_threads_write_lock() {
    THIS_THREAD_LOCKED.with(|held| held.set(None));
}

/// [`WRITE_LOCKED`], waiting only a moment: in a forked child it may stay locked by a
/// thread of the parent that does not exist here (then nothing is noted or found).
fn write_locked() -> Option<MutexGuard<'static, WriteLocks>> {
    try_lock_yielding(&WRITE_LOCKED, tries(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(salts: (u32, u32), mx_frame: u32) -> WalIndexHeader {
        WalIndexHeader {
            change: 7,
            page_size: 4096,
            mx_frame,
            n_page: 3,
            salt1: salts.0,
            salt2: salts.1,
            cksum: (1, 2),
        }
    }

    /// In a forked child the shared table's lock can be held by a thread that is not there:
    /// the thread holding the write lock still knows what it found (else every frame the
    /// old log chains would count as committed, a killed writer's unpublished ones too).
    #[test]
    fn the_thread_holding_the_write_lock_knows_its_index_while_the_table_is_locked() {
        let db = Path::new("/nonexistent/wal-file-test.db");
        let other = Path::new("/nonexistent/other.db");
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = WRITE_LOCKED.lock().unwrap();
            taken_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        taken_rx.recv().unwrap();
        note_write_lock(db, Some(index((5, 6), 40)));
        assert_eq!(published_end(db, (5, 6)), 40);
        // Another log, or another database: not what this lock found.
        assert_eq!(published_end(db, (6, 9)), u32::MAX);
        assert_eq!(published_end(other, (5, 6)), u32::MAX);
        note_write_lock(db, None);
        assert_eq!(published_end(db, (5, 6)), u32::MAX);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
    }
}
