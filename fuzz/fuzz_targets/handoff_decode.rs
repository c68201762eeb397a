//! Feeds arbitrary bytes to the hand-off decoder (`replica::handoff::Handoff::decode`), as a
//! file found in the spool's `handoff/` directory: once as given and once with its CRC-64
//! recomputed ("resealed"), so that mutations get past the checksum to the structure.
//! Nothing may panic or allocate beyond the input; whatever decodes must be transactions the
//! spool can hold (a page size SQLite can have, every page that size, page numbers within
//! the database size after commit) and must encode back to the same hand-off.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::handoff::Handoff;
use replica::ltx::crc64;
use replica::wal::is_valid_page_size;

fn check(bytes: &[u8]) -> bool {
    let Some(h) = Handoff::decode(bytes) else {
        return false;
    };
    for t in &h.txns {
        assert!(is_valid_page_size(t.txn.page_size), "{}", t.txn.page_size);
        assert_eq!(t.txn.end.salts(), h.old_salts);
        for (pgno, page) in &t.txn.pages {
            assert_eq!(page.len(), t.txn.page_size as usize);
            assert!(
                (1..=t.txn.commit_size).contains(pgno),
                "page {pgno} of {}",
                t.txn.commit_size
            );
        }
    }
    assert_eq!(Handoff::decode(&h.encode()).as_ref(), Some(&h));
    true
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 8 {
        let mut sealed = data.to_vec();
        let at = sealed.len() - 8;
        let crc = crc64(&sealed[..at]);
        sealed[at..].copy_from_slice(&crc.to_be_bytes());
        check(&sealed);
    }
});
