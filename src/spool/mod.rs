//! The local spool: a crash-safe staging area beside the database (`<db>-replica/`) that
//! holds every committed transaction captured from the WAL until the uploader has shipped
//! it. It owns the on-disk layout below and its recovery; it must not talk to the network,
//! parse WAL files or encode LTX.
//!
//! Layout of `<db>-replica/`:
//! - `state`: the replicated position, rewritten atomically (temp file + rename) after each
//!   shipment: replica URL, last shipped txid, post-apply database checksum, page size,
//!   database size, the spool sequence shipped through, and the WAL position it ends at.
//! - `pages.crc`: one u64 per page, the LTX page checksum of every page of the replicated
//!   state (page n at offset 8·(n-1)); their XOR is the database checksum in `state`, which
//!   is how a torn update of this file is detected after a crash.
//! - `seg/<first seq %016x>.seg`: append-only segments of records. A record is
//!   `"RSP1" | seq u64 | page size u32 | db size after commit u32 | salt1 u32 | salt2 u32 |
//!   commit frame u32 | wal checksum u32 u32 | page count u32 | captured at (ms) u64 |
//!   integrity u32 | wal checksum before the first frame u32 u32` (64 bytes, big-endian),
//!   then `page count` × (`pgno u32` ‖ page), then a CRC-64. Pages are in WAL frame order; a
//!   later entry for the same page wins. Integrity 1/2 ("WAL chain", little/big-endian): the
//!   entries are the transaction's WAL frames, so recovery recomputes SQLite's own frame
//!   checksum chain from the stored start to the stored end, and the CRC covers only the
//!   header; the commit path then hashes nothing it has not already verified. Integrity 0:
//!   the CRC covers header and entries (records built from a scan, not in frame order, and
//!   a run of commits taken together, which keeps one entry per page: its latest version).
//!   A record may hold several transactions; how many is kept in memory only (status's
//!   pending transactions), and a record read back at open counts as one.
//! - `generation`: the salts of the WAL generation this process last saw start, written once
//!   everything before it was on disk (see `set_generation`).
//! - `unflushed`: present while records may be held only in memory (see below).
//! - `gap`: present while a snapshot is owed because a commit could not be captured.
//! - `cache/<level>/<min>-<max>.ltx`: local copies of LTX files the uploader uploaded, kept
//!   until the next level's compaction has merged them (a cache: missing files are
//!   downloaded).
//! - `overflow`: present while captured commits were dropped because the spool was over its
//!   size cap; the uploader must then ship a snapshot (which also removes the marker).
//! - `dest/<name>/`: the `state`, `pages.crc`, `gap`, `requests` and `cache/` of each
//!   destination after the first (whose own are the ones above): one spool feeds every
//!   destination of the database, and keeps each record until all of them have shipped it.
//! - `lock`: held (`flock`) by the process that owns the spool; it names that process's pid.
//! - `id`: this spool's lasting name, which the replica's lease records.
//! - `handoff/<nanos>-<pid>`: commits handed over by processes that do not own the spool,
//!   written before they restart or truncate the WAL (format in `crate::handoff`); the
//!   owner appends them and removes the files.
//!
//! Records are first kept in memory and written out, without fsync: by the process's spool
//! writer thread once a MiB of them is buffered (so the commit path does not wait for the
//! disk), and the rest before SQLite can restart, truncate or delete the WAL (the shim calls
//! `flush`, which also waits for the thread's write), or never, if they are shipped first.
//! Until then the WAL itself still holds the frames, so a crash loses nothing: the next open
//! captures them again from the WAL, or, if continuity cannot be shown, ships a snapshot.
//! After a power loss the same holds for what SQLite kept. Recovery drops a torn tail.

mod destinations;
mod error;
mod handle;
mod layout;
mod log_gone;
mod pending_copy;
mod record;
mod recover;
mod segment;
mod state;
mod write_behind;
mod writer;

