//! Opening a spool: taking ownership of it and recovering what a previous owner left, the
//! records still pending shipment, with a torn tail cut off. It must not repair anything
//! beyond that: what recovery found is reported, and the caller decides (a lost in-memory
//! record or an overflow means a snapshot).

use super::destinations;
use super::error::{dir_error, io, SpoolError};
use super::handle::{Inner, Spool};
use super::layout::{self, SEG_DIR};
use super::record::RecordMeta;
use super::segment::{read_segment, Segment};
use super::state::{self, SpoolState};
use crate::base::held_dir::HeldDir;
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
        Spool::open_with(dir, cap_bytes, Modes::PRIVATE, &[])
    }

    /// Opens (or creates) the spool in `path`; everything it creates gets `modes`. The
    /// directory is opened once and held: its checks (a symlink or another user's is
    /// `Refused`, since its pages would be where that user reads them and its files could
    /// point anywhere) hold for everything the spool does later. A spool this process may
    /// not create or write is `DirectoryNotWritable` or `NotWritable`. The spool feeds a
    /// first destination and one more for each of `other_destinations` (their names, see
    /// `destinations`): records stay until every one has shipped them.
    pub fn open_with(
        path: &Path,
        cap_bytes: u64,
        modes: Modes,
        other_destinations: &[&str],
    ) -> Result<(Spool, Recovery), SpoolError> {
        let dir = HeldDir::ensure(path, modes).map_err(|e| dir_error(path, None, e))?;
        let seg = dir
            .ensure_sub(SEG_DIR, modes)
            .map_err(|e| dir_error(path, Some(&dir.shown(SEG_DIR)), e))?;
        // One process appends to a spool at a time: a second one stands by while the first
        // takes its commits from the WAL (and from its hand-offs), and takes over if the
        // first goes away.
        let lock = layout::acquire_lock(&dir, modes)?;
        narrow_old_files(&dir, modes, 2);
        let mut rec = Recovery::default();
        let dests = destinations::open_dirs(&dir, modes, other_destinations)?;
        let states = read_states(&dests, &mut rec)?;
        // Records every destination has are reclaimed; numbering goes on after the last
        // record any destination has (its records may be gone from the segments).
        let shipped = states.iter().map(|st| st.shipped_seq);
        let shipped_by_all = shipped.clone().min().unwrap_or_default();
        let shipped_by_any = shipped.max().unwrap_or_default();
        let overflowed = dir.at("overflow").exists();
        rec.unflushed_lost = dir.at("unflushed").exists();
        let _ = std::fs::remove_file(dir.at("unflushed"));
        rec.overflowed = overflowed;
        let found = recover_segments(&seg, (shipped_by_all, shipped_by_any), &mut rec)?;
        rec.records = found.pending.len();
        if void_generation(&dir, found.max_seq) {
            rec.unflushed_lost = true;
        }
        let segment = match found.last_segment {
            Some((id, len)) => {
                let name = layout::segment_name(id);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(O_NOFOLLOW)
                    .open(seg.at(&name))
                    .map_err(|e| io("opening", &seg.shown(&name), e))?;
                Some(Segment::new(id, file, len))
            }
            None => None,
        };
        let let_go_through = destinations::let_go_of_the_incomplete(
            &dests,
            modes,
            &states,
            &found.pending,
            found.max_seq,
        );
        let pending_bytes = found.pending.iter().map(|r| r.len()).sum();
        let mut pending = found.pending;
        let txns_through = Inner::count_recovered(&mut pending);
        let spool = Spool {
            dir,
            seg,
            cap_bytes,
            modes,
            _lock: lock,
            generation: Mutex::new(None),
            id: std::sync::OnceLock::new(),
            dests,
            inner: Mutex::new(Inner {
                let_go_through,
                states,
                pending,
                pending_bytes,
                txns_through,
                next_seq: found.max_seq + 1,
                segment,
                overflowed,
                refusing: false,
            }),
        };
        Ok((spool, rec))
    }
}

