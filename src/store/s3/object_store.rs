//! The S3 store's requests by purpose: the [`ObjectStore`] operations (PUT whole or in
//! parts, GET and ranged GET, paged ListObjectsV2, DELETE and verified DeleteObjects),
//! conditional writes and HEAD for leases, and the request counters they keep. It must not
//! interpret object contents, and it never puts a secret in an error or in the description.

use super::client::S3Store;
use super::http::{bare_etag, Expect, LEASE_BODY, LIST_BODY, SMALL_BODY, UNLISTED_BODY};
use super::multipart::Source;
use super::xml::{delete_result, parse_list_page, xml_escape};
use crate::store::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use std::sync::atomic::Ordering;

/// Delete-and-verify rounds of [`ObjectStore::delete_many`] before it gives up.
const DELETE_ROUNDS: usize = 3;

/// The most objects one listing may hold. A replica keeps a few thousand files (a day of
/// level-0 to level-3 files and its snapshots); a listing past this is a URL pointing far
/// above a replica, or a server that sends pages without end, and must not grow the host.
const MAX_LISTED_OBJECTS: usize = 250_000;

impl S3Store {
    /// One PUT of the whole body with extra (signed) headers.
    fn put_single(&self, key: &str, body: &[u8], extra: &[(&str, &str)]) -> Result<(), StoreError> {
        self.put_single_etag(key, body, extra).map(|_| ())
    }

    /// [`Self::put_single`], returning the new object's ETag (without quotes).
    fn put_single_etag(
        &self,
        key: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Option<String>, StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let mut headers = vec![("content-type", "application/octet-stream")];
        headers.extend_from_slice(extra);
        let r = self.send_full("PUT", key, &[], &headers, body, SMALL_BODY)?;
        Ok(r.etag.as_deref().map(bare_etag))
    }

