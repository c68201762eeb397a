//! Reading a replica from the store: its listing, its LTX headers (for timestamps) and the
//! download of a chain, split into whole or ranged GETs run in parallel inside a bounded
//! window and handed to the applier in order as one `Read` per object. It retries
//! transient failures and short bodies a bounded number of times; it must never hold more
//! than the window in memory, nor leave the consumer waiting on a piece that will not come.

use super::plan::{check_listing, parse_listing, LtxObject};
use crate::error::{Error, RestoreFailure};
use crate::ltx;
use crate::store::{ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Condvar, Mutex};

/// Extra rounds of a piece's GET (each with the store's own retries) on transient failures.
const PIECE_ROUNDS: u32 = 4;

/// Lists the replica's LTX objects; a listing no single replica can have (see
/// [`check_listing`]) is an error.
pub fn list_objects(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<LtxObject>, Error> {
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let objects = parse_listing(&store.list(&list_prefix)?);
    check_listing(&objects)?;
    Ok(objects)
}

/// `chain` with each object's size that of its contents, where the store seals objects (an
/// encrypted object's listed size counts its header and tags): pieces are cut, and bodies
/// checked, by what a GET returns.
pub(super) fn content_sizes(
    store: &dyn ObjectStore,
    mut chain: Vec<LtxObject>,
    parallelism: usize,
) -> Result<Vec<LtxObject>, Error> {
    if !store.sealed() {
        return Ok(chain);
    }
    let sizes = parallel_map(&chain, parallelism, |o| {
        store.content_len(&crate::store::ObjectInfo {
            key: o.key.clone(),
            size: o.size,
            modified_ms: o.modified_ms,
        })
    });
    for (o, size) in chain.iter_mut().zip(sizes) {
        o.size = size?;
    }
    Ok(chain)
}

/// Runs `f` over `items` on up to `parallelism` threads; results in input order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    parallelism: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallelism.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                crate::base::lock::lock(&results)[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

/// Every object's LTX header (a ranged GET of its first 100 bytes), fetched in parallel.
pub fn read_headers(
    store: &dyn ObjectStore,
    objects: &[LtxObject],
    parallelism: usize,
) -> Vec<Result<ltx::Header, Error>> {
    parallel_map(objects, parallelism, |o| {
        let head = store.get_range(&o.key, 0, ltx::HEADER_SIZE as u64)?;
        ltx::Header::decode(&head)
            .map_err(|e| Error::Restore(RestoreFailure::Corrupt, format!("{}: {e}", o.key)))
    })
}

/// The newest txid whose file was written at or before `ts`, read from LTX headers.
pub(super) fn txid_at_time(
    store: &dyn ObjectStore,
    objects: &[LtxObject],
    ts: u64,
    parallelism: usize,
) -> Result<u64, Error> {
    let mut best = None;
    for (o, h) in objects
        .iter()
        .zip(read_headers(store, objects, parallelism))
    {
        if h?.timestamp_ms <= ts {
            best = best.max(Some(o.max_txid));
        }
    }
    best.ok_or_else(|| {
        Error::Restore(
            RestoreFailure::NothingToRestore,
            format!("the replica has nothing at or before timestamp {ts} ms"),
        )
    })
}

/// One GET of the download: a whole object, or a range of a large one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    object: usize,
    offset: u64,
    len: u64,
    whole: bool,
}

/// Splits each object into pieces of at most `chunk` bytes (an object that fits is one
/// whole GET, so a size the listing got wrong cannot cut it short).
fn pieces(chain: &[LtxObject], chunk: u64) -> Vec<Piece> {
    let chunk = chunk.max(ltx::HEADER_SIZE as u64);
    let mut out = Vec::new();
    for (object, o) in chain.iter().enumerate() {
        if o.size <= chunk {
            out.push(Piece {
                object,
                offset: 0,
                len: o.size,
                whole: true,
            });
            continue;
        }
        let mut offset = 0;
        while offset < o.size {
            let len = chunk.min(o.size - offset);
            out.push(Piece {
                object,
                offset,
                len,
                whole: false,
            });
            offset += len;
        }
    }
    out
}

struct FetchState {
    next: usize,
    consumed: usize,
    ready: BTreeMap<usize, Result<Vec<u8>, StoreError>>,
    stop: bool,
}

/// Downloads pieces in order on worker threads, never more than `window` ahead of the
/// consumer, so memory stays at `window × chunk` whatever the database size.
pub(super) struct Fetcher<'a> {
    store: &'a dyn ObjectStore,
    chain: &'a [LtxObject],
    pieces: Vec<Piece>,
    window: usize,
    state: Mutex<FetchState>,
    changed: Condvar,
}

