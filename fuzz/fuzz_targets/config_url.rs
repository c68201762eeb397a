//! Feeds arbitrary text to the replica URL parser (`replica::config::parse_replica_url`, what
//! `replica=`, `REPLICA_URL` and a config file's `url:` go through). Nothing may panic; a URL
//! that parses renders (`url()`) to one that parses to the same location; neither the
//! rendering nor any error carries the secret key the environment supplies (unless the URL
//! itself holds it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::config::{parse_replica_url, Env, ReplicaTarget};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

fn env() -> Env {
    Env::new(
        "/srv/app",
        [
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("HOME", "/home/app"),
        ],
    )
}

/// The location, without credentials and timeouts (which a display URL does not carry).
fn location(t: &ReplicaTarget) -> ReplicaTarget {
    match t {
        ReplicaTarget::File { .. } => t.clone(),
        ReplicaTarget::S3(s) => {
            let mut s = s.clone();
            s.credentials = None;
            s.timeouts = Default::default();
            ReplicaTarget::S3(s)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let env = env();
    match parse_replica_url(url, &env) {
        Ok(target) => {
            let shown = target.url();
            // The key may be in what was given (as a path, say), never from the environment.
            if !url.contains(SECRET) {
                assert!(!shown.contains(SECRET), "{shown}");
                assert!(!format!("{target:?}").contains(SECRET));
            }
            let again = parse_replica_url(&shown, &env)
                .unwrap_or_else(|e| panic!("{shown:?} does not parse again: {e}"));
            assert_eq!(location(&again), location(&target), "{shown:?}");
        }
        Err(e) => {
            assert!(!e.to_string().contains(SECRET) || url.contains(SECRET));
        }
    }
});
