//! Snapshots, compaction levels and retention in config files: Litestream's defaults, the
//! keys that apply to every replica, and `retention: bucket-lifecycle` at any level.

use std::path::Path;
use std::time::Duration;

use super::{env, err_text, parse, Only, FILE};

#[test]
fn lifecycle_keys_apply_to_every_replica_with_litestream_defaults() {
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/a}\n",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        cfg.dbs[0].1[0].lifecycle,
        crate::lifecycle::Lifecycle::default()
    );
    let text = r#"
snapshot: {interval: 1h, retention: 72h}
levels:
  - interval: 10s
  - interval: 2m
l0-retention: 0
dbs:
  - path: /a.db
    replica: {url: s3://bbb/a}
"#;
    let cfg = parse(text, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let l = &cfg.dbs[0].1[0].lifecycle;
    assert_eq!(l.snapshot_interval, Duration::from_secs(3600));
    assert_eq!(l.snapshot_retention, Duration::from_secs(72 * 3600));
    assert_eq!(
        l.levels,
        vec![Duration::from_secs(10), Duration::from_secs(120)]
    );
    assert_eq!(l.l0_retention, Duration::ZERO);
    assert_eq!(&cfg.lifecycle, l);
    let err = parse("levels: [{interval: 30s}, {}]\ndbs: []\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("levels[1]") && err.contains("interval"),
        "{err}"
    );
    let err = parse("snapshot: daily\ndbs: []\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("snapshot") && err.contains("mapping"), "{err}");
    let per_db = "dbs:\n  - path: /a.db\n    snapshot: {retention: 48h}\n    replica: {url: s3://bbb/a}\n  - path: /b.db\n    replica: {url: s3://bbb/b}\n";
    let cfg = parse(per_db, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    for rc in cfg.dbs.iter().flat_map(|(_, replicas)| replicas) {
        assert_eq!(
            rc.lifecycle.snapshot_retention,
            Duration::from_secs(48 * 3600)
        );
    }
    let top_wins = format!("snapshot: {{retention: 1h}}\n{per_db}");
    let cfg = parse(&top_wins, &env(&[])).unwrap();
    assert_eq!(
        cfg.dbs[0].1[0].lifecycle.snapshot_retention,
        Duration::from_secs(3600)
    );
    let conflict = per_db.replace(
        "  - path: /b.db\n",
        "  - path: /b.db\n    snapshot: {retention: 12h}\n",
    );
    let err = parse(&conflict, &env(&[])).unwrap_err().to_string();
    assert!(
        err.contains("dbs[1].snapshot.retention") && err.contains("conflicts"),
        "{err}"
    );
    let cfg = parse("snapshot: {intervall: 1h}\ndbs: []\n", &env(&[])).unwrap();
    assert!(
        cfg.warnings.iter().any(|w| w.key == "snapshot.intervall"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn retention_bucket_lifecycle_leaves_deletes_to_the_bucket_at_any_level() {
    use crate::config::Resolver;
    use crate::lifecycle::Expiry;
    let expiries = |text: &str| -> Vec<Expiry> {
        let cfg = parse(text, &env(&[])).unwrap();
        assert!(
            cfg.warnings.iter().all(|w| !w.key.contains("retention")),
            "{:?}",
            cfg.warnings
        );
        cfg.dbs
            .iter()
            .flat_map(|(_, replicas)| replicas)
            .map(|rc| rc.lifecycle.expiry)
            .collect()
    };
    let two = "dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/a}\n  - path: /b.db\n    replica: {url: s3://bbb/b}\n";
    assert_eq!(expiries(two), vec![Expiry::Uploader, Expiry::Uploader]);
    let top = format!("retention: bucket-lifecycle\nlevels: [{{interval: 10s}}]\n{two}");
    assert_eq!(
        expiries(&top),
        vec![Expiry::BucketLifecycle, Expiry::BucketLifecycle]
    );
    assert_eq!(
        expiries(
            "skip-remote-deletion: true\n{two}"
                .replace("{two}", two)
                .as_str()
        )[1],
        Expiry::BucketLifecycle
    );
    let per_db = two.replace(
        "  - path: /b.db\n",
        "  - path: /b.db\n    retention: Bucket-Lifecycle\n",
    );
    assert_eq!(
        expiries(&per_db),
        vec![Expiry::Uploader, Expiry::BucketLifecycle]
    );
    let per_replica = two.replace(
        "{url: s3://bbb/a}",
        "{url: s3://bbb/a, retention: bucket-lifecycle}",
    );
    assert_eq!(
        expiries(&per_replica),
        vec![Expiry::BucketLifecycle, Expiry::Uploader]
    );
    // The rest of the file's lifecycle still applies to the entry, also once resolved, and
    // databases the file does not name take the top level's.
    let (resolver, _) = Resolver::from_config_text(
        env(&[("REPLICA_URL", "s3://bbb/other")]),
        Path::new(FILE),
        &top.replace("retention: bucket-lifecycle\n", "").replace(
            "{url: s3://bbb/a}",
            "{url: s3://bbb/a, retention: bucket-lifecycle}",
        ),
    )
    .unwrap();
    let a = resolver
        .resolve(Path::new("/a.db"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(a.lifecycle.expiry, Expiry::BucketLifecycle);
    assert_eq!(a.lifecycle.levels, vec![Duration::from_secs(10)]);
    let other = resolver
        .resolve(Path::new("/c.db"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(other.lifecycle.expiry, Expiry::Uploader);
    let (resolver, _) = Resolver::from_config_text(
        env(&[("REPLICA_URL", "s3://bbb/other")]),
        Path::new(FILE),
        &top,
    )
    .unwrap();
    let other = resolver
        .resolve(Path::new("/c.db"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(other.lifecycle.expiry, Expiry::BucketLifecycle);
    // The load says so, for each database the file names and for REPLICA_URL's.
    let summary = resolver.summary();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert!(
        summary
            .iter()
            .all(|l| l.contains("(retention: bucket-lifecycle)")),
        "{summary:?}"
    );

    // Litestream's durations are accepted and not used, as before; a wrong value is an
    // error naming the key.
    let litestream = two.replace("{url: s3://bbb/a}", "{url: s3://bbb/a, retention: 72h}");
    let cfg = parse(&litestream, &env(&[])).unwrap();
    assert_eq!(cfg.dbs[0].1[0].lifecycle.expiry, Expiry::Uploader);
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.key == "dbs[0].replica.retention" && w.message.contains("not used")),
        "{:?}",
        cfg.warnings
    );
    let typo = two.replace(
        "  - path: /b.db\n",
        "  - path: /b.db\n    retention: bucket-lifecyle\n",
    );
    let err = err_text(parse(&typo, &env(&[])));
    assert!(
        err.contains("dbs[1].retention")
            && err.contains("\"bucket-lifecyle\"")
            && err.contains("did you mean `bucket-lifecycle`"),
        "{err}"
    );
    let err = err_text(parse(&format!("retention: [1]\n{two}"), &env(&[])));
    assert!(
        err.contains(": retention: expected `bucket-lifecycle`"),
        "{err}"
    );
    let dir =
        "retention: bucket-lifecycle\ndbs:\n  - path: /a.db\n    replica: {path: /backups/a}\n";
    let cfg = parse(dir, &env(&[])).unwrap();
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.key == "dbs[0]" && w.message.contains("directory replica")),
        "{:?}",
        cfg.warnings
    );
    let err = err_text(parse(
        &format!("skip-remote-deletion: sure\n{two}"),
        &env(&[]),
    ));
    assert!(err.contains("skip-remote-deletion"), "{err}");
}