    /// Creates `key` only if no object has that key (`If-None-Match: *`); an existing
    /// object gives [`StoreError::PreconditionFailed`]. A single PUT whatever the size.
    /// A retried attempt whose first try landed also reports `PreconditionFailed`.
    pub fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put_single(key, body, &[("if-none-match", "*")])
    }

    /// Replaces `key` only if its current ETag is `etag` (quoted or bare, as [`Self::head`]
    /// gives it); otherwise, or when the object is gone, [`StoreError::PreconditionFailed`].
    pub fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> Result<(), StoreError> {
        let quoted = format!("\"{}\"", bare_etag(etag));
        self.put_single(key, body, &[("if-match", &quoted)])
    }

    /// One DeleteObjects request (quiet mode: only failures come back). A key the server
    /// refuses for a reason other than a passing one fails the whole call, naming the key.
    fn delete_objects(&self, keys: &[String]) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        let mut xml = String::from(
            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
        );
        for k in keys {
            xml.push_str("<Object><Key>");
            xml.push_str(&xml_escape(k));
            xml.push_str("</Key></Object>");
        }
        xml.push_str("</Delete>");
        let md5 = crate::store::md5::content_md5(xml.as_bytes());
        let (_, body) = self.send(
            "POST",
            "",
            &[("delete", "")],
            &[("content-type", "application/xml"), ("content-md5", &md5)],
            xml.as_bytes(),
            LIST_BODY,
        )?;
        delete_result(&|key| self.what(key), &body)
    }

    /// Which of `keys` a listing of their folders still shows.
    fn still_listed(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let mut folders: Vec<&str> = keys
            .iter()
            .map(|k| k.rsplit_once('/').map_or("", |(dir, _)| dir))
            .collect();
        folders.sort();
        folders.dedup();
        let mut listed = std::collections::HashSet::new();
        for folder in folders {
            let prefix = if folder.is_empty() {
                String::new()
            } else {
                format!("{folder}/")
            };
            listed.extend(self.list(&prefix)?.into_iter().map(|o| o.key));
        }
        Ok(keys
            .iter()
            .filter(|k| listed.contains(*k))
            .cloned()
            .collect())
    }

    /// The size and ETag (without quotes) of `key`, or `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        match self.send_full("HEAD", key, &[], &[], &[], SMALL_BODY) {
            Ok(r) => {
                let size = r.content_length.ok_or_else(|| {
                    StoreError::Permanent(format!("HEAD {}: no Content-Length", self.what(key)))
                })?;
                Ok(Some((
                    size,
                    r.etag.as_deref().map(bare_etag).unwrap_or_default(),
                )))
            }
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        if body.len() as u64 > self.part_size {
            return self.put_multipart(key, &Source::Bytes(body), body.len() as u64);
        }
        self.put_single(key, body, &[])
    }

    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        let read_err =
            |e: std::io::Error| StoreError::Permanent(format!("reading {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        if size > self.part_size {
            return self.put_multipart(key, &Source::File(&file, path), size);
        }
        let src = Source::File(&file, path);
        let body = src.read(0, size)?;
        self.put_single(key, &body, &[])
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(self.send("GET", key, &[], &[], &[], UNLISTED_BODY)?.1)
    }

    fn get_bounded(&self, key: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let expect = Expect::AtMost(max_len, "the size its listing gave");
        Ok(self.send("GET", key, &[], &[], &[], expect)?.1)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.gets.fetch_add(1, Ordering::Relaxed);
        let range = format!("bytes={}-{}", offset, offset.saturating_add(len - 1));
        let expect = Expect::Range { offset, len };
        match self.send("GET", key, &[], &[("range", &range)], &[], expect) {
            // A server that ignores Range sends the whole object: only the range was kept.
            Ok((_, body)) => Ok(body),
            // Asking past the end of the object.
            Err(StoreError::Permanent(m)) if m.contains("HTTP 416") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.lists.fetch_add(1, Ordering::Relaxed);
            let mut query: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let (_, body) = self.send("GET", "", &query, &[], &[], LIST_BODY)?;
            let page = parse_list_page(&body)?;
            out.extend(page.objects);
            if out.len() > MAX_LISTED_OBJECTS {
                return Err(StoreError::Permanent(format!(
                    "ListObjectsV2 of {prefix:?}: more than {MAX_LISTED_OBJECTS} objects: refused (a replica holds far fewer; does the URL point above the replica?)"
                )));
            }
            match (page.truncated, page.next_token) {
                (true, Some(t)) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                (true, _) => {
                    return Err(StoreError::Permanent(
                        "ListObjectsV2: truncated listing without a new continuation token".into(),
                    ))
                }
                (false, _) => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        match self.send("DELETE", key, &[], &[], &[], SMALL_BODY) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// DeleteObjects in batches of 1000, then a LIST of each level holding the keys to see
    /// that they are gone (R2 can report keys deleted that remain); keys still there are
    /// deleted one by one and checked again, a bounded number of times.
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut remaining: Vec<String> = keys.to_vec();
        remaining.sort();
        remaining.dedup();
        for round in 0..DELETE_ROUNDS {
            if remaining.is_empty() {
                return Ok(());
            }
            if round == 0 {
                for batch in remaining.chunks(1000) {
                    self.delete_objects(batch)?;
                }
            } else {
                for key in &remaining {
                    self.delete(key)?;
                }
            }
            remaining = self.still_listed(&remaining)?;
        }
        if remaining.is_empty() {
            return Ok(());
        }
        Err(StoreError::Transient(format!(
            "DeleteObjects {}: {} key(s) still listed after being deleted {DELETE_ROUNDS} times, e.g. {}",
            self.what(""),
            remaining.len(),
            remaining[0]
        )))
    }

    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let r = self.send_full("GET", key, &[], &[], &[], LEASE_BODY)?;
        let etag = r.etag.as_deref().map(bare_etag).ok_or_else(|| {
            StoreError::Permanent(format!("GET {}: no ETag in the response", self.what(key)))
        })?;
        Ok((r.body, etag))
    }

    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        let quoted;
        let condition = match expected {
            None => ("if-none-match", "*"),
            Some(etag) => {
                quoted = format!("\"{}\"", bare_etag(etag));
                ("if-match", quoted.as_str())
            }
        };
        match self.put_single_etag(key, body, &[condition])? {
            Some(etag) => Ok(etag),
            // A server that does not say: ask.
            None => self
                .head(key)?
                .map(|(_, etag)| etag)
                .ok_or_else(|| StoreError::PreconditionFailed(key.to_string())),
        }
    }

    fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            put: self.puts.load(Ordering::Relaxed),
            get: self.gets.load(Ordering::Relaxed),
            list: self.lists.load(Ordering::Relaxed),
            delete: self.deletes.load(Ordering::Relaxed),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        format!(
            "{s} (endpoint {}, region {})",
            self.endpoint_display, self.region
        )
    }
}
