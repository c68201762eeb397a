//! The steppable per-database worker: [`DbUploader::step`] does at most one unit of work
//! (the start-up listing, a snapshot, a batch or a lifecycle job) at the time it is given,
//! so that tests drive it with a fake clock. It owns the order in which the jobs get their
//! turn and what a failure means (a backoff, or standing back from another uploader's
//! lease); the jobs themselves live in their own files. It must never block a commit.

use super::backoff::Backoff;
use super::compactor::Compactor;
use super::pacer::Pacer;
use super::remote::Replica;
use super::ship::Shipper;
use super::snapshots::Snapshotter;
use super::types::Step;
use crate::database::{Database, Dest, UploaderState};
use crate::error::Error;
use crate::snapshot::SnapshotSource;
use crate::store::ObjectStore;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The WAL is looked at for uncaptured commits every sync interval, at least this often.
pub const WAL_POLL_MAX_MS: u64 = 250;

pub struct DbUploader {
    dest: Dest,
    replica: Replica,
    shipper: Shipper,
    snapshots: Snapshotter,
    compactor: Compactor,
    backoff: Backoff,
    /// Counts requests against the month's budget and says when it allows more.
    pacer: Pacer,
    /// Under a request budget, the lifecycle jobs get the next request after a shipment,
    /// so that steady shipping cannot starve compaction and snapshots.
    lifecycle_turn: bool,
}

impl Drop for DbUploader {
    fn drop(&mut self) {
        self.pacer.store_now(&self.dest);
    }
}

impl DbUploader {
    /// The uploader of destination `dest`.
    pub fn new(dest: Dest) -> DbUploader {
        let config = dest.config();
        let store =
            crate::store::open(&config.target, config.age.as_ref()).map_err(|e| e.to_string());
        Self::with_store(dest, store)
    }

    pub fn with_store(dest: Dest, store: Result<Box<dyn ObjectStore>, String>) -> DbUploader {
        let replica = Replica::new(&dest, store);
        DbUploader {
            pacer: Pacer::new(&replica.request_counts()),
            replica,
            dest,
            shipper: Shipper::default(),
            snapshots: Snapshotter::default(),
            compactor: Compactor::default(),
            backoff: Backoff::new(),
            lifecycle_turn: false,
        }
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.dest.db
    }

    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// How many files of the replica this uploader keeps in memory.
    #[cfg(test)]
    pub(super) fn known_files(&self) -> usize {
        self.replica.known.all().len()
    }

    /// When this database's WAL is next looked at for commits nobody captured.
    pub fn next_wal_poll(&self) -> u64 {
        self.dest.db.next_wal_poll_ms.load(Ordering::Relaxed)
    }

    /// Does at most one unit of work: an initial listing, a snapshot, or one batch.
    pub fn step(&mut self, now: u64, source: &dyn SnapshotSource) -> Step {
        if let Some(retry_at) = self.backoff.waiting(now) {
            // A replica_sync() call earns one attempt even during a backoff.
            if !self.dest.progress().flush_requested {
                return Step::WaitUntil(retry_at);
            }
        }
        let result = self.try_step(now, source);
        self.pacer
            .count(&self.dest, &self.replica.request_counts(), now);
        match result {
            Err(Error::NotWal(_)) => {
                // Nothing to do until the database is in WAL mode; its first WAL commit wakes us.
                self.dest.counters().state = UploaderState::WaitingForWal;
                Step::Idle
            }
            Ok(step) => {
                if step.wrote() {
                    self.backoff.succeeded();
                    self.dest.update_progress(|p| {
                        p.last_error = None;
                        p.retries = 0;
                        p.next_retry_at_ms = None;
                    });
                }
                self.refresh_counters(&step);
                step
            }
            Err(Error::LeaseHeld(owner, until)) => self.lease_held(owner, until, now),
            Err(e) => self.failed(e, now),
        }
    }

