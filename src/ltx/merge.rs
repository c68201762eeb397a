//! The LTX merge a compaction writes: contiguous files in, one file out, streaming. It owns
//! which page version wins and the header the output carries; it reads and writes only the
//! decoders and writer it is handed.

use super::decode::Decoder;
use super::encode::Encoder;
use super::error::LtxError;
use super::header::{lock_pgno, Header, Trailer};
use std::io::{Read, Write};

/// Merges contiguous LTX files into one (latest page version wins), streaming: it holds
/// one page per input. Every input's file checksum is verified (a corrupt input fails the
/// merge before the output can be used), as is their checksum chain when they carry
/// checksums. A page past the size of a later input that no later input writes was cut off
/// and grown back as zeros, so it is written as zeros (ltx's compactor drops it and would
/// leave an older version in place). Returns the writer and the output's header and trailer.
pub fn merge<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
) -> Result<(W, Header, Trailer), LtxError> {
    let (first, last) = check_inputs(&inputs)?;
    let header = Header {
        node_id: common_node_id(inputs.iter().map(|d| d.header().node_id)),
        ..merged_header(&first, &last)
    };
    let mut enc = Encoder::new(out, header)?;
    let pre_checksums: Vec<u64> = inputs
        .iter()
        .map(|d| d.header().pre_apply_checksum)
        .collect();
    let mut decs = inputs;
    write_latest_pages(&mut decs, &mut enc)?;
    let mut trailers = Vec::with_capacity(decs.len());
    for d in decs {
        trailers.push(d.finish()?);
    }
    if !first.no_checksum() {
        check_chain(&pre_checksums, &trailers)?;
    }
    let post = trailers.last().unwrap().post_apply_checksum;
    let (w, trailer) = enc.finish(post)?;
    Ok((w, header, trailer))
}

/// The first and last inputs' headers, once every neighbour pair has the same page size
/// and checksum flag and continues the other's transactions.
fn check_inputs<R: Read>(inputs: &[Decoder<R>]) -> Result<(Header, Header), LtxError> {
    let bad = LtxError::BadHeader;
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
        if a.max_txid.checked_add(1) != Some(b.min_txid) {
            return Err(bad(format!(
                "inputs are not contiguous: {}-{} then {}-{}",
                a.min_txid, a.max_txid, b.min_txid, b.max_txid
            )));
        }
        if a.no_checksum() != b.no_checksum() {
            return Err(bad("inputs disagree on the no-checksum flag".into()));
        }
    }
    Ok((first, last))
}

/// The output spans the inputs: it starts where the first starts and ends as the last
/// ends. It stands for no single WAL range, so the WAL fields are zero.
fn merged_header(first: &Header, last: &Header) -> Header {
    Header {
        flags: first.flags,
        page_size: first.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp_ms: last.timestamp_ms,
        pre_apply_checksum: first.pre_apply_checksum,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    }
}

/// The node id the inputs agree on, files without one (0) agreeing with any: a replica
/// writes its history's id there, so a merge of one history's files carries it on, and a
/// merge across histories (files either side of a new snapshot) claims none.
fn common_node_id(ids: impl Iterator<Item = u64>) -> u64 {
    let mut common = 0;
    for id in ids.filter(|&id| id != 0) {
        if common != 0 && id != common {
            return 0;
        }
        common = id;
    }
    common
}

/// Walks every input's pages in ascending order together and writes each page's latest
/// version within the output's size, or zeros where a later input cut the page off and
/// none after it wrote it again.
fn write_latest_pages<R: Read, W: Write>(
    decs: &mut [Decoder<R>],
    enc: &mut Encoder<W>,
) -> Result<(), LtxError> {
    let header = *enc.header();
    let commit = header.commit;
    // suffix_min[i] = the smallest size among inputs i.. (u32::MAX past the end).
    let n = decs.len();
    let mut suffix_min = vec![u32::MAX; n + 1];
    for i in (0..n).rev() {
        suffix_min[i] = suffix_min[i + 1].min(decs[i].header().commit);
    }
    let ps = header.page_size as usize;
    let lock = lock_pgno(header.page_size);
    let zero = vec![0u8; ps];
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
    Ok(())
}

