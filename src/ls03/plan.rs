//! Planning a restore from a Litestream 0.3 replica's listing, as `litestream restore`
//! 0.3.13 plans it: the generation whose newest object is the newest (for a point in time,
//! among those whose objects span it), in it the snapshot created last (at or before the
//! point), then every WAL index from the snapshot's to the last one listed, each as its
//! segments in offset order, stopping at the first segment created after the point. A
//! missing index, or an index whose first segment is not at offset 0, is refused with the
//! object that is missing named. Pure: a listing in, a plan out.

use std::collections::BTreeMap;
use std::fmt;

/// What a 0.3 object is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `generations/<id>/snapshots/<index>.snapshot.lz4`: the database file at `index`.
    Snapshot { index: u32 },
    /// `generations/<id>/wal/<index>_<offset>.wal.lz4`: bytes of WAL file `index` from
    /// `offset` (the WAL header is at offset 0).
    Wal { index: u32, offset: u32 },
}

impl Kind {
    pub fn index(self) -> u32 {
        match self {
            Kind::Snapshot { index } | Kind::Wal { index, .. } => index,
        }
    }
}

/// One object of a 0.3 replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ls03Object {
    pub key: String,
    pub generation: String,
    pub kind: Kind,
    pub size: u64,
    pub modified_ms: u64,
}

/// A restore: the snapshot, then each WAL index's segments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ls03Plan {
    pub generation: String,
    pub snapshot: Ls03Object,
    /// `(index, segments in offset order)`, for each index from the snapshot's on.
    pub wal: Vec<(u32, Vec<Ls03Object>)>,
}

impl Ls03Plan {
    /// The objects to read, in the order they are applied.
    pub fn objects(&self) -> impl Iterator<Item = &Ls03Object> {
        std::iter::once(&self.snapshot).chain(self.wal.iter().flat_map(|(_, s)| s.iter()))
    }

    /// The WAL index the restored database is at (the snapshot's when no WAL follows it).
    pub fn index(&self) -> u32 {
        self.wal
            .last()
            .map(|(i, _)| *i)
            .unwrap_or(self.snapshot.kind.index())
    }
}

/// Why no plan could be made; each names the generation or object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing to restore (no generation, or none spanning the point in time).
    NoGeneration(String),
    NoSnapshot(String),
    /// An object a restore needs is not in the replica: its key.
    Missing(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoGeneration(why) => write!(f, "no Litestream 0.3 generation to restore: {why}"),
            PlanError::NoSnapshot(g) => write!(f, "generation {g} of the Litestream 0.3 replica has no snapshot at or before the point in time"),
            PlanError::Missing(key) => write!(f, "the Litestream 0.3 replica is missing {key}, which the restore needs (the WAL chain is broken there)"),
        }
    }
}

