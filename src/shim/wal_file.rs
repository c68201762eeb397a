//! The `-wal` file as the shim finds it on disk: which database a WAL path belongs to, and
//! the log's header, read and parsed by the shared WAL header reader and parser. It must not
//! hold state or decide anything about replication.

use crate::base::io::ReadAt;
use crate::error::Error;
use crate::snapshot::read_wal_header;
use crate::wal::{WalHeader, WalIndexState, WAL_INDEX_STATE_SIZE};
use std::path::{Path, PathBuf};

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

/// The WAL index as the database's `-shm` file holds it (SQLite maps that file shared, so
/// a read sees what its connections see); `None` when there is none (an exclusive-mode
/// database keeps it in heap memory) or its header copies kept changing while read.
pub(super) fn index_on_disk(db_path: &Path) -> Option<WalIndexState> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let mut shm = db_path.as_os_str().to_owned();
    shm.push("-shm");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(shm)
        .ok()?;
    let mut prefix = [0u8; WAL_INDEX_STATE_SIZE];
    for _ in 0..100 {
        file.read_exact_at(&mut prefix, 0).ok()?;
        if let Ok(state) = WalIndexState::parse(&prefix) {
            return state;
        }
        std::thread::yield_now();
    }
    None
}
