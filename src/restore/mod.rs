//! Restore: plan from a LIST (the latest snapshot at or before the target, then the shortest
//! contiguous chain of files after it, across levels), download in parallel (a bounded
//! window of whole or ranged GETs), stream each file through the LTX decoder straight into a
//! temporary file, verify every file checksum, the database checksum chain where files carry
//! one and SQLite's page-1 header against each file's commit size, check integrity (indexes
//! against tables by default: a same-named file from another database of the same schema
//! leaves well-formed b-trees that only disagree with their indexes; on failure, bisect the
//! chain to name the first file after which it fails), then rename into
//! place (or hard-link, never replacing, for boot-time restores). Planning is pure; applying
//! takes the store and a checker. It must
//! never leave an unverified file at the target path (nor any file when it fails), never
//! overwrite a file unless asked, and never hold more than the download window in memory.
//!
//! `types` holds what a restore is told and reports, `plan` the pure planner, `fetch` the
//! store reads and the download window, `write` the writer thread, `apply` the decoding and
//! checks into the temporary file, `temp` the creation of temporary files, and `run` the
//! whole restore and its publication. `legacy` restores a Litestream 0.3 replica (a
//! `generations/` tree and no LTX files) through the same temporary file, check and
//! publication.

mod apply;
mod fetch;
mod legacy;
mod plan;
mod run;
mod temp;
mod types;
mod write;

pub use apply::apply_onto;
pub use fetch::{list_objects, read_headers};
pub use legacy::list_ls03;
pub use plan::{check_listing, parse_listing, plan, restorable_txids, LtxObject};
pub use run::{restore, restore_with};
pub use types::{
    Base, CheckFailure, RestoreProgress, RestoreRequest, Restored, Target, Tuning,
    DEFAULT_CHUNK_BYTES, DEFAULT_PARALLELISM,
};
