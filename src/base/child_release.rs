//! Descriptors a forked child must give up at once: the spool locks this process holds.
//! A `flock` belongs to the open file description, which `fork` shares with the child, so a
//! child outliving its parent (a worker, a job runner) would keep the parent's spools
//! locked, and no other process could take their replication over while it runs. The fork
//! handler the FFI entry installs replaces each registered descriptor in the child with
//! `/dev/null`: the child's share is gone, the parent's lock stays.
//!
//! The handler runs between `fork` and its return in the child, where only
//! async-signal-safe work is allowed: the table is a fixed array of atomics, read without
//! a lock or an allocation.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// At most this many descriptors are released in children; beyond it (more spools than
/// any host opens) a child keeps its share, as before.
const SLOTS: usize = 64;

static HELD: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// A file whose descriptor forked children give up (see the module).
pub struct ReleasedInChildren {
    file: File,
    slot: Option<usize>,
}

impl ReleasedInChildren {
    pub fn new(file: File) -> ReleasedInChildren {
        let fd = file.as_raw_fd();
        let slot = HELD.iter().position(|s| {
            s.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        if slot.is_none() {
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, Ordering::SeqCst) {
                crate::base::log::error(&format!(
                    "more than {SLOTS} spools are open: a forked child keeps the locks of the others while it runs"
                ));
            }
        }
        ReleasedInChildren { file, slot }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for ReleasedInChildren {
    fn drop(&mut self) {
        // Out of the table before the descriptor is closed (the field drops after this),
        // so that a fork in between never sees a number that may already name another file.
        if let Some(slot) = self.slot {
            HELD[slot].store(-1, Ordering::SeqCst);
        }
    }
}

/// Empties the table (in a forked child, once it has given its shares up: the numbers are
/// no longer its locks).
pub fn forget_all() {
    for slot in &HELD {
        slot.store(-1, Ordering::SeqCst);
    }
}

/// Calls `release` with every registered descriptor (in a forked child, from the fork
/// handler: no lock, no allocation).
pub fn each_held(mut release: impl FnMut(i32)) {
    for slot in &HELD {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            release(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_until_dropped() {
        let f = File::open("/dev/null").unwrap();
        let fd = f.as_raw_fd();
        let held = ReleasedInChildren::new(f);
        let mut seen = Vec::new();
        each_held(|d| seen.push(d));
        assert!(seen.contains(&fd));
        assert_eq!(held.file().as_raw_fd(), fd);
        drop(held);
        let mut seen = Vec::new();
        each_held(|d| seen.push(d));
        assert!(!seen.contains(&fd));
    }
}
