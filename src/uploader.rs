//! Ships spooled transactions to the store as LTX files: a steppable per-database worker
//! (`DbUploader::step`, driven directly by tests) and one lazily started background thread
//! per process that steps every database. It owns batching, snapshots, txids and the
//! replicated database checksum; it must never block a commit (it only takes the write lock
//! through a private connection, for snapshots).
//!
//! Batching: a commit that arrives after an idle period (nothing shipped for at least the
//! sync interval) is shipped at once; while commits keep coming, one file per interval. An
//! idle database makes no requests at all. Txids count shipped files, as in Litestream:
//! each level-0 file has min = max = previous + 1; a snapshot asked for (first upload, gap,
//! `replica_snapshot()`) is `1-<txid + 1>` at level 9, while a scheduled one holds exactly
//! the replicated state and is `1-<txid>`, so level 0 stays contiguous.
//!
//! Lifecycle (planned by `lifecycle`, run here when nothing is due to ship): compaction of
//! each level at its window, from local copies of the files it uploaded (`<spool>/cache/`)
//! or downloads; scheduled snapshots; retention deletes. The replica's files are known from
//! one LIST at start-up and then from this uploader's own uploads and deletes.

use crate::base::clock::now_ms;
use crate::base::io::ReadAt;
use crate::database::{self, Database};
use crate::error::Error;
use crate::lifecycle::{self, FileId, KnownFile};
use crate::ltx::{self, Decoder, Encoder, Header};
use crate::snapshot::{map_indexed_pages, read_committed_page, read_wal_header, SnapshotSource};
use crate::spool::{RecordMeta, SpoolState};
use crate::store::{keys, ObjectStore, StoreError};
use crate::wal;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Level-0 batches larger than this are split at a transaction boundary.
const MAX_BATCH_BYTES: u64 = 256 << 20;
const MAX_BACKOFF_MS: u64 = 30_000;
/// The WAL is looked at for uncaptured commits every sync interval, at least this often.
pub const WAL_POLL_MAX_MS: u64 = 250;

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to ship.
    Idle,
    /// Something is pending; come back at this time (ms since the epoch).
    WaitUntil(u64),
    Shipped {
        txid: u64,
    },
    Snapshot {
        txid: u64,
    },
    /// Files of `level - 1` were merged into `files` new files of `level`.
    Compacted {
        level: u8,
        files: usize,
    },
    /// Retention deleted this many files.
    Retained {
        deleted: usize,
    },
    /// The step failed; it will be retried after a backoff, until this time.
    Failed {
        retry_at: u64,
        error: String,
    },
}

pub struct DbUploader {
    db: Arc<Database>,
    store: Result<Box<dyn ObjectStore>, String>,
    prefix: String,
    initialized: bool,
    /// Per-page checksums of the replicated state; `None` until known (then a snapshot).
    table: Option<Vec<u64>>,
    /// Next txid when the replica's own state does not follow from the spool's.
    remote_max_txid: u64,
    last_ship_ms: u64,
    failures: u32,
    retry_at: u64,
    seed: u64,
    /// Snapshot attempts in a row put off because a new log was being started.
    restart_waits: u32,
    /// When to look at the WAL for commits nobody captured.
    next_wal_poll: u64,
    /// The replica's LTX files as this uploader knows them: listed at start-up, then kept
    /// up to date from its own uploads and deletes (no LIST in the steady state).
    known: BTreeMap<FileId, KnownFile>,
    /// When each compaction level (index = level - 1) last ran; 0 = not yet this process.
    last_compaction: Vec<u64>,
    last_retention: u64,
    /// When the newest snapshot was taken (its header holds the time of its state).
    last_snapshot_at: u64,
    /// Set while a lifecycle job runs, so that its failure backs off lifecycle jobs only.
    lifecycle_failed: bool,
    lifecycle_retry_at: u64,
    /// The `now` of the step running, for the lease checks before each write.
    step_now: u64,
    /// This uploader's name in the lease, the version (ETag) of the lease it last wrote and
    /// until when that lease lets it write.
    owner_id: String,
    lease_version: Option<String>,
    lease_until: u64,
    lease_ttl_ms: u64,
    /// The store cannot do conditional writes: replicate without a lease (said once).
    lease_unsupported: bool,
}

/// Local copies of uploaded files larger than this are not kept for compaction.
const MAX_CACHED_BYTES: u64 = 64 << 20;

impl DbUploader {
    pub fn new(db: Arc<Database>) -> DbUploader {
        let store = crate::store::open(&db.config.target).map_err(|e| e.to_string());
        Self::with_store(db, store)
    }

    pub fn with_store(
        db: Arc<Database>,
        store: Result<Box<dyn ObjectStore>, String>,
    ) -> DbUploader {
        let prefix = match &db.config.target {
            crate::config::ReplicaTarget::S3(t) => t.prefix.clone(),
            crate::config::ReplicaTarget::File { .. } => String::new(),
        };
        let seed = now_ms() ^ (std::process::id() as u64) << 32;
        DbUploader {
            db,
            store,
            prefix,
            initialized: false,
            table: None,
            remote_max_txid: 0,
            last_ship_ms: 0,
            failures: 0,
            retry_at: 0,
            restart_waits: 0,
            next_wal_poll: 0,
            seed,
            known: BTreeMap::new(),
            last_compaction: Vec::new(),
            last_retention: 0,
            last_snapshot_at: 0,
            lifecycle_failed: false,
            lifecycle_retry_at: 0,
            step_now: 0,
            owner_id: String::new(), // set below, from the spool
            lease_version: None,
            lease_until: 0,
            lease_ttl_ms: std::env::var("REPLICA_LEASE_TTL")
                .ok()
                .and_then(|v| crate::config::parse_duration(&v).ok())
                .map_or(crate::lease::LEASE_TTL_MS, |d| d.as_millis() as u64)
                .max(1),
            lease_unsupported: false,
        }
        .with_owner_id()
    }

    fn with_owner_id(mut self) -> DbUploader {
        self.owner_id = crate::lease::owner_id(&host_name(), &self.db.spool.instance_id());
        self
    }

    /// Makes sure this uploader holds the replica's lease for a while longer before it
    /// writes to the replica: renews it (conditionally on the version it wrote) once half
    /// of it is gone, takes it over when it is absent or expired, and refuses with
    /// [`Error::LeaseHeld`] while another uploader's is valid.
    fn hold_lease(&mut self) -> Result<(), Error> {
        let now = self.step_now;
        if self.lease_unsupported || self.lease_until > now + self.lease_ttl_ms / 2 {
            return Ok(());
        }
        let key = self.lease_key();
        let ours = crate::lease::Lease {
            owner: self.owner_id.clone(),
            expires_ms: now + self.lease_ttl_ms,
        }
        .encode();
        let store = self.store()?;
        let written = match self.lease_version.as_deref() {
            Some(v) => match store.write_if(&key, &ours, Some(v)) {
                Ok(v) => Some(v),
                Err(StoreError::PreconditionFailed(_)) => None, // changed since: look
                Err(e) => return Err(self.lease_error(e)),
            },
            None => None,
        };
        let version = match written {
            Some(v) => v,
            None => {
                let (found, version) = match store.read_versioned(&key) {
                    Ok((body, v)) => (Some(body), Some(v)),
                    Err(StoreError::NotFound(_)) => (None, None),
                    Err(e) => return Err(self.lease_error(e)),
                };
                match crate::lease::decide(found.as_deref(), &self.owner_id, now) {
                    crate::lease::Decision::Held { owner, until } => {
                        self.lease_version = None;
                        self.lease_until = 0;
                        return Err(Error::LeaseHeld(owner, until));
                    }
                    crate::lease::Decision::Take => {
                        match store.write_if(&key, &ours, version.as_deref()) {
                            Ok(v) => v,
                            // Another uploader wrote it between our read and write.
                            Err(StoreError::PreconditionFailed(_)) => {
                                return Err(Error::LeaseHeld(
                                    "another uploader, just now".into(),
                                    now + self.lease_ttl_ms,
                                ))
                            }
                            Err(e) => return Err(self.lease_error(e)),
                        }
                    }
                }
            }
        };
        crate::fault::point("lease.after_write");
        self.lease_version = Some(version);
        self.lease_until = now + self.lease_ttl_ms;
        Ok(())
    }

