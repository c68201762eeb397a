//! The replica's lifecycle as pure functions: when snapshots and compactions are due, which
//! files compact into which level and which files retention deletes (the LTX merge a
//! compaction writes is `ltx::merge`). It takes the known files, the time and the settings and returns data;
//! it must do no I/O and read no clock.
//!
//! Litestream v0.5's layout and defaults: level 0 holds one file per sync; level `n` (1..=8)
//! is compacted from level `n-1` at every multiple of its interval (L1 30 s, L2 5 min, L3
//! 1 h, aligned to the epoch as Litestream's `Truncate`); level 9 holds snapshots, taken
//! every `snapshot.interval` (24 h). A compacted file is named `<first min>-<last max>`,
//! carries the last input's timestamp and commit, the first input's pre-apply checksum and
//! the last one's post-apply checksum, and no WAL fields.
//!
//! Retention keeps every restore point inside the window `[now - snapshot.retention, now]`:
//! the newest snapshot taken at or before the window start (the *base*), every later
//! snapshot, and every file of levels 0–8 that ends after the base; older ones go (as in
//! Litestream, the newest file of each level always stays, so that a compactor starting
//! from a listing knows where its level stands). Level-0 files also go once they are in a
//! level-1 file and older than `l0-retention` (5 min): restore points are then every sync
//! for the last `l0-retention`, and every level-1 boundary (30 s) inside the window.
//!
//! Who removes what retention lets go is [`Expiry`]: the uploader (deletes), or the
//! bucket's own lifecycle rules by object age (`retention: bucket-lifecycle`), for
//! credentials that cannot delete. In that mode a scheduled snapshot is due at every
//! snapshot boundary even when nothing changed: a new snapshot keeps the newest one younger
//! than the snapshot interval, so an age rule never expires the only one.

use std::time::Duration;

/// The level that holds snapshots (Litestream's level 9).
pub const SNAPSHOT_LEVEL: u8 = 9;

/// Snapshot, compaction and retention settings (Litestream's keys and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// Intervals of levels 1, 2, … (`levels:` in litestream.yml, level 0 has none).
    pub levels: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    /// How long level-0 files stay after they are compacted into level 1; zero keeps them
    /// until the snapshot retention removes them.
    pub l0_retention: Duration,
    pub expiry: Expiry,
}

/// Who removes the files retention lets go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// The uploader deletes them (Litestream's way).
    #[default]
    Uploader,
    /// The bucket's lifecycle rules delete objects by age; the uploader never sends a
    /// DELETE, and only forgets the files retention lets go.
    BucketLifecycle,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            levels: vec![
                Duration::from_secs(30),
                Duration::from_secs(5 * 60),
                Duration::from_secs(3600),
            ],
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(5 * 60),
            expiry: Expiry::Uploader,
        }
    }
}

impl Lifecycle {
    /// The highest compaction level (0 when there are no compaction levels).
    pub fn max_level(&self) -> u8 {
        self.levels.len() as u8
    }

    /// The interval of compaction level `level` (1-based).
    pub fn interval_ms(&self, level: u8) -> u64 {
        self.levels[level as usize - 1].as_millis() as u64
    }
}

/// One LTX file of the replica as the uploader knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownFile {
    pub id: FileId,
    /// The LTX header timestamp (ms since the epoch): the commit time of its last
    /// transaction, or when a snapshot was taken.
    pub timestamp_ms: u64,
    pub size: u64,
}

/// The start of the window of length `interval_ms` that holds `now` (epoch-aligned).
pub fn window_start(now: u64, interval_ms: u64) -> u64 {
    now - now % interval_ms.max(1)
}

/// Whether a job with `interval_ms` whose last run was at `last_run` is due at `now`: a
/// window boundary has passed since.
pub fn is_due(now: u64, interval_ms: u64, last_run: u64) -> bool {
    window_start(now, interval_ms) > last_run
}

/// A compaction: `inputs` (contiguous, ascending, of level `level - 1`) merge into one file
/// of `level` named `min_txid-max_txid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub level: u8,
    pub inputs: Vec<KnownFile>,
}

impl Compaction {
    pub fn output(&self) -> FileId {
        FileId {
            level: self.level,
            min_txid: self.inputs[0].id.min_txid,
            max_txid: self.inputs.last().unwrap().id.max_txid,
        }
    }
}