    /// Not a failure: another uploader has the replica. Keep spooling; look again when its
    /// lease runs out (it renews it while it uploads).
    fn lease_held(&mut self, owner: String, until: u64, now: u64) -> Step {
        let error = Error::LeaseHeld(owner, until).to_string();
        let retry_at = until.max(now + 1);
        // Whatever asked (shipping or a lifecycle job), everything waits for it.
        self.compactor.not_its_failure();
        self.backoff.wait_until(retry_at);
        let changed = self.dest.progress().last_error.as_deref() != Some(error.as_str());
        self.dest.update_progress(|p| {
            p.last_error = Some(error.clone());
            p.flush_requested = false;
            p.next_retry_at_ms = Some(retry_at);
            p.failed_attempts += 1;
        });
        if changed {
            crate::base::log::notice(&format!("{}: {error}", self.dest.label()));
        }
        self.dest.counters().state = UploaderState::LeaseHeldElsewhere;
        Step::Failed { retry_at, error }
    }

    /// A failed step: it is retried after a backoff.
    fn failed(&mut self, e: Error, now: u64) -> Step {
        let retry_at = self.backoff.failed(now);
        // Compaction, retention or a scheduled snapshot failed: only they wait; shipping
        // goes on. Otherwise shipping waits.
        if !self.compactor.take_failure(retry_at) {
            self.backoff.wait_until(retry_at);
        }
        let error = e.to_string();
        let failures = self.backoff.failures();
        self.dest.update_progress(|p| {
            p.last_error = Some(error.clone());
            p.flush_requested = false;
            p.retries = failures;
            p.next_retry_at_ms = Some(retry_at);
            p.failed_attempts += 1;
        });
        self.dest.counters().upload_errors += 1;
        crate::base::log::error(&format!("{}: {error}", self.dest.label()));
        let step = Step::Failed { retry_at, error };
        self.refresh_counters(&step);
        step
    }

    fn refresh_counters(&self, step: &Step) {
        if *step == Step::Idle && self.dest.counters().state == UploaderState::WaitingForWal {
            return;
        }
        let mut c = self.dest.counters();
        self.replica.count_requests(&mut c);
        c.sealed_otherwise = self.replica.sealed_otherwise_count();
        c.state = match step {
            Step::Failed { .. } => UploaderState::Retrying,
            Step::WaitUntil(_) => UploaderState::Pending,
            _ => UploaderState::Replicating,
        };
    }

