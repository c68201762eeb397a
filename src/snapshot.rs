//! Reading a live database's committed state without blocking its writers: the read
//! transaction a [`SnapshotSource`] opens (the FFI layer provides the real one), and the
//! page reads through it that snapshots and restore drills share. It reads and never writes.

use crate::base::io::ReadAt;
use crate::error::Error;
use crate::wal;
use std::path::Path;

/// Reads the WAL-index header as SQLite sees it now (`None` where there is none).
pub type IndexReader<'a> = dyn FnMut() -> Option<wal::WalIndexHeader> + 'a;

/// What a snapshot does with the database file, its WAL (if any) and its WAL index.
pub type LockedRead<'a> = dyn FnMut(&mut dyn ReadAt, Option<&mut dyn ReadAt>, &mut IndexReader<'_>) -> Result<(), Error>
    + 'a;

/// Reads the live database consistently, for snapshots, without blocking writers.
pub trait SnapshotSource: Send + Sync {
    /// Calls `f` with the database file and its WAL while a read transaction is open on the
    /// database: checkpoints can then neither restart nor truncate the WAL nor copy frames
    /// newer than that transaction into the database file (except that a reader SQLite lets
    /// read the database file alone does not hold off a WAL restart: `f` detects that by
    /// re-reading the WAL header, and the snapshot is retried).
    fn with_read_transaction(&self, db_path: &Path, f: &mut LockedRead<'_>) -> Result<(), Error>;

    /// The database's `-wal`, opened for reading through the base VFS (`None`: no WAL, or
    /// no live database behind this source, as in unit tests).
    fn open_wal(&self, _db_path: &Path) -> Option<Box<dyn ReadAt>> {
        None
    }
}

/// Page `pgno` of a committed state into `page`: from its latest WAL `frame` when it has
/// one, else from the database file; a page past the end of the file reads as zeros, as
/// restore counts it.
pub fn read_committed_page(
    dbf: &mut dyn ReadAt,
    walf: &mut Option<&mut dyn ReadAt>,
    frame: Option<u32>,
    pgno: u32,
    page: &mut [u8],
) -> Result<(), Error> {
    let page_size = page.len() as u32;
    let n = match (frame, walf.as_mut()) {
        (Some(frame), Some(w)) => w.read_at(
            wal::frame_offset(page_size, frame) + wal::FRAME_HEADER_SIZE as u64,
            page,
        )?,
        _ => dbf.read_at((pgno as u64 - 1) * page_size as u64, page)?,
    };
    if n < page.len() {
        page.fill(0);
    }
    Ok(())
}

/// The latest frame of each page among frames `1..=mx_frame`, per the WAL index.
pub fn map_indexed_pages(
    w: &mut dyn ReadAt,
    idx: &wal::WalIndexHeader,
) -> Result<wal::PageMap, Error> {
    let mut hdr = [0u8; wal::WAL_HEADER_SIZE];
    if w.read_at(0, &mut hdr)? < hdr.len() {
        return Err(Error::Io(
            "the WAL index names frames the WAL does not have".into(),
        ));
    }
    let header = wal::WalHeader::parse(&hdr)?;
    if header.salts() != (idx.salt1, idx.salt2) || header.page_size != idx.page_size {
        return Err(Error::Io(
            "the WAL index and the WAL header disagree (a restart in progress)".into(),
        ));
    }
    let mut latest = std::collections::BTreeMap::new();
    let mut fh = [0u8; wal::FRAME_HEADER_SIZE];
    for frame in 1..=idx.mx_frame {
        if w.read_at(wal::frame_offset(idx.page_size, frame), &mut fh)? < fh.len() {
            return Err(Error::Io(format!("WAL frame {frame} is missing")));
        }
        let pgno = u32::from_be_bytes(fh[0..4].try_into().unwrap());
        if pgno >= 1 && pgno <= idx.n_page {
            latest.insert(pgno, frame);
        }
    }
    Ok(wal::PageMap {
        header: Some(header),
        latest_frame: latest,
        last_commit: Some(wal::WalPosition {
            salt1: idx.salt1,
            salt2: idx.salt2,
            frame: idx.mx_frame,
        }),
        commit_size: idx.n_page,
        last_commit_checksum: idx.cksum,
    })
}

/// The WAL header as it is on disk now (`None`: no WAL, or a shorter one).
pub fn read_wal_header(
    wal: &mut Option<&mut dyn ReadAt>,
) -> Result<Option<[u8; wal::WAL_HEADER_SIZE]>, Error> {
    let Some(w) = wal else { return Ok(None) };
    let mut h = [0u8; wal::WAL_HEADER_SIZE];
    Ok((w.read_at(0, &mut h)? == h.len()).then_some(h))
}
