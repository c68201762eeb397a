//! Tests of the whole worker, stepped with a fake clock against a memory store and a fake
//! live database: every shipped state restores, the request economy, backoff, restarts,
//! and the lifecycle jobs.

use super::backoff::MAX_BACKOFF_MS;
use super::{DbUploader, Step};
use crate::base::testing::InMemory;
use crate::config::ReplicaConfig;
use crate::database::Database;
use crate::error::Error;
use crate::restore::{self, RestoreRequest, Target};
use crate::snapshot::LockedRead;
use crate::snapshot::SnapshotSource;
use crate::spool::RecordHeader;
use crate::store::memory::MemoryStore;
use crate::store::{ObjectStore, StoreError};
use crate::wal::WalPosition;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

const PS: usize = 512;

/// A database image served as the "live" database for snapshots.
pub(super) struct FakeDb {
    pub(super) pages: Mutex<Vec<Vec<u8>>>,
}

impl FakeDb {
    pub(super) fn image(&self) -> Vec<u8> {
        let pages = self.pages.lock().unwrap();
        let mut img: Vec<u8> = pages.concat();
        img[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
        img[28..32].copy_from_slice(&(pages.len() as u32).to_be_bytes());
        img
    }
}

impl SnapshotSource for FakeDb {
    fn with_read_transaction(&self, _db_path: &Path, f: &mut LockedRead<'_>) -> Result<(), Error> {
        f(&mut InMemory(self.image()), None, &mut || None)
    }
}

pub(super) fn page(fill: u8) -> Vec<u8> {
    vec![fill; PS]
}

pub(super) struct Harness {
    pub(super) dir: PathBuf,
    pub(super) db: Arc<Database>,
    pub(super) store: Arc<MemoryStore>,
    pub(super) live: FakeDb,
    frame: u32,
}

impl Harness {
    pub(super) fn new(name: &str) -> Harness {
        Harness::with_config(name, |_| {})
    }

    /// A harness whose configuration `adjust` changes first.
    pub(super) fn with_config(name: &str, adjust: impl FnOnce(&mut ReplicaConfig)) -> Harness {
        let dir = crate::base::testing::fresh_dir(&format!("uploader-{name}"));
        let mut cfg = ReplicaConfig::in_dir_for_tests(dir.join("replica"));
        adjust(&mut cfg);
        let db = Arc::new(Database::open(&dir.join("app.db"), vec![cfg], 1 << 30).unwrap());
        let live = FakeDb {
            pages: Mutex::new(vec![page(1), page(2), page(3)]),
        };
        Harness {
            dir,
            db,
            store: Arc::new(MemoryStore::new()),
            live,
            frame: 0,
        }
    }

    /// Opens the database's spool again, as a new process would (the old one lets go).
    pub(super) fn reopen(&mut self, spool_cap: u64) {
        self.reopen_with(self.db.config.clone(), spool_cap);
    }

    /// [`Harness::reopen`] with another configuration.
    pub(super) fn reopen_with(&mut self, cfg: ReplicaConfig, spool_cap: u64) {
        self.reopen_with_all(vec![cfg], spool_cap);
    }

    /// [`Harness::reopen`] with these destinations.
    pub(super) fn reopen_with_all(&mut self, cfgs: Vec<ReplicaConfig>, spool_cap: u64) {
        let placeholder = Database::open(&self.dir.join("placeholder.db"), cfgs.clone(), 1);
        drop(std::mem::replace(
            &mut self.db,
            Arc::new(placeholder.unwrap()),
        ));
        self.db = Arc::new(Database::open(&self.dir.join("app.db"), cfgs, spool_cap).unwrap());
    }

    pub(super) fn uploader(&self) -> DbUploader {
        DbUploader::with_store(self.db.dests().remove(0), Ok(Box::new(self.store.clone())))
    }

    /// An uploader that has shipped the first snapshot (txid 1) at `snapshot_at` and then,
    /// as txid 2, a commit of page 2 made at `commit_at`.
    pub(super) fn uploader_past_first_file(
        &mut self,
        snapshot_at: u64,
        commit_at: u64,
    ) -> DbUploader {
        let mut up = self.uploader();
        assert_eq!(up.step(snapshot_at, &self.live), Step::Snapshot { txid: 1 });
        self.commit(&[(2, 20)], 3, commit_at);
        assert_eq!(up.step(commit_at, &self.live), Step::Shipped { txid: 2 });
        up
    }

