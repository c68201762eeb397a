//! Restoring a Litestream 0.3 replica (`crate::ls03` plans it): the snapshot's LZ4 frame
//! decoded into the temporary file, then each WAL index's segments decoded, in offset
//! order, into a temporary WAL file beside it, whose checksum chain and salts are verified
//! as SQLite's recovery does; the pages of its committed frames are written into the
//! database and the file cut to the last commit's size, as a checkpoint would. A segment
//! whose offset does not continue the bytes before it is missing and refused, naming it; a
//! chain that breaks before the end of an index's bytes is refused naming the segment, but
//! in the last index, where Litestream 0.3 (through SQLite) stops at the last valid commit,
//! the restore stops there too and says so in the log. Segments no larger than a chunk are
//! fetched `parallelism` at a time; larger objects (and the snapshot) are streamed in
//! ranged GETs of a chunk; none is read past its listed size, so memory stays at
//! `parallelism` chunks. The integrity check and publication are `run`'s.

use super::temp;
use super::types::{RestoreProgress, RestoreRequest, Restored, Target, Tuning};
use crate::error::{Error, RestoreFailure};
use crate::ls03::{self, FrameReader, Kind, Ls03Object, Ls03Plan};
use crate::store::{ObjectStore, StoreError};
use crate::wal::{self, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// The Litestream 0.3 objects under `prefix` (none when it holds no 0.3 replica).
pub fn list_ls03(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<Ls03Object>, Error> {
    let listing = store.list(&ls03::generations_prefix(prefix))?;
    Ok(ls03::parse_listing(
        prefix,
        listing
            .iter()
            .map(|o| (o.key.as_str(), o.size, o.modified_ms)),
    ))
}

/// The plan for `target` from the 0.3 objects listed.
pub(super) fn plan_for(
    prefix: &str,
    objects: &[Ls03Object],
    target: Target,
) -> Result<Ls03Plan, Error> {
    let at = match target {
        Target::Latest => None,
        Target::Timestamp(ms) => Some(ms),
        Target::Txid(_) => {
            return Err(Error::InvalidArgument(
                "replica_restore: a Litestream 0.3 replica has no txids; restore it to the latest position or to a timestamp".into(),
            ))
        }
    };
    ls03::plan(prefix, objects, at).map_err(|e| {
        let kind = match e {
            // A WAL segment the chain needs is not there: the replica is damaged.
            ls03::PlanError::Missing(_) => RestoreFailure::Corrupt,
            ls03::PlanError::NoGeneration(_) | ls03::PlanError::NoSnapshot(_) => {
                RestoreFailure::NothingToRestore
            }
        };
        Error::Restore(kind, e.to_string())
    })
}

/// Reads a listed object in ranged GETs of at most `chunk` bytes, never past its listed
/// size; an object shorter than listed is an error.
struct ObjectReader<'a> {
    store: &'a dyn ObjectStore,
    object: &'a Ls03Object,
    chunk: u64,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
    downloaded: &'a mut u64,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next >= self.object.size {
                return Ok(0);
            }
            let len = self.chunk.min(self.object.size - self.next);
            let (key, at) = (&self.object.key, self.next);
            let body = in_rounds(key, len, &|| self.store.get_range(key, at, len))
                .map_err(io::Error::other)?;
            self.next += len;
            *self.downloaded += len;
            self.buf = body;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decodes `object` into `file` from `offset`, streaming it in ranged GETs; returns the
/// bytes written.
fn decode_into(
    store: &dyn ObjectStore,
    object: &Ls03Object,
    file: &File,
    offset: u64,
    (chunk, downloaded): (u64, &mut u64),
) -> Result<u64, Error> {
    let reader = ObjectReader {
        store,
        object,
        chunk: chunk.max(4096),
        next: 0,
        buf: Vec::new(),
        pos: 0,
        downloaded,
    };
    decode_from(reader, &object.key, file, offset)
}

/// Decodes the LZ4 frame `compressed` (the object `key`) into `file` from `offset`;
/// returns the bytes written.
fn decode_from(compressed: impl Read, key: &str, file: &File, offset: u64) -> Result<u64, Error> {
    let mut frames = FrameReader::new(compressed);
    let mut buf = vec![0u8; 256 << 10];
    let mut at = offset;
    loop {
        let n = match frames.read(&mut buf) {
            Ok(0) => return Ok(at - offset),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The reader's own error is a download that kept failing (`ObjectReader`
                // wraps it); any other is the frame decoder's: damaged content.
                let kind = match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
                    Some(_) => RestoreFailure::Unreadable,
                    None => RestoreFailure::Corrupt,
                };
                return Err(Error::Restore(kind, format!("{key}: {e}")));
            }
        };
        file.write_all_at(&buf[..n], at)
            .map_err(|e| Error::Io(format!("writing what {key} holds: {e}")))?;
        at += n as u64;
    }
}

