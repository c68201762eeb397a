//! `HandoffObserver`: in a process that does not replicate a database (another process
//! owns its spool), the moment this process restarts or truncates the log, it hands the
//! log's committed transactions over to the owner in a hand-off file. This is the observer
//! side only: the file format belongs to `crate::handoff`, taking hand-offs in to the
//! catch-up side. It must never fail the application's write.

use super::standby::replicated_elsewhere;
use super::wal_file::{db_path_of, header_on_disk, published_end};
use crate::base::io::ReadAt;
use crate::database::WriteLockNote;
use crate::handoff::{HandedTxn, Handoff, NextLog};
use crate::wal::{
    self, FrameChain, WalHeader, WalIndexState, WalPosition, FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Watches the `-wal` of a database another process replicates, for the moment this
/// process restarts or truncates the log: it hands the log's commits over first.
pub struct HandoffObserver {
    db_path: PathBuf,
    /// What this process's write lock found (this process restarts the log under it).
    write_lock: Arc<WriteLockNote>,
    spool_dir: PathBuf,
    name: String,
}

/// The WAL of a database this process does not replicate itself is being opened.
pub fn on_open_wal_elsewhere(wal_path: &str) -> Option<HandoffObserver> {
    let db_path = db_path_of(wal_path)?;
    replicated_elsewhere(&db_path).then(|| HandoffObserver {
        write_lock: crate::database::write_lock_note(&db_path),
        spool_dir: crate::spool::Spool::dir_for(&db_path),
        name: db_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        db_path,
    })
}

impl HandoffObserver {
    /// This process is about to write a new log header (`Some`) or truncate the log
    /// (`None`): the old log's frames are still intact. Writes its committed transactions,
    /// all of them, into a hand-off file; the owner keeps those it has not captured.
    pub fn before_log_goes(&self, new_header: Option<&[u8]>, file: &mut dyn ReadAt) {
        let Some(old) = header_on_disk(file).ok().flatten() else {
            return;
        };
        let next_salts = new_header
            .filter(|d| d.len() >= WAL_HEADER_SIZE)
            .and_then(|d| WalHeader::parse(&d[..WAL_HEADER_SIZE]).ok())
            .map(|h| h.salts());
        if next_salts == Some(old.salts()) {
            return; // the same header written again: no new log
        }
        let next = next_salts.map_or(NextLog::Gone, NextLog::Restart);
        // Only what SQLite published: frames a killed writer left past it are no commit.
        let upto = published_end(&self.db_path, &self.write_lock, old.salts());
        let txns = committed_txns(&old, file, upto);
        write_hand_off(&self.spool_dir, &self.name, &old, txns, next);
    }
}

/// A connection of this process opened before the load (see `super::hooked`) is about to
/// commit to `db_path`, which another process replicates, and holds the write lock: when
/// the WAL index says the commit may restart the log, hand the log's commits over first,
/// with SQLite's commit counter, so that the owner can accept the new log without a
/// snapshot.
pub fn hand_off_before_hooked_commit(
    db_path: &Path,
    wal: &mut dyn ReadAt,
    index: Option<WalIndexState>,
) {
    let Some(i) = index else { return };
    if i.header.mx_frame == 0 || i.backfilled < i.header.mx_frame || !replicated_elsewhere(db_path)
    {
        return; // no restart possible: the owner takes the commits from the log itself
    }
    let Some(old) = header_on_disk(wal).ok().flatten() else {
        return;
    };
    if old.salts() != (i.header.salt1, i.header.salt2) {
        return;
    }
    // The commit counter vouches only for the commits the index has, all of them.
    let txns = committed_txns(&old, wal, i.header.mx_frame);
    if txns.last().map(|t| t.txn.end.frame) != Some(i.header.mx_frame) {
        return;
    }
    let next = NextLog::MayRestart {
        change: i.header.change,
    };
    let spool_dir = crate::spool::Spool::dir_for(db_path);
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    write_hand_off(&spool_dir, &name, &old, txns, next);
}

fn write_hand_off(
    spool_dir: &Path,
    name: &str,
    old: &WalHeader,
    txns: Vec<HandedTxn>,
    next: NextLog,
) {
    let handoff = Handoff {
        old_salts: old.salts(),
        txns,
        next,
    };
    if let Err(e) = crate::handoff::write(spool_dir, &handoff) {
        crate::base::log::error(&format!(
            "{name}: handing the WAL's commits over to the process that replicates it: {e}"
        ));
    }
}

/// Every committed transaction of the log with header `old`, up to where its chain ends
/// and no further than frame `upto`.
fn committed_txns(old: &WalHeader, file: &mut dyn ReadAt, upto: u32) -> Vec<HandedTxn> {
    let mut chain = FrameChain::new(old);
    let mut assembler = wal::TxnAssembler::new(old.page_size);
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + old.page_size as usize];
    let mut txns = Vec::new();
    loop {
        let f = chain.next_frame();
        if f > upto {
            break;
        }
        match file.read_at(wal::frame_offset(old.page_size, f), &mut buf) {
            Ok(n) if n == buf.len() => {}
            _ => break,
        }
        let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
        let Ok(Some(fh)) = chain.accept(h, page) else {
            break;
        };
        let pos = WalPosition {
            salt1: old.salt1,
            salt2: old.salt2,
            frame: f,
        };
        if let Some(txn) = assembler.push(pos, &fh, page) {
            txns.push(HandedTxn {
                txn,
                end_cksum: chain.checksum(),
            });
        }
    }
    txns
}