/// Compactions into `level`: the files of `level - 1` past the newest file of `level`,
/// split into contiguous runs (a forced snapshot leaves a hole in level 0 that its
/// snapshot covers; files are never merged across it).
pub fn plan_compactions(files: &[KnownFile], level: u8) -> Vec<Compaction> {
    assert!(level >= 1, "level 0 is written by uploads, not compactions");
    let done_through = files
        .iter()
        .filter(|f| f.id.level == level)
        .map(|f| f.id.max_txid)
        .max()
        .unwrap_or(0);
    let mut sources: Vec<KnownFile> = files
        .iter()
        .filter(|f| f.id.level == level - 1 && f.id.min_txid > done_through)
        .copied()
        .collect();
    sources.sort_by_key(|f| f.id.min_txid);
    let mut runs: Vec<Compaction> = Vec::new();
    for f in sources {
        match runs.last_mut() {
            Some(run)
                if run.inputs.last().unwrap().id.max_txid.checked_add(1) == Some(f.id.min_txid) =>
            {
                run.inputs.push(f)
            }
            _ => runs.push(Compaction {
                level,
                inputs: vec![f],
            }),
        }
    }
    runs
}

/// Whether a scheduled snapshot is due: a snapshot-interval boundary has passed since the
/// last snapshot (taken at `last_snapshot_at`, of txid `last_snapshot_txid`), and the
/// replica, now at `txid`, has moved on since, or the bucket expires objects by age (see
/// [`Expiry::BucketLifecycle`]).
pub fn snapshot_due(
    cfg: &Lifecycle,
    now: u64,
    last_snapshot_at: u64,
    last_snapshot_txid: u64,
    txid: u64,
) -> bool {
    (last_snapshot_txid < txid || cfg.expiry == Expiry::BucketLifecycle)
        && is_due(
            now,
            cfg.snapshot_interval.as_millis() as u64,
            last_snapshot_at,
        )
}