/// The next segments' bodies, fetched at once: the leading run of `segments` no larger
/// than a chunk, up to `parallelism` of them (Litestream 0.3 writes a segment a second
/// under steady writes, so a restore is thousands of small GETs). `None` for a first
/// segment larger than a chunk, which is streamed instead.
fn prefetch(
    store: &dyn ObjectStore,
    segments: &[Ls03Object],
    (chunk, parallelism): (u64, usize),
) -> Result<VecDeque<Option<Vec<u8>>>, Error> {
    let batch: Vec<&Ls03Object> = segments
        .iter()
        .take(parallelism.max(1))
        .take_while(|s| s.size <= chunk)
        .collect();
    if batch.is_empty() {
        return Ok(VecDeque::from([None]));
    }
    let fetched: Vec<Result<Vec<u8>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .iter()
            .map(|s| scope.spawn(move || fetch_whole(store, s)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Restore(
                        RestoreFailure::Local,
                        "a download thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    fetched.into_iter().map(|r| r.map(Some)).collect()
}

/// A whole listed object, which must be exactly its listed size.
fn fetch_whole(store: &dyn ObjectStore, s: &Ls03Object) -> Result<Vec<u8>, Error> {
    in_rounds(&s.key, s.size, &|| store.get_bounded(&s.key, s.size))
}

/// Extra rounds of a GET (each with the store's own retries) after a transient failure or
/// a body shorter than asked for, as the LTX restore's pieces get.
const ROUNDS: u32 = 4;

/// Runs `get` of `len` bytes of `key` until it returns them all, at most `ROUNDS` more
/// times after transient failures and short bodies.
fn in_rounds(
    key: &str,
    len: u64,
    get: &dyn Fn() -> Result<Vec<u8>, StoreError>,
) -> Result<Vec<u8>, Error> {
    let mut last = Error::Restore(RestoreFailure::Unreadable, format!("{key}: not read"));
    for _ in 0..=ROUNDS {
        match get() {
            Ok(body) if body.len() as u64 == len => return Ok(body),
            Ok(body) => {
                last = Error::Store(StoreError::Permanent(format!(
                    "{key}: {} bytes, {len} expected from its listed size",
                    body.len()
                )))
            }
            Err(e) if e.is_transient() => last = Error::Store(e),
            Err(e) => return Err(Error::Store(e)),
        }
    }
    Err(last)
}

/// The snapshot's page size, from its database header (checked as SQLite would).
fn snapshot_page_size(file: &File, len: u64, key: &str) -> Result<u32, Error> {
    let mut head = [0u8; 100];
    let bad = |why: &str| {
        Error::Restore(
            RestoreFailure::Corrupt,
            format!("{key}: not a SQLite database snapshot ({why})"),
        )
    };
    if len < 100 || file.read_exact_at(&mut head, 0).is_err() {
        return Err(bad("shorter than a database header"));
    }
    let header = wal::DbHeader::parse(&head).ok_or_else(|| bad("bad database header"))?;
    let ps = header.page_size;
    if &head[..16] != b"SQLite format 3\0" || !wal::is_valid_page_size(ps) {
        return Err(bad("bad database header"));
    }
    if !len.is_multiple_of(u64::from(ps)) {
        return Err(bad("its length is not a whole number of pages"));
    }
    Ok(ps)
}

/// Applies the WAL in `wal_file` (`len` bytes, decoded from `segments`) to `db`, as a
/// checkpoint would; `last` says whether this is the plan's last index, the only one
/// whose chain may end early.
fn apply_wal(
    db: &File,
    wal_file: &File,
    len: u64,
    page_size: u32,
    (segments, last): (&[(u64, &Ls03Object)], bool),
) -> Result<(), Error> {
    let first = segments.first().map(|(_, o)| o.key.as_str()).unwrap_or("?");
    // Everything wrong with the index itself is damage in the replica.
    let corrupt = |m: String| Error::Restore(RestoreFailure::Corrupt, m);
    let holding = |offset: u64| {
        segments
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map(|(_, o)| o.key.clone())
            .unwrap_or_else(|| first.to_string())
    };
    let mut read_at = |off: u64, buf: &mut [u8]| wal_file.read_at(buf, off);
    let map = wal::map_committed_pages(&mut read_at)
        .map_err(|e| corrupt(format!("{first}: the WAL header is not valid: {e}")))?;
    let Some(header) = map.header else {
        return Err(corrupt(format!("{first}: shorter than a WAL header")));
    };
    if header.page_size != page_size {
        return Err(corrupt(format!(
            "{first}: WAL pages of {} bytes for a database of {page_size}-byte pages",
            header.page_size
        )));
    }
    let frame_size = FRAME_HEADER_SIZE as u64 + u64::from(page_size);
    let end = map
        .last_commit
        .map(|p| wal::frame_offset(page_size, p.frame) + frame_size)
        .unwrap_or(WAL_HEADER_SIZE as u64);
    if end < len {
        let frame = (end - WAL_HEADER_SIZE as u64) / frame_size + 1;
        let msg = format!(
            "{}: the WAL checksum chain ends at frame {frame} (offset {end} of the index's {len} bytes)",
            holding(end)
        );
        if !last {
            return Err(corrupt(format!(
                "{msg}; later WAL indexes cannot be applied over it"
            )));
        }
        crate::base::log::notice(&format!(
            "{msg}; restored up to the last commit before it, as Litestream 0.3 does"
        ));
    }
    let io_err = |e: io::Error| Error::Io(format!("applying {first}: {e}"));
    // A commit may grow the database only by pages the WAL carries (each new page is
    // written to it): bucket content must not size a file.
    let pages_now = db.metadata().map_err(io_err)?.len() / u64::from(page_size);
    let highest = map.latest_frame.keys().next_back().copied().unwrap_or(0);
    if u64::from(map.commit_size) > pages_now.max(u64::from(highest)) {
        return Err(corrupt(format!(
            "{}: its last commit makes the database {} pages, but the database has {pages_now} and the WAL carries pages up to {highest}; refused",
            holding(end.saturating_sub(frame_size)),
            map.commit_size
        )));
    }
    let mut page = vec![0u8; page_size as usize];
    for (&pgno, &frame) in &map.latest_frame {
        let at = wal::frame_offset(page_size, frame) + FRAME_HEADER_SIZE as u64;
        wal_file.read_exact_at(&mut page, at).map_err(io_err)?;
        db.write_all_at(&page, u64::from(pgno - 1) * u64::from(page_size))
            .map_err(io_err)?;
    }
    if map.commit_size > 0 {
        db.set_len(u64::from(map.commit_size) * u64::from(page_size))
            .map_err(io_err)?;
    }
    Ok(())
}

/// Removes a temporary file when dropped.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One WAL index decoded into a temporary file (removed when this is dropped).
struct DecodedWal<'p> {
    _removed: Removed,
    file: File,
    len: u64,
    /// Where each segment starts in it.
    starts: Vec<(u64, &'p Ls03Object)>,
}

/// Decodes the segments of WAL index `index`, in order, into a new temporary file beside
/// `output`.
fn decode_index<'p>(
    req: &RestoreRequest,
    generation: &str,
    (index, segments): (u32, &'p [Ls03Object]),
    (tuning, downloaded): (&Tuning, &mut u64),
) -> Result<DecodedWal<'p>, Error> {
    let (path, file) = temp::create_beside(req.output, "wal", 0o600)?;
    let guard = Removed(path);
    let mut len = 0u64;
    let mut starts = Vec::new();
    let mut fetched = VecDeque::new();
    for (i, s) in segments.iter().enumerate() {
        if fetched.is_empty() {
            let how = (tuning.chunk_bytes, tuning.parallelism);
            fetched = prefetch(req.store, &segments[i..], how)?;
        }
        let body = fetched.pop_front().flatten();
        let Kind::Wal { offset, .. } = s.kind else {
            continue;
        };
        if u64::from(offset) != len {
            let missing = ls03::key_of(
                req.prefix,
                generation,
                Kind::Wal {
                    index,
                    offset: u32::try_from(len).unwrap_or(u32::MAX),
                },
            );
            return Err(Error::Restore(RestoreFailure::Corrupt, format!(
                "the Litestream 0.3 replica is missing {missing}: WAL index {index:08x} holds {len} bytes before {}, which starts at offset {offset}",
                s.key
            )));
        }
        starts.push((len, s));
        len += match body {
            Some(body) => {
                *downloaded += body.len() as u64;
                decode_from(&body[..], &s.key, &file, len)?
            }
            None => decode_into(
                req.store,
                s,
                &file,
                len,
                (tuning.chunk_bytes, &mut *downloaded),
            )?,
        };
    }
    Ok(DecodedWal {
        _removed: guard,
        file,
        len,
        starts,
    })
}

/// Writes the database `plan` restores into `file` (a new, empty temporary file beside
/// `req.output`).
pub(super) fn apply_plan(
    req: &RestoreRequest,
    plan: &Ls03Plan,
    file: &File,
    tuning: &Tuning,
) -> Result<Restored, Error> {
    let mut progress = RestoreProgress {
        files_total: plan.objects().count() as u64,
        bytes_total: plan.objects().map(|o| o.size).sum(),
        ..Default::default()
    };
    let mut downloaded = 0u64;
    let chunk = tuning.chunk_bytes;
    let snap = &plan.snapshot;
    let len = decode_into(req.store, snap, file, 0, (chunk, &mut downloaded))?;
    let page_size = snapshot_page_size(file, len, &snap.key)?;
    progress.files_done = 1;
    progress.bytes_done = downloaded;
    (tuning.progress)(&progress);
    for (n, (index, segments)) in plan.wal.iter().enumerate() {
        let wal = decode_index(
            req,
            &plan.generation,
            (*index, segments),
            (tuning, &mut downloaded),
        )?;
        let last = n + 1 == plan.wal.len();
        apply_wal(file, &wal.file, wal.len, page_size, (&wal.starts, last))?;
        progress.files_done += segments.len() as u64;
        progress.bytes_done = downloaded;
        (tuning.progress)(&progress);
    }
    file.sync_all()
        .map_err(|e| Error::Io(format!("syncing the restored database: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::Io(format!("sizing the restored database: {e}")))?
        .len();
    Ok(Restored {
        txid: u64::from(plan.index()),
        files: plan.objects().count(),
        pages: u32::try_from(size / u64::from(page_size)).unwrap_or(u32::MAX),
        bytes_downloaded: downloaded,
        db_checksum: None,
        base: Default::default(),
        touched: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::wal::{FrameChain, WalHeader};

    const PS: u32 = 512;
    const GEN: &str = "0123456789abcdef";

    /// Page `n` of the test database, `fill`ed; page 1 carries a database header.
    fn page(n: u32, fill: u8, pages: u32) -> Vec<u8> {
        let mut p = vec![fill; PS as usize];
        if n == 1 {
            p[..16].copy_from_slice(b"SQLite format 3\0");
            p[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
            p[28..32].copy_from_slice(&pages.to_be_bytes());
        }
        p
    }

    /// A WAL of `txns`, each a list of (pgno, fill) whose last frame commits `size` pages.
    fn wal_bytes(salt1: u32, txns: &[(&[(u32, u8)], u32)]) -> Vec<u8> {
        let h = WalHeader::new(false, PS, 0, salt1, 77);
        let mut chain = FrameChain::new(&h);
        let mut out = h.to_bytes().to_vec();
        for (frames, size) in txns {
            for (i, &(pgno, fill)) in frames.iter().enumerate() {
                let commit = if i + 1 == frames.len() { *size } else { 0 };
                let p = page(pgno, fill, *size);
                out.extend_from_slice(&chain.seal(pgno, commit, &p).unwrap().to_bytes());
                out.extend_from_slice(&p);
            }
        }
        out
    }

    fn put(store: &MemoryStore, kind: Kind, raw: &[u8]) {
        store
            .put(&ls03::key_of("db", GEN, kind), &ls03::encode_frame(raw))
            .unwrap();
    }

    fn wal_key(index: u32, offset: u32) -> String {
        ls03::key_of("db", GEN, Kind::Wal { index, offset })
    }

    /// A snapshot of 2 pages at index 0, WAL index 0 in two segments (3 transactions),
    /// WAL index 1 in one (the database shrinks to 3 pages); the final pages.
    fn replica() -> (MemoryStore, Vec<u8>) {
        let store = MemoryStore::new();
        let snapshot = [page(1, 0, 2), page(2, 1, 2)].concat();
        put(&store, Kind::Snapshot { index: 0 }, &snapshot);
        let w0 = wal_bytes(
            5,
            &[
                (&[(2, 2), (3, 3)], 3),
                (&[(1, 4)], 3),
                (&[(4, 5), (2, 6)], 4),
            ],
        );
        let cut = WAL_HEADER_SIZE + 2 * (FRAME_HEADER_SIZE + PS as usize);
        put(
            &store,
            Kind::Wal {
                index: 0,
                offset: 0,
            },
            &w0[..cut],
        );
        put(
            &store,
            Kind::Wal {
                index: 0,
                offset: cut as u32,
            },
            &w0[cut..],
        );
        let w1 = wal_bytes(6, &[(&[(3, 7), (1, 8)], 3)]);
        put(
            &store,
            Kind::Wal {
                index: 1,
                offset: 0,
            },
            &w1,
        );
        let want = [page(1, 8, 3), page(2, 6, 4), page(3, 7, 3)].concat();
        (store, want)
    }

    fn restore_into(store: &dyn ObjectStore) -> Result<(Vec<u8>, Restored), Error> {
        restore_chunked(store, 100)
    }

    /// `restore_into` with objects up to `chunk` bytes fetched whole, 2 at a time.
    fn restore_chunked(store: &dyn ObjectStore, chunk: u64) -> Result<(Vec<u8>, Restored), Error> {
        let dir = std::env::temp_dir().join(format!(
            "replica-legacy-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.db");
        let req = RestoreRequest {
            store,
            prefix: "db",
            output: &out,
            target: Target::Latest,
            overwrite: false,
            check: &|_| Ok(()),
        };
        let objects = list_ls03(store, "db")?;
        let plan = plan_for("db", &objects, Target::Latest)?;
        let (tmp, file) = temp::create_beside(&out, "restoring", 0o600)?;
        let tuning = Tuning {
            chunk_bytes: chunk,
            parallelism: 2,
            ..Default::default()
        };
        let result =
            apply_plan(&req, &plan, &file, &tuning).map(|r| (std::fs::read(&tmp).unwrap(), r));
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the restored file is left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn applies_the_snapshot_then_each_index_as_a_checkpoint_would() {
        let (store, want) = replica();
        // Streamed in ranged GETs of 100 bytes, and fetched whole two at a time.
        for chunk in [100, 1 << 20] {
            let (got, restored) = restore_chunked(&store, chunk).unwrap();
            assert_eq!(got, want);
            assert_eq!((restored.txid, restored.files, restored.pages), (1, 4, 3));
            let sizes: u64 = store.list("").unwrap().iter().map(|o| o.size).sum();
            assert_eq!(restored.bytes_downloaded, sizes, "{chunk}");
        }
    }

    #[test]
    fn a_missing_segment_is_refused_naming_it() {
        let (store, _) = replica();
        let cut = WAL_HEADER_SIZE + 2 * (FRAME_HEADER_SIZE + PS as usize);
        store.delete(&wal_key(0, cut as u32)).unwrap();
        // The index continues with a segment at a later offset.
        let later = (cut + FRAME_HEADER_SIZE + PS as usize) as u32;
        put(
            &store,
            Kind::Wal {
                index: 0,
                offset: later,
            },
            &[0u8; 10],
        );
        let e = restore_into(&store).unwrap_err().to_string();
        assert!(
            e.contains(&format!("missing {}", wal_key(0, cut as u32))),
            "{e}"
        );
        // A missing index, caught by the plan.
        let (store, _) = replica();
        store.delete(&wal_key(0, 0)).unwrap();
        let e = restore_into(&store).unwrap_err().to_string();
        assert!(e.contains(&wal_key(0, 0)), "{e}");
    }

    #[test]
    fn a_broken_wal_checksum_is_refused_before_the_last_index_and_stops_in_it() {
        let flip = |store: &MemoryStore, key: &str, at: usize| {
            let body = store.get(key).unwrap();
            let mut raw = Vec::new();
            FrameReader::new(&body[..]).read_to_end(&mut raw).unwrap();
            raw[at] ^= 1;
            store.put(key, &ls03::encode_frame(&raw)).unwrap();
        };
        // In the second segment of index 0: refused, naming that segment.
        let (store, _) = replica();
        let cut = WAL_HEADER_SIZE + 2 * (FRAME_HEADER_SIZE + PS as usize);
        flip(&store, &wal_key(0, cut as u32), 100);
        let e = restore_into(&store).unwrap_err().to_string();
        assert!(
            e.contains(&wal_key(0, cut as u32)) && e.contains("checksum chain ends at frame 3"),
            "{e}"
        );
        // In the last index's second frame: stops after its last valid commit (none: the
        // database stays as index 0 left it).
        let (store, _) = replica();
        flip(
            &store,
            &wal_key(1, 0),
            WAL_HEADER_SIZE + FRAME_HEADER_SIZE + PS as usize + 200,
        );
        let (got, _) = restore_into(&store).unwrap();
        assert_eq!(
            got,
            [page(1, 4, 3), page(2, 6, 4), page(3, 3, 3), page(4, 5, 4)].concat()
        );
        // A truncated LZ4 frame is refused, naming the object.
        let (store, _) = replica();
        let key = wal_key(1, 0);
        let b = store.get(&key).unwrap();
        store.put(&key, &b[..b.len() - 6]).unwrap();
        let e = restore_into(&store).unwrap_err().to_string();
        assert!(e.contains(&key) && e.contains("truncated LZ4 frame"), "{e}");
    }

    #[test]
    fn a_commit_may_grow_the_database_only_by_pages_the_wal_carries() {
        let (store, _) = replica();
        put(
            &store,
            Kind::Wal {
                index: 1,
                offset: 0,
            },
            &wal_bytes(6, &[(&[(1, 8)], 1 << 30)]),
        );
        let e = restore_into(&store).unwrap_err().to_string();
        assert!(
            e.contains(&wal_key(1, 0)) && e.contains("1073741824 pages"),
            "{e}"
        );
    }

    /// Fails every other GET, alternately with a transient error and a cut body.
    struct Flaky(MemoryStore, std::sync::atomic::AtomicUsize);

    impl Flaky {
        fn body(&self, r: Result<Vec<u8>, StoreError>) -> Result<Vec<u8>, StoreError> {
            match self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 4 {
                0 => Err(StoreError::Transient("injected".into())),
                2 => r.map(|b| b[..b.len() / 2].to_vec()),
                _ => r,
            }
        }
    }

    impl ObjectStore for Flaky {
        fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
            self.0.put(key, body)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.body(self.0.get(key))
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
            self.body(self.0.get_range(key, offset, len))
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>, StoreError> {
            self.0.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key)
        }
        fn request_counts(&self) -> crate::store::RequestCounts {
            self.0.request_counts()
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn transient_failures_and_cut_bodies_get_more_rounds() {
        let (store, want) = replica();
        let flaky = Flaky(store, Default::default());
        for chunk in [100, 1 << 20] {
            let (got, _) = restore_chunked(&flaky, chunk).unwrap();
            assert_eq!(got, want, "{chunk}");
        }
    }

    #[test]
    fn a_txid_target_is_refused_for_a_03_replica() {
        let (store, _) = replica();
        let objects = list_ls03(&store, "db").unwrap();
        let e = plan_for("db", &objects, Target::Txid(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no txids"), "{e}");
    }
}
