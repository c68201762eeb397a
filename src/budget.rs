//! The request budget (`request-budget: 500000/month` or `$2/month`): what it allows, the
//! billing classes and prices requests are counted in, and the ledger that paces one
//! replica's uploader within the calendar month (UTC): month-to-date counts by class and a
//! token bucket that fills at the budget's rate. Pure: counts and time in, decisions out.
//! The uploader counts its requests and keeps the ledger in the spool.
//!
//! Every request counts against the budget, whatever its class; the cost estimate prices
//! them by class. A job waits until the bucket holds the requests it is expected to make
//! (its file, and the lease when due), so a month stays within the budget up to what the
//! last job made beyond that estimate (a compaction's downloads, a multipart upload's
//! parts). Requests someone asked for (`replica_sync()`, synchronous commits) are made
//! even when the budget says wait, and counted: they take the bucket into debt (at most
//! what it holds), which later shipments wait out.

use crate::base::clock::month_bounds;

/// R2's prices, in nano-dollars per request: Class A (PUT, POST, LIST) $4.50 per million,
/// Class B (GET, HEAD) $0.36 per million; deletes are free.
pub const R2_CLASS_A_NANOS: u64 = 4_500;
pub const R2_CLASS_B_NANOS: u64 = 360;

/// What requests cost, in nano-dollars (10⁻⁹ USD) per request, which is also dollars per
/// thousand million requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prices {
    pub class_a_nanos: u64,
    pub class_b_nanos: u64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            class_a_nanos: R2_CLASS_A_NANOS,
            class_b_nanos: R2_CLASS_B_NANOS,
        }
    }
}

/// The smallest budget: what a first upload (or one after the lease ran out) makes.
pub const MIN_PER_MONTH: u64 = 3;

/// How many requests a replica may make in a calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBudget {
    pub per_month: u64,
}

impl RequestBudget {
    /// The most the bucket holds: an hour of the budget, and never less than what a lone
    /// commit after a quiet spell costs (the lease taken again, and the file).
    pub fn capacity(&self) -> f64 {
        (self.per_month as f64 / 720.0).max(3.0)
    }
}

/// Parses `500000/month`, `500k/month`, `2.6M/month` or `$2/month` (dollars are turned
/// into requests at the Class A price, the dearest, so the bill stays under them).
pub fn parse_budget(text: &str, prices: &Prices) -> Result<RequestBudget, String> {
    let usage = "expected `<requests>/month` or `$<dollars>/month`, e.g. `500000/month`, `2.6M/month` or `$2/month`";
    let t = text.trim();
    let Some(amount) = t.strip_suffix("/month").map(str::trim) else {
        return Err(format!("`{t}`: {usage}"));
    };
    let per_month = if let Some(dollars) = amount.strip_prefix('$') {
        let nanos = parse_decimal(dollars.trim(), 1_000_000_000)
            .ok_or_else(|| format!("`{t}`: `{dollars}` is not an amount of dollars; {usage}"))?;
        nanos / prices.class_a_nanos.max(1)
    } else {
        let (digits, unit) = match amount.chars().last() {
            Some('k' | 'K') => (&amount[..amount.len() - 1], 1_000),
            Some('m' | 'M') => (&amount[..amount.len() - 1], 1_000_000),
            _ => (amount, 1),
        };
        parse_decimal(&digits.replace('_', ""), unit)
            .ok_or_else(|| format!("`{t}`: `{amount}` is not a number of requests; {usage}"))?
    };
    if per_month < MIN_PER_MONTH {
        return Err(format!(
            "`{t}` allows fewer requests than a first upload makes (the lease read and written, and the file); the smallest budget is {MIN_PER_MONTH}/month"
        ));
    }
    Ok(RequestBudget { per_month })
}

/// Parses a price in dollars per million requests (`4.50` or `$4.50`) into nano-dollars
/// per request.
pub fn parse_price(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let amount = t.strip_prefix('$').unwrap_or(t).trim();
    parse_decimal(amount, 1_000)
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!("`{t}`: expected dollars per million requests greater than zero, e.g. `4.50`")
        })
}

/// `12.34` × `unit`, exactly, when the result is a whole number that fits.
fn parse_decimal(text: &str, unit: u64) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let mut value = if whole.is_empty() {
        0
    } else {
        whole.parse::<u64>().ok()?.checked_mul(unit)?
    };
    let mut scale = unit;
    for d in frac.bytes() {
        if !scale.is_multiple_of(10) {
            return None; // finer than the unit can hold
        }
        scale /= 10;
        value = value.checked_add(u64::from(d - b'0') * scale)?;
    }
    Some(value)
}

/// Requests by billing class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// PUT, POST (multipart), LIST.
    pub class_a: u64,
    /// GET, HEAD.
    pub class_b: u64,
    /// DELETE and batch deletes: counted against the budget, billed at nothing.
    pub free: u64,
}

