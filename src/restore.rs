//! Restore: plan from a LIST (the latest snapshot at or before the target, then the shortest
//! contiguous chain of files after it, across levels), download in parallel (a bounded
//! window of whole or ranged GETs), stream each file through the LTX decoder straight into a
//! temporary file, verify every file checksum, the database checksum chain where files carry
//! one and SQLite's page-1 header against each file's commit size, check integrity (on
//! failure, bisect the chain to name the first file after which it fails), then rename into
//! place (or hard-link, never replacing, for boot-time restores). Planning is pure; applying
//! takes the store and a checker. It must
//! never leave an unverified file at the target path (nor any file when it fails), never
//! overwrite a file unless asked, and never hold more than the download window in memory.

use crate::error::Error;
use crate::ltx::{self, Decoder};
use crate::store::{keys, ObjectInfo, ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Litestream's restore parallelism (`-parallelism`, default 8).
pub const DEFAULT_PARALLELISM: usize = 8;
/// Extra rounds of a piece's GET (each with the store's own retries) on transient failures.
const PIECE_ROUNDS: u32 = 4;
/// Objects above this size are fetched as ranged GETs of this size, several at once.
pub const DEFAULT_CHUNK_BYTES: u64 = 4 << 20;

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
    /// When the store says the object was written (S3 LastModified, file mtime), in ms.
    pub modified_ms: u64,
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
                modified_ms: o.modified_ms,
            })
        })
        .collect();
    out.sort_by_key(|o| (o.max_txid, o.level, o.min_txid));
    out
}

/// Chooses the files to apply for a target txid (`None` = latest): the newest snapshot at
/// or before it, then the chain with the fewest files (fewest bytes among those) from it to
/// the newest state at or before the target. A file starting at txid 1 is a snapshot
/// whatever its level: Litestream's first level-0 file and its compactions from txid 1 are.
/// A file may continue a state from before its first txid (a compacted file spanning a
/// snapshot, as Litestream's can): every page it holds is that page's latest version up to
/// its end, so applying all of it is right. A target txid no chain ends at exactly
/// (compaction merged it into a larger file) is an error naming the nearest restore points.
pub fn plan(objects: &[LtxObject], target: Option<u64>) -> Result<Vec<LtxObject>, Error> {
    let limit = target.unwrap_or(u64::MAX);
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
    if let Some(t) = target {
        if objects.iter().all(|o| o.max_txid < t) {
            let latest = objects.iter().map(|o| o.max_txid).max().unwrap_or(0);
            return Err(Error::Restore(format!(
                "txid {t} is past the end of the replica (latest txid {latest})"
            )));
        }
    }
    // States reached: txid → (files, bytes, the file that got there). Taking files in order
    // of their last txid settles every state a file can continue from before it is used.
    let start = snapshot.max_txid;
    let mut best: BTreeMap<u64, (usize, u64, Option<usize>)> = BTreeMap::new();
    best.insert(start, (0, 0, None));
    let mut order: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].max_txid > start && objects[i].max_txid <= limit)
        .collect();
    order.sort_by_key(|&i| (objects[i].max_txid, objects[i].min_txid));
    for i in order {
        let o = &objects[i];
        let from = o.min_txid.saturating_sub(1).max(start);
        let Some(&(files, bytes, _)) = best
            .range(from..o.max_txid)
            .map(|(_, v)| v)
            .min_by_key(|(files, bytes, _)| (*files, *bytes))
        else {
            continue;
        };
        let cand = (files + 1, bytes + o.size, Some(i));
        let slot = best.entry(o.max_txid).or_insert(cand);
        if (cand.0, cand.1) < (slot.0, slot.1) {
            *slot = cand;
        }
    }
    // The newest state wanted must be reached: anything else is a hole, and restoring the
    // older state silently would hand back a database the user did not ask for.
    let wanted = objects
        .iter()
        .filter(|o| o.max_txid <= limit)
        .map(|o| o.max_txid)
        .max()
        .unwrap_or(start);
    if !best.contains_key(&wanted) {
        let reached = *best.keys().next_back().expect("the start is reached");
        let after = objects
            .iter()
            .filter(|o| o.min_txid > reached + 1 && o.max_txid <= limit)
            .min_by_key(|o| o.min_txid)
            .map(|o| o.key.clone())
            .unwrap_or_default();
        return Err(Error::Restore(format!(
            "the replica's chain is broken: no file starts at txid {0} (no {0:016x}-*.ltx at any level; the next file is {after}); refusing to restore an older state",
            reached + 1,
        )));
    }
    if let Some(t) = target {
        if wanted < t {
            // Compaction merged the files that ended at it: never restore another state.
            let after = objects
                .iter()
                .filter(|o| o.max_txid > t)
                .map(|o| o.max_txid)
                .min()
                .unwrap_or(t);
            return Err(Error::Restore(format!(
                "txid {t} is not a restore point of the replica (its files were compacted); the nearest are txids {wanted} and {after}"
            )));
        }
    }
    let mut chain = Vec::new();
    let mut at = wanted;
    while let Some(&(_, _, Some(i))) = best.get(&at) {
        chain.push(objects[i].clone());
        // The state this file continued from: the best reached state it could follow.
        let o = &objects[i];
        let from = o.min_txid.saturating_sub(1).max(start);
        at = best
            .range(from..o.max_txid)
            .min_by_key(|(_, (files, bytes, _))| (*files, *bytes))
            .map(|(k, _)| *k)
            .expect("a file is only taken after a state it continues");
    }
    chain.push(snapshot.clone());
    chain.reverse();
    Ok(chain)
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub txid: u64,
    pub files: usize,
    pub pages: u32,
    pub bytes_downloaded: u64,
    /// The restored database's LTX checksum (page checksums XORed, flag bit set), when it
    /// was computed: asked for, or needed to check a file that carries checksums.
    pub db_checksum: Option<u64>,
}

