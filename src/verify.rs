//! Restore drills' other half: the live database's LTX checksum (page checksums XORed, as
//! restore computes it for the restored file) at a txid known to be the replicated one. It
//! reads through the `SnapshotSource` read transaction (never blocking writers) and owns
//! the rule that decides the state read *is* that txid; it must not write anything.

use crate::base::io::ReadAt;
use crate::database::Database;
use crate::error::Error;
use crate::ltx;
use crate::snapshot::{map_indexed_pages, read_committed_page, read_wal_header, SnapshotSource};
use crate::wal;

/// Where replication stands: equal before and after the read, with nothing pending for any
/// destination, means the state read is exactly each destination's replicated txid (a
/// commit is captured before readers can see it, so one slipping in would have changed
/// this). Each destination's txid, and the last record.
fn replicated_position(db: &Database) -> Option<(Vec<u64>, u64)> {
    let all = db.all_progress();
    let current = all.iter().all(|p| p.needs_snapshot.is_none()) && db.spool.pending().is_empty();
    current.then(|| (all.iter().map(|p| p.txid).collect(), db.spool.last_seq()))
}

/// Each destination's replicated txid and the checksum of the live database, which every
/// one of them holds; `None` when commits moved it meanwhile.
pub fn live_checksum(
    db: &Database,
    source: &dyn SnapshotSource,
) -> Result<Option<(Vec<u64>, u64)>, Error> {
    let mut found = None;
    source.with_read_transaction(&db.path, &mut |dbf, mut walf, index| {
        let Some(before) = replicated_position(db) else {
            return Ok(());
        };
        let wal_before = read_wal_header(&mut walf)?;
        let sum = committed_checksum(dbf, &mut walf, index())?;
        if replicated_position(db).as_ref() == Some(&before)
            && read_wal_header(&mut walf)? == wal_before
        {
            found = Some((before.0, sum));
        }
        Ok(())
    })?;
    Ok(found)
}

/// The checksum of what a reader sees now: the database file overlaid with the WAL's
/// frames up to SQLite's last committed frame (its WAL index), pages past the end of the
/// file counted as zeros, as restore counts them.
fn committed_checksum(
    dbf: &mut dyn ReadAt,
    walf: &mut Option<&mut dyn ReadAt>,
    index: Option<wal::WalIndexHeader>,
) -> Result<u64, Error> {
    let map = match (walf.as_mut(), index) {
        (Some(w), Some(idx)) if idx.mx_frame > 0 => Some(map_indexed_pages(*w, &idx)?),
        _ => None,
    };
    let (page_size, commit) = match &map {
        Some(m) => (m.header.map(|h| h.page_size).unwrap_or(0), m.commit_size),
        None => {
            let mut h = [0u8; 100];
            if dbf.read_at(0, &mut h)? < h.len() {
                return Ok(ltx::DbChecksum::default().value());
            }
            let h = wal::DbHeader::parse(&h).expect("100 bytes");
            (h.page_size, h.page_count)
        }
    };
    if !ltx::is_valid_page_size(page_size) {
        return Err(Error::Io(format!(
            "the live database has an invalid page size {page_size}"
        )));
    }
    let mut sum = ltx::DbChecksum::default();
    let mut page = vec![0u8; page_size as usize];
    for pgno in 1..=commit {
        let frame = map
            .as_ref()
            .and_then(|m| m.latest_frame.get(&pgno).copied());
        read_committed_page(dbf, walf, frame, pgno, &mut page)?;
        sum.add_page(pgno, &page);
    }
    Ok(sum.value())
}
