//! The database's own settings as the resolver gives them: the boot-time restore, the
//! restore drills' interval, the shutdown wait and the lease's time to live, the entry's
//! over the top level's, the environment's over both, and bad values naming the key or
//! variable.

use std::path::Path;
use std::time::Duration;

use super::{env, err_text, params, parse, warning_for, Only, FILE};
use crate::config::{Resolver, DEFAULT_RESTORE_IF_MISSING, DEFAULT_SHUTDOWN_SYNC_TIMEOUT};

const OPERATIONAL_KEYS: &str = r#"
validation-interval: 1h
shutdown-sync-timeout: 10s
dbs:
  - path: /a.db
    restore-if-db-not-exists: false
    replica: {url: /bk/a, validation-interval: 5m}
  - path: /b.db
    replica: {url: /bk/b}
  - path: /c.db
    restore-if-db-not-exists: true
    replica: {url: /bk/c, validation-interval: 0}
"#;

/// (restore_if_missing, validation_interval, shutdown_sync_timeout) of a resolved database.
fn operational(r: &Resolver, db: &str) -> (bool, Option<Duration>, Duration) {
    let rc = r.resolve(Path::new(db), &[]).unwrap().unwrap().only();
    (
        rc.restore_if_missing,
        rc.validation_interval,
        rc.shutdown_sync_timeout,
    )
}

#[test]
fn restore_validation_and_shutdown_keys_db_over_top() {
    let (min, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
    let cfg = parse(OPERATIONAL_KEYS, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.global_validation_interval, Some(hour));
    assert_eq!(cfg.shutdown_sync_timeout, Some(Duration::from_secs(10)));
    let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg)).unwrap();
    let ten = Duration::from_secs(10);
    // The entry's own setting, else the top level's (`0` turns the top level's off).
    assert_eq!(operational(&r, "/a.db"), (false, Some(5 * min), ten));
    assert_eq!(operational(&r, "/b.db"), (true, Some(hour), ten));
    assert_eq!(operational(&r, "/c.db"), (true, None, ten));
    // A database the file does not name takes the top level's.
    assert_eq!(operational(&r, "/x/other.db"), (true, Some(hour), ten));
    let p = params(&[("replica", "/uri/a")]);
    let rc = r.resolve(Path::new("/a.db"), &p).unwrap().unwrap().only();
    assert_eq!(
        (rc.restore_if_missing, rc.validation_interval),
        (true, Some(hour))
    );
    assert!(r.schedules_drills());

    // Nothing configured: Litestream's keys default as documented.
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    replica: {url: /bk/a}\n",
        &env(&[]),
    )
    .unwrap();
    let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg)).unwrap();
    let defaults = (
        DEFAULT_RESTORE_IF_MISSING,
        None,
        DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
    );
    assert_eq!(operational(&r, "/a.db"), defaults);
    assert_eq!(operational(&r, "/x/other.db"), defaults);
    assert!(!r.schedules_drills());
    let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), None).unwrap();
    assert_eq!(operational(&r, "/x/other.db"), defaults);

    // Zero is a value for both durations: no drills, no wait at the last close.
    let cfg = parse(
        "validation-interval: 0s\nshutdown-sync-timeout: 0\ndbs:\n  - path: /a.db\n    replica: {url: /bk/a}\n",
        &env(&[]),
    )
    .unwrap();
    let r = Resolver::new(env(&[]), Some(cfg)).unwrap();
    assert_eq!(operational(&r, "/a.db"), (true, None, Duration::ZERO));
    assert!(!r.schedules_drills());
    // Only one database's own interval still needs the scheduler.
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    replica: {url: /bk/a, validation-interval: $VI}\n",
        &env(&[("VI", "90s")]),
    )
    .unwrap();
    assert_eq!(
        cfg.dbs[0].1[0].validation_interval,
        Some(Duration::from_secs(90))
    );
    assert!(Resolver::new(env(&[]), Some(cfg))
        .unwrap()
        .schedules_drills());
}

