//! Planning a restore, from a listing to a chain: which LTX objects the replica holds (parsed
//! from key names), then the latest snapshot at or before the target and the shortest
//! contiguous chain of files after it, across levels. Pure: it must not touch the store or
//! the file system, and it refuses (rather than works around) a hole or a target no chain
//! ends at exactly.

use crate::error::{Error, RestoreFailure};
use crate::store::{keys, ObjectInfo};
use std::collections::{BTreeMap, BTreeSet};

/// One LTX object of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxObject {
    pub key: String,
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
    pub size: u64,
    /// When the store says the object was written (S3 LastModified, file mtime), in ms.
    pub modified_ms: u64,
}

/// Parses a listing into LTX objects, skipping anything else: only keys named as the
/// uploader and Litestream name them (`<prefix>/<level %04x>/<min>-<max>.ltx`, read by
/// [`keys::parse_s3_key`]), whatever their prefix ([`check_listing`] refuses several).
pub fn parse_listing(objects: &[ObjectInfo]) -> Vec<LtxObject> {
    let mut out: Vec<LtxObject> = objects
        .iter()
        .filter_map(|o| {
            let (level, min_txid, max_txid) =
                keys::parse_s3_key(keys::chain_prefix(&o.key), &o.key)?;
            Some(LtxObject {
                key: o.key.clone(),
                level,
                min_txid,
                max_txid,
                size: o.size,
                modified_ms: o.modified_ms,
            })
        })
        .collect();
    out.sort_by_key(|o| (o.max_txid, o.level, o.min_txid));
    out
}

/// Refuses a listing no replica can have: an object whose name says its first txid comes
/// after its last (Litestream never writes one; planning around it would be guesswork), or
/// the files of more than one replica (a URL pointing at a folder above several databases'
/// replicas lists them all, and a chain stitched from both is a state neither had). Each
/// error names what it found.
pub fn check_listing(objects: &[LtxObject]) -> Result<(), Error> {
    if let Some(o) = objects.iter().find(|o| o.min_txid > o.max_txid) {
        return Err(Error::Restore(RestoreFailure::Corrupt, format!(
            "the replica's object {} is named for txids {} to {}: its first txid is after its last, which no LTX file can be; refusing to plan a restore around it (remove it from the replica)",
            o.key, o.min_txid, o.max_txid
        )));
    }
    let prefixes: std::collections::BTreeSet<&str> =
        objects.iter().map(|o| keys::chain_prefix(&o.key)).collect();
    if prefixes.len() > 1 {
        let shown: Vec<String> = prefixes.iter().take(10).map(|p| format!("{p:?}")).collect();
        return Err(Error::Restore(RestoreFailure::NothingToRestore, format!(
            "the replica's listing holds the files of {} replicas, under {}{}: restoring them as one would make a database none of them was; give the URL of one of them",
            prefixes.len(),
            shown.join(", "),
            if prefixes.len() > shown.len() { ", …" } else { "" }
        )));
    }
    Ok(())
}

/// A reached state (its txid is the key of [`Reached`]): files applied to get there, their
/// bytes, and the index of the file that got there (`None` for the snapshot).
type State = (usize, u64, Option<usize>);
/// Every state reached from the snapshot, by txid.
type Reached = BTreeMap<u64, State>;

