//! The `-wal` file as the shim finds it on disk: which database a WAL path belongs to, and
//! the log's header, read and parsed by the shared WAL header reader and parser. It must not
//! hold state or decide anything about replication.

use crate::base::io::ReadAt;
use crate::error::Error;
use crate::snapshot::read_wal_header;
use crate::wal::WalHeader;
use std::path::PathBuf;

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
