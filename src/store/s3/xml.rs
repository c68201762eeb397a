//! The XML S3 speaks, parsed just enough: ListObjectsV2 pages, `<Error>` bodies (with a
//! status or embedded in a 200) mapped onto [`StoreError`], entity decoding and escaping for
//! the bodies the store sends. It must not send requests or trust a body's structure.
//! Public so that the fuzz targets (`fuzz/fuzz_targets/s3_xml.rs`) feed bodies to the very
//! functions the store calls on them.

use crate::store::{ObjectInfo, StoreError};

/// A 200 that carries an `<Error>` (CompleteMultipartUpload can fail after its headers).
pub fn embedded_error(method: &str, what: &str, body: &[u8]) -> Option<StoreError> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("<Error>") {
        return None;
    }
    let code = xml_text(&text, "Code").unwrap_or_default();
    // Map it like the status it stands for: internal errors are transient.
    let status = match code.as_str() {
        "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout" => 503,
        "AccessDenied" => 403,
        _ => 400,
    };
    Some(status_error(method, what, status, body))
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps a non-2xx response onto a [`StoreError`], with the server's `<Code>`/`<Message>`.
pub fn status_error(method: &str, what: &str, status: u16, body: &[u8]) -> StoreError {
    let text = String::from_utf8_lossy(body);
    let code = xml_text(&text, "Code");
    let message = xml_text(&text, "Message");
    let mut detail = format!("{method} {what}: HTTP {status}");
    if let Some(c) = &code {
        detail.push_str(&format!(" {c}"));
    }
    if let Some(m) = &message {
        detail.push_str(&format!(": {m}"));
    }
    let code = code.unwrap_or_default();
    let error = match status {
        404 if code.is_empty() || code == "NoSuchKey" => StoreError::NotFound(what.to_string()),
        404 => StoreError::Permanent(detail),
        412 => StoreError::PreconditionFailed(detail),
        401 | 403 => StoreError::Auth(detail),
        408 | 429 => StoreError::Transient(detail),
        500..=599 => StoreError::Transient(detail),
        _ if code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" => {
            StoreError::Transient(detail)
        }
        _ => StoreError::Permanent(detail),
    };
    if code == "NotImplemented" {
        return StoreError::Unsupported(Box::new(error));
    }
    error
}

/// The undecoded insides of every `<tag>…</tag>` block, so nested fields are decoded exactly
/// once; `None` when a block is not closed.
pub fn raw_blocks<'a>(xml: &'a str, tag: &str) -> Option<Vec<&'a str>> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let start = &rest[i + open.len()..];
        let end = start.find(&close)?;
        out.push(&start[..end]);
        rest = &start[end + close.len()..];
    }
    Some(out)
}

/// The decoded text of the first `<tag>…</tag>` in `xml`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// The decoded texts of every `<tag>…</tag>` (or `<tag attr="…">…</tag>`) in `xml`, in order.
/// Enough for S3's flat responses; `<tag/>` gives an empty string.
fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        // Must be exactly this tag: `<Key>`, `<Key attr>` or `<Key/>`, not `<KeyCount>`.
        match after.chars().next() {
            Some('>') | Some(' ') | Some('/') | Some('\t') | Some('\n') | Some('\r') => {}
            _ => {
                rest = after;
                continue;
            }
        }
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') {
            out.push(String::new());
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(xml_decode(&body[..end]));
        rest = &body[end + close.len()..];
    }
    out
}