/// Chooses the files to apply for a target txid (`None` = latest): the newest snapshot at
/// or before it, then the chain with the fewest files (fewest bytes among those) from it to
/// the newest state at or before the target. A file starting at txid 1 is a snapshot
/// whatever its level: Litestream's first level-0 file and its compactions from txid 1 are.
/// A file may continue a state from before its first txid (a compacted file spanning a
/// snapshot, as Litestream's can): every page it holds is that page's latest version up to
/// its end, so applying all of it is right. A target txid no chain ends at exactly
/// (compaction merged it into a larger file) is an error naming the nearest restore points;
/// a listing [`check_listing`] refuses is an error too.
pub fn plan(objects: &[LtxObject], target: Option<u64>) -> Result<Vec<LtxObject>, Error> {
    check_listing(objects)?;
    let limit = target.unwrap_or(u64::MAX);
    let snapshot = latest_snapshot(objects, target)?;
    if let Some(t) = target {
        refuse_past_the_end(objects, t)?;
    }
    let start = snapshot.max_txid;
    let best = reach(objects, start, limit);
    // The newest state wanted must be reached: anything else is a hole, and restoring the
    // older state silently would hand back a database the user did not ask for.
    let wanted = objects
        .iter()
        .filter(|o| o.max_txid <= limit)
        .map(|o| o.max_txid)
        .max()
        .unwrap_or(start);
    if !best.contains_key(&wanted) {
        return Err(broken_chain(objects, &best, limit));
    }
    if let Some(t) = target {
        if wanted < t {
            return Err(not_a_restore_point(objects, t, wanted));
        }
    }
    let mut chain = walk_back(objects, &best, start, wanted);
    chain.push(snapshot.clone());
    chain.reverse();
    Ok(chain)
}

/// Every txid [`plan`] restores exactly: the states reached from the newest snapshot at or
/// before each. A replica whose old files are left to the bucket's lifecycle rules holds
/// files no chain reaches (their snapshot expired first, or a rule removed a file in the
/// middle); they are no restore points. (A chain from an older snapshot to a txid always
/// passes a state the newer one reaches, so the newest snapshot is the only one to try.)
pub fn restorable_txids(objects: &[LtxObject]) -> BTreeSet<u64> {
    let mut snapshots: Vec<u64> = objects
        .iter()
        .filter(|o| o.min_txid == 1)
        .map(|o| o.max_txid)
        .collect();
    snapshots.sort_unstable();
    snapshots.dedup();
    let mut out = BTreeSet::new();
    for (i, &start) in snapshots.iter().enumerate() {
        let limit = snapshots.get(i + 1).map_or(u64::MAX, |next| next - 1);
        out.extend(reach(objects, start, limit).into_keys());
    }
    out
}

/// The newest file starting at txid 1 at or before the target (a snapshot level file wins
/// a tie).
fn latest_snapshot(objects: &[LtxObject], target: Option<u64>) -> Result<&LtxObject, Error> {
    let limit = target.unwrap_or(u64::MAX);
    objects
        .iter()
        .filter(|o| o.min_txid == 1 && o.max_txid <= limit)
        .max_by_key(|o| (o.max_txid, o.level == keys::SNAPSHOT_LEVEL))
        .ok_or_else(|| match target {
            _ if objects.is_empty() => Error::Restore(
                RestoreFailure::NothingToRestore,
                "the replica holds no LTX files".into(),
            ),
            Some(t) => Error::Restore(
                RestoreFailure::NothingToRestore,
                format!(
                    "no snapshot (a file starting at txid 1) at or before txid {t} in the replica"
                ),
            ),
            None => Error::Restore(
                RestoreFailure::NothingToRestore,
                "the replica holds no snapshot".into(),
            ),
        })
}

fn refuse_past_the_end(objects: &[LtxObject], t: u64) -> Result<(), Error> {
    if objects.iter().all(|o| o.max_txid < t) {
        let latest = objects.iter().map(|o| o.max_txid).max().unwrap_or(0);
        return Err(Error::Restore(
            RestoreFailure::NothingToRestore,
            format!("txid {t} is past the end of the replica (latest txid {latest})"),
        ));
    }
    Ok(())
}

/// The best reached state `o` can continue from (the first of the fewest files, then
/// bytes), with its txid.
fn continued_from(best: &Reached, o: &LtxObject, start: u64) -> Option<(u64, State)> {
    let from = o.min_txid.saturating_sub(1).max(start);
    best.range(from..o.max_txid)
        .min_by_key(|(_, (files, bytes, _))| (*files, *bytes))
        .map(|(k, v)| (*k, *v))
}

