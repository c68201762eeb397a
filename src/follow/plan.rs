//! What a follower does next, from what it has and what the replica lists: nothing, apply
//! the level-0 files that continue its copy (as many as fit one batch), or take over the
//! newest state whole because those files are gone. Also the page-1 header a follower's
//! copy carries, and its state file. Pure: data in, data out.

use crate::restore::{Base, LtxObject};

/// The most bytes of LTX files one apply downloads and holds in memory: more waits for the
/// next batch, and a single file larger than this is taken over by a resync instead (which
/// streams through a temporary file).
pub const BATCH_BYTES: u64 = 64 << 20;

/// What the follower does after a listing of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing after `applied` is listed.
    UpToDate,
    /// These files continue the copy, in order: the first holds txid `applied + 1` and each
    /// the txid after the one before it.
    Apply(Vec<LtxObject>),
    /// No file continues the copy (retention removed them, or the replica started over):
    /// restore the newest state and take it over.
    Resync(String),
}

/// The level snapshots are stored at: whole databases, applied only when no other file
/// holds the next txid.
const SNAPSHOT_LEVEL: u8 = 9;

/// The most files one apply takes (a listing of many tiny objects must not make a batch of
/// thousands of requests).
pub const BATCH_FILES: usize = 256;

/// The next step for a copy at `applied`, given the replica's files (any level). A file
/// continues the copy when it holds the next txid: a level-0 file starts there, and a
/// compacted one may start earlier, since it carries the newest version, as of its last
/// txid, of every page its txids changed (what the copy already has of the earlier ones
/// is overwritten by the same or a newer version). Of those, the one reaching furthest is
/// taken; a snapshot (the whole database) only when nothing else holds the txid. A file
/// larger than one batch, no file at all, or a replica whose newest txid is behind the
/// copy (it started over) calls for a resync.
pub fn next(objects: &[LtxObject], applied: u64) -> Next {
    match newest(objects) {
        Some(n) if n < applied => {
            return Next::Resync(format!(
                "the replica's newest txid {n} is behind the copy's {applied}: the replica started over"
            ))
        }
        None if applied > 0 => return Next::Resync("the replica lists no file".into()),
        _ => {}
    }
    let mut newer: Vec<&LtxObject> = (objects.iter())
        .filter(|o| o.max_txid > applied && o.size > 0)
        .collect();
    if newer.is_empty() {
        return Next::UpToDate;
    }
    newer.sort_by_key(|o| o.min_txid);
    let reach = |o: &&LtxObject| (o.max_txid, std::cmp::Reverse(o.size));
    let (mut chain, mut want, mut bytes) = (Vec::new(), applied + 1, 0u64);
    let (mut seen, mut snapshot) = (0, None::<&LtxObject>);
    while chain.len() < BATCH_FILES {
        // Files are swept once by first txid: one passed over for reaching less far than
        // the one taken can hold no later txid; a snapshot may, so the best one is kept.
        let mut best = None::<&LtxObject>;
        while let Some(&o) = newer.get(seen).filter(|o| o.min_txid <= want) {
            seen += 1;
            let slot = if o.level == SNAPSHOT_LEVEL {
                &mut snapshot
            } else {
                &mut best
            };
            if o.max_txid >= want && slot.is_none_or(|b| reach(&o) > reach(&b)) {
                *slot = Some(o);
            }
        }
        let Some(o) = best.or(snapshot.filter(|s| s.max_txid >= want)) else {
            break;
        };
        if o.size > BATCH_BYTES && chain.is_empty() {
            return Next::Resync(format!(
                "{} holds {} bytes, more than one apply downloads ({BATCH_BYTES})",
                o.key, o.size
            ));
        }
        if bytes + o.size > BATCH_BYTES {
            break;
        }
        bytes += o.size;
        want = o.max_txid + 1;
        chain.push(o.clone());
    }
    if chain.is_empty() {
        return Next::Resync(format!(
            "no file of the replica holds txid {} (the copy is at {applied}; the oldest newer \
             file is {}): the files between are gone, or the replica started over",
            applied + 1,
            newer[0].key
        ));
    }
    Next::Apply(chain)
}

