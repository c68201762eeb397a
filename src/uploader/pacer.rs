//! The uploader's side of the request budget: it counts every request the store made into
//! the replica's ledger (kept in the spool, so a new process or a standby taking over goes
//! on with the month's count and the bucket), publishes it for status, and says when the
//! budget lets the next job make requests. The arithmetic is `crate::budget`'s.

use crate::budget::{ClassCounts, Ledger, RequestBudget};
use crate::database::Dest;
use crate::store::RequestCounts;

pub(super) struct Pacer {
    ledger: Option<Ledger>,
    /// The store's counts already in the ledger.
    counted: ClassCounts,
    /// Counted since the ledger was last stored.
    dirty: bool,
    /// The last store failed (and was said).
    failing: bool,
}

/// The billing classes of a store's counts.
fn classes(c: &RequestCounts) -> ClassCounts {
    ClassCounts {
        class_a: c.put + c.list,
        class_b: c.get,
        free: c.delete,
    }
}

impl Pacer {
    /// A pacer for a store that has made `made` requests so far (none, unless the store is
    /// shared with an earlier worker, as in tests).
    pub fn new(made: &RequestCounts) -> Pacer {
        Pacer {
            ledger: None,
            counted: classes(made),
            dirty: false,
            failing: false,
        }
    }

    fn budget(dest: &Dest) -> Option<&RequestBudget> {
        dest.config().request_budget.as_ref()
    }

    /// The ledger at `now`: the spool's, else a fresh one.
    fn ledger(&mut self, dest: &Dest, now: u64) -> &mut Ledger {
        let ledger = self.ledger.get_or_insert_with(|| {
            dest.request_ledger()
                .and_then(|t| Ledger::decode(&t))
                .unwrap_or_else(|| Ledger::fresh(now))
        });
        ledger.advance(dest.config().request_budget.as_ref(), now);
        ledger
    }

    /// When the budget lets a job make its `requests`: `now` when there is no budget or the
    /// bucket holds them.
    pub fn ready_at(&mut self, dest: &Dest, now: u64, requests: u32) -> u64 {
        if Self::budget(dest).is_none() {
            return now;
        }
        let budget = Self::budget(dest).copied();
        self.ledger(dest, now)
            .ready_at(budget.as_ref(), now, f64::from(requests))
    }

    /// Counts what the store has made since the last call (`counts`: its totals) and what
    /// others made to the replica, publishes the ledger, and stores it whenever it changed:
    /// a process may exit at any moment after a step, and its requests must not be lost
    /// from the month's count (one small file replaced per step that made requests).
    pub fn count(&mut self, dest: &Dest, counts: &RequestCounts, now: u64) {
        let totals = classes(counts);
        let mut made = totals.since(&self.counted);
        self.counted = totals;
        made.add(&classes(&crate::database::take_outside_requests(
            &dest.config().target,
        )));
        let budget = dest.config().request_budget;
        let ledger = self.ledger(dest, now);
        ledger.spend(&made, budget.as_ref());
        let published = ledger.clone();
        dest.counters().ledger = Some(published);
        self.dirty |= made.total() > 0;
        self.store_now(dest);
    }

    /// Writes back what is not stored yet. A failure is said once until a write succeeds.
    pub fn store_now(&mut self, dest: &Dest) {
        let Some(ledger) = &self.ledger else { return };
        if !self.dirty {
            return;
        }
        match dest.store_request_ledger(&ledger.encode()) {
            Ok(()) => {
                self.dirty = false;
                self.failing = false;
            }
            Err(e) if !self.failing => {
                self.failing = true;
                crate::base::log::error(&format!("{}: request counts not kept: {e}", dest.db.name));
            }
            Err(_) => {}
        }
    }
}
