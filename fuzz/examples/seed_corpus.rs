//! Writes the seed inputs of the fuzz targets into `corpus/<target>/seed-*`, each made by
//! the encoder production uses (or, for bodies a server sends, written as S3 documents
//! them). Deterministic: running it again rewrites the same files. Run from `fuzz/`:
//! `cargo run --example seed_corpus --target-dir ../target` (reuses the main build).

use std::path::{Path, PathBuf};

use replica::handoff::{HandedTxn, Handoff, NextLog};
use replica::lease::{owner_id, Lease};
use replica::spool::{scan_segment, Integrity, RecordHeader, Spool, SpoolState};
use replica::store::keys::s3_key;
use replica::wal::{wal_checksum, CommittedTxn, WalPosition};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// A page whose bytes tell pages apart, so mutations have something to work with.
fn page(size: u32, pgno: u32) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8) ^ (pgno as u8).wrapping_mul(31))
        .collect()
}

fn s3_xml() {
    let list = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>db/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>{}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>4096</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>db/0000/a&amp;b&#x20;&lt;c&gt;<![CDATA[&]]>.ltx</Key><LastModified>2026-01-01T00:00:01Z</LastModified><Size>0</Size></Contents><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#,
        s3_key("db", 9, 1, 2)
    );
    write("s3_xml", "list-page", list.as_bytes());
    write(
        "s3_xml",
        "list-empty",
        b"<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>",
    );
    write(
        "s3_xml",
        "error",
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate &amp; retry.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>",
    );
    write(
        "s3_xml",
        "delete-result",
        b"<DeleteResult><Deleted><Key>db/0000/x.ltx</Key></Deleted><Error><Key>db/0000/y.ltx</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error><Error><Key>z</Key><Code>InternalError</Code></Error></DeleteResult>",
    );
    write(
        "s3_xml",
        "multipart",
        b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>",
    );
}

fn config() {
    let yamls: &[(&str, &str)] = &[
        (
            "s3",
            "dbs:\n  - path: /var/lib/app/app.db\n    replica:\n      url: s3://backups/app?region=eu-west-1\n      sync-interval: 500ms\n      validation-interval: 12h\n",
        ),
        (
            "defaults",
            "access-key-id: ${AWS_ACCESS_KEY_ID}\nsecret-access-key: $AWS_SECRET_ACCESS_KEY\nsync-interval: 2s\nshutdown-sync-timeout: 5s\nsnapshot:\n  interval: 24h\n  retention: 72h\nlevels:\n  - interval: 5m\n  - interval: 1h\nl0-retention: 10m\ndefaults: &d\n  type: s3\n  bucket: $BUCKET\n  endpoint: https://acct.r2.cloudflarestorage.com\ndbs:\n  - path: ${DATA}/a.db\n    replica:\n      <<: *d\n      path: a\n  - path: ~/b.db\n    restore-if-db-not-exists: true\n    replicas:\n      - type: file\n        path: /srv/replicas/b\n",
        ),
        (
            "file",
            "dbs:\n  - path: relative.db\n    replica: {type: file, path: ./replicas/relative}\n",
        ),
        (
            "aliases",
            "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\ndbs: []\n",
        ),
    ];
    for (name, text) in yamls {
        write("config_yaml", name, text.as_bytes());
    }
    for (i, url) in [
        "s3://backups/app/db?endpoint=http://localhost:9000&region=us-east-1&force-path-style=true",
        "s3://bucket.s3.us-west-2.amazonaws.com/prefix%20x",
        "file:///srv/replicas/app.db",
        "replicas/../app",
        "s3://b/p?skip-verify=true&connect-timeout=5s&read-timeout=1m",
    ]
    .iter()
    .enumerate()
    {
        write("config_url", &format!("url{i}"), url.as_bytes());
    }
}

fn handoff() {
    let txn = |frame: u32, pages: &[u32]| HandedTxn {
        txn: CommittedTxn {
            page_size: 512,
            commit_size: 4,
            end: WalPosition::new((7, 9), frame),
            pages: pages.iter().map(|&p| (p, page(512, p))).collect(),
        },
        end_cksum: (frame.wrapping_mul(0x9e37_79b9), 17),
    };
    let restart = Handoff {
        old_salts: (7, 9),
        txns: vec![txn(2, &[1, 4]), txn(3, &[2])],
        next: NextLog::Restart((8, 10)),
    };
    write("handoff_decode", "restart", &restart.encode());
    let truncate = Handoff {
        next: NextLog::Gone,
        txns: vec![txn(1, &[3])],
        ..restart
    };
    write("handoff_decode", "truncate", &truncate.encode());
    let hooked = Handoff {
        next: NextLog::MayRestart { change: 41 },
        ..truncate
    };
    write("handoff_decode", "may-restart", &hooked.encode());
}

