//! Restore drills: `replica_verify` (sync, read the live database's checksum at the
//! replicated txid, restore that txid into a scratch file and compare) and the schedule
//! that runs one per database at its `validation-interval`. It records each outcome in
//! status; it must never restore over the live database (the scratch file is in the spool).

use super::restore::{restore_tracked, Purpose, RestoreOptions};
use super::scope::{databases_for, forked_copy, standby_owner, standing_by, WalOpener};
use super::sync::sync;
use crate::database;
use crate::error::{Error, RestoreFailure};
use crate::restore::{self, CheckFailure, Target};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest the drill thread sleeps: a database opened meanwhile gets its schedule
/// within this time.
const MAX_DRILL_IDLE: Duration = Duration::from_secs(1);

/// When each database's next scheduled drill is due. The clock is passed in, so the
/// schedule is testable without waiting.
#[derive(Debug, Default)]
pub struct DrillSchedule {
    /// Database path → its interval and when its next drill is due.
    next: HashMap<PathBuf, (Duration, Instant)>,
}

impl DrillSchedule {
    /// The databases of `dbs` (path, `validation-interval`) whose drill is due at `now`, in
    /// the order given; each is due again one interval after `now` (see [`Self::restart`]).
    /// A database seen for the first time, or with another interval, is first due one
    /// interval from `now`; one no longer listed, or without an interval, is forgotten.
    pub fn due(&mut self, now: Instant, dbs: &[(PathBuf, Option<Duration>)]) -> Vec<PathBuf> {
        self.next
            .retain(|path, _| dbs.iter().any(|(p, i)| p == path && i.is_some()));
        let mut due = Vec::new();
        for (path, interval) in dbs {
            let Some(interval) = *interval else { continue };
            let entry = self
                .next
                .entry(path.clone())
                .or_insert((interval, now + interval));
            if entry.0 != interval {
                *entry = (interval, now + interval);
            }
            if now >= entry.1 {
                entry.1 = now + interval;
                due.push(path.clone());
            }
        }
        due
    }

    /// A drill of `path` ended at `now`: its next one is one interval later (a drill that
    /// takes longer than its interval does not run back to back).
    pub fn restart(&mut self, path: &Path, now: Instant) {
        if let Some((interval, at)) = self.next.get_mut(path) {
            *at = now + *interval;
        }
    }

    /// How long to wait from `now` for the next due drill, at most [`MAX_DRILL_IDLE`].
    pub fn idle(&self, now: Instant) -> Duration {
        self.next
            .values()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
            .unwrap_or(MAX_DRILL_IDLE)
            .min(MAX_DRILL_IDLE)
    }
}

/// Runs a drill (`replica_verify`) on every database this process replicates at that
/// database's own `validation-interval`, for the life of the process (the FFI layer runs it
/// on one thread of its own). Outcomes go to `replica_status().last_verify`; failures are
/// logged too.
pub fn run_scheduled_drills(
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) {
    let mut schedule = DrillSchedule::default();
    loop {
        let dbs = database::all();
        let intervals: Vec<(PathBuf, Option<Duration>)> = dbs
            .iter()
            // The most frequent of its destinations' drills: a drill checks every one.
            .map(|db| {
                let intervals = db.destinations.iter().map(|d| d.config.validation_interval);
                (db.path.clone(), intervals.flatten().min())
            })
            .collect();
        for path in schedule.due(Instant::now(), &intervals) {
            let Some(db) = dbs.iter().find(|db| db.path == path) else {
                continue;
            };
            // Nothing replicated yet (or another process replicates it): nothing to drill.
            if !db.owned_here() || db.progress().txid == 0 {
                continue;
            }
            let name = db.path.to_string_lossy().to_string();
            if let Err(e) = verify(Some(&name), None, live, open_wal, check) {
                crate::base::log::error(&format!("scheduled restore drill of {}: {e}", db.name));
            }
            schedule.restart(&path, Instant::now());
        }
        // Scheduling, not synchronization: the thread wakes when the next drill is due.
        std::thread::sleep(schedule.idle(Instant::now()));
    }
}

/// How many times a drill syncs again when commits keep arriving while it reads.
const VERIFY_ATTEMPTS: usize = 5;

