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
//!   the CRC covers header and entries (records built from a scan, not in frame order).
//! - `generation`: the salts of the WAL generation this process last saw start, written once
//!   everything before it was on disk (see `set_generation`).
//! - `unflushed`: present while records are held only in memory (see below).
//! - `gap`: present while a snapshot is owed because a commit could not be captured.
//! - `cache/<level>/<min>-<max>.ltx`: local copies of LTX files the uploader uploaded, kept
//!   until the next level's compaction has merged them (a cache: missing files are
//!   downloaded).
//! - `overflow`: present while captured commits were dropped because the spool was over its
//!   size cap; the uploader must then ship a snapshot (which also removes the marker).
//! - `lock`: held (`flock`) by the process that owns the spool; it names that process's pid.
//! - `id`: this spool's lasting name, which the replica's lease records.
//! - `handoff/<nanos>-<pid>`: commits handed over by processes that do not own the spool,
//!   written before they restart or truncate the WAL (format in `crate::handoff`); the
//!   owner appends them and removes the files.
//!
//! Records are first kept in memory (up to 8 MiB) and written out, without fsync, when the
//! buffer fills, before SQLite can restart, truncate or delete the WAL (the shim calls
//! `flush`), or never, if they are shipped first. Until then the WAL itself still holds the
//! frames, so a crash loses nothing: the next open captures them again from the WAL, or, if
//! continuity cannot be shown, ships a snapshot. After a power loss the same holds for what
//! SQLite kept. Recovery drops a torn tail.

use crate::ltx::Crc64;
use crate::wal::WalPosition;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const RECORD_MAGIC: &[u8; 4] = b"RSP1";
const RECORD_HEADER_SIZE: u64 = 64;
/// A new segment is started past this size, so shipped data can be deleted in pieces.
const SEGMENT_ROLL_BYTES: u64 = 64 << 20;

#[derive(Debug)]
pub enum SpoolError {
    Io(String),
    /// The record would take the spool past its cap; the caller must fall back to a snapshot.
    Overflow {
        cap_bytes: u64,
    },
    Corrupt(String),
    /// Another process owns this spool.
    Locked(PathBuf),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Io(m) => write!(f, "spool: {m}"),
            SpoolError::Overflow { cap_bytes } => {
                write!(f, "spool is over its cap of {cap_bytes} bytes; a snapshot will be shipped instead")
            }
            SpoolError::Corrupt(m) => write!(f, "spool is corrupt: {m}"),
            SpoolError::Locked(d) => write!(
                f,
                "another process replicates this database (it holds {}); this process leaves replication to it",
                d.join("lock").display()
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

fn io(what: &str, path: &Path, e: std::io::Error) -> SpoolError {
    SpoolError::Io(format!("{what} {}: {e}", path.display()))
}

/// Where the replica stands, as far as this spool knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolState {
    pub replica_url: String,
    /// Last txid known to be in the replica; 0 = nothing shipped yet.
    pub txid: u64,
    pub post_checksum: u64,
    pub page_size: u32,
    /// Database size in pages after `txid`.
    pub commit: u32,
    /// Every record with a sequence number up to this one is in the replica (or subsumed).
    pub shipped_seq: u64,
    /// WAL position (and running WAL checksum) the replicated state ends at, when known.
    pub position: Option<(WalPosition, (u32, u32))>,
    pub shipped_at_ms: u64,
}

impl SpoolState {
    fn encode(&self) -> String {
        let mut s = format!(
            "replica_url={}\ntxid={}\npost_checksum={}\npage_size={}\ncommit={}\nshipped_seq={}\nshipped_at_ms={}\n",
            self.replica_url, self.txid, self.post_checksum, self.page_size, self.commit, self.shipped_seq, self.shipped_at_ms
        );
        if let Some((p, c)) = self.position {
            s += &format!(
                "position={},{},{},{},{}\n",
                p.salt1, p.salt2, p.frame, c.0, c.1
            );
        }
        s
    }