    fn try_step(&mut self, now: u64, source: &dyn SnapshotSource) -> Result<Step, Error> {
        if !self.replica.listed {
            self.initialize(now)?;
        }
        if self.dest.db.spool.is_let_go(self.dest.index)
            && self.dest.progress().needs_snapshot.is_none()
        {
            self.dest.request_snapshot(super::types::LET_GO);
        }
        self.release_lease_if_asked(now)?;
        // Commits of processes that write without capturing them (no extension, or one that
        // leaves replication to this process) are taken from the WAL once per interval.
        // One poll serves every destination: whichever uploader comes first when it is due
        // makes it (one that backs off or stands back from a lease leaves it to the others).
        let interval = self.dest.config().sync_interval.as_millis() as u64;
        let db = &self.dest.db;
        let due = db.next_wal_poll_ms.load(Ordering::Relaxed);
        let next = now + interval.clamp(100, WAL_POLL_MAX_MS);
        if now >= due
            && db
                .next_wal_poll_ms
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            crate::shim::take_foreign_commits_now(db, &mut || source.open_wal(&db.path));
        }
        let dest = self.dest.clone();
        let flush = dest.progress().flush_requested;
        // What someone waits for goes ahead of the budget (and is counted in it).
        let budget_at = if flush {
            now
        } else {
            let requests = self.replica.upload_requests(now);
            self.pacer.ready_at(&dest, now, requests)
        };
        if dest.progress().needs_snapshot.is_some() || !self.shipper.knows_state() {
            if now < budget_at {
                return Ok(Step::WaitUntil(budget_at));
            }
            let (replica, shipper) = (&mut self.replica, &mut self.shipper);
            return self
                .snapshots
                .on_demand(&dest, replica, shipper, source, now);
        }
        let pending = dest.pending_summary();
        // Someone waiting (a sync, the last close) goes first; otherwise, under a budget,
        // a lifecycle job due gets the request after a shipment.
        if self.lifecycle_turn && !flush && now >= budget_at {
            let before = self.replica.request_counts();
            let step = self
                .compactor
                .step(&dest, &mut self.replica, source, now, Step::Idle)?;
            self.lifecycle_turn = false;
            if step.wrote() {
                return Ok(step);
            }
            if self.replica.request_counts() != before {
                // It spent requests without writing: the budget is weighed again first.
                return Ok(Step::WaitUntil(now));
            }
        }
        let Some((_, first_captured_at)) = pending else {
            dest.update_progress(|p| p.flush_requested = false);
            return self.lifecycle_or_wait(budget_at, now, source, Step::Idle);
        };
        // The schedule's due time goes to the shipper as it is: `budget_at` is `now` when
        // no budget is set or it holds the requests, and a late step must not move the
        // schedule.
        let due = self.shipper.due(now, first_captured_at, flush, interval);
        let ready = due.max(budget_at);
        if now < ready {
            return self.lifecycle_or_wait(budget_at, now, source, Step::WaitUntil(ready));
        }
        let step = self
            .shipper
            .ship(&dest, &mut self.replica, now, due, &dest.pending())?;
        self.lifecycle_turn = dest.config().request_budget.is_some();
        Ok(step)
    }

    /// A due lifecycle job, or, while the budget holds no request until `budget_at` (or no
    /// job is due), `otherwise`, woken in time for the job or the budget.
    fn lifecycle_or_wait(
        &mut self,
        budget_at: u64,
        now: u64,
        source: &dyn SnapshotSource,
        otherwise: Step,
    ) -> Result<Step, Error> {
        if now < budget_at {
            return Ok(otherwise.wake_by(budget_at));
        }
        self.compactor
            .step(&self.dest, &mut self.replica, source, now, otherwise)
    }

    /// The last connection closed: once everything is shipped, hand the lease back.
    fn release_lease_if_asked(&mut self, now: u64) -> Result<(), Error> {
        let progress = self.dest.progress();
        if progress.lease_release_requests > progress.lease_released
            && self.dest.pending_summary().is_none()
            && progress.needs_snapshot.is_none()
        {
            self.replica.release_lease()?;
            // The process may exit once this is published: its count goes to disk first.
            self.pacer
                .count(&self.dest, &self.replica.request_counts(), now);
            self.pacer.store_now(&self.dest);
            let done = progress.lease_release_requests;
            self.dest
                .update_progress(|p| p.lease_released = p.lease_released.max(done));
        }
        Ok(())
    }

    /// Start-up (and after the replica changed behind this uploader's back): one LIST to
    /// learn where the replica stands, compared with the spool.
    fn initialize(&mut self, now: u64) -> Result<(), Error> {
        self.replica.list(now)?;
        let holds_03 = self.replica.holds_litestream_03;
        self.dest
            .update_progress(|p| p.holds_litestream_03 = holds_03);
        let remote_max = self.replica.max_txid;
        let state = self.dest.state();
        let url = self.dest.config().url();
        if state.txid == 0 || state.txid != remote_max || state.replica_url != url {
            if state.txid != 0 {
                self.dest.request_snapshot(&format!(
                    "the replica is at txid {remote_max} but this spool shipped through txid {}",
                    state.txid
                ));
            } else {
                self.dest.request_snapshot("first upload of this database");
            }
        } else if let Some(why) = self.replica.unreachable_end() {
            // A file the chain needs is gone (a bucket lifecycle rule expired it): a snapshot
            // makes the replica restorable to its end again.
            self.dest.request_snapshot(&format!(
                "the replica no longer restores to txid {remote_max}: {why}"
            ));
        } else {
            let table = self.dest.load_page_checksums()?;
            let xor = table.iter().fold(0u64, |a, b| a ^ b);
            if table.len() as u32 == state.commit && xor == state.post_checksum {
                self.shipper.resume(table);
            } else {
                self.dest
                    .request_snapshot("the spool's page checksums do not match its state");
            }
        }
        self.replica.listed = true;
        Ok(())
    }
}
