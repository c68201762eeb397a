//! Named crash points for tests: built only with the `fault-points` feature, where
//! `REPLICA_FAULT_POINT=<name>` makes the process kill itself with SIGKILL the moment it
//! reaches that point (`REPLICA_FAULT_AFTER=<n>`: at its n-th arrival). Without the feature
//! every point is an empty inline function. It owns nothing else and must not be used for
//! anything but crashing on purpose.

/// The points, in the order a commit meets them: capture, spool, upload, lease, lifecycle.
pub const POINTS: &[&str] = &[
    "capture.queued",
    "capture.before_append",
    "capture.after_append",
    "spool.write_behind",
    "spool.generation_behind",
    "spool.flush",
    "upload.after_put",
    "upload.after_state",
    "snapshot.after_put",
    "lease.after_write",
    "compaction.after_put",
];

/// A follower's points, in the order an apply meets them (`tests/follow_lifecycle.rs`).
pub const FOLLOWER_POINTS: &[&str] = &["follow.after_journal", "follow.after_pages"];

#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let name = std::env::var("REPLICA_FAULT_POINT").ok()?;
        let after = std::env::var("REPLICA_FAULT_AFTER")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        Some((name, after))
    });
    if let Some((armed, after)) = armed {
        if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *after {
            kill_self();
        }
    }
}

/// Ends this process as `kill -9` would (no exit handlers, no flushing). A child `kill`
/// sends the signal, keeping this module free of raw system calls; the caller never returns from
/// waiting for it, and the abort covers a machine without `kill`.
#[cfg(feature = "fault-points")]
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort()
}

#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
