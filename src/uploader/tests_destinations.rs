//! Tests of a database with several destinations, each stepped by its own worker with a
//! fake clock: one spool feeds all of them, a failing destination holds back neither the
//! others nor the spool's other records, records stay until every destination has them
//! (across a restart too), and a destination added later gets a snapshot of its own.

use super::tests::{same, Harness};
use super::{DbUploader, Step};
use crate::config::ReplicaConfig;
use crate::restore::Target;
use crate::store::memory::MemoryStore;
use crate::store::StoreError;
use std::sync::Arc;

/// The harness's destination `a` (its own store) and a second one, `b`.
fn two_destinations(h: &mut Harness) -> Arc<MemoryStore> {
    let mut a = h.db.config.clone();
    a.name = "a".into();
    let mut b = ReplicaConfig::in_dir_for_tests(h.dir.join("replica-b"));
    b.name = "b".into();
    h.reopen_with_all(vec![a, b], 1 << 30);
    Arc::new(MemoryStore::new())
}

/// [`two_destinations`] with a spool of `spool_cap` bytes, each destination's first
/// snapshot shipped: `b`'s store and both uploaders.
fn both_started(h: &mut Harness, spool_cap: u64) -> (Arc<MemoryStore>, DbUploader, DbUploader) {
    let store_b = two_destinations(h);
    let cfgs: Vec<ReplicaConfig> = h.db.destinations.iter().map(|d| d.config.clone()).collect();
    h.reopen_with_all(cfgs, spool_cap);
    let (mut up_a, mut up_b) = (h.uploader(), uploader(h, 1, &store_b));
    assert_eq!(up_a.step(1_000, &h.live), Step::Snapshot { txid: 1 });
    assert_eq!(up_b.step(1_000, &h.live), Step::Snapshot { txid: 1 });
    (store_b, up_a, up_b)
}

fn uploader(h: &Harness, d: usize, store: &Arc<MemoryStore>) -> DbUploader {
    DbUploader::with_store(h.db.dests().remove(d), Ok(Box::new(store.clone())))
}

/// Steps `up` from `now` on until its destination's replica reaches `txid`; the time then.
fn step_until(h: &Harness, up: &mut DbUploader, mut now: u64, txid: u64) -> u64 {
    let d = up.dest().index;
    while h.db.progress_of(d).txid < txid {
        let step = up.step(now, &h.live);
        assert!(!matches!(step, Step::Failed { .. }), "{step:?}");
        now = match step {
            Step::WaitUntil(t) => t.max(now + 1),
            _ => now + 1,
        };
        assert!(
            now < 10_000_000,
            "destination {d} did not reach txid {txid}"
        );
    }
    now
}

#[test]
fn a_failing_destination_holds_back_neither_the_other_nor_its_records() {
    let mut h = Harness::new("dest-failing");
    let (store_b, mut up_a, mut up_b) = both_started(&mut h, 1 << 30);

    *store_b.fail_with.lock().unwrap() = Some(StoreError::Transient("503 from b".into()));
    h.commit(&[(2, 20)], 3, 10_000);
    assert_eq!(up_a.step(10_000, &h.live), Step::Shipped { txid: 2 });
    assert!(matches!(up_b.step(10_000, &h.live), Step::Failed { .. }));
    // `a` has it; the spool keeps it for `b`, whose progress says why it lags.
    assert!(h.db.spool.pending_of(0).is_empty());
    assert_eq!(h.db.spool.pending_of(1).len(), 1);
    assert_eq!(h.db.spool.pending().len(), 1);
    let (pa, pb) = (h.db.progress_of(0), h.db.progress_of(1));
    assert_eq!((pa.txid, pa.last_error), (2, None));
    assert!(pb.last_error.unwrap().contains("503 from b"));

    h.commit(&[(3, 30)], 3, 20_000);
    assert_eq!(up_a.step(20_000, &h.live), Step::Shipped { txid: 3 });
    *store_b.fail_with.lock().unwrap() = None;
    // Both records in one file: each destination counts its own files.
    step_until(&h, &mut up_b, 20_000, 2);
    assert_eq!(
        h.db.counters_of(1).snapshots,
        1,
        "b caught up without a snapshot"
    );
    assert!(
        h.db.spool.pending().is_empty(),
        "shipped everywhere: reclaimed"
    );
    same(&h.restore(Target::Latest).unwrap(), &h.live.image(), "a");
    let b = h.restore_from(store_b.as_ref(), Target::Latest).unwrap();
    same(&b, &h.live.image(), "b");
}

