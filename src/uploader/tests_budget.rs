//! The request budget, with the worker stepped through simulated time (a fake clock)
//! against a memory store: a whole month of steady writes stays within its budget and
//! every shipped state restores; a lone commit after a quiet spell ships at once; a
//! `replica_sync()` goes ahead of an empty bucket and is counted.

use super::tests::{same, Harness};
use super::{DbUploader, Step};
use crate::base::clock::{month_bounds, parse_rfc3339};
use crate::budget::RequestBudget;
use crate::restore::Target;
use crate::store::ObjectStore;

/// Steps the worker at `now` and at every time it asks to be woken, until it asks for a
/// time after `until` (or is idle). Returns the txids shipped or snapshotted.
fn run_until(up: &mut DbUploader, h: &Harness, mut now: u64, until: u64) -> Vec<u64> {
    let mut shipped = Vec::new();
    let mut again = 0; // steps in a row that asked to be woken at once
    for _ in 0..10_000 {
        match up.step(now, &h.live) {
            Step::WaitUntil(t) if t > until => return shipped,
            Step::WaitUntil(t) => {
                again = if t <= now { again + 1 } else { 0 };
                assert!(again < 5, "the worker keeps asking to be woken at {now}");
                now = t.max(now + 1);
            }
            Step::Idle => return shipped,
            Step::Failed { error, .. } => panic!("step failed at {now}: {error}"),
            Step::Shipped { txid } | Step::Snapshot { txid } => shipped.push(txid),
            Step::Compacted { .. } | Step::Retained { .. } => {}
        }
    }
    panic!("the worker never settled after {now}")
}

fn total(h: &Harness) -> u64 {
    let c = h.store.request_counts();
    c.put + c.get + c.list + c.delete
}

#[test]
fn a_month_of_steady_writes_stays_within_its_budget_and_every_shipped_state_restores() {
    const BUDGET: u64 = 3_000;
    const EVERY_MS: u64 = 5 * 60_000;
    let mut h = Harness::with_config("budget-month", |cfg| {
        cfg.request_budget = Some(RequestBudget { per_month: BUDGET })
    });
    let (start, end) = month_bounds(parse_rfc3339("2026-11-01T00:00:00Z").unwrap());
    let mut up = h.uploader();
    let mut states = Vec::new(); // (txid, image) after each shipment
    let mut last_ship = start;
    let mut worst_wait = 0;
    h.commit(&[(10, 0)], 10, start);
    let mut t = start;
    let mut n: u32 = 0;
    while t < end {
        n += 1;
        // Pages 2..=10 in turn.
        h.commit(&[(2 + n % 9, (n % 251) as u8)], 10, t);
        let next = t + EVERY_MS;
        for txid in run_until(&mut up, &h, t, next.min(end) - 1) {
            states.push((txid, h.live.image()));
            worst_wait = worst_wait.max(t - last_ship);
            last_ship = t;
        }
        t = next;
    }
    let made = total(&h);
    println!(
        "{n} commits, {made} requests, {} shipments, longest between shipments {} min",
        states.len(),
        worst_wait / 60_000
    );
    assert!(
        made <= BUDGET,
        "{made} requests in the month, over {BUDGET}"
    );
    assert!(
        made >= BUDGET * 8 / 10,
        "the budget was left unused: {made}"
    );
    let ledger = h.db.counters_of(0).ledger.clone().expect("counted");
    assert_eq!(
        ledger.month.total(),
        made,
        "the ledger counts every request"
    );
    // The budget bought shipments every few commits, not one a day.
    assert!(states.len() > 500, "{} shipments", states.len());
    // Everything committed is restorable: what the month's budget could not ship goes with
    // the next month's first requests; states along the way restore too.
    let (last_txid, _) = *states.last().unwrap();
    let next_month = run_until(&mut up, &h, end, end + 3_600_000);
    assert!(!next_month.is_empty(), "the rest waits for the next month");
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
    let step = (states.len() / 7).max(1);
    for (txid, image) in states.iter().step_by(step) {
        same(
            &h.restore(Target::Txid(*txid)).unwrap(),
            image,
            &format!("txid {txid} of {last_txid}"),
        );
    }
}

