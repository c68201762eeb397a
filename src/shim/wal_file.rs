//! The `-wal` file as the shim finds it on disk: which database a WAL path belongs to, and
//! the log's header, read and parsed by the shared WAL header reader and parser. It must not
//! hold state or decide anything about replication.

use crate::base::io::ReadAt;
use crate::error::Error;
use crate::snapshot::read_wal_header;
use crate::wal::{WalHeader, WalIndexState};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
