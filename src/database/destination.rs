//! [`Dest`]: one destination of a database as its uploader and status use it — its
//! settings, its progress and counters, and its part of the spool (its replicated state,
//! the records it has not shipped, its own files). It only forwards to `Database` and
//! `Spool` with the destination's index, so that no caller can mix two destinations up.

use super::{Counters, Database, Progress};
use crate::base::held_dir::HeldDir;
use crate::config::ReplicaConfig;
use crate::spool::{RecordMeta, SpoolError, SpoolState};
use std::sync::{Arc, MutexGuard};

/// Destination `index` of `db`.
#[derive(Clone)]
pub struct Dest {
    pub db: Arc<Database>,
    pub index: usize,
}

impl Dest {
    pub fn config(&self) -> &ReplicaConfig {
        &self.db.destinations[self.index].config
    }

    /// The destination's short name (`name:` in the config, or its type).
    pub fn name(&self) -> &str {
        &self.config().name
    }

    /// What messages call it: the database's file name, and the destination's name when
    /// the database has several.
    pub fn label(&self) -> String {
        if self.db.has_several_destinations() {
            format!("{} (replica '{}')", self.db.name, self.name())
        } else {
            self.db.name.clone()
        }
    }

    pub fn progress(&self) -> Progress {
        self.db.progress_of(self.index)
    }

    pub fn update_progress(&self, f: impl FnOnce(&mut Progress)) {
        self.db.update_progress_of(self.index, f)
    }

    /// Asks this destination alone for a snapshot.
    pub fn request_snapshot(&self, reason: &str) {
        self.db.request_snapshot_at(self.index, reason)
    }

    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        self.db.counters_of(self.index)
    }

    pub fn state(&self) -> SpoolState {
        self.db.spool.state_of(self.index)
    }

    pub fn mark_shipped(&self, state: SpoolState) -> Result<(), SpoolError> {
        self.db.spool.mark_shipped_of(self.index, state)
    }

    /// Records this destination has not shipped, oldest first.
    pub fn pending(&self) -> Vec<RecordMeta> {
        self.db.spool.pending_of(self.index)
    }

    pub fn pending_summary(&self) -> Option<(usize, u64)> {
        self.db.spool.pending_summary_of(self.index)
    }

    pub fn load_page_checksums(&self) -> Result<Vec<u64>, SpoolError> {
        self.db.spool.load_page_checksums_of(self.index)
    }

    pub fn store_page_checksums(
        &self,
        table: &[u64],
        changed: &[u32],
        rewrite_all: bool,
    ) -> Result<(), SpoolError> {
        self.db
            .spool
            .store_page_checksums_of(self.index, table, changed, rewrite_all)
    }

    pub fn clear_gap(&self) {
        self.db.spool.clear_gap_of(self.index)
    }

    pub fn request_ledger(&self) -> Option<String> {
        self.db.spool.request_ledger_of(self.index)
    }

    pub fn store_request_ledger(&self, text: &str) -> Result<(), SpoolError> {
        self.db.spool.store_request_ledger_of(self.index, text)
    }

    /// The folder this destination's files are in (its uploader's `cache/` too).
    pub fn dir(&self) -> &HeldDir {
        self.db.spool.dest_dir(self.index)
    }

    /// Where this destination's uploader builds a file (each destination's uploader runs on
    /// a thread of its own, so they never share one).
    pub fn scratch_path(&self, name: &str) -> std::path::PathBuf {
        self.dir().at(name)
    }
}
