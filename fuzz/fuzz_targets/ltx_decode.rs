//! Feeds arbitrary bytes to the LTX decoder: it must return errors, never panic or
//! allocate without bound; anything it accepts must re-encode to the same contents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::ltx::{decode_all, Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    // Streaming path: one reused page buffer, then index + trailer.
    if let Ok(mut dec) = Decoder::new(data) {
        let page_size = dec.header().page_size as usize;
        let mut buf = Vec::new();
        loop {
            match dec.next_page(&mut buf) {
                Ok(Some(_)) => assert_eq!(buf.len(), page_size),
                Ok(None) => {
                    let _ = dec.finish();
                    break;
                }
                Err(_) => break,
            }
        }
    }

    // Whole-file path; an accepted file must survive a re-encode unchanged.
    if let Ok((header, pages, trailer)) = decode_all(data) {
        let mut enc = Encoder::new(Vec::new(), header).expect("decoded header re-encodes");
        for (pgno, page) in &pages {
            enc.encode_page(*pgno, page).expect("decoded page re-encodes");
        }
        let (bytes, _) = enc.finish(trailer.post_apply_checksum).expect("decoded file re-encodes");
        let (header2, pages2, trailer2) = decode_all(&bytes).expect("re-encoded file decodes");
        assert_eq!(header2, header);
        assert_eq!(pages2, pages);
        assert_eq!(trailer2.post_apply_checksum, trailer.post_apply_checksum);
    }
});