    /// A commit: pages written and the new size, captured at `at` ms.
    pub(super) fn commit(&mut self, pages: &[(u32, u8)], size: u32, at: u64) {
        self.try_commit(pages, size, at).unwrap();
    }

    /// [`Harness::commit`], whose capture may fail (the live database changes anyway, as
    /// SQLite's commit does when capture cannot take it).
    pub(super) fn try_commit(
        &mut self,
        pages: &[(u32, u8)],
        size: u32,
        at: u64,
    ) -> Result<(), crate::spool::SpoolError> {
        self.frame += pages.len() as u32;
        let header = RecordHeader {
            page_size: PS as u32,
            commit_size: size,
            end: WalPosition {
                salt1: 1,
                salt2: 2,
                frame: self.frame,
            },
            end_cksum: (self.frame, 0),
            captured_at_ms: at,
            integrity: crate::spool::Integrity::Crc,
        };
        let mut live = self.live.pages.lock().unwrap();
        for &(pgno, fill) in pages {
            if live.len() < pgno as usize {
                live.resize(pgno as usize, page(0));
            }
            live[pgno as usize - 1] = page(fill);
        }
        live.truncate(size as usize);
        drop(live);
        let mut rec = self.db.spool.begin_record(header, pages.len() as u32)?;
        for &(pgno, fill) in pages {
            rec.push(pgno, &page(fill))?;
        }
        rec.commit().map(|_| ())
    }

    pub(super) fn restore(&self, target: Target) -> Result<Vec<u8>, Error> {
        self.restore_from(self.store.as_ref(), target)
    }