/// How far a running restore is; reported after every downloaded piece.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
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

/// Knobs beyond what a restore must be told.
pub struct Tuning<'a> {
    /// Objects (or ranges of one) downloaded at once; also the window held in memory.
    pub parallelism: usize,
    pub chunk_bytes: u64,
    /// Compute the database checksum of the result even when no file carries one.
    pub want_checksum: bool,
    /// Publish without ever replacing a file that appeared at the target meanwhile (an
    /// error then), leaving any `-wal` beside it alone.
    pub exclusive: bool,
    pub progress: &'a dyn Fn(&RestoreProgress),
}

impl Default for Tuning<'_> {
    fn default() -> Self {
        Tuning {
            parallelism: DEFAULT_PARALLELISM,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            want_checksum: false,
            exclusive: false,
            progress: &|_| {},
        }
    }
}

pub fn restore(req: &RestoreRequest) -> Result<Restored, Error> {
    restore_with(req, &Tuning::default())
}

/// Lists the replica's LTX objects.
pub fn list_objects(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<LtxObject>, Error> {
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok(parse_listing(&store.list(&list_prefix)?))
}

pub fn restore_with(req: &RestoreRequest, tuning: &Tuning) -> Result<Restored, Error> {
    if req.output.exists() && !req.overwrite {
        return Err(Error::InvalidArgument(format!(
            "replica_restore: {} already exists; pass 'overwrite' as the fourth argument to replace it",
            req.output.display()
        )));
    }
    let objects = list_objects(req.store, req.prefix)?;
    let target_txid = match req.target {
        Target::Latest => None,
        Target::Txid(t) => Some(t),
        Target::Timestamp(ts) => Some(txid_at_time(req.store, &objects, ts, tuning.parallelism)?),
    };
    let chain = plan(&objects, target_txid)?;
    let tmp = temp_path(req.output);
    let result = apply(req.store, &chain, &tmp, tuning).and_then(|restored| {
        (req.check)(&tmp).map_err(|e| {
            Error::Restore(format!(
                "integrity check of the restored database failed: {e}{}",
                culprit(req.store, &chain, &tmp, req.check)
            ))
        })?;
        if tuning.exclusive {
            // Published only if nothing appeared at the target meanwhile (another process
            // restoring or creating it): a hard link fails rather than replace a file.
            let linked = std::fs::hard_link(&tmp, req.output);
            cleanup(&tmp);
            return match linked {
                Ok(()) => Ok(restored),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::InvalidArgument(format!(
                        "{} appeared while it was being restored; left as it is",
                        req.output.display()
                    )))
                }
                Err(e) => Err(Error::Io(format!(
                    "linking into {}: {e}",
                    req.output.display()
                ))),
            };
        }
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

/// After a failed integrity check: the first file whose application leaves a database
/// that fails it (found by bisecting the chain), so the message can name the object.
fn culprit(
    store: &dyn ObjectStore,
    chain: &[LtxObject],
    tmp: &Path,
    check: &dyn Fn(&Path) -> Result<(), String>,
) -> String {
    let probe = {
        let mut s = tmp.as_os_str().to_owned();
        s.push("-probe");
        PathBuf::from(s)
    };
    let quiet = Tuning::default();
    let fails = |n: usize| -> bool {
        let bad = match apply(store, &chain[..n], &probe, &quiet) {
            Ok(_) => check(&probe).is_err(),
            Err(_) => true,
        };
        cleanup(&probe);
        bad
    };
    // Invariant: the whole chain fails; find the shortest failing prefix.
    let (mut good, mut bad) = (0, chain.len());
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if fails(mid) {
            bad = mid;
        } else {
            good = mid;
        }
    }
    match chain.get(bad - 1) {
        Some(o) if bad > 1 => format!(
            "; it first fails after applying {} (a corrupt file, or one from another database)",
            o.key
        ),
        Some(o) => format!("; the snapshot {} already fails it", o.key),
        None => String::new(),
    }
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

/// Runs `f` over `items` on up to `parallelism` threads; results in input order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    parallelism: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallelism.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                crate::base::lock::lock(&results)[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

/// Every object's LTX header (a ranged GET of its first 100 bytes), fetched in parallel.
pub fn read_headers(
    store: &dyn ObjectStore,
    objects: &[LtxObject],
    parallelism: usize,
) -> Vec<Result<ltx::Header, Error>> {
    parallel_map(objects, parallelism, |o| {
        let head = store.get_range(&o.key, 0, ltx::HEADER_SIZE as u64)?;
        ltx::Header::decode(&head).map_err(|e| Error::Restore(format!("{}: {e}", o.key)))
    })
}

/// The newest txid whose file was written at or before `ts`, read from LTX headers.
fn txid_at_time(
    store: &dyn ObjectStore,
    objects: &[LtxObject],
    ts: u64,
    parallelism: usize,
) -> Result<u64, Error> {
    let mut best = None;
    for (o, h) in objects
        .iter()
        .zip(read_headers(store, objects, parallelism))
    {
        if h?.timestamp_ms <= ts {
            best = best.max(Some(o.max_txid));
        }
    }
    best.ok_or_else(|| {
        Error::Restore(format!(
            "the replica has nothing at or before timestamp {ts} ms"
        ))
    })
}

/// One GET of the download: a whole object, or a range of a large one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    object: usize,
    offset: u64,
    len: u64,
    whole: bool,
}

/// Splits each object into pieces of at most `chunk` bytes (an object that fits is one
/// whole GET, so a size the listing got wrong cannot cut it short).
fn pieces(chain: &[LtxObject], chunk: u64) -> Vec<Piece> {
    let chunk = chunk.max(ltx::HEADER_SIZE as u64);
    let mut out = Vec::new();
    for (object, o) in chain.iter().enumerate() {
        if o.size <= chunk {
            out.push(Piece {
                object,
                offset: 0,
                len: o.size,
                whole: true,
            });
            continue;
        }
        let mut offset = 0;
        while offset < o.size {
            let len = chunk.min(o.size - offset);
            out.push(Piece {
                object,
                offset,
                len,
                whole: false,
            });
            offset += len;
        }
    }
    out
}

struct FetchState {
    next: usize,
    consumed: usize,
    ready: BTreeMap<usize, Result<Vec<u8>, StoreError>>,
    stop: bool,
}

/// Downloads pieces in order on worker threads, never more than `window` ahead of the
/// consumer, so memory stays at `window × chunk` whatever the database size.
struct Fetcher<'a> {
    store: &'a dyn ObjectStore,
    chain: &'a [LtxObject],
    pieces: Vec<Piece>,
    window: usize,
    state: Mutex<FetchState>,
    changed: Condvar,
}

