//! Where things are in a spool directory: its place beside the database, segment file names,
//! the owner's lock and the spool's lasting id. It must not read or write records or state.
//! Everything inside is reached through the held directory (`HeldDir::at`), never through
//! the spool's path again once it was checked.

use super::error::{io, SpoolError};
use crate::base::child_release::ReleasedInChildren;
use crate::base::held_dir::HeldDir;
use crate::base::private_fs::{self, Modes};
use std::path::{Path, PathBuf};

/// The subdirectory segments live in.
pub(super) const SEG_DIR: &str = "seg";

/// The sidecar directory of a database: `/x/app.db` → `/x/app.db-replica`.
pub(super) fn dir_for(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push("-replica");
    PathBuf::from(s)
}

/// The name of the segment whose first record has sequence number `id`.
pub(super) fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The ids of the segments in `seg`, in no particular order.
pub(super) fn segment_ids(seg: &HeldDir) -> Result<Vec<u64>, SpoolError> {
    let names = seg.names().map_err(|e| io("listing", seg.path(), e))?;
    Ok(names
        .iter()
        .filter_map(|n| n.to_str()?.strip_suffix(".seg"))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .collect())
}

/// Takes the spool's `lock` (an exclusive `flock`, held as long as the file stays open) and
/// writes this process's pid into it; `Locked` when another process holds it.
/// Never through a symlink: a planted `lock -> victim` fails to open instead of truncating
/// the victim.
pub(super) fn acquire_lock(dir: &HeldDir, modes: Modes) -> Result<ReleasedInChildren, SpoolError> {
    let lock_path = dir.shown("lock");
    let lock = modes
        .open_rw()
        .open(dir.at("lock"))
        .map_err(|e| io("opening", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(SpoolError::Locked(dir.path().to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path, e)),
    }
    // A fork from here on must not hand the child a share of it (recovery can take long).
    let lock = ReleasedInChildren::new(lock);
    // Who holds it, for the status of the processes that stand by.
    {
        use std::io::Write;
        let mut f = lock.file();
        let _ = f.set_len(0);
        let _ = f.write_all(format!("pid={}\n", std::process::id()).as_bytes());
    }
    Ok(lock)
}

/// The process id the spool's lock file names (the process that replicates it); read only
/// from a spool directory this process's user owns.
pub(super) fn owner_pid(dir: &Path) -> Option<u32> {
    let dir = HeldDir::existing(dir).ok()?;
    private_fs::read_to_string(&dir.at("lock"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok())
}

/// The spool's lasting name, made once and kept in the file `id`.
pub(super) fn instance_id(dir: &HeldDir, modes: Modes) -> String {
    let path = dir.at("id");
    if let Ok(id) = private_fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return id;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let id = format!(
        "{:016x}",
        crate::ltx::crc64(
            format!("{t}:{}:{}", std::process::id(), dir.path().display()).as_bytes()
        )
    );
    let _ = modes.write_atomically(&path, id.as_bytes(), false);
    id
}

/// The `generation` file's line for `salts`: always the same length (so a write in place
/// leaves no stale tail), with a CRC-64 of the salts.
pub(super) fn generation_line(salts: (u32, u32)) -> String {
    format!(
        "{:010},{:010},{:016x}\n",
        salts.0,
        salts.1,
        generation_check(salts)
    )
}

fn generation_check(salts: (u32, u32)) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&salts.0.to_be_bytes());
    bytes[4..].copy_from_slice(&salts.1.to_be_bytes());
    crate::ltx::crc64(&bytes)
}

/// The salts a `generation` file records: a line `generation_line` wrote and its check
/// holds, or the whole line an older build wrote (`salt1,salt2\n`, no zero padding, so
/// the start of a new line cut short is not taken for one).
pub(super) fn parse_generation(text: &str) -> Option<(u32, u32)> {
    let fields: Vec<&str> = text.strip_suffix('\n')?.split(',').collect();
    let salts = (fields.first()?.parse().ok()?, fields.get(1)?.parse().ok()?);
    let unpadded = |f: &str| f == "0" || !f.starts_with('0');
    match fields.len() {
        2 if unpadded(fields[0]) && unpadded(fields[1]) => Some(salts),
        3 if u64::from_str_radix(fields[2], 16).ok()? == generation_check(salts) => Some(salts),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_line_reads_back_and_a_torn_one_reads_as_none() {
        for salts in [(0, 0), (1, 2), (u32::MAX, 7), (3_000_000_000, 123_456)] {
            let line = generation_line(salts);
            assert_eq!(line.len(), generation_line((0, 0)).len());
            assert_eq!(parse_generation(&line), Some(salts));
        }
        assert_eq!(
            parse_generation("12,34\n"),
            Some((12, 34)),
            "an older build's file"
        );
        let old = generation_line((1111, 2222));
        let new = generation_line((3333, 4444));
        for cut in 1..new.len() {
            let torn = format!("{}{}", &new[..cut], &old[cut..]);
            let read = parse_generation(&torn);
            assert!(
                read.is_none() || read == Some((1111, 2222)) || read == Some((3333, 4444)),
                "{torn:?} read as {read:?}"
            );
        }
        let line = generation_line((13, 0));
        for cut in 0..line.len() {
            assert_eq!(parse_generation(&line[..cut]), None, "{:?}", &line[..cut]);
        }
        for junk in [
            "", "\n", "1", "1,2", "1,2,3", "a,b", "1,2,zz", "1,2,0,0", "013,4\n",
        ] {
            assert_eq!(parse_generation(junk), None, "{junk:?}");
        }
    }
}