#[test]
fn records_one_destination_lacks_survive_a_restart_and_ship_without_a_snapshot() {
    let mut h = Harness::new("dest-restart");
    let (store_b, mut up_a, up_b) = both_started(&mut h, 1 << 30);
    h.commit(&[(2, 20)], 3, 10_000);
    assert_eq!(up_a.step(10_000, &h.live), Step::Shipped { txid: 2 });
    h.db.spool.flush().unwrap();
    drop((up_a, up_b));

    let cfgs: Vec<ReplicaConfig> = h.db.destinations.iter().map(|d| d.config.clone()).collect();
    h.reopen_with_all(cfgs, 1 << 30);
    assert_eq!(h.db.spool.pending_of(0).len(), 0);
    assert_eq!(
        h.db.spool.pending_of(1).len(),
        1,
        "kept for b across the restart"
    );
    let (mut up_a, mut up_b) = (h.uploader(), uploader(&h, 1, &store_b));
    assert_eq!(up_b.step(20_000, &h.live), Step::Shipped { txid: 2 });
    let step = up_a.step(20_000, &h.live);
    assert!(matches!(step, Step::Idle | Step::WaitUntil(_)), "{step:?}");
    assert_eq!(
        h.db.counters_of(0).snapshots + h.db.counters_of(1).snapshots,
        0
    );
    assert!(h.db.spool.pending().is_empty());
    let b = h.restore_from(store_b.as_ref(), Target::Latest).unwrap();
    same(&b, &h.live.image(), "b");
}

#[test]
fn a_destination_added_later_gets_a_snapshot_and_the_first_does_not() {
    let mut h = Harness::new("dest-added");
    let up = h.uploader_past_first_file(1_000, 10_000);
    drop(up);

    let store_b = two_destinations(&mut h);
    assert_eq!(h.db.progress_of(0).needs_snapshot, None);
    assert!(h.db.progress_of(1).needs_snapshot.is_some());
    let (mut up_a, mut up_b) = (h.uploader(), uploader(&h, 1, &store_b));
    assert_eq!(up_b.step(20_000, &h.live), Step::Snapshot { txid: 1 });
    h.commit(&[(3, 30)], 3, 30_000);
    step_until(&h, &mut up_a, 30_000, 3);
    step_until(&h, &mut up_b, 30_000, 2);
    assert_eq!(h.db.counters_of(0).snapshots, 0);
    same(&h.restore(Target::Latest).unwrap(), &h.live.image(), "a");
    let b = h.restore_from(store_b.as_ref(), Target::Latest).unwrap();
    same(&b, &h.live.image(), "b");
}

