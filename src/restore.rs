//! Restore: plan from a LIST (latest snapshot at or before the target, then the contiguous
//! chain of files after it), download, apply page by page into a temporary file, verify
//! every file checksum and the database checksum chain, check integrity, then rename into
//! place. Planning is pure; applying takes the store and a checker. It must never leave an
//! unverified file at the target path, and never overwrite a file unless asked.

use crate::error::Error;
use crate::ltx::{self, Decoder};
use crate::store::{keys, ObjectInfo, ObjectStore};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    Txid(u64),
    /// Milliseconds since the epoch: the last state whose files are all at or before it.
    Timestamp(u64),
}

/// One LTX object of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxObject {
    pub key: String,
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
    pub size: u64,
}

/// Parses a listing into LTX objects, skipping anything else.
pub fn parse_listing(objects: &[ObjectInfo]) -> Vec<LtxObject> {
    let mut out: Vec<LtxObject> = objects
        .iter()
        .filter_map(|o| {
            let mut parts = o.key.rsplit('/');
            let name = parts.next()?;
            let level = u8::from_str_radix(parts.next()?, 16).ok()?;
            let (min_txid, max_txid) = keys::parse_ltx_filename(name)?;
            Some(LtxObject {
                key: o.key.clone(),
                level,
                min_txid,
                max_txid,
                size: o.size,
            })
        })
        .collect();
    out.sort_by_key(|o| (o.max_txid, o.level, o.min_txid));
    out
}

/// Chooses the files to apply for a target txid (`None` = latest): the newest snapshot at
/// or before it, then at each step the file continuing the state reached (starting right
/// after it, or before it for a compacted file) that covers the most while staying at or
/// before the target. A target txid the chain cannot end at exactly (compaction merged it
/// into a larger file) is an error naming the nearest restore points.
pub fn plan(objects: &[LtxObject], target: Option<u64>) -> Result<Vec<LtxObject>, Error> {
    let limit = target.unwrap_or(u64::MAX);
    // A file starting at txid 1 holds every page (an LTX snapshot), whatever its level:
    // Litestream's first level-0 file and its compactions from txid 1 are snapshots too.
    let snapshot = objects
        .iter()
        .filter(|o| o.min_txid == 1 && o.max_txid <= limit)
        .max_by_key(|o| (o.max_txid, o.level == keys::SNAPSHOT_LEVEL))
        .ok_or_else(|| match target {
            _ if objects.is_empty() => Error::Restore("the replica holds no LTX files".into()),
            Some(t) => Error::Restore(format!(
                "no snapshot (a file starting at txid 1) at or before txid {t} in the replica"
            )),
            None => Error::Restore("the replica holds no snapshot".into()),
        })?;
    let mut chain = vec![snapshot.clone()];
    let mut reached = snapshot.max_txid;
    loop {
        // A compacted file may start before the state reached (a snapshot taken inside
        // its range, as Litestream's are): applying all of it is still right, since every
        // page it holds is that page's latest version up to its end.
        let next = objects
            .iter()
            .filter(|o| o.min_txid <= reached + 1 && o.max_txid > reached && o.max_txid <= limit)
            .max_by_key(|o| (o.max_txid, o.level));
        match next {
            Some(o) => {
                reached = o.max_txid;
                chain.push(o.clone());
            }
            None => break,
        }
    }
    // Files beyond what we reached (within the target) mean a hole in the chain: refuse
    // rather than silently return an older database.
    let newest_wanted = objects
        .iter()
        .filter(|o| o.max_txid <= limit)
        .map(|o| o.max_txid)
        .max()
        .unwrap_or(0);
    if newest_wanted > reached {
        let after = objects
            .iter()
            .filter(|o| o.min_txid > reached && o.max_txid <= limit)
            .min_by_key(|o| o.min_txid)
            .map(|o| o.key.clone())
            .unwrap_or_default();
        return Err(Error::Restore(format!(
            "the replica's chain is broken: no file starts at txid {} (the next file is {after})",
            reached + 1
        )));
    }
    if let Some(t) = target {
        if objects.iter().all(|o| o.max_txid < t) {
            return Err(Error::Restore(format!(
                "txid {t} is past the end of the replica (latest txid {reached})"
            )));
        }
        if reached < t {
            // Compaction merged the files that ended at it: never restore another state.
            let after = objects
                .iter()
                .filter(|o| o.max_txid > t)
                .map(|o| o.max_txid)
                .min()
                .unwrap_or(t);
            return Err(Error::Restore(format!(
                "txid {t} is not a restore point of the replica (its files were compacted); the nearest are txids {reached} and {after}"
            )));
        }
    }
    Ok(chain)
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub txid: u64,
    pub files: usize,
    pub pages: u32,
    pub bytes_downloaded: u64,
}

pub struct RestoreRequest<'a> {
    pub store: &'a dyn ObjectStore,
    /// Key prefix of the replica (empty for file replicas).
    pub prefix: &'a str,
    pub output: &'a Path,
    pub target: Target,
    pub overwrite: bool,
    /// Runs `PRAGMA quick_check` (or more) on the restored file before it is moved in place.
    pub check: &'a dyn Fn(&Path) -> Result<(), String>,
}

