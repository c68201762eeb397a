//! The endpoint's addresses, looked up once a while rather than per request. `ureq` looks
//! the host up before every request, a kept-alive connection's too, and with a deadline
//! (every request has one) it does so on a new thread each time: a thread started and
//! woken per PUT, on the path from a commit to its upload. This keeps the last lookup for
//! [`KEEP_FOR`] and forgets it when a request fails in transit, so a moved endpoint is
//! looked up again at once. The lookup itself stays `ureq`'s, bounded by the request's
//! deadline.

use crate::base::lock::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a lookup's addresses are used. Name changes of an S3 endpoint are rare and a
/// failed request forgets them anyway; a minute keeps the lookups to one a minute at most.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// The lookup the cache stands in front of (a test counts its calls).
type Lookup = fn(&Uri, &Config, NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error>;

fn default_lookup(
    uri: &Uri,
    config: &Config,
    timeout: NextTimeout,
) -> Result<ResolvedSocketAddrs, ureq::Error> {
    DefaultResolver::default().resolve(uri, config, timeout)
}

/// The agent's resolver; clones share what was looked up.
#[derive(Clone)]
pub(super) struct KeptAddresses {
    kept: Arc<Mutex<Option<Kept>>>,
    lookup: Lookup,
}

struct Kept {
    /// `scheme://authority` looked up.
    origin: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

impl std::fmt::Debug for KeptAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptAddresses")
    }
}

impl Default for KeptAddresses {
    fn default() -> Self {
        KeptAddresses::with_lookup(default_lookup)
    }
}

fn origin_of(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let authority = uri.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{authority}")
}

impl KeptAddresses {
    fn with_lookup(lookup: Lookup) -> Self {
        KeptAddresses {
            kept: Arc::default(),
            lookup,
        }
    }

    /// Drops what was looked up: the next request looks the host up again.
    pub(super) fn forget(&self) {
        *lock(&self.kept) = None;
    }

    /// The addresses kept for `origin`, if looked up less than [`KEEP_FOR`] before `now`.
    fn fresh(&self, origin: &str, now: Instant) -> Option<ResolvedSocketAddrs> {
        let kept = lock(&self.kept);
        kept.as_ref()
            .filter(|k| k.origin == origin && now.saturating_duration_since(k.at) < KEEP_FOR)
            .map(|k| k.addrs.clone())
    }
}

impl Resolver for KeptAddresses {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let origin = origin_of(uri);
        if let Some(addrs) = self.fresh(&origin, Instant::now()) {
            return Ok(addrs);
        }
        let addrs = (self.lookup)(uri, config, timeout)?;
        *lock(&self.kept) = Some(Kept {
            origin,
            at: Instant::now(),
            addrs: addrs.clone(),
        });
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use ureq::Timeout;

    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    fn counted(uri: &Uri, _: &Config, _: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        LOOKUPS.fetch_add(1, Ordering::SeqCst);
        let port = uri.port_u16().unwrap_or(443);
        let mut addrs = KeptAddresses::default().empty();
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
        Ok(addrs)
    }

    fn resolve(names: &KeptAddresses, url: &str) -> Vec<SocketAddr> {
        let config = ureq::Agent::config_builder().build();
        let timeout = NextTimeout {
            after: Duration::from_secs(5).into(),
            reason: Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let uri: Uri = url.parse().unwrap();
        names.resolve(&uri, &config, timeout).unwrap().to_vec()
    }

    /// One lookup serves later requests to the same endpoint; another endpoint, a failure
    /// (`forget`) and age each look it up again.
    #[test]
    fn a_lookup_is_kept_for_the_same_endpoint_until_forgotten_or_old() {
        let names = KeptAddresses::with_lookup(counted);
        let a = resolve(&names, "http://bucket.example:9000/k1");
        assert_eq!(resolve(&names, "http://bucket.example:9000/k2?x=1"), a);
        assert_eq!(LOOKUPS.load(Ordering::SeqCst), 1);
        resolve(&names, "http://bucket.example:9001/k");
        assert_eq!(LOOKUPS.load(Ordering::SeqCst), 2, "another port");
        names.forget();
        resolve(&names, "http://bucket.example:9001/k");
        assert_eq!(LOOKUPS.load(Ordering::SeqCst), 3, "forgotten");
        let now = Instant::now();
        let origin = "http://bucket.example:9001";
        assert!(names.fresh(origin, now).is_some());
        assert!(names.fresh(origin, now + KEEP_FOR).is_none(), "too old");
    }
}
