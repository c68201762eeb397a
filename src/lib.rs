//! libreplica: a SQLite loadable extension that captures every committed transaction of a
//! WAL database through a VFS shim, spools it locally and ships it as Litestream-compatible
//! LTX files from a background thread. `ffi` holds every C call and raw pointer; the other
//! modules are safe Rust.

pub mod base;
pub mod budget;
pub mod config;
pub mod database;
pub mod error;
pub mod fault;
mod ffi;
pub mod follow;
pub mod functions;
pub mod handoff;
pub mod lease;
pub mod lifecycle;
pub mod ls03;
pub mod ltx;
pub mod lz4frame;
pub mod metrics;
pub mod restore;
pub mod seal;
pub mod shim;
pub mod snapshot;
pub mod spool;
pub mod status;
pub mod store;
pub mod uploader;
pub mod verify;
pub mod wal;

pub use ffi::sqlite3_replica_init;
