//! The leaves every other module may use and which use nothing of the crate: the clock and
//! its one time format, logging through a sink the FFI entry installs, positioned reads,
//! the poison-tolerant lock, a histogram of durations, files only their owner can read, and
//! directories held by a descriptor. Nothing here knows about databases, replicas or SQLite.

pub mod clock;
pub mod held_dir;
pub mod histogram;
pub mod io;
pub mod lock;
pub mod log;
pub mod private_fs;
