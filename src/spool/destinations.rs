//! Where each destination of a spool keeps its own files: the first destination in the
//! spool directory itself (so a spool written before databases had several destinations
//! reads as that destination's), each other one in `dest/<name>/`. It must not read or
//! write what is inside them (that is `state`'s and the uploader's).

use super::error::{dir_error, SpoolError};
use super::record::RecordMeta;
use super::state::SpoolState;
use crate::base::held_dir::HeldDir;
use crate::base::private_fs::Modes;
use std::path::{Path, PathBuf};

/// The folder of the destinations after the first.
const DEST_DIR: &str = "dest";

/// The held directories of the first destination (`spool`) and of each of `others`, by
/// name, created as needed. A name is a configured destination's (letters, digits, `-`
/// and `_`, checked by `config`); anything else is refused here too, since it becomes a
/// path.
pub(super) fn open_dirs(
    spool: &HeldDir,
    modes: Modes,
    others: &[&str],
) -> Result<Vec<HeldDir>, SpoolError> {
    let first = spool
        .try_clone()
        .map_err(|e| super::error::io("opening", spool.path(), e))?;
    let mut dirs = vec![first];
    if others.is_empty() {
        return Ok(dirs);
    }
    let root = spool
        .ensure_sub(DEST_DIR, modes)
        .map_err(|e| dir_error(spool.path(), Some(&spool.shown(DEST_DIR)), e))?;
    for name in others {
        if !is_valid_name(name) {
            return Err(SpoolError::Refused {
                path: root.shown(name),
                reason: format!("the destination name {name:?} cannot name a folder"),
            });
        }
        let dir = root
            .ensure_sub(name, modes)
            .map_err(|e| dir_error(spool.path(), Some(&root.shown(name)), e))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Per destination, the last record let go of for it (0: none). A destination that has
/// shipped something needs every record after its position; when the segments no longer
/// hold them (another destination shipped them and they were reclaimed while this one was
/// let go of, or while it was not configured), the spool has a hole for it: it is let go
/// of, and its `gap` owes it a snapshot, so that it never ships across the hole. `pending`
/// are the records recovery found, oldest first; `max_seq` the last one any destination has.
pub(super) fn let_go_of_the_incomplete(
    dirs: &[HeldDir],
    modes: Modes,
    states: &[SpoolState],
    pending: &[RecordMeta],
    max_seq: u64,
) -> Vec<u64> {
    let mut let_go = vec![0; states.len()];
    for (d, st) in states.iter().enumerate().filter(|(_, st)| st.txid != 0) {
        let next = pending
            .iter()
            .find(|r| r.seq > st.shipped_seq)
            .map(|r| r.seq);
        let missing = match next {
            Some(seq) => seq > st.shipped_seq + 1,
            None => max_seq > st.shipped_seq,
        };
        if !missing {
            continue;
        }
        let_go[d] = next.map_or(max_seq, |seq| seq - 1);
        let reason = "records it had not shipped are gone from the spool";
        if let Err(e) = write_gap(&dirs[d], modes, reason, true) {
            crate::base::log::error(&e.to_string());
        }
    }
    let_go
}

/// Writes the `gap` file of the destination whose folder is `dir`: why it is owed a
/// snapshot, which survives a restart until a snapshot ships to it (`sync`: on the disk
/// before this returns).
pub(super) fn write_gap(
    dir: &HeldDir,
    modes: Modes,
    reason: &str,
    sync: bool,
) -> Result<(), SpoolError> {
    modes
        .write_atomically(&dir.at("gap"), reason.as_bytes(), sync)
        .map_err(|e| super::error::io("writing", &dir.shown("gap"), e))
}

/// The path of destination `d`'s directory (named `name`) in the spool at `spool`.
pub(super) fn dir_of(spool: &Path, d: usize, name: &str) -> PathBuf {
    match d {
        0 => spool.to_path_buf(),
        _ => spool.join(DEST_DIR).join(name),
    }
}

/// Letters, digits, `-` and `_`, 1 to 32 of them (never `.` or `..`).
fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_become_folders() {
        for ok in ["s3", "s3-2", "backup_b2", "A1"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(33)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
