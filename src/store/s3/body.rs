//! Reading a response body within bounds: never more bytes than the request can return
//! (past them the body is refused, or for an error body or a 200 to a ranged GET, left
//! unread) and never past a deadline fixed when the headers arrived, so an endless or
//! trickling body fails instead of growing the host or holding a restore for hours. Pure
//! over any `Read` and clock; it knows nothing of HTTP.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// Bodies get the read timeout plus one second per this many bytes. 64 KiB/s is slower than
/// any link a replica is usable over (a 4 MiB restore piece gets 64 s on top of the read
/// timeout), yet a body trickling in bytes fails within seconds of what a real transfer of
/// its size could take; the read timeout (`read-timeout`) sets the floor.
pub(super) const MIN_RATE: u64 = 64 * 1024;
/// The most read of an error response's body: enough for S3's `<Error>` with its message.
pub(super) const ERROR_BODY_MAX: u64 = 64 * 1024;
/// One read at a time: small enough for the stack of any thread that sends a request.
const CHUNK: usize = 16 * 1024;

/// How long a body of `bytes` may take after its headers: `read_timeout + bytes / MIN_RATE`.
pub(super) fn body_deadline(read_timeout: Duration, bytes: u64) -> Duration {
    read_timeout + Duration::from_secs(bytes / MIN_RATE)
}

/// What the bytes after `keep` mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Past {
    /// The body is longer than the request may return: an error.
    Refuse,
    /// Not needed (an error body's tail, the rest of an object after the range): unread.
    Ignore,
}

/// What to keep of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bound {
    /// Bytes dropped first (a server that ignored Range sends the object from its start).
    pub(super) skip: u64,
    /// The most bytes kept.
    pub(super) keep: u64,
    pub(super) past: Past,
}

#[derive(Debug)]
pub(super) enum BodyError {
    /// More than `keep` bytes came (with [`Past::Refuse`]).
    TooLong,
    /// The deadline passed with `got` bytes kept.
    Deadline {
        got: u64,
    },
    Io(std::io::Error),
}

/// Reads what `bound` keeps of `r`, checking `deadline` (on the clock `now`) before each
/// read; memory never exceeds `keep` bytes plus one chunk. `capacity` is reserved up front
/// (the Content-Length, when it fits the bound).
pub(super) fn read_bounded<R: Read>(
    r: &mut R,
    bound: Bound,
    deadline: Instant,
    now: &dyn Fn() -> Instant,
    capacity: u64,
) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(capacity.min(bound.keep) as usize);
    let mut chunk = [0u8; CHUNK];
    let mut skip = bound.skip;
    loop {
        if now() > deadline {
            return Err(BodyError::Deadline {
                got: out.len() as u64,
            });
        }
        let room = bound.keep - out.len() as u64;
        // Once `keep` bytes are in, one more byte tells a longer body from a complete one.
        let want = match (skip, room, bound.past) {
            (0, 0, Past::Ignore) => return Ok(out),
            (0, 0, Past::Refuse) => 1,
            (0, room, _) => room.min(CHUNK as u64) as usize,
            (skip, _, _) => skip.min(CHUNK as u64) as usize,
        };
        let n = match r.read(&mut chunk[..want]) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyError::Io(e)),
        };
        if skip > 0 {
            skip -= n as u64;
        } else if room == 0 {
            return Err(BodyError::TooLong);
        } else {
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// An endless body of `byte`s, `per_read` at a time, advancing a fake clock per read.
    struct Endless<'c> {
        per_read: usize,
        clock: &'c Cell<Instant>,
        step: Duration,
        served: u64,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.clock.set(self.clock.get() + self.step);
            let n = buf.len().min(self.per_read);
            buf[..n].fill(b'x');
            self.served += n as u64;
            Ok(n)
        }
    }

    fn endless(clock: &Cell<Instant>, per_read: usize, step: Duration) -> Endless<'_> {
        Endless {
            per_read,
            clock,
            step,
            served: 0,
        }
    }

    const FAR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_endless_body_is_refused_after_the_bound_having_read_one_byte_more() {
        let clock = Cell::new(Instant::now());
        let mut r = endless(&clock, 1 << 20, Duration::ZERO);
        let bound = Bound {
            skip: 0,
            keep: 100_000,
            past: Past::Refuse,
        };
        let err = read_bounded(&mut r, bound, clock.get() + FAR, &|| clock.get(), 0);
        assert!(matches!(err, Err(BodyError::TooLong)), "{err:?}");
        assert_eq!(r.served, 100_001, "never read past the bound and a byte");
    }

    #[test]
    fn a_body_within_its_bound_is_kept_whole() {
        let clock = Cell::new(Instant::now());
        let body = vec![7u8; 40_000];
        let bound = Bound {
            skip: 0,
            keep: 40_000,
            past: Past::Refuse,
        };
        let got = read_bounded(
            &mut &body[..],
            bound,
            clock.get() + FAR,
            &|| clock.get(),
            40_000,
        );
        assert_eq!(got.unwrap(), body);
        let bound = Bound {
            keep: 50_000,
            ..bound
        };
        let got = read_bounded(&mut &body[..], bound, clock.get() + FAR, &|| clock.get(), 0);
        assert_eq!(got.unwrap().len(), 40_000);
    }

    #[test]
    fn ignored_tails_and_skipped_heads_are_not_kept() {
        let clock = Cell::new(Instant::now());
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let bound = Bound {
            skip: 50_000,
            keep: 10,
            past: Past::Ignore,
        };
        let got = read_bounded(&mut &body[..], bound, clock.get() + FAR, &|| clock.get(), 0);
        assert_eq!(got.unwrap(), &body[50_000..50_010]);
        let mut r = endless(&clock, 1 << 20, Duration::ZERO);
        let bound = Bound {
            skip: 0,
            keep: ERROR_BODY_MAX,
            past: Past::Ignore,
        };
        let got = read_bounded(&mut r, bound, clock.get() + FAR, &|| clock.get(), 0);
        assert_eq!(got.unwrap().len() as u64, ERROR_BODY_MAX);
        assert_eq!(r.served, ERROR_BODY_MAX);
    }

    #[test]
    fn a_trickling_body_fails_at_its_deadline() {
        // One byte every 2 s; a 4096-byte body with a 30 s read timeout has 30 s.
        let clock = Cell::new(Instant::now());
        let start = clock.get();
        let mut r = endless(&clock, 1, Duration::from_secs(2));
        let bound = Bound {
            skip: 0,
            keep: 4096,
            past: Past::Refuse,
        };
        let deadline = start + body_deadline(Duration::from_secs(30), 4096);
        let err = read_bounded(&mut r, bound, deadline, &|| clock.get(), 4096);
        assert!(
            matches!(err, Err(BodyError::Deadline { got: 16 })),
            "{err:?}"
        );
        assert!(clock.get() - start <= Duration::from_secs(32));
    }

    #[test]
    fn deadlines_grow_with_the_size_from_the_read_timeout() {
        let rt = Duration::from_secs(30);
        assert_eq!(body_deadline(rt, 0), rt);
        assert_eq!(body_deadline(rt, 4 << 20), rt + Duration::from_secs(64));
    }
}