fn hex_u32(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn is_generation(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The listing prefix of a 0.3 replica whose root is `prefix` (empty for a directory).
pub fn generations_prefix(prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        "generations/".to_string()
    } else {
        format!("{prefix}/generations/")
    }
}

/// The key of an object of generation `generation` under `prefix`.
pub fn key_of(prefix: &str, generation: &str, kind: Kind) -> String {
    let root = generations_prefix(prefix);
    match kind {
        Kind::Snapshot { index } => {
            format!("{root}{generation}/snapshots/{index:08x}.snapshot.lz4")
        }
        Kind::Wal { index, offset } => {
            format!("{root}{generation}/wal/{index:08x}_{offset:08x}.wal.lz4")
        }
    }
}

/// The 0.3 objects of a listing of `prefix`, sorted by generation, then snapshots by
/// index, then WAL segments by (index, offset); other keys are ignored, as Litestream
/// ignores them. `listing` holds each object's key, size and modification time (ms).
pub fn parse_listing<'a>(
    prefix: &str,
    listing: impl IntoIterator<Item = (&'a str, u64, u64)>,
) -> Vec<Ls03Object> {
    let root = generations_prefix(prefix);
    let mut out: Vec<Ls03Object> = listing
        .into_iter()
        .filter_map(|(key, size, modified_ms)| {
            let rest = key.strip_prefix(&root)?;
            let mut parts = rest.split('/');
            let (generation, dir, name) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || !is_generation(generation) {
                return None;
            }
            let kind = match dir {
                "snapshots" => Kind::Snapshot {
                    index: hex_u32(name.strip_suffix(".snapshot.lz4")?)?,
                },
                "wal" => {
                    let (i, off) = name.strip_suffix(".wal.lz4")?.split_once('_')?;
                    Kind::Wal {
                        index: hex_u32(i)?,
                        offset: hex_u32(off)?,
                    }
                }
                _ => return None,
            };
            Some(Ls03Object {
                key: key.to_string(),
                generation: generation.to_string(),
                kind,
                size,
                modified_ms,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.generation, a.kind).cmp(&(&b.generation, b.kind)));
    out
}

/// The generation Litestream 0.3 restores from: the one whose newest object is newest
/// (the first of equals, in name order); with `at`, only among generations whose objects'
/// times span it.
pub fn choose_generation(objects: &[Ls03Object], at: Option<u64>) -> Option<&str> {
    let mut bounds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for o in objects {
        let b = bounds
            .entry(o.generation.as_str())
            .or_insert((o.modified_ms, o.modified_ms));
        b.0 = b.0.min(o.modified_ms);
        b.1 = b.1.max(o.modified_ms);
    }
    let mut best: Option<(&str, u64)> = None;
    for (g, (created, updated)) in bounds {
        if at.is_some_and(|t| t < created || t > updated) {
            continue;
        }
        if best.is_none_or(|(_, u)| updated > u) {
            best = Some((g, updated));
        }
    }
    best.map(|(g, _)| g)
}

/// Plans a restore to the latest position (`at` = `None`) or to the point in time `at`
/// (milliseconds since the epoch) from a listing parsed by [`parse_listing`].
pub fn plan(prefix: &str, objects: &[Ls03Object], at: Option<u64>) -> Result<Ls03Plan, PlanError> {
    let generation = choose_generation(objects, at).ok_or_else(|| {
        PlanError::NoGeneration(match at {
            None => "the replica holds no generation".into(),
            Some(t) => format!(
                "no generation spans {} (Litestream 0.3 restores a point in time only within a generation's first and last object)",
                crate::base::clock::format_rfc3339(t)
            ),
        })
    })?;
    let in_gen = || objects.iter().filter(|o| o.generation == generation);
    // The snapshot created last (at or before `at`); the first of equals.
    let mut snapshot: Option<&Ls03Object> = None;
    for o in in_gen().filter(|o| matches!(o.kind, Kind::Snapshot { .. })) {
        if at.is_some_and(|t| o.modified_ms > t) {
            continue;
        }
        if snapshot.is_none_or(|s| o.modified_ms > s.modified_ms) {
            snapshot = Some(o);
        }
    }
    let snapshot = snapshot.ok_or_else(|| PlanError::NoSnapshot(generation.to_string()))?;
    let first = snapshot.kind.index();
    // Segments by index, in (index, offset) order, up to the first created after `at`.
    let mut by_index: BTreeMap<u32, Vec<Ls03Object>> = BTreeMap::new();
    for o in in_gen() {
        let Kind::Wal { index, offset } = o.kind else {
            continue;
        };
        if at.is_some_and(|t| o.modified_ms > t) {
            break;
        }
        let segments = by_index.entry(index).or_default();
        if segments.is_empty() && offset != 0 {
            return Err(PlanError::Missing(key_of(
                prefix,
                generation,
                Kind::Wal { index, offset: 0 },
            )));
        }
        segments.push(o.clone());
    }
    let last = by_index.keys().next_back().copied();
    let mut wal = Vec::new();
    if let Some(last) = last {
        for index in first..=last {
            let segments = by_index.remove(&index).ok_or_else(|| {
                PlanError::Missing(key_of(prefix, generation, Kind::Wal { index, offset: 0 }))
            })?;
            wal.push((index, segments));
        }
    }
    Ok(Ls03Plan {
        generation: generation.to_string(),
        snapshot: snapshot.clone(),
        wal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ObjectInfo {
        key: String,
        size: u64,
        modified_ms: u64,
    }

    fn listed(listing: &[ObjectInfo]) -> impl Iterator<Item = (&str, u64, u64)> {
        listing
            .iter()
            .map(|o| (o.key.as_str(), o.size, o.modified_ms))
    }

    const G1: &str = "00000000000000a1";
    const G2: &str = "00000000000000b2";

    fn obj(generation: &str, kind: Kind, modified_ms: u64) -> ObjectInfo {
        ObjectInfo {
            key: key_of("db", generation, kind),
            size: 100,
            modified_ms,
        }
    }

    fn snap(g: &str, index: u32, t: u64) -> ObjectInfo {
        obj(g, Kind::Snapshot { index }, t)
    }

    fn wal(g: &str, index: u32, offset: u32, t: u64) -> ObjectInfo {
        obj(g, Kind::Wal { index, offset }, t)
    }

    /// The (index, offset) of each WAL segment a plan applies.
    fn segments(p: &Ls03Plan) -> Vec<(u32, u32)> {
        p.wal
            .iter()
            .flat_map(|(_, s)| s.iter())
            .map(|o| match o.kind {
                Kind::Wal { index, offset } => (index, offset),
                Kind::Snapshot { .. } => panic!("a snapshot among segments"),
            })
            .collect()
    }

    fn planned(listing: &[ObjectInfo], at: Option<u64>) -> Result<Ls03Plan, PlanError> {
        plan("db", &parse_listing("db", listed(listing)), at)
    }

    #[test]
    fn parses_only_litestream_03_names_under_the_prefix() {
        let mut listing = vec![snap(G1, 1, 10), wal(G1, 1, 0x20, 12), wal(G1, 1, 0, 11)];
        for junk in [
            "db/generations/00000000000000a1/snapshots/1.snapshot.lz4",
            "db/generations/00000000000000a1/wal/00000001-00000000.wal.lz4",
            "db/generations/not-a-generation/wal/00000001_00000000.wal.lz4",
            "other/generations/00000000000000a1/snapshots/00000001.snapshot.lz4",
            "db/generations/00000000000000a1/wal/x/00000001_00000000.wal.lz4",
            "db/0000/0000000000000001-0000000000000001.ltx",
        ] {
            listing.push(ObjectInfo {
                key: junk.into(),
                size: 1,
                modified_ms: 99,
            });
        }
        let objects = parse_listing("db", listed(&listing));
        let kinds: Vec<Kind> = objects.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Snapshot { index: 1 },
                Kind::Wal {
                    index: 1,
                    offset: 0
                },
                Kind::Wal {
                    index: 1,
                    offset: 0x20
                }
            ]
        );
        assert_eq!(
            parse_listing("", listed(&[snap(G1, 1, 10)])).len(),
            0,
            "a directory replica's keys have no prefix"
        );
        assert_eq!(
            key_of(
                "",
                G1,
                Kind::Wal {
                    index: 2,
                    offset: 0x1000
                }
            ),
            "generations/00000000000000a1/wal/00000002_00001000.wal.lz4"
        );
    }

    #[test]
    fn latest_takes_the_newest_generation_its_newest_snapshot_and_every_segment_after() {
        let listing = [
            // An older generation, updated last at 50.
            snap(G1, 0, 10),
            wal(G1, 0, 0, 11),
            wal(G1, 1, 0, 50),
            // The newer one: snapshots at indexes 0 and 2, WAL up to index 3.
            snap(G2, 0, 20),
            wal(G2, 0, 0, 21),
            wal(G2, 1, 0, 22),
            wal(G2, 1, 0x1000, 23),
            snap(G2, 2, 24),
            wal(G2, 2, 0, 25),
            wal(G2, 2, 0x20, 26),
            wal(G2, 3, 0, 60),
        ];
        let p = planned(&listing, None).unwrap();
        assert_eq!(p.generation, G2);
        assert_eq!(p.snapshot.kind, Kind::Snapshot { index: 2 });
        assert_eq!(segments(&p), vec![(2, 0), (2, 0x20), (3, 0)]);
        assert_eq!(p.index(), 3);
        assert_eq!(p.objects().count(), 4);
    }

    #[test]
    fn a_point_in_time_stops_at_the_first_segment_after_it_within_a_spanning_generation() {
        let listing = [
            snap(G1, 0, 10),
            wal(G1, 0, 0, 11),
            wal(G1, 0, 0x20, 15),
            wal(G1, 1, 0, 19),
            snap(G2, 0, 30),
            wal(G2, 0, 0, 31),
            wal(G2, 0, 0x20, 40),
        ];
        let p = planned(&listing, Some(16)).unwrap();
        assert_eq!(p.generation, G1);
        assert_eq!(segments(&p), vec![(0, 0), (0, 0x20)]);
        let p = planned(&listing, Some(35)).unwrap();
        assert_eq!((p.generation.as_str(), segments(&p)), (G2, vec![(0, 0)]));
        // Between generations, or after the last object: Litestream 0.3 finds nothing.
        for at in [5, 25, 41] {
            let e = planned(&listing, Some(at)).unwrap_err();
            assert!(matches!(e, PlanError::NoGeneration(_)), "{at}: {e}");
        }
        // Only a snapshot at or before the point counts.
        let listing = [
            snap(G1, 0, 10),
            wal(G1, 0, 0, 11),
            snap(G1, 1, 20),
            wal(G1, 1, 0, 21),
        ];
        let p = planned(&listing, Some(15)).unwrap();
        assert_eq!(p.snapshot.kind, Kind::Snapshot { index: 0 });
        assert_eq!(segments(&p), vec![(0, 0)]);
    }

    #[test]
    fn a_snapshot_alone_restores_and_a_generation_without_one_does_not() {
        let p = planned(&[snap(G1, 4, 10)], None).unwrap();
        assert!(p.wal.is_empty());
        assert_eq!(p.index(), 4);
        let e = planned(&[wal(G1, 0, 0, 10)], None).unwrap_err();
        assert_eq!(e, PlanError::NoSnapshot(G1.into()));
        let e = planned(&[], None).unwrap_err();
        assert!(matches!(e, PlanError::NoGeneration(_)), "{e}");
    }

    #[test]
    fn a_missing_index_or_first_segment_is_refused_naming_it() {
        let missing_index = [snap(G1, 0, 10), wal(G1, 0, 0, 11), wal(G1, 2, 0, 13)];
        let e = planned(&missing_index, None).unwrap_err();
        assert_eq!(
            e,
            PlanError::Missing(
                "db/generations/00000000000000a1/wal/00000001_00000000.wal.lz4".into()
            )
        );
        assert!(e.to_string().contains("00000001_00000000.wal.lz4"), "{e}");
        let missing_first = [snap(G1, 0, 10), wal(G1, 0, 0x20, 11)];
        let e = planned(&missing_first, None).unwrap_err();
        assert_eq!(
            e,
            PlanError::Missing(
                "db/generations/00000000000000a1/wal/00000000_00000000.wal.lz4".into()
            )
        );
        // Indexes before the snapshot's are not applied, and their gaps do not matter.
        let old_gap = [wal(G1, 0, 0, 9), snap(G1, 2, 10), wal(G1, 2, 0, 11)];
        assert_eq!(segments(&planned(&old_gap, None).unwrap()), vec![(2, 0)]);
    }
}
