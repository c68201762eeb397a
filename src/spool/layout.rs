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

/// What the `generation` file says: the log started over with `salts`, and every spool
/// record up to `through_seq` was on disk by then (0 where a build before this field wrote
/// the file: it vouched for the records without naming them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation {
    pub salts: (u32, u32),
    pub through_seq: u64,
}

/// The `generation` file's line: always the same length (so a write in place leaves no
/// stale tail), with a CRC-64 of what it says.
pub(super) fn generation_line(g: Generation) -> String {
    format!(
        "{:010},{:010},{:020},{:016x}\n",
        g.salts.0,
        g.salts.1,
        g.through_seq,
        generation_check(&[
            &g.salts.0.to_be_bytes(),
            &g.salts.1.to_be_bytes(),
            &g.through_seq.to_be_bytes(),
        ])
    )
}

fn generation_check(parts: &[&[u8]]) -> u64 {
    crate::ltx::crc64(&parts.concat())
}

/// What the `generation` file in `dir` records (one line: more than a line's worth of it is
/// never read).
pub(super) fn read_generation(dir: &HeldDir) -> Option<Generation> {
    use std::io::Read;
    let mut text = String::new();
    private_fs::open_read(&dir.at("generation"))
        .ok()?
        .take(
            2 * generation_line(Generation {
                salts: (0, 0),
                through_seq: 0,
            })
            .len() as u64,
        )
        .read_to_string(&mut text)
        .ok()?;
    parse_generation(&text)
}

/// What a `generation` file records: a line `generation_line` wrote and its check holds,
/// the line of the build before (`salt1,salt2,check`, no record named), or the whole line
/// of an older one (`salt1,salt2\n`, no zero padding, so the start of a newer line cut
/// short is not taken for one).
pub(super) fn parse_generation(text: &str) -> Option<Generation> {
    let fields: Vec<&str> = text.strip_suffix('\n')?.split(',').collect();
    let salts: (u32, u32) = (fields.first()?.parse().ok()?, fields.get(1)?.parse().ok()?);
    let unpadded = |f: &str| f == "0" || !f.starts_with('0');
    let named = |through_seq| Some(Generation { salts, through_seq });
    let check = |i: usize| u64::from_str_radix(fields[i], 16).ok();
    let salt_bytes = [salts.0.to_be_bytes(), salts.1.to_be_bytes()];
    match fields.len() {
        2 if unpadded(fields[0]) && unpadded(fields[1]) => named(0),
        3 if check(2)? == generation_check(&[&salt_bytes[0], &salt_bytes[1]]) => named(0),
        4 => {
            let through_seq: u64 = fields[2].parse().ok()?;
            let sum =
                generation_check(&[&salt_bytes[0], &salt_bytes[1], &through_seq.to_be_bytes()]);
            (check(3)? == sum).then_some(Generation { salts, through_seq })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(salt1: u32, salt2: u32, through_seq: u64) -> Generation {
        Generation {
            salts: (salt1, salt2),
            through_seq,
        }
    }

    #[test]
    fn a_generation_line_reads_back_and_a_torn_one_reads_as_none() {
        for g in [
            gen(0, 0, 0),
            gen(1, 2, 3),
            gen(u32::MAX, 7, u64::MAX),
            gen(3_000_000_000, 123_456, 88_889),
        ] {
            let line = generation_line(g);
            assert_eq!(line.len(), generation_line(gen(0, 0, 0)).len());
            assert_eq!(parse_generation(&line), Some(g));
        }
        assert_eq!(
            parse_generation("12,34\n"),
            Some(gen(12, 34, 0)),
            "an older build's file"
        );
        let old = generation_line(gen(1111, 2222, 40));
        let new = generation_line(gen(3333, 4444, 41));
        for cut in 1..new.len() {
            let torn = format!("{}{}", &new[..cut], &old[cut..]);
            let read = parse_generation(&torn);
            assert!(
                read.is_none()
                    || read == Some(gen(1111, 2222, 40))
                    || read == Some(gen(3333, 4444, 41)),
                "{torn:?} read as {read:?}"
            );
        }
        let line = generation_line(gen(13, 0, 5));
        for cut in 0..line.len() {
            assert_eq!(parse_generation(&line[..cut]), None, "{:?}", &line[..cut]);
        }
        for junk in [
            "", "\n", "1", "1,2", "1,2,3", "a,b", "1,2,zz", "1,2,0,0", "013,4\n",
        ] {
            assert_eq!(parse_generation(junk), None, "{junk:?}");
        }
    }

    /// The line of the build before named no record: it still reads, vouching for none.
    #[test]
    fn the_previous_builds_line_reads_as_naming_no_record() {
        let salts = (1111u32, 2222u32);
        let check = generation_check(&[&salts.0.to_be_bytes(), &salts.1.to_be_bytes()]);
        let line = format!("{:010},{:010},{check:016x}\n", salts.0, salts.1);
        assert_eq!(parse_generation(&line), Some(gen(1111, 2222, 0)));
        let bad = format!("{:010},{:010},{:016x}\n", salts.0, salts.1, check ^ 1);
        assert_eq!(parse_generation(&bad), None);
    }
}
