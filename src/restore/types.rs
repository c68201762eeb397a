//! What a restore is told and what it reports: the target, the request, the tuning knobs,
//! progress and the outcome. Plain data shared by the planner, the fetcher and the
//! applier; it must not do any I/O.

use crate::error::Error;
use crate::store::ObjectStore;
use std::path::Path;

/// Litestream's restore parallelism (`-parallelism`, default 8).
pub const DEFAULT_PARALLELISM: usize = 8;
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

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub txid: u64,
    pub files: usize,
    pub pages: u32,
    pub bytes_downloaded: u64,
    /// The restored database's LTX checksum (page checksums XORed, flag bit set), when it
    /// was computed: asked for, or needed to check a file that carries checksums.
    pub db_checksum: Option<u64>,
    /// The database the restore left: what a chain applied onto it next starts from.
    pub base: Base,
    /// The pages the chain writes, ascending, when only verified (`Tuning::verify_only`):
    /// what a follower journals before it applies the chain.
    pub touched: Vec<u32>,
}

/// A database an LTX chain continues: its size in pages, its page size and the replication
/// history (LTX node id) its files so far belong to (0: none named yet). All zero for an
/// empty file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Base {
    pub commit: u32,
    pub page_size: u32,
    pub lineage: u64,
}

/// How far a running restore is; reported after every downloaded piece.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Why the integrity check of a restored file did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// The check ran and found the file damaged, or SQLite would not read it as a database:
    /// the replica's content is to blame.
    Damaged(String),
    /// The check could not run here (the file would not open, out of memory, an I/O error,
    /// a lock): nothing is known about the replica.
    NotRun(String),
}

pub struct RestoreRequest<'a> {
    pub store: &'a dyn ObjectStore,
    /// Key prefix of the replica (empty for file replicas).
    pub prefix: &'a str,
    pub output: &'a Path,
    pub target: Target,
    pub overwrite: bool,
    /// Runs SQLite's integrity check on the restored file before it is moved in place
    /// (`integrity_check` unless the caller asked for `quick_check`).
    pub check: &'a dyn Fn(&Path) -> Result<(), CheckFailure>,
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
    /// Runs on the output path after the restored file passed its checks, just before it
    /// is published: a last look at what is there now (a restore can take minutes), and
    /// an error stops the restore.
    pub before_publish: &'a dyn Fn(&Path) -> Result<(), Error>,
    /// Check the chain without writing anything (a follower's dry run before it takes the
    /// lock): every check but the database checksum, which needs the pages in place.
    pub verify_only: bool,
    /// Write page 1 with read and write versions 1 (rollback-journal mode), whatever the
    /// file says: a follower's copy must never show its readers a WAL-mode header.
    pub rollback_mode: bool,
    /// Check the database checksum files carry against the result: off for a follower's
    /// copy, whose page 1 is its own (the file checksums, checked, still bind the pages).
    pub db_checksums: bool,
}

impl Default for Tuning<'_> {
    fn default() -> Self {
        Tuning {
            parallelism: DEFAULT_PARALLELISM,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            want_checksum: false,
            exclusive: false,
            progress: &|_| {},
            before_publish: &|_| Ok(()),
            verify_only: false,
            rollback_mode: false,
            db_checksums: true,
        }
    }
}