/// Every state reachable from the snapshot's `start` up to `limit`, each by its cheapest
/// chain. Taking files in order of their last txid settles every state a file can continue
/// from before it is used.
fn reach(objects: &[LtxObject], start: u64, limit: u64) -> Reached {
    let mut best = Reached::new();
    best.insert(start, (0, 0, None));
    let mut order: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].max_txid > start && objects[i].max_txid <= limit)
        .collect();
    order.sort_by_key(|&i| (objects[i].max_txid, objects[i].min_txid));
    for i in order {
        let o = &objects[i];
        let Some((_, (files, bytes, _))) = continued_from(&best, o, start) else {
            continue;
        };
        // Sizes are what the bucket lists: any u64.
        let cand = (files + 1, bytes.saturating_add(o.size), Some(i));
        let slot = best.entry(o.max_txid).or_insert(cand);
        if (cand.0, cand.1) < (slot.0, slot.1) {
            *slot = cand;
        }
    }
    best
}

/// The hole after the newest reached state, naming the next file there is.
fn broken_chain(objects: &[LtxObject], best: &Reached, limit: u64) -> Error {
    let reached = *best.keys().next_back().expect("the start is reached");
    let after = objects
        .iter()
        .filter(|o| o.min_txid > reached + 1 && o.max_txid <= limit)
        .min_by_key(|o| o.min_txid)
        .map(|o| o.key.clone())
        .unwrap_or_default();
    Error::Restore(RestoreFailure::Corrupt, format!(
        "the replica's chain is broken: no file starts at txid {0} (no {0:016x}-*.ltx at any level; the next file is {after}); refusing to restore an older state",
        reached + 1,
    ))
}

/// Compaction merged the files that ended at `t`: never restore another state.
fn not_a_restore_point(objects: &[LtxObject], t: u64, wanted: u64) -> Error {
    let after = objects
        .iter()
        .filter(|o| o.max_txid > t)
        .map(|o| o.max_txid)
        .min()
        .unwrap_or(t);
    Error::Restore(RestoreFailure::NothingToRestore, format!(
        "txid {t} is not a restore point of the replica (its files were compacted); the nearest are txids {wanted} and {after}"
    ))
}

