//! The lifecycle jobs, run when nothing is due to ship: compaction of each level at its
//! window (from the local copies of the files it uploaded, else downloads), scheduled
//! snapshots, and retention deletes (or, when the bucket's lifecycle rules expire old
//! files, only forgetting them, so that what the uploader knows stays at the window). What
//! is due is planned by `crate::lifecycle`; this file owns when each job last ran and the
//! lifecycle's own backoff, so that a failing job never holds up shipping. It must not
//! ship the spool, nor send a DELETE under [`Expiry::BucketLifecycle`].

use super::cache::Cache;
use super::remote::Replica;
use super::snapshots;
use super::types::Step;
use crate::database::Dest;
use crate::error::Error;
use crate::lifecycle::{self, Compaction, Expiry, FileId, KnownFile};
use crate::ltx::{self, Decoder, Header};
use crate::snapshot::SnapshotSource;
use crate::store::{keys, StoreError};
use std::io::{BufWriter, Read};
use std::path::Path;

#[derive(Default)]
pub(super) struct Compactor {
    /// When each compaction level (index = level - 1) last ran; 0 = not yet this process.
    last_compaction: Vec<u64>,
    last_retention: u64,
    /// When an idle database's snapshot was last asked for (bucket lifecycle mode).
    idle_snapshot_asked: u64,
    /// Set while a lifecycle job runs, so that its failure backs off lifecycle jobs only.
    running: bool,
    retry_at: u64,
}

impl Compactor {
    /// Runs at most one due lifecycle job (a compaction level, a scheduled snapshot, a
    /// retention pass); otherwise returns `otherwise`, woken for the next job that will be
    /// due.
    pub fn step(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        source: &dyn SnapshotSource,
        now: u64,
        otherwise: Step,
    ) -> Result<Step, Error> {
        if now < self.retry_at {
            return Ok(otherwise.wake_by(self.retry_at));
        }
        self.running = true;
        let step = self.jobs(dest, replica, source, now, otherwise);
        if step.is_ok() {
            self.running = false;
        }
        step
    }

    /// After a failed step: whether it was a lifecycle job that failed; then only they
    /// wait, until `retry_at`, and shipping goes on.
    pub fn take_failure(&mut self, retry_at: u64) -> bool {
        if std::mem::take(&mut self.running) {
            self.retry_at = retry_at;
            true
        } else {
            false
        }
    }

    /// The failure was not the job's own (another uploader holds the lease): everything
    /// waits for it, not the lifecycle jobs alone.
    pub fn not_its_failure(&mut self) {
        self.running = false;
    }

