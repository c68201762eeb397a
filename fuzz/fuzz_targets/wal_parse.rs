//! Fuzzes the WAL parser (`replica::wal`): arbitrary bytes are read as a WAL
//! file through an in-memory `read_at` by `scan` and `map_committed_pages`,
//! once as given and once with every checksum recomputed ("resealed"), so
//! that mutations get past the checksums to the salt, page-number and commit
//! logic.  Nothing may panic, both functions must agree, and the results must
//! be consistent.  Seeds: fuzz/corpus/wal_parse/ (real SQLite WAL files).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::wal::*;

fn reader(data: &[u8]) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<usize> + '_ {
    move |offset, buf| {
        let Ok(offset) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = data.get(offset..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

/// Scans `data` both ways and checks what must hold for any input.
fn check(data: &[u8]) -> Result<ScanResult, WalError> {
    let scanned = scan(&mut reader(data), None);
    let mapped = map_committed_pages(&mut reader(data));
    let (s, m) = match (scanned, mapped) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            return Err(a);
        }
        (a, b) => panic!("scan {a:?} but map_committed_pages {b:?}"),
    };
    assert_eq!(s.header, m.header);
    assert_eq!(s.last_commit, m.last_commit);
    assert_eq!(s.last_commit_checksum, m.last_commit_checksum);
    assert!(!s.restarted);
    let Some(header) = s.header else {
        assert!(data.len() < WAL_HEADER_SIZE && s.txns.is_empty() && m.latest_frame.is_empty());
        return Ok(s);
    };
    // Transactions: in log order, pages ascending, whole, within the db size.
    let mut prev = 0u32;
    let mut pages = std::collections::BTreeMap::new();
    for t in &s.txns {
        assert!(t.end.frame > prev && t.end.frame < s.stopped_at);
        assert_eq!(t.end.salts(), header.salts());
        assert_eq!(t.page_size, header.page_size);
        prev = t.end.frame;
        let mut last = 0u32;
        for (pgno, img) in &t.pages {
            assert!(*pgno > last && *pgno <= t.commit_size);
            assert_eq!(img.len(), header.page_size as usize);
            last = *pgno;
            pages.insert(*pgno, img.clone());
        }
        pages.retain(|p, _| *p <= t.commit_size);
    }
    assert_eq!(s.last_commit, s.txns.last().map(|t| t.end));
    // The page map points at exactly the final images the transactions hold.
    assert_eq!(m.commit_size, s.txns.last().map_or(0, |t| t.commit_size));
    assert!(m.latest_frame.keys().eq(pages.keys()));
    for (pgno, frame) in &m.latest_frame {
        let off = frame_offset(header.page_size, *frame) as usize + FRAME_HEADER_SIZE;
        assert!(data[off..off + header.page_size as usize] == pages[pgno][..]);
    }
    // Resuming from the last commit finds nothing new; from the header, the same.
    let resume = match s.last_commit {
        Some(pos) => (pos, s.last_commit_checksum),
        None => (WalPosition::new(header.salts(), 0), header.checksum()),
    };
    let again = scan(&mut reader(data), Some(resume)).expect("header was valid");
    assert!(!again.restarted && again.txns.is_empty());
    assert_eq!(again.stopped_at, s.stopped_at);
    let from0 = (WalPosition::new(header.salts(), 0), header.checksum());
    let all = scan(&mut reader(data), Some(from0)).expect("header was valid");
    assert_eq!(all.txns, s.txns);
    Ok(s)
}

/// `data` with a valid header checksum and every complete frame's checksum
/// recomputed along the chain; page numbers, commit sizes and salts are kept.
/// Returns the first frame a scan must stop at.  `None` if the page size
/// field is unusable.
fn reseal(data: &[u8]) -> Option<(Vec<u8>, u32)> {
    let field = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    if data.len() < WAL_HEADER_SIZE || !is_valid_page_size(field(8)) {
        return None;
    }
    let header = WalHeader::new(field(0) & 1 == 1, field(8), field(12), field(16), field(20));
    let mut out = data.to_vec();
    out[..WAL_HEADER_SIZE].copy_from_slice(&header.to_bytes());
    let mut chain = FrameChain::new(&header);
    let mut stop = None;
    let mut frame = 1u32;
    loop {
        let off = frame_offset(header.page_size, frame) as usize;
        let end = off + FRAME_HEADER_SIZE + header.page_size as usize;
        if end > out.len() {
            break;
        }
        let fh = FrameHeader::parse(&out[off..]).unwrap();
        let page = out[off + FRAME_HEADER_SIZE..end].to_vec();
        let sealed = chain.seal(fh.pgno, fh.commit_size, &page).unwrap();
        let mut bytes = sealed.to_bytes();
        bytes[8..16].copy_from_slice(&out[off + 8..off + 16]); // keep the salts
        out[off..off + FRAME_HEADER_SIZE].copy_from_slice(&bytes);
        if stop.is_none() && (fh.pgno == 0 || fh.salts() != header.salts()) {
            stop = Some(frame);
        }
        frame += 1;
    }
    Some((out, stop.unwrap_or(frame)))
}

fuzz_target!(|data: &[u8]| {
    let _ = WalHeader::parse(data);
    let _ = FrameHeader::parse(data);
    let _ = check(data);

    if let Some((sealed, stop)) = reseal(data) {
        let s = check(&sealed).expect("a resealed header is valid");
        assert_eq!(s.stopped_at, stop);
        // Every commit frame before the stop is a transaction.
        let header = s.header.unwrap();
        let commits = (1..stop)
            .filter(|&f| {
                let off = frame_offset(header.page_size, f) as usize;
                FrameHeader::parse(&sealed[off..]).unwrap().is_commit()
            })
            .count();
        assert_eq!(s.txns.len(), commits);
    }

    // The chain and the assembler on raw slices of any length.
    if let Ok(header) = WalHeader::parse(data) {
        let mut chain = FrameChain::new(&header);
        let rest = &data[WAL_HEADER_SIZE..];
        let split = rest.len().min(FRAME_HEADER_SIZE);
        let _ = chain.accept(&rest[..split], &rest[split..]);
    }
    let mut asm = TxnAssembler::new(512);
    if let Ok(fh) = FrameHeader::parse(data) {
        let _ = asm.push(
            WalPosition::new(fh.salts(), 1),
            &fh,
            &data[FRAME_HEADER_SIZE..],
        );
        assert!(asm.pending_frames() <= 1);
    }
});