/// `replica_verify([db])`: syncs, reads the live database's checksum at the replicated txid
/// (inside a read transaction, while nothing is pending), restores that txid into a scratch
/// file and compares. Returns the txid verified; a mismatch or a failed restore is an
/// error. The outcome goes to `replica_status().last_verify`.
pub fn verify(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<i64, Error> {
    if let Some(path) = conn_db.filter(|p| db_arg.is_none() && (standing_by(p) || forked_copy(p))) {
        return verify_by_other_process(path, check);
    }
    let dbs = match db_arg {
        Some(name) => vec![database::find(name).ok_or_else(|| {
            Error::NotReplicated(format!(
                "replica_verify: {name} is not a replicated database of this process"
            ))
        })?],
        None => databases_for(conn_db, "replica_verify")?,
    };
    let mut txid = 0;
    for db in dbs {
        let outcomes = verify_one(&db, live, open_wal, check);
        let now = crate::base::clock::now_ms();
        for d in 0..db.destinations.len() {
            let text = match &outcomes {
                Ok(each) => match &each[d] {
                    Ok((t, sum)) => format!("ok: txid {t}, checksum {sum:016x}"),
                    Err(e) => format!("failed: {e}"),
                },
                Err(e) => format!("failed: {e}"),
            };
            db.counters_of(d).last_verify = Some((now, text));
        }
        // The first destination's txid; the first destination that failed fails the call.
        let mut first = None;
        for outcome in outcomes? {
            first.get_or_insert(outcome?.0);
        }
        txid = first.unwrap_or_default() as i64;
    }
    Ok(txid)
}

/// What a drill found for one destination: the txid and checksum verified, or why not.
type DrillOutcome = Result<(u64, u64), Error>;

/// Syncs every destination, reads the live checksum and restores each destination's
/// replicated txid to compare: one outcome per destination, or why no drill could run.
fn verify_one(
    db: &database::Database,
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<Vec<DrillOutcome>, Error> {
    for _ in 0..VERIFY_ATTEMPTS {
        sync(
            Some(&db.path),
            None,
            super::sync::Quorum::All,
            None,
            open_wal,
        )?;
        let Some((txids, live_sum)) = crate::verify::live_checksum(db, live)? else {
            continue; // a commit arrived meanwhile: sync again
        };
        let scratch = db.spool.scratch_path("verify.db");
        let drill = |(d, txid): (usize, u64)| -> DrillOutcome {
            let whose = match db.has_several_destinations() {
                true => format!("{}'s replica '{}'", db.name, db.destinations[d].config.name),
                false => db.name.clone(),
            };
            let target = &db.destinations[d].config.target;
            let restored = drill_restore(target, &scratch, txid, check).map_err(|e| {
                match db.has_several_destinations() {
                    true => Error::Restore(
                        RestoreFailure::of(&e),
                        format!("replica_verify: {whose}: {e}"),
                    ),
                    false => e,
                }
            })?;
            let restored_sum = restored.db_checksum.expect("asked for");
            if restored.txid != txid || restored_sum != live_sum {
                return Err(Error::Restore(RestoreFailure::Corrupt, format!(
                    "replica_verify: {whose}: the replica restored at txid {} has checksum {restored_sum:016x}, the live database at txid {txid} has {live_sum:016x}",
                    restored.txid
                )));
            }
            Ok((txid, live_sum))
        };
        return Ok(txids.into_iter().enumerate().map(drill).collect());
    }
    Err(Error::Timeout(format!(
        "replica_verify: {}: commits kept arriving; {VERIFY_ATTEMPTS} attempts found the database ahead of its replica",
        db.name
    )))
}

/// Restores `replica` at `txid` into `scratch` for a drill (with the result's database
/// checksum), and removes the file.
fn drill_restore(
    replica: &crate::config::ReplicaTarget,
    scratch: &Path,
    txid: u64,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<restore::Restored, Error> {
    let restored = restore_tracked(
        replica,
        scratch,
        Target::Txid(txid),
        (
            RestoreOptions {
                overwrite: true,
                // The drill compares the result's database checksum, page by page: stronger
                // than any integrity check.
                full_check: false,
                parallelism: restore::DEFAULT_PARALLELISM,
                replica: None,
            },
            Purpose::Drill,
        ),
        check,
        &|_| Ok(()),
    );
    let _ = std::fs::remove_file(scratch);
    restored
}

/// `replica_verify` in a process that does not upload `path` (it stands by, or is a forked
/// copy of the uploader): restores the replica at the txid the uploader last recorded in
/// the spool's state, and compares the result's checksum with the one recorded beside it.
/// This checks what was shipped, not the live database, which only the uploader can read
/// at its replicated txid. A forked copy records the outcome in its status.
fn verify_by_other_process(
    path: &Path,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<i64, Error> {
    let outcome = drill_shipped_state(path, check);
    if let Some(db) = database::get(path) {
        let text = match &outcome {
            Ok((t, sum)) => {
                format!("ok: txid {t}, checksum {sum:016x} (as shipped by the uploader)")
            }
            Err(e) => format!("failed: {e}"),
        };
        db.counters_of(0).last_verify = Some((crate::base::clock::now_ms(), text));
    }
    Ok(outcome?.0 as i64)
}

fn drill_shipped_state(
    path: &Path,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<(u64, u64), Error> {
    let owner = standby_owner(path);
    let dir = crate::spool::Spool::dir_for(path);
    let state = crate::spool::Spool::read_state_file(&dir)
        .filter(|s| s.txid > 0)
        .ok_or_else(|| {
            Error::NotReplicated(format!(
                "replica_verify: {owner}; it has shipped nothing yet to verify"
            ))
        })?;
    let target = match database::get(path) {
        Some(db) => db.config.target.clone(),
        None => {
            crate::shim::resolve_for_path(path)?
                .ok_or_else(|| {
                    Error::NotReplicated(format!(
                        "replica_verify: {} has no replica",
                        path.display()
                    ))
                })?
                .swap_remove(0)
                .target
        }
    };
    if target.url() != state.replica_url {
        return Err(Error::Unsupported(format!(
            "replica_verify: {owner}; it replicates to {}, not to {} as configured here",
            state.replica_url,
            target.url()
        )));
    }
    let scratch = dir.join(format!("verify-{}.db", std::process::id()));
    let restored = drill_restore(&target, &scratch, state.txid, check)?;
    let want = crate::ltx::DbChecksum(state.post_checksum).value();
    if restored.txid != state.txid || restored.db_checksum != Some(want) {
        return Err(Error::Restore(RestoreFailure::Corrupt, format!(
            "replica_verify: {}: the replica restored at txid {} has checksum {:016x}, the uploader shipped txid {} with {want:016x}",
            path.display(), restored.txid, restored.db_checksum.unwrap_or(0), state.txid
        )));
    }
    Ok((state.txid, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_drills_at_its_own_interval() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (a, b, c) = (
            PathBuf::from("/a.db"),
            PathBuf::from("/b.db"),
            PathBuf::from("/c.db"),
        );
        let mut dbs = vec![
            (a.clone(), Some(ms(100))),
            (b.clone(), Some(ms(300))),
            (c.clone(), None),
        ];
        let mut s = DrillSchedule::default();
        // First seen: each is due one of its intervals later.
        assert!(s.due(t0, &dbs).is_empty());
        assert_eq!(s.idle(t0), ms(100));
        assert!(s.due(t0 + ms(99), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(100), &dbs), vec![a.clone()]);
        assert_eq!(s.idle(t0 + ms(100)), ms(100));
        assert_eq!(s.due(t0 + ms(200), &dbs), vec![a.clone()]);
        assert_eq!(s.due(t0 + ms(300), &dbs), vec![a.clone(), b.clone()]);
        // A drill that ran long: the next one is an interval after it ended.
        s.restart(&a, t0 + ms(450));
        assert!(s.due(t0 + ms(500), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(550), &dbs), vec![a.clone()]);
        // A database opened later gets its own schedule; one closed is forgotten.
        dbs.push((PathBuf::from("/d.db"), Some(ms(50))));
        dbs.remove(0);
        assert!(s.due(t0 + ms(560), &dbs).is_empty());
        assert_eq!(s.idle(t0 + ms(560)), ms(40));
        assert_eq!(
            s.due(t0 + ms(610), &dbs),
            vec![b.clone(), PathBuf::from("/d.db")]
        );
        // Another interval for the same database starts its schedule over.
        dbs[0].1 = Some(ms(20));
        assert!(s.due(t0 + ms(620), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(640), &dbs), vec![b.clone()]);
        // Long intervals: the thread still wakes every MAX_DRILL_IDLE to see new databases.
        let mut s = DrillSchedule::default();
        assert_eq!(s.idle(t0), MAX_DRILL_IDLE);
        s.due(t0, &[(a, Some(Duration::from_secs(3600)))]);
        assert_eq!(s.idle(t0), MAX_DRILL_IDLE);
    }
}
