//! The one way the crate takes a mutex: a panic on another thread that held it must not stop
//! replication (every guarded state here stays consistent between statements), so a poisoned
//! lock is taken as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tries for `m` (taking a poisoned lock as it is), yielding the processor between tries
/// while `go_on` says to: `None` once it says to stop. For a lock that a thread which no
/// longer exists may hold (in a forked child), or whose holder may wait on the caller.
pub fn try_lock_yielding<T: ?Sized>(
    m: &Mutex<T>,
    mut go_on: impl FnMut() -> bool,
) -> Option<MutexGuard<'_, T>> {
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if go_on() => std::thread::yield_now(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// A `go_on` for [`try_lock_yielding`]: true for the first `tries - 1` calls.
pub fn tries(tries: u32) -> impl FnMut() -> bool {
    let mut made = 1;
    move || {
        made += 1;
        made <= tries
    }
}

/// A `go_on` for [`try_lock_yielding`] (or any loop of tries): true until `wait` has passed
/// since it was made.
pub fn for_at_most(wait: std::time::Duration) -> impl FnMut() -> bool {
    let started = std::time::Instant::now();
    move || started.elapsed() < wait
}

/// Locks `m` as [`lock`] does, trying for a while first (up to `spins` tries) instead of
/// going to sleep at once: for a lock whose other holder keeps it a microsecond or two, a
/// sleep and a wake-up cost the waiter far more than the wait.
pub fn lock_spinning<T: ?Sized>(m: &Mutex<T>, spins: u32) -> MutexGuard<'_, T> {
    for _ in 0..spins {
        match m.try_lock() {
            Ok(g) => return g,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_tried_as_often_as_told_and_a_free_one_at_once() {
        let m = Mutex::new(7);
        let held = lock(&m);
        let mut asked = 0;
        let mut go_on = tries(3);
        let got = try_lock_yielding(&m, || {
            asked += 1;
            go_on()
        });
        assert!(got.is_none());
        assert_eq!(asked, 3, "three tries, then it stops");
        drop(held);
        assert_eq!(try_lock_yielding(&m, || false).map(|g| *g), Some(7));
    }

    #[test]
    fn a_held_lock_is_tried_until_the_wait_has_passed() {
        let m = Mutex::new(7);
        let held = lock(&m);
        let gone = try_lock_yielding(&m, for_at_most(std::time::Duration::ZERO));
        assert!(gone.is_none(), "no wait: one try");
        let mut go_on = for_at_most(std::time::Duration::from_secs(3600));
        assert!(go_on() && go_on(), "within the wait, it goes on");
        drop(held);
    }
}