/// Each destination's replicated position (a new history id for one that has none).
fn read_states(dests: &[HeldDir], rec: &mut Recovery) -> Result<Vec<SpoolState>, SpoolError> {
    let mut states = Vec::with_capacity(dests.len());
    for dest in dests {
        let state = state::read_state(dest)?;
        rec.had_state |= state.is_some();
        let mut state = state.unwrap_or_default();
        if state.lineage == 0 {
            // Kept from the first state written: the history a destination starts is its own.
            state.lineage = new_lineage();
        }
        states.push(state);
    }
    Ok(states)
}

/// A random nonzero history id, from the operating system's generator (two machines
/// starting at once must not pick the same one); the clock when there is none.
fn new_lineage() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let random = ring::rand::SystemRandom::new().fill(&mut b).is_ok();
    let id = if random {
        u64::from_le_bytes(b)
    } else {
        crate::base::clock::now_ms() ^ (u64::from(std::process::id()) << 40)
    };
    id.max(1)
}

/// A spool made by an older build kept the modes its umask gave: narrow its files and
/// subdirectories (`depth` levels down: `cache/<level>/`) to `modes`.
fn narrow_old_files(dir: &HeldDir, modes: Modes, depth: u32) {
    dir.narrow_files(modes.file);
    if depth == 0 {
        return;
    }
    for name in dir.names().unwrap_or_default() {
        let Some(name) = name.to_str() else { continue };
        if !std::fs::symlink_metadata(dir.at(name)).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if let Ok(sub) = dir.existing_sub(name) {
            if sub.narrow(modes).is_ok() {
                narrow_old_files(&sub, modes, depth - 1);
            }
        }
    }
}

/// A generation line naming records past the last one the segments hold vouches for
/// records that are gone (they never reached the disk, or the segment lost them): it is
/// removed, so that the log it names is not taken as continuing the spool (a snapshot
/// closes the gap instead). Whether it was.
fn void_generation(dir: &HeldDir, max_seq: u64) -> bool {
    let Some(g) = layout::read_generation(dir) else {
        return false;
    };
    if g.through_seq <= max_seq {
        return false;
    }
    crate::base::log::notice(&format!(
        "{}: the spool's last record is {max_seq} but its generation file vouches for records through {}: \
         those records are gone, and the log that followed them is not taken as continuing the spool",
        dir.shown("generation").display(),
        g.through_seq
    ));
    let _ = std::fs::remove_file(dir.at("generation"));
    true
}

/// Reads the segments in order, keeping the records after `shipped_seq` (the last one
/// every destination has), up to the first torn record: that segment is cut there and the
/// later ones removed. The highest sequence number is at least `shipped_by_any` (the last
/// record some destination has).
fn recover_segments(
    seg: &HeldDir,
    (shipped_seq, shipped_by_any): (u64, u64),
    rec: &mut Recovery,
) -> Result<Found, SpoolError> {
    let mut found = Found {
        pending: Vec::new(),
        max_seq: shipped_by_any,
        last_segment: None,
    };
    let mut ids = layout::segment_ids(seg)?;
    ids.sort_unstable();
    for (i, id) in ids.iter().enumerate() {
        let (records, valid_len, file_len) = read_segment(seg, *id)?;
        for r in records {
            found.max_seq = found.max_seq.max(r.seq);
            if r.seq > shipped_seq {
                found.pending.push(r);
            }
        }
        found.last_segment = Some((*id, valid_len));
        if valid_len < file_len {
            rec.torn_bytes_dropped += file_len - valid_len;
            drop_torn_tail(seg, *id, valid_len, &ids[i + 1..], rec)?;
            break;
        }
    }
    Ok(found)
}

/// Cuts segment `id` to its well-formed records and removes the segments after it.
fn drop_torn_tail(
    seg: &HeldDir,
    id: u64,
    valid_len: u64,
    later: &[u64],
    rec: &mut Recovery,
) -> Result<(), SpoolError> {
    let name = layout::segment_name(id);
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(O_NOFOLLOW)
        .open(seg.at(&name))
        .map_err(|e| io("opening", &seg.shown(&name), e))?;
    f.set_len(valid_len)
        .map_err(|e| io("truncating", &seg.shown(&name), e))?;
    // Anything after a torn record was never acknowledged by a commit: drop later segments.
    for later in later {
        let p = seg.at(&layout::segment_name(*later));
        rec.torn_bytes_dropped += std::fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