/// The newest txid the listed files reach, if any.
pub fn newest(objects: &[LtxObject]) -> Option<u64> {
    objects.iter().map(|o| o.max_txid).max()
}

/// Page 1's header as a follower's copy must carry it, after an apply left the writer's
/// there: rollback-journal mode (read and write versions 1: SQLite then needs no `-wal` or
/// `-shm`, and a reader's page cache is checked against the change counter at every
/// transaction), the change counter one past the copy's own before the apply (`prev`, so
/// every reader sees that the file changed), and the size in pages, marked valid.
pub fn follower_header(head: &mut [u8], prev: u32, commit: u32) {
    if head.len() < 100 {
        return;
    }
    head[18] = 1;
    head[19] = 1;
    let counter = prev.wrapping_add(1).to_be_bytes();
    head[24..28].copy_from_slice(&counter);
    head[28..32].copy_from_slice(&commit.to_be_bytes());
    head[92..96].copy_from_slice(&counter);
}

/// The change counter of a page-1 header (0 for a file too short to have one).
pub fn change_counter(head: &[u8]) -> u32 {
    head.get(24..28)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// What the follower's state file says: the txid its copy holds and the database it is
/// (`base`), and whether an apply was under way (then the copy may be torn, and is taken
/// over whole from the replica before anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowState {
    pub txid: u64,
    pub base: Base,
    pub applying: bool,
}

impl FollowState {
    pub fn encode(&self) -> String {
        format!(
            "libreplica-follow 1\ntxid {}\ncommit {}\npage_size {}\nlineage {:016x}\napplying {}\n",
            self.txid,
            self.base.commit,
            self.base.page_size,
            self.base.lineage,
            u8::from(self.applying)
        )
    }

