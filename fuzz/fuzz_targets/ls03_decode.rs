//! Feeds the Litestream 0.3 readers what a bucket anyone can write could hold: arbitrary
//! bytes as an object's LZ4 frame (`ls03::FrameReader`, its output capped so a valid frame
//! of long runs ends the run rather than fills memory), and the same bytes as a listing, one
//! `key size modified_ms` a line, parsed and planned (`ls03::parse_listing`, `ls03::plan`)
//! at the latest position and at a point in time. Nothing may panic or hang; a plan starts
//! with a snapshot of its generation and continues with every WAL index from the snapshot's,
//! each from offset 0, using only listed objects. Seeds: fuzz/corpus/ls03_decode/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::ls03::{parse_listing, plan, FrameReader, Kind};
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = FrameReader::new(data).take(16 << 20).read_to_end(&mut out);

    let text = String::from_utf8_lossy(data);
    let listing: Vec<(String, u64, u64)> = text
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let key = f.next().unwrap_or("").to_string();
            let size = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let modified = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            (key, size, modified)
        })
        .collect();
    let objects = parse_listing(
        "db",
        listing.iter().map(|(k, s, m)| (k.as_str(), *s, *m)),
    );
    let at = listing.iter().map(|(_, _, m)| *m).max();
    for at in [None, at, at.map(|m| m / 2)] {
        let Ok(p) = plan("db", &objects, at) else {
            continue;
        };
        assert!(matches!(p.snapshot.kind, Kind::Snapshot { .. }));
        assert_eq!(p.snapshot.generation, p.generation);
        let first = u64::from(p.snapshot.kind.index());
        for (n, (i, segments)) in p.wal.iter().enumerate() {
            assert_eq!(u64::from(*i), first + n as u64);
            assert!(matches!(
                segments.first().map(|s| s.kind),
                Some(Kind::Wal { offset: 0, .. })
            ));
            for s in segments {
                assert_eq!(s.generation, p.generation);
                assert!(objects.contains(s));
            }
        }
    }
});