/// With checksums, each input must start from the database state the one before it ends in.
fn check_chain(pre_checksums: &[u64], trailers: &[Trailer]) -> Result<(), LtxError> {
    let n = trailers.len();
    for (i, t) in trailers.iter().enumerate().take(n - 1) {
        if pre_checksums[i + 1] != t.post_apply_checksum {
            return Err(LtxError::BadHeader(format!(
                "input {} does not start from the state input {i} ends in (pre-apply {:016x}, post-apply {:016x})",
                i + 1,
                pre_checksums[i + 1],
                t.post_apply_checksum
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{decode_all, FLAG_NO_CHECKSUM, HEADER_SIZE, MAX_TXID};

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

    fn merged(files: &[&Vec<u8>]) -> Result<Vec<u8>, LtxError> {
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
    fn a_txid_at_u64_max_does_not_overflow() {
        // A file from the bucket whose header claims the last txid there is, followed by
        // one claiming to continue it (`max + 1` wraps to 0).
        let mut a = ltx_file(2, 2, 2, &[(1, 1)], 1);
        a[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        let b = ltx_file(3, 3, 2, &[(2, 5)], 1);
        let err = match Decoder::new(&a[..]) {
            Err(e) => e.to_string(),
            Ok(_) => merged(&[&a, &b]).unwrap_err().to_string(),
        };
        assert!(err.contains("above the largest"), "{err}");
        // The largest accepted txid is one a file can still follow.
        let last = ltx_file(MAX_TXID, MAX_TXID, 2, &[(1, 1)], 1);
        assert!(Decoder::new(&last[..]).is_ok());
        let err = merged(&[&last, &b]).unwrap_err().to_string();
        assert!(err.contains("not contiguous"), "{err}");
        let past = Header {
            max_txid: MAX_TXID + 1,
            ..*Decoder::new(&b[..]).unwrap().header()
        };
        assert!(Encoder::new(Vec::new(), past).is_err());
    }

    /// `ltx_file` stamped with a replica's history id.
    fn of_history(node_id: u64, min: u64, pages: &[(u32, u8)]) -> Vec<u8> {
        let plain = ltx_file(min, min, 2, pages, 1);
        let header = Header {
            node_id,
            ..*Decoder::new(&plain[..]).unwrap().header()
        };
        let mut enc = Encoder::new(Vec::new(), header).unwrap();
        for &(pgno, fill) in pages {
            enc.encode_page(pgno, &vec![fill; PS as usize]).unwrap();
        }
        enc.finish(0).unwrap().0
    }

    #[test]
    fn a_merge_carries_the_history_its_inputs_share_and_none_across_two() {
        let node = |files: &[&Vec<u8>]| {
            Decoder::new(&merged(files).unwrap()[..])
                .unwrap()
                .header()
                .node_id
        };
        let (a2, a3) = (of_history(7, 2, &[(1, 1)]), of_history(7, 3, &[(2, 2)]));
        let older = ltx_file(3, 3, 2, &[(2, 2)], 1);
        let b3 = of_history(9, 3, &[(2, 2)]);
        assert_eq!(node(&[&a2, &a3]), 7);
        assert_eq!(
            node(&[&a2, &older]),
            7,
            "a file without an id agrees with any"
        );
        assert_eq!(node(&[&a2, &b3]), 0, "two histories: none claimed");
    }

    #[test]
    fn merge_refuses_gaps_and_corrupt_inputs() {
        let a = ltx_file(2, 2, 2, &[(1, 1)], 1);
        let c = ltx_file(4, 4, 2, &[(2, 1)], 1);
        let err = merged(&[&a, &c]).unwrap_err().to_string();
        assert!(err.contains("not contiguous"), "{err}");
        let mut b = ltx_file(3, 3, 2, &[(2, 5)], 1);
        let i = HEADER_SIZE + 12;
        b[i] ^= 0xff; // inside the compressed page
        assert!(merged(&[&a, &b]).is_err());
        let mut b = ltx_file(3, 3, 2, &[(2, 5)], 1);
        let n = b.len();
        b[n - 1] ^= 1; // the file checksum
        let err = merged(&[&a, &b]).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }
}