impl ClassCounts {
    pub fn total(&self) -> u64 {
        self.class_a
            .saturating_add(self.class_b)
            .saturating_add(self.free)
    }

    pub fn cost_nanos(&self, prices: &Prices) -> u64 {
        self.class_a
            .saturating_mul(prices.class_a_nanos)
            .saturating_add(self.class_b.saturating_mul(prices.class_b_nanos))
    }

    /// What was made since `earlier` (counters only grow; a reset counts from zero).
    pub fn since(&self, earlier: &ClassCounts) -> ClassCounts {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        ClassCounts {
            class_a: d(self.class_a, earlier.class_a),
            class_b: d(self.class_b, earlier.class_b),
            free: d(self.free, earlier.free),
        }
    }

    pub fn add(&mut self, o: &ClassCounts) {
        self.class_a = self.class_a.saturating_add(o.class_a);
        self.class_b = self.class_b.saturating_add(o.class_b);
        self.free = self.free.saturating_add(o.free);
    }
}

/// One replica's requests this calendar month and its token bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    /// The month counted: its first millisecond (UTC).
    pub month_start_ms: u64,
    /// When counting began in this month (its start, or when the ledger was first kept).
    pub since_ms: u64,
    pub month: ClassCounts,
    /// Requests the bucket holds; below zero after requests made in spite of it.
    pub tokens: f64,
    /// When the bucket was last filled.
    pub at_ms: u64,
}

impl Ledger {
    /// A replica counted for the first time: an empty bucket, so that from its first
    /// request on it never runs ahead of the budget's rate.
    pub fn fresh(now: u64) -> Ledger {
        Ledger {
            month_start_ms: month_bounds(now).0,
            since_ms: now,
            month: ClassCounts::default(),
            tokens: 0.0,
            at_ms: now,
        }
    }

    /// Brings the ledger to `now`: another month counts from zero, and the bucket fills at
    /// the budget's rate (the month's budget spread over its milliseconds), holding between
    /// a capacity's debt and its capacity. Without a budget the bucket stays empty, so
    /// that requests made then are no debt once a budget is set. A clock that went back
    /// fills nothing and is taken as it is from then on (never waited for).
    pub fn advance(&mut self, budget: Option<&RequestBudget>, now: u64) {
        let (start, end) = month_bounds(now);
        if start != self.month_start_ms {
            self.month_start_ms = start;
            self.since_ms = start;
            self.month = ClassCounts::default();
        }
        self.since_ms = self.since_ms.min(now);
        self.tokens = match budget {
            Some(b) => {
                let elapsed = now.saturating_sub(self.at_ms) as f64;
                let rate = b.per_month as f64 / (end - start) as f64;
                (self.tokens + elapsed * rate).clamp(-b.capacity(), b.capacity())
            }
            None => 0.0,
        };
        self.at_ms = now;
    }

    /// The requests counted in the month holding `now` (none yet when the ledger is of an
    /// earlier month).
    pub fn month_in(&self, now: u64) -> ClassCounts {
        if month_bounds(now).0 == self.month_start_ms {
            self.month
        } else {
            ClassCounts::default()
        }
    }

    /// Counts requests made (taking them from the bucket, under a budget; a debt of more
    /// than the bucket holds is forgiven, so that requests someone waited for never stop
    /// shipping for long).
    pub fn spend(&mut self, made: &ClassCounts, budget: Option<&RequestBudget>) {
        self.month.add(made);
        if let Some(b) = budget {
            self.tokens = (self.tokens - made.total() as f64).max(-b.capacity());
        }
    }

    /// When `need` more requests fit the budget: now if the bucket holds them and the month
    /// has them left; else when the bucket will have filled (or the next month starts).
    /// Always now without a budget.
    pub fn ready_at(&self, budget: Option<&RequestBudget>, now: u64, need: f64) -> u64 {
        let Some(b) = budget else { return now };
        let (start, end) = month_bounds(now);
        let this_month = if start == self.month_start_ms {
            self.month.total()
        } else {
            0
        };
        if this_month as f64 + need > b.per_month as f64 {
            return end;
        }
        // A hair of slack, so that float rounding never costs a millisecond's wait.
        if self.tokens >= need - 1e-6 {
            return now;
        }
        let rate = b.per_month as f64 / (end - start) as f64;
        let wait = ((need - self.tokens) / rate - 1e-3).ceil() as u64;
        now.saturating_add(wait.max(1))
    }

    /// The month's requests at month end if they go on at the rate counted so far; `None`
    /// before a minute has been counted (too little to project from).
    pub fn projected(&self, now: u64) -> Option<u64> {
        let (start, end) = month_bounds(now);
        if start != self.month_start_ms {
            return Some(0);
        }
        let counted = now.saturating_sub(self.since_ms);
        if counted < 60_000 {
            return None;
        }
        let total = self.month.total() as f64;
        Some((total + total / counted as f64 * end.saturating_sub(now) as f64).round() as u64)
    }