/// A segment as the spool writes it: a CRC record and a WAL-chain record.
fn spool() {
    let dir = std::env::temp_dir().join(format!("replica-seed-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let (spool, _) = Spool::open(&dir, 1 << 30).unwrap();
        let header = |frame, integrity, end_cksum| RecordHeader {
            page_size: 512,
            commit_size: 3,
            end: WalPosition::new((7, 9), frame),
            end_cksum,
            captured_at_ms: 1_767_225_600_000,
            integrity,
        };
        let mut rec = spool
            .begin_record(header(2, Integrity::Crc, (1, 2)), 2)
            .unwrap();
        rec.push(1, &page(512, 1)).unwrap();
        rec.push(3, &page(512, 3)).unwrap();
        rec.commit().unwrap();
        // SQLite's frame checksums over the entries, as capture verified them.
        let start = (11, 13);
        let mut fh = [0u8; 8];
        fh[..4].copy_from_slice(&2u32.to_be_bytes());
        fh[4..].copy_from_slice(&3u32.to_be_bytes());
        let end = wal_checksum(false, start, &fh);
        let end = wal_checksum(false, end, &page(512, 2));
        let chain = Integrity::WalChain {
            start,
            big_endian: false,
        };
        let mut rec = spool.begin_record(header(3, chain, end), 1).unwrap();
        rec.push(2, &page(512, 2)).unwrap();
        rec.commit().unwrap();
        spool.flush().unwrap();
    }
    let segs: Vec<PathBuf> = std::fs::read_dir(dir.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for (i, seg) in segs.iter().enumerate() {
        let bytes = std::fs::read(seg).unwrap();
        let (records, valid) = scan_segment(&bytes, 1);
        assert_eq!(
            (records.len(), valid),
            (2, bytes.len() as u64),
            "both records whole"
        );
        write("spool_segment", &format!("segment{i}"), &bytes);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let state = SpoolState {
        replica_url: "s3://backups/app?region=eu-west-1".into(),
        txid: 42,
        post_checksum: 0x8000_0000_0000_1234,
        page_size: 4096,
        commit: 10,
        shipped_seq: 41,
        position: Some((WalPosition::new((7, 9), 12), (3, 4))),
        shipped_at_ms: 1_767_225_600_000,
    };
    write("spool_state", "position", state.encode().as_bytes());
    let fresh = SpoolState {
        position: None,
        ..SpoolState::default()
    };
    write("spool_state", "fresh", fresh.encode().as_bytes());
}

fn lease() {
    let now: u64 = 1_767_225_600_000;
    for (name, expires) in [
        ("held", now + 30_000),
        ("expired", now - 1),
        ("far", u64::MAX),
    ] {
        let mut bytes = now.to_be_bytes().to_vec();
        bytes.extend_from_slice(&60_000u64.to_be_bytes());
        let l = Lease {
            owner: owner_id("web-2", "00000000000000b8"),
            expires_ms: expires,
        };
        bytes.extend_from_slice(&l.encode());
        write("lease_decode", name, &bytes);
    }
}

/// Bytes for `arbitrary` to draw listings from: any bytes are a listing.
fn restore_plan() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..4 {
        let bytes: Vec<u8> = (0..64 + 96 * i)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write("restore_plan", &format!("random{i}"), &bytes);
    }
}

/// An LZ4 frame as Litestream 0.3 writes one (of page-like bytes), and a 0.3 listing: a
/// generation with a snapshot and two WAL indexes, and an older generation.
fn ls03() {
    let content: Vec<u8> = (1..=4).flat_map(|n| page(1024, n)).collect();
    write("ls03_decode", "frame", &replica::ls03::encode_frame(&content));
    let mut listing = String::new();
    for (g, t) in [("00000000000000a1", 1000), ("00000000000000b2", 5000)] {
        listing += &format!("db/generations/{g}/snapshots/00000000.snapshot.lz4 300 {t}\n");
        for (i, off, dt) in [(0, 0, 1), (0, 0x2000, 2), (1, 0, 3)] {
            listing += &format!(
                "db/generations/{g}/wal/{i:08x}_{off:08x}.wal.lz4 120 {}\n",
                t + dt
            );
        }
    }
    write("ls03_decode", "listing", listing.as_bytes());
}

fn main() {
    ls03();
    s3_xml();
    config();
    handoff();
    spool();
    lease();
    restore_plan();
}