    fn decode(text: &str) -> Result<SpoolState, String> {
        let mut st = SpoolState::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad value for {k}: {v:?}"))
            };
            match k {
                "replica_url" => st.replica_url = v.to_string(),
                "txid" => st.txid = num(v)?,
                "post_checksum" => st.post_checksum = num(v)?,
                "page_size" => st.page_size = num(v)? as u32,
                "commit" => st.commit = num(v)? as u32,
                "shipped_seq" => st.shipped_seq = num(v)?,
                "shipped_at_ms" => st.shipped_at_ms = num(v)?,
                "position" => {
                    let n: Vec<u32> = v
                        .split(',')
                        .map(|x| x.parse::<u32>().map_err(|_| format!("bad position {v:?}")))
                        .collect::<Result<_, _>>()?;
                    if n.len() != 5 {
                        return Err(format!("bad position {v:?}"));
                    }
                    st.position = Some((
                        WalPosition {
                            salt1: n[0],
                            salt2: n[1],
                            frame: n[2],
                        },
                        (n[3], n[4]),
                    ));
                }
                _ => {} // written by a newer version: ignore
            }
        }
        Ok(st)
    }
}

/// What the spool holds about one captured transaction (its pages stay on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub seq: u64,
    pub page_size: u32,
    pub commit_size: u32,
    pub end: WalPosition,
    pub end_cksum: (u32, u32),
    pub captured_at_ms: u64,
    /// Page numbers in frame order; entry i's page is at `page_offset(i)`.
    pub pgnos: Vec<u32>,
    segment: u64,
    offset: u64,
}

impl RecordMeta {
    fn len(&self) -> u64 {
        RECORD_HEADER_SIZE + self.pgnos.len() as u64 * (4 + self.page_size as u64) + 8
    }
    fn page_offset(&self, i: usize) -> u64 {
        self.offset + RECORD_HEADER_SIZE + i as u64 * (4 + self.page_size as u64) + 4
    }
}

/// How a record's pages are protected against a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// A CRC-64 over the whole record.
    Crc,
    /// The entries are WAL frames in order: SQLite's checksum chain from `start` must end at
    /// the record's `end_cksum` (the header alone gets a CRC).
    WalChain { start: (u32, u32), big_endian: bool },
}

/// The header of a record about to be appended.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub page_size: u32,
    pub commit_size: u32,
    pub end: WalPosition,
    pub end_cksum: (u32, u32),
    pub captured_at_ms: u64,
    pub integrity: Integrity,
}

/// Committed records are kept in memory up to this size before they are written out.
const WRITE_BUFFER_BYTES: usize = 8 << 20;

struct Segment {
    id: u64,
    file: File,
    /// Bytes of committed records, on disk or in `buffer`.
    len: u64,
    /// Bytes on disk; `buffer` holds `[flushed, len)`.
    flushed: u64,
    buffer: Vec<u8>,
    /// While `buffer` holds records, this marker file exists: if the process dies and the
    /// WAL is gone too, recovery knows records were lost and asks for a snapshot.
    unflushed_marker: Option<PathBuf>,
}

impl Segment {
    fn new(id: u64, file: File, len: u64) -> Segment {
        Segment {
            id,
            file,
            len,
            flushed: len,
            buffer: Vec::new(),
            unflushed_marker: None,
        }
    }

    fn write_out(&mut self) -> Result<(), SpoolError> {
        if !self.buffer.is_empty() {
            self.file
                .write_all_at(&self.buffer, self.flushed)
                .map_err(|e| SpoolError::Io(format!("writing the spool: {e}")))?;
            self.flushed += self.buffer.len() as u64;
            self.buffer.clear();
            if let Some(marker) = self.unflushed_marker.take() {
                let _ = std::fs::remove_file(marker);
            }
        }
        Ok(())
    }
}

struct Inner {
    state: SpoolState,
    pending: Vec<RecordMeta>,
    pending_bytes: u64,
    next_seq: u64,
    segment: Option<Segment>,
    overflowed: bool,
}

pub struct Spool {
    dir: PathBuf,
    cap_bytes: u64,
    inner: Mutex<Inner>,
    /// Held (an exclusive `flock`) for as long as this process owns the spool.
    _lock: File,
}

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

impl Spool {
    /// The sidecar directory of a database: `/x/app.db` → `/x/app.db-replica`.
    /// The replicated state as the owning process last wrote it, read without opening (or
    /// locking) the spool: another process waits on it for its synchronous commits.
    pub fn read_state_file(dir: &Path) -> Option<SpoolState> {
        let text = std::fs::read_to_string(dir.join("state")).ok()?;
        SpoolState::decode(&text).ok()
    }