#[test]
fn a_destination_behind_the_spool_cap_is_let_go_of_and_the_other_goes_on() {
    let mut h = Harness::new("dest-cap");
    // Room for about four of the commits below.
    let (store_b, mut up_a, mut up_b) = both_started(&mut h, 4 * 520 * 3);
    *store_b.fail_with.lock().unwrap() = Some(StoreError::Transient("b is down".into()));
    let mut now = 10_000;
    for i in 0..12u8 {
        now += 10_000;
        h.commit(&[(2, 20 + i), (3, 40 + i), (4, 60 + i)], 4, now);
        now = step_until(&h, &mut up_a, now, 2 + u64::from(i));
        let _ = up_b.step(now, &h.live);
    }
    // `a` shipped every commit as it came, with no snapshot beyond its first; `b` was let
    // go of rather than the spool overflowing for both.
    assert_eq!(h.db.counters_of(0).snapshots, 1);
    assert!(!h.db.spool.is_overflowed());
    assert!(h.db.spool.is_let_go(1));
    assert!(
        h.db.spool.gap_of(1).is_some(),
        "a restart would owe b its snapshot"
    );
    assert!(h.db.spool.gap_of(0).is_none());
    *store_b.fail_with.lock().unwrap() = None;
    while h.db.counters_of(1).snapshots < 2 {
        now += 1_000;
        let step = up_b.step(now, &h.live);
        assert!(!matches!(step, Step::Failed { .. }), "{step:?}");
        assert!(now < 1_000_000, "b got no snapshot");
    }
    assert!(!h.db.spool.is_let_go(1));
    same(&h.restore(Target::Latest).unwrap(), &h.live.image(), "a");
    let b = h.restore_from(store_b.as_ref(), Target::Latest).unwrap();
    same(&b, &h.live.image(), "b");
}

#[test]
fn a_destination_whose_records_are_gone_gets_a_snapshot_not_a_hole() {
    let mut h = Harness::new("dest-removed");
    let (store_b, up_a, up_b) = both_started(&mut h, 1 << 30);
    let both: Vec<ReplicaConfig> = h.db.destinations.iter().map(|d| d.config.clone()).collect();
    drop((up_a, up_b));
    // `b` leaves the config for a while: `a` ships alone and the spool reclaims.
    h.reopen_with_all(both[..1].to_vec(), 1 << 30);
    let mut up_a = h.uploader();
    h.commit(&[(2, 20)], 3, 10_000);
    let now = step_until(&h, &mut up_a, 10_000, 2);
    h.commit(&[(3, 30)], 3, now + 10_000);
    step_until(&h, &mut up_a, now + 10_000, 3);
    assert!(h.db.spool.pending().is_empty());
    drop(up_a);
    // It comes back: its state still matches its replica, but the records it lacks are gone.
    h.reopen_with_all(both, 1 << 30);
    assert!(h.db.progress_of(1).needs_snapshot.is_some());
    assert!(h.db.progress_of(0).needs_snapshot.is_none());
    let mut up_b = uploader(&h, 1, &store_b);
    assert_eq!(up_b.step(40_000, &h.live), Step::Snapshot { txid: 2 });
    let b = h.restore_from(store_b.as_ref(), Target::Latest).unwrap();
    same(&b, &h.live.image(), "b");
}

#[test]
fn an_overflow_ends_once_one_destination_snapshots_past_it() {
    let mut h = Harness::new("dest-overflow");
    // Room for less than one of the commits below: both destinations overflow.
    let (store_b, mut up_a, mut up_b) = both_started(&mut h, 2_000);
    *store_b.fail_with.lock().unwrap() = Some(StoreError::Transient("b is down".into()));
    h.commit(&[(2, 20)], 3, 5_000);
    step_until(&h, &mut up_a, 5_000, 2);
    let big = [(2, 21), (3, 31), (4, 41), (5, 51)];
    assert!(
        h.try_commit(&big, 5, 10_000).is_err(),
        "the record must not fit"
    );
    assert!(h.db.spool.is_overflowed());
    // `a` takes the snapshot the overflow owes; `b` cannot.
    h.db.request_snapshot("the spool overflowed");
    step_until(&h, &mut up_a, 20_000, 3);
    let _ = up_b.step(20_000, &h.live);
    // A commit that fits is taken again: the overflow ended for `a`, and `b` was let go of.
    h.commit(&big[..1], 5, 30_000);
    assert!(!h.db.spool.is_overflowed());
    assert!(h.db.spool.is_let_go(1));
    step_until(&h, &mut up_a, 30_000, 4);
    assert_eq!(
        h.db.counters_of(0).snapshots,
        2,
        "no snapshot beyond the overflow's"
    );
    same(&h.restore(Target::Latest).unwrap(), &h.live.image(), "a");
}
