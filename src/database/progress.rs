//! What the uploader of one destination publishes (`Progress`, which `replica_sync`
//! waiters watch) and counts (`Counters`, which `replica_status()` shows), and the typed
//! states they carry. Plain data: no locks, no I/O.

use crate::spool::FileStamp;

/// Progress the uploader publishes; waiters in `replica_sync` watch it.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Last txid in the replica.
    pub txid: u64,
    /// Every spool record up to this sequence number is in the replica.
    pub shipped_seq: u64,
    /// A snapshot has been asked for (gap, overflow, first upload, or on demand).
    pub needs_snapshot: Option<String>,
    /// The database file's stamp when a snapshot was last asked for because the file
    /// changed without a log, while that snapshot is owed: any snapshot that clears
    /// `needs_snapshot` began reading after the file carried it, so the same change found
    /// again (a log starting while the poll's snapshot is read) asks for no second one.
    pub owed_for_file: Option<FileStamp>,
    /// Count of snapshots shipped, so an on-demand snapshot can wait for the next one.
    pub snapshots: u64,
    /// Bumped by every snapshot request, so one made while a snapshot is being read is
    /// not cleared by that snapshot.
    pub snapshot_request: u64,
    /// A commit the next snapshot must contain (one whose capture failed: it becomes
    /// visible to readers a moment after the failure), and until when to insist (ms).
    pub snapshot_must_cover: Option<(crate::wal::WalPosition, u64)>,
    /// The uploader should ship what is pending now rather than wait for the interval.
    pub flush_requested: bool,
    pub last_error: Option<String>,
    /// Consecutive failed attempts, and when the next one is due (ms), while retrying.
    pub retries: u32,
    pub next_retry_at_ms: Option<u64>,
    /// Failed attempts ever (never reset), so a waiter can tell that one failed after it asked.
    pub failed_attempts: u64,
    /// Requests to hand the replica's lease back (the last connection closed), and the
    /// last one done.
    pub lease_release_requests: u64,
    pub lease_released: u64,
    /// How the database is journaled, as its writes through this process show: out of WAL
    /// mode, nothing of it is captured.
    pub journal: JournalMode,
    /// Since when (ms) a snapshot has been owed: the replica misses everything committed
    /// since then, which is what the lag counts from.
    pub snapshot_owed_since_ms: Option<u64>,
    /// The replica's place also holds a Litestream 0.3 replica (a database moving in from
    /// Litestream 0.3): status says so until libreplica's own history has begun.
    pub holds_litestream_03: bool,
}

impl Progress {
    /// Starts or ends the time a snapshot is owed, as `needs_snapshot` now says.
    pub(super) fn note_snapshot_owed(&mut self, now: u64) {
        match (&self.needs_snapshot, self.snapshot_owed_since_ms) {
            (Some(_), None) => self.snapshot_owed_since_ms = Some(now),
            (None, Some(_)) => self.snapshot_owed_since_ms = None,
            _ => {}
        }
        if self.needs_snapshot.is_none() {
            self.owed_for_file = None;
        }
    }
}

/// A database's journal mode as far as replication is concerned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// WAL mode (the file header says so), or not known otherwise: replicating.
    #[default]
    Wal,
    /// A rollback journal that each transaction deletes (`PRAGMA journal_mode=DELETE`).
    Delete,
    /// Another rollback journal (truncate, persist, memory, off).
    Rollback,
}

impl JournalMode {
    /// How status and errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            JournalMode::Wal => "journal_mode=wal",
            JournalMode::Delete => "journal_mode=delete",
            JournalMode::Rollback => "journal_mode is not WAL",
        }
    }
}

/// What the uploader of a destination is doing, as `replica_status()` shows some of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum UploaderState {
    /// Not stepped yet.
    #[default]
    Starting,
    /// The database is not in WAL mode: nothing to replicate until its first WAL commit.
    WaitingForWal,
    /// Another uploader holds the replica's lease.
    LeaseHeldElsewhere,
    /// The last step failed and is retried after a backoff.
    Retrying,
    /// Something waits for its batch interval or a lifecycle job.
    Pending,
    Replicating,
}

impl UploaderState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploaderState::Starting => "starting",
            UploaderState::WaitingForWal => "waiting for WAL mode",
            UploaderState::LeaseHeldElsewhere => "lease held elsewhere",
            UploaderState::Retrying => "retrying",
            UploaderState::Pending => "pending",
            UploaderState::Replicating => "replicating",
        }
    }
}

/// What capture counts for `replica_status()`: the database's, whatever its destinations.
#[derive(Debug, Default, Clone)]
pub struct CaptureCounters {
    pub capture_errors: u64,
    /// How long each WAL restart or truncation this process captured waited for the
    /// spool (writing it out, recording the new log), in µs.
    pub restart_waits: crate::base::histogram::Histogram,
}

/// One destination's counters for `replica_status()`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub uploads: u64,
    pub upload_errors: u64,
    pub snapshots: u64,
    /// Files written by compaction, and files retention deleted (verified gone).
    pub compactions: u64,
    pub files_deleted: u64,
    pub bytes_uploaded: u64,
    /// Files of an encrypted replica sealed to other recipients than the configured ones;
    /// `None` for a plaintext replica.
    pub sealed_otherwise: Option<u64>,
    pub last_upload_at_ms: Option<u64>,
    pub requests: crate::store::RequestCounts,
    pub state: UploaderState,
    /// The last `replica_verify` drill: when (ms) and what it found.
    pub last_verify: Option<(u64, String)>,
    /// This month's requests and the request budget's bucket, as the uploader last
    /// counted them (`None` before its first step).
    pub ledger: Option<crate::budget::Ledger>,
}