impl Fetcher<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        crate::base::lock::lock(&self.state)
    }

    fn work(&self) {
        loop {
            let i = {
                let mut s = self.lock();
                while !s.stop && s.next < self.pieces.len() && s.next >= s.consumed + self.window {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.stop || s.next >= self.pieces.len() {
                    return;
                }
                s.next += 1;
                s.next - 1
            };
            let p = self.pieces[i];
            let key = &self.chain[p.object].key;
            let body = self.fetch(p, key);
            self.lock().ready.insert(i, body);
            self.changed.notify_all();
        }
    }

    /// One piece, retried beyond the store's own retries while failures are transient or
    /// a body comes back short: with many GETs in flight, one request can meet several
    /// faults in a row, and a whole restore should not fail for it.
    fn fetch(&self, p: Piece, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut round = 0;
        loop {
            // A panicking store must not leave the consumer waiting for this piece forever.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if p.whole {
                    self.store.get(key)
                } else {
                    self.store.get_range(key, p.offset, p.len)
                }
            }))
            .unwrap_or_else(|_| Err(StoreError::Permanent(format!("GET {key} panicked"))));
            let retry = match &r {
                Err(e) => e.is_transient(),
                Ok(body) => body.len() as u64 != p.len,
            };
            round += 1;
            if !retry || round > PIECE_ROUNDS || self.lock().stop {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100 * round as u64));
        }
    }

    /// Piece `i`, waiting for it; the consumer takes pieces in order.
    fn take(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        let mut s = self.lock();
        loop {
            if let Some(r) = s.ready.remove(&i) {
                s.consumed = i + 1;
                self.changed.notify_all();
                return r;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }
}

/// The bytes of one object, read piece by piece from the fetcher.
struct ObjectReader<'f, 'a> {
    fetcher: &'f Fetcher<'a>,
    next_piece: usize,
    end_piece: usize,
    buf: Vec<u8>,
    pos: usize,
    /// A store error, kept whole so the caller reports it rather than an I/O wrapper.
    failed: Option<StoreError>,
    on_piece: &'f mut dyn FnMut(u64),
}

impl Read for ObjectReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next_piece == self.end_piece {
                return Ok(0);
            }
            let i = self.next_piece;
            self.next_piece += 1;
            match self.fetcher.take(i) {
                Ok(body) => {
                    (self.on_piece)(body.len() as u64);
                    self.buf = body;
                    self.pos = 0;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.failed = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Page checksums of the database being rebuilt, for files that carry a database checksum.
struct ChecksumTable {
    sums: Vec<u64>,
    raw: u64,
}

impl ChecksumTable {
    /// Reads back what has been written so far (a checksummed file after unchecksummed ones).
    fn from_file(out: &std::fs::File, page_size: u32, commit: u32) -> std::io::Result<Self> {
        let mut t = ChecksumTable {
            sums: Vec::new(),
            raw: 0,
        };
        let mut page = vec![0u8; page_size as usize];
        for pgno in 1..=commit {
            page.fill(0);
            let _ = out.read_at(&mut page, (pgno as u64 - 1) * page_size as u64)?;
            t.push(pgno, &page, page_size);
        }
        Ok(t)
    }

    fn push(&mut self, pgno: u32, page: &[u8], page_size: u32) {
        let sum = if pgno == ltx::lock_pgno(page_size) {
            0
        } else {
            ltx::page_checksum(pgno, page)
        };
        self.raw ^= sum;
        self.sums.push(sum);
    }

    /// Pages inside a grown size that no file writes are zero pages (as the uploader counts).
    fn grow(&mut self, commit: u32, page_size: u32) {
        let zero = vec![0u8; page_size as usize];
        while self.sums.len() < commit as usize {
            let pgno = self.sums.len() as u32 + 1;
            self.push(pgno, &zero, page_size);
        }
    }

    /// Page `pgno` now has checksum `sum` (the decoder's `page_checksum`).
    fn set(&mut self, pgno: u32, sum: u64) {
        self.raw ^= self.sums[pgno as usize - 1] ^ sum;
        self.sums[pgno as usize - 1] = sum;
    }

    fn truncate(&mut self, commit: u32) {
        for s in self.sums.drain((commit as usize).min(self.sums.len())..) {
            self.raw ^= s;
        }
    }

    fn value(&self) -> u64 {
        ltx::DbChecksum(self.raw).value()
    }
}

/// SQLite's own header on page 1 must agree with the file carrying it: the page size, and
/// the database size in pages whenever SQLite marks it valid (change counter equal to
/// version-valid-for). A page 1 from another database, or a file of another size, fails.
/// (SQLite writes both fields whenever it writes page 1, in WAL mode too.)
fn check_page1(key: &str, page: &[u8], h: &ltx::Header) -> Result<(), Error> {
    if page.len() < 100 || &page[..16] != b"SQLite format 3\0" {
        // Not a header at all: the integrity check after the restore refuses it.
        return Ok(());
    }
    let ps = match u16::from_be_bytes([page[16], page[17]]) {
        1 => 65536,
        n => n as u32,
    };
    if ps != h.page_size {
        return Err(Error::Restore(format!(
            "{key}: page 1 says page size {ps}, the file says {}",
            h.page_size
        )));
    }
    let size = u32::from_be_bytes(page[28..32].try_into().unwrap());
    if page[24..28] == page[92..96] && size != 0 && size != h.commit {
        return Err(Error::Restore(format!(
            "{key}: page 1 says the database has {size} pages, the file says {} (a file from another database?)",
            h.commit
        )));
    }
    Ok(())
}

/// What the writer thread does to the temporary file, in order.
enum WriteJob {
    Write(u64, Vec<u8>),
    SetLen(u64),
    /// Answered once everything before it is done (or has failed).
    Barrier(crossbeam_channel::Sender<()>),
}

/// Writes the restored file on a thread of its own, so that decoding and verifying the next
/// pages overlaps the copy into the page cache (on a 1 GiB restore the two took about the
/// same time). The first failure is kept and reported at the next [`Writer::settle`].
struct Writer {
    jobs: crossbeam_channel::Sender<WriteJob>,
    spare: crossbeam_channel::Receiver<Vec<u8>>,
    failed: std::sync::Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// The writer over `out`, and its loop for the caller to run on a thread.
    fn start(out: &std::fs::File) -> (Writer, impl FnOnce() + Send + '_) {
        let (jobs, inbox) = crossbeam_channel::bounded::<WriteJob>(4);
        let (give_back, spare) = crossbeam_channel::bounded(8);
        let failed = std::sync::Arc::new(Mutex::new(None));
        let failure = failed.clone();
        let work = move || {
            for job in inbox {
                let result = match job {
                    WriteJob::Write(offset, bytes) => {
                        let r = out.write_all_at(&bytes, offset);
                        let _ = give_back.try_send(bytes);
                        r
                    }
                    WriteJob::SetLen(len) => out.set_len(len),
                    WriteJob::Barrier(done) => {
                        let _ = done.send(());
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    let mut f = crate::base::lock::lock(&failure);
                    f.get_or_insert_with(|| e.to_string());
                }
            }
        };
        (
            Writer {
                jobs,
                spare,
                failed,
            },
            work,
        )
    }

    /// Queues `job`; fails at once once a write has failed (a full disk should not cost
    /// the rest of the download first).
    fn send(&self, job: WriteJob) -> Result<(), Error> {
        self.failure()?;
        self.jobs
            .send(job)
            .map_err(|_| Error::Io("writing the restored database: the writer stopped".into()))
    }

    fn failure(&self) -> Result<(), Error> {
        match &*crate::base::lock::lock(&self.failed) {
            Some(e) => Err(Error::Io(format!("writing the restored database: {e}"))),
            None => Ok(()),
        }
    }

    /// Waits until every job sent so far is done; the first write error, if any.
    fn settle(&self) -> Result<(), Error> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.send(WriteJob::Barrier(done))?;
        let _ = wait.recv();
        self.failure()
    }
}

/// Consecutive pages gathered into one write (a snapshot's pages come in order), so a
/// large restore makes a few thousand writes rather than one per page.
#[derive(Default)]
struct WriteRun {
    offset: u64,
    bytes: Vec<u8>,
}

impl WriteRun {
    const MAX: usize = 1 << 20;

    fn write(&mut self, w: &Writer, offset: u64, page: &[u8]) -> Result<(), Error> {
        if !self.bytes.is_empty() && self.offset + self.bytes.len() as u64 != offset {
            self.flush(w)?;
        }
        if self.bytes.is_empty() {
            self.offset = offset;
        }
        self.bytes.extend_from_slice(page);
        if self.bytes.len() >= Self::MAX {
            self.flush(w)?;
        }
        Ok(())
    }

    fn flush(&mut self, w: &Writer) -> Result<(), Error> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let mut next = w.spare.try_recv().unwrap_or_default();
        next.clear();
        let bytes = std::mem::replace(&mut self.bytes, next);
        w.send(WriteJob::Write(self.offset, bytes))
    }
}

/// Downloads and applies `chain` into `tmp`, verifying as it goes.
fn apply(
    store: &dyn ObjectStore,
    chain: &[LtxObject],
    tmp: &Path,
    tuning: &Tuning,
) -> Result<Restored, Error> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(tmp)
        .map_err(|e| Error::Io(format!("creating {}: {e}", tmp.display())))?;
    let fetcher = Fetcher {
        store,
        chain,
        pieces: pieces(chain, tuning.chunk_bytes),
        window: tuning.parallelism.max(1) + 2,
        state: Mutex::new(FetchState {
            next: 0,
            consumed: 0,
            ready: BTreeMap::new(),
            stop: false,
        }),
        changed: Condvar::new(),
    };
    let mut progress = RestoreProgress {
        files_total: chain.len() as u64,
        bytes_total: chain.iter().map(|o| o.size).sum(),
        ..Default::default()
    };
    (tuning.progress)(&progress);
    std::thread::scope(|s| {
        for _ in 0..tuning.parallelism.clamp(1, fetcher.pieces.len().max(1)) {
            s.spawn(|| fetcher.work());
        }
        let (writer, write_loop) = Writer::start(&out);
        s.spawn(write_loop);
        let r = apply_pieces(&fetcher, chain, &out, &writer, tuning, &mut progress)
            .and_then(|restored| writer.settle().map(|()| restored));
        fetcher.stop();
        r
    })
    .and_then(|restored| {
        out.sync_all()?;
        Ok(restored)
    })
}

fn apply_pieces(
    fetcher: &Fetcher,
    chain: &[LtxObject],
    out: &std::fs::File,
    writer: &Writer,
    tuning: &Tuning,
    progress: &mut RestoreProgress,
) -> Result<Restored, Error> {
    let mut table: Option<ChecksumTable> = None;
    let mut page_size = 0u32;
    let mut commit = 0u32;
    let mut pages_written = 0u32;
    let mut downloaded = 0u64;
    let mut buf = Vec::new();
    let mut expected_post: Option<u64> = None;
    let mut next_piece = 0;
    let mut run = WriteRun::default();
    for (index, obj) in chain.iter().enumerate() {
        let end_piece = fetcher.pieces[next_piece..]
            .iter()
            .position(|p| p.object != index)
            .map_or(fetcher.pieces.len(), |n| next_piece + n);
        let mut on_piece = |n: u64| {
            downloaded += n;
            progress.bytes_done += n;
            (tuning.progress)(progress);
        };
        let mut reader = ObjectReader {
            fetcher,
            next_piece,
            end_piece,
            buf: Vec::new(),
            pos: 0,
            failed: None,
            on_piece: &mut on_piece,
        };
        next_piece = end_piece;
        let mut dec = match Decoder::new(&mut reader) {
            Ok(d) => d,
            Err(e) => return Err(object_error(&obj.key, e, reader.failed.take())),
        };
        let h = *dec.header();
        if (h.min_txid, h.max_txid) != (obj.min_txid, obj.max_txid) {
            return Err(Error::Restore(format!(
                "{}: its header says txids {}-{}, its name says otherwise",
                obj.key, h.min_txid, h.max_txid
            )));
        }
        if page_size != 0 && h.page_size != page_size {
            return Err(Error::Restore(format!(
                "{}: page size {} differs from {page_size} (a file from another database?)",
                obj.key, h.page_size
            )));
        }
        page_size = h.page_size;
        let checksums = !h.no_checksum();
        if table.is_none() && (tuning.want_checksum || checksums) {
            writer.settle()?; // reads back what has been written
            table = Some(ChecksumTable::from_file(out, page_size, commit)?);
        }
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
        if let Some(t) = table.as_mut() {
            t.grow(h.commit, page_size);
        }
        loop {
            let pgno = match dec.next_page(&mut buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    drop(dec);
                    return Err(object_error(&obj.key, e, reader.failed.take()));
                }
            };
            if pgno == 0 || pgno > h.commit {
                return Err(Error::Restore(format!(
                    "{}: page {pgno} is outside the database size {}",
                    obj.key, h.commit
                )));
            }
            if pgno == 1 {
                check_page1(&obj.key, &buf, &h)?;
            }
            run.write(writer, (pgno as u64 - 1) * page_size as u64, &buf)?;
            if let Some(t) = table.as_mut() {
                t.set(pgno, dec.page_checksum());
            }
            pages_written += 1;
        }
        let trailer = match dec.finish() {
            Ok(t) => t,
            Err(e) => return Err(object_error(&obj.key, e, reader.failed.take())),
        };
        run.flush(writer)?;
        if h.commit < commit {
            // A shrink: pages past the end must not come back if a later file grows it again.
            writer.send(WriteJob::SetLen(h.commit as u64 * page_size as u64))?;
        }
        commit = h.commit;
        if let Some(t) = table.as_mut() {
            t.truncate(commit);
        }
        match (&table, checksums) {
            (Some(t), true) => {
                let ours = t.value();
                if ours != trailer.post_apply_checksum {
                    return Err(Error::Restore(format!(
                        "{}: database checksum after applying it is {ours:016x}, the file says {:016x}",
                        obj.key, trailer.post_apply_checksum
                    )));
                }
                expected_post = Some(trailer.post_apply_checksum);
            }
            _ => expected_post = None,
        }
        progress.files_done += 1;
        (tuning.progress)(progress);
    }
    writer.send(WriteJob::SetLen(commit as u64 * page_size as u64))?;
    Ok(Restored {
        txid: chain.last().map(|o| o.max_txid).unwrap_or(0),
        files: chain.len(),
        pages: pages_written,
        bytes_downloaded: downloaded,
        db_checksum: table.map(|t| t.value()),
    })
}