    /// The ledger as the spool keeps it: one line of `key=value` fields.
    pub fn encode(&self) -> String {
        format!(
            "ledger/1 month={} since={} a={} b={} free={} tokens={:.6} at={}\n",
            self.month_start_ms,
            self.since_ms,
            self.month.class_a,
            self.month.class_b,
            self.month.free,
            self.tokens,
            self.at_ms
        )
    }

    /// A line [`Ledger::encode`] wrote, else `None` (a torn or foreign file: start fresh).
    pub fn decode(text: &str) -> Option<Ledger> {
        let line = text.strip_suffix('\n')?;
        let mut fields = line.split(' ');
        if fields.next()? != "ledger/1" {
            return None;
        }
        let mut value = |name: &str| -> Option<&str> {
            let (k, v) = fields.next()?.split_once('=')?;
            (k == name).then_some(v)
        };
        let month_start_ms = value("month")?.parse().ok()?;
        let since_ms = value("since")?.parse().ok()?;
        let month = ClassCounts {
            class_a: value("a")?.parse().ok()?,
            class_b: value("b")?.parse().ok()?,
            free: value("free")?.parse().ok()?,
        };
        let tokens: f64 = value("tokens")?.parse().ok()?;
        let at_ms = value("at")?.parse().ok()?;
        // Written by this crate into an owner-only directory, but checked as any input is:
        // a month that is no month start, counting that began outside it, or a bucket that
        // is no number starts a fresh ledger instead.
        let sane = month_bounds(month_start_ms).0 == month_start_ms
            && (month_start_ms..=at_ms).contains(&since_ms)
            && tokens.is_finite();
        (fields.next().is_none() && sane).then_some(Ledger {
            month_start_ms,
            since_ms,
            month,
            tokens,
            at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::parse_rfc3339;

    fn at(s: &str) -> u64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn budgets_parse_in_requests_or_dollars() {
        let p = Prices::default();
        let ok = |t: &str| parse_budget(t, &p).unwrap().per_month;
        assert_eq!(ok("500000/month"), 500_000);
        assert_eq!(ok("500_000/month"), 500_000);
        assert_eq!(ok("500k/month"), 500_000);
        assert_eq!(ok(" 2.6M/month "), 2_600_000);
        assert_eq!(ok("$2/month"), 444_444);
        assert_eq!(ok("$4.50/month"), 1_000_000);
        for bad in [
            "500000",
            "lots/month",
            "-5/month",
            "0/month",
            "2/month",
            "1.5/month",
            "$/month",
        ] {
            let e = parse_budget(bad, &p).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
        assert_eq!(parse_price("4.50").unwrap(), 4_500);
        assert_eq!(parse_price("$0.36").unwrap(), 360);
        assert!(parse_price("0").is_err());
        assert!(parse_price("four").is_err());
    }

    #[test]
    fn the_bucket_fills_at_the_budgets_rate_up_to_an_hour() {
        let b = RequestBudget { per_month: 744 }; // one an hour in a 31-day month
        let t0 = at("2026-12-03T00:00:00Z");
        let mut l = Ledger::fresh(t0);
        assert_eq!(l.ready_at(Some(&b), t0, 1.0), t0 + 3_600_000);
        l.advance(Some(&b), t0 + 1_800_000);
        assert!((l.tokens - 0.5).abs() < 1e-9, "{}", l.tokens);
        l.advance(Some(&b), t0 + 100 * 3_600_000);
        assert_eq!(l.tokens, 3.0, "capped at the capacity");
        l.spend(
            &ClassCounts {
                class_a: 4,
                ..Default::default()
            },
            Some(&b),
        );
        assert!((l.tokens + 1.0).abs() < 1e-9);
        let now = t0 + 100 * 3_600_000;
        assert_eq!(l.ready_at(Some(&b), now, 1.0), now + 2 * 3_600_000);
        assert_eq!(l.ready_at(None, now, 1.0), now);
    }

    #[test]
    fn a_spent_month_waits_for_the_next_and_a_new_month_counts_from_zero() {
        let b = RequestBudget { per_month: 10 };
        let t = at("2026-12-31T23:00:00Z");
        let mut l = Ledger::fresh(at("2026-12-01T00:00:00Z"));
        l.spend(
            &ClassCounts {
                class_a: 10,
                ..Default::default()
            },
            Some(&b),
        );
        l.tokens = 3.0;
        assert_eq!(l.ready_at(Some(&b), t, 1.0), at("2027-01-01T00:00:00Z"));
        l.advance(Some(&b), at("2027-01-01T00:00:01Z"));
        assert_eq!(l.month, ClassCounts::default());
        assert_eq!(l.month_start_ms, at("2027-01-01T00:00:00Z"));
        let now = at("2027-01-01T00:00:01Z");
        assert_eq!(l.ready_at(Some(&b), now, 1.0), now);
    }

    #[test]
    fn requests_without_a_budget_are_no_debt_and_a_debt_is_at_most_a_bucket() {
        let b = RequestBudget {
            per_month: 1_000_000,
        };
        let t0 = at("2026-12-03T00:00:00Z");
        let mut l = Ledger::fresh(t0);
        let many = ClassCounts {
            class_a: 100_000,
            ..Default::default()
        };
        l.spend(&many, None);
        l.advance(Some(&b), t0 + 3_600_000);
        assert!(l.tokens > 0.0, "{}", l.tokens);
        l.spend(&many, Some(&b)); // a sync that went ahead
        assert_eq!(l.tokens, -b.capacity());
        let now = t0 + 3_600_000;
        assert!(l.ready_at(Some(&b), now, 1.0) <= now + 2 * 3_600_000 + 60_000);
    }

    #[test]
    fn a_clock_that_went_back_is_taken_as_it_is() {
        let b = RequestBudget {
            per_month: 2_678_400,
        }; // one a second in December
        let t0 = at("2026-12-03T00:00:00Z");
        let mut l = Ledger::fresh(at("2030-01-01T00:00:00Z"));
        l.advance(Some(&b), t0);
        assert_eq!(
            (l.at_ms, l.month_start_ms),
            (t0, at("2026-12-01T00:00:00Z"))
        );
        l.advance(Some(&b), t0 + 2_000);
        assert_eq!(l.ready_at(Some(&b), t0 + 2_000, 1.0), t0 + 2_000);
    }

    #[test]
    fn the_smallest_budget_ships_a_first_upload() {
        let b = RequestBudget {
            per_month: MIN_PER_MONTH,
        };
        // A month fills the bucket with the three requests a first upload makes.
        let t0 = at("2026-12-01T00:00:00Z");
        let mut l = Ledger::fresh(t0);
        let later = at("2027-01-02T00:00:00Z");
        l.advance(Some(&b), later);
        assert_eq!(l.ready_at(Some(&b), later, 3.0), later);
    }

    #[test]
    fn the_projection_extrapolates_the_rate_counted() {
        let t0 = at("2026-11-01T00:00:00Z");
        let mut l = Ledger::fresh(t0);
        l.spend(
            &ClassCounts {
                class_a: 100,
                class_b: 20,
                free: 5,
            },
            None,
        );
        assert_eq!(l.projected(t0 + 59_000), None);
        // A day of a 30-day month: thirty times as much.
        assert_eq!(l.projected(t0 + 86_400_000), Some(125 * 30));
        assert_eq!(
            l.month.cost_nanos(&Prices::default()),
            100 * 4_500 + 20 * 360
        );
    }

    #[test]
    fn the_ledger_round_trips_and_refuses_anything_else() {
        let mut l = Ledger::fresh(at("2026-12-03T10:00:00Z"));
        l.spend(
            &ClassCounts {
                class_a: 7,
                class_b: 2,
                free: 1,
            },
            None,
        );
        let text = l.encode();
        assert_eq!(Ledger::decode(&text), Some(l.clone()));
        assert_eq!(Ledger::decode(&text[..text.len() - 2]), None);
        assert_eq!(Ledger::decode(&text.replace("a=7", "a=x")), None);
        assert_eq!(Ledger::decode(&text.replace("tokens", "tokenz")), None);
        assert_eq!(
            Ledger::decode(&text.replace("tokens=0.000000", "tokens=NaN")),
            None
        );
        let month = l.month_start_ms.to_string();
        let not_a_month = (l.month_start_ms + 1).to_string();
        assert_eq!(Ledger::decode(&text.replace(&month, &not_a_month)), None);
        // Counts that would overflow add up to the most there is, never a panic.
        let huge = text.replace("a=7", &format!("a={}", u64::MAX));
        assert_eq!(Ledger::decode(&huge).unwrap().month.total(), u64::MAX);
        assert_eq!(
            Ledger::decode(&format!("{} extra\n", text.trim_end())),
            None
        );
        assert_eq!(Ledger::decode(""), None);
    }

    #[test]
    fn counts_since_an_earlier_reading() {
        let now = ClassCounts {
            class_a: 5,
            class_b: 3,
            free: 1,
        };
        let then = ClassCounts {
            class_a: 2,
            class_b: 3,
            free: 4,
        };
        assert_eq!(
            now.since(&then),
            ClassCounts {
                class_a: 3,
                class_b: 0,
                free: 1
            }
        );
    }
}