#[test]
fn restore_validation_and_shutdown_keys_env_over_file() {
    let cfg = parse(OPERATIONAL_KEYS, &env(&[])).unwrap();
    let with = |vars: &[(&str, &str)]| Resolver::new(env(vars), Some(cfg.clone())).unwrap();
    let r = with(&[
        ("REPLICA_RESTORE_IF_MISSING", "1"),
        ("REPLICA_VALIDATION_INTERVAL", "30s"),
        ("REPLICA_SHUTDOWN_SYNC_TIMEOUT", "500ms"),
    ]);
    let (half, thirty) = (Duration::from_millis(500), Duration::from_secs(30));
    for db in ["/a.db", "/b.db", "/c.db"] {
        assert_eq!(operational(&r, db), (true, Some(thirty), half), "{db}");
    }
    let r = with(&[
        ("REPLICA_RESTORE_IF_MISSING", "off"),
        ("REPLICA_VALIDATION_INTERVAL", "0"),
        ("REPLICA_SHUTDOWN_SYNC_TIMEOUT", "0"),
    ]);
    for db in ["/a.db", "/b.db", "/c.db"] {
        assert_eq!(operational(&r, db), (false, None, Duration::ZERO), "{db}");
    }
    assert!(!r.schedules_drills());
    // Blank is unset: the file decides.
    let r = with(&[
        ("REPLICA_RESTORE_IF_MISSING", " "),
        ("REPLICA_VALIDATION_INTERVAL", ""),
    ]);
    assert_eq!(
        operational(&r, "/a.db"),
        (
            false,
            Some(Duration::from_secs(300)),
            Duration::from_secs(10)
        )
    );
    // Bad values fail, naming the variable.
    for (var, value, reason) in [
        (
            "REPLICA_RESTORE_IF_MISSING",
            "maybe",
            "expected 1 or 0 (on/off, true/false), got \"maybe\"",
        ),
        (
            "REPLICA_VALIDATION_INTERVAL",
            "often",
            "expected a duration like 1s or 500ms, got \"often\"",
        ),
        (
            "REPLICA_SHUTDOWN_SYNC_TIMEOUT",
            "2",
            "expected a duration like 1s or 500ms, got \"2\"",
        ),
    ] {
        let e = Resolver::new(env(&[(var, value)]), Some(cfg.clone()))
            .unwrap_err()
            .to_string();
        assert_eq!(e, format!("environment variable {var}: {reason}"));
    }
}

#[test]
fn restore_validation_and_shutdown_keys_bad_values_name_the_key() {
    for (text, expected) in [
        (
            "dbs:\n  - path: /a.db\n    restore-if-db-not-exists: maybe\n    replica: {url: /bk/a}\n",
            "dbs[0].restore-if-db-not-exists: expected true or false, got \"maybe\"",
        ),
        (
            "dbs:\n  - path: /a.db\n    restore-if-db-not-exists: 1\n    replica: {url: /bk/a}\n",
            "dbs[0].restore-if-db-not-exists: expected true or false, got 1",
        ),
        (
            "validation-interval: soon\ndbs: []\n",
            "validation-interval: expected a duration like 1s or 500ms, got \"soon\"",
        ),
        (
            "dbs:\n  - path: /a.db\n    replicas:\n      - url: /bk/a\n        validation-interval: 5\n",
            "dbs[0].replicas[0].validation-interval: expected a duration like 1s or 500ms, got 5 (a number needs a unit)",
        ),
        (
            "shutdown-sync-timeout: -1s\ndbs: []\n",
            "shutdown-sync-timeout: expected a duration like 1s or 500ms, got \"-1s\"",
        ),
        (
            "shutdown-sync-timeout: {seconds: 2}\ndbs: []\n",
            "shutdown-sync-timeout: expected a duration like 1s or 500ms, got a mapping",
        ),
    ] {
        let msg = err_text(parse(text, &env(&[])));
        assert_eq!(msg, format!("{FILE}: {expected}"), "{text}");
    }
    // In the wrong place they are ignored with a warning that says where they go.
    let cfg = parse(
        "restore-if-db-not-exists: false\ndbs:\n  - path: /a.db\n    validation-interval: 1h\n    replica: {url: /bk/a, restore-if-db-not-exists: false}\n",
        &env(&[]),
    )
    .unwrap();
    let msg = |key: &str| warning_for(&cfg, key);
    assert!(msg("restore-if-db-not-exists").contains("is a database setting"));
    assert!(msg("dbs[0].validation-interval").contains("is a replica setting"));
    assert!(msg("dbs[0].replica.restore-if-db-not-exists").contains("is a database setting"));
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    shutdown-sync-timeout: 1s\n    replica: {url: /bk/a}\n",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        cfg.warnings[0].to_string(),
        "litestream.yml: dbs[0].shutdown-sync-timeout: `shutdown-sync-timeout` is a top-level setting and is ignored here; put it at the top of the file, outside `dbs:`"
    );
    assert_eq!(
        cfg.dbs[0].1[0].shutdown_sync_timeout,
        DEFAULT_SHUTDOWN_SYNC_TIMEOUT
    );
    assert!(cfg.dbs[0].1[0].restore_if_missing);
    assert_eq!(cfg.dbs[0].1[0].validation_interval, None);
}

#[test]
fn lease_ttl_comes_from_the_environment_and_bad_values_name_the_variable() {
    let cfg = parse(OPERATIONAL_KEYS, &env(&[])).unwrap();
    let ttl = |vars: &[(&str, &str)]| {
        Resolver::new(env(vars), Some(cfg.clone()))
            .unwrap()
            .resolve(Path::new("/a.db"), &[])
            .unwrap()
            .unwrap()
            .only()
            .lease_ttl
    };
    assert_eq!(ttl(&[]), crate::config::DEFAULT_LEASE_TTL);
    assert_eq!(ttl(&[("REPLICA_LEASE_TTL", "2s")]), Duration::from_secs(2));
    for (value, reason) in [
        ("soon", "expected a duration like 1s or 500ms, got \"soon\""),
        ("0", "must be greater than zero, got \"0\""),
    ] {
        let e = Resolver::new(env(&[("REPLICA_LEASE_TTL", value)]), Some(cfg.clone()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("environment variable REPLICA_LEASE_TTL: {reason}")
        );
    }
}
