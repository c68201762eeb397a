//! The uploader when the bucket's lifecycle rules expire old files
//! (`retention: bucket-lifecycle`), stepped with a fake clock against a memory store: it
//! never deletes, keeps knowing only what the retention window holds, snapshots an idle
//! database at every snapshot boundary, restores wherever the remaining files allow while
//! an age rule removes the oldest objects, and is not wedged by a file (or the lease) that
//! vanished.

use super::tests::{same, Harness};
use super::Step;
use crate::lifecycle::{Expiry, Lifecycle};
use crate::restore::{self, Target};
use crate::store::{ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::time::Duration;

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;

/// Levels of 10 s and 1 min, a snapshot every 5 min kept 10 min, level 0 kept 1 min.
fn short_lifecycle() -> Lifecycle {
    Lifecycle {
        levels: vec![Duration::from_secs(10), Duration::from_secs(60)],
        snapshot_interval: Duration::from_secs(5 * 60),
        snapshot_retention: Duration::from_secs(10 * 60),
        l0_retention: Duration::from_secs(60),
        expiry: Expiry::BucketLifecycle,
    }
}

fn harness(name: &str) -> Harness {
    let mut h = Harness::new(name);
    let mut cfg = h.db.config.clone();
    cfg.lifecycle = short_lifecycle();
    h.reopen_with(cfg, 1 << 30);
    h
}

/// What an hour of commits every 2 s left: the image of every shipped txid, when it was
/// shipped, the most files the uploader knew at once, and the time the run ended.
struct Run {
    images: BTreeMap<u64, (u64, Vec<u8>)>,
    most_known: usize,
    end: u64,
}

/// Commits every 2 s for an hour, stepping the uploader until it waits; `expire_after`
/// runs an age rule over the bucket every minute. Any failed step fails the test.
fn write_for_an_hour(h: &mut Harness, expire_after: Option<u64>) -> Run {
    let mut up = h.uploader();
    let start = 10 * MIN;
    let mut run = Run {
        images: BTreeMap::new(),
        most_known: 0,
        end: start + 60 * MIN,
    };
    let mut t = start;
    let mut i = 0u64;
    while t < run.end {
        if t > start {
            i += 1;
            // The first commit grows the database to 8 pages; later ones rewrite one.
            let pages: Vec<(u32, u8)> = if i == 1 {
                (4..=8).map(|pgno| (pgno, 1)).collect()
            } else {
                vec![(2 + (i % 6) as u32, (i % 251) as u8)]
            };
            h.commit(&pages, 8, t);
        }
        step_until_waiting(h, &mut up, t, &mut run.images);
        run.most_known = run.most_known.max(up.known_files());
        if let Some(age) = expire_after.filter(|_| t.is_multiple_of(MIN)) {
            h.store.expire_before(t.saturating_sub(age));
        }
        t += 2 * SEC;
    }
    run
}

/// Steps at `t` until the uploader has nothing more to do then; records shipped images.
fn step_until_waiting(
    h: &Harness,
    up: &mut super::DbUploader,
    t: u64,
    images: &mut BTreeMap<u64, (u64, Vec<u8>)>,
) {
    *h.store.clock_ms.lock().unwrap() = Some(t);
    for _ in 0..20 {
        match up.step(t, &h.live) {
            Step::Shipped { txid } | Step::Snapshot { txid } => {
                images.insert(txid, (t, h.live.image()));
            }
            Step::Failed { error, .. } => panic!("at {t}: {error}"),
            Step::Idle | Step::WaitUntil(_) => return,
            Step::Compacted { .. } | Step::Retained { .. } => {}
        }
    }
}

fn listing(h: &Harness) -> Vec<restore::LtxObject> {
    restore::list_objects(h.store.as_ref(), "").unwrap()
}

#[test]
fn it_never_deletes_and_knows_only_the_window_while_every_state_stays_restorable() {
    let mut h = harness("bucket-keep");
    let run = write_for_an_hour(&mut h, None);
    assert_eq!(h.store.request_counts().delete, 0, "no DELETE request");
    assert_eq!(h.db.counters_of(0).files_deleted, 0);
    assert!(h.db.counters_of(0).compactions > 300);
    // The bucket holds the hour; the uploader knows about one retention window of it.
    let objects = listing(&h);
    assert!(objects.len() > 2000, "{} objects", objects.len());
    assert!(
        run.most_known < 250,
        "the uploader knew {} files at once",
        run.most_known
    );
    let points = restore::restorable_txids(&objects);
    for (&txid, (_, image)) in &run.images {
        assert!(points.contains(&txid), "txid {txid} is no restore point");
        if txid.is_multiple_of(97) {
            same(
                &h.restore(Target::Txid(txid)).unwrap(),
                image,
                &format!("txid {txid}"),
            );
        }
    }
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn an_age_rule_leaves_every_point_of_the_window_restorable_and_nothing_fails() {
    let mut h = harness("bucket-expire");
    // Longer than the retention (10 min) and the snapshot interval (5 min) together.
    let age = 17 * MIN;
    let run = write_for_an_hour(&mut h, Some(age));
    assert_eq!(h.store.request_counts().delete, 0, "no DELETE request");
    let objects = listing(&h);
    let points = restore::restorable_txids(&objects);
    let window_start = run.end - 10 * MIN;
    for (&txid, (at, image)) in &run.images {
        if *at < window_start {
            continue;
        }
        assert!(points.contains(&txid), "txid {txid} (at {at}) is gone");
        if txid.is_multiple_of(17) {
            same(
                &h.restore(Target::Txid(txid)).unwrap(),
                image,
                &format!("txid {txid}"),
            );
        }
    }
    // Whatever else is offered restores too.
    for &txid in points.iter().step_by(23) {
        let (_, image) = &run.images[&txid];
        same(
            &h.restore(Target::Txid(txid)).unwrap(),
            image,
            &format!("point {txid}"),
        );
    }
    assert!(
        objects.iter().all(|o| o.max_txid > 1000),
        "the rule left files of the first 40 minutes"
    );
}

#[test]
fn an_idle_database_is_snapshotted_at_every_boundary_so_an_age_rule_keeps_one() {
    let mut h = harness("bucket-idle");
    let mut up = h.uploader();
    let mut images = BTreeMap::new();
    step_until_waiting(&h, &mut up, SEC, &mut images);
    h.commit(&[(2, 7)], 3, 2 * SEC);
    step_until_waiting(&h, &mut up, 2 * SEC, &mut images);
    let txid = *images.keys().last().unwrap();
    let mut snapshots = Vec::new();
    let mut lease_expired = false;
    let mut t = 3 * SEC;
    while t < 31 * MIN {
        *h.store.clock_ms.lock().unwrap() = Some(t);
        match up.step(t, &h.live) {
            Step::Snapshot { txid: s } => snapshots.push(s),
            Step::WaitUntil(next) => t = next.max(t + 1),
            Step::Idle => t += SEC,
            Step::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
        // An age rule shorter than the idle spell, longer than the snapshot interval; it
        // also takes the lease once.
        h.store.expire_before(t.saturating_sub(7 * MIN));
        if t > 12 * MIN && !lease_expired {
            lease_expired = h.store.remove("lease");
        }
    }
    // One at each 5-minute boundary: the first of the shipped state, then each idle one
    // at a new txid, so that no key is written twice (a bucket lock refuses overwrites).
    assert_eq!(snapshots, (txid..txid + 6).collect::<Vec<_>>());
    assert!(lease_expired);
    assert_eq!(h.store.request_counts().delete, 0);
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn a_file_the_bucket_removed_fails_one_compaction_then_a_snapshot_closes_the_hole() {
    let mut h = harness("bucket-vanished");
    let mut up = h.uploader();
    let mut images = BTreeMap::new();
    step_until_waiting(&h, &mut up, SEC, &mut images);
    h.commit(&[(2, 20)], 3, 2 * SEC);
    step_until_waiting(&h, &mut up, 2 * SEC, &mut images);
    h.commit(&[(3, 30)], 3, 5 * SEC);
    step_until_waiting(&h, &mut up, 5 * SEC, &mut images);
    // Level-0 file 2 is expired and its local copy is gone (a restart lost the cache).
    assert!(h.store.remove("0000/0000000000000002-0000000000000002.ltx"));
    std::fs::remove_dir_all(h.db.spool.scratch_path("cache")).unwrap();
    let Step::Failed { retry_at, error } = up.step(10 * SEC, &h.live) else {
        panic!("the compaction needs the missing file")
    };
    assert!(error.contains("0000000000000002"), "{error}");
    // Listed again: the hole is seen, a snapshot closes it, compaction goes on.
    assert_eq!(up.step(retry_at, &h.live), Step::Snapshot { txid: 4 });
    h.commit(&[(1, 11)], 3, retry_at + SEC);
    let mut t = retry_at + SEC;
    let mut compacted = false;
    while t < 40 * SEC {
        match up.step(t, &h.live) {
            Step::Compacted { .. } => compacted = true,
            Step::Failed { error, .. } => panic!("wedged: {error}"),
            Step::WaitUntil(next) => t = next.max(t + 1),
            Step::Idle => t += SEC,
            _ => {}
        }
    }
    assert!(compacted);
    assert_eq!(h.store.request_counts().delete, 0);
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

/// A store that answers a conditional write on a key that is gone with 404, as AWS does
/// (the memory store, like s3s and R2, says 412).
struct NotFoundOnMissing(std::sync::Arc<crate::store::memory::MemoryStore>);

impl ObjectStore for NotFoundOnMissing {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.0.put(key, body)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.0.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.0.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>, StoreError> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key)
    }
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        self.0.read_versioned(key)
    }
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        if expected.is_some() && !self.0.keys().iter().any(|k| k == key) {
            return Err(StoreError::NotFound(key.to_string()));
        }
        self.0.write_if(key, body, expected)
    }
    fn request_counts(&self) -> crate::store::RequestCounts {
        self.0.request_counts()
    }
    fn describe(&self) -> String {
        "aws-like".into()
    }
}

#[test]
fn a_lease_a_rule_removed_is_taken_again_when_the_store_answers_404() {
    let mut h = harness("bucket-lease");
    let store = NotFoundOnMissing(h.store.clone());
    let mut up = super::DbUploader::with_store(h.db.dests().remove(0), Ok(Box::new(store)));
    assert_eq!(up.step(SEC, &h.live), Step::Snapshot { txid: 1 });
    assert!(h.store.remove("lease"));
    // Past half the lease's time: the next write renews it, conditionally.
    h.commit(&[(2, 20)], 3, 2 * MIN);
    assert_eq!(up.step(2 * MIN, &h.live), Step::Shipped { txid: 2 });
    assert!(h.store.keys().iter().any(|k| k == "lease"));
}