impl<'a> Fetcher<'a> {
    /// The download of `chain` in pieces of at most `chunk_bytes`, `parallelism` at once
    /// (the window holds two more, so workers keep busy while the consumer catches up).
    pub(super) fn new(
        store: &'a dyn ObjectStore,
        chain: &'a [LtxObject],
        chunk_bytes: u64,
        parallelism: usize,
    ) -> Fetcher<'a> {
        Fetcher {
            store,
            chain,
            pieces: pieces(chain, chunk_bytes),
            window: parallelism.max(1) + 2,
            state: Mutex::new(FetchState {
                next: 0,
                consumed: 0,
                ready: BTreeMap::new(),
                stop: false,
            }),
            changed: Condvar::new(),
        }
    }

    pub(super) fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// The end (exclusive) of object `index`'s pieces, which start at `first`.
    pub(super) fn end_of_object(&self, index: usize, first: usize) -> usize {
        self.pieces[first..]
            .iter()
            .position(|p| p.object != index)
            .map_or(self.pieces.len(), |n| first + n)
    }

    /// A worker: downloads the next piece in order until all are taken or it is stopped.
    pub(super) fn work(&self) {
        loop {
            let i = {
                let mut s = crate::base::lock::lock(&self.state);
                while !s.stop && s.next < self.pieces.len() && s.next >= s.consumed + self.window {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.stop || s.next >= self.pieces.len() {
                    return;
                }
                s.next += 1;
                s.next - 1
            };
            let p = self.pieces[i];
            let key = &self.chain[p.object].key;
            let body = self.fetch(p, key);
            crate::base::lock::lock(&self.state).ready.insert(i, body);
            self.changed.notify_all();
        }
    }

    /// One piece, retried beyond the store's own retries while failures are transient or
    /// a body comes back short: with many GETs in flight, one request can meet several
    /// faults in a row, and a whole restore should not fail for it.
    fn fetch(&self, p: Piece, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut round = 0;
        loop {
            // A panicking store must not leave the consumer waiting for this piece forever.
            // A whole object is read no further than its listed size: a bucket that lists
            // 4 KiB cannot make the restore hold gigabytes.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if p.whole {
                    self.store.get_bounded(key, p.len)
                } else {
                    self.store.get_range(key, p.offset, p.len)
                }
            }))
            .unwrap_or_else(|_| Err(StoreError::Permanent(format!("GET {key} panicked"))));
            let retry = match &r {
                Err(e) => e.is_transient(),
                Ok(body) => body.len() as u64 != p.len,
            };
            round += 1;
            let last = round > PIECE_ROUNDS || crate::base::lock::lock(&self.state).stop;
            if !retry || last {
                // A body still short is not what the listing promised: the decoder must not
                // see a size it did not check the header against.
                return r.and_then(|body| match body.len() as u64 {
                    n if n == p.len => Ok(body),
                    n => Err(short_body(key, p, n)),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100 * round as u64));
        }
    }

    /// Piece `i`, waiting for it; the consumer takes pieces in order.
    fn take(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        let mut s = crate::base::lock::lock(&self.state);
        loop {
            if let Some(r) = s.ready.remove(&i) {
                s.consumed = i + 1;
                self.changed.notify_all();
                return r;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(super) fn stop(&self) {
        crate::base::lock::lock(&self.state).stop = true;
        self.changed.notify_all();
    }
}

/// A piece that came back with `got` bytes instead of the `p.len` the listing implies.
fn short_body(key: &str, p: Piece, got: u64) -> StoreError {
    StoreError::Permanent(format!(
        "GET {key}: {got} bytes at offset {} where the listing implies {}",
        p.offset, p.len
    ))
}

/// The bytes of one object, read piece by piece from the fetcher.
pub(super) struct ObjectReader<'f, 'a> {
    fetcher: &'f Fetcher<'a>,
    next_piece: usize,
    end_piece: usize,
    buf: Vec<u8>,
    pos: usize,
    /// A store error, kept whole so the caller reports it rather than an I/O wrapper.
    pub(super) failed: Option<StoreError>,
    on_piece: &'f mut dyn FnMut(u64),
}

impl<'f, 'a> ObjectReader<'f, 'a> {
    /// Reads pieces `first..end` of `fetcher`, calling `on_piece` with each one's size.
    pub(super) fn new(
        fetcher: &'f Fetcher<'a>,
        first: usize,
        end: usize,
        on_piece: &'f mut dyn FnMut(u64),
    ) -> Self {
        ObjectReader {
            fetcher,
            next_piece: first,
            end_piece: end,
            buf: Vec::new(),
            pos: 0,
            failed: None,
            on_piece,
        }
    }
}

impl Read for ObjectReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next_piece == self.end_piece {
                return Ok(0);
            }
            let i = self.next_piece;
            self.next_piece += 1;
            match self.fetcher.take(i) {
                Ok(body) => {
                    (self.on_piece)(body.len() as u64);
                    self.buf = body;
                    self.pos = 0;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.failed = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::tests::obj;

    #[test]
    fn large_objects_are_split_into_ranged_pieces() {
        let mut a = obj(9, 1, 1);
        a.size = 25;
        let mut b = obj(0, 2, 2);
        b.size = 100;
        let p = pieces(&[a, b], 10);
        // The chunk is at least a header: 100 bytes.
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|p| p.whole));
        let mut c = obj(9, 1, 1);
        c.size = 250;
        let p = pieces(&[c], 100);
        assert_eq!(
            p.iter()
                .map(|p| (p.offset, p.len, p.whole))
                .collect::<Vec<_>>(),
            vec![(0, 100, false), (100, 100, false), (200, 50, false)]
        );
    }
}
