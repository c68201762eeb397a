//! The leaves every other module may use and which use nothing of the crate: the clock and
//! its one time format, logging through a sink the FFI entry installs, positioned reads,
//! the poison-tolerant lock, values alone on their cache lines, a histogram of durations, files only their owner can read,
//! directories held by a descriptor, the descriptors a forked child gives up, and (for unit tests) a fresh directory and an in-memory file. Nothing here knows about databases, replicas or SQLite.

pub mod child_release;
pub mod clock;
pub mod held_dir;
pub mod histogram;
pub mod io;
pub mod lock;
pub mod log;
pub mod padded;
pub mod private_fs;
#[cfg(test)]
pub mod testing;
