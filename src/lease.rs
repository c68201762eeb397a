//! The replica's lease: one object beside the LTX files naming the uploader that may write
//! to the replica, and until when. Written only by compare-and-swap (conditional PUT), it
//! fences out an uploader on another host, or an overlapping container with its own volume,
//! that points at the same replica (on one host the spool lock already decides). This
//! module is pure: encoding, and the decision to take the lease or stand back; the
//! uploader does the requests. It must not do I/O.

/// How long a lease lasts without renewal. An uploader renews it before writing once less
/// than half is left, so a busy replica costs one extra PUT per half-period and an idle one
/// none; another host takes over at most this long after the holder stops.
pub const LEASE_TTL_MS: u64 = 60_000;
/// How far ahead of ours another host's clock may run before its lease stops being
/// believed. An uploader writes `expires_ms` as its own now + TTL, so from here a lease may
/// claim up to now + TTL + this; a lease claiming more was written by a clock too far ahead
/// or by hand, and honouring it would stop replication until then (for ever, for a
/// far-future one).
pub const CLOCK_SKEW_ALLOWANCE_MS: u64 = 2 * LEASE_TTL_MS;
/// The lease object's name, beside `<level>/` under the replica's prefix.
pub const LEASE_NAME: &str = "lease";

/// The lease object's key in a replica whose objects lie under `prefix` ("" for none).
pub fn key(prefix: &str) -> String {
    if prefix.is_empty() {
        LEASE_NAME.to_string()
    } else {
        format!("{prefix}/{LEASE_NAME}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: host name and spool id (see [`owner_id`]).
    pub owner: String,
    pub expires_ms: u64,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        format!("owner={}\nexpires_ms={}\n", self.owner, self.expires_ms).into_bytes()
    }

    /// `None` for something that is not a lease (then it is taken over as if expired: a
    /// garbled lease must not stop replication for ever).
    pub fn decode(body: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(body).ok()?;
        let mut owner = None;
        let mut expires_ms = None;
        // A line's trailing CRs are its ending, also on a last line without a newline.
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            match line.split_once('=') {
                Some(("owner", v)) => owner = Some(v.to_string()),
                Some(("expires_ms", v)) => expires_ms = v.trim().parse().ok(),
                _ => {}
            }
        }
        Some(Lease {
            owner: owner?,
            expires_ms: expires_ms?,
        })
    }
}

/// What an uploader does with the lease it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// None, ours, expired, unreadable or beyond belief: write ours over it (conditionally).
    Take,
    /// Another uploader's, still valid: do not write to the replica before `until`.
    Held { owner: String, until: u64 },
}

/// [`decide_with_ttl`] for leases of [`LEASE_TTL_MS`].
pub fn decide(found: Option<&[u8]>, me: &str, now: u64) -> Decision {
    decide_with_ttl(found, me, now, LEASE_TTL_MS)
}

/// Whether to take the lease `found` (the object's body, if any) or stand back, at `now`,
/// for leases that last `ttl_ms`. Another uploader's lease holds until its expiry, unless
/// that lies beyond now + TTL + [`CLOCK_SKEW_ALLOWANCE_MS`]: no uploader whose clock agrees
/// with ours within the allowance can have written it, and a holder must renew within the
/// TTL like everyone else, so it is taken over as if expired. (Waiting for the allowance
/// instead would not end it: the next look would find the same expiry beyond it again.)
pub fn decide_with_ttl(found: Option<&[u8]>, me: &str, now: u64, ttl_ms: u64) -> Decision {
    let believable = now
        .saturating_add(ttl_ms)
        .saturating_add(CLOCK_SKEW_ALLOWANCE_MS);
    match found.map(Lease::decode) {
        Some(Some(l)) if l.owner != me && l.expires_ms > now && l.expires_ms <= believable => {
            Decision::Held {
                owner: l.owner,
                until: l.expires_ms,
            }
        }
        _ => Decision::Take,
    }
}

/// An uploader's name in the lease: its host and its spool's lasting id (the spool lock
/// already makes one process per spool the uploader).
pub fn owner_id(host: &str, spool_id: &str) -> String {
    format!("{host}:{spool_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_trip_and_garbage_is_not_one() {
        let l = Lease {
            owner: owner_id("web-1", "00000000000000a7"),
            expires_ms: 123_456,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(b"hello"), None);
        assert_eq!(Lease::decode(b"owner=x\n"), None);
    }

    #[test]
    fn a_lease_reads_the_same_after_it_is_written_back() {
        // The class the spool_state fuzz target found in the state file: a last line ending
        // in CR (no newline) kept the CR in the owner, and the lease written back read
        // without it.
        let l = Lease::decode(b"expires_ms=5\nowner=b:2\r").unwrap();
        assert_eq!(l.owner, "b:2");
        assert_eq!(Lease::decode(&l.encode()), Some(l));
    }

    #[test]
    fn take_unless_another_holder_is_still_valid() {
        let mine = owner_id("a", "1");
        let theirs = Lease {
            owner: owner_id("b", "2"),
            expires_ms: 10_000,
        }
        .encode();
        assert_eq!(decide(None, &mine, 0), Decision::Take);
        assert_eq!(
            decide(Some(&theirs), &mine, 9_999),
            Decision::Held {
                owner: owner_id("b", "2"),
                until: 10_000
            }
        );
        assert_eq!(
            decide(Some(&theirs), &mine, 10_000),
            Decision::Take,
            "expired"
        );
        let own = Lease {
            owner: mine.clone(),
            expires_ms: 99_999,
        }
        .encode();
        assert_eq!(decide(Some(&own), &mine, 0), Decision::Take, "renewal");
        assert_eq!(decide(Some(b"garbage"), &mine, 0), Decision::Take);
    }

    #[test]
    fn a_far_future_lease_is_capped() {
        let mine = owner_id("a", "1");
        let theirs = |expires_ms| {
            Lease {
                owner: owner_id("b", "2"),
                expires_ms,
            }
            .encode()
        };
        let now = 1_767_225_600_000; // 2026-01-01
        let held = |until| Decision::Held {
            owner: owner_id("b", "2"),
            until,
        };
        // Written by a host whose clock runs a minute ahead: honoured until it expires.
        let ahead = now + LEASE_TTL_MS + 60_000;
        assert_eq!(decide(Some(&theirs(ahead)), &mine, now), held(ahead));
        // Right at the allowance: still honoured.
        let edge = now + LEASE_TTL_MS + CLOCK_SKEW_ALLOWANCE_MS;
        assert_eq!(decide(Some(&theirs(edge)), &mine, now), held(edge));
        // Beyond it (a clock hours ahead, a lease written by hand for the year 2100, the
        // largest expiry there is): taken over at once, not waited for.
        for far in [edge + 1, now + 3_600_000, 4_102_444_800_000, u64::MAX] {
            assert_eq!(
                decide(Some(&theirs(far)), &mine, now),
                Decision::Take,
                "{far}"
            );
        }
        // The allowance goes with the TTL, and does not overflow.
        let short = now + 2_000 + CLOCK_SKEW_ALLOWANCE_MS;
        assert_eq!(
            decide_with_ttl(Some(&theirs(short)), &mine, now, 2_000),
            held(short)
        );
        assert_eq!(
            decide_with_ttl(Some(&theirs(short + 1)), &mine, now, 2_000),
            Decision::Take
        );
        assert_eq!(
            decide_with_ttl(Some(&theirs(u64::MAX)), &mine, u64::MAX - 1, u64::MAX),
            held(u64::MAX)
        );
    }
}
