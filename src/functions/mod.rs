//! The logic behind the SQL functions (`replica_sync`, `replica_snapshot`,
//! `replica_restore`, `replica_verify`, `replica_restore_points`, `replica_version`) and
//! the restore a database gets when it is opened missing; the FFI layer only converts
//! arguments and results. It owns argument meaning and error wording; it must not touch
//! SQLite itself (the integrity check, the live database reader and the lock probe are
//! handed in).
//!
//! `scope` resolves what a call refers to; `sync`, `restore`, `points` and `verify` hold
//! one family of functions each; `boot_restore` is the restore at open; `sources` picks
//! which destination a restore reads; `target` decides where a restore may write;
//! `sync_commit` packs the synchronous-commit setting; `follow` reads a follower's URI
//! parameters.

mod boot_restore;
pub mod follow;
mod points;
mod restore;
mod scope;
mod sources;
mod sync;
pub mod sync_commit;
mod target;
mod verify;
mod version;

pub use boot_restore::restore_missing;
pub use points::{restore_points, RESTORE_POINT_COLUMNS};
pub use restore::{parse_point, parse_restore_options, restore, RestoreOptions};
pub use scope::WalOpener;
pub use sync::{snapshot, sync, wait_for_other_process, Quorum};
pub use target::LockProbe;
pub use verify::{run_scheduled_drills, verify, DrillSchedule};
pub use version::version;