    /// The process id the spool's lock file names (the process that replicates it).
    pub fn owner_pid(dir: &Path) -> Option<u32> {
        std::fs::read_to_string(dir.join("lock"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("pid="))
            .and_then(|p| p.trim().parse().ok())
    }

    /// A name for this spool that outlives processes (made once, kept in the file `id`):
    /// the replica's lease is held by a spool, so that a process restarting on the same
    /// volume continues at once while another host's spool is fenced out.
    pub fn instance_id(&self) -> String {
        let path = self.dir.join("id");
        if let Ok(id) = std::fs::read_to_string(&path) {
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
                format!("{t}:{}:{}", std::process::id(), self.dir.display()).as_bytes()
            )
        );
        let _ = std::fs::write(&path, &id);
        id
    }

    pub fn dir_for(db_path: &Path) -> PathBuf {
        let mut s = db_path.as_os_str().to_owned();
        s.push("-replica");
        PathBuf::from(s)
    }

    pub fn open(dir: &Path, cap_bytes: u64) -> Result<(Spool, Recovery), SpoolError> {
        let seg_dir = dir.join("seg");
        std::fs::create_dir_all(&seg_dir).map_err(|e| io("creating", &seg_dir, e))?;
        // One process appends to a spool at a time (several writers per database are the
        // multi-process issue's work): a second process leaves replication to the first.
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path, e)),
        }
        // Who holds it, for the status of the processes that stand by.
        {
            use std::io::Write;
            let mut f = &lock;
            let _ = f.set_len(0);
            let _ = f.write_all(format!("pid={}\n", std::process::id()).as_bytes());
        }
        let mut rec = Recovery::default();
        let state_path = dir.join("state");
        let state = match std::fs::read_to_string(&state_path) {
            Ok(t) => {
                rec.had_state = true;
                SpoolState::decode(&t)
                    .map_err(|m| SpoolError::Corrupt(format!("{}: {m}", state_path.display())))?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => SpoolState::default(),
            Err(e) => return Err(io("reading", &state_path, e)),
        };
        let overflowed = dir.join("overflow").exists();
        rec.unflushed_lost = dir.join("unflushed").exists();
        let _ = std::fs::remove_file(dir.join("unflushed"));
        rec.overflowed = overflowed;
        let mut pending = Vec::new();
        let mut max_seq = state.shipped_seq;
        let mut ids = segment_ids(&seg_dir)?;
        ids.sort_unstable();
        let mut last_segment = None;
        for (i, id) in ids.iter().enumerate() {
            let path = seg_dir.join(format!("{id:016x}.seg"));
            let (records, valid_len, file_len) = read_segment(&path, *id)?;
            for r in records {
                max_seq = max_seq.max(r.seq);
                if r.seq > state.shipped_seq {
                    pending.push(r);
                }
            }
            if valid_len < file_len {
                rec.torn_bytes_dropped += file_len - valid_len;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io("opening", &path, e))?;
                f.set_len(valid_len)
                    .map_err(|e| io("truncating", &path, e))?;
                // Anything after a torn record was never acknowledged by a commit: drop later segments.
                for later in &ids[i + 1..] {
                    let p = seg_dir.join(format!("{later:016x}.seg"));
                    rec.torn_bytes_dropped += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    let _ = std::fs::remove_file(p);
                }
                last_segment = Some((*id, valid_len));
                break;
            }
            last_segment = Some((*id, valid_len));
        }
        rec.records = pending.len();
        let segment = match last_segment {
            Some((id, len)) => {
                let path = seg_dir.join(format!("{id:016x}.seg"));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| io("opening", &path, e))?;
                Some(Segment::new(id, file, len))
            }
            None => None,
        };
        let pending_bytes = pending.iter().map(|r| r.len()).sum();
        let spool = Spool {
            dir: dir.to_path_buf(),
            cap_bytes,
            _lock: lock,
            inner: Mutex::new(Inner {
                state,
                pending,
                pending_bytes,
                next_seq: max_seq + 1,
                segment,
                overflowed,
            }),
        };
        Ok((spool, rec))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::base::lock::lock(&self.inner)
    }

    /// Starts appending one record of `npages` pages; the caller pushes exactly that many.
    pub fn begin_record(
        &self,
        header: RecordHeader,
        npages: u32,
    ) -> Result<RecordWriter<'_>, SpoolError> {
        let mut inner = self.lock();
        let len = RECORD_HEADER_SIZE + npages as u64 * (4 + header.page_size as u64) + 8;
        if inner.overflowed || inner.pending_bytes + len > self.cap_bytes {
            if !inner.overflowed {
                inner.overflowed = true;
                let p = self.dir.join("overflow");
                File::create(&p).map_err(|e| io("creating", &p, e))?;
            }
            return Err(SpoolError::Overflow {
                cap_bytes: self.cap_bytes,
            });
        }
        let roll = match &inner.segment {
            None => true,
            Some(s) => s.len >= SEGMENT_ROLL_BYTES,
        };
        let seq = inner.next_seq;
        if roll {
            let path = self.dir.join("seg").join(format!("{seq:016x}.seg"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| io("creating", &path, e))?;
            if let Some(old) = inner.segment.as_mut() {
                old.write_out()?;
            }
            inner.segment = Some(Segment::new(seq, file, 0));
        }
        let seg = inner.segment.as_ref().expect("segment just ensured");
        let meta = RecordMeta {
            seq,
            page_size: header.page_size,
            commit_size: header.commit_size,
            end: header.end,
            end_cksum: header.end_cksum,
            captured_at_ms: header.captured_at_ms,
            pgnos: Vec::with_capacity(npages as usize),
            segment: seg.id,
            offset: seg.len,
        };
        let mut buf = Vec::with_capacity(
            (RECORD_HEADER_SIZE as usize
                + (4 + header.page_size as usize) * (npages as usize).min(64))
            .max(64),
        );
        buf.extend_from_slice(RECORD_MAGIC);
        buf.extend_from_slice(&seq.to_be_bytes());
        for v in [
            header.page_size,
            header.commit_size,
            header.end.salt1,
            header.end.salt2,
            header.end.frame,
            header.end_cksum.0,
            header.end_cksum.1,
            npages,
        ] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        buf.extend_from_slice(&header.captured_at_ms.to_be_bytes());
        let (kind, start) = match header.integrity {
            Integrity::Crc => (0u32, (0, 0)),
            Integrity::WalChain { start, big_endian } => (1 + big_endian as u32, start),
        };
        for v in [kind, start.0, start.1] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        let mut crc = Crc64::new();
        crc.update(&buf);
        let hash_entries = header.integrity == Integrity::Crc;
        Ok(RecordWriter {
            spool: self,
            inner,
            meta,
            npages,
            buf,
            crc,
            hash_entries,
            written: 0,
        })
    }

    /// Writes out records kept in memory. Needed before SQLite may overwrite or remove the
    /// WAL frames they came from (a restart, a truncation, a deletion): until then a crash
    /// loses nothing, because the next open captures them again from the WAL.
    pub fn flush(&self) -> Result<(), SpoolError> {
        crate::fault::point("spool.flush");
        match self.lock().segment.as_mut() {
            Some(seg) => seg.write_out(),
            None => Ok(()),
        }
    }

    /// Records not yet shipped, oldest first.
    pub fn pending(&self) -> Vec<RecordMeta> {
        self.lock().pending.clone()
    }

    /// How many records are pending and when the oldest was captured, without copying them.
    pub fn pending_summary(&self) -> Option<(usize, u64)> {
        let inner = self.lock();
        inner
            .pending
            .first()
            .map(|r| (inner.pending.len(), r.captured_at_ms))
    }

    pub fn pending_bytes(&self) -> u64 {
        self.lock().pending_bytes
    }

    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Sequence number of the newest record appended (or shipped); 0 if none ever.
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    pub fn state(&self) -> SpoolState {
        self.lock().state.clone()
    }

    /// The WAL position everything spooled so far ends at.
    pub fn last_position(&self) -> Option<(WalPosition, (u32, u32))> {
        let inner = self.lock();
        match inner.pending.last() {
            Some(r) => Some((r.end, r.end_cksum)),
            None => inner.state.position,
        }
    }

    /// Reads page `i` of a record into `buf`.
    pub fn read_page(
        &self,
        rec: &RecordMeta,
        i: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), SpoolError> {
        let path = self
            .dir
            .join("seg")
            .join(format!("{:016x}.seg", rec.segment));
        let offset = rec.page_offset(i);
        buf.resize(rec.page_size as usize, 0);
        let file = {
            let inner = self.lock();
            match &inner.segment {
                Some(s) if s.id == rec.segment && offset >= s.flushed => {
                    let at = (offset - s.flushed) as usize;
                    let src = s.buffer.get(at..at + buf.len()).ok_or_else(|| {
                        SpoolError::Corrupt(format!(
                            "record {} is not in the spool's write buffer",
                            rec.seq
                        ))
                    })?;
                    buf.copy_from_slice(src);
                    return Ok(());
                }
                Some(s) if s.id == rec.segment => {
                    s.file.try_clone().map_err(|e| io("opening", &path, e))?
                }
                _ => File::open(&path).map_err(|e| io("opening", &path, e))?,
            }
        };
        file.read_exact_at(buf, offset)
            .map_err(|e| io("reading", &path, e))
    }

    /// Records the replica's new state: every record up to `state.shipped_seq` is shipped
    /// (or subsumed by a snapshot) and its space can be reclaimed.
    pub fn mark_shipped(&self, state: SpoolState) -> Result<(), SpoolError> {
        self.write_state(&state)?;
        let mut inner = self.lock();
        if state.shipped_seq >= inner.next_seq - 1 && inner.overflowed {
            inner.overflowed = false;
            let _ = std::fs::remove_file(self.dir.join("overflow"));
        }
        inner.pending.retain(|r| r.seq > state.shipped_seq);
        inner.pending_bytes = inner.pending.iter().map(|r| r.len()).sum();
        inner.state = state;
        // Segments entirely before the first pending record can go; so can the current one
        // once it is fully shipped (the next append starts a fresh one).
        // Segments entirely before the first pending record can go. When nothing is
        // pending, the current segment is rewritten from its start instead of being
        // replaced: overwriting blocks the file already has is much cheaper on the commit
        // path than allocating new ones (recovery stops at the first record whose sequence
        // number does not follow, so the stale tail is never read as records).
        let keep_from = inner.pending.first().map(|r| r.segment);
        let current = inner.segment.as_ref().map(|s| s.id);
        if keep_from.is_none() {
            match inner.segment.as_mut() {
                Some(seg) if seg.len < SEGMENT_ROLL_BYTES => {
                    // Shipped before they were ever written out: they never touch the disk.
                    seg.len = 0;
                    seg.flushed = 0;
                    seg.buffer.clear();
                    if let Some(marker) = seg.unflushed_marker.take() {
                        let _ = std::fs::remove_file(marker);
                    }
                }
                _ => inner.segment = None,
            }
        }
        let keep_current = keep_from.is_none() && inner.segment.is_some();
        drop(inner);
        let seg_dir = self.dir.join("seg");
        for id in segment_ids(&seg_dir)? {
            let obsolete = match keep_from {
                Some(first) => id < first,
                None => !(keep_current && Some(id) == current),
            };
            if obsolete {
                let _ = std::fs::remove_file(seg_dir.join(format!("{id:016x}.seg")));
            }
        }
        Ok(())
    }

    fn write_state(&self, state: &SpoolState) -> Result<(), SpoolError> {
        let path = self.dir.join("state");
        let tmp = self.dir.join("state.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(state.encode().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| io("writing", &path, e))
    }

    /// Loads the per-page checksums of the replicated state (see the module docs).
    pub fn load_page_checksums(&self) -> Result<Vec<u64>, SpoolError> {
        let path = self.dir.join("pages.crc");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("reading", &path, e)),
        };
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// Writes the changed entries of the per-page checksum table, and its new length.
    pub fn store_page_checksums(
        &self,
        table: &[u64],
        changed: &[u32],
        rewrite_all: bool,
    ) -> Result<(), SpoolError> {
        let path = self.dir.join("pages.crc");
        let write = || -> std::io::Result<()> {
            if rewrite_all {
                let mut bytes = Vec::with_capacity(table.len() * 8);
                for v in table {
                    bytes.extend_from_slice(&v.to_be_bytes());
                }
                let tmp = self.dir.join("pages.crc.tmp");
                let mut f = File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                return std::fs::rename(&tmp, &path);
            }
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            for &pgno in changed {
                if let Some(v) = table.get(pgno as usize - 1) {
                    f.write_all_at(&v.to_be_bytes(), (pgno as u64 - 1) * 8)?;
                }
            }
            f.set_len(table.len() as u64 * 8)?;
            f.sync_data()
        };
        write().map_err(|e| io("writing", &path, e))
    }

    /// Records that every commit of earlier WAL generations is in the spool (or shipped) and
    /// the log now starts over with these salts: after a crash, the commits of that new
    /// generation can be captured again from the WAL without a gap. Written after `flush`.
    pub fn set_generation(&self, salts: (u32, u32)) -> Result<(), SpoolError> {
        let path = self.dir.join("generation");
        std::fs::write(&path, format!("{},{}\n", salts.0, salts.1))
            .map_err(|e| io("writing", &path, e))
    }

    /// The salts `set_generation` last recorded.
    pub fn generation(&self) -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(self.dir.join("generation")).ok()?;
        let (a, b) = text.trim().split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    /// Remembers, across a crash, that the replica misses something only a snapshot can
    /// give it (a commit whose capture failed).
    pub fn mark_gap(&self, reason: &str) -> Result<(), SpoolError> {
        let path = self.dir.join("gap");
        std::fs::write(&path, reason).map_err(|e| io("writing", &path, e))
    }

    /// Why a snapshot is owed, if `mark_gap` said so and no snapshot shipped since.
    pub fn gap(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("gap")).ok()
    }

    pub fn clear_gap(&self) {
        let _ = std::fs::remove_file(self.dir.join("gap"));
    }

    /// Scratch path for building an upload (one at a time per spool).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Appends one record; dropping it without `commit` rolls the segment back.