/// Decodes the five predefined entities, numeric character references and CDATA sections.
fn xml_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").unwrap_or(r.len());
            out.push_str(&r[..end]);
            rest = r.get(end + 3..).unwrap_or("");
            continue;
        }
        if rest.starts_with('&') {
            // Bytes, not a slice of the text: the twelfth byte may fall inside a character.
            let head = &rest.as_bytes()[..rest.len().min(12)];
            if let Some(semi) = head.iter().position(|&b| b == b';') {
                let ent = &rest[1..semi];
                let decoded = match ent {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => ent
                        .strip_prefix("#x")
                        .or_else(|| ent.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = decoded {
                    out.push(c);
                    rest = &rest[semi + 1..];
                    continue;
                }
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One page of a ListObjectsV2 response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub truncated: bool,
    pub next_token: Option<String>,
}

/// A ListObjectsV2 response body (bytes that are not UTF-8 are replaced) as one page.
pub fn parse_list_page(body: &[u8]) -> Result<ListPage, StoreError> {
    let xml: &str = &String::from_utf8_lossy(body);
    if !xml.contains("<ListBucketResult") {
        return Err(StoreError::Permanent(format!(
            "ListObjectsV2: unexpected response: {}",
            xml.chars().take(200).collect::<String>()
        )));
    }
    let mut objects = Vec::new();
    // Walk the raw `<Contents>` blocks so a key's text is decoded exactly once.
    for block in raw_blocks(xml, "Contents")
        .ok_or_else(|| StoreError::Permanent("ListObjectsV2: unterminated <Contents>".into()))?
    {
        let key = xml_text(block, "Key").ok_or_else(|| {
            StoreError::Permanent("ListObjectsV2: <Contents> without <Key>".into())
        })?;
        let size = xml_text(block, "Size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Permanent(format!("ListObjectsV2: no valid <Size> for {key}"))
            })?;
        let modified_ms = xml_text(block, "LastModified")
            .and_then(|t| crate::base::clock::parse_rfc3339(&t))
            .unwrap_or(0);
        objects.push(ObjectInfo {
            key,
            size,
            modified_ms,
        });
    }
    // The top-level flags: look outside the Contents blocks (keys cannot contain raw `<`).
    let truncated = xml_text(xml, "IsTruncated")
        .map(|t| t.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    let next_token = xml_text(xml, "NextContinuationToken").filter(|t| !t.is_empty());
    Ok(ListPage {
        objects,
        truncated,
        next_token,
    })
}

/// The reply to a quiet DeleteObjects: `Ok` when every key is gone or its failure passes
/// (transient, or already gone), which the caller's verification round retries; otherwise
/// the first lasting failure, naming its key through `what`.
pub fn delete_result(what: &dyn Fn(&str) -> String, body: &[u8]) -> Result<(), StoreError> {
    let text = String::from_utf8_lossy(body);
    if let Some(e) = embedded_error("POST", &format!("DeleteObjects {}", what("")), body) {
        if !text.contains("<DeleteResult") {
            return Err(e);
        }
    }
    for block in raw_blocks(&text, "Error").unwrap_or_default() {
        let key = xml_text(block, "Key").unwrap_or_default();
        let wrapped = format!("<Error>{block}</Error>");
        match embedded_error("DELETE", &what(&key), wrapped.as_bytes()) {
            // Passing failures are left for the verification round to retry.
            Some(e)
                if e.is_transient() || xml_text(block, "Code").as_deref() == Some("NoSuchKey") => {}
            Some(e) => return Err(e),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::s3::http::bare_etag;

    #[test]
    fn list_page_parses_keys_sizes_paging_and_entities() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/a&amp;b&#x20;c&lt;.ltx</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/0000/x.ltx</Key><Size>0</Size></Contents>
<NextContinuationToken>tok/en&#61;=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_page(xml.as_bytes()).unwrap();
        assert_eq!(
            page.objects,
            vec![
                ObjectInfo {
                    key: "p/a&b c<.ltx".into(),
                    size: 12,
                    modified_ms: 1_704_067_200_000,
                },
                ObjectInfo {
                    key: "p/0000/x.ltx".into(),
                    size: 0,
                    modified_ms: 0,
                }
            ]
        );
        assert!(page.truncated);
        assert_eq!(page.next_token.as_deref(), Some("tok/en=="));
        let empty = parse_list_page(
            b"<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(empty, ListPage::default());
        assert!(parse_list_page(b"<Error><Code>X</Code></Error>").is_err());
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let err = |s: u16, body: &str| status_error("GET", "s3://b/k", s, body.as_bytes());
        assert!(matches!(
            err(404, "<Error><Code>NoSuchKey</Code></Error>"),
            StoreError::NotFound(_)
        ));
        assert!(matches!(
            err(404, "<Error><Code>NoSuchBucket</Code></Error>"),
            StoreError::Permanent(_)
        ));
        assert!(matches!(err(412, ""), StoreError::PreconditionFailed(_)));
        match err(
            403,
            "<Error><Code>SignatureDoesNotMatch</Code><Message>nope &amp; no</Message></Error>",
        ) {
            StoreError::Auth(m) => {
                assert!(
                    m.contains("SignatureDoesNotMatch") && m.contains("nope & no"),
                    "{m}"
                )
            }
            e => panic!("{e:?}"),
        }
        assert!(err(503, "<Error><Code>SlowDown</Code></Error>").is_transient());
        assert!(err(429, "").is_transient());
        assert!(err(400, "<Error><Code>SlowDown</Code></Error>").is_transient());
        assert!(matches!(err(400, ""), StoreError::Permanent(_)));
    }

    #[test]
    fn xml_tags_match_exactly() {
        let x = "<KeyCount>3</KeyCount><Key>a</Key><Key/><Key>b&#65;</Key>";
        assert_eq!(xml_all(x, "Key"), vec!["a", "", "bA"]);
        assert_eq!(xml_decode("<![CDATA[a&amp;]]>&amp;"), "a&amp;&");
        assert_eq!(xml_decode("&bogus; & &#xZZ;"), "&bogus; & &#xZZ;");
    }

    #[test]
    fn an_entity_running_into_a_multibyte_character_is_read_as_text() {
        // Found by fuzz/fuzz_targets/s3_xml.rs: an `&` followed by a character that straddles
        // the twelfth byte panicked (slicing inside the character) on a LIST page.
        let key = "db/&abcdefghij\u{20ac}.ltx";
        let page = format!(
            "<ListBucketResult><Contents><Key>{key}</Key><Size>1</Size></Contents></ListBucketResult>"
        );
        let page = parse_list_page(page.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, key);
        let body = "<Error><Code>SlowDown</Code><Message>&\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}</Message></Error>";
        let e = status_error("GET", "s3://b/k", 503, body.as_bytes());
        assert!(e.to_string().contains("&\u{e9}"), "{e}");
    }

    #[test]
    fn etags_and_embedded_errors() {
        assert_eq!(bare_etag("\"abc-3\""), "abc-3");
        assert_eq!(bare_etag("abc"), "abc");
        assert!(embedded_error("POST", "k", b"<CompleteMultipartUploadResult/>").is_none());
        assert!(
            embedded_error("POST", "k", b"  <Error><Code>InternalError</Code></Error>")
                .unwrap()
                .is_transient()
        );
        assert!(matches!(
            embedded_error("POST", "k", b"<Error><Code>InvalidPart</Code></Error>"),
            Some(StoreError::Permanent(_))
        ));
    }
}