    /// Parses what [`encode`](Self::encode) wrote; anything else is `None` (the copy is
    /// then taken over whole).
    pub fn decode(text: &str) -> Option<FollowState> {
        let mut lines = text.lines();
        if lines.next()? != "libreplica-follow 1" {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let line = lines.next()?;
            line.strip_prefix(name)?
                .strip_prefix(' ')
                .map(str::to_string)
        };
        let txid = field("txid")?.parse().ok()?;
        let commit = field("commit")?.parse().ok()?;
        let page_size = field("page_size")?.parse().ok()?;
        let lineage = u64::from_str_radix(&field("lineage")?, 16).ok()?;
        let applying = match field("applying")?.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(FollowState {
            txid,
            base: Base {
                commit,
                page_size,
                lineage,
            },
            applying,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(min: u64, max: u64, size: u64) -> LtxObject {
        at(0, min, max, size)
    }

    fn at(level: u8, min: u64, max: u64, size: u64) -> LtxObject {
        LtxObject {
            key: format!("p/{level:04x}/{min:016x}-{max:016x}.ltx"),
            level,
            min_txid: min,
            max_txid: max,
            size,
            modified_ms: 0,
        }
    }

    fn mins(n: &Next) -> Vec<u64> {
        match n {
            Next::Apply(c) => c.iter().map(|o| o.min_txid).collect(),
            other => panic!("expected an apply, got {other:?}"),
        }
    }

    #[test]
    fn the_files_after_the_copy_apply_in_order_and_older_ones_are_skipped() {
        let l0 = [obj(8, 9, 10), obj(3, 5, 10), obj(6, 7, 10), obj(1, 2, 10)];
        assert_eq!(mins(&next(&l0, 2)), vec![3, 6, 8]);
        assert_eq!(mins(&next(&l0, 7)), vec![8]);
        assert_eq!(next(&l0, 9), Next::UpToDate);
        assert_eq!(next(&[], 0), Next::UpToDate);
        assert_eq!(newest(&l0), Some(9));
    }

    #[test]
    fn a_hole_stops_the_chain_and_a_missing_start_asks_for_a_resync() {
        let l0 = [obj(3, 3, 10), obj(5, 6, 10)];
        assert_eq!(mins(&next(&l0, 2)), vec![3]);
        let Next::Resync(why) = next(&l0, 3) else {
            panic!("expected a resync")
        };
        assert!(why.contains("holds txid 4"), "{why}");
        // A snapshot holds every txid up to its own: applied when nothing else holds it.
        assert_eq!(mins(&next(&[at(9, 1, 6, 10), obj(7, 7, 5)], 3)), vec![1, 7]);
        assert_eq!(mins(&next(&[at(9, 1, 6, 10), obj(4, 4, 5)], 3)), vec![4, 1]);
        // A replica behind the copy, or empty, started over.
        assert!(matches!(next(&[obj(1, 2, 10)], 3), Next::Resync(_)));
        assert!(matches!(next(&[], 3), Next::Resync(_)));
        // Listed sizes of 0 (no LTX file is empty) are not taken.
        assert!(matches!(
            next(&[obj(4, 4, 0), obj(5, 5, 9)], 3),
            Next::Resync(_)
        ));
    }

    #[test]
    fn a_compacted_file_that_holds_the_next_txid_continues_the_copy() {
        // Level 0 was compacted into 2-20 and retention removed 2-12; 13-20 remain.
        let files = [at(1, 2, 20, 50), obj(21, 21, 5), at(9, 1, 1, 100)];
        assert_eq!(mins(&next(&files, 7)), vec![2, 21]);
        // Of the files holding the next txid, the one reaching furthest is taken.
        let files = [
            at(1, 2, 20, 50),
            obj(8, 8, 5),
            at(1, 8, 9, 5),
            obj(21, 21, 5),
        ];
        assert_eq!(mins(&next(&files, 7)), vec![2, 21]);
        assert_eq!(mins(&next(&[obj(8, 8, 5), at(1, 8, 9, 5)], 7)), vec![8]);
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_and_a_file_too_large_for_one_is_resynced() {
        let half = BATCH_BYTES / 2;
        let l0 = [obj(1, 1, half), obj(2, 2, half), obj(3, 3, 1)];
        assert_eq!(mins(&next(&l0, 0)), vec![1, 2]);
        assert_eq!(mins(&next(&l0, 2)), vec![3]);
        let many: Vec<LtxObject> = (1..=1000).map(|t| obj(t, t, 10)).collect();
        assert_eq!(mins(&next(&many, 0)).len(), BATCH_FILES);
        assert!(matches!(
            next(&[obj(1, 1, BATCH_BYTES + 1)], 0),
            Next::Resync(_)
        ));
    }

    #[test]
    fn the_header_says_rollback_mode_a_new_counter_and_the_size() {
        let mut head = [0u8; 100];
        head[18] = 2;
        head[19] = 2;
        head[24..28].copy_from_slice(&77u32.to_be_bytes());
        follower_header(&mut head, 41, 9);
        assert_eq!((head[18], head[19]), (1, 1));
        assert_eq!(change_counter(&head), 42);
        assert_eq!(&head[92..96], &42u32.to_be_bytes());
        assert_eq!(&head[28..32], &9u32.to_be_bytes());
        follower_header(&mut head, u32::MAX, 9);
        assert_eq!(change_counter(&head), 0);
    }

    #[test]
    fn the_state_file_round_trips_and_anything_else_is_refused() {
        let s = FollowState {
            txid: 12,
            base: Base {
                commit: 4,
                page_size: 4096,
                lineage: 0xabc,
            },
            applying: true,
        };
        assert_eq!(FollowState::decode(&s.encode()), Some(s));
        assert_eq!(FollowState::decode(""), None);
        assert_eq!(
            FollowState::decode(&s.encode().replace("applying 1", "applying 2")),
            None
        );
        assert_eq!(
            FollowState::decode(&s.encode().replace("txid 12", "txid x")),
            None
        );
    }
}
