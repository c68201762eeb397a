//! Multipart uploads: the part layout (at least the part size, at most 10,000 parts),
//! parts read from memory or from the file one at a time at their offset, a few in flight
//! at once, completed with their ETags and aborted on any failure. It never reads a whole
//! file into memory.

use super::client::S3Store;
use super::http::{bare_etag, SMALL_BODY};
use super::xml::{embedded_error, xml_escape, xml_text};
use crate::store::StoreError;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// S3's ceiling on the number of parts; larger objects get larger parts.
pub(super) const MAX_PARTS: u64 = 10_000;

/// Where a multipart upload reads its parts from: a body in memory, or a file read part by
/// part at its offset (never whole).
pub(super) enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a std::fs::File, &'a std::path::Path),
}

impl Source<'_> {
    pub(super) fn read(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, StoreError> {
        match self {
            Source::Bytes(b) => Ok(Cow::Borrowed(&b[offset as usize..(offset + len) as usize])),
            Source::File(f, path) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, offset).map_err(|e| {
                    StoreError::Permanent(format!(
                        "reading {} at {offset} (+{len}): {e}",
                        path.display()
                    ))
                })?;
                Ok(Cow::Owned(buf))
            }
        }
    }
}

impl S3Store {
    /// Part size and count for an object of `size` bytes: equal parts of at least
    /// [`Self::part_size`], the last one shorter, never more than S3's 10,000.
    pub(super) fn part_layout(&self, size: u64) -> (u64, u64) {
        let mut part = self.part_size;
        if size.div_ceil(part) > MAX_PARTS {
            part = size.div_ceil(MAX_PARTS);
        }
        (part, size.div_ceil(part).max(1))
    }

    /// Uploads `size` bytes from `src` as one multipart upload, aborting it on any failure.
    pub(super) fn put_multipart(
        &self,
        key: &str,
        src: &Source<'_>,
        size: u64,
    ) -> Result<(), StoreError> {
        let what = self.what(key);
        self.puts.fetch_add(1, Ordering::Relaxed);
        let created = self.send_full(
            "POST",
            key,
            &[("uploads", "")],
            &[("content-type", "application/octet-stream")],
            &[],
            SMALL_BODY,
        )?;
        if let Some(e) = embedded_error("POST", &what, &created.body) {
            return Err(e);
        }
        let upload_id = xml_text(&String::from_utf8_lossy(&created.body), "UploadId")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                StoreError::Permanent(format!(
                    "CreateMultipartUpload {what}: no <UploadId> in the response"
                ))
            })?;
        match self.upload_parts_and_complete(key, src, size, &upload_id) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: a failed abort leaves parts a lifecycle rule has to clean.
                self.puts.fetch_add(1, Ordering::Relaxed);
                let _ = self.send(
                    "DELETE",
                    key,
                    &[("uploadId", &upload_id)],
                    &[],
                    &[],
                    SMALL_BODY,
                );
                Err(e)
            }
        }
    }

    fn upload_parts_and_complete(
        &self,
        key: &str,
        src: &Source<'_>,
        size: u64,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let etags = self.upload_parts(key, src, size, upload_id)?;
        self.complete_upload(key, upload_id, &etags)
    }

    /// Uploads every part, [`S3Store::parts_in_flight`] at a time; after the first failure
    /// no part starts, and that failure is the result.
    fn upload_parts(
        &self,
        key: &str,
        src: &Source<'_>,
        size: u64,
        upload_id: &str,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let (part_size, parts) = self.part_layout(size);
        let etags: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; parts as usize]);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
        let workers = self.parts_in_flight.clamp(1, parts as usize);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst) as u64;
                    if i >= parts {
                        return;
                    }
                    let offset = i * part_size;
                    let len = part_size.min(size - offset);
                    match self.upload_part(key, src, upload_id, i + 1, offset, len) {
                        Ok(etag) => {
                            crate::base::lock::lock(&etags)[i as usize] = Some(etag);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            crate::base::lock::lock(&first_error).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(etags.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// Part `number` (1-based), `len` bytes of `src` from `offset`; returns its ETag.
    fn upload_part(
        &self,
        key: &str,
        src: &Source<'_>,
        upload_id: &str,
        number: u64,
        offset: u64,
        len: u64,
    ) -> Result<String, StoreError> {
        src.read(offset, len).and_then(|body| {
            self.puts.fetch_add(1, Ordering::Relaxed);
            let number = number.to_string();
            let r = self.send_full(
                "PUT",
                key,
                &[("partNumber", &number), ("uploadId", upload_id)],
                &[],
                &body,
                SMALL_BODY,
            )?;
            r.etag.filter(|e| !e.is_empty()).ok_or_else(|| {
                StoreError::Permanent(format!(
                    "UploadPart {} part {number}: no ETag in the response",
                    self.what(key)
                ))
            })
        })
    }

    /// CompleteMultipartUpload with every part's ETag, in order; a part without one fails
    /// it before it is sent.
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[Option<String>],
    ) -> Result<(), StoreError> {
        let what = self.what(key);
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            let etag = etag.as_deref().ok_or_else(|| {
                StoreError::Permanent(format!("UploadPart {what} part {}: not uploaded", i + 1))
            })?;
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                i + 1,
                xml_escape(&bare_etag(etag))
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        self.puts.fetch_add(1, Ordering::Relaxed);
        let done = self.send_full(
            "POST",
            key,
            &[("uploadId", upload_id)],
            &[("content-type", "application/xml")],
            xml.as_bytes(),
            SMALL_BODY,
        )?;
        match embedded_error("POST", &what, &done.body) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
