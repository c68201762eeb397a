//! Reactions to the VFS calls the FFI layer intercepts: deciding at open whether a database
//! replicates, catching up with a WAL this process has not seen, and capturing every
//! committed transaction from `-wal` writes into the spool. It must stay cheap on the commit
//! path and must never fail an application's write: capture problems become "snapshot
//! needed" plus a status error.
//!
//! Capture copies at commit: when the write that completes a commit frame returns, the
//! frames of that transaction (from the last captured commit up to it) are read back from
//! the WAL (they are in the page cache), verified against the salts and checksum chain, and
//! appended to the spool. Frames of a spilled transaction that rolled back are never read,
//! because the next commit's frames overwrite them and only frames up to a commit frame are
//! taken; frames rewritten in place are read in their final form. A WAL restart (new header
//! at offset 0) starts a new chain; truncation and deletion only forget the header.

use crate::base::clock::now_ms;
use crate::base::io::ReadAt;
use crate::config::{ReplicaConfig, ReplicaTarget, Resolver};
use crate::database::{self, CaptureState, Database};
use crate::error::Error;
use crate::spool::{Integrity, RecordHeader};
use crate::wal::{
    self, FrameChain, FrameHeader, WalHeader, WalPosition, FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

static BASE_VFS_NAME: Mutex<String> = Mutex::new(String::new());
static RESOLVER: OnceLock<Resolver> = OnceLock::new();

pub fn set_base_vfs_name(name: &str) {
    *crate::base::lock::lock(&BASE_VFS_NAME) = name.to_string();
}

pub fn base_vfs_name() -> String {
    let n = crate::base::lock::lock(&BASE_VFS_NAME).clone();
    if n.is_empty() {
        "unix".into()
    } else {
        n
    }
}

/// Reads the configuration once per process; a bad config fails the load.
pub fn init_process_config() -> Result<(), Error> {
    if RESOLVER.get().is_some() {
        return Ok(());
    }
    let (resolver, warnings) = Resolver::from_process()?;
    for w in &warnings {
        crate::base::log::add_warning(&w.to_string());
    }
    let _ = RESOLVER.set(resolver);
    Ok(())
}

/// URI parameters the configuration understands.
const URI_KEYS: &[&str] = &["replica", "replica_sync_interval"];

/// A main database file is being opened: if it replicates, make sure it is registered.
pub fn on_open_main_db(
    path: &str,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DbObserver>, Error> {
    let Some(resolver) = RESOLVER.get() else {
        return Ok(None);
    };
    if path.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(path);
    let Some(cfg) = resolve_at_open(resolver, &path, uri_param)? else {
        return Ok(None);
    };
    let cfg_for_standby = cfg.clone();
    match open_database(&path, cfg) {
        Ok(db) => Ok(db.owned_here().then(|| DbObserver::new(db))),
        Err(Error::Spool(e @ crate::spool::SpoolError::Locked(_))) => {
            // Not an error for the application: its database opens normally. The owner
            // takes this process's commits from the WAL; if it goes away, this one takes
            // over (see `take_over_standbys`).
            let mut standby = crate::base::lock::lock(&STANDBY);
            if !standby.iter().any(|(p, _)| *p == path) {
                crate::base::log::add_warning(&format!(
                    "{}: {e}; it takes over if that one goes away",
                    path.display()
                ));
                standby.push((path.clone(), cfg_for_standby.clone()));
            }
            drop(standby);
            database::wake_uploader();
            Ok(None)
        }
        Err(Error::InvalidArgument(e)) => {
            crate::base::log::add_warning(&e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn resolve_at_open(
    resolver: &Resolver,
    path: &Path,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ReplicaConfig>, Error> {
    let params: Vec<(String, String)> = URI_KEYS
        .iter()
        .filter_map(|k| uri_param(k).map(|v| (k.to_string(), v)))
        .collect();
    Ok(resolver.resolve(path, &params)?)
}

/// Whether some database may need scheduled restore drills (see
/// [`crate::functions::run_scheduled_drills`]).
pub fn drills_configured() -> bool {
    RESOLVER.get().is_some_and(Resolver::schedules_drills)
}

/// A main database is about to be opened (before SQLite creates its file): whether it must
/// first be restored from its replica, and from where. It must when it replicates, neither
/// it nor its WAL exists and its configuration asks for it (`restore-if-db-not-exists`, on by
/// default here). The caller restores (an empty replica is a new database; a replica that
/// cannot be read fails the open, because an empty database created in its place would then
/// be replicated over the good replica).
pub fn restore_needed_before_open(
    path: &str,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(PathBuf, ReplicaTarget)>, Error> {
    let Some(resolver) = RESOLVER.get() else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if path.as_os_str().is_empty() || path.exists() || Path::new(&wal).exists() {
        return Ok(None);
    }
    let Some(cfg) =
        resolve_at_open(resolver, &path, uri_param)?.filter(|cfg| cfg.restore_if_missing)
    else {
        return Ok(None);
    };
    // The replica of another database here (REPLICA_URL names replicas by file name, so
    // /a/app.db and /b/app.db share one): it is not this database's, and opening will say so.
    if database::all()
        .iter()
        .any(|db| db.path != path && db.config.url() == cfg.url())
    {
        return Ok(None);
    }
    Ok(Some((path, cfg.target)))
}

/// Registers a replicated database (also used by tests that drive the shim directly).
pub fn open_database(path: &Path, cfg: ReplicaConfig) -> Result<Arc<Database>, Error> {
    let db = database::get_or_open(path, cfg)?;
    database::wake_uploader();
    Ok(db)
}

fn db_path_of(wal_path: &str) -> Option<PathBuf> {
    wal_path.strip_suffix("-wal").map(PathBuf::from)
}

/// Watches one open `-wal` file of a replicated database.
pub struct WalObserver {
    db: Arc<Database>,
}

/// The WAL of a database is being opened by a connection of this process.
pub fn on_open_wal(wal_path: &str, file: &mut dyn ReadAt) -> Option<WalObserver> {
    let db = database::get(&db_path_of(wal_path)?).filter(|db| db.owned_here())?;
    {
        let mut cap = crate::base::lock::lock(&db.capture);
        if !cap.caught_up {
            cap.caught_up = true;
            if let Err(e) = catch_up(&db, &mut cap, file) {
                capture_failed(
                    &db,
                    &mut cap,
                    &format!("reading the WAL at open: {e}"),
                    None,
                );
            }
        }
    }
    Some(WalObserver { db })
}

/// Compares the WAL on disk with what the spool holds and captures commits made since
/// (after a crash between a commit and its capture, or records lost from memory), or asks
/// for a snapshot when the WAL belongs to a generation this spool never saw. Streams the log
/// one transaction at a time.
fn catch_up(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) -> Result<(), Error> {
    let lost = std::mem::take(&mut cap.unflushed_lost);
    let mut hdr = [0u8; WAL_HEADER_SIZE];
    let header = match file.read_at(0, &mut hdr)? {
        n if n == WAL_HEADER_SIZE => WalHeader::parse(&hdr).ok(),
        _ => None,
    };
    let Some(header) = header else {
        if lost {
            owe_snapshot(
                db,
                "records held in memory were lost and the WAL they came from is gone",
            );
        }
        return Ok(()); // an empty WAL: the next writer writes a header
    };
    cap.header = Some(header);
    // Where this log continues what the spool holds, if it does.
    let mut continues = false;
    let mut chain = FrameChain::new(&header);
    match db.spool.last_position() {
        Some((pos, cksum)) if pos.salts() == header.salts() => {
            if frame_carries(file, &header, pos.frame, cksum)? {
                chain = FrameChain::resume(&header, pos.frame + 1, cksum);
                continues = true;
            } else {
                owe_snapshot(
                    db,
                    "the WAL no longer continues from the spool's last captured frame",
                );
            }
        }
        // This process saw the log start over with everything before it spooled.
        _ if db.spool.generation() == Some(header.salts()) && db.spool.state().txid != 0 => {
            continues = true
        }
        _ => {}
    }
    let mut assembler = wal::TxnAssembler::new(header.page_size);
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + header.page_size as usize];
    let mut resume = (chain.next_frame(), chain.checksum());
    let mut found_commit = false;
    loop {
        let f = chain.next_frame();
        if file.read_at(wal::frame_offset(header.page_size, f), &mut buf)? < buf.len() {
            break;
        }
        let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
        let Ok(Some(fh)) = chain.accept(h, page) else {
            break;
        };
        if let Some(txn) = assembler.push(
            WalPosition {
                salt1: header.salt1,
                salt2: header.salt2,
                frame: f,
            },
            &fh,
            page,
        ) {
            found_commit = true;
            resume = (f + 1, chain.checksum());
            if continues {
                append_txn(db, &txn, chain.checksum())?;
            }
        }
    }
    cap.chain = Some(FrameChain::resume(&header, resume.0, resume.1));
    if found_commit && !continues {
        owe_snapshot(
            db,
            "the WAL holds commits from a log generation this spool never captured",
        );
    }
    Ok(())
}

/// Commits that processes without the extension appended after this process's last
/// capture: taken from the log while it still holds them. A log this process knew that
/// another process restarted or truncated may have lost such commits, which only a snapshot
/// can close. Skipped while a commit of this process is in flight (its own capture takes it).
fn take_foreign_commits(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) {
    if cap.pending_commit.is_some() || cap.deferred_commit.is_some() {
        return;
    }
    // What other processes handed off first: the log this process knew may be gone.
    ingest_handoffs(db, cap);
    let Some(known) = cap.header else {
        // A log another process started (after handing the old one off, it continues the
        // generation the hand-off announced; otherwise catch-up decides), or none yet.
        if wal_salts(file).is_some() {
            if let Err(e) = catch_up(db, cap, file) {
                capture_failed(db, cap, &format!("reading the WAL: {e}"), None);
            }
        }
        return;
    };
    let mut hdr = [0u8; WAL_HEADER_SIZE];
    let on_disk = match file.read_at(0, &mut hdr) {
        Ok(n) if n == WAL_HEADER_SIZE => WalHeader::parse(&hdr).ok(),
        Ok(_) => None,
        Err(e) => {
            crate::base::log::error(&format!("{}: reading the WAL header: {e}", db.name));
            return;
        }
    };
    if on_disk.map(|h| h.salts()) != Some(known.salts()) {
        cap.header = None;
        cap.chain = None;
        // A restart another process handed off (see `ingest_handoffs`) announced the new
        // log, which then continues the spool: read it from its start.
        if on_disk.is_some() && on_disk.map(|h| h.salts()) == db.spool.generation() {
            if let Err(e) = catch_up(db, cap, file) {
                capture_failed(db, cap, &format!("reading the WAL: {e}"), None);
            }
            return;
        }
        owe_snapshot(
            db,
            "another process restarted or truncated the WAL; commits it made after the last capture may be missing",
        );
        return;
    }
    if let Err(e) = catch_up(db, cap, file) {
        capture_failed(
            db,
            cap,
            &format!("reading commits of another process: {e}"),
            None,
        );
    }
}

/// [`take_foreign_commits`] for `replica_sync`, which must not leave out a commit made by
/// a process without the extension just before it was called.
pub fn take_foreign_commits_now(
    db: &Database,
    open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>,
) {
    if !db.owned_here() {
        return;
    }
    // A commit of this process whose write has landed but whose capture has not run yet
    // would look like another process's: leave the log to that capture.
    if db
        .wal_writes_in_flight
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
    {
        return;
    }
    let mut cap = crate::base::lock::lock(&db.capture);
    if db
        .wal_writes_in_flight
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
    {
        return;
    }
    let Some(mut wal) = open_wal() else {
        ingest_handoffs(db, &mut cap);
        return;
    };
    // A process restarting the log hands the old one off before it writes the new header:
    // read the header, take the hand-offs, and go round again while the log keeps moving
    // on (a busy writer can restart it many times between two polls).
    for _ in 0..8 {
        let before = wal_salts(wal.as_mut());
        if ingest_handoffs(db, &mut cap) == 0 || wal_salts(wal.as_mut()) == before {
            break;
        }
    }
    if !cap.caught_up {
        // Replication was taken over from a process that died, or started before any
        // connection here opened the WAL: catch up with the whole log first.
        cap.caught_up = true;
        if let Err(e) = catch_up(db, &mut cap, wal.as_mut()) {
            capture_failed(db, &mut cap, &format!("reading the WAL: {e}"), None);
        }
        return;
    }
    take_foreign_commits(db, &mut cap, wal.as_mut());
}

/// Appends what other processes handed off when they restarted or truncated the log (the
/// commits after this spool's last position), announces the log that follows, and removes
/// the hand-off files. A hand-off of a log whose start this spool never saw cannot be
/// placed: it is dropped, and the gap it leaves is found and closed by a snapshot.
fn ingest_handoffs(db: &Database, cap: &mut CaptureState) -> usize {
    let dir = crate::spool::Spool::dir_for(&db.path);
    let pending = crate::handoff::pending(&dir);
    let count = pending.len();
    for (path, handoff) in pending {
        let Some(h) = handoff else {
            crate::base::log::error(&format!(
                "{}: dropping a torn hand-off file {}",
                db.name,
                path.display()
            ));
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let last = db.spool.last_position();
        let in_log = last.is_some_and(|(p, _)| p.salts() == h.old_salts);
        let knows_start = in_log || db.spool.generation() == Some(h.old_salts);
        if knows_start {
            let mut ok = true;
            for t in &h.txns {
                let new = match db.spool.last_position() {
                    Some((p, _)) if p.salts() == h.old_salts => t.txn.end.frame > p.frame,
                    _ => true,
                };
                if new {
                    if let Err(e) = append_txn(db, &t.txn, t.end_cksum) {
                        capture_failed(db, cap, &format!("appending a hand-off: {e}"), None);
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                flush_spool(db);
                if let Some(next) = h.next_salts {
                    if let Err(e) = db.spool.set_generation(next) {
                        crate::base::log::error(&format!("{}: {e}", db.name));
                    }
                }
            }
        } else {
            crate::base::log::notice(&format!(
                "{}: a hand-off of a log this spool never saw begin; a snapshot will close the gap",
                db.name
            ));
        }
        if cap.header.is_some_and(|x| x.salts() == h.old_salts) {
            cap.header = None;
            cap.chain = None;
        }
        let _ = std::fs::remove_file(&path);
    }
    count
}

/// The salts of the log's header on disk, if it has one.
fn wal_salts(file: &mut dyn ReadAt) -> Option<(u32, u32)> {
    let mut hdr = [0u8; WAL_HEADER_SIZE];
    match file.read_at(0, &mut hdr) {
        Ok(n) if n == WAL_HEADER_SIZE => WalHeader::parse(&hdr).ok().map(|h| h.salts()),
        _ => None,
    }
}

/// Watches the `-wal` of a database another process replicates, for the moment this
/// process restarts or truncates the log: it hands the log's commits over first.
pub struct HandoffObserver {
    spool_dir: PathBuf,
    name: String,
}

/// The WAL of a database this process does not replicate itself is being opened.
pub fn on_open_wal_elsewhere(wal_path: &str) -> Option<HandoffObserver> {
    let db_path = db_path_of(wal_path)?;
    replicated_elsewhere(&db_path).then(|| HandoffObserver {
        spool_dir: crate::spool::Spool::dir_for(&db_path),
        name: db_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    })
}

impl HandoffObserver {
    /// This process is about to write a new log header (`Some`) or truncate the log
    /// (`None`): the old log's frames are still intact. Writes its committed transactions,
    /// all of them, into a hand-off file; the owner keeps those it has not captured.
    pub fn before_log_goes(&self, new_header: Option<&[u8]>, file: &mut dyn ReadAt) {
        let mut hdr = [0u8; WAL_HEADER_SIZE];
        let old = match file.read_at(0, &mut hdr) {
            Ok(n) if n == WAL_HEADER_SIZE => WalHeader::parse(&hdr).ok(),
            _ => None,
        };
        let Some(old) = old else { return };
        let next_salts = new_header
            .filter(|d| d.len() >= WAL_HEADER_SIZE)
            .and_then(|d| WalHeader::parse(&d[..WAL_HEADER_SIZE]).ok())
            .map(|h| h.salts());
        if next_salts == Some(old.salts()) {
            return; // the same header written again: no new log
        }
        let mut chain = FrameChain::new(&old);
        let mut assembler = wal::TxnAssembler::new(old.page_size);
        let mut buf = vec![0u8; FRAME_HEADER_SIZE + old.page_size as usize];
        let mut txns = Vec::new();
        loop {
            let f = chain.next_frame();
            match file.read_at(wal::frame_offset(old.page_size, f), &mut buf) {
                Ok(n) if n == buf.len() => {}
                _ => break,
            }
            let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
            let Ok(Some(fh)) = chain.accept(h, page) else {
                break;
            };
            let pos = WalPosition {
                salt1: old.salt1,
                salt2: old.salt2,
                frame: f,
            };
            if let Some(txn) = assembler.push(pos, &fh, page) {
                txns.push(crate::handoff::HandedTxn {
                    txn,
                    end_cksum: chain.checksum(),
                });
            }
        }
        let handoff = crate::handoff::Handoff {
            old_salts: old.salts(),
            txns,
            next_salts,
        };
        if let Err(e) = crate::handoff::write(&self.spool_dir, &handoff) {
            crate::base::log::error(&format!(
                "{}: handing the WAL's commits over to the process that replicates it: {e}",
                self.name
            ));
        }
    }
}

/// Databases whose spool another process of this host owns: this process takes over their
/// replication when that process goes away (its lock is released when it dies).
static STANDBY: Mutex<Vec<(PathBuf, ReplicaConfig)>> = Mutex::new(Vec::new());

/// Whether another process of this host replicates `path` for this one: its spool was
/// locked when this process opened it, or this process is a fork of the one that does.
pub fn replicated_elsewhere(path: &Path) -> bool {
    if database::get(path).is_some_and(|db| !db.owned_here()) {
        return true;
    }
    crate::base::lock::lock(&STANDBY)
        .iter()
        .any(|(p, _)| p == path)
}

/// The databases this process stands by for, with their configuration.
pub fn standby_databases() -> Vec<(PathBuf, ReplicaConfig)> {
    crate::base::lock::lock(&STANDBY).clone()
}

/// Tries to take over every database on standby; returns whether any are left to watch.
pub fn take_over_standbys() -> bool {
    let mut standby = crate::base::lock::lock(&STANDBY);
    standby.retain(
        |(path, cfg)| match database::get_or_open(path, cfg.clone()) {
            Ok(_) => {
                crate::base::log::notice(&format!(
                    "{}: took over replication (the process that replicated it is gone)",
                    path.display()
                ));
                false
            }
            Err(Error::Spool(crate::spool::SpoolError::Locked(_))) => true,
            Err(e) => {
                crate::base::log::error(&format!(
                    "{}: cannot take over replication: {e}",
                    path.display()
                ));
                false
            }
        },
    );
    !standby.is_empty()
}

/// Whether frame `frame` (0 = the log header) still carries the running checksum `cksum`.
fn frame_carries(
    file: &mut dyn ReadAt,
    header: &WalHeader,
    frame: u32,
    cksum: (u32, u32),
) -> Result<bool, Error> {
    if frame == 0 {
        return Ok(header.checksum() == cksum);
    }
    let mut h = [0u8; FRAME_HEADER_SIZE];
    if file.read_at(wal::frame_offset(header.page_size, frame), &mut h)? < h.len() {
        return Ok(false);
    }
    Ok(FrameHeader::parse(&h).is_ok_and(|fh| fh.is_commit() && fh.checksum() == cksum))
}

/// A gap only a snapshot can close, remembered across a crash.
fn owe_snapshot(db: &Database, why: &str) {
    if let Err(e) = db.spool.mark_gap(why) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
    db.request_snapshot(why);
}

fn append_txn(db: &Database, txn: &wal::CommittedTxn, end_cksum: (u32, u32)) -> Result<(), Error> {
    let header = RecordHeader {
        page_size: txn.page_size,
        commit_size: txn.commit_size,
        end: txn.end,
        end_cksum,
        captured_at_ms: now_ms(),
        integrity: Integrity::Crc,
    };
    let mut rec = db.spool.begin_record(header, txn.pages.len() as u32)?;
    for (pgno, page) in &txn.pages {
        rec.push(*pgno, page)?;
    }
    rec.commit()?;
    db.counters().captured_txns += 1;
    Ok(())
}

fn capture_failed(db: &Database, cap: &mut CaptureState, why: &str, commit: Option<WalPosition>) {
    cap.chain = None;
    db.counters().capture_errors += 1;
    if let Some(pos) = commit {
        db.update_progress(|p| p.snapshot_must_cover = Some((pos, now_ms() + 10_000)));
    }
    if let Err(e) = db.spool.mark_gap(why) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
    db.request_snapshot(why);
    // Not an error for the user: the snapshot restores continuity by itself. (SQLite 3.40
    // itself leaves a broken checksum chain after ROLLBACK TO inside a spilled transaction.)
    crate::base::log::notice(&format!(
        "{}: capture: {why}; a snapshot will be shipped",
        db.name
    ));
}

impl WalObserver {
    /// A write to the WAL starts (before [`Self::before_write`]); [`Self::write_ended`]
    /// follows once the write and its capture are done, whatever the outcome.
    pub fn write_starting(&self) {
        self.db
            .wal_writes_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn write_ended(&self) {
        self.db
            .wal_writes_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A write to the WAL is about to happen. Before a new log header (a restart) replaces
    /// the old one, whatever still depends on the old frames is settled and on disk.
    pub fn before_write(&self, offset: u64, data: &[u8], file: &mut dyn ReadAt) {
        let db = &self.db;
        if offset != 0 || data.len() < WAL_HEADER_SIZE || !db.owned_here() {
            return;
        }
        let mut cap = crate::base::lock::lock(&db.capture);
        resolve_deferred(db, &mut cap, file);
        // The old log is still intact here (unless another process truncated it).
        take_foreign_commits(db, &mut cap, file);
        drop(cap);
        flush_spool(db);
        if let Ok(h) = WalHeader::parse(&data[..WAL_HEADER_SIZE]) {
            if let Err(e) = db.spool.set_generation(h.salts()) {
                crate::base::log::error(&format!("{}: {e}", db.name));
            }
        }
    }

    /// The WAL is about to be truncated: below a header's size, its frames go away.
    pub fn before_truncate(&self, size: u64, file: &mut dyn ReadAt) {
        let db = &self.db;
        if size >= WAL_HEADER_SIZE as u64 || !db.owned_here() {
            return;
        }
        let mut cap = crate::base::lock::lock(&db.capture);
        resolve_deferred(db, &mut cap, file);
        drop(cap);
        flush_spool(db);
    }

    /// A write to the WAL succeeded.
    pub fn after_write(&self, offset: u64, data: &[u8], file: &mut dyn ReadAt) {
        let db = &self.db;
        // Before any lock: a forked child must not wait on a mutex that a thread of its
        // parent held at the fork, and its copy of this state has no effect outside it.
        if !db.owned_here() {
            return; // a forked child: see Database::owned_here
        }
        let mut cap = crate::base::lock::lock(&db.capture);
        if offset == 0 {
            if data.len() >= WAL_HEADER_SIZE {
                // A new log generation: frames start again at 1 with new salts, overwriting
                // the old ones, so the spool must hold its records on disk from now on.
                // (`before_write` settled the old log while its frames were intact.)
                let parsed = WalHeader::parse(&data[..WAL_HEADER_SIZE]).ok();
                cap.header = parsed;
                cap.chain = parsed.map(|h| FrameChain::new(&h));
                cap.pending_commit = None;
                cap.deferred_commit = None;
                cap.rewrote_in_place = false;
                cap.last_header_frame = None;
            }
            return;
        }
        if cap.header.is_none() && offset >= WAL_HEADER_SIZE as u64 {
            // Another process started this log (after ours was deleted or truncated):
            // read its header and see whether it continues what the spool holds.
            if let Err(e) = catch_up(db, &mut cap, file) {
                capture_failed(
                    db,
                    &mut cap,
                    &format!("reading a WAL another process started: {e}"),
                    None,
                );
            }
        }
        let Some(header) = cap.header else { return };
        if offset < WAL_HEADER_SIZE as u64 {
            return;
        }
        let frame_size = FRAME_HEADER_SIZE as u64 + header.page_size as u64;
        let rel = offset - WAL_HEADER_SIZE as u64;
        let frame = (rel / frame_size) as u32 + 1;
        let within = rel % frame_size;
        buffer_frame_write(&mut cap, frame, within, data, frame_size);
        let mut ready: Option<(u32, FrameHeader)> = None;
        let mut rewritten = false;
        if within == 0 && cap.deferred_commit.is_some_and(|k| frame > k) {
            // A later transaction is writing: SQLite is done with the deferred one.
            resolve_deferred(db, &mut cap, file);
        }
        if within == 0 && data.len() >= FRAME_HEADER_SIZE {
            if let Ok(fh) = FrameHeader::parse(&data[..FRAME_HEADER_SIZE]) {
                if data.len() == FRAME_HEADER_SIZE && cap.deferred_commit == Some(frame) {
                    // The last checksum rewrite of a transaction that rewrote frames in place.
                    cap.deferred_commit = None;
                    rewritten = true;
                    ready = Some((frame, fh));
                } else if fh.is_commit() {
                    // Salts and checksums may still be zero here (after an in-place rewrite
                    // SQLite fills them in at the end); capture verifies the final frames.
                    cap.pending_commit = Some((frame, fh));
                } else if cap.pending_commit.map(|(f, _)| f) == Some(frame) {
                    cap.pending_commit = None;
                }
            }
            cap.last_header_frame = Some(frame);
        } else {
            if within == FRAME_HEADER_SIZE as u64 && cap.last_header_frame != Some(frame) {
                cap.rewrote_in_place = true;
            }
            cap.last_header_frame = None;
        }
        if ready.is_none() {
            if let Some((commit_frame, fh)) = cap.pending_commit {
                let end = offset + data.len() as u64;
                if end == wal::frame_offset(header.page_size, commit_frame) + frame_size {
                    cap.pending_commit = None;
                    ready = Some((commit_frame, fh));
                }
            }
        }
        let Some((commit_frame, fh)) = ready else {
            return;
        };
        let mode = if rewritten {
            Mode::AfterRewrite
        } else {
            Mode::Strict
        };
        match capture(db, &mut cap, header, commit_frame, fh, file, mode) {
            Ok(()) => {
                cap.rewrote_in_place = false;
                cap.deferred_commit = None;
            }
            Err(_) => {
                // Checksums can be stale until SQLite rewrites them at the end of the
                // transaction (after an in-place rewrite, or a ROLLBACK TO across a WAL
                // restart), and SQLite 3.40 sometimes never does. Wait for the rewrite; at
                // the latest, the release of the write lock settles it (`resolve_deferred`).
                cap.deferred_commit = Some(commit_frame);
                cap.rewrote_in_place = false;
                return;
            }
        }
        drop(cap);
        // Only the first pending commit needs to wake the uploader: with commits already
        // pending it has a deadline and comes back by itself (a wake-up per commit costs a
        // context switch on the commit path).
        if self.db.spool.pending_summary().is_none_or(|(n, _)| n <= 1) {
            database::wake_uploader();
        }
    }

    pub fn after_truncate(&self, size: u64) {
        if size < WAL_HEADER_SIZE as u64 && self.db.owned_here() {
            forget_wal(&self.db);
        }
    }
}

/// Writes out the spool's in-memory records before the WAL frames they came from go away.
fn flush_spool(db: &Database) {
    if let Err(e) = db.spool.flush() {
        // Without them on disk a crash would leave a gap: fall back to a snapshot.
        db.request_snapshot(&format!("writing the spool failed: {e}"));
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
}

/// The log is gone (truncated or deleted): the next writer starts a new one with a header.
fn forget_wal(db: &Database) {
    flush_spool(db);
    let mut cap = crate::base::lock::lock(&db.capture);
    abandon_deferred(
        db,
        &mut cap,
        "the WAL went away before a commit could be captured",
    );
    cap.header = None;
    cap.chain = None;
    cap.pending_commit = None;
    cap.deferred_commit = None;
    cap.rewrote_in_place = false;
    cap.last_header_frame = None;
}

/// Most transactions' frames are plain appends (header, then page, frame after frame):
/// keep them, so capture verifies and spools them without reading the WAL back.
const TXN_BUFFER_MAX: usize = 4 << 20;

fn buffer_frame_write(
    cap: &mut CaptureState,
    frame: u32,
    within: u64,
    data: &[u8],
    frame_size: u64,
) {
    let fs = frame_size as usize;
    let buffered_frames = (cap.txn_buffer.len() / fs) as u32;
    let partial = cap.txn_buffer.len() % fs;
    if within == 0 && (data.len() == FRAME_HEADER_SIZE || data.len() == fs) && partial == 0 {
        let next_expected = cap.chain.as_ref().map(|c| c.next_frame());
        if cap.txn_buffer.is_empty() || Some(frame) == next_expected {
            // The first frame after the last capture (also after a rollback rewound).
            cap.txn_buffer.clear();
            cap.txn_first = frame;
            cap.txn_buffer_ok = Some(frame) == next_expected;
        } else if frame != cap.txn_first + buffered_frames {
            cap.txn_buffer_ok = false;
        }
    } else if within == FRAME_HEADER_SIZE as u64
        && data.len() + FRAME_HEADER_SIZE == fs
        && partial == FRAME_HEADER_SIZE
    {
        if frame + 1 != cap.txn_first + buffered_frames + 1 {
            cap.txn_buffer_ok = false;
        }
    } else {
        cap.txn_buffer_ok = false;
    }
    if cap.txn_buffer_ok && cap.txn_buffer.len() + data.len() <= TXN_BUFFER_MAX {
        cap.txn_buffer.extend_from_slice(data);
    } else {
        cap.txn_buffer_ok = false;
        cap.txn_buffer.clear();
        cap.txn_buffer.shrink_to(fs * 16);
    }
}

/// Reads the frames of one transaction back from the WAL and appends them to the spool.
fn capture(
    db: &Database,
    cap: &mut CaptureState,
    header: WalHeader,
    commit_frame: u32,
    fh: FrameHeader,
    file: &mut dyn ReadAt,
    mode: Mode,
) -> Result<(), String> {
    let chain = cap
        .chain
        .as_mut()
        .ok_or("the WAL position was unknown before this commit")?;
    let first = chain.next_frame();
    if commit_frame < first {
        return Err(format!(
            "commit frame {commit_frame} precedes the next expected frame {first}"
        ));
    }
    let record = RecordHeader {
        page_size: header.page_size,
        commit_size: fh.commit_size,
        end: WalPosition {
            salt1: header.salt1,
            salt2: header.salt2,
            frame: commit_frame,
        },
        end_cksum: (fh.cksum1, fh.cksum2),
        captured_at_ms: now_ms(),
        // After an in-place rewrite the log's own chain may have holes (see below), so the
        // spool protects such a record with its own CRC.
        integrity: if mode != Mode::Strict {
            Integrity::Crc
        } else {
            Integrity::WalChain {
                start: chain.checksum(),
                big_endian: header.big_endian_checksums(),
            }
        },
    };
    let mut trial = chain.clone();
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    let nframes = (commit_frame - first + 1) as usize;
    let written = std::mem::take(&mut cap.txn_buffer);
    let use_written =
        cap.txn_buffer_ok && cap.txn_first == first && written.len() == nframes * frame_size;
    let mut rec = db
        .spool
        .begin_record(record, nframes as u32)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; if use_written { 0 } else { frame_size }];
    for (i, f) in (first..=commit_frame).enumerate() {
        let frame_bytes: &[u8] = if use_written {
            &written[i * frame_size..(i + 1) * frame_size]
        } else {
            let off = wal::frame_offset(header.page_size, f);
            match file.read_at(off, &mut buf) {
                Ok(n) if n == buf.len() => {}
                Ok(_) => return Err(format!("WAL frame {f} is missing")),
                Err(e) => return Err(format!("reading WAL frame {f}: {e}")),
            }
            &buf
        };
        let (h, page) = frame_bytes.split_at(FRAME_HEADER_SIZE);
        match trial.accept(h, page) {
            Ok(Some(frame)) => rec.push(frame.pgno, page).map_err(|e| e.to_string())?,
            // SQLite 3.40 writes frames with zero salts and checksums while it owes a checksum
            // rewrite, and a ROLLBACK TO inside a spilled transaction can leave such frames
            // unrewritten in a committed transaction (its WAL index still counts them; the
            // frames after them are chained from their zero checksum). Accept exactly that.
            _ if mode != Mode::Strict && is_unsealed_frame(h) => {
                let pgno = u32::from_be_bytes(h[0..4].try_into().unwrap());
                rec.push(pgno, page).map_err(|e| e.to_string())?;
                trial = FrameChain::resume(&header, f + 1, (0, 0));
            }
            // SQLite is done with the transaction (its write lock is released) and its WAL
            // index counts these frames as committed even though their checksums were never
            // rewritten: take them as written, as long as they belong to this log.
            _ if mode == Mode::Lenient
                && h[8..16]
                    == [header.salt1.to_be_bytes(), header.salt2.to_be_bytes()].concat()[..] =>
            {
                let pgno = u32::from_be_bytes(h[0..4].try_into().unwrap());
                rec.push(pgno, page).map_err(|e| e.to_string())?;
                let stored = (
                    u32::from_be_bytes(h[16..20].try_into().unwrap()),
                    u32::from_be_bytes(h[20..24].try_into().unwrap()),
                );
                trial = FrameChain::resume(&header, f + 1, stored);
            }
            _ => {
                return Err(format!(
                    "WAL frame {f} does not continue the checksum chain"
                ))
            }
        }
    }
    crate::fault::point("capture.before_append");
    rec.commit().map_err(|e| e.to_string())?;
    crate::fault::point("capture.after_append");
    *chain = trial;
    // Reuse the allocation for the next transaction.
    cap.txn_buffer = written;
    cap.txn_buffer.clear();
    db.counters().captured_txns += 1;
    Ok(())
}

/// How strictly capture checks the frames it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Salts and the checksum chain must hold.
    Strict,
    /// SQLite has just rewritten the checksums: frames it left unsealed are accepted too.
    AfterRewrite,
    /// The transaction is over (see `resolve_deferred`): frames of this log are accepted.
    Lenient,
}

/// Settles a commit whose frames did not verify when it was written.
fn resolve_deferred(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) {
    let Some(k) = cap.deferred_commit.take() else {
        return;
    };
    let Some(header) = cap.header else { return };
    let mut h = [0u8; FRAME_HEADER_SIZE];
    let fh = match file.read_at(wal::frame_offset(header.page_size, k), &mut h) {
        Ok(n) if n == h.len() => FrameHeader::parse(&h).ok(),
        _ => None,
    };
    let pos = WalPosition {
        salt1: header.salt1,
        salt2: header.salt2,
        frame: k,
    };
    let result = match fh {
        Some(fh) if fh.is_commit() => capture(db, cap, header, k, fh, file, Mode::Lenient),
        _ => Err(format!("WAL frame {k} is no longer a commit frame")),
    };
    if let Err(why) = result {
        capture_failed(db, cap, &why, Some(pos));
        let stored = fh.map(|f| (f.cksum1, f.cksum2)).unwrap_or((0, 0));
        cap.chain = Some(FrameChain::resume(&header, k + 1, stored));
    }
    database::wake_uploader();
}

/// Watches a replicated database's main file for the end of write transactions.
pub struct DbObserver {
    db: Arc<Database>,
}

impl Drop for DbObserver {
    /// The last connection of this process to the database closed: ship what is pending
    /// and hand the replica's lease back, waiting at most its `shutdown-sync-timeout`
    /// (`REPLICA_SHUTDOWN_SYNC_TIMEOUT`; default 2 s). Nothing depends on it: what is
    /// not shipped stays in the spool for the next process, and a lease not handed back
    /// expires.
    fn drop(&mut self) {
        let left = self
            .db
            .open_handles
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if left == 1 && self.db.owned_here() {
            on_last_close(&self.db);
        }
    }
}

fn on_last_close(db: &Database) {
    let timeout = db.config.shutdown_sync_timeout;
    if timeout.is_zero() {
        return;
    }
    let deadline = std::time::Instant::now() + timeout;
    let target = db.spool.last_seq();
    let request = db.progress().lease_release_requests + 1;
    db.update_progress(|p| {
        p.flush_requested = true;
        p.lease_release_requests = request;
    });
    database::wake_uploader();
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let _ = db.wait_for(left, |p| {
        (p.shipped_seq >= target && p.needs_snapshot.is_none() && p.lease_released >= request)
            || p.last_error.is_some()
    });
}

impl DbObserver {
    fn new(db: Arc<Database>) -> DbObserver {
        db.open_handles
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        DbObserver { db }
    }

    /// SQLite released the WAL write lock: every write of the transaction is done, so a
    /// deferred commit can be settled now, before the application sees COMMIT return.
    pub fn after_write_unlock(&self, open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>) {
        settle_deferred(&self.db, open_wal);
    }

    pub fn db_path(&self) -> &Path {
        &self.db.path
    }
}

/// Settles a deferred commit now, reading the WAL through `open_wal`. The write-lock release
/// does this in normal locking mode; `replica_sync` does it too, for exclusive locking mode
/// (no shared-memory locks to observe) and any path that skipped the release.
pub fn settle_deferred(db: &Database, open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>) {
    if !db.owned_here() {
        return;
    }
    let mut cap = crate::base::lock::lock(&db.capture);
    if cap.deferred_commit.is_none() {
        return;
    }
    match open_wal() {
        Some(mut wal) => resolve_deferred(db, &mut cap, wal.as_mut()),
        None => abandon_deferred(
            db,
            &mut cap,
            "the WAL could not be reopened to capture a commit",
        ),
    }
}

/// Gives up on a deferred commit: a snapshot that contains it will be shipped instead.
fn abandon_deferred(db: &Database, cap: &mut CaptureState, why: &str) {
    if let (Some(h), Some(k)) = (cap.header, cap.deferred_commit.take()) {
        let pos = WalPosition {
            salt1: h.salt1,
            salt2: h.salt2,
            frame: k,
        };
        capture_failed(db, cap, why, Some(pos));
    }
}

fn is_unsealed_frame(h: &[u8]) -> bool {
    h.len() == FRAME_HEADER_SIZE && h[0..4] != [0; 4] && h[8..24].iter().all(|&b| b == 0)
}

/// A file is about to be deleted; a deleted WAL means the next writer starts a new log.
pub fn before_delete(path: &str) {
    let Some(db) = db_path_of(path).and_then(|p| database::get(&p)) else {
        return;
    };
    if db.owned_here() {
        forget_wal(&db);
    }
}

/// What the process configuration says about a database path (for restore by name).
pub fn resolve_for_path(path: &Path) -> Result<Option<ReplicaConfig>, Error> {
    match RESOLVER.get() {
        Some(r) => Ok(r.resolve(path, &[])?),
        None => Ok(None),
    }
}
