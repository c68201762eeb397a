//! Spare segment files: segments every destination has shipped, kept while records keep
//! coming so that the next segment is written over their blocks instead of into new ones.
//! Under a steady stream of commits the spool writes as much as SQLite's log does, and
//! writing into pages a file already has costs a fraction of allocating new ones (no block
//! allocation, no growth of the file, pages already in the page cache; on a virtual machine
//! that hands freed memory back to its host, a new page can cost more than the copy into
//! it). It must not decide which segments are shipped: the spool says, and says when
//! nothing is pending any more (the spares then go, giving the disk space back).
//!
//! A spare is `seg/<id>.spare`, cut to at most [`SEGMENT_ROLL_BYTES`]: the segment that
//! takes it over is written past that length before another is started, so no stale bytes
//! are left inside a segment that is followed by another; what is left after the last one
//! (a crash before it filled) is cut off by recovery, which stops at the first record that
//! is not newer than the one before it or older than the segment's name.

use super::error::{io, SpoolError};
use super::layout::segment_name;
use super::segment::SEGMENT_ROLL_BYTES;
use crate::base::held_dir::HeldDir;
use crate::base::private_fs::{Modes, O_NOFOLLOW};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;

/// Spare files kept at most (with the pending records, never more than the spool's cap).
pub(super) const MAX_SPARES: u64 = 8;

const SUFFIX: &str = ".spare";

fn spare_name(id: u64) -> String {
    format!("{id:016x}{SUFFIX}")
}

/// The spare files of a spool, by the id of the segment each was.
#[derive(Default)]
pub(super) struct Spares(Vec<u64>);

impl Spares {
    /// How many more shipped segments may become spares, with `pending_bytes` of records
    /// in the spool and `cap_bytes` its cap.
    pub fn room(&self, pending_bytes: u64, cap_bytes: u64) -> u64 {
        let by_cap = cap_bytes.saturating_sub(pending_bytes) / SEGMENT_ROLL_BYTES;
        MAX_SPARES.min(by_cap).saturating_sub(self.0.len() as u64)
    }

    /// Takes the spares out of the list, to be removed ([`remove`]).
    pub fn take_all(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.0)
    }

    /// Adds segments made spares by [`retire`].
    pub fn extend(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.0.extend(ids);
    }

    /// Renames a spare to segment `id` and opens it for writing from its start; `None` when
    /// there is no spare or it cannot be had (the caller creates a new file).
    pub fn take_for(&mut self, seg: &HeldDir, modes: Modes, id: u64) -> Option<File> {
        while let Some(spare) = self.0.pop() {
            let name = segment_name(id);
            if std::fs::rename(seg.at(&spare_name(spare)), seg.at(&name)).is_err() {
                continue; // gone (removed by hand, say): try the next
            }
            match modes.open_rw().open(seg.at(&name)) {
                Ok(file) => return Some(file),
                Err(_) => return None, // the caller's create truncates it
            }
        }
        None
    }
}

/// Makes shipped segment `id` a spare: renamed, then cut to at most the roll size; whether
/// it is one now (if not, the caller removes whatever is left of it).
pub(super) fn retire(seg: &HeldDir, id: u64) -> bool {
    let spare = seg.at(&spare_name(id));
    // Renamed before it is cut: a segment cut short under its own name would read as torn
    // at recovery, which drops every segment after a torn one.
    if std::fs::rename(seg.at(&segment_name(id)), &spare).is_err() {
        return false;
    }
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NOFOLLOW)
        .open(&spare)
        .and_then(|f| match f.metadata()?.len() > SEGMENT_ROLL_BYTES {
            true => f.set_len(SEGMENT_ROLL_BYTES),
            false => Ok(()),
        });
    if cut.is_err() {
        let _ = std::fs::remove_file(&spare);
    }
    cut.is_ok()
}

/// Removes spares `ids`.
pub(super) fn remove(seg: &HeldDir, ids: &[u64]) {
    for id in ids {
        let _ = std::fs::remove_file(seg.at(&spare_name(*id)));
    }
}