/// An object that failed to download or decode, named in the message.
fn object_error(key: &str, e: ltx::LtxError, store: Option<StoreError>) -> Error {
    match store {
        Some(s) => Error::Restore(format!("{key}: download failed: {s}")),
        None => Error::Restore(format!("{key}: {e}")),
    }
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
            modified_ms: 0,
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
        assert!(err.contains(&obj(0, 4, 4).key), "{err}");
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

    #[test]
    fn plans_the_fewest_files_not_the_greedy_longest_step() {
        // Greedy "reach furthest" takes 2-10, then needs 11-15 and 16-20: three files.
        let objs = vec![
            obj(9, 1, 1),
            obj(1, 2, 10),
            obj(0, 2, 5),
            obj(1, 6, 20),
            obj(0, 11, 15),
            obj(0, 16, 20),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 1), (0, 5), (1, 20)]);
    }

    #[test]
    fn goes_around_a_dead_end_through_another_level() {
        // 2-10 leads nowhere (11 is missing), but 2-3 and 4-12 reach the end.
        let objs = vec![obj(9, 1, 1), obj(1, 2, 10), obj(0, 2, 3), obj(1, 4, 12)];
        assert_eq!(planned(&objs, None), vec![(9, 1), (0, 3), (1, 12)]);
    }

    #[test]
    fn large_objects_are_split_into_ranged_pieces() {
        let mut a = obj(9, 1, 1);
        a.size = 25;
        let mut b = obj(0, 2, 2);
        b.size = 100;
        let p = pieces(&[a, b], 10);
        // The chunk is at least a header: 100 bytes.
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|p| p.whole));
        let mut c = obj(9, 1, 1);
        c.size = 250;
        let p = pieces(&[c], 100);
        assert_eq!(
            p.iter()
                .map(|p| (p.offset, p.len, p.whole))
                .collect::<Vec<_>>(),
            vec![(0, 100, false), (100, 100, false), (200, 50, false)]
        );
    }

    // ---- applying, against the in-memory store ----------------------------------------

    use crate::store::memory::MemoryStore;

    const PS: u32 = 4096;

    /// A page 1 that SQLite would accept as a header for a `commit`-page database.
    fn page1(commit: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PS as usize];
        p[..16].copy_from_slice(b"SQLite format 3\0");
        p[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
        p[24..28].copy_from_slice(&7u32.to_be_bytes());
        p[28..32].copy_from_slice(&commit.to_be_bytes());
        p[92..96].copy_from_slice(&7u32.to_be_bytes());
        p
    }

    /// Encodes an LTX file; with `checksummed`, pre/post-apply checksums are real.
    fn ltx_file(
        min: u64,
        max: u64,
        commit: u32,
        pages: &[(u32, Vec<u8>)],
        pre: u64,
        post: u64,
        checksummed: bool,
    ) -> Vec<u8> {
        let header = ltx::Header {
            flags: if checksummed {
                0
            } else {
                ltx::FLAG_NO_CHECKSUM
            },
            page_size: PS,
            commit,
            min_txid: min,
            max_txid: max,
            timestamp_ms: 1000 * max,
            pre_apply_checksum: if checksummed && min != 1 { pre } else { 0 },
            ..Default::default()
        };
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        for (pgno, p) in pages {
            enc.encode_page(*pgno, p).unwrap();
        }
        enc.finish(if checksummed { post } else { 0 }).unwrap().0
    }

    /// A three-file replica (snapshot of 3 pages, then two level-0 files) and the pages of
    /// the database it holds.
    fn replica(checksummed: bool) -> (MemoryStore, Vec<Vec<u8>>) {
        let store = MemoryStore::new();
        let mut db = vec![page1(3, 0), vec![1u8; PS as usize], vec![2u8; PS as usize]];
        let sum = |db: &[Vec<u8>]| {
            let mut c = ltx::DbChecksum::default();
            for (i, p) in db.iter().enumerate() {
                c.add_page(i as u32 + 1, p);
            }
            c.value()
        };
        let snap: Vec<(u32, Vec<u8>)> = db.iter().cloned().zip(1..).map(|(p, n)| (n, p)).collect();
        let s1 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 9, 1, 1),
                &ltx_file(1, 1, 3, &snap, 0, s1, checksummed),
            )
            .unwrap();
        db[1] = vec![3u8; PS as usize];
        let s2 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 0, 2, 2),
                &ltx_file(2, 2, 3, &[(2, db[1].clone())], s1, s2, checksummed),
            )
            .unwrap();
        db.push(vec![4u8; PS as usize]);
        db[0] = page1(4, 0);
        let s3 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 0, 3, 3),
                &ltx_file(
                    3,
                    3,
                    4,
                    &[(1, db[0].clone()), (4, db[3].clone())],
                    s2,
                    s3,
                    checksummed,
                ),
            )
            .unwrap();
        (store, db)
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let d =
                std::env::temp_dir().join(format!("replica-restore-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(store: &MemoryStore, out: &Path, tuning: &Tuning) -> Result<Restored, Error> {
        restore_with(
            &RestoreRequest {
                store,
                prefix: "db",
                output: out,
                target: Target::Latest,
                overwrite: false,
                check: &|_| Ok(()),
            },
            tuning,
        )
    }

    #[test]
    fn restores_through_tiny_ranged_pieces_with_progress_and_checksum() {
        for checksummed in [false, true] {
            let (store, db) = replica(checksummed);
            let dir = Scratch::new(&format!("pieces-{checksummed}"));
            let out = dir.0.join("out.db");
            let seen = Mutex::new(Vec::new());
            let restored = run(
                &store,
                &out,
                &Tuning {
                    parallelism: 3,
                    chunk_bytes: 128, // every file in several ranged GETs
                    want_checksum: true,
                    progress: &|p| seen.lock().unwrap().push(*p),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), db.concat());
            assert_eq!(restored.txid, 3);
            let mut want = ltx::DbChecksum::default();
            for (i, p) in db.iter().enumerate() {
                want.add_page(i as u32 + 1, p);
            }
            assert_eq!(restored.db_checksum, Some(want.value()));
            let seen = seen.into_inner().unwrap();
            let last = *seen.last().unwrap();
            assert_eq!((last.files_done, last.files_total), (3, 3));
            assert_eq!(last.bytes_done, last.bytes_total);
            assert!(seen
                .windows(2)
                .all(|w| w[0].bytes_done <= w[1].bytes_done && w[0].files_done <= w[1].files_done));
            assert!(seen.len() > 6, "progress after each piece: {seen:?}");
        }
    }

    /// Each corruption must fail the restore, name the object, and leave no file behind.
    #[test]
    fn refuses_corrupt_replicas_naming_the_object() {
        let l0 = |n| keys::s3_key("db", 0, n, n);
        type Corrupt = fn(&MemoryStore);
        let cases: Vec<(&str, bool, Corrupt, String)> = vec![
            (
                "truncated",
                false,
                |s| {
                    let k = keys::s3_key("db", 0, 2, 2);
                    let b = s.get(&k).unwrap();
                    s.put(&k, &b[..b.len() - 20]).unwrap();
                },
                l0(2),
            ),
            (
                "flipped byte",
                false,
                |s| {
                    let k = keys::s3_key("db", 9, 1, 1);
                    let mut b = s.get(&k).unwrap();
                    let at = b.len() / 2;
                    b[at] ^= 0x40;
                    s.put(&k, &b).unwrap();
                },
                keys::s3_key("db", 9, 1, 1),
            ),
            (
                "missing level 0",
                false,
                |s| {
                    s.delete(&keys::s3_key("db", 0, 2, 2)).unwrap();
                },
                l0(3),
            ),
            (
                "another database (checksums)",
                true,
                |s| {
                    let (other, _) = replica(true);
                    // Same txid, other contents: the other database's page 2 differs.
                    let mut b = other.get(&keys::s3_key("db", 0, 2, 2)).unwrap();
                    b.clear();
                    let mut p = vec![9u8; PS as usize];
                    p[0] = 1;
                    b.extend(ltx_file(
                        2,
                        2,
                        3,
                        &[(2, p)],
                        0x8000_0000_0000_1234,
                        0x8000_0000_0000_5678,
                        true,
                    ));
                    s.put(&keys::s3_key("db", 0, 2, 2), &b).unwrap();
                },
                l0(2),
            ),
            (
                "another database (page 1)",
                false,
                |s| {
                    let b = ltx_file(
                        3,
                        3,
                        4,
                        &[(1, page1(9, 5)), (4, vec![4u8; PS as usize])],
                        0,
                        0,
                        false,
                    );
                    s.put(&keys::s3_key("db", 0, 3, 3), &b).unwrap();
                },
                l0(3),
            ),
        ];
        for (what, checksummed, corrupt, key) in cases {
            let (store, _) = replica(checksummed);
            corrupt(&store);
            let dir = Scratch::new("corrupt");
            let out = dir.0.join("out.db");
            let err = run(
                &store,
                &out,
                &Tuning {
                    chunk_bytes: 256,
                    ..Default::default()
                },
            )
            .expect_err(what)
            .to_string();
            assert!(err.contains(&key), "{what}: {err}");
            let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
            assert!(left.is_empty(), "{what}: left {left:?}");
        }
    }

    /// Fails every GET that `fail(n)` picks (n counts GETs), transiently or by cutting the body.
    struct FlakyStore {
        inner: MemoryStore,
        gets: std::sync::atomic::AtomicUsize,
        fail: fn(usize) -> Option<bool>,
    }

    impl FlakyStore {
        fn body(&self, r: Result<Vec<u8>, StoreError>) -> Result<Vec<u8>, StoreError> {
            let n = self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match (self.fail)(n) {
                Some(true) => Err(StoreError::Transient(format!("injected fault {n}"))),
                Some(false) => r.map(|mut b| {
                    b.truncate(b.len() / 2);
                    b
                }),
                None => r,
            }
        }
    }

    impl ObjectStore for FlakyStore {
        fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, body)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.body(self.inner.get(key))
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
            self.body(self.inner.get_range(key, offset, len))
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn request_counts(&self) -> crate::store::RequestCounts {
            self.inner.request_counts()
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn transient_faults_and_cut_bodies_are_retried_but_not_forever() {
        let (inner, db) = replica(false);
        // Every other GET fails, alternately with an error and a cut body.
        let flaky = FlakyStore {
            inner,
            gets: Default::default(),
            fail: |n| (n % 2 == 0).then_some(n % 4 == 0),
        };
        let dir = Scratch::new("flaky");
        let out = dir.0.join("out.db");
        let tuning = Tuning {
            chunk_bytes: 128,
            ..Default::default()
        };
        let restore = |store: &dyn ObjectStore, out: &Path| {
            restore_with(
                &RestoreRequest {
                    store,
                    prefix: "db",
                    output: out,
                    target: Target::Latest,
                    overwrite: false,
                    check: &|_| Ok(()),
                },
                &tuning,
            )
        };
        restore(&flaky, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), db.concat());
        // A store that never recovers fails the restore, naming the object.
        let (inner, _) = replica(false);
        let down = FlakyStore {
            inner,
            gets: Default::default(),
            fail: |_| Some(true),
        };
        let err = restore(&down, &dir.0.join("down.db"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0009/") && err.contains("injected fault"),
            "{err}"
        );
        assert!(!dir.0.join("down.db").exists());
    }

    #[test]
    fn an_exclusive_restore_never_replaces_a_file_that_appeared_meanwhile() {
        let (store, db) = replica(false);
        let dir = Scratch::new("exclusive");
        let out = dir.0.join("out.db");
        // Another process creates the database while the restore runs.
        let created = std::sync::Once::new();
        let err = run(
            &store,
            &out,
            &Tuning {
                exclusive: true,
                progress: &|_| created.call_once(|| std::fs::write(&out, b"theirs").unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("appeared while it was being restored"),
            "{err}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"theirs");
        let left: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out.db")]);
        // With nobody racing it, it publishes the restored file.
        std::fs::remove_file(&out).unwrap();
        run(
            &store,
            &out,
            &Tuning {
                exclusive: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), db.concat());
    }
}
