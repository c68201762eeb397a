//! Builders the codec's tests share: deterministic noise pages, a small header, a whole
//! encoded file and a checksummed sample snapshot.

use super::checksum::DbChecksum;
use super::encode::Encoder;
use super::header::Header;

/// Deterministic, poorly compressible bytes (xorshift64).
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(super) fn header(min_txid: u64, max_txid: u64, commit: u32, flags: u32) -> Header {
    Header {
        flags,
        page_size: 512,
        commit,
        min_txid,
        max_txid,
        timestamp_ms: 1_700_000_000_123,
        ..Default::default()
    }
}

pub(super) fn encode(header: Header, pages: &[(u32, Vec<u8>)], post: u64) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).unwrap();
    }
    enc.finish(post).unwrap().0
}

/// A checksummed 3-page snapshot with one page of noise, one of zeros, one of text.
pub(super) fn sample_snapshot() -> (Vec<(u32, Vec<u8>)>, Vec<u8>) {
    let pages = vec![
        (1, noise(1, 512)),
        (2, vec![0; 512]),
        (3, b"hello ".repeat(86)[..512].to_vec()),
    ];
    let mut sum = DbChecksum::default();
    pages.iter().for_each(|(p, d)| sum.add_page(*p, d));
    let bytes = encode(header(1, 1, 3, 0), &pages, sum.value());
    (pages, bytes)
}
