//! Forks: a forked child has only the thread that forked, so any lock another thread of the
//! extension held at that moment stays held in the child for ever. The handlers installed
//! with `pthread_atfork` mark the child, give up its share of the parent's spool locks, and
//! hold across the fork the locks the extension's own threads take and a child takes again:
//! the database registry, the registry of write-lock notes (which the child then clears: it
//! holds no write lock its parent's threads did), and SQLite's static mutexes those threads
//! take when they open a file through the base VFS or allocate (its allocator's, the VFS
//! list's, the unix VFS's), each one that can be had within a moment (a fork never waits
//! long on one).

use libsqlite3_sys as sys;
use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::time::Duration;

extern "C" {
    // From the C library std already links; the `libc` crate is not needed for one symbol.
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn close(fd: c_int) -> c_int;
}

/// `O_RDWR | O_CLOEXEC` on Linux (the only platform the extension is built for).
const O_RDWR: c_int = 0o2;
const O_CLOEXEC: c_int = 0o2000000;

/// SQLite's static mutexes held across a fork, in the order SQLite itself nests them (the
/// main one around opening a file, the unix VFS's around its inode list, the allocator's
/// innermost).
const SQLITE_MUTEXES: [c_int; 3] = [
    sys::SQLITE_MUTEX_STATIC_MAIN,
    sys::SQLITE_MUTEX_STATIC_VFS1,
    sys::SQLITE_MUTEX_STATIC_MEM,
];

/// How long the forking thread tries for each lock it holds across the fork: their holders
/// keep them for microseconds, and one that waits for something the forking thread holds
/// (a host's log callback, say) must not hang the fork.
const FORK_LOCK_WAIT: Duration = Duration::from_millis(50);

thread_local! {
    /// What [`fork_prepare`] entered of [`SQLITE_MUTEXES`] on this thread (bit `i` for the
    /// `i`-th) and through which API table, for the parent and the child to leave just those
    /// (a second SQLite that loaded the extension meanwhile could have replaced the table).
    /// Per thread: the handlers of one fork run on the thread that forks, and two threads
    /// may fork at once.
    static ENTERED: Cell<(*const sys::sqlite3_api_routines, u8)> =
        const { Cell::new((std::ptr::null(), 0)) };
}

/// Enters SQLite's static mutexes of [`SQLITE_MUTEXES`] in their order, each when it can be
/// had within [`FORK_LOCK_WAIT`]. Nothing without the API (not loaded into a host) or in a
/// build of SQLite without mutexes (`sqlite3_mutex_alloc` gives none).
fn enter_sqlite_mutexes() {
    let Some(api) = super::api() else { return };
    let (Some(alloc), Some(try_enter)) = (api.mutex_alloc, api.mutex_try) else {
        return;
    };
    let mut mask = 0u8;
    for (i, id) in SQLITE_MUTEXES.into_iter().enumerate() {
        // SAFETY: a static mutex id: SQLite returns its own static mutex (or null without
        // mutexes), allocating nothing.
        let m = unsafe { alloc(id) };
        if m.is_null() {
            continue;
        }
        let mut go_on = crate::base::lock::for_at_most(FORK_LOCK_WAIT);
        let entered = loop {
            // SAFETY: a static mutex of SQLite's; entered here, it is left by this thread
            // after the fork (in the parent, or in the child where it is the only thread).
            if unsafe { try_enter(m) } == sys::SQLITE_OK {
                break true;
            }
            if !go_on() {
                break false;
            }
            std::thread::yield_now();
        };
        if entered {
            mask |= 1 << i;
        }
    }
    ENTERED.with(|entered| entered.set((api as *const _, mask)));
}

/// Leaves, in the reverse order, what [`enter_sqlite_mutexes`] entered.
fn leave_sqlite_mutexes() {
    let (api, mask) = ENTERED.with(|entered| entered.replace((std::ptr::null(), 0)));
    // SAFETY: the API table SQLite handed the extension, which lives as long as that
    // library (it stays loaded while the extension is).
    let Some(api) = (unsafe { api.as_ref() }) else {
        return;
    };
    let (Some(alloc), Some(leave)) = (api.mutex_alloc, api.mutex_leave) else {
        return;
    };
    for (i, id) in SQLITE_MUTEXES.into_iter().enumerate().rev() {
        if mask & (1 << i) == 0 {
            continue;
        }
        // SAFETY: the static mutex entered by this thread before the fork (see above).
        unsafe { leave(alloc(id)) };
    }
}

/// Runs on the thread that forks, just before `fork()`: takes the locks the extension's
/// other threads take and a child takes again (see the module docs), the registry first
/// (who holds it may take SQLite's mutexes and the notes' registry, as a database opens;
/// SQLite never calls back into either).
unsafe extern "C" fn fork_prepare() {
    super::guard((), || {
        crate::database::hold_registry_for_fork(FORK_LOCK_WAIT);
        crate::database::hold_notes_for_fork(FORK_LOCK_WAIT);
        enter_sqlite_mutexes();
    });
}

/// Runs in the parent just after `fork()`: lets go of what [`fork_prepare`] took.
unsafe extern "C" fn fork_parent() {
    super::guard((), || release_after_fork(false));
}

fn release_after_fork(in_child: bool) {
    leave_sqlite_mutexes();
    crate::database::release_notes_after_fork(in_child);
    crate::database::release_registry_after_fork();
}

/// Runs in a forked child before `fork()` returns there: marks the child, which then
/// leaves the parent's in-memory state, threads and connections alone, lets go of what
/// [`fork_prepare`] took, and gives up its share of the parent's spool locks, which would
/// otherwise stay locked for as long as the child outlives the parent. Only atomics,
/// thread-local cells, unlocking and `open`/`dup3`/`close`.
unsafe extern "C" fn fork_child() {
    // No guard(): catch_unwind is not async-signal-safe, and none of this can panic.
    crate::database::on_fork_child();
    release_after_fork(true);
    // Opened here rather than kept: a descriptor number kept from the load may name
    // something else by now in a process that closed and reused its descriptors.
    // SAFETY: a NUL-terminated literal path and plain flags.
    let null = unsafe { open(c"/dev/null".as_ptr(), O_RDWR | O_CLOEXEC) };
    if null >= 0 {
        crate::base::child_release::each_held(|fd| {
            // SAFETY: `fd` is a spool lock this process held at the fork (registered until
            // just before it is closed) and `null` was just opened; dup3 swaps what `fd`
            // names without closing the parent's lock.
            unsafe { dup3(null, fd, O_CLOEXEC) };
        });
        // SAFETY: our own descriptor, opened above.
        unsafe { close(null) };
    }
    // The child holds none of them now: a fork of the child must not touch those numbers.
    crate::base::child_release::forget_all();
}

pub(super) fn install_fork_handler() {
    // SAFETY: registering functions that live as long as the process (the library stays
    // loaded: init returns SQLITE_OK_LOAD_PERMANENTLY); the child's only touches atomics,
    // descriptors and the locks the forking thread took before the fork.
    let rc = unsafe { pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    if rc == 0 {
        crate::database::fork_handler_installed();
    } else {
        crate::base::log::error(&format!(
            "pthread_atfork failed ({rc}); forked children are recognised by their process id"
        ));
    }
}