    /// The database as `store` restores it.
    pub(super) fn restore_from(
        &self,
        store: &dyn ObjectStore,
        target: Target,
    ) -> Result<Vec<u8>, Error> {
        let out = self.dir.join(format!("restored-{}.db", self.frame));
        let _ = std::fs::remove_file(&out);
        restore::restore(&RestoreRequest {
            store,
            prefix: "",
            output: &out,
            target,
            overwrite: true,
            check: &|_| Ok(()),
        })?;
        Ok(std::fs::read(&out).unwrap())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_file_shipped_late_leaves_the_schedule_where_it_was() {
    let mut h = Harness::new("late");
    let mut up = h.uploader_past_first_file(10_000, 20_000);
    h.commit(&[(3, 30)], 4, 20_100);
    assert_eq!(up.step(20_100, &h.live), Step::WaitUntil(21_000));
    // The uploader comes 50 ms after the file was due: the next is due an interval after
    // 21 000, not after the shipment (that delay would add up, file after file).
    assert_eq!(up.step(21_050, &h.live), Step::Shipped { txid: 3 });
    h.commit(&[(3, 31)], 4, 21_100);
    assert_eq!(up.step(21_100, &h.live), Step::WaitUntil(22_000));
}

#[test]
fn snapshot_then_batches_restore_to_every_shipped_state() {
    let mut h = Harness::new("chain");
    let mut up = h.uploader();
    assert_eq!(up.step(10_000, &h.live), Step::Snapshot { txid: 1 });
    assert_eq!(
        h.store.keys(),
        vec!["0009/0000000000000001-0000000000000001.ltx", "lease"]
    );
    let state1 = h.live.image();

    // Sporadic write after an idle period: shipped at once.
    h.commit(&[(2, 20)], 3, 20_000);
    assert_eq!(up.step(20_000, &h.live), Step::Shipped { txid: 2 });
    let state2 = h.live.image();

    // Sustained writes: batched until an interval has passed since the last file was due.
    h.commit(&[(3, 30), (4, 40)], 4, 20_100);
    h.commit(&[(3, 31)], 4, 20_200);
    assert_eq!(up.step(20_200, &h.live), Step::WaitUntil(21_000));
    assert_eq!(up.step(21_000, &h.live), Step::Shipped { txid: 3 });
    let state3 = h.live.image();

    // The database shrinks.
    h.commit(&[(1, 11)], 2, 40_000);
    assert_eq!(up.step(40_000, &h.live), Step::Shipped { txid: 4 });
    // A level-1 window has passed since the first level-0 file: compaction, from the
    // local copies (no GET).
    let gets = h.store.request_counts().get;
    assert_eq!(
        up.step(40_001, &h.live),
        Step::Compacted { level: 1, files: 1 }
    );
    assert_eq!(h.store.request_counts().get, gets);
    assert!(h
        .store
        .keys()
        .contains(&"0001/0000000000000002-0000000000000004.ltx".to_string()));
    assert_eq!(up.step(40_002, &h.live), Step::WaitUntil(300_000));

    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
    same(&h.restore(Target::Txid(1)).unwrap(), &state1, "txid 1");
    same(&h.restore(Target::Txid(2)).unwrap(), &state2, "txid 2");
    same(&h.restore(Target::Txid(3)).unwrap(), &state3, "txid 3");
    same(
        &h.restore(Target::Timestamp(20_150)).unwrap(),
        &state2,
        "timestamp",
    );
}

/// Compares database images past the synthetic header fields of page 1.
pub(super) fn same(restored: &[u8], expected: &[u8], what: &str) {
    assert_eq!(
        restored.len(),
        expected.len(),
        "{what}: restored size differs"
    );
    if let Some(i) = (100..restored.len()).find(|&i| restored[i] != expected[i]) {
        panic!(
            "{what}: restored database differs at byte {i} (page {})",
            i / PS + 1
        );
    }
}

#[test]
fn compaction_after_a_restart_downloads_its_inputs_and_retention_retries_a_failed_delete() {
    let mut h = Harness::new("lifecycle");
    let mut up = h.uploader_past_first_file(1_000, 2_000);
    h.commit(&[(3, 30)], 3, 5_000);
    assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 3 });
    let state3 = h.live.image();
    // The process dies and its local copies of level-0 files are gone.
    drop(up);
    std::fs::remove_dir_all(h.db.spool.scratch_path("cache")).unwrap();
    let mut up = h.uploader();
    assert_eq!(up.step(10_000, &h.live), Step::WaitUntil(30_000));
    let gets = h.store.request_counts().get;
    assert_eq!(
        up.step(30_000, &h.live),
        Step::Compacted { level: 1, files: 1 }
    );
    assert_eq!(
        h.store.request_counts().get,
        gets + 3,
        "both inputs downloaded, and the lease read once by the new process"
    );
    assert_eq!(
        up.step(300_000, &h.live),
        Step::Compacted { level: 2, files: 1 }
    );
    // Level-0 retention: txid 2 is in level 1 and older than 5 minutes (txid 3 is the
    // newest of its level and stays). The first delete fails and is retried.
    *h.store.fail_with.lock().unwrap() = Some(StoreError::Transient(
        "DeleteObjects left keys behind".into(),
    ));
    let step = up.step(330_000, &h.live);
    let Step::Failed { retry_at, .. } = step else {
        panic!("expected the delete to fail: {step:?}")
    };
    *h.store.fail_with.lock().unwrap() = None;
    // Shipping does not wait for the lifecycle's backoff.
    h.commit(&[(1, 11)], 3, 330_001);
    assert_eq!(up.step(330_001, &h.live), Step::Shipped { txid: 4 });
    assert_eq!(up.step(330_002, &h.live), Step::WaitUntil(retry_at));
    assert_eq!(
        up.step(retry_at, &h.live),
        Step::Compacted { level: 1, files: 1 }
    );
    // Txids 2 and 3 are in level 1 and old; 4 is the newest of level 0 and stays.
    assert_eq!(up.step(retry_at, &h.live), Step::Retained { deleted: 2 });
    let level0: Vec<String> = h
        .store
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("0000/"))
        .collect();
    assert_eq!(level0, vec!["0000/0000000000000004-0000000000000004.ltx"]);
    let c = h.db.counters_of(0).clone();
    assert_eq!((c.compactions, c.files_deleted), (3, 2));
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
    same(&h.restore(Target::Txid(3)).unwrap(), &state3, "txid 3");
    // The next job: level 2 takes the new level-1 file at its window.
    assert_eq!(up.step(retry_at + 1, &h.live), Step::WaitUntil(600_000));
}