    fn jobs(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        source: &dyn SnapshotSource,
        now: u64,
        otherwise: Step,
    ) -> Result<Step, Error> {
        let cfg = &dest.config().lifecycle;
        let files = replica.known.all();
        let mut next_due = u64::MAX;
        if let Some(step) = self.compact_due_level(dest, replica, &files, now, &mut next_due)? {
            return Ok(step);
        }
        let txid = dest.state().txid;
        let last_snapshot_txid = replica.known.level_max(keys::SNAPSHOT_LEVEL);
        if last_snapshot_txid > 0
            && lifecycle::snapshot_due(cfg, now, replica.last_snapshot_at, last_snapshot_txid, txid)
        {
            let idle = last_snapshot_txid >= txid && dest.pending_summary().is_none();
            if idle {
                if let Some(step) = self.idle_snapshot(dest, now) {
                    return Ok(step);
                }
            } else if let Some(step) = snapshots::scheduled(dest, replica, source, now)? {
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
        if let Some(step) = self.retain(dest, replica, &files, now, retention_iv)? {
            return Ok(step);
        }
        if !lifecycle::plan_retention(&files, cfg, now + retention_iv).is_empty() {
            next_due = next_due.min(lifecycle::window_start(now, retention_iv) + retention_iv);
        }
        if last_snapshot_txid > 0
            && (last_snapshot_txid < txid || cfg.expiry == Expiry::BucketLifecycle)
        {
            let iv = cfg.snapshot_interval.as_millis() as u64;
            next_due = next_due.min(lifecycle::window_start(now, iv) + iv);
        }
        Ok(otherwise.wake_by(next_due))
    }

    /// A snapshot due while nothing changed (only under an age rule, see
    /// `lifecycle::snapshot_due`): one at a new txid, as `replica_snapshot()` takes, never
    /// the newest one's key again, which a bucket lock (R2) or object lock (S3) refuses as
    /// an overwrite. Asked once a window, so that one that ships nothing cannot make the
    /// worker spin.
    fn idle_snapshot(&mut self, dest: &Dest, now: u64) -> Option<Step> {
        let iv = dest.config().lifecycle.snapshot_interval.as_millis() as u64;
        if !lifecycle::is_due(now, iv, self.idle_snapshot_asked) {
            return None;
        }
        self.idle_snapshot_asked = now;
        dest.request_snapshot(
            "the newest snapshot is a snapshot interval old and the bucket expires old files",
        );
        Some(Step::WaitUntil(now))
    }

    /// Compacts the lowest level that has files to take and whose window has come;
    /// otherwise lowers `next_due` to when such a level's window comes.
    fn compact_due_level(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        files: &[KnownFile],
        now: u64,
        next_due: &mut u64,
    ) -> Result<Option<Step>, Error> {
        let cfg = &dest.config().lifecycle;
        self.last_compaction.resize(cfg.levels.len(), 0);
        for level in 1..=cfg.max_level() {
            let iv = cfg.interval_ms(level);
            let last = &mut self.last_compaction[level as usize - 1];
            if *last == 0 {
                *last = now; // a new process waits for the next window, as after a compaction
            }
            let runs = lifecycle::plan_compactions(files, level);
            if runs.is_empty() {
                continue;
            }
            if lifecycle::is_due(now, iv, *last) {
                for run in &runs {
                    compact(dest, replica, run, now)?;
                }
                self.last_compaction[level as usize - 1] = now;
                replica.cache.prune(&replica.known);
                return Ok(Some(Step::Compacted {
                    level,
                    files: runs.len(),
                }));
            }
            *next_due = (*next_due).min(lifecycle::window_start(now, iv) + iv);
        }
        Ok(None)
    }

    /// Deletes, once the retention window `iv` has come, what retention lets go.
    fn retain(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        files: &[KnownFile],
        now: u64,
        iv: u64,
    ) -> Result<Option<Step>, Error> {
        if self.last_retention == 0 {
            self.last_retention = now;
        }
        if !lifecycle::is_due(now, iv, self.last_retention) {
            return Ok(None);
        }
        let doomed = lifecycle::plan_retention(files, &dest.config().lifecycle, now);
        if doomed.is_empty() {
            self.last_retention = now;
            return Ok(None);
        }
        if dest.config().lifecycle.expiry == Expiry::BucketLifecycle {
            // The bucket's rules delete them by age; a restart lists what is still there.
            self.last_retention = now;
            forget(replica, &doomed);
            return Ok(None);
        }
        let keys: Vec<String> = doomed.iter().map(|id| replica.key(*id)).collect();
        // Ok means every key is gone (the store verifies); after an error the same files
        // are planned again after the backoff.
        replica.hold_lease(now)?;
        replica.store()?.delete_many(&keys)?;
        self.last_retention = now;
        forget(replica, &doomed);
        let mut c = dest.counters();
        c.files_deleted += doomed.len() as u64;
        replica.count_requests(&mut c);
        Ok(Some(Step::Retained {
            deleted: doomed.len(),
        }))
    }
}

/// Drops files retention let go from what the uploader knows, and their local copies.
fn forget(replica: &mut Replica, ids: &[FileId]) {
    for id in ids {
        replica.known.remove(*id);
        replica.cache.remove(*id);
    }
}

/// Merges one run of files into the next level and uploads the result. Inputs come from
/// their local copies when present, else they are downloaded.
fn compact(dest: &Dest, replica: &mut Replica, run: &Compaction, now: u64) -> Result<(), Error> {
    replica.hold_lease(now)?;
    let out = run.output();
    let decoders = open_inputs(replica, run)?;
    let scratch = dest.scratch_path("compact.ltx.tmp");
    let header = merge(decoders, run, &replica.cache, &scratch)?;
    let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
    let put = replica
        .hold_lease(now)
        .and_then(|_| replica.put_file(out, &scratch));
    if let Err(e) = put {
        let _ = std::fs::remove_file(&scratch);
        return Err(e);
    }
    crate::fault::point("compaction.after_put");
    replica.cache.keep(out, &scratch, size);
    replica.known.insert(out, header.timestamp_ms, size);
    let mut c = dest.counters();
    c.compactions += 1;
    c.bytes_uploaded += size;
    replica.count_requests(&mut c);
    Ok(())
}

fn open_inputs(
    replica: &mut Replica,
    run: &Compaction,
) -> Result<Vec<Decoder<Box<dyn Read>>>, Error> {
    let mut decoders: Vec<Decoder<Box<dyn Read>>> = Vec::with_capacity(run.inputs.len());
    for f in &run.inputs {
        let id = f.id;
        let reader = open_input(replica, id)?;
        let key = replica.key(id);
        let decoder = Decoder::new(reader).map_err(|e| {
            replica.cache.remove(id);
            Error::Io(format!("{key}: {e}"))
        })?;
        // Listed files carry the object's modified time until their header is read.
        replica
            .known
            .set_timestamp(id, decoder.header().timestamp_ms);
        decoders.push(decoder);
    }
    Ok(decoders)
}

/// The local copy of `id`, else its download.
fn open_input(replica: &mut Replica, id: FileId) -> Result<Box<dyn Read>, Error> {
    if let Some(file) = replica.cache.open(id) {
        return Ok(Box::new(std::io::BufReader::new(file)));
    }
    // A download never holds more than the listing (or our own upload) said the object is.
    let got = match replica
        .known
        .get(id)
        .map(|f| f.size)
        .filter(|size| *size > 0)
    {
        Some(size) => replica.store()?.get_bounded(&replica.key(id), size),
        None => replica.store()?.get(&replica.key(id)),
    };
    match got {
        Ok(body) => Ok(Box::new(std::io::Cursor::new(body))),
        Err(e @ StoreError::NotFound(_)) => {
            // Someone else changed the replica: list it again next step.
            replica.listed = false;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Merges the inputs of `run` into `scratch`; the merged file's header. No fsync: the file
/// is uploaded from there, and a local copy torn by a crash fails its checksum and is
/// downloaded instead.
fn merge(
    decoders: Vec<Decoder<Box<dyn Read>>>,
    run: &Compaction,
    cache: &Cache,
    scratch: &Path,
) -> Result<Header, Error> {
    let out = run.output();
    let file = crate::base::private_fs::create_fresh(scratch)
        .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
    let (w, header, _) =
        ltx::merge(decoders, BufWriter::with_capacity(1 << 20, file)).map_err(|e| {
            let _ = std::fs::remove_file(scratch);
            // A bad local copy must not fail every retry: the next one downloads.
            for f in &run.inputs {
                cache.remove(f.id);
            }
            Error::Io(format!(
                "compacting {} files into level {} ({}-{}): {e}",
                run.inputs.len(),
                out.level,
                out.min_txid,
                out.max_txid
            ))
        })?;
    w.into_inner()
        .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
    Ok(header)
}