pub use error::SpoolError;
pub use handle::Spool;
pub use log_gone::FileStamp;
pub use record::{Integrity, Pgnos, RecordHeader, RecordMeta};
pub use recover::Recovery;
pub use segment::scan_segment;
pub use state::SpoolState;
pub use writer::{Appended, RecordBatch, RecordWriter};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::WalPosition;
    use std::fs::OpenOptions;
    use std::path::PathBuf;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("replica-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn header(frame: u32) -> RecordHeader {
        RecordHeader {
            page_size: 512,
            commit_size: 3,
            end: WalPosition {
                salt1: 7,
                salt2: 9,
                frame,
            },
            end_cksum: (frame, frame + 1),
            captured_at_ms: 1000 + frame as u64,
            integrity: Integrity::Crc,
        }
    }

    fn append(spool: &Spool, frame: u32, pages: &[(u32, u8)]) -> u64 {
        let mut w = spool
            .begin_record(header(frame), pages.len() as u32)
            .unwrap();
        for (pgno, fill) in pages {
            w.push(*pgno, &[*fill; 512]).unwrap();
        }
        w.commit().unwrap().seq
    }

    /// Copied a chunk per hold of the spool's lock while records keep joining: each record
    /// once, in order, from the first.
    #[test]
    fn pending_is_copied_in_chunks_whole_and_in_order_while_records_join() {
        let dir = tmpdir("pending-chunks");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        for f in 0..2500u32 {
            append(&spool, f + 2, &[(1, 1)]);
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                for f in 2500..3500u32 {
                    append(&spool, f + 2, &[(1, 2)]);
                }
            });
            for _ in 0..20 {
                let pending = spool.pending_of(0);
                assert!(pending.len() >= 2500);
                assert_eq!(pending[0].seq, 1);
                let whole = pending.windows(2).all(|w| w[1].seq == w[0].seq + 1);
                assert!(whole, "a record missing or repeated");
            }
        });
        assert_eq!(spool.pending_of(0).len(), 3500);
        drop(spool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_survive_reopen_and_ship_reclaims_them() {
        let dir = tmpdir("reopen");
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 0);
        assert_eq!(append(&spool, 2, &[(1, 1), (2, 2)]), 1);
        assert_eq!(append(&spool, 3, &[(2, 3)]), 2);
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 2);
        let pending = spool.pending();
        assert_eq!(pending[0].pgnos, vec![1, 2]);
        let mut buf = Vec::new();
        spool.read_page(&pending[1], 0, &mut buf).unwrap();
        assert_eq!(buf, vec![3u8; 512]);
        assert_eq!(spool.last_position().unwrap().0.frame, 3);
        let mut st = spool.state();
        st.shipped_seq = 1;
        st.txid = 1;
        spool.mark_shipped(st).unwrap();
        assert_eq!(spool.pending().len(), 1);
        assert_eq!(append(&spool, 4, &[(3, 4)]), 3);
        let mut st = spool.state();
        st.shipped_seq = 3;
        spool.mark_shipped(st).unwrap();
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 0);
        assert_eq!(spool.last_seq(), 3);
        assert_eq!(spool.state().txid, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A generation written after records that the segment no longer holds (a crash took
    /// them, or the file lost them) vouches for nothing: recovery removes it and says
    /// records were lost; one whose records are all there stays.
    #[test]
    fn a_generation_naming_records_the_segment_lost_is_void() {
        let dir = tmpdir("void-generation");
        let seg = dir.join("seg").join(format!("{:016x}.seg", 1));
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        spool.flush().unwrap();
        let after_first = std::fs::metadata(&seg).unwrap().len();
        append(&spool, 3, &[(1, 2)]);
        spool.flush_then_set_generation((8, 10)).unwrap();
        assert_eq!(spool.generation(), Some((8, 10)));
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(!rec.unflushed_lost);
        assert_eq!(
            spool.generation(),
            Some((8, 10)),
            "all its records are there"
        );
        drop(spool);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(after_first).unwrap();
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 1);
        assert!(
            rec.unflushed_lost,
            "records the generation vouched for are gone"
        );
        assert_eq!(spool.generation(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_dropped_on_recovery() {
        let dir = tmpdir("torn");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        append(&spool, 3, &[(1, 2)]);
        spool.flush().unwrap();
        drop(spool);
        let seg = dir.join("seg").join(format!("{:016x}.seg", 1));
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 10).unwrap();
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 1);
        assert!(rec.torn_bytes_dropped > 0);
        assert_eq!(append(&spool, 3, &[(1, 2)]), 2);
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!((rec.records, rec.torn_bytes_dropped), (2, 0));
        assert_eq!(spool.pending()[1].end.frame, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_abandoned_record_leaves_no_trace() {
        let dir = tmpdir("abandon");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        {
            let mut w = spool.begin_record(header(3), 3000).unwrap();
            for i in 0..2500 {
                w.push(i + 1, &[5; 512]).unwrap();
            }
        }
        append(&spool, 4, &[(2, 2)]);
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 2);
        assert_eq!(spool.pending()[1].end.frame, 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch of records that fails once its writer has moved the capture chain past it:
    /// nothing may land after it (a gap in the middle of the records) until the failure is
    /// noted, and what it owes is said while it holds the spool's lock, which it holds from
    /// its first record to its last.
    #[test]
    fn a_batch_that_refuses_after_failure_holds_back_the_next_until_told() {
        let dir = tmpdir("refusing");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        let owed = std::cell::Cell::new(0);
        let mut batch = spool.begin_batch();
        batch.refuse_after_failure(Box::new(|| {
            // Under the spool's lock: nobody can read it as complete meanwhile.
            assert!(spool.inner.try_lock().is_err());
            owed.set(owed.get() + 1);
        }));
        let mut w = batch.begin_record(header(3), 1).unwrap();
        w.push(2, &[7; 512]).unwrap();
        w.commit().unwrap();
        assert!(spool.inner.try_lock().is_err(), "held between records");
        let mut w = batch.begin_record(header(4), 1).unwrap();
        w.push(2, &[8; 512]).unwrap();
        drop(w);
        drop(batch);
        assert_eq!(owed.get(), 1);
        assert!(matches!(
            spool.begin_record(header(4), 1),
            Err(SpoolError::AfterFailedRecord)
        ));
        // A commit that fails refuses the same way; a finished batch owes nothing.
        spool.stop_refusing();
        let mut batch = spool.begin_batch();
        batch.refuse_after_failure(Box::new(|| owed.set(owed.get() + 1)));
        assert!(
            batch.begin_record(header(4), 2).unwrap().commit().is_err(),
            "short of pages"
        );
        drop(batch);
        assert_eq!(owed.get(), 2);
        assert!(spool.begin_record(header(5), 1).is_err());
        spool.stop_refusing();
        let mut batch = spool.begin_batch();
        batch.refuse_after_failure(Box::new(|| owed.set(owed.get() + 1)));
        let mut w = batch.begin_record(header(6), 1).unwrap();
        w.push(3, &[3; 512]).unwrap();
        w.commit().unwrap();
        batch.finish();
        assert_eq!(owed.get(), 2);
        append(&spool, 7, &[(4, 4)]);
        let frames: Vec<u32> = spool.pending().iter().map(|r| r.end.frame).collect();
        assert_eq!(frames, [2, 3, 6, 7]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn over_the_cap_it_refuses_and_remembers_until_a_snapshot_ships() {
        let dir = tmpdir("cap");
        let (spool, _) = Spool::open(&dir, 2000).unwrap();
        append(&spool, 2, &[(1, 1), (2, 1)]);
        assert!(matches!(
            spool.begin_record(header(3), 4),
            Err(SpoolError::Overflow { .. })
        ));
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 2000).unwrap();
        assert!(rec.overflowed && spool.is_overflowed());
        let mut st = spool.state();
        st.shipped_seq = spool.last_seq();
        spool.mark_shipped(st).unwrap();
        assert!(!spool.is_overflowed());
        append(&spool, 5, &[(1, 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Appends frames sealed by a real WAL checksum chain, as capture does.
    fn append_chained(
        spool: &Spool,
        chain: &mut crate::wal::FrameChain,
        big_endian: bool,
        pages: &[(u32, u8)],
        size: u32,
    ) {
        let start = chain.checksum();
        let mut frames = Vec::new();
        for (i, &(pgno, fill)) in pages.iter().enumerate() {
            let commit = if i + 1 == pages.len() { size } else { 0 };
            frames.push(chain.seal(pgno, commit, &[fill; 512]).unwrap());
        }
        let last = frames.last().unwrap();
        let header = RecordHeader {
            page_size: 512,
            commit_size: size,
            end: WalPosition {
                salt1: last.salt1,
                salt2: last.salt2,
                frame: chain.next_frame() - 1,
            },
            end_cksum: last.checksum(),
            captured_at_ms: 1,
            integrity: Integrity::WalChain { start, big_endian },
        };
        let mut w = spool.begin_record(header, pages.len() as u32).unwrap();
        for &(pgno, fill) in pages {
            w.push(pgno, &[fill; 512]).unwrap();
        }
        w.commit().unwrap();
    }

    #[test]
    fn wal_chain_records_are_verified_by_sqlites_checksums_on_recovery() {
        for big_endian in [false, true] {
            let dir = tmpdir(&format!("chain-{big_endian}"));
            let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
            let header = crate::wal::WalHeader::new(big_endian, 512, 0, 11, 22);
            let mut chain = crate::wal::FrameChain::new(&header);
            append_chained(&spool, &mut chain, big_endian, &[(1, 1), (2, 2), (1, 3)], 2);
            append_chained(&spool, &mut chain, big_endian, &[(3, 4)], 3);
            spool.flush().unwrap();
            drop(spool);
            let (_, rec) = Spool::open(&dir, 1 << 30).unwrap();
            assert_eq!(
                (rec.records, rec.torn_bytes_dropped),
                (2, 0),
                "big_endian={big_endian}"
            );
            // Flip one byte of the second record's page: its chain no longer ends where the
            // header says, so recovery drops it (and only it).
            let seg = dir.join("seg").join(format!("{:016x}.seg", 1));
            let mut bytes = std::fs::read(&seg).unwrap();
            let n = bytes.len();
            bytes[n - 8 - 100] ^= 0x40;
            std::fs::write(&seg, &bytes).unwrap();
            let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
            assert_eq!(rec.records, 1, "big_endian={big_endian}");
            assert_eq!(spool.pending()[0].pgnos, vec![1, 2, 1]);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_reused_segment_never_resurrects_shipped_records() {
        let dir = tmpdir("reuse");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1), (2, 1), (3, 1)]);
        append(&spool, 3, &[(1, 2)]);
        let mut st = spool.state();
        st.shipped_seq = 2;
        spool.mark_shipped(st).unwrap();
        // The segment is rewritten from its start: one short record over the old ones.
        append(&spool, 4, &[(4, 4)]);
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records, 1);
        assert_eq!(spool.pending()[0].seq, 3);
        assert_eq!(spool.pending()[0].pgnos, vec![4]);
        assert_eq!(append(&spool, 5, &[(5, 5)]), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_stay_in_memory_until_flushed_and_are_read_from_there() {
        let dir = tmpdir("buffer");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        spool.flush().unwrap();
        append(&spool, 3, &[(2, 2), (3, 3)]);
        let mut buf = Vec::new();
        spool.read_page(&spool.pending()[1], 1, &mut buf).unwrap();
        assert_eq!(buf, vec![3u8; 512]);
        // A crash now loses the unflushed record (the WAL still has its frames), and says so.
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(rec.unflushed_lost);
        assert_eq!(rec.records, 1);
        assert_eq!(spool.last_position().unwrap().0.frame, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_owner_is_refused() {
        let dir = tmpdir("lock");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(matches!(
            Spool::open(&dir, 1 << 30),
            Err(SpoolError::Locked(_))
        ));
        drop(spool);
        assert!(Spool::open(&dir, 1 << 30).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Records past the write-behind size go to the writer thread while more are appended
    /// and read; a flush leaves every one on disk in order, the unflushed marker gone.
    #[test]
    fn records_written_behind_are_read_back_in_order_before_and_after_a_flush() {
        let dir = tmpdir("write-behind");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        let pages = |i: u32| [(i % 50 + 1, i as u8), (i % 7 + 60, !(i as u8))];
        for i in 0..2000u32 {
            append(&spool, i + 2, &pages(i));
            if i % 97 == 0 {
                // Reads of the oldest, a middle and the newest record while writes are out.
                let pending = spool.pending();
                for r in [0, pending.len() / 2, pending.len() - 1] {
                    let mut buf = Vec::new();
                    spool.read_page(&pending[r], 1, &mut buf).unwrap();
                    assert_eq!(buf, vec![!(r as u8); 512], "record {r} after {i}");
                }
            }
        }
        assert!(dir.join("unflushed").exists());
        spool.flush().unwrap();
        assert!(!dir.join("unflushed").exists());
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(!rec.unflushed_lost);
        assert_eq!(rec.records, 2000);
        let mut buf = Vec::new();
        for (i, r) in spool.pending().iter().enumerate().step_by(131) {
            assert_eq!(r.pgnos, pages(i as u32).map(|p| p.0).to_vec());
            spool.read_page(r, 0, &mut buf).unwrap();
            assert_eq!(buf, vec![i as u8; 512]);
        }
    }

    /// Makes every later write of the current segment fail, as a failing disk would.
    fn break_the_disk(spool: &Spool, dir: &std::path::Path) {
        let path = dir.join("seg").join(format!("{:016x}.seg", 1));
        let mut inner = spool.inner.lock().unwrap();
        inner.segment.as_mut().unwrap().file =
            std::sync::Arc::new(std::fs::File::open(path).unwrap());
    }

    /// When the writer thread's writes fail, the commit path finds out (its write-out is
    /// tried again there and fails) before more than the 8 MiB cap is held in memory; the
    /// records it held stay readable; and once the disk works again, a flush writes them.
    #[test]
    fn failed_background_writes_reach_the_commit_path_within_the_memory_cap() {
        let dir = tmpdir("write-behind-fails");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        append(&spool, 2, &[(1, 1)]);
        spool.flush().unwrap();
        break_the_disk(&spool, &dir);
        let mut failed_at = None;
        for i in 0..60_000u32 {
            let mut w = spool.begin_record(header(i + 3), 1).unwrap();
            w.push(1, &[i as u8; 512]).unwrap();
            if let Err(e) = w.commit() {
                assert!(e.to_string().contains("writing the spool"), "{e}");
                failed_at = Some(i);
                break;
            }
        }
        let failed_at = failed_at.expect("no commit saw the failing writes");
        {
            let inner = spool.inner.lock().unwrap();
            let seg = inner.segment.as_ref().unwrap();
            assert!(
                seg.len - seg.flushed <= 9 << 20,
                "{} bytes in memory",
                seg.len - seg.flushed
            );
        }
        // The last committed record reads back from memory, the failed one left no trace.
        let pending = spool.pending();
        assert_eq!(pending.len() as u32, failed_at + 1);
        let mut buf = Vec::new();
        spool
            .read_page(&pending[pending.len() - 1], 0, &mut buf)
            .unwrap();
        assert_eq!(buf, vec![(failed_at - 1) as u8; 512]);
        {
            let mut inner = spool.inner.lock().unwrap();
            let seg = inner.segment.as_mut().unwrap();
            let path = dir.join("seg").join(format!("{:016x}.seg", 1));
            seg.file = std::sync::Arc::new(OpenOptions::new().write(true).open(path).unwrap());
        }
        spool.flush().unwrap();
        drop(spool);
        let (_, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(rec.records as u32, failed_at + 1);
    }

    /// Before a restart the records go to the writer thread and the generation follows them
    /// to disk; when their write fails, the generation stays the older one.
    #[test]
    fn the_generation_follows_the_records_written_behind_and_only_if_they_were() {
        let dir = tmpdir("generation-behind");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        spool.set_generation((1, 1)).unwrap();
        for i in 0..3000u32 {
            append(&spool, i + 2, &[(1, i as u8)]);
        }
        spool.flush_then_set_generation((2, 2)).unwrap();
        assert_eq!(spool.generation(), Some((2, 2)));
        append(&spool, 9000, &[(1, 1)]);
        break_the_disk(&spool, &dir);
        for i in 0..3000u32 {
            // Once the writer thread's failure is seen, commits fail: that is not the point.
            let mut w = spool.begin_record(header(i + 9001), 1).unwrap();
            w.push(1, &[i as u8; 512]).unwrap();
            let _ = w.commit();
        }
        let _ = spool.flush_then_set_generation((3, 3));
        assert_eq!(
            spool.generation(),
            Some((2, 2)),
            "a generation over records not on disk"
        );
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(rec.records >= 3000, "{} records", rec.records);
        assert_eq!(spool.generation(), Some((2, 2)));
    }
}