/// A record of several commits captured together (one record of each page's latest
/// version) can hold a page past its last commit's size: one written before a commit of the
/// run shrank the database. It ships without that page, and the restore equals the database.
#[test]
fn a_record_holding_a_page_past_its_commit_size_ships_without_it() {
    let mut h = Harness::new("past-size");
    let mut up = h.uploader();
    assert_eq!(up.step(1_000, &h.live), Step::Snapshot { txid: 1 });
    // Pages 4 and 5 grew the database in the run, a later commit shrank it to 3 pages.
    h.commit(&[(5, 50), (2, 21), (4, 40)], 3, 2_000);
    assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
    // Growing again afterwards writes the pages it adds.
    h.commit(&[(4, 41), (5, 51)], 5, 3_000);
    assert_eq!(up.step(3_000, &h.live), Step::Shipped { txid: 3 });
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "grown again",
    );
}

#[test]
fn a_torn_local_copy_is_downloaded_instead() {
    let mut h = Harness::new("torn");
    let mut up = h.uploader_past_first_file(1_000, 2_000);
    assert_eq!(up.step(2_001, &h.live), Step::WaitUntil(30_000));
    let copy =
        h.db.spool
            .scratch_path("cache/0/0000000000000002-0000000000000002.ltx");
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let gets = h.store.request_counts().get;
    let Step::Failed { retry_at, error } = up.step(30_000, &h.live) else {
        panic!("the torn copy must fail the merge")
    };
    assert!(error.contains("checksum"), "{error}");
    assert_eq!(
        up.step(retry_at, &h.live),
        Step::Compacted { level: 1, files: 1 }
    );
    assert_eq!(h.store.request_counts().get, gets + 1);
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn scheduled_snapshots_keep_the_txid_unless_the_database_differs() {
    const DAY: u64 = 86_400_000;
    let mut h = Harness::new("scheduled");
    let mut up = h.uploader_past_first_file(1_000, 2_000);
    let mut t = 3_000;
    while t < DAY {
        up.step(t, &h.live);
        t += 600_000;
    }
    // The day's boundary: a snapshot of the replicated state, at the same txid.
    assert_eq!(up.step(DAY, &h.live), Step::Snapshot { txid: 2 });
    assert!(h
        .store
        .keys()
        .contains(&"0009/0000000000000001-0000000000000002.ltx".to_string()));
    same(
        &h.restore(Target::Txid(2)).unwrap(),
        &h.live.image(),
        "txid 2",
    );
    // Nothing new: no snapshot the next day.
    assert!(!matches!(up.step(2 * DAY, &h.live), Step::Snapshot { .. }));
    h.commit(&[(3, 30)], 3, 2 * DAY + 1);
    assert_eq!(up.step(2 * DAY + 1, &h.live), Step::Shipped { txid: 3 });
    // The database changes behind the replica's back: the next scheduled snapshot
    // notices and a full snapshot with a new txid replaces it.
    h.live.pages.lock().unwrap()[0] = page(99);
    t = 2 * DAY + 2;
    let step = loop {
        match up.step(t, &h.live) {
            Step::Snapshot { txid } => break txid,
            _ => t += 600_000,
        }
        assert!(t < 4 * DAY, "no snapshot");
    };
    // (A boundary passed with nothing new since the last snapshot: due at the change.)
    assert_eq!(step, 4);
    assert!(t < 3 * DAY, "{t}");
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn an_idle_database_makes_no_requests() {
    let mut h = Harness::new("idle");
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    h.commit(&[(2, 9)], 3, 5_000);
    assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 2 });
    // Past the compaction of every level (the last at the first hour's end).
    let mut t = 6_000;
    while t < 3_700_000 {
        up.step(t, &h.live);
        t += 10_000;
    }
    assert!(h.store.keys().iter().any(|k| k.starts_with("0003/")));
    let before = h.store.request_counts();
    for i in 0..50 {
        let step = up.step(t + i * 1000, &h.live);
        assert!(matches!(step, Step::WaitUntil(_) | Step::Idle), "{step:?}");
    }
    assert_eq!(h.store.request_counts(), before);
}