/// The files retention deletes at `now`; see the module docs for the rules.
pub fn plan_retention(files: &[KnownFile], cfg: &Lifecycle, now: u64) -> Vec<FileId> {
    let snap_level = SNAPSHOT_LEVEL;
    let mut doomed: Vec<FileId> = Vec::new();
    let window_start = now.saturating_sub(cfg.snapshot_retention.as_millis() as u64);
    let base = files
        .iter()
        .filter(|f| f.id.level == snap_level && f.timestamp_ms <= window_start)
        .max_by_key(|f| f.id.max_txid);
    if let Some(base) = base {
        for f in files {
            let gone = if f.id.level == snap_level {
                f.id.max_txid < base.id.max_txid
            } else {
                f.id.max_txid <= base.id.max_txid
            };
            if gone {
                doomed.push(f.id);
            }
        }
    }
    // Level 0: once in level 1 and older than l0-retention, oldest first, stopping at the
    // first one too young (as Litestream, so level 0 stays contiguous at its end).
    let l0_retention = cfg.l0_retention.as_millis() as u64;
    let l1_max = files
        .iter()
        .filter(|f| f.id.level == 1)
        .map(|f| f.id.max_txid)
        .max()
        .unwrap_or(0);
    if l0_retention > 0 && l1_max > 0 {
        let threshold = now.saturating_sub(l0_retention);
        let mut l0: Vec<&KnownFile> = files.iter().filter(|f| f.id.level == 0).collect();
        l0.sort_by_key(|f| f.id.min_txid);
        for f in l0 {
            if f.timestamp_ms > threshold || f.id.max_txid > l1_max {
                break;
            }
            doomed.push(f.id);
        }
    }
    // The newest file of each level stays.
    let mut newest: std::collections::BTreeMap<u8, u64> = std::collections::BTreeMap::new();
    for f in files {
        let m = newest.entry(f.id.level).or_insert(0);
        *m = (*m).max(f.id.max_txid);
    }
    doomed.retain(|id| newest.get(&id.level) != Some(&id.max_txid));
    doomed.sort();
    doomed.dedup();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    fn known(level: u8, min: u64, max: u64, ts: u64) -> KnownFile {
        KnownFile {
            id: FileId {
                level,
                min_txid: min,
                max_txid: max,
            },
            timestamp_ms: ts,
            size: 1,
        }
    }

    fn ranges(c: &[Compaction]) -> Vec<(u64, u64)> {
        c.iter()
            .map(|c| (c.output().min_txid, c.output().max_txid))
            .collect()
    }

    #[test]
    fn compactions_take_what_follows_the_level_and_split_at_holes() {
        let files = vec![
            known(9, 1, 1, 0),
            known(0, 2, 2, 0),
            known(0, 3, 3, 0),
            known(1, 2, 3, 0),
            known(0, 4, 4, 0),
            known(0, 5, 5, 0),
            // txid 6 is a forced snapshot: level 0 resumes at 7.
            known(9, 1, 6, 0),
            known(0, 7, 7, 0),
        ];
        assert_eq!(ranges(&plan_compactions(&files, 1)), vec![(4, 5), (7, 7)]);
        assert_eq!(ranges(&plan_compactions(&files, 2)), vec![(2, 3)]);
        assert!(plan_compactions(&files, 3).is_empty());
    }

    #[test]
    fn a_txid_at_u64_max_does_not_overflow() {
        // Names from the bucket: the last txid there is, then one that would continue it
        // if `max + 1` wrapped.
        let files = vec![
            known(9, 1, 1, 0),
            known(0, 2, u64::MAX, 0),
            known(0, u64::MAX, u64::MAX, 0),
        ];
        let plans = plan_compactions(&files, 1);
        assert_eq!(ranges(&plans), vec![(2, u64::MAX), (u64::MAX, u64::MAX)]);
    }

    #[test]
    fn windows_are_epoch_aligned() {
        assert_eq!(window_start(95_000, 30_000), 90_000);
        assert!(is_due(90_000, 30_000, 89_999));
        assert!(!is_due(119_999, 30_000, 90_000));
        let cfg = Lifecycle::default();
        assert!(!snapshot_due(&cfg, 86_400_000 - 1, 10, 1, 5));
        assert!(snapshot_due(&cfg, 86_400_000, 10, 1, 5));
        assert!(!snapshot_due(&cfg, 86_400_000, 10, 5, 5), "nothing new");
        let bucket = Lifecycle {
            expiry: Expiry::BucketLifecycle,
            ..Lifecycle::default()
        };
        assert!(
            snapshot_due(&bucket, 86_400_000, 10, 5, 5),
            "an age rule must not expire the only snapshot of an idle database"
        );
        assert!(!snapshot_due(&bucket, 86_400_000 - 1, 10, 5, 5));
    }

    #[test]
    fn retention_keeps_the_base_snapshot_and_all_after_it() {
        let h = 3_600_000;
        let cfg = Lifecycle::default();
        let now = 50 * h;
        let files = vec![
            known(9, 1, 1, 0),
            known(9, 1, 10, 20 * h), // newest at or before the window start (26 h): the base
            known(9, 1, 20, 40 * h),
            known(1, 2, 8, h),
            known(1, 9, 12, 21 * h), // straddles the base: stays
            known(1, 13, 25, 45 * h),
            known(2, 2, 10, 20 * h), // ends at the base: the base holds it
            known(2, 11, 25, 45 * h),
            known(3, 2, 25, 45 * h),
            known(0, 24, 24, now - 6 * 60_000), // in L1, older than 5 min
            known(0, 25, 25, now - 4 * 60_000), // too young
            known(0, 26, 26, now - 7 * 60_000), // not in L1 yet
        ];
        let doomed: Vec<(u8, u64, u64)> = plan_retention(&files, &cfg, now)
            .iter()
            .map(|id| (id.level, id.min_txid, id.max_txid))
            .collect();
        assert_eq!(doomed, vec![(0, 24, 24), (1, 2, 8), (2, 2, 10), (9, 1, 1)]);
        // No snapshot old enough yet: nothing but level 0 goes.
        let young: Vec<KnownFile> = files
            .iter()
            .map(|f| KnownFile {
                timestamp_ms: f.timestamp_ms.max(now - h),
                ..*f
            })
            .collect();
        assert_eq!(
            plan_retention(&young, &cfg, now),
            vec![FileId {
                level: 0,
                min_txid: 24,
                max_txid: 24
            }]
        );
        // The newest file of a level stays even when it is old.
        let lone = vec![known(9, 1, 5, 0), known(9, 1, 9, h), known(1, 2, 9, h)];
        assert_eq!(
            plan_retention(&lone, &cfg, now),
            vec![FileId {
                level: 9,
                min_txid: 1,
                max_txid: 5
            }]
        );
    }
}
