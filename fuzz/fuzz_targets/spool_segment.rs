//! Feeds arbitrary bytes to spool recovery's segment reader (`replica::spool::scan_segment`,
//! what `Spool::open` keeps of a segment file), once as given and once with every record's
//! integrity check recomputed ("resealed": the CRC-64, and for WAL-chain records the chain's
//! end), so that mutations get past the checks to the record structure. Nothing may panic or
//! allocate beyond the input; the records kept are whole, in sequence order, and exactly
//! the well-formed prefix; reading that prefix alone keeps the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::ltx::crc64;
use replica::spool::{scan_segment, RecordMeta};
use replica::wal::wal_checksum;

const HEADER: usize = 64;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn record_len(r: &RecordMeta) -> u64 {
    HEADER as u64 + r.pgnos.len() as u64 * (4 + r.page_size as u64) + 8
}

fn check(data: &[u8]) -> Vec<RecordMeta> {
    let (records, valid) = scan_segment(data, 7);
    assert!(valid <= data.len() as u64);
    assert_eq!(records.iter().map(record_len).sum::<u64>(), valid);
    for pair in records.windows(2) {
        assert!(pair[0].seq < pair[1].seq);
    }
    for r in &records {
        assert!(r.page_size.is_power_of_two() && (512..=65536).contains(&r.page_size));
    }
    let (again, valid_again) = scan_segment(&data[..valid as usize], 7);
    assert_eq!(valid_again, valid);
    assert_eq!(again, records);
    records
}

/// `data` with each record's check recomputed, as far as records can be told apart.
fn reseal(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0usize;
    while out.len() >= at + HEADER + 8 && &out[at..at + 4] == b"RSP1" {
        let (page_size, npages, kind) = (
            be32(&out, at + 12),
            be32(&out, at + 40),
            be32(&out, at + 52),
        );
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() || kind > 2 {
            break;
        }
        let entry = 4 + page_size as usize;
        let end = at + HEADER + npages as usize * entry;
        if end + 8 > out.len() {
            break;
        }
        let crc_end = if kind == 0 {
            end
        } else {
            let big_endian = kind == 2;
            let mut chain = (be32(&out, at + 56), be32(&out, at + 60));
            for i in 0..npages as usize {
                let e = at + HEADER + i * entry;
                let mut fh = [0u8; 8];
                fh[..4].copy_from_slice(&out[e..e + 4]);
                if i + 1 == npages as usize {
                    fh[4..].copy_from_slice(&out[at + 16..at + 20]);
                }
                chain = wal_checksum(big_endian, chain, &fh);
                chain = wal_checksum(big_endian, chain, &out[e + 4..e + entry]);
            }
            out[at + 32..at + 36].copy_from_slice(&chain.0.to_be_bytes());
            out[at + 36..at + 40].copy_from_slice(&chain.1.to_be_bytes());
            at + HEADER
        };
        let crc = crc64(&out[at..crc_end]);
        out[end..end + 8].copy_from_slice(&crc.to_be_bytes());
        at = end + 8;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let raw = check(data);
    let sealed = check(&reseal(data));
    // Resealing leaves whole records as they were.
    assert!(sealed.len() >= raw.len());
    assert_eq!(sealed[..raw.len()], raw[..]);
});