pub fn restore(req: &RestoreRequest) -> Result<Restored, Error> {
    if req.output.exists() && !req.overwrite {
        return Err(Error::InvalidArgument(format!(
            "replica_restore: {} already exists; pass 'overwrite' as the fourth argument to replace it",
            req.output.display()
        )));
    }
    let list_prefix = if req.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", req.prefix)
    };
    let objects = parse_listing(&req.store.list(&list_prefix)?);
    let target_txid = match req.target {
        Target::Latest => None,
        Target::Txid(t) => Some(t),
        Target::Timestamp(ts) => Some(txid_at_time(req.store, &objects, ts)?),
    };
    let chain = plan(&objects, target_txid)?;
    let tmp = temp_path(req.output);
    let result = apply(req, &chain, &tmp).and_then(|restored| {
        (req.check)(&tmp).map_err(|e| {
            Error::Restore(format!(
                "integrity check of the restored database failed: {e}"
            ))
        })?;
        // A WAL or journal left beside the file being replaced would be replayed into the
        // restored database when it is first opened.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = req.output.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::remove_file(PathBuf::from(side)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Io(format!(
                        "removing {suffix} beside {}: {e}",
                        req.output.display()
                    )))
                }
            }
        }
        std::fs::rename(&tmp, req.output)
            .map_err(|e| Error::Io(format!("renaming into {}: {e}", req.output.display())))?;
        Ok(restored)
    });
    if result.is_err() {
        cleanup(&tmp);
    }
    result
}

fn temp_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(format!(".restoring-{}", std::process::id()));
    PathBuf::from(s)
}