/// Removes every spare file a process left (at recovery: its list died with it).
pub(super) fn remove_left_over(seg: &HeldDir) -> Result<(), SpoolError> {
    let names = seg.names().map_err(|e| io("listing", seg.path(), e))?;
    for name in names.iter().filter_map(|n| n.to_str()) {
        if name.ends_with(SUFFIX) {
            let _ = std::fs::remove_file(seg.at(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::record::{Integrity, RecordHeader};
    use super::super::Spool;
    use super::*;
    use crate::wal::WalPosition;
    use std::path::{Path, PathBuf};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("replica-spares-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A record of 1024 pages of 512 bytes filled with `fill` (about half a MiB: a segment
    /// rolls after eight).
    fn append(spool: &Spool, frame: u32, fill: u8) -> u64 {
        let end = WalPosition {
            salt1: 7,
            salt2: 9,
            frame,
        };
        let header = RecordHeader {
            page_size: 512,
            commit_size: 1024,
            end,
            end_cksum: (frame, frame),
            captured_at_ms: 1000,
            integrity: Integrity::Crc,
        };
        let mut w = spool.begin_record(header, 1024).unwrap();
        for pgno in 1..=1024 {
            w.push(pgno, &[fill; 512]).unwrap();
        }
        w.commit().unwrap().seq
    }

    fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("seg"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    fn ship_through(spool: &Spool, seq: u64) {
        let mut st = spool.state();
        st.shipped_seq = seq;
        st.txid = seq;
        spool.mark_shipped(st).unwrap();
    }

    /// While records are pending, a shipped segment's file is kept and the next segment is
    /// written over it; recovery then reads the new records and none of the old ones, and
    /// once nothing is pending the spare files go.
    #[test]
    fn a_shipped_segment_is_written_over_by_the_next_and_never_read_back() {
        let dir = tmpdir("over");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        let mut seq = 0;
        while files(&dir, ".seg").len() < 3 {
            seq = append(&spool, seq as u32 + 2, 1);
        }
        let first_of_third = seq;
        ship_through(&spool, first_of_third - 1);
        assert_eq!(files(&dir, ".spare").len(), 2, "{:?}", files(&dir, ""));
        for spare in files(&dir, ".spare") {
            let len = std::fs::metadata(dir.join("seg").join(spare))
                .unwrap()
                .len();
            assert!(
                len <= SEGMENT_ROLL_BYTES,
                "a spare is cut to the roll size: {len}"
            );
        }
        assert_eq!(files(&dir, ".seg").len(), 1);
        for _ in 0..64 {
            if files(&dir, ".spare").len() < 2 {
                break;
            }
            seq = append(&spool, seq as u32 + 2, 2);
        }
        assert_eq!(
            files(&dir, ".spare").len(),
            1,
            "the next segment takes a spare"
        );
        let taken_over = seq; // the record that started a segment in a spare's file
        seq = append(&spool, seq as u32 + 2, 3);
        spool.flush().unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(&dir, 1 << 30).unwrap();
        assert!(files(&dir, ".spare").is_empty(), "recovery removes spares");
        let pending = spool.pending();
        assert_eq!(rec.records as u64, seq - first_of_third + 1);
        let seqs: Vec<u64> = pending.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (first_of_third..=seq).collect::<Vec<_>>());
        let mut buf = Vec::new();
        let last = pending.last().unwrap();
        spool.read_page(last, 1023, &mut buf).unwrap();
        assert_eq!(buf, vec![3u8; 512]);
        let at = pending.iter().find(|r| r.seq == taken_over).unwrap();
        spool.read_page(at, 0, &mut buf).unwrap();
        assert_eq!(buf, vec![2u8; 512]);
        // Records keep coming until another segment rolls: spares again; then all shipped.
        for _ in 0..64 {
            if !files(&dir, ".spare").is_empty() {
                break;
            }
            seq = append(&spool, seq as u32 + 2, 4);
            ship_through(&spool, seq - 1);
        }
        assert!(!files(&dir, ".spare").is_empty());
        ship_through(&spool, seq);
        assert!(files(&dir, ".spare").is_empty(), "{:?}", files(&dir, ""));
        drop(spool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A segment whose file was a spare holds the old records until the new ones are
    /// written over them: a record older than the segment's name is never read as one.
    #[test]
    fn records_older_than_their_segment_are_stale() {
        let dir = tmpdir("stale");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        for f in 2..5 {
            append(&spool, f, 1);
        }
        spool.flush().unwrap();
        drop(spool);
        let bytes = std::fs::read(dir.join("seg").join(segment_name(1))).unwrap();
        let (records, len) = super::super::scan_segment(&bytes, 1);
        assert_eq!((records.len(), len), (3, bytes.len() as u64));
        let (records, len) = super::super::scan_segment(&bytes, 4);
        assert_eq!((records.len(), len), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A crash right after a segment took a spare's file over, before any of its records
    /// reached it: recovery keeps every record written before and reads none of the old.
    #[test]
    fn a_crash_before_a_spare_is_written_over_reads_none_of_it() {
        let dir = tmpdir("crash");
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        let mut seq = 0;
        while files(&dir, ".seg").len() < 2 {
            seq = append(&spool, seq as u32 + 2, 1);
        }
        ship_through(&spool, seq - 1);
        assert_eq!(files(&dir, ".spare").len(), 1);
        let mut rolled = false;
        for _ in 0..64 {
            seq = append(&spool, seq as u32 + 2, 2);
            if files(&dir, ".spare").is_empty() {
                rolled = true;
                break;
            }
        }
        assert!(rolled, "no segment took the spare over");
        // The disk as a crash would leave it: the record that rolled is only in memory.
        let image = tmpdir("crash-image");
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&image)
            .status()
            .unwrap();
        assert!(copied.success());
        drop(spool);
        let _ = std::fs::remove_file(image.join("lock"));
        let (spool, rec) = Spool::open(&image, 1 << 30).unwrap();
        let seqs: Vec<u64> = spool.pending().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (seq - rec.records as u64..seq).collect::<Vec<_>>());
        assert!(rec.records > 0 && rec.torn_bytes_dropped > 0);
        let taken = image.join("seg").join(segment_name(seq));
        assert_eq!(std::fs::metadata(taken).unwrap().len(), 0);
        drop(spool);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&image);
    }

    /// Spares are bounded by their count and by the spool's cap, pending records included.
    #[test]
    fn room_for_spares_is_bounded_by_count_and_cap() {
        let spares = Spares(vec![1, 2]);
        assert_eq!(spares.room(0, 1 << 40), MAX_SPARES - 2);
        assert_eq!(spares.room(0, 3 * SEGMENT_ROLL_BYTES), 1);
        assert_eq!(spares.room(SEGMENT_ROLL_BYTES, 3 * SEGMENT_ROLL_BYTES), 0);
        assert_eq!(spares.room(1 << 40, 1 << 30), 0);
    }
}
