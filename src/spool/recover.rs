//! Opening a spool: taking ownership of it and recovering what a previous owner left, the
//! records still pending shipment, with a torn tail cut off. It must not repair anything
//! beyond that: what recovery found is reported, and the caller decides (a lost in-memory
//! record or an overflow means a snapshot).

use super::error::{io, SpoolError};
use super::handle::{Inner, Spool};
use super::layout;
use super::record::RecordMeta;
use super::segment::{read_segment, Segment};
use super::state;
use crate::base::private_fs::{Modes, O_NOFOLLOW};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

/// What recovery found when the spool was opened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub records: usize,
    pub torn_bytes_dropped: u64,
    pub overflowed: bool,
    pub had_state: bool,
    /// Records kept in memory were lost (the process died before writing them out).
    pub unflushed_lost: bool,
}

/// The records found in the segments.
struct Found {
    /// Those not shipped yet, oldest first.
    pending: Vec<RecordMeta>,
    /// The highest sequence number seen (shipped or not).
    max_seq: u64,
    /// The segment appends continue, and the length of its well-formed records.
    last_segment: Option<(u64, u64)>,
}

impl Spool {
    /// Opens the spool in `dir` with owner-only modes (see `open_with`).
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<(Spool, Recovery), SpoolError> {
        Spool::open_with(dir, cap_bytes, Modes::PRIVATE)
    }

    /// Opens (or creates) the spool in `dir`; everything it creates gets `modes`. A `dir`
    /// (or `seg/`) that is a symlink or another user's is `Refused`: its pages would be
    /// where that user reads them, and its files could point anywhere.
    pub fn open_with(
        dir: &Path,
        cap_bytes: u64,
        modes: Modes,
    ) -> Result<(Spool, Recovery), SpoolError> {
        let seg_dir = layout::seg_dir(dir);
        for d in [dir, &seg_dir] {
            modes.ensure_dir(d).map_err(|reason| SpoolError::Refused {
                path: d.to_path_buf(),
                reason,
            })?;
        }
        // One process appends to a spool at a time: a second one stands by while the first
        // takes its commits from the WAL (and from its hand-offs), and takes over if the
        // first goes away.
        let lock = layout::acquire_lock(dir, modes)?;
        let mut rec = Recovery::default();
        let state = state::read_state(dir)?;
        rec.had_state = state.is_some();
        let state = state.unwrap_or_default();
        let overflowed = dir.join("overflow").exists();
        rec.unflushed_lost = dir.join("unflushed").exists();
        let _ = std::fs::remove_file(dir.join("unflushed"));
        rec.overflowed = overflowed;
        let found = recover_segments(&seg_dir, state.shipped_seq, &mut rec)?;
        rec.records = found.pending.len();
        let segment = match found.last_segment {
            Some((id, len)) => {
                let path = layout::segment_file(&seg_dir, id);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| io("opening", &path, e))?;
                Some(Segment::new(id, file, len))
            }
            None => None,
        };
        let pending_bytes = found.pending.iter().map(|r| r.len()).sum();
        let spool = Spool {
            dir: dir.to_path_buf(),
            cap_bytes,
            modes,
            _lock: lock,
            inner: Mutex::new(Inner {
                state,
                pending: found.pending,
                pending_bytes,
                next_seq: found.max_seq + 1,
                segment,
                overflowed,
            }),
        };
        Ok((spool, rec))
    }
}

/// Reads the segments in order, keeping the records after `shipped_seq`, up to the first
/// torn record: that segment is cut there and the later ones removed.
fn recover_segments(
    seg_dir: &Path,
    shipped_seq: u64,
    rec: &mut Recovery,
) -> Result<Found, SpoolError> {
    let mut found = Found {
        pending: Vec::new(),
        max_seq: shipped_seq,
        last_segment: None,
    };
    let mut ids = layout::segment_ids(seg_dir)?;
    ids.sort_unstable();
    for (i, id) in ids.iter().enumerate() {
        let path = layout::segment_file(seg_dir, *id);
        let (records, valid_len, file_len) = read_segment(&path, *id)?;
        for r in records {
            found.max_seq = found.max_seq.max(r.seq);
            if r.seq > shipped_seq {
                found.pending.push(r);
            }
        }
        found.last_segment = Some((*id, valid_len));
        if valid_len < file_len {
            rec.torn_bytes_dropped += file_len - valid_len;
            drop_torn_tail(seg_dir, &path, valid_len, &ids[i + 1..], rec)?;
            break;
        }
    }
    Ok(found)
}

/// Cuts segment `path` to its well-formed records and removes the segments after it.
fn drop_torn_tail(
    seg_dir: &Path,
    path: &Path,
    valid_len: u64,
    later: &[u64],
    rec: &mut Recovery,
) -> Result<(), SpoolError> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| io("opening", path, e))?;
    f.set_len(valid_len)
        .map_err(|e| io("truncating", path, e))?;
    // Anything after a torn record was never acknowledged by a commit: drop later segments.
    for later in later {
        let p = layout::segment_file(seg_dir, *later);
        rec.torn_bytes_dropped += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