fn cleanup(tmp: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = tmp.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// The newest txid whose file was written at or before `ts`, read from LTX headers.
fn txid_at_time(store: &dyn ObjectStore, objects: &[LtxObject], ts: u64) -> Result<u64, Error> {
    let mut best = None;
    for o in objects {
        let head = store.get_range(&o.key, 0, ltx::HEADER_SIZE as u64)?;
        let h =
            ltx::Header::decode(&head).map_err(|e| Error::Restore(format!("{}: {e}", o.key)))?;
        if h.timestamp_ms <= ts {
            best = best.max(Some(o.max_txid));
        }
    }
    best.ok_or_else(|| {
        Error::Restore(format!(
            "the replica has nothing at or before timestamp {ts} ms"
        ))
    })
}

fn apply(req: &RestoreRequest, chain: &[LtxObject], tmp: &Path) -> Result<Restored, Error> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(tmp)
        .map_err(|e| Error::Io(format!("creating {}: {e}", tmp.display())))?;
    let mut table: Vec<u64> = Vec::new();
    let mut raw = 0u64;
    let mut page_size = 0u32;
    let mut commit = 0u32;
    let mut downloaded = 0u64;
    let mut pages_written = 0u32;
    let mut buf = Vec::new();
    let mut expected_post: Option<u64> = None;
    for obj in chain {
        let body = req.store.get(&obj.key)?;
        downloaded += body.len() as u64;
        let corrupt = |e: ltx::LtxError| Error::Restore(format!("{}: {e}", obj.key));
        let mut dec = Decoder::new(&body[..]).map_err(corrupt)?;
        let h = *dec.header();
        if (h.min_txid, h.max_txid) != (obj.min_txid, obj.max_txid) {
            return Err(Error::Restore(format!(
                "{}: its header says txids {}-{}, its name says otherwise",
                obj.key, h.min_txid, h.max_txid
            )));
        }
        if page_size != 0 && h.page_size != page_size {
            return Err(Error::Restore(format!(
                "{}: page size {} differs from {page_size}",
                obj.key, h.page_size
            )));
        }
        let checksums = h.flags & ltx::FLAG_NO_CHECKSUM == 0;
        if obj.min_txid != 1 && checksums {
            if let Some(prev) = expected_post {
                if h.pre_apply_checksum != prev {
                    return Err(Error::Restore(format!(
                        "{}: pre-apply checksum {:016x} does not match the state before it ({prev:016x}): the file belongs to another database or a gap",
                        obj.key, h.pre_apply_checksum
                    )));
                }
            }
        }
        page_size = h.page_size;
        // Pages inside the new size that no file writes are zero pages, as the uploader
        // counts them (a snapshot writes every page anyway).
        let zero = vec![0u8; page_size as usize];
        let lock = ltx::lock_pgno(page_size);
        while table.len() < h.commit as usize {
            let pgno = table.len() as u32 + 1;
            let sum = if pgno == lock {
                0
            } else {
                ltx::page_checksum(pgno, &zero)
            };
            raw ^= sum;
            table.push(sum);
        }
        while let Some(pgno) = dec.next_page(&mut buf).map_err(corrupt)? {
            if pgno == 0 || pgno > h.commit {
                return Err(Error::Restore(format!(
                    "{}: page {pgno} is outside the database size {}",
                    obj.key, h.commit
                )));
            }
            out.seek(SeekFrom::Start((pgno as u64 - 1) * page_size as u64))?;
            out.write_all(&buf)?;
            let sum = ltx::page_checksum(pgno, &buf);
            raw ^= table[pgno as usize - 1] ^ sum;
            table[pgno as usize - 1] = sum;
            pages_written += 1;
        }
        let trailer = dec.finish().map_err(corrupt)?;
        if h.commit < commit {
            // A shrink: pages past the end must not come back if a later file grows it again.
            out.set_len(h.commit as u64 * page_size as u64)?;
        }
        commit = h.commit;
        // Pages beyond the new size are gone.
        if table.len() > commit as usize {
            for s in table.drain(commit as usize..) {
                raw ^= s;
            }
        }
        if checksums {
            let ours = ltx::DbChecksum(raw).value();
            if ours != trailer.post_apply_checksum {
                return Err(Error::Restore(format!(
                    "{}: database checksum after applying it is {ours:016x}, the file says {:016x}",
                    obj.key, trailer.post_apply_checksum
                )));
            }
            expected_post = Some(trailer.post_apply_checksum);
        } else {
            expected_post = None;
        }
    }
    out.set_len(commit as u64 * page_size as u64)?;
    out.sync_all()?;
    Ok(Restored {
        txid: chain.last().map(|o| o.max_txid).unwrap_or(0),
        files: chain.len(),
        pages: pages_written,
        bytes_downloaded: downloaded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(level: u8, min: u64, max: u64) -> LtxObject {
        LtxObject {
            key: keys::s3_key("db", level, min, max),
            level,
            min_txid: min,
            max_txid: max,
            size: 1,
        }
    }

    /// (level, max txid) of each planned file.
    fn planned(objs: &[LtxObject], target: Option<u64>) -> Vec<(u8, u64)> {
        plan(objs, target)
            .unwrap()
            .iter()
            .map(|o| (o.level, o.max_txid))
            .collect()
    }

    #[test]
    fn plans_latest_snapshot_then_contiguous_chain() {
        let objs = vec![
            obj(9, 1, 1),
            obj(0, 2, 2),
            obj(0, 3, 3),
            obj(9, 1, 3),
            obj(0, 4, 4),
            obj(0, 5, 5),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 3), (0, 4), (0, 5)]);
        assert_eq!(planned(&objs, Some(2)), vec![(9, 1), (0, 2)]);
    }

    #[test]
    fn prefers_compacted_files_and_stops_at_the_target() {
        let objs = vec![
            obj(9, 1, 1),
            obj(0, 2, 2),
            obj(1, 2, 4),
            obj(0, 3, 3),
            obj(0, 4, 4),
            obj(0, 5, 5),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 1), (1, 4), (0, 5)]);
        assert_eq!(planned(&objs, Some(3)), vec![(9, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn any_file_from_txid_1_is_a_snapshot_as_litestream_writes_them() {
        let objs = vec![
            obj(0, 1, 1),
            obj(0, 2, 2),
            obj(1, 1, 2),
            obj(0, 3, 3),
            obj(9, 1, 3),
            obj(0, 4, 4),
        ];
        let plan_of = |t| -> Vec<(u8, u64, u64)> {
            plan(&objs, t)
                .unwrap()
                .iter()
                .map(|o| (o.level, o.min_txid, o.max_txid))
                .collect()
        };
        assert_eq!(plan_of(Some(1)), vec![(0, 1, 1)]);
        assert_eq!(plan_of(Some(2)), vec![(1, 1, 2)]);
        assert_eq!(plan_of(None), vec![(9, 1, 3), (0, 4, 4)]);
    }

    #[test]
    fn continues_through_compacted_files_that_straddle_a_snapshot() {
        // Snapshot 1-5 was taken inside the range of level-1 file 4-7.
        let objs = vec![
            obj(9, 1, 1),
            obj(1, 2, 3),
            obj(1, 4, 7),
            obj(9, 1, 5),
            obj(0, 8, 8),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 5), (1, 7), (0, 8)]);
        assert_eq!(planned(&objs, Some(5)), vec![(9, 5)]);
        let err = plan(&objs, Some(6)).unwrap_err().to_string();
        assert!(
            err.contains("txid 6 is not a restore point") && err.contains("5 and 7"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_broken_chain_naming_the_gap() {
        let objs = vec![obj(9, 1, 1), obj(0, 2, 2), obj(0, 4, 4)];
        let err = plan(&objs, None).unwrap_err().to_string();
        assert!(err.contains("no file starts at txid 3"), "{err}");
        assert!(plan(&objs, Some(2)).is_ok());
    }

    #[test]
    fn refuses_without_snapshot_or_past_the_end() {
        assert!(plan(&[], None)
            .unwrap_err()
            .to_string()
            .contains("no LTX files"));
        assert!(plan(&[obj(0, 2, 2)], None)
            .unwrap_err()
            .to_string()
            .contains("no snapshot"));
        assert!(plan(&[obj(9, 1, 1)], Some(7))
            .unwrap_err()
            .to_string()
            .contains("past the end"));
    }
}