    /// Writes an expired lease over ours, so that another uploader can take over at once.
    fn release_lease(&mut self) -> Result<(), Error> {
        let Some(version) = self.lease_version.take() else {
            return Ok(());
        };
        self.lease_until = 0;
        let key = self.lease_key();
        let expired = crate::lease::Lease {
            owner: self.owner_id.clone(),
            expires_ms: 0,
        }
        .encode();
        match self.store()?.write_if(&key, &expired, Some(&version)) {
            Ok(_) | Err(StoreError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn lease_key(&self) -> String {
        if self.prefix.is_empty() {
            crate::lease::LEASE_NAME.to_string()
        } else {
            format!("{}/{}", self.prefix, crate::lease::LEASE_NAME)
        }
    }

    /// A store that cannot do conditional writes replicates without a lease (said once);
    /// other errors are the store's.
    fn lease_error(&mut self, e: StoreError) -> Error {
        let m = e.to_string();
        if m.contains("conditional writes are not supported") || m.contains("NotImplemented") {
            self.lease_unsupported = true;
            crate::base::log::notice(&format!(
                "{}: the store cannot do conditional writes ({m}); replicating without a lease, so two hosts must not share this replica",
                self.db.name
            ));
        }
        Error::Store(e)
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// When this database's WAL is next looked at for commits nobody captured.
    pub fn next_wal_poll(&self) -> u64 {
        self.next_wal_poll
    }

    /// Does at most one unit of work: an initial listing, a snapshot, or one batch.
    pub fn step(&mut self, now: u64, source: &dyn SnapshotSource) -> Step {
        self.step_now = now;
        // A replica_sync() call earns one attempt even during a backoff.
        if now < self.retry_at && !self.db.progress().flush_requested {
            return Step::WaitUntil(self.retry_at);
        }
        match self.try_step(now, source) {
            Err(Error::NotWal(_)) => {
                // Nothing to do until the database is in WAL mode; its first WAL commit wakes us.
                self.db.counters().state = "waiting for WAL mode";
                Step::Idle
            }
            Ok(step) => {
                if matches!(
                    step,
                    Step::Shipped { .. }
                        | Step::Snapshot { .. }
                        | Step::Compacted { .. }
                        | Step::Retained { .. }
                ) {
                    self.failures = 0;
                    self.db.update_progress(|p| {
                        p.last_error = None;
                        p.retries = 0;
                        p.next_retry_at_ms = None;
                    });
                }
                self.refresh_counters(&step);
                step
            }
            Err(Error::LeaseHeld(owner, until)) => {
                // Not a failure: another uploader has the replica. Keep spooling; look
                // again when its lease runs out (it renews it while it uploads).
                let error = Error::LeaseHeld(owner, until).to_string();
                let retry_at = until.max(now + 1);
                // Whatever asked (shipping or a lifecycle job), everything waits for it.
                self.lifecycle_failed = false;
                self.retry_at = retry_at;
                let changed = self.db.progress().last_error.as_deref() != Some(error.as_str());
                self.db.update_progress(|p| {
                    p.last_error = Some(error.clone());
                    p.flush_requested = false;
                    p.next_retry_at_ms = Some(retry_at);
                    p.failed_attempts += 1;
                });
                if changed {
                    crate::base::log::notice(&format!("{}: {error}", self.db.name));
                }
                self.db.counters().state = "lease held elsewhere";
                Step::Failed { retry_at, error }
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                // Exponential backoff with jitter: 0.5 s, 1 s, 2 s … capped, ±25%.
                let base = (500u64 << self.failures.min(8).saturating_sub(1)).min(MAX_BACKOFF_MS);
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = (self.seed >> 33) % (base / 2 + 1);
                let retry_at = now + base * 3 / 4 + jitter;
                if std::mem::take(&mut self.lifecycle_failed) {
                    // Compaction, retention or a scheduled snapshot failed: only they wait;
                    // shipping goes on.
                    self.lifecycle_retry_at = retry_at;
                } else {
                    self.retry_at = retry_at;
                }
                let error = e.to_string();
                let failures = self.failures;
                self.db.update_progress(|p| {
                    p.last_error = Some(error.clone());
                    p.flush_requested = false;
                    p.retries = failures;
                    p.next_retry_at_ms = Some(retry_at);
                    p.failed_attempts += 1;
                });
                self.db.counters().upload_errors += 1;
                crate::base::log::error(&format!("{}: {error}", self.db.name));
                let step = Step::Failed { retry_at, error };
                self.refresh_counters(&step);
                step
            }
        }
    }

    fn refresh_counters(&self, step: &Step) {
        if *step == Step::Idle && self.db.counters().state == "waiting for WAL mode" {
            return;
        }
        let mut c = self.db.counters();
        if let Ok(store) = &self.store {
            c.requests = store.request_counts();
        }
        c.state = match step {
            Step::Failed { .. } => "retrying",
            Step::WaitUntil(_) => "pending",
            _ => "replicating",
        };
    }

    fn store(&self) -> Result<&dyn ObjectStore, Error> {
        self.store
            .as_deref()
            .map_err(|e| Error::Unsupported(e.clone()))
    }

    fn key(&self, level: u8, min: u64, max: u64) -> String {
        keys::s3_key(&self.prefix, level, min, max)
    }

    fn try_step(&mut self, now: u64, source: &dyn SnapshotSource) -> Result<Step, Error> {
        if !self.initialized {
            self.initialize(now)?;
        }
        // The last connection closed: once everything is shipped, hand the lease back.
        let progress = self.db.progress();
        if progress.lease_release_requests > progress.lease_released
            && self.db.spool.pending_summary().is_none()
            && progress.needs_snapshot.is_none()
        {
            self.release_lease()?;
            let done = progress.lease_release_requests;
            self.db
                .update_progress(|p| p.lease_released = p.lease_released.max(done));
        }
        // Commits of processes that write without capturing them (no extension, or one that
        // leaves replication to this process) are taken from the WAL once per interval.
        let interval = self.db.config.sync_interval.as_millis() as u64;
        if now >= self.next_wal_poll {
            self.next_wal_poll = now + interval.clamp(100, WAL_POLL_MAX_MS);
            crate::shim::take_foreign_commits_now(&self.db, &mut || source.open_wal(&self.db.path));
        }
        if self.db.progress().needs_snapshot.is_some() || self.table.is_none() {
            return self.snapshot(now, source);
        }
        let Some((_, first_captured_at)) = self.db.spool.pending_summary() else {
            self.db.update_progress(|p| p.flush_requested = false);
            return self.lifecycle_step(now, source, Step::Idle);
        };
        let flush = self.db.progress().flush_requested;
        let due = if flush || self.last_ship_ms + interval <= first_captured_at {
            now // after an idle period, or asked for: ship at once
        } else {
            self.last_ship_ms + interval
        };
        if now < due {
            return self.lifecycle_step(now, source, Step::WaitUntil(due));
        }
        self.ship_batch(now, &self.db.spool.pending())
    }

    /// Start-up: one LIST to learn where the replica stands, compared with the spool.
    fn initialize(&mut self, now: u64) -> Result<(), Error> {
        let store = self.store()?;
        let list_prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let objects = store.list(&list_prefix)?;
        let remote_max = objects
            .iter()
            .filter_map(|o| o.key.rsplit('/').next().and_then(keys::parse_ltx_filename))
            .map(|(_, max)| max)
            .max()
            .unwrap_or(0);
        let mut known = BTreeMap::new();
        for o in &objects {
            let Some((level, min_txid, max_txid)) = keys::parse_s3_key(&self.prefix, &o.key) else {
                continue;
            };
            // Snapshot times decide retention: read them from the LTX headers (a few small
            // ranged GETs at start-up); the other levels go by the object's modified time.
            let timestamp_ms = if level == keys::SNAPSHOT_LEVEL {
                store
                    .get_range(&o.key, 0, ltx::HEADER_SIZE as u64)
                    .ok()
                    .and_then(|b| Header::decode(&b).ok())
                    .map_or(o.modified_ms, |h| h.timestamp_ms)
            } else {
                o.modified_ms.min(now) // a store clock ahead of ours must not delay retention
            };
            let id = FileId {
                level,
                min_txid,
                max_txid,
            };
            known.insert(
                id,
                KnownFile {
                    id,
                    timestamp_ms,
                    size: o.size,
                },
            );
        }
        // When the newest snapshot was taken (its object's time: a scheduled snapshot's
        // header holds the time of its state, from before the boundary that made it due).
        let newest_snapshot = objects
            .iter()
            .filter_map(|o| Some((keys::parse_s3_key(&self.prefix, &o.key)?, o.modified_ms)))
            .filter(|((level, _, _), _)| *level == keys::SNAPSHOT_LEVEL)
            .max_by_key(|((_, _, max), _)| *max);
        self.last_snapshot_at = match newest_snapshot {
            Some(((level, min_txid, max_txid), modified_ms)) => {
                let header_time = known
                    .get(&FileId {
                        level,
                        min_txid,
                        max_txid,
                    })
                    .map_or(0, |f| f.timestamp_ms);
                modified_ms.min(now).max(header_time)
            }
            None => 0,
        };
        self.known = known;
        self.remote_max_txid = remote_max;
        self.prune_cache();
        let state = self.db.spool.state();
        let url = self.db.config.url();
        if state.txid == 0 || state.txid != remote_max || state.replica_url != url {
            if state.txid != 0 {
                self.db.request_snapshot(&format!(
                    "the replica is at txid {remote_max} but this spool shipped through txid {}",
                    state.txid
                ));
            } else {
                self.db.request_snapshot("first upload of this database");
            }
        } else {
            let table = self.db.spool.load_page_checksums()?;
            let xor = table.iter().fold(0u64, |a, b| a ^ b);
            if table.len() as u32 == state.commit && xor == state.post_checksum {
                self.table = Some(table);
            } else {
                self.db
                    .request_snapshot("the spool's page checksums do not match its state");
            }
        }
        self.initialized = true;
        Ok(())
    }

    fn snapshot(&mut self, now: u64, source: &dyn SnapshotSource) -> Result<Step, Error> {
        // Before reading the whole database: a replica another uploader holds gets nothing.
        self.hold_lease()?;
        let state = self.db.spool.state();
        let txid = state.txid.max(self.remote_max_txid) + 1;
        let scratch = self.db.spool.scratch_path("snapshot.ltx.tmp");
        let db = self.db.clone();
        let progress = db.progress();
        let request = progress.snapshot_request;
        let reason = progress
            .needs_snapshot
            .clone()
            .unwrap_or_else(|| "the replicated state is unknown".into());
        let built = match read_snapshot(&db, source, txid, now, &scratch)? {
            SnapshotRead::Built(built) => built,
            SnapshotRead::LogStarting => {
                let _ = std::fs::remove_file(&scratch);
                self.restart_waits += 1;
                if self.restart_waits > 250 {
                    self.restart_waits = 0;
                    return Err(Error::Io(
                        "the WAL header and SQLite's WAL index have disagreed for 5 s; will retry"
                            .into(),
                    ));
                }
                return Ok(Step::WaitUntil(now + 20));
            }
        };
        self.restart_waits = 0;
        let Some(snap) = built else {
            // An empty database: nothing to replicate until its first commit.
            self.db.update_progress(|p| {
                if p.snapshot_request == request {
                    p.needs_snapshot = None;
                }
            });
            return Ok(Step::Idle);
        };
        // A snapshot asked for because a commit could not be captured must contain it; the
        // commit becomes visible to readers a moment after its capture failed.
        if let Some((pos, until)) = progress.snapshot_must_cover {
            let covered = match snap.position {
                Some((p, _)) => p.salts() != pos.salts() || p.frame >= pos.frame,
                None => true,
            };
            if !covered && now < until {
                let _ = std::fs::remove_file(&scratch);
                return Ok(Step::WaitUntil(now + 20));
            }
        }
        crate::base::log::notice(&format!(
            "{}: shipping snapshot txid {txid}: {reason}",
            self.db.name
        ));
        let key = self.key(keys::SNAPSHOT_LEVEL, 1, txid);
        let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = self.hold_lease() {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
        self.store()?.put_file(&key, &scratch)?;
        crate::fault::point("snapshot.after_put");
        let _ = std::fs::remove_file(&scratch);
        self.remember(keys::SNAPSHOT_LEVEL, 1, txid, now, size);
        self.last_snapshot_at = now;
        let new_state = SpoolState {
            replica_url: self.db.config.url(),
            txid,
            post_checksum: snap.raw_checksum,
            page_size: snap.page_size,
            commit: snap.commit,
            shipped_seq: snap.seq,
            position: snap.position,
            shipped_at_ms: now,
        };
        self.db.spool.store_page_checksums(&snap.table, &[], true)?;
        self.db.spool.mark_shipped(new_state)?;
        if self.db.progress().snapshot_request == request {
            self.db.spool.clear_gap();
        }
        self.table = Some(snap.table);
        self.remote_max_txid = txid;
        self.last_ship_ms = now;
        {
            let mut c = self.db.counters();
            c.uploads += 1;
            c.snapshots += 1;
            c.bytes_uploaded += size;
            c.last_upload_at_ms = Some(now);
            c.state = "replicating";
            if let Ok(store) = &self.store {
                c.requests = store.request_counts();
            }
        }
        self.db.update_progress(|p| {
            p.txid = txid;
            p.shipped_seq = snap.seq;
            p.last_error = None;
            p.retries = 0;
            p.next_retry_at_ms = None;
            if p.snapshot_request == request {
                p.needs_snapshot = None;
                p.snapshot_must_cover = None;
            }
            p.snapshots += 1;
        });
        Ok(Step::Snapshot { txid })
    }

    fn remember(&mut self, level: u8, min_txid: u64, max_txid: u64, timestamp_ms: u64, size: u64) {
        let id = FileId {
            level,
            min_txid,
            max_txid,
        };
        self.known.insert(
            id,
            KnownFile {
                id,
                timestamp_ms,
                size,
            },
        );
    }

    /// Where local copies of uploaded files wait for the compaction into the next level:
    /// `<spool>/cache/<level>/<min>-<max>.ltx`.
    fn cache_path(&self, id: FileId) -> PathBuf {
        self.db
            .spool
            .scratch_path("cache")
            .join(id.level.to_string())
            .join(keys::ltx_filename(id.min_txid, id.max_txid))
    }

    /// Keeps `file`, just uploaded as `id`, if a higher level will compact it; else
    /// removes it.
    fn keep_local_copy(&self, id: FileId, file: &Path, size: u64) {
        let path = self.cache_path(id);
        let kept = id.level < self.db.config.lifecycle.max_level()
            && size <= MAX_CACHED_BYTES
            && path
                .parent()
                .is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
            && std::fs::rename(file, &path).is_ok();
        if !kept {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Drops local copies the next level already holds or the replica no longer has, so
    /// the cache stays bounded by what the next compactions need.
    fn prune_cache(&self) {
        let root = self.db.spool.scratch_path("cache");
        let Ok(levels) = std::fs::read_dir(&root) else {
            return;
        };
        for dir in levels.flatten() {
            let level: Option<u8> = dir.file_name().to_str().and_then(|n| n.parse().ok());
            let next_max = level.map(|l| self.level_max(l + 1));
            let Ok(entries) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let keep = match (level, next_max) {
                    (Some(level), Some(next_max)) => name
                        .to_str()
                        .and_then(keys::parse_ltx_filename)
                        .is_some_and(|(min, max)| {
                            max > next_max
                                && self.known.contains_key(&FileId {
                                    level,
                                    min_txid: min,
                                    max_txid: max,
                                })
                        }),
                    _ => false,
                };
                if !keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    fn level_max(&self, level: u8) -> u64 {
        self.known
            .keys()
            .filter(|id| id.level == level)
            .map(|id| id.max_txid)
            .max()
            .unwrap_or(0)
    }

    /// Runs at most one due lifecycle job (a compaction level, a scheduled snapshot, a
    /// retention pass); otherwise returns `otherwise`, woken for the next job that will be
    /// due.
    fn lifecycle_step(
        &mut self,
        now: u64,
        source: &dyn SnapshotSource,
        otherwise: Step,
    ) -> Result<Step, Error> {
        if now < self.lifecycle_retry_at {
            return Ok(match otherwise {
                Step::WaitUntil(t) => Step::WaitUntil(t.min(self.lifecycle_retry_at)),
                _ => Step::WaitUntil(self.lifecycle_retry_at),
            });
        }
        self.lifecycle_failed = true;
        let step = self.lifecycle_jobs(now, source, otherwise);
        if step.is_ok() {
            self.lifecycle_failed = false;
        }
        step
    }

    fn lifecycle_jobs(
        &mut self,
        now: u64,
        source: &dyn SnapshotSource,
        otherwise: Step,
    ) -> Result<Step, Error> {
        let cfg = self.db.config.lifecycle.clone();
        let files: Vec<KnownFile> = self.known.values().copied().collect();
        self.last_compaction.resize(cfg.levels.len(), 0);
        let mut next_due = u64::MAX;
        for level in 1..=cfg.max_level() {
            let iv = cfg.interval_ms(level);
            let last = &mut self.last_compaction[level as usize - 1];
            if *last == 0 {
                *last = now; // a new process waits for the next window, as after a compaction
            }
            let runs = lifecycle::plan_compactions(&files, level);
            if runs.is_empty() {
                continue;
            }
            if lifecycle::is_due(now, iv, *last) {
                for run in &runs {
                    self.compact(run)?;
                }
                self.last_compaction[level as usize - 1] = now;
                self.prune_cache();
                return Ok(Step::Compacted {
                    level,
                    files: runs.len(),
                });
            }
            next_due = next_due.min(lifecycle::window_start(now, iv) + iv);
        }
        let txid = self.db.spool.state().txid;
        let last_snapshot_txid = self.level_max(keys::SNAPSHOT_LEVEL);
        if last_snapshot_txid > 0
            && lifecycle::snapshot_due(&cfg, now, self.last_snapshot_at, last_snapshot_txid, txid)
        {
            if let Some(step) = self.scheduled_snapshot(now, source)? {
                return Ok(step);
            }
        }
        // Retention runs at the level-1 window (else the snapshot interval): one batched
        // delete at most per window.
        let retention_iv = if cfg.levels.is_empty() {
            cfg.snapshot_interval.as_millis() as u64
        } else {
            cfg.interval_ms(1)
        };
        if self.last_retention == 0 {
            self.last_retention = now;
        }
        if lifecycle::is_due(now, retention_iv, self.last_retention) {
            let doomed = lifecycle::plan_retention(&files, &cfg, now);
            if doomed.is_empty() {
                self.last_retention = now;
            } else {
                let keys: Vec<String> = doomed
                    .iter()
                    .map(|id| self.key(id.level, id.min_txid, id.max_txid))
                    .collect();
                // Ok means every key is gone (the store verifies); after an error the
                // same files are planned again after the backoff.
                self.hold_lease()?;
                self.store()?.delete_many(&keys)?;
                self.last_retention = now;
                for id in &doomed {
                    self.known.remove(id);
                    let _ = std::fs::remove_file(self.cache_path(*id));
                }
                let mut c = self.db.counters();
                c.files_deleted += doomed.len() as u64;
                if let Ok(store) = &self.store {
                    c.requests = store.request_counts();
                }
                return Ok(Step::Retained {
                    deleted: doomed.len(),
                });
            }
        }
        if !lifecycle::plan_retention(&files, &cfg, now + retention_iv).is_empty() {
            next_due = next_due.min(lifecycle::window_start(now, retention_iv) + retention_iv);
        }
        if last_snapshot_txid > 0 && last_snapshot_txid < txid {
            let iv = cfg.snapshot_interval.as_millis() as u64;
            next_due = next_due.min(lifecycle::window_start(now, iv) + iv);
        }
        Ok(match otherwise {
            Step::Idle if next_due != u64::MAX => Step::WaitUntil(next_due),
            Step::WaitUntil(t) => Step::WaitUntil(t.min(next_due)),
            other => other,
        })
    }

    /// Merges one run of files into the next level and uploads the result. Inputs come from
    /// their local copies when present, else they are downloaded.
    fn compact(&mut self, run: &lifecycle::Compaction) -> Result<(), Error> {
        self.hold_lease()?;
        let out = run.output();
        let mut decoders: Vec<Decoder<Box<dyn Read>>> = Vec::with_capacity(run.inputs.len());
        for f in &run.inputs {
            let id = f.id;
            let local = std::fs::File::open(self.cache_path(id)).ok();
            let reader: Box<dyn Read> = match local {
                Some(file) => Box::new(std::io::BufReader::new(file)),
                None => {
                    let key = self.key(id.level, id.min_txid, id.max_txid);
                    match self.store()?.get(&key) {
                        Ok(body) => Box::new(std::io::Cursor::new(body)),
                        Err(e @ crate::store::StoreError::NotFound(_)) => {
                            // Someone else changed the replica: list it again next step.
                            self.initialized = false;
                            return Err(e.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let key = self.key(id.level, id.min_txid, id.max_txid);
            let decoder = Decoder::new(reader).map_err(|e| {
                let _ = std::fs::remove_file(self.cache_path(id));
                Error::Io(format!("{key}: {e}"))
            })?;
            // Listed files carry the object's modified time until their header is read.
            if let Some(k) = self.known.get_mut(&id) {
                k.timestamp_ms = decoder.header().timestamp_ms;
            }
            decoders.push(decoder);
        }
        let scratch = self.db.spool.scratch_path("compact.ltx.tmp");
        let file = std::fs::File::create(&scratch)
            .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
        let (w, header, _) = ltx::merge(decoders, BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| {
                let _ = std::fs::remove_file(&scratch);
                // A bad local copy must not fail every retry: the next one downloads.
                for f in &run.inputs {
                    let _ = std::fs::remove_file(self.cache_path(f.id));
                }
                Error::Io(format!(
                    "compacting {} files into level {} ({}-{}): {e}",
                    run.inputs.len(),
                    out.level,
                    out.min_txid,
                    out.max_txid
                ))
            })?;
        // No fsync: the file is uploaded from here, and a local copy torn by a crash fails
        // its checksum and is downloaded instead.
        w.into_inner()
            .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
        let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
        let put = self.hold_lease().and_then(|_| {
            self.store()?
                .put_file(&self.key(out.level, out.min_txid, out.max_txid), &scratch)
                .map_err(Error::from)
        });
        if let Err(e) = put {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
        crate::fault::point("compaction.after_put");
        self.keep_local_copy(out, &scratch, size);
        self.remember(
            out.level,
            out.min_txid,
            out.max_txid,
            header.timestamp_ms,
            size,
        );
        let mut c = self.db.counters();
        c.compactions += 1;
        c.bytes_uploaded += size;
        if let Ok(store) = &self.store {
            c.requests = store.request_counts();
        }
        Ok(())
    }

    /// The periodic snapshot: the replicated state at the current txid, named `1-<txid>`
    /// as Litestream names its snapshots, so that level 0 stays contiguous for compaction.
    /// It is read from the live database, so it is taken only when nothing is pending, and
    /// kept only if it holds exactly the replicated state (its checksum says so); else
    /// `None` and it is tried again after the next shipment.
    fn scheduled_snapshot(
        &mut self,
        now: u64,
        source: &dyn SnapshotSource,
    ) -> Result<Option<Step>, Error> {
        let state = self.db.spool.state();
        if self.db.spool.pending_summary().is_some() || state.txid == 0 {
            return Ok(None);
        }
        // Its timestamp is that of its state: the time of the file that ends at its txid.
        let state_at = self
            .known
            .values()
            .filter(|f| f.id.max_txid == state.txid && f.id.level != keys::SNAPSHOT_LEVEL)
            .map(|f| f.timestamp_ms)
            .max()
            .unwrap_or(now);
        let scratch = self.db.spool.scratch_path("snapshot.ltx.tmp");
        let SnapshotRead::Built(built) =
            read_snapshot(&self.db, source, state.txid, state_at, &scratch)?
        else {
            return Ok(None); // a writer is starting a new log: try again later
        };
        let same = built.as_ref().is_some_and(|b| {
            b.raw_checksum == state.post_checksum
                && b.commit == state.commit
                && b.page_size == state.page_size
        });
        if !same {
            let _ = std::fs::remove_file(&scratch);
            if self.db.spool.pending_summary().is_none() && built.is_some() {
                // Nothing was committed meanwhile, yet the database is not the replicated
                // state: close the difference with a full snapshot (a new txid).
                self.db.request_snapshot(
                    "the scheduled snapshot found the database differs from the replicated state",
                );
                return Ok(Some(Step::WaitUntil(now)));
            }
            return Ok(None); // a commit raced the read: ship it, then try again
        }
        let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
        let put = self.hold_lease().and_then(|_| {
            self.store()?
                .put_file(&self.key(keys::SNAPSHOT_LEVEL, 1, state.txid), &scratch)
                .map_err(Error::from)
        });
        let _ = std::fs::remove_file(&scratch);
        put?;
        self.remember(keys::SNAPSHOT_LEVEL, 1, state.txid, state_at, size);
        self.last_snapshot_at = now;
        {
            let mut c = self.db.counters();
            c.uploads += 1;
            c.snapshots += 1;
            c.bytes_uploaded += size;
            c.last_upload_at_ms = Some(now);
            if let Ok(store) = &self.store {
                c.requests = store.request_counts();
            }
        }
        self.db.update_progress(|p| p.snapshots += 1);
        Ok(Some(Step::Snapshot { txid: state.txid }))
    }

    fn ship_batch(&mut self, now: u64, pending: &[RecordMeta]) -> Result<Step, Error> {
        let state = self.db.spool.state();
        // Commits captured while a snapshot was being read can already be in it; so can a
        // commit captured twice. They end at or before the replicated WAL position.
        let covered = pending
            .iter()
            .take_while(|r| {
                state
                    .position
                    .is_some_and(|(p, _)| r.end.salts() == p.salts() && r.end.frame <= p.frame)
            })
            .count();
        if covered > 0 {
            let seq = pending[covered - 1].seq;
            self.db.spool.mark_shipped(SpoolState {
                shipped_seq: seq,
                ..state
            })?;
            self.db.update_progress(|p| p.shipped_seq = seq);
            return Ok(Step::WaitUntil(now));
        }
        let mut bytes = 0u64;
        let mut batch = Vec::new();
        for r in pending {
            let len = r.pgnos.len() as u64 * r.page_size as u64;
            if !batch.is_empty() && bytes + len > MAX_BATCH_BYTES {
                break;
            }
            if r.page_size != state.page_size {
                self.db.request_snapshot(&format!(
                    "page size changed from {} to {}",
                    state.page_size, r.page_size
                ));
                return Ok(Step::WaitUntil(now));
            }
            bytes += len;
            batch.push(r);
        }
        let last = *batch.last().expect("pending is not empty");
        let commit = last.commit_size;
        // Latest version of each page wins: later records, and later entries, overwrite.
        let mut latest: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for (ri, r) in batch.iter().enumerate() {
            for (ei, &pgno) in r.pgnos.iter().enumerate() {
                latest.insert(pgno, (ri, ei));
            }
        }
        latest.retain(|&pgno, _| pgno <= commit);
        let table = self.table.as_ref().expect("checked by try_step");
        let txid = state.txid + 1;
        let header = Header {
            flags: LTX_FLAGS,
            page_size: state.page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp_ms: last.captured_at_ms,
            pre_apply_checksum: carried_checksum(state.post_checksum),
            wal_offset: wal::frame_offset(state.page_size, last.end.frame),
            wal_size: wal::FRAME_HEADER_SIZE as u64 + state.page_size as u64,
            wal_salt1: last.end.salt1,
            wal_salt2: last.end.salt2,
            node_id: 0,
        };
        let scratch = self.db.spool.scratch_path("batch.ltx.tmp");
        let file = std::fs::File::create(&scratch)
            .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
        let mut enc = Encoder::new(BufWriter::with_capacity(1 << 20, file), header)?;
        let mut raw = state.post_checksum;
        let mut changes: Vec<(u32, u64)> = Vec::with_capacity(latest.len());
        let mut buf = Vec::new();
        let lock_pgno = ltx::lock_pgno(state.page_size);
        for (&pgno, &(ri, ei)) in &latest {
            if pgno == lock_pgno {
                continue;
            }
            self.db.spool.read_page(batch[ri], ei, &mut buf)?;
            let sum = ltx::page_checksum(pgno, &buf);
            raw ^= table.get(pgno as usize - 1).copied().unwrap_or(0) ^ sum;
            changes.push((pgno, sum));
            enc.encode_page(pgno, &buf)?;
        }
        // Pages past the old end that no frame wrote read back as zeros after a restore.
        let zero = vec![0u8; state.page_size as usize];
        for pgno in (table.len() as u32 + 1)..=commit {
            if pgno != lock_pgno && !latest.contains_key(&pgno) {
                let sum = ltx::page_checksum(pgno, &zero);
                raw ^= sum;
                changes.push((pgno, sum));
            }
        }
        // A shrinking database drops its tail pages from the checksum.
        for pgno in (commit + 1)..=(table.len() as u32) {
            raw ^= table[pgno as usize - 1];
        }
        let (w, _trailer) = enc.finish(carried_checksum(raw))?;
        w.into_inner()
            .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?
            .sync_all()?;
        let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = self.hold_lease() {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
        self.store()?.put_file(&self.key(0, txid, txid), &scratch)?;
        crate::fault::point("upload.after_put");
        self.remember(0, txid, txid, last.captured_at_ms, size);
        // Kept for the level-1 compaction, which would otherwise download it again.
        self.keep_local_copy(
            FileId {
                level: 0,
                min_txid: txid,
                max_txid: txid,
            },
            &scratch,
            size,
        );

        let table = self.table.as_mut().expect("checked by try_step");
        table.resize(commit as usize, 0);
        for &(pgno, sum) in &changes {
            if let Some(slot) = table.get_mut(pgno as usize - 1) {
                *slot = sum;
            }
        }
        if lock_pgno <= commit {
            table[lock_pgno as usize - 1] = 0;
        }
        let changed: Vec<u32> = changes.iter().map(|c| c.0).collect();
        self.db.spool.store_page_checksums(table, &changed, false)?;
        let new_state = SpoolState {
            replica_url: self.db.config.url(),
            txid,
            post_checksum: raw,
            page_size: state.page_size,
            commit,
            shipped_seq: last.seq,
            position: Some((last.end, last.end_cksum)),
            shipped_at_ms: now,
        };
        self.db.spool.mark_shipped(new_state)?;
        self.remote_max_txid = txid;
        self.last_ship_ms = now;
        {
            let mut c = self.db.counters();
            // Counters first: replica_sync() returns as soon as progress is published.
            c.uploads += 1;
            c.bytes_uploaded += size;
            c.last_upload_at_ms = Some(now);
            c.state = "replicating";
            if let Ok(store) = &self.store {
                c.requests = store.request_counts();
            }
        }
        let seq = last.seq;
        // Commits captured while this batch was uploading count too: their waiters' flush
        // requests must survive this one (else they wait out a whole sync interval).
        let more = pending.len() > batch.len() || self.db.spool.last_seq() > seq;
        self.db.update_progress(|p| {
            p.txid = txid;
            p.shipped_seq = seq;
            // In the same update as the txid: replica_sync() returns on it, and status read
            // right after must not show the backoff of an error that is gone.
            p.last_error = None;
            p.retries = 0;
            p.next_retry_at_ms = None;
            if !more {
                p.flush_requested = false;
            }
        });
        Ok(Step::Shipped { txid })
    }
}

/// Reads the database's committed state through `source` into a level-9 LTX file at
/// `scratch` (see `build_snapshot`); `seq` of the result is the last spool record it holds.
fn read_snapshot(
    db: &Database,
    source: &dyn SnapshotSource,
    txid: u64,
    now: u64,
    scratch: &Path,
) -> Result<SnapshotRead, Error> {
    let mut built: Option<BuiltSnapshot> = None;
    // Everything captured before the read transaction begins is in what it reads when there
    // is no WAL then (it was all checkpointed); later captures may not be.
    let captured_before_read = db.spool.last_seq();
    let mut log_starting = false;
    source.with_read_transaction(&db.path, &mut |dbf, mut walf, index| {
        for _attempt in 0..5 {
            // Which captured commits the snapshot holds is decided by position: a commit
            // is captured as its last frame is written, a moment before SQLite publishes
            // it to readers, so the newest captured commit may be missing from what is
            // read below. Commits captured later that it does hold are dropped by
            // position when shipping.
            let captured: Vec<(u64, wal::WalPosition)> =
                db.spool.pending().iter().map(|r| (r.seq, r.end)).collect();
            let shipped_before = db.spool.state().shipped_seq;
            let before = read_wal_header(&mut walf)?;
            let index = index();
            // A log header on disk that the index does not know yet: a writer is starting
            // a new log (its salts need not follow the index's: a connection that never
            // checkpointed picks random ones). Until it publishes, positions cannot be
            // ordered: try again in a moment rather than guess.
            if let (Some(h), Some(i)) = (before, index) {
                let disk_salt1 = u32::from_be_bytes(h[16..20].try_into().unwrap());
                let disk_salt2 = u32::from_be_bytes(h[20..24].try_into().unwrap());
                // A checkpoint that restarted the log bumps salt1 in the index and leaves
                // the old header on disk until the next writer: that header is older.
                let stale = i.mx_frame == 0 && i.salt1 == disk_salt1.wrapping_add(1);
                if (disk_salt1, disk_salt2) != (i.salt1, i.salt2) && !stale {
                    log_starting = true;
                    return Ok(());
                }
            }
            let snap = build_snapshot(dbf, &mut walf, index, txid, now, scratch, 0)?;
            if read_wal_header(&mut walf)? == before {
                built = snap.map(|mut snap| {
                    // With an index but no committed frame, the log's start is the position.
                    let at = snap.position.map(|(p, _)| p).or_else(|| {
                        index.map(|i| wal::WalPosition {
                            salt1: i.salt1,
                            salt2: i.salt2,
                            frame: i.mx_frame,
                        })
                    });
                    if snap.position.is_none() {
                        snap.position = index.map(|i| (at.unwrap(), i.cksum));
                    }
                    snap.seq = captured
                        .iter()
                        .take_while(|(seq, end)| match at {
                            Some(p) => end.salts() != p.salts() || end.frame <= p.frame,
                            // No WAL: what was captured before the read began is in the
                            // database file; a WAL started since holds the rest.
                            None => *seq <= captured_before_read,
                        })
                        .map(|(seq, _)| *seq)
                        .last()
                        .unwrap_or(shipped_before);
                    snap
                });
                return Ok(());
            }
        }
        Err(Error::Io(
            "the WAL kept restarting while a snapshot was read; will retry".into(),
        ))
    })?;
    Ok(if log_starting {
        SnapshotRead::LogStarting
    } else {
        SnapshotRead::Built(built)
    })
}

/// What [`read_snapshot`] got.
enum SnapshotRead {
    /// The snapshot (`None` for a database without pages).
    Built(Option<BuiltSnapshot>),
    /// A writer was starting a new log: read again in a moment.
    LogStarting,
}

/// LTX flags we write: no database checksums in the files, as Litestream 0.5 writes them,
/// because `litestream restore` rejects a restore whose last file carries a post-apply
/// checksum (see `ltx`). We still track the database checksum in the spool (`pages.crc`).
pub const LTX_FLAGS: u32 = ltx::FLAG_NO_CHECKSUM;

/// The checksum value a header or trailer carries under `LTX_FLAGS`.
fn carried_checksum(raw: u64) -> u64 {
    if LTX_FLAGS & ltx::FLAG_NO_CHECKSUM != 0 {
        0
    } else {
        ltx::DbChecksum(raw).value()
    }
}

struct BuiltSnapshot {
    seq: u64,
    page_size: u32,
    commit: u32,
    raw_checksum: u64,
    table: Vec<u64>,
    position: Option<(wal::WalPosition, (u32, u32))>,
}

/// Encodes the database's committed state (db file overlaid with the WAL's committed frames)
/// into a level-9 LTX file at `out`. `None` for a database without pages.
fn build_snapshot(
    dbf: &mut dyn ReadAt,
    walf: &mut Option<&mut dyn ReadAt>,
    index: Option<wal::WalIndexHeader>,
    txid: u64,
    now: u64,
    out: &Path,
    seq: u64,
) -> Result<Option<BuiltSnapshot>, Error> {
    let map = match (walf.as_mut(), index) {
        // SQLite's own view of what is committed: the WAL index. Frames up to its last
        // frame are committed even where the log's checksum chain is broken.
        (Some(w), Some(idx)) if idx.mx_frame > 0 => Some(map_indexed_pages(*w, &idx)?),
        (Some(_), Some(_)) => None,
        (Some(w), None) => Some(wal::map_committed_pages(&mut |o, b| w.read_at(o, b))?),
        (None, _) => None,
    };
    let committed = map.as_ref().filter(|m| m.last_commit.is_some());
    let mut db_header = [0u8; 100];
    let have_header = dbf.read_at(0, &mut db_header)? == 100;
    let (page_size, commit) = match committed {
        Some(m) => (
            m.header.expect("a commit implies a header").page_size,
            m.commit_size,
        ),
        None => {
            if !have_header {
                return Ok(None);
            }
            let ps = match u16::from_be_bytes([db_header[16], db_header[17]]) {
                1 => 65536,
                n => n as u32,
            };
            let in_header = u32::from_be_bytes(db_header[28..32].try_into().unwrap());
            (ps, in_header)
        }
    };
    if commit == 0 || !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Ok(None);
    }
    let position = committed.map(|m| (m.last_commit.unwrap(), m.last_commit_checksum));
    let header = Header {
        flags: LTX_FLAGS,
        page_size,
        commit,
        min_txid: 1,
        max_txid: txid,
        timestamp_ms: now,
        pre_apply_checksum: 0,
        wal_offset: position
            .map(|(p, _)| wal::frame_offset(page_size, p.frame))
            .unwrap_or(0),
        wal_size: if position.is_some() {
            wal::FRAME_HEADER_SIZE as u64 + page_size as u64
        } else {
            0
        },
        wal_salt1: position.map(|(p, _)| p.salt1).unwrap_or(0),
        wal_salt2: position.map(|(p, _)| p.salt2).unwrap_or(0),
        node_id: 0,
    };
    let file =
        std::fs::File::create(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let mut enc = Encoder::new(BufWriter::with_capacity(1 << 20, file), header)?;
    let lock_pgno = ltx::lock_pgno(page_size);
    let mut table = vec![0u64; commit as usize];
    let mut raw = 0u64;
    let mut page = vec![0u8; page_size as usize];
    let latest: HashMap<u32, u32> = committed
        .map(|m| m.latest_frame.iter().map(|(a, b)| (*a, *b)).collect())
        .unwrap_or_default();
    for pgno in 1..=commit {
        if pgno == lock_pgno {
            continue;
        }
        read_committed_page(dbf, walf, latest.get(&pgno).copied(), pgno, &mut page)?;
        let sum = ltx::page_checksum(pgno, &page);
        table[pgno as usize - 1] = sum;
        raw ^= sum;
        enc.encode_page(pgno, &page)?;
    }
    let (w, _) = enc.finish(carried_checksum(raw))?;
    w.into_inner()
        .map_err(|e| Error::Io(format!("{}: {e}", out.display())))?
        .sync_all()?;
    Ok(Some(BuiltSnapshot {
        seq,
        page_size,
        commit,
        raw_checksum: raw,
        table,
        position,
    }))
}

// ---- the thread ------------------------------------------------------------------------

/// The uploader thread of this process: its process id and how to wake it. A forked child
/// inherits the value but not the thread, so a different pid means "start one here".
static UPLOADER: std::sync::Mutex<Option<(u32, crossbeam_channel::Sender<()>)>> =
    std::sync::Mutex::new(None);
static SOURCE: OnceLock<Box<dyn SnapshotSource>> = OnceLock::new();

/// Installs how snapshots read the live database (the FFI layer does this at load).
pub fn set_snapshot_source(source: Box<dyn SnapshotSource>) {
    let _ = SOURCE.set(source);
}

/// Nudges the uploader thread, starting it on first use. A lost wake-up is harmless: the
/// thread re-examines every database on each turn.
pub fn wake() {
    if SOURCE.get().is_none() {
        return; // not loaded into a host (unit tests drive `step` themselves)
    }
    let pid = std::process::id();
    let mut uploader = crate::base::lock::lock(&UPLOADER);
    if uploader.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("replica-uploader".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            crate::base::log::error(&format!("cannot start the uploader thread: {e}"));
            return;
        }
        *uploader = Some((pid, tx));
    }
    if let Some((_, tx)) = uploader.as_ref() {
        let _ = tx.try_send(());
    }
}

fn run(rx: crossbeam_channel::Receiver<()>) {
    let source = SOURCE.get().expect("set before the thread starts");
    let mut workers: HashMap<PathBuf, DbUploader> = HashMap::new();
    loop {
        for db in database::all().into_iter().filter(|db| db.owned_here()) {
            workers
                .entry(db.path.clone())
                .or_insert_with(|| DbUploader::new(db));
        }
        let standby = crate::shim::take_over_standbys();
        let now = now_ms();
        // Awake at least once per WAL poll, and while a database waits to be taken over.
        let mut next = now
            + if workers.is_empty() && !standby {
                60_000
            } else {
                WAL_POLL_MAX_MS
            };
        for w in workers.values_mut() {
            // A bug in one database's upload must not take the thread (and the others) down.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                w.step(now, source.as_ref())
            }))
            .unwrap_or_else(|_| Step::Failed {
                retry_at: now + 1000,
                error: "internal error (panic)".into(),
            });
            next = next.min(w.next_wal_poll());
            match step {
                Step::Shipped { .. }
                | Step::Snapshot { .. }
                | Step::Compacted { .. }
                | Step::Retained { .. } => next = now,
                Step::WaitUntil(t) | Step::Failed { retry_at: t, .. } => next = next.min(t),
                Step::Idle => {}
            }
        }
        let wait = next.saturating_sub(now_ms());
        if wait > 0 {
            match rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// This machine's name, for the lease (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReplicaConfig, ReplicaTarget};
    use crate::restore::{self, RestoreRequest, Target};
    use crate::snapshot::LockedRead;
    use crate::spool::RecordHeader;
    use crate::store::memory::MemoryStore;
    use crate::store::StoreError;
    use crate::wal::WalPosition;
    use std::sync::Mutex;

    const PS: usize = 512;

    /// A database image served as the "live" database for snapshots.
    struct FakeDb {
        pages: Mutex<Vec<Vec<u8>>>,
    }

    impl FakeDb {
        fn image(&self) -> Vec<u8> {
            let pages = self.pages.lock().unwrap();
            let mut img: Vec<u8> = pages.concat();
            img[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
            img[28..32].copy_from_slice(&(pages.len() as u32).to_be_bytes());
            img
        }
    }

    struct Bytes(Vec<u8>);
    impl ReadAt for Bytes {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let o = offset as usize;
            if o + buf.len() > self.0.len() {
                return Ok(0);
            }
            buf.copy_from_slice(&self.0[o..o + buf.len()]);
            Ok(buf.len())
        }
    }

    impl SnapshotSource for FakeDb {
        fn with_read_transaction(
            &self,
            _db_path: &Path,
            f: &mut LockedRead<'_>,
        ) -> Result<(), Error> {
            f(&mut Bytes(self.image()), None, &mut || None)
        }
    }

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PS]
    }

    struct Harness {
        dir: PathBuf,
        db: Arc<Database>,
        store: Arc<MemoryStore>,
        live: FakeDb,
        frame: u32,
    }

    impl Harness {
        fn new(name: &str) -> Harness {
            let dir = std::env::temp_dir()
                .join(format!("replica-uploader-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = ReplicaConfig {
                target: ReplicaTarget::File {
                    dir: dir.join("replica"),
                },
                sync_interval: Duration::from_millis(1000),
                lifecycle: crate::lifecycle::Lifecycle::default(),
                restore_if_missing: crate::config::DEFAULT_RESTORE_IF_MISSING,
                validation_interval: None,
                shutdown_sync_timeout: crate::config::DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
            };
            let db = Arc::new(Database::open(&dir.join("app.db"), cfg, 1 << 30).unwrap());
            let live = FakeDb {
                pages: Mutex::new(vec![page(1), page(2), page(3)]),
            };
            Harness {
                dir,
                db,
                store: Arc::new(MemoryStore::new()),
                live,
                frame: 0,
            }
        }

        /// Opens the database's spool again, as a new process would (the old one lets go).
        fn reopen(&mut self, spool_cap: u64) {
            let cfg = self.db.config.clone();
            let placeholder =
                Arc::new(Database::open(&self.dir.join("placeholder.db"), cfg.clone(), 1).unwrap());
            drop(std::mem::replace(&mut self.db, placeholder));
            self.db = Arc::new(Database::open(&self.dir.join("app.db"), cfg, spool_cap).unwrap());
        }

        fn uploader(&self) -> DbUploader {
            DbUploader::with_store(self.db.clone(), Ok(Box::new(self.store.clone())))
        }

        /// A commit: pages written and the new size, captured at `at` ms.
        fn commit(&mut self, pages: &[(u32, u8)], size: u32, at: u64) {
            self.frame += pages.len() as u32;
            let header = RecordHeader {
                page_size: PS as u32,
                commit_size: size,
                end: WalPosition {
                    salt1: 1,
                    salt2: 2,
                    frame: self.frame,
                },
                end_cksum: (self.frame, 0),
                captured_at_ms: at,
                integrity: crate::spool::Integrity::Crc,
            };
            let mut rec = self
                .db
                .spool
                .begin_record(header, pages.len() as u32)
                .unwrap();
            let mut live = self.live.pages.lock().unwrap();
            for &(pgno, fill) in pages {
                rec.push(pgno, &page(fill)).unwrap();
                if live.len() < pgno as usize {
                    live.resize(pgno as usize, page(0));
                }
                live[pgno as usize - 1] = page(fill);
            }
            live.truncate(size as usize);
            rec.commit().unwrap();
        }

        fn restore(&self, target: Target) -> Result<Vec<u8>, Error> {
            let out = self.dir.join(format!("restored-{}.db", self.frame));
            let _ = std::fs::remove_file(&out);
            restore::restore(&RestoreRequest {
                store: self.store.as_ref(),
                prefix: "",
                output: &out,
                target,
                overwrite: true,
                check: &|_| Ok(()),
            })?;
            Ok(std::fs::read(&out).unwrap())
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn snapshot_then_batches_restore_to_every_shipped_state() {
        let mut h = Harness::new("chain");
        let mut up = h.uploader();
        assert_eq!(up.step(10_000, &h.live), Step::Snapshot { txid: 1 });
        assert_eq!(
            h.store.keys(),
            vec!["0009/0000000000000001-0000000000000001.ltx", "lease"]
        );
        let state1 = h.live.image();

        // Sporadic write after an idle period: shipped at once.
        h.commit(&[(2, 20)], 3, 20_000);
        assert_eq!(up.step(20_000, &h.live), Step::Shipped { txid: 2 });
        let state2 = h.live.image();

        // Sustained writes: batched until the interval has passed since the last upload.
        h.commit(&[(3, 30), (4, 40)], 4, 20_100);
        h.commit(&[(3, 31)], 4, 20_200);
        assert_eq!(up.step(20_200, &h.live), Step::WaitUntil(21_000));
        assert_eq!(up.step(21_000, &h.live), Step::Shipped { txid: 3 });
        let state3 = h.live.image();

        // The database shrinks.
        h.commit(&[(1, 11)], 2, 40_000);
        assert_eq!(up.step(40_000, &h.live), Step::Shipped { txid: 4 });
        // A level-1 window has passed since the first level-0 file: compaction, from the
        // local copies (no GET).
        let gets = h.store.request_counts().get;
        assert_eq!(
            up.step(40_001, &h.live),
            Step::Compacted { level: 1, files: 1 }
        );
        assert_eq!(h.store.request_counts().get, gets);
        assert!(h
            .store
            .keys()
            .contains(&"0001/0000000000000002-0000000000000004.ltx".to_string()));
        assert_eq!(up.step(40_002, &h.live), Step::WaitUntil(300_000));

        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
        same(&h.restore(Target::Txid(1)).unwrap(), &state1, "txid 1");
        same(&h.restore(Target::Txid(2)).unwrap(), &state2, "txid 2");
        same(&h.restore(Target::Txid(3)).unwrap(), &state3, "txid 3");
        same(
            &h.restore(Target::Timestamp(20_150)).unwrap(),
            &state2,
            "timestamp",
        );
    }

    /// Compares database images past the synthetic header fields of page 1.
    fn same(restored: &[u8], expected: &[u8], what: &str) {
        assert_eq!(
            restored.len(),
            expected.len(),
            "{what}: restored size differs"
        );
        if let Some(i) = (100..restored.len()).find(|&i| restored[i] != expected[i]) {
            panic!(
                "{what}: restored database differs at byte {i} (page {})",
                i / PS + 1
            );
        }
    }

    #[test]
    fn compaction_after_a_restart_downloads_its_inputs_and_retention_retries_a_failed_delete() {
        let mut h = Harness::new("lifecycle");
        let mut up = h.uploader();
        assert_eq!(up.step(1_000, &h.live), Step::Snapshot { txid: 1 });
        h.commit(&[(2, 20)], 3, 2_000);
        assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
        h.commit(&[(3, 30)], 3, 5_000);
        assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 3 });
        let state3 = h.live.image();
        // The process dies and its local copies of level-0 files are gone.
        drop(up);
        std::fs::remove_dir_all(h.db.spool.scratch_path("cache")).unwrap();
        let mut up = h.uploader();
        assert_eq!(up.step(10_000, &h.live), Step::WaitUntil(30_000));
        let gets = h.store.request_counts().get;
        assert_eq!(
            up.step(30_000, &h.live),
            Step::Compacted { level: 1, files: 1 }
        );
        assert_eq!(
            h.store.request_counts().get,
            gets + 3,
            "both inputs downloaded, and the lease read once by the new process"
        );
        assert_eq!(
            up.step(300_000, &h.live),
            Step::Compacted { level: 2, files: 1 }
        );
        // Level-0 retention: txid 2 is in level 1 and older than 5 minutes (txid 3 is the
        // newest of its level and stays). The first delete fails and is retried.
        *h.store.fail_with.lock().unwrap() = Some(StoreError::Transient(
            "DeleteObjects left keys behind".into(),
        ));
        let step = up.step(330_000, &h.live);
        let Step::Failed { retry_at, .. } = step else {
            panic!("expected the delete to fail: {step:?}")
        };
        *h.store.fail_with.lock().unwrap() = None;
        // Shipping does not wait for the lifecycle's backoff.
        h.commit(&[(1, 11)], 3, 330_001);
        assert_eq!(up.step(330_001, &h.live), Step::Shipped { txid: 4 });
        assert_eq!(up.step(330_002, &h.live), Step::WaitUntil(retry_at));
        assert_eq!(
            up.step(retry_at, &h.live),
            Step::Compacted { level: 1, files: 1 }
        );
        // Txids 2 and 3 are in level 1 and old; 4 is the newest of level 0 and stays.
        assert_eq!(up.step(retry_at, &h.live), Step::Retained { deleted: 2 });
        let level0: Vec<String> = h
            .store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("0000/"))
            .collect();
        assert_eq!(level0, vec!["0000/0000000000000004-0000000000000004.ltx"]);
        let c = h.db.counters().clone();
        assert_eq!((c.compactions, c.files_deleted), (3, 2));
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
        same(&h.restore(Target::Txid(3)).unwrap(), &state3, "txid 3");
        // The next job: level 2 takes the new level-1 file at its window.
        assert_eq!(up.step(retry_at + 1, &h.live), Step::WaitUntil(600_000));
    }

    #[test]
    fn a_torn_local_copy_is_downloaded_instead() {
        let mut h = Harness::new("torn");
        let mut up = h.uploader();
        assert_eq!(up.step(1_000, &h.live), Step::Snapshot { txid: 1 });
        h.commit(&[(2, 20)], 3, 2_000);
        assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
        assert_eq!(up.step(2_001, &h.live), Step::WaitUntil(30_000));
        let copy =
            h.db.spool
                .scratch_path("cache/0/0000000000000002-0000000000000002.ltx");
        let mut bytes = std::fs::read(&copy).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&copy, bytes).unwrap();
        let gets = h.store.request_counts().get;
        let Step::Failed { retry_at, error } = up.step(30_000, &h.live) else {
            panic!("the torn copy must fail the merge")
        };
        assert!(error.contains("checksum"), "{error}");
        assert_eq!(
            up.step(retry_at, &h.live),
            Step::Compacted { level: 1, files: 1 }
        );
        assert_eq!(h.store.request_counts().get, gets + 1);
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }

    #[test]
    fn scheduled_snapshots_keep_the_txid_unless_the_database_differs() {
        const DAY: u64 = 86_400_000;
        let mut h = Harness::new("scheduled");
        let mut up = h.uploader();
        assert_eq!(up.step(1_000, &h.live), Step::Snapshot { txid: 1 });
        h.commit(&[(2, 20)], 3, 2_000);
        assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
        let mut t = 3_000;
        while t < DAY {
            up.step(t, &h.live);
            t += 600_000;
        }
        // The day's boundary: a snapshot of the replicated state, at the same txid.
        assert_eq!(up.step(DAY, &h.live), Step::Snapshot { txid: 2 });
        assert!(h
            .store
            .keys()
            .contains(&"0009/0000000000000001-0000000000000002.ltx".to_string()));
        same(
            &h.restore(Target::Txid(2)).unwrap(),
            &h.live.image(),
            "txid 2",
        );
        // Nothing new: no snapshot the next day.
        assert!(!matches!(up.step(2 * DAY, &h.live), Step::Snapshot { .. }));
        h.commit(&[(3, 30)], 3, 2 * DAY + 1);
        assert_eq!(up.step(2 * DAY + 1, &h.live), Step::Shipped { txid: 3 });
        // The database changes behind the replica's back: the next scheduled snapshot
        // notices and a full snapshot with a new txid replaces it.
        h.live.pages.lock().unwrap()[0] = page(99);
        t = 2 * DAY + 2;
        let step = loop {
            match up.step(t, &h.live) {
                Step::Snapshot { txid } => break txid,
                _ => t += 600_000,
            }
            assert!(t < 4 * DAY, "no snapshot");
        };
        // (A boundary passed with nothing new since the last snapshot: due at the change.)
        assert_eq!(step, 4);
        assert!(t < 3 * DAY, "{t}");
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }

    #[test]
    fn an_idle_database_makes_no_requests() {
        let mut h = Harness::new("idle");
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        h.commit(&[(2, 9)], 3, 5_000);
        assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 2 });
        // Past the compaction of every level (the last at the first hour's end).
        let mut t = 6_000;
        while t < 3_700_000 {
            up.step(t, &h.live);
            t += 10_000;
        }
        assert!(h.store.keys().iter().any(|k| k.starts_with("0003/")));
        let before = h.store.request_counts();
        for i in 0..50 {
            let step = up.step(t + i * 1000, &h.live);
            assert!(matches!(step, Step::WaitUntil(_) | Step::Idle), "{step:?}");
        }
        assert_eq!(h.store.request_counts(), before);
    }

    #[test]
    fn the_steady_state_is_one_put_per_batch_and_no_list_or_get() {
        let mut h = Harness::new("economy");
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        h.commit(&[(2, 1)], 3, 5_000);
        assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 2 });
        let before = h.store.request_counts();
        for i in 0..20u64 {
            let t = 10_000 + i * 5_000;
            // Several commits per interval travel in one object.
            for k in 0..3u64 {
                h.commit(&[(2 + (i + k) as u32 % 2, (i * 3 + k) as u8)], 3, t + k);
            }
            assert_eq!(up.step(t + 2_000, &h.live), Step::Shipped { txid: 3 + i });
        }
        let after = h.store.request_counts();
        // One PUT per batch, and the lease renewed once half of it is gone: over these
        // 97 simulated seconds, every 30 s.
        let renewals = 97_000 / (crate::lease::LEASE_TTL_MS / 2);
        assert_eq!(after.put - before.put, 20 + renewals, "one PUT per batch");
        assert_eq!(
            (after.list, after.get, after.delete),
            (before.list, before.get, before.delete),
            "no LIST, GET or DELETE in the steady state"
        );
    }

    #[test]
    fn a_failing_store_backs_off_then_converges_without_losing_anything() {
        let mut h = Harness::new("outage");
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        h.commit(&[(2, 7)], 3, 2_000);
        *h.store.fail_with.lock().unwrap() =
            Some(StoreError::Transient("503 Service Unavailable".into()));
        let Step::Failed { retry_at, error } = up.step(2_000, &h.live) else {
            panic!("expected a failure")
        };
        assert!(error.contains("503"), "{error}");
        assert!(retry_at > 2_000 && retry_at <= 2_000 + MAX_BACKOFF_MS);
        assert_eq!(up.step(retry_at - 1, &h.live), Step::WaitUntil(retry_at));
        assert!(h.db.progress().last_error.unwrap().contains("503"));
        h.commit(&[(3, 8)], 3, 2_500);
        *h.store.fail_with.lock().unwrap() = None;
        assert_eq!(up.step(retry_at, &h.live), Step::Shipped { txid: 2 });
        assert!(h.db.progress().last_error.is_none());
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }

    #[test]
    fn a_restarted_uploader_continues_the_chain_without_a_snapshot() {
        let mut h = Harness::new("restart");
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        h.commit(&[(2, 5)], 3, 2_000);
        assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
        h.commit(&[(4, 6)], 4, 3_000); // captured, not shipped: the process "dies"
        h.db.spool.flush().unwrap(); // as the shim does before the WAL may go away
        drop(up);
        h.reopen(1 << 30);
        let mut up = h.uploader();
        assert_eq!(up.step(10_000, &h.live), Step::Shipped { txid: 3 });
        assert_eq!(
            h.store
                .keys()
                .iter()
                .filter(|k| k.starts_with("0009/"))
                .count(),
            1
        );
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }

    #[test]
    fn a_replica_that_moved_on_gets_a_fresh_snapshot_above_it() {
        let mut h = Harness::new("diverged");
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        // Somebody else wrote txid 2..5 into the same replica.
        h.store
            .put("0000/0000000000000005-0000000000000005.ltx", b"not ours")
            .unwrap();
        drop(up);
        h.reopen(1 << 30);
        let mut up = h.uploader();
        assert_eq!(up.step(2_000, &h.live), Step::Snapshot { txid: 6 });
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }

    #[test]
    fn a_spool_overflow_ships_a_snapshot_instead() {
        let mut h = Harness::new("overflow");
        h.reopen(3_000);
        let mut up = h.uploader();
        up.step(1_000, &h.live);
        h.commit(&[(2, 1), (3, 1)], 3, 2_000);
        let header = RecordHeader {
            page_size: PS as u32,
            commit_size: 5,
            end: WalPosition {
                salt1: 1,
                salt2: 2,
                frame: 99,
            },
            end_cksum: (0, 0),
            captured_at_ms: 2_001,
            integrity: crate::spool::Integrity::Crc,
        };
        assert!(h.db.spool.begin_record(header, 5).is_err());
        h.db.request_snapshot("the spool overflowed");
        h.live.pages.lock().unwrap().push(page(42));
        assert_eq!(up.step(3_000, &h.live), Step::Snapshot { txid: 2 });
        assert!(!h.db.spool.is_overflowed());
        same(
            &h.restore(Target::Latest).unwrap(),
            &h.live.image(),
            "latest",
        );
    }
}