#[test]
fn the_steady_state_is_one_put_per_batch_and_no_list_or_get() {
    let mut h = Harness::new("economy");
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    h.commit(&[(2, 1)], 3, 5_000);
    assert_eq!(up.step(5_000, &h.live), Step::Shipped { txid: 2 });
    let before = h.store.request_counts();
    for i in 0..20u64 {
        let t = 10_000 + i * 5_000;
        // Several commits per interval travel in one object.
        for k in 0..3u64 {
            h.commit(&[(2 + (i + k) as u32 % 2, (i * 3 + k) as u8)], 3, t + k);
        }
        assert_eq!(up.step(t + 2_000, &h.live), Step::Shipped { txid: 3 + i });
    }
    let after = h.store.request_counts();
    // One PUT per batch, and the lease renewed once half of it is gone: over these
    // 97 simulated seconds, every 30 s.
    let renewals = 97_000 / (crate::lease::LEASE_TTL_MS / 2);
    assert_eq!(after.put - before.put, 20 + renewals, "one PUT per batch");
    assert_eq!(
        (after.list, after.get, after.delete),
        (before.list, before.get, before.delete),
        "no LIST, GET or DELETE in the steady state"
    );
}

#[test]
fn a_failing_store_backs_off_then_converges_without_losing_anything() {
    let mut h = Harness::new("outage");
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    h.commit(&[(2, 7)], 3, 2_000);
    *h.store.fail_with.lock().unwrap() =
        Some(StoreError::Transient("503 Service Unavailable".into()));
    let Step::Failed { retry_at, error } = up.step(2_000, &h.live) else {
        panic!("expected a failure")
    };
    assert!(error.contains("503"), "{error}");
    assert!(retry_at > 2_000 && retry_at <= 2_000 + MAX_BACKOFF_MS);
    assert_eq!(up.step(retry_at - 1, &h.live), Step::WaitUntil(retry_at));
    assert!(h.db.progress().last_error.unwrap().contains("503"));
    h.commit(&[(3, 8)], 3, 2_500);
    *h.store.fail_with.lock().unwrap() = None;
    assert_eq!(up.step(retry_at, &h.live), Step::Shipped { txid: 2 });
    assert!(h.db.progress().last_error.is_none());
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn a_restarted_uploader_continues_the_chain_without_a_snapshot() {
    let mut h = Harness::new("restart");
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    h.commit(&[(2, 5)], 3, 2_000);
    assert_eq!(up.step(2_000, &h.live), Step::Shipped { txid: 2 });
    h.commit(&[(4, 6)], 4, 3_000); // captured, not shipped: the process "dies"
    h.db.spool.flush().unwrap(); // as the shim does before the WAL may go away
    drop(up);
    h.reopen(1 << 30);
    let mut up = h.uploader();
    assert_eq!(up.step(10_000, &h.live), Step::Shipped { txid: 3 });
    assert_eq!(
        h.store
            .keys()
            .iter()
            .filter(|k| k.starts_with("0009/"))
            .count(),
        1
    );
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn a_replica_that_moved_on_gets_a_fresh_snapshot_above_it() {
    let mut h = Harness::new("diverged");
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    // Somebody else wrote txid 2..5 into the same replica.
    h.store
        .put("0000/0000000000000005-0000000000000005.ltx", b"not ours")
        .unwrap();
    drop(up);
    h.reopen(1 << 30);
    let mut up = h.uploader();
    assert_eq!(up.step(2_000, &h.live), Step::Snapshot { txid: 6 });
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn a_spool_overflow_ships_a_snapshot_instead() {
    let mut h = Harness::new("overflow");
    h.reopen(3_000);
    let mut up = h.uploader();
    up.step(1_000, &h.live);
    h.commit(&[(2, 1), (3, 1)], 3, 2_000);
    let header = RecordHeader {
        page_size: PS as u32,
        commit_size: 5,
        end: WalPosition {
            salt1: 1,
            salt2: 2,
            frame: 99,
        },
        end_cksum: (0, 0),
        captured_at_ms: 2_001,
        integrity: crate::spool::Integrity::Crc,
    };
    assert!(h.db.spool.begin_record(header, 5).is_err());
    h.db.request_snapshot("the spool overflowed");
    h.live.pages.lock().unwrap().push(page(42));
    assert_eq!(up.step(3_000, &h.live), Step::Snapshot { txid: 2 });
    assert!(!h.db.spool.is_overflowed());
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}