pub struct RecordWriter<'a> {
    spool: &'a Spool,
    inner: MutexGuard<'a, Inner>,
    meta: RecordMeta,
    npages: u32,
    buf: Vec<u8>,
    crc: Crc64,
    hash_entries: bool,
    written: u64,
}

impl RecordWriter<'_> {
    pub fn push(&mut self, pgno: u32, page: &[u8]) -> Result<(), SpoolError> {
        if self.meta.pgnos.len() as u32 >= self.npages || page.len() != self.meta.page_size as usize
        {
            return Err(SpoolError::Corrupt(format!(
                "record {}: page {pgno} does not fit the record header",
                self.meta.seq
            )));
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&pgno.to_be_bytes());
        self.buf.extend_from_slice(page);
        if self.hash_entries {
            self.crc.update(&self.buf[start..]);
        }
        self.meta.pgnos.push(pgno);
        if self.buf.len() >= 1 << 20 {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the record so far to disk (a large record does not stay in memory).
    fn spill(&mut self) -> Result<(), SpoolError> {
        let seg = self
            .inner
            .segment
            .as_mut()
            .expect("record writer has a segment");
        seg.write_out()?;
        seg.file
            .write_all_at(&self.buf, seg.len + self.written)
            .map_err(|e| SpoolError::Io(format!("appending to spool: {e}")))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Finishes the record and returns its sequence number.
    pub fn commit(mut self) -> Result<u64, SpoolError> {
        if self.meta.pgnos.len() as u32 != self.npages {
            return Err(SpoolError::Corrupt(format!(
                "record {}: short of pages",
                self.meta.seq
            )));
        }
        let crc = self.crc.finish();
        self.buf.extend_from_slice(&crc.to_be_bytes());
        // Small records stay in memory (the WAL still holds their frames; see `flush`).
        let seg = self
            .inner
            .segment
            .as_mut()
            .expect("record writer has a segment");
        let buffered = self.written == 0 && seg.buffer.len() + self.buf.len() <= WRITE_BUFFER_BYTES;
        if buffered {
            if seg.unflushed_marker.is_none() {
                let marker = self.spool.dir.join("unflushed");
                std::fs::write(&marker, b"").map_err(|e| io("writing", &marker, e))?;
                seg.unflushed_marker = Some(marker);
            }
            seg.buffer.extend_from_slice(&self.buf);
            self.written = self.buf.len() as u64;
            self.buf.clear();
        } else {
            self.spill()?;
        }
        let meta = std::mem::replace(
            &mut self.meta,
            RecordMeta {
                seq: 0,
                page_size: 0,
                commit_size: 0,
                end: WalPosition {
                    salt1: 0,
                    salt2: 0,
                    frame: 0,
                },
                end_cksum: (0, 0),
                captured_at_ms: 0,
                pgnos: Vec::new(),
                segment: 0,
                offset: 0,
            },
        );
        let seq = meta.seq;
        let len = meta.len();
        let inner = &mut *self.inner;
        let seg = inner.segment.as_mut().expect("record writer has a segment");
        seg.len += self.written;
        if !buffered {
            seg.flushed = seg.len; // spilled: the whole record is on disk, after the buffer
        }
        self.written = 0;
        inner.next_seq = seq + 1;
        inner.pending_bytes += len;
        inner.pending.push(meta);
        Ok(seq)
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if self.written > 0 {
            // Not committed: cut the partial record off so the segment stays well-formed.
            if let Some(seg) = self.inner.segment.as_mut() {
                let _ = seg.file.set_len(seg.len);
            }
        }
    }
}

fn segment_ids(seg_dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(seg_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io("listing", seg_dir, e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(hex) = name.strip_suffix(".seg") {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// Reads every well-formed record of a segment; returns them, the length of the well-formed
/// prefix and the file length.
fn read_segment(path: &Path, id: u64) -> Result<(Vec<RecordMeta>, u64, u64), SpoolError> {
    let mut f = File::open(path).map_err(|e| io("opening", path, e))?;
    let file_len = f.metadata().map_err(|e| io("reading", path, e))?.len();
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; RECORD_HEADER_SIZE as usize];
    loop {
        if offset + RECORD_HEADER_SIZE + 8 > file_len {
            break;
        }
        if f.read_exact(&mut header).is_err() || &header[0..4] != RECORD_MAGIC {
            break;
        }
        let be32 = |o: usize| u32::from_be_bytes(header[o..o + 4].try_into().unwrap());
        let seq = u64::from_be_bytes(header[4..12].try_into().unwrap());
        if records.last().is_some_and(|r: &RecordMeta| seq <= r.seq) {
            break; // a stale record from before the segment was reused
        }
        let page_size = be32(12);
        let npages = be32(40);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            break;
        }
        let body_len = npages as u64 * (4 + page_size as u64);
        if offset + RECORD_HEADER_SIZE + body_len + 8 > file_len {
            break;
        }
        let commit_size = be32(16);
        let end_cksum = (be32(32), be32(36));
        let kind = be32(52);
        let mut chain = (be32(56), be32(60));
        if kind > 2 {
            break;
        }
        let mut crc = Crc64::new();
        crc.update(&header);
        let mut pgnos = Vec::with_capacity(npages as usize);
        let mut entry = vec![0u8; 4 + page_size as usize];
        let mut ok = true;
        for i in 0..npages {
            if f.read_exact(&mut entry).is_err() {
                ok = false;
                break;
            }
            if kind == 0 {
                crc.update(&entry);
            } else {
                // The frame header's first 8 bytes: page number and, on the last frame, the
                // database size after commit.
                let mut fh = [0u8; 8];
                fh[..4].copy_from_slice(&entry[..4]);
                if i + 1 == npages {
                    fh[4..].copy_from_slice(&commit_size.to_be_bytes());
                }
                chain = crate::wal::wal_checksum(kind == 2, chain, &fh);
                chain = crate::wal::wal_checksum(kind == 2, chain, &entry[4..]);
            }
            pgnos.push(u32::from_be_bytes(entry[0..4].try_into().unwrap()));
        }
        let mut tail = [0u8; 8];
        if !ok || f.read_exact(&mut tail).is_err() || u64::from_be_bytes(tail) != crc.finish() {
            break;
        }
        if kind != 0 && chain != end_cksum {
            break;
        }
        records.push(RecordMeta {
            seq,
            page_size,
            commit_size,
            end: WalPosition {
                salt1: be32(20),
                salt2: be32(24),
                frame: be32(28),
            },
            end_cksum,
            captured_at_ms: u64::from_be_bytes(header[44..52].try_into().unwrap()),
            pgnos,
            segment: id,
            offset,
        });
        offset += RECORD_HEADER_SIZE + body_len + 8;
    }
    Ok((records, offset, file_len))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        w.commit().unwrap()
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

    #[test]
    fn state_round_trips() {
        let st = SpoolState {
            replica_url: "file:///x".into(),
            txid: 5,
            post_checksum: u64::MAX,
            page_size: 4096,
            commit: 10,
            shipped_seq: 9,
            position: Some((
                WalPosition {
                    salt1: 1,
                    salt2: 2,
                    frame: 3,
                },
                (4, 5),
            )),
            shipped_at_ms: 12,
        };
        assert_eq!(SpoolState::decode(&st.encode()).unwrap(), st);
    }
}
