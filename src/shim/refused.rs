//! Refused: databases whose spool directory cannot be trusted (a symlink, another user's).
//! The application's database opens and works normally; it is simply not replicated, and
//! `replica_status()` shows it in state `error` with the reason. It must not write anything
//! into a refused spool.

use crate::base::lock::lock;
use crate::config::ReplicaConfig;
use crate::spool::SpoolError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A database not replicated because its spool was refused.
#[derive(Debug, Clone)]
pub struct RefusedDatabase {
    pub path: PathBuf,
    pub config: ReplicaConfig,
    /// Why, naming the spool path.
    pub reason: String,
}

static REFUSED: Mutex<Vec<RefusedDatabase>> = Mutex::new(Vec::new());

/// Opening `path` found its spool untrustworthy (`e`): remember why, logging it once.
pub(super) fn refuse(path: &Path, cfg: ReplicaConfig, e: &SpoolError) {
    let reason = e.to_string();
    let mut refused = lock(&REFUSED);
    if let Some(r) = refused.iter_mut().find(|r| r.path == path) {
        r.reason = reason;
        return;
    }
    crate::base::log::error(&format!("{}: {reason}", path.display()));
    refused.push(RefusedDatabase {
        path: path.to_path_buf(),
        config: cfg,
        reason,
    });
}

/// The databases whose spool this process refused, with the reasons.
pub fn refused_databases() -> Vec<RefusedDatabase> {
    lock(&REFUSED).clone()
}

/// Why `path`'s spool was refused, if it was.
pub fn refused_reason(path: &Path) -> Option<String> {
    lock(&REFUSED)
        .iter()
        .find(|r| r.path == path)
        .map(|r| r.reason.clone())
}
