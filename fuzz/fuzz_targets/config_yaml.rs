//! Feeds arbitrary bytes to the whole resolve of a config file, as the bounded read hands
//! them over: `config::config_text` (size, UTF-8), `Resolver::from_config_text` (the YAML
//! limits, parsing, the environment's settings) and `Resolver::resolve` for every database
//! the file names, with and without a URI parameter. Nothing may panic, hang or allocate
//! without bound (an alias bomb must be refused, not expanded); every resolved destination
//! has a valid name and no database two with the same name or target; no error, warning or
//! resolved setting shows the secret keys the environment supplies unless the file refers
//! to their variables itself.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use replica::config::{config_text, Env, Resolver};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLE-SESSION-TOKEN";

fn env() -> Env {
    Env::new(
        "/srv/app",
        [
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            ("HOME", "/home/app"),
            ("DATA", "/var/lib/app"),
            ("BUCKET", "backups"),
        ],
    )
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/etc/litestream.yml");
    let mut shown = Vec::new();
    match config_text(path, data.to_vec())
        .and_then(|text| Resolver::from_config_text(env(), path, &text))
    {
        Err(e) => shown.push(format!("{e} {e:?}")),
        Ok((resolver, warnings)) => {
            shown.extend(warnings.iter().map(|w| format!("{w} {w:?}")));
            shown.push(format!("{resolver:?}"));
            let dbs: Vec<_> = resolver
                .config_file()
                .map(|f| f.dbs.iter().map(|(p, _)| p.clone()).collect())
                .unwrap_or_default();
            let params = [("replica_sync_interval".to_string(), "250ms".to_string())];
            for db in &dbs {
                for uri in [&[][..], &params[..]] {
                    match resolver.resolve(db, uri) {
                        Ok(Some(destinations)) => {
                            assert!(!destinations.is_empty());
                            for (i, rc) in destinations.iter().enumerate() {
                                assert!(!rc.sync_interval.is_zero() && !rc.lease_ttl.is_zero());
                                assert!(rc.validation_interval.is_none_or(|d| !d.is_zero()));
                                assert!((1..=32).contains(&rc.name.len()), "{:?}", rc.name);
                                assert!(destinations[..i]
                                    .iter()
                                    .all(|o| o.name != rc.name && o.url() != rc.url()));
                                shown.push(format!("{} {rc:?}", rc.url()));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => shown.push(format!("{e} {e:?}")),
                    }
                }
            }
        }
    }
    let refers = |var: &str| data.windows(var.len()).any(|w| w == var.as_bytes());
    for s in &shown {
        if !refers("AWS_SECRET_ACCESS_KEY") {
            assert!(!s.contains(SECRET), "{s}");
        }
        if !refers("AWS_SESSION_TOKEN") {
            assert!(!s.contains(TOKEN), "{s}");
        }
    }
});