#[test]
fn a_lone_commit_after_a_quiet_spell_ships_at_once_and_a_sync_goes_ahead_of_the_budget() {
    // 744 a month in December: one request an hour; the bucket holds three.
    let mut h = Harness::with_config("budget-lone", |cfg| {
        cfg.request_budget = Some(RequestBudget { per_month: 744 })
    });
    let hour = 3_600_000;
    let t0 = parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let mut up = h.uploader();
    // A fresh replica's bucket is empty: the first snapshot waits for a request.
    let mut at = t0;
    loop {
        match up.step(at, &h.live) {
            Step::WaitUntil(t) => at = t,
            Step::Snapshot { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(at >= t0 + hour, "{}", at - t0);
    // Hours later the bucket is full again: a lone commit ships at once.
    let later = at + 10 * hour;
    run_until(&mut up, &h, at, later - 1);
    h.commit(&[(2, 9)], 3, later);
    assert_eq!(up.step(later, &h.live), Step::Shipped { txid: 2 });
    // Commits keep coming; the bucket is empty: the next waits…
    h.commit(&[(2, 10)], 3, later + 5_000);
    let wait = loop {
        match up.step(later + 5_000, &h.live) {
            Step::WaitUntil(t) => break t,
            Step::Compacted { .. } | Step::Retained { .. } => {} // the lifecycle's turn
            other => panic!("an empty bucket must make the batch wait: {other:?}"),
        }
    };
    assert!(wait > later + hour / 2, "{}", wait - later);
    // …unless someone waits for it (replica_sync): it ships now and is counted.
    let before = total(&h);
    h.db.update_progress(|p| p.flush_requested = true);
    assert_eq!(up.step(later + 6_000, &h.live), Step::Shipped { txid: 3 });
    assert!(total(&h) > before);
    let ledger = h.db.counters_of(0).ledger.clone().unwrap();
    assert!(ledger.tokens < 0.0, "the sync took the bucket into debt");
    same(
        &h.restore(Target::Latest).unwrap(),
        &h.live.image(),
        "latest",
    );
}

#[test]
fn the_ledger_survives_a_new_process() {
    let mut h = Harness::with_config("budget-restart", |cfg| {
        cfg.request_budget = Some(RequestBudget {
            per_month: 1_000_000,
        })
    });
    let t0 = parse_rfc3339("2026-12-02T00:00:00Z").unwrap();
    let mut up = h.uploader();
    run_until(&mut up, &h, t0, t0 + 120_000);
    h.commit(&[(2, 7)], 3, t0 + 130_000);
    run_until(&mut up, &h, t0 + 130_000, t0 + 131_000);
    let made = total(&h);
    assert!(made >= 3, "{made}");
    drop(up); // stores the ledger
    h.reopen(1 << 30);
    let mut up = h.uploader();
    h.commit(&[(2, 8)], 3, t0 + 200_000);
    run_until(&mut up, &h, t0 + 200_000, t0 + 201_000);
    let month = h.db.counters_of(0).ledger.clone().unwrap().month.total();
    assert_eq!(month, total(&h), "the second process went on counting");
    assert!(month > made);
}

#[test]
fn a_sync_goes_ahead_of_the_lifecycles_turn() {
    let mut h = Harness::with_config("budget-sync-first", |cfg| {
        cfg.request_budget = Some(RequestBudget {
            per_month: 26_000_000,
        })
    });
    let t0 = parse_rfc3339("2026-12-02T00:00:00Z").unwrap();
    let mut up = h.uploader();
    run_until(&mut up, &h, t0, t0 + 10_000);
    h.commit(&[(2, 7)], 3, t0 + 10_000);
    assert_eq!(up.step(t0 + 10_000, &h.live), Step::Shipped { txid: 2 });
    // A level-1 window later a compaction is due and has the lifecycle's turn, but a
    // replica_sync() waits for the next commit: it ships first.
    h.commit(&[(2, 8)], 3, t0 + 61_000);
    h.db.update_progress(|p| p.flush_requested = true);
    assert_eq!(up.step(t0 + 61_000, &h.live), Step::Shipped { txid: 3 });
    let next = up.step(t0 + 61_001, &h.live);
    assert!(matches!(next, Step::Compacted { level: 1, .. }), "{next:?}");
}
