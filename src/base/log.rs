//! Where messages go: process-wide warnings (kept for `replica_status()`), errors and
//! notices, each written through the sink the FFI entry installs (SQLite's `sqlite3_log`)
//! and to stderr with `REPLICA_LOG=stderr`. It must never be given a secret: callers redact
//! first.

use super::lock::lock;
use std::sync::{Mutex, OnceLock};

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Installs where log lines go besides stderr (once per process; later calls are ignored).
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

/// A process-wide warning, shown by `replica_status()` once however often it is raised.
pub fn add_warning(msg: &str) {
    let mut w = lock(&WARNINGS);
    if !w.iter().any(|x| x == msg) {
        w.push(msg.to_string());
    }
    drop(w);
    line("warning", msg);
}

pub fn warnings() -> Vec<String> {
    lock(&WARNINGS).clone()
}

/// An error worth the operator's attention.
pub fn error(msg: &str) {
    line("error", msg);
}

/// Something worth knowing that needs no action: a fallback that repairs itself.
pub fn notice(msg: &str) {
    line("notice", msg);
}

fn line(level: &str, msg: &str) {
    if let Some(sink) = SINK.get() {
        sink(&format!("libreplica: {msg}"));
    }
    if std::env::var("REPLICA_LOG")
        .map(|v| v == "stderr")
        .unwrap_or(false)
    {
        eprintln!("libreplica {level}: {msg}");
    }
}
