//! The S3 / R2 backend (`s3://` URLs, `type: s3`): blocking HTTPS over `ureq` with rustls on
//! the ring provider, requests signed by [`super::sigv4`]. It owns addressing (path-style or
//! virtual-hosted), the requests the uploader and restore need (PUT with a full payload
//! hash — multipart above the part size, parts read from the file one at a time, at most 2 in
//! flight on R2 and 4 elsewhere, aborted on failure — GET and ranged GET, ListObjectsV2 with
//! paging, DELETE), conditional PUT and HEAD for leases, mapping HTTP outcomes onto
//! [`StoreError`](super::StoreError) and a small bounded retry on transient failures. It must
//! not interpret object contents, and it never puts a secret in an error or in
//! [`ObjectStore::describe`](super::ObjectStore::describe).
mod body;
mod client;
mod http;
mod multipart;
mod object_store;
mod resolve;
mod tls;
pub mod xml;

pub use client::{S3Store, DEFAULT_PART_SIZE};
