//! The replica's lifecycle as pure functions: when snapshots and compactions are due, which
//! files compact into which level, which files retention deletes, and the LTX merge that a
//! compaction writes. It takes the known files, the time and the settings and returns data;
//! it must do no I/O beyond the readers and writer it is handed, and read no clock.
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

use crate::error::Error;
use crate::ltx::{self, Decoder, Encoder, Header, LtxError, Trailer};
use std::io::{Read, Write};
use std::time::Duration;

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
            Some(run) if run.inputs.last().unwrap().id.max_txid + 1 == f.id.min_txid => {
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
/// replica, now at `txid`, has moved on since.
pub fn snapshot_due(
    cfg: &Lifecycle,
    now: u64,
    last_snapshot_at: u64,
    last_snapshot_txid: u64,
    txid: u64,
) -> bool {
    last_snapshot_txid < txid
        && is_due(
            now,
            cfg.snapshot_interval.as_millis() as u64,
            last_snapshot_at,
        )
}

/// The files retention deletes at `now`; see the module docs for the rules.
pub fn plan_retention(files: &[KnownFile], cfg: &Lifecycle, now: u64) -> Vec<FileId> {
    let snap_level = crate::store::keys::SNAPSHOT_LEVEL;
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

/// Merges contiguous LTX files into one (latest page version wins), streaming: it holds
/// one page per input. Every input's file checksum is verified (a corrupt input fails the
/// merge before the output can be used), as is their checksum chain when they carry
/// checksums. A page past the size of a later input that no later input writes was cut off
/// and grown back as zeros, so it is written as zeros (ltx's compactor drops it and would
/// leave an older version in place). Returns the writer and the output's header and trailer.
pub fn merge<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
) -> Result<(W, Header, Trailer), Error> {
    let bad = |m: String| Error::Ltx(LtxError::BadHeader(m));
    let Some(first) = inputs.first().map(|d| *d.header()) else {
        return Err(bad("a merge needs at least one input".into()));
    };
    let last = *inputs.last().unwrap().header();
    for pair in inputs.windows(2) {
        let (a, b) = (pair[0].header(), pair[1].header());
        if a.page_size != b.page_size {
            return Err(bad(format!(
                "inputs have different page sizes: {} and {}",
                a.page_size, b.page_size
            )));
        }
        if a.max_txid + 1 != b.min_txid {
            return Err(bad(format!(
                "inputs are not contiguous: {}-{} then {}-{}",
                a.min_txid, a.max_txid, b.min_txid, b.max_txid
            )));
        }
        if a.no_checksum() != b.no_checksum() {
            return Err(bad("inputs disagree on the no-checksum flag".into()));
        }
    }
    let commit = last.commit;
    let header = Header {
        flags: first.flags,
        page_size: first.page_size,
        commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp_ms: last.timestamp_ms,
        pre_apply_checksum: first.pre_apply_checksum,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    };
    // suffix_min[i] = the smallest size among inputs i.. (u32::MAX past the end).
    let n = inputs.len();
    let mut suffix_min = vec![u32::MAX; n + 1];
    for i in (0..n).rev() {
        suffix_min[i] = suffix_min[i + 1].min(inputs[i].header().commit);
    }
    let ps = first.page_size as usize;
    let lock = ltx::lock_pgno(first.page_size);
    let zero = vec![0u8; ps];
    let mut enc = Encoder::new(out, header)?;
    let pre_checksums: Vec<u64> = inputs
        .iter()
        .map(|d| d.header().pre_apply_checksum)
        .collect();
    let mut decs = inputs;
    let mut heads: Vec<Option<u32>> = Vec::with_capacity(n);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::with_capacity(ps); n];
    for (d, b) in decs.iter_mut().zip(bufs.iter_mut()) {
        heads.push(d.next_page(b)?);
    }
    // Pages no input writes but that must read as zeros start past the smallest size.
    let mut zero_cursor = suffix_min[0].saturating_add(1);
    loop {
        let written = heads.iter().flatten().min().copied();
        let zero_next = (zero_cursor <= commit).then_some(zero_cursor);
        let pgno = match (written, zero_next) {
            (None, None) => break,
            (Some(w), Some(z)) => w.min(z),
            (Some(w), None) => w,
            (None, Some(z)) => z,
        };
        // The latest input writing this page, if any; every input at it moves on.
        let latest = heads.iter().rposition(|h| *h == Some(pgno));
        let zeroed = suffix_min[latest.map_or(0, |k| k + 1)] < pgno;
        if pgno <= commit && pgno != lock {
            match latest {
                Some(k) if !zeroed => enc.encode_page(pgno, &bufs[k])?,
                _ if zeroed => enc.encode_page(pgno, &zero)?,
                _ => {}
            }
        }
        for ((head, dec), buf) in heads.iter_mut().zip(decs.iter_mut()).zip(bufs.iter_mut()) {
            if *head == Some(pgno) {
                *head = dec.next_page(buf)?;
            }
        }
        if zero_cursor <= pgno {
            zero_cursor = pgno + 1;
        }
    }
    let mut trailers = Vec::with_capacity(n);
    for d in decs {
        trailers.push(d.finish()?);
    }
    if !first.no_checksum() {
        for (i, t) in trailers.iter().enumerate().take(n - 1) {
            if pre_checksums[i + 1] != t.post_apply_checksum {
                return Err(bad(format!(
                    "input {} does not start from the state input {i} ends in (pre-apply {:016x}, post-apply {:016x})",
                    i + 1,
                    pre_checksums[i + 1],
                    t.post_apply_checksum
                )));
            }
        }
    }
    let post = trailers.last().unwrap().post_apply_checksum;
    let (w, trailer) = enc.finish(post)?;
    Ok((w, header, trailer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{decode_all, FLAG_NO_CHECKSUM};

    const PS: u32 = 512;

    /// An LTX file of `pages` (pgno, fill byte) with the database at `commit` pages.
    fn ltx_file(min: u64, max: u64, commit: u32, pages: &[(u32, u8)], ts: u64) -> Vec<u8> {
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: PS,
            commit,
            min_txid: min,
            max_txid: max,
            timestamp_ms: ts,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        };
        let mut enc = Encoder::new(Vec::new(), header).unwrap();
        for &(pgno, fill) in pages {
            enc.encode_page(pgno, &vec![fill; PS as usize]).unwrap();
        }
        enc.finish(0).unwrap().0
    }

    /// A database as restore builds it: pages by number, grown with zeros, cut at commit.
    fn apply(db: &mut Vec<u8>, file: &[u8]) {
        let (h, pages, _) = decode_all(file).unwrap();
        if db.len() < h.commit as usize {
            db.resize(h.commit as usize, 0);
        }
        for (pgno, data) in pages {
            db[pgno as usize - 1] = data[0];
        }
        db.truncate(h.commit as usize);
    }

    fn merged(files: &[&Vec<u8>]) -> Result<Vec<u8>, Error> {
        let decs = files
            .iter()
            .map(|f| Decoder::new(&f[..]).unwrap())
            .collect();
        merge(decs, Vec::new()).map(|(w, _, _)| w)
    }

    #[test]
    fn merge_keeps_the_latest_page_versions_and_the_last_header_fields() {
        let a = ltx_file(2, 2, 4, &[(1, 1), (3, 1)], 100);
        let b = ltx_file(3, 5, 5, &[(3, 2), (5, 2)], 200);
        let c = ltx_file(6, 6, 5, &[(1, 3)], 300);
        let out = merged(&[&a, &b, &c]).unwrap();
        let (h, pages, _) = decode_all(&out).unwrap();
        assert_eq!(
            (h.min_txid, h.max_txid, h.commit, h.timestamp_ms),
            (2, 6, 5, 300)
        );
        assert!(h.no_checksum() && h.wal_offset == 0);
        let got: Vec<(u32, u8)> = pages.iter().map(|(p, d)| (*p, d[0])).collect();
        assert_eq!(got, vec![(1, 3), (3, 2), (5, 2)]);
        // Applied over any state inside its range, it gives the state after its last input.
        let base = vec![9u8; 4];
        let mut one_by_one = base.clone();
        for f in [&a, &b, &c] {
            apply(&mut one_by_one, f);
        }
        let mut at_once = base.clone();
        apply(&mut at_once, &out);
        assert_eq!(at_once, one_by_one);
        let mut from_middle = base;
        apply(&mut from_middle, &a);
        apply(&mut from_middle, &b);
        apply(&mut from_middle, &out);
        assert_eq!(from_middle, one_by_one);
    }

    #[test]
    fn merge_writes_zeros_for_pages_cut_off_then_grown_back() {
        // 6 pages; shrink to 2; grow to 5 writing only page 5: pages 3 and 4 read as zeros.
        let shrink = ltx_file(2, 2, 2, &[(1, 1)], 1);
        let grow = ltx_file(3, 3, 5, &[(5, 7)], 2);
        let out = merged(&[&shrink, &grow]).unwrap();
        let base = vec![9u8; 6];
        let mut expected = base.clone();
        apply(&mut expected, &shrink);
        apply(&mut expected, &grow);
        assert_eq!(expected, vec![1, 9, 0, 0, 7]);
        let mut got = base;
        apply(&mut got, &out);
        assert_eq!(got, expected);
    }

    #[test]
    fn merge_from_a_snapshot_is_a_snapshot() {
        let snap = ltx_file(1, 3, 3, &[(1, 1), (2, 1), (3, 1)], 1);
        let shrink = ltx_file(4, 4, 1, &[], 2);
        let grow = ltx_file(5, 5, 4, &[(4, 4)], 3);
        let out = merged(&[&snap, &shrink, &grow]).unwrap();
        let (h, pages, _) = decode_all(&out).unwrap();
        assert!(h.is_snapshot());
        let got: Vec<(u32, u8)> = pages.iter().map(|(p, d)| (*p, d[0])).collect();
        assert_eq!(got, vec![(1, 1), (2, 0), (3, 0), (4, 4)]);
    }

    #[test]
    fn merge_refuses_gaps_and_corrupt_inputs() {
        let a = ltx_file(2, 2, 2, &[(1, 1)], 1);
        let c = ltx_file(4, 4, 2, &[(2, 1)], 1);
        let err = merged(&[&a, &c]).unwrap_err().to_string();
        assert!(err.contains("not contiguous"), "{err}");
        let mut b = ltx_file(3, 3, 2, &[(2, 5)], 1);
        let i = ltx::HEADER_SIZE + 12;
        b[i] ^= 0xff; // inside the compressed page
        assert!(merged(&[&a, &b]).is_err());
        let mut b = ltx_file(3, 3, 2, &[(2, 5)], 1);
        let n = b.len();
        b[n - 1] ^= 1; // the file checksum
        let err = merged(&[&a, &b]).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

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
    fn windows_are_epoch_aligned() {
        assert_eq!(window_start(95_000, 30_000), 90_000);
        assert!(is_due(90_000, 30_000, 89_999));
        assert!(!is_due(119_999, 30_000, 90_000));
        let cfg = Lifecycle::default();
        assert!(!snapshot_due(&cfg, 86_400_000 - 1, 10, 1, 5));
        assert!(snapshot_due(&cfg, 86_400_000, 10, 1, 5));
        assert!(!snapshot_due(&cfg, 86_400_000, 10, 5, 5), "nothing new");
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
