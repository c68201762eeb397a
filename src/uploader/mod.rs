//! Ships spooled transactions to the store as LTX files: a steppable per-database worker
//! (`DbUploader::step`, driven directly by tests) and one lazily started background thread
//! per process that steps every database. It owns batching, snapshots, txids and the
//! replicated database checksum; it must never block a commit (it only takes the write lock
//! through a private connection, for snapshots).
//!
//! Batching: a commit that arrives after an idle period (about a sync interval or more after
//! the schedule's last slot) is shipped at once; while commits keep coming, one file per
//! interval, on a schedule that does not drift (`ship::Shipper::due`). An idle database
//! makes no requests at all. Txids count shipped files, as in Litestream:
//! each level-0 file has min = max = previous + 1; a snapshot asked for (first upload, gap,
//! `replica_snapshot()`) is `1-<txid + 1>` at level 9, while a scheduled one holds exactly
//! the replicated state and is `1-<txid>`, so level 0 stays contiguous.
//!
//! Lifecycle (planned by `lifecycle`, run here when nothing is due to ship): compaction of
//! each level at its window, from local copies of the files it uploaded (`<spool>/cache/`)
//! or downloads; scheduled snapshots; retention deletes. The replica's files are known from
//! one LIST at start-up and then from this uploader's own uploads and deletes.
//!
//! Request budget (`request-budget`): every request counts in the replica's ledger
//! (`pacer`); under a budget, shipping, snapshots and lifecycle jobs wait until the
//! budget's bucket holds a request, shipping and lifecycle jobs take turns, and only
//! `replica_sync()` (and synchronous commits) go ahead regardless.
//!
//! One concern per file: `worker` (the step and what a failure means), `ship` (batches),
//! `pacer` (the request budget),
//! `snapshots`, `compactor` (compaction and retention), `remote` (the replica: store, keys,
//! listing), `known` (its files), `cache` (local copies), `leaser` (the lease), `backoff`,
//! `thread` (the process's uploader thread), `types` (what they hand each other).

mod backoff;
mod cache;
mod compactor;
mod known;
mod leaser;
mod pacer;
mod remote;
mod ship;
mod snapshots;
mod thread;
mod types;
mod worker;

#[cfg(test)]
mod bucket_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_budget;
#[cfg(test)]
mod tests_destinations;

pub use thread::{set_snapshot_source, wake};
pub use types::{Step, LTX_FLAGS};
pub use worker::{DbUploader, WAL_POLL_MAX_MS};
