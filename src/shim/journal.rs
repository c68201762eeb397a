//! A replicated database leaving WAL mode and coming back. After `PRAGMA
//! journal_mode=DELETE` SQLite checkpoints and deletes the log, then writes the database
//! file directly, where capture sees nothing. The first page's header says which mode the
//! file is in (bytes 18 and 19 are 2 in WAL mode, 1 with a rollback journal), and SQLite
//! writes that page when it changes mode and at every commit with a rollback journal, so a
//! write of page 1 is where the change shows, for two byte compares. Out of WAL mode, status
//! and `replica_sync` say the database is not replicating; back in WAL mode, a snapshot
//! ships what was missed. Only the writes of this process's connections are seen.

use crate::database::{self, Database, JournalMode};
use std::path::Path;

/// The main file's page 1 was written (`data` starts at offset 0), or an adopted connection's
/// commit ran no WAL hook and its page 1 was read back.
pub fn page_one_written(db: &Database, data: &[u8]) {
    if data.len() < 20 || !db.owned_here() {
        return;
    }
    let in_wal = crate::wal::is_wal_mode_header(data);
    match (db.journal_mode(), in_wal) {
        (JournalMode::Wal, false) => left_wal(db),
        (JournalMode::Wal, true) | (JournalMode::Rollback, false) => {}
        (_, true) => back_in_wal(db),
        // Another commit with a rollback journal: which kind shows again when (and whether)
        // the journal is deleted at its end (the mode may have changed, e.g. to truncate).
        (JournalMode::Delete, false) => db.update_progress(|p| p.journal = JournalMode::Rollback),
    }
}

fn left_wal(db: &Database) {
    // Remembered in the spool: a crash before the database is back in WAL mode must not
    // let a later process ship commits on top of a replica that misses these.
    let why = "the database was out of WAL mode: commits made then were not captured";
    if let Err(e) = db.spool.mark_gap(why) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
    db.update_progress(|p| p.journal = JournalMode::Rollback);
    crate::base::log::error(&format!(
        "{}: not replicating: the database left WAL mode, and commits are not captured until it is back in it (PRAGMA journal_mode=WAL)",
        db.name
    ));
}

fn back_in_wal(db: &Database) {
    db.update_progress(|p| p.journal = JournalMode::Wal);
    db.request_snapshot("the database was out of WAL mode: commits made then were not captured");
    crate::base::log::notice(&format!(
        "{}: back in WAL mode: replicating again; a snapshot ships the commits made meanwhile",
        db.name
    ));
    database::wake_uploader();
}

/// A file is about to be deleted: a database out of WAL mode that deletes its rollback
/// journal at each commit is in `journal_mode=delete`.
pub fn before_journal_delete(path: &str) {
    let Some(db) = path
        .strip_suffix("-journal")
        .and_then(|p| database::get(Path::new(p)))
    else {
        return;
    };
    if db.journal_mode() == JournalMode::Rollback && db.owned_here() {
        db.update_progress(|p| p.journal = JournalMode::Delete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaConfig;

    fn page_one(version: u8) -> Vec<u8> {
        let mut page = vec![0u8; 100];
        page[18] = version;
        page[19] = version;
        page
    }

    #[test]
    fn page_one_tells_when_the_database_leaves_and_reenters_wal_mode() {
        let dir = crate::base::testing::fresh_dir("journal");
        let path = dir.join("app.db");
        let cfg = ReplicaConfig {
            restore_if_missing: false,
            shutdown_sync_timeout: std::time::Duration::ZERO,
            ..ReplicaConfig::in_dir_for_tests(dir.join("replica"))
        };
        let db = database::get_or_open(&path, vec![cfg]).unwrap();
        let requests = db.progress().snapshot_request;
        page_one_written(&db, &page_one(2));
        assert_eq!(db.journal_mode(), JournalMode::Wal);
        page_one_written(&db, &page_one(1));
        assert_eq!(db.journal_mode(), JournalMode::Rollback);
        assert!(db.spool.gap_of(0).is_some());
        before_journal_delete(&format!("{}-journal", path.display()));
        assert_eq!(db.journal_mode(), JournalMode::Delete);
        // Every later rollback-mode commit writes page 1 again; only a deleted journal
        // says the mode is still delete (it may be truncate or persist by now).
        page_one_written(&db, &page_one(1));
        assert_eq!(db.journal_mode(), JournalMode::Rollback);
        before_journal_delete(&format!("{}-journal", path.display()));
        assert_eq!(db.journal_mode(), JournalMode::Delete);
        page_one_written(&db, &page_one(2));
        assert_eq!(db.journal_mode(), JournalMode::Wal);
        assert!(db.progress().snapshot_request > requests);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
