//! Reactions to the VFS calls the FFI layer intercepts: deciding at open whether a database
//! replicates, catching up with a WAL this process has not seen, and capturing every
//! committed transaction from `-wal` writes into the spool. It must stay cheap on the commit
//! path and must never fail an application's write: capture problems become "snapshot
//! needed" plus a status error.
//!
//! Capture follows commits: when the write that completes a commit frame returns, the
//! commit's frame is queued and the capture thread reads the frames of that transaction
//! (from the last captured commit up to it) back from the WAL (they are in the page cache),
//! verifies them against the salts and checksum chain, and appends them to the spool. Frames
//! of a spilled transaction that rolled back are never read, because the next commit's
//! frames overwrite them and only frames up to a commit frame are taken; a transaction that
//! rewrote frames in place is captured on the committing thread once its checksums are
//! final. A WAL restart (new header at offset 0) starts a new chain, after the queue is
//! taken; truncation and deletion take the queue and forget the header.
//!
//! Several processes may open one database: the one that holds the spool's lock captures
//! and uploads; the others stand by, hand the log's commits over before they restart or
//! truncate it, and take over when the owner goes away.

mod capture;
mod capture_thread;
mod catch_up;
mod fallback;
mod handoff;
mod hooked;
mod journal;
mod no_log;
mod open;
mod queue;
mod refused;
mod standby;
mod vouch;
mod wal_file;
mod wal_observer;

pub use capture::settle_deferred;
pub use capture_thread::set_wal_opener;
pub use catch_up::take_foreign_commits_now;
pub use handoff::{hand_off_before_hooked_commit, on_open_wal_elsewhere, HandoffObserver};
pub use hooked::{after_hooked_commit, before_hooked_commit, on_adopt, on_hooked_close};
pub use journal::{before_journal_delete, page_one_written};
pub use open::{
    base_vfs_name, drills_configured, init_process_config, on_open_main_db, open_database,
    resolve_for_path, resolve_with_url, restore_needed_before_open, set_base_vfs_name, DbObserver,
};
pub use refused::{
    refused_databases, refused_reason, NotReplicated, ReadOnlyOpen, RefusedDatabase,
};
pub use standby::{replicated_elsewhere, standby_databases, take_over_standbys};
pub use wal_file::set_index_reader;
pub use wal_observer::{before_delete, on_open_wal, WalObserver};
