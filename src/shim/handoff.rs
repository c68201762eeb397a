//! `HandoffObserver`: in a process that does not replicate a database (another process
//! owns its spool), the moment this process restarts or truncates the log, it hands the
//! log's committed transactions over to the owner in a hand-off file. This is the observer
//! side only: the file format belongs to `crate::handoff`, taking hand-offs in to the
//! catch-up side. It must never fail the application's write.

use super::standby::replicated_elsewhere;
use super::wal_file::{db_path_of, header_on_disk};
use crate::base::io::ReadAt;
use crate::handoff::{HandedTxn, Handoff};
use crate::wal::{self, FrameChain, WalHeader, WalPosition, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use std::path::PathBuf;

/// Watches the `-wal` of a database another process replicates, for the moment this
/// process restarts or truncates the log: it hands the log's commits over first.
pub struct HandoffObserver {
    spool_dir: PathBuf,
    name: String,
}

/// The WAL of a database this process does not replicate itself is being opened.
pub fn on_open_wal_elsewhere(wal_path: &str) -> Option<HandoffObserver> {
    let db_path = db_path_of(wal_path)?;
    replicated_elsewhere(&db_path).then(|| HandoffObserver {
        spool_dir: crate::spool::Spool::dir_for(&db_path),
        name: db_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
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
        let handoff = Handoff {
            old_salts: old.salts(),
            txns: committed_txns(&old, file),
            next_salts,
        };
        if let Err(e) = crate::handoff::write(&self.spool_dir, &handoff) {
            crate::base::log::error(&format!(
                "{}: handing the WAL's commits over to the process that replicates it: {e}",
                self.name
            ));
        }
    }
}

/// Every committed transaction of the log with header `old`, up to where its chain ends.
fn committed_txns(old: &WalHeader, file: &mut dyn ReadAt) -> Vec<HandedTxn> {
    let mut chain = FrameChain::new(old);
    let mut assembler = wal::TxnAssembler::new(old.page_size);
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + old.page_size as usize];
    let mut txns = Vec::new();
    loop {
        let f = chain.next_frame();
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
