//! Feeds arbitrary bytes to the S3 XML decoders as the bodies a server (or whoever stands
//! in for it) could send: a ListObjectsV2 page, an error body under every status the store
//! maps, a 200 that carries an `<Error>`, a DeleteObjects reply and a CreateMultipartUpload
//! reply. Nothing may panic; a page that parses must parse the same once its objects are
//! written back the way a server writes them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::store::s3::xml::{
    delete_result, embedded_error, parse_list_page, status_error, xml_escape, xml_text,
};
use replica::store::StoreError;

const STATUSES: &[u16] = &[
    200, 301, 400, 401, 403, 404, 408, 409, 412, 416, 429, 500, 503,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = parse_list_page(data) {
        // The same page as a server would render it: keys escaped, flags and token kept.
        let mut xml = String::from("<ListBucketResult>");
        for o in &page.objects {
            xml += &format!(
                "<Contents><Key>{}</Key><Size>{}</Size></Contents>",
                xml_escape(&o.key),
                o.size
            );
        }
        xml += &format!("<IsTruncated>{}</IsTruncated>", page.truncated);
        if let Some(t) = &page.next_token {
            xml += &format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                xml_escape(t)
            );
        }
        xml += "</ListBucketResult>";
        let again = parse_list_page(xml.as_bytes()).expect("a rendered page parses");
        let keys = |p: &replica::store::s3::xml::ListPage| -> Vec<(String, u64)> {
            p.objects.iter().map(|o| (o.key.clone(), o.size)).collect()
        };
        assert_eq!(keys(&again), keys(&page));
        assert_eq!(again.truncated, page.truncated);
        assert_eq!(again.next_token, page.next_token);
    }
    for &status in STATUSES {
        let e = status_error("GET", "s3://b/k", status, data);
        if status >= 500 {
            assert!(e.is_transient(), "{status}: {e}");
        }
        let _ = e.to_string();
    }
    let text = String::from_utf8_lossy(data);
    match embedded_error("POST", "s3://b/k", data) {
        Some(e) => {
            assert!(text.contains("<Error>"));
            let _ = e.to_string();
        }
        None => assert!(!text.contains("<Error>")),
    }
    let what = |key: &str| format!("s3://b/{key}");
    if let Err(e) = delete_result(&what, data) {
        assert!(!matches!(e, StoreError::NotFound(_)) || text.contains("<Error>"));
    }
    let _ = xml_text(&text, "UploadId");
});
