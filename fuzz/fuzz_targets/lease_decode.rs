//! Feeds arbitrary bytes to the lease decoder and the decision built on it, as the lease
//! object another host (or whoever can write the bucket) left: the first 16 bytes are the
//! clock and the TTL, the rest the object's body. Nothing may panic; another holder's lease
//! is honoured only until an expiry within now + TTL + the clock-skew allowance; a decoded
//! lease encodes to the same lease.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::lease::{decide_with_ttl, Decision, Lease, CLOCK_SKEW_ALLOWANCE_MS};

const ME: &str = "host-a:00000000000000a7";

fuzz_target!(|data: &[u8]| {
    let (now, ttl, body) = match data.split_first_chunk::<16>() {
        Some((head, body)) => (
            u64::from_be_bytes(head[..8].try_into().unwrap()),
            u64::from_be_bytes(head[8..].try_into().unwrap()),
            body,
        ),
        None => (1_767_225_600_000, 60_000, data),
    };
    let decoded = Lease::decode(body);
    if let Some(l) = &decoded {
        assert_eq!(Lease::decode(&l.encode()).as_ref(), Some(l));
    }
    for found in [Some(body), Some(data), None] {
        match decide_with_ttl(found, ME, now, ttl) {
            Decision::Take => {}
            Decision::Held { owner, until } => {
                assert!(found.is_some() && owner != ME);
                assert!(until > now, "held until {until}, now {now}");
                let believable = now
                    .saturating_add(ttl)
                    .saturating_add(CLOCK_SKEW_ALLOWANCE_MS);
                assert!(until <= believable, "held until {until} > {believable}");
            }
        }
    }
});
