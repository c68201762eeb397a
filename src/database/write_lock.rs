//! What each database's WAL write lock found when a connection of this process took it,
//! kept while that lock is held. A restart or truncation of the log happens under it, after
//! SQLite has reset the WAL index for the next log: this is then the only record of how far
//! the old log was committed.
//!
//! It is noted on every write transaction, so noting takes no lock: SQLite's write lock
//! lets one connection of this process at a time note a database (it notes after taking the
//! lock and clears before letting it go), and a reader checks a sequence number around its
//! copy. Only finding a database's note (once per open) goes through the registry's lock,
//! which the forking thread holds across a fork (see `ffi::fork`).

use crate::base::lock::{for_at_most, lock, tries, try_lock_yielding};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One database's note; see the module doc.
#[derive(Default)]
pub struct WriteLockNote {
    /// Odd while a note is being written.
    seq: AtomicU32,
    /// The noted log's salts (salt1 in the high half).
    salts: AtomicU64,
    /// [`HELD`] with the last published frame in the low half; 0 while not held.
    end: AtomicU64,
}

/// Set in [`WriteLockNote::end`] while the write lock is held.
const HELD: u64 = 1 << 32;

/// How many times a reader copies a note that keeps changing before it gives up (a forked
/// child may inherit a note its parent's thread was writing at the fork).
const READ_TRIES: u32 = 1000;

fn packed((salt1, salt2): (u32, u32)) -> u64 {
    (u64::from(salt1) << 32) | u64::from(salt2)
}

impl WriteLockNote {
    /// The write lock was taken and the WAL index then said the log with `salts` was
    /// published up to frame `mx_frame` (`Some`), or the lock is about to be let go (`None`).
    /// Only the connection holding the write lock calls this.
    pub fn set(&self, found: Option<((u32, u32), u32)>) {
        // Odd first (from whatever an interrupted write left, too).
        let seq = self.seq.load(Ordering::Relaxed) | 1;
        self.seq.store(seq, Ordering::Relaxed);
        fence(Ordering::Release);
        let (salts, end) = match found {
            Some((salts, mx_frame)) => (packed(salts), HELD | u64::from(mx_frame)),
            None => (0, 0),
        };
        self.salts.store(salts, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Release);
    }

    /// The last frame of the log with `salts` that the held write lock found published;
    /// `None` while the lock is not held, or was taken on another log.
    pub fn published_end(&self, salts: (u32, u32)) -> Option<u32> {
        for _ in 0..READ_TRIES {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let noted_salts = self.salts.load(Ordering::Relaxed);
                let end = self.end.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    let of_log = end & HELD != 0 && noted_salts == packed(salts);
                    return of_log.then_some(end as u32);
                }
            }
            std::hint::spin_loop();
        }
        None
    }
}

/// Every database's note, by path; an entry stays once made.
type Notes = Vec<(PathBuf, Arc<WriteLockNote>)>;

static NOTES: Mutex<Notes> = Mutex::new(Vec::new());

/// Set in a forked child whose forking thread could not hold [`NOTES`] across the fork: a
/// thread of the parent that does not exist here may hold it for ever.
static NOTES_MAY_BE_ORPHANED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// [`NOTES`], held by the forking thread from just before a fork to just after it.
    static HELD_FOR_FORK: RefCell<Option<MutexGuard<'static, Notes>>> =
        const { RefCell::new(None) };
}

/// The note of the database at `db_path`, shared by everyone in this process who opens it.
pub fn write_lock_note(db_path: &Path) -> Arc<WriteLockNote> {
    note_in(
        &NOTES,
        NOTES_MAY_BE_ORPHANED.load(Ordering::Relaxed),
        db_path,
    )
}

/// [`write_lock_note`] in `registry`. Where its lock may be orphaned (see
/// [`NOTES_MAY_BE_ORPHANED`]) and is held, a note of its own, seen by no one else: then the
/// index on disk alone says how far a log was published.
fn note_in(registry: &Mutex<Notes>, may_be_orphaned: bool, db_path: &Path) -> Arc<WriteLockNote> {
    let held = match may_be_orphaned {
        true => try_lock_yielding(registry, tries(1)),
        false => Some(lock(registry)),
    };
    let Some(mut notes) = held else {
        return Arc::default();
    };
    if let Some((_, note)) = notes.iter().find(|(p, _)| p == db_path) {
        return note.clone();
    }
    let note = Arc::new(WriteLockNote::default());
    notes.push((db_path.to_path_buf(), note.clone()));
    note
}