/// The files that reach `wanted`, newest first, back to (not including) the snapshot.
fn walk_back(objects: &[LtxObject], best: &Reached, start: u64, wanted: u64) -> Vec<LtxObject> {
    let mut chain = Vec::new();
    let mut at = wanted;
    while let Some(&(_, _, Some(i))) = best.get(&at) {
        chain.push(objects[i].clone());
        // The state this file continued from: the best reached state it could follow.
        at = continued_from(best, &objects[i], start)
            .expect("a file is only taken after a state it continues")
            .0;
    }
    chain
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::restore) fn obj(level: u8, min: u64, max: u64) -> LtxObject {
        LtxObject {
            key: keys::s3_key("db", level, min, max),
            level,
            min_txid: min,
            max_txid: max,
            size: 1,
            modified_ms: 0,
        }
    }

    /// (level, max txid) of each planned file.
    fn planned(objs: &[LtxObject], target: Option<u64>) -> Vec<(u8, u64)> {
        plan(objs, target)
            .unwrap()
            .iter()
            .map(|o| (o.level, o.max_txid))
            .collect()
    }

    #[test]
    fn plans_latest_snapshot_then_contiguous_chain() {
        let objs = vec![
            obj(9, 1, 1),
            obj(0, 2, 2),
            obj(0, 3, 3),
            obj(9, 1, 3),
            obj(0, 4, 4),
            obj(0, 5, 5),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 3), (0, 4), (0, 5)]);
        assert_eq!(planned(&objs, Some(2)), vec![(9, 1), (0, 2)]);
    }

    #[test]
    fn prefers_compacted_files_and_stops_at_the_target() {
        let objs = vec![
            obj(9, 1, 1),
            obj(0, 2, 2),
            obj(1, 2, 4),
            obj(0, 3, 3),
            obj(0, 4, 4),
            obj(0, 5, 5),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 1), (1, 4), (0, 5)]);
        assert_eq!(planned(&objs, Some(3)), vec![(9, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn any_file_from_txid_1_is_a_snapshot_as_litestream_writes_them() {
        let objs = vec![
            obj(0, 1, 1),
            obj(0, 2, 2),
            obj(1, 1, 2),
            obj(0, 3, 3),
            obj(9, 1, 3),
            obj(0, 4, 4),
        ];
        let plan_of = |t| -> Vec<(u8, u64, u64)> {
            plan(&objs, t)
                .unwrap()
                .iter()
                .map(|o| (o.level, o.min_txid, o.max_txid))
                .collect()
        };
        assert_eq!(plan_of(Some(1)), vec![(0, 1, 1)]);
        assert_eq!(plan_of(Some(2)), vec![(1, 1, 2)]);
        assert_eq!(plan_of(None), vec![(9, 1, 3), (0, 4, 4)]);
    }

    #[test]
    fn continues_through_compacted_files_that_straddle_a_snapshot() {
        // Snapshot 1-5 was taken inside the range of level-1 file 4-7.
        let objs = vec![
            obj(9, 1, 1),
            obj(1, 2, 3),
            obj(1, 4, 7),
            obj(9, 1, 5),
            obj(0, 8, 8),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 5), (1, 7), (0, 8)]);
        assert_eq!(planned(&objs, Some(5)), vec![(9, 5)]);
        let err = plan(&objs, Some(6)).unwrap_err().to_string();
        assert!(
            err.contains("txid 6 is not a restore point") && err.contains("5 and 7"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_broken_chain_naming_the_gap() {
        let objs = vec![obj(9, 1, 1), obj(0, 2, 2), obj(0, 4, 4)];
        let err = plan(&objs, None).unwrap_err().to_string();
        assert!(err.contains("no file starts at txid 3"), "{err}");
        assert!(err.contains(&obj(0, 4, 4).key), "{err}");
        assert!(plan(&objs, Some(2)).is_ok());
    }

    #[test]
    fn refuses_without_snapshot_or_past_the_end() {
        let cases = [
            (plan(&[], None), "no LTX files"),
            (plan(&[obj(0, 2, 2)], None), "no snapshot"),
            (plan(&[obj(9, 1, 1)], Some(7)), "past the end"),
        ];
        for (planned, says) in cases {
            let err = planned.unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            // Nothing to restore is not damage: SQLITE_ERROR, not SQLITE_CORRUPT.
            assert!(
                matches!(err, Error::Restore(RestoreFailure::NothingToRestore, _)),
                "{err:?}"
            );
        }
    }

    /// Which failures are damaged content (SQLITE_CORRUPT) and which are not.
    #[test]
    fn a_gap_or_an_impossible_name_is_corrupt_a_compacted_point_is_not() {
        let kind = |objs: &[LtxObject], t| match plan(objs, t).unwrap_err() {
            Error::Restore(kind, _) => kind,
            other => panic!("{other:?}"),
        };
        let gap = [obj(9, 1, 1), obj(0, 2, 2), obj(0, 4, 4)];
        assert_eq!(kind(&gap, None), RestoreFailure::Corrupt);
        let backwards = [obj(9, 1, 1), obj(0, 3, 2)];
        assert_eq!(kind(&backwards, None), RestoreFailure::Corrupt);
        let compacted = [obj(9, 1, 5), obj(1, 4, 7)];
        assert_eq!(kind(&compacted, Some(6)), RestoreFailure::NothingToRestore);
    }

    #[test]
    fn refuses_a_name_whose_first_txid_is_after_its_last_naming_it() {
        for target in [None, Some(2), Some(5)] {
            let objs = vec![obj(9, 1, 1), obj(0, 2, 2), obj(0, 5, 3), obj(0, 3, 5)];
            let err = plan(&objs, target).unwrap_err().to_string();
            assert!(err.contains(&obj(0, 5, 3).key), "{target:?}: {err}");
            assert!(err.contains("first txid is after its last"), "{err}");
        }
    }

    #[test]
    fn refuses_a_listing_of_several_replicas_naming_their_prefixes() {
        let named = |prefix: &str, level, min, max| LtxObject {
            key: keys::s3_key(prefix, level, min, max),
            ..obj(level, min, max)
        };
        let objs = vec![
            named("f/a.db", 9, 1, 1),
            named("f/a.db", 0, 2, 2),
            named("f/b.db", 9, 1, 1),
            named("f/b.db", 0, 2, 2),
        ];
        let err = plan(&objs, None).unwrap_err().to_string();
        assert!(
            err.contains("\"f/a.db\"") && err.contains("\"f/b.db\"") && err.contains("2 replicas"),
            "{err}"
        );
        // A replica's files and a stray at its root are two prefixes too.
        let mut stray = objs[..2].to_vec();
        stray.push(named("f", 0, 3, 3));
        assert!(plan(&stray, None).is_err());
        assert_eq!(plan(&objs[..2], None).unwrap().len(), 2);
    }

    #[test]
    fn a_key_whose_level_is_not_four_hex_digits_is_not_an_ltx_object() {
        // Found by fuzz/fuzz_targets/restore_plan.rs: `db/0/…ltx` was planned as a level-0
        // file, although neither the uploader nor Litestream reads (or writes) such a name.
        let name = keys::ltx_filename(1, 1);
        let listed = |key: String| ObjectInfo {
            key,
            size: 1,
            modified_ms: 0,
        };
        for level in ["0", "9", "+009", "00009", "009", "000g", "0x09", ""] {
            let objects = parse_listing(&[listed(format!("db/{level}/{name}"))]);
            assert_eq!(objects, vec![], "level {level:?}");
        }
        let objects = parse_listing(&[listed(format!("db/0009/{name}"))]);
        assert_eq!(objects.len(), 1);
        assert_eq!((objects[0].level, objects[0].max_txid), (9, 1));
    }

    #[test]
    fn listed_sizes_near_the_largest_do_not_overflow_the_planner() {
        // Found by fuzz/fuzz_targets/restore_plan.rs: the bytes of a chain were summed
        // unchecked, so sizes a bucket lists (any u64) overflowed.
        let huge = |level, min, max| LtxObject {
            size: u64::MAX,
            ..obj(level, min, max)
        };
        let objs = vec![huge(9, 1, 1), huge(0, 2, 2), huge(0, 3, 3), obj(1, 2, 3)];
        assert_eq!(planned(&objs, None), vec![(9, 1), (1, 3)]);
        let objs = vec![huge(9, 1, 1), huge(0, 2, 2), huge(0, 3, 3)];
        assert_eq!(planned(&objs, None), vec![(9, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn plans_the_fewest_files_not_the_greedy_longest_step() {
        // Greedy "reach furthest" takes 2-10, then needs 11-15 and 16-20: three files.
        let objs = vec![
            obj(9, 1, 1),
            obj(1, 2, 10),
            obj(0, 2, 5),
            obj(1, 6, 20),
            obj(0, 11, 15),
            obj(0, 16, 20),
        ];
        assert_eq!(planned(&objs, None), vec![(9, 1), (0, 5), (1, 20)]);
    }

    /// Every txid [`restorable_txids`] offers plans, to exactly that txid; every other
    /// file's end is refused.
    fn check_points(objs: &[LtxObject], want: &[u64]) {
        let points = restorable_txids(objs);
        assert_eq!(points.iter().copied().collect::<Vec<_>>(), want);
        for o in objs {
            match plan(objs, Some(o.max_txid)) {
                Ok(chain) => {
                    assert!(points.contains(&o.max_txid), "{} planned", o.max_txid);
                    assert_eq!(chain.last().unwrap().max_txid, o.max_txid);
                    assert_eq!(chain[0].min_txid, 1);
                }
                Err(e) => assert!(!points.contains(&o.max_txid), "{}: {e}", o.max_txid),
            }
        }
    }

    #[test]
    fn files_a_bucket_lifecycle_has_not_expired_yet_still_plan_the_shortest_chain() {
        // Nothing deleted: every snapshot, every level-0 file (also those in level 1 and
        // 2 already), and level-1 files that end before the newest snapshot.
        let mut objs = vec![obj(9, 1, 1), obj(9, 1, 5), obj(9, 1, 10), obj(9, 1, 15)];
        objs.extend((2..=17).map(|t| obj(0, t, t)));
        objs.extend([obj(1, 2, 5), obj(1, 6, 10), obj(1, 11, 14), obj(2, 2, 10)]);
        assert_eq!(planned(&objs, None), vec![(9, 15), (0, 16), (0, 17)]);
        assert_eq!(planned(&objs, Some(7)), vec![(9, 5), (0, 6), (0, 7)]);
        assert_eq!(planned(&objs, Some(10)), vec![(9, 10)]);
        assert_eq!(planned(&objs, Some(14)), vec![(9, 10), (1, 14)]);
        check_points(&objs, &(1..=17).collect::<Vec<_>>());
    }

    #[test]
    fn files_whose_snapshot_expired_by_age_are_no_restore_points() {
        // Expiry by age removed snapshot 1-1 and the oldest level-0 files; those written
        // after it and before snapshot 1-10 remain without a snapshot to start from.
        let mut objs: Vec<LtxObject> = (5..=9).map(|t| obj(0, t, t)).collect();
        objs.extend([obj(1, 6, 9), obj(9, 1, 10), obj(0, 11, 11), obj(0, 12, 12)]);
        objs.push(obj(1, 11, 12));
        check_points(&objs, &[10, 11, 12]);
        let err = plan(&objs, Some(7)).unwrap_err().to_string();
        assert!(err.contains("no snapshot"), "{err}");
        assert_eq!(planned(&objs, None), vec![(9, 10), (1, 12)]);
        // Everything but the newest level-0 file expired: nothing to restore, and no point
        // is offered.
        check_points(&[obj(0, 12, 12)], &[]);
    }

    #[test]
    fn a_file_missing_in_the_middle_ends_the_points_until_the_next_snapshot() {
        // Level-0 file 4 is gone: 5 follows no state a chain reaches, and the points
        // start again at snapshot 1-6, which level-1 file 5-8 (straddling it) continues.
        let objs = vec![
            obj(9, 1, 1),
            obj(0, 2, 2),
            obj(0, 3, 3),
            obj(0, 5, 5),
            obj(0, 6, 6),
            obj(9, 1, 6),
            obj(1, 5, 8),
            obj(0, 9, 9),
        ];
        check_points(&objs, &[1, 2, 3, 6, 8, 9]);
        let err = plan(&objs, Some(5)).unwrap_err().to_string();
        assert!(err.contains("no file starts at txid 4"), "{err}");
        assert_eq!(planned(&objs, None), vec![(9, 6), (1, 8), (0, 9)]);
    }

    #[test]
    fn goes_around_a_dead_end_through_another_level() {
        // 2-10 leads nowhere (11 is missing), but 2-3 and 4-12 reach the end.
        let objs = vec![obj(9, 1, 1), obj(1, 2, 10), obj(0, 2, 3), obj(1, 4, 12)];
        assert_eq!(planned(&objs, None), vec![(9, 1), (0, 3), (1, 12)]);
    }
}