/// Just before a fork, on the thread that forks (after the database registry, which is
/// held while a database opens and finds its note): takes the notes' lock, trying for at
/// most `wait` as the registry does.
pub fn hold_notes_for_fork(wait: Duration) {
    let held = try_lock_yielding(&NOTES, for_at_most(wait));
    HELD_FOR_FORK.with(|h| *h.borrow_mut() = held);
}

/// Just after a fork, in the parent and in the child: lets the notes' lock go. The child
/// first clears every note: it holds no write lock its parent's threads did.
pub fn release_notes_after_fork(in_child: bool) {
    HELD_FOR_FORK.with(|h| {
        let held = h.borrow_mut().take();
        if in_child {
            match &held {
                Some(notes) => clear(notes),
                None => NOTES_MAY_BE_ORPHANED.store(true, Ordering::Relaxed),
            }
        }
    });
}

fn clear(notes: &Notes) {
    for (_, note) in notes {
        note.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_answers_for_its_log_while_held() {
        let note = WriteLockNote::default();
        assert_eq!(note.published_end((5, 6)), None);
        note.set(Some(((5, 6), 40)));
        assert_eq!(note.published_end((5, 6)), Some(40));
        assert_eq!(note.published_end((6, 5)), None, "another log");
        note.set(Some(((5, 6), 0)));
        assert_eq!(
            note.published_end((5, 6)),
            Some(0),
            "an empty log is published to 0"
        );
        note.set(None);
        assert_eq!(note.published_end((5, 6)), None);
    }

    #[test]
    fn everyone_opening_a_path_shares_its_note_and_a_forked_child_clears_them() {
        let registry = Mutex::new(Notes::new());
        let a = note_in(&registry, false, Path::new("/data/a.db"));
        let again = note_in(&registry, false, Path::new("//data/a.db"));
        let b = note_in(&registry, false, Path::new("/data/b.db"));
        a.set(Some(((1, 2), 7)));
        assert_eq!(again.published_end((1, 2)), Some(7));
        assert_eq!(b.published_end((1, 2)), None);
        clear(&lock(&registry));
        assert_eq!(again.published_end((1, 2)), None);
    }

    /// In a forked child whose registry a thread of the parent held, opening does not
    /// wait: it gets a note of its own (and one it can share once the lock is free).
    #[test]
    fn an_orphaned_registry_gives_a_note_of_its_own_without_waiting() {
        let registry = Mutex::new(Notes::new());
        let shared = note_in(&registry, true, Path::new("/data/c.db"));
        let held = lock(&registry);
        let own = note_in(&registry, true, Path::new("/data/c.db"));
        drop(held);
        shared.set(Some(((3, 4), 9)));
        assert_eq!(own.published_end((3, 4)), None);
        assert_eq!(
            note_in(&registry, true, Path::new("/data/c.db")).published_end((3, 4)),
            Some(9)
        );
    }

    /// Noting takes no lock, and a note left half-written (by a parent's thread, in a
    /// forked child) answers nothing until it is noted again.
    #[test]
    fn a_torn_note_answers_nothing_until_noted_again() {
        let note = WriteLockNote::default();
        note.set(Some(((3, 4), 9)));
        note.seq.fetch_or(1, Ordering::Relaxed);
        assert_eq!(note.published_end((3, 4)), None);
        note.set(Some(((3, 4), 11)));
        assert_eq!(note.published_end((3, 4)), Some(11));
    }

    /// A reader never takes one note's salts with another's frame.
    #[test]
    fn a_reader_never_mixes_two_notes() {
        let note = Arc::new(WriteLockNote::default());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let writer = {
            let note = note.clone();
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                for i in 0..1_000_000u32 {
                    match i % 3 {
                        0 => note.set(Some(((1, 1), 100))),
                        1 => note.set(Some(((2, 2), 200))),
                        _ => note.set(None),
                    }
                }
            })
        };
        started_rx.recv().unwrap();
        loop {
            let done = writer.is_finished();
            for (salts, end) in [((1, 1), 100), ((2, 2), 200)] {
                if let Some(found) = note.published_end(salts) {
                    assert_eq!(found, end, "the frame of another note");
                }
            }
            if done {
                break;
            }
        }
        writer.join().unwrap();
        assert_eq!(
            note.published_end((1, 1)),
            Some(100),
            "the last note stands"
        );
    }
}
