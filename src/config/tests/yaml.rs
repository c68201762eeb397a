//! Reading config files: the `replica`/`replicas` forms, `$VAR` expansion, relative paths, s3
//! and lifecycle settings, YAML anchors and merge keys, and the errors and warnings that name
//! the key path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{env, err_text, file_dir, parse, s3, warning_for, FILE};
use crate::config::env::expand_vars;
use crate::config::{parse_replica_url, S3Timeouts};

#[test]
fn var_expansion() {
    let e = env(&[("A", "alpha"), ("B", "beta"), ("EMPTY", "")]);
    let x = |s: &str| expand_vars(s, &e).unwrap();
    assert_eq!(x("$A").value, "alpha");
    assert_eq!(x("${A}").value, "alpha");
    assert_eq!(x("pre-${A}-$B/post").value, "pre-alpha-beta/post");
    assert_eq!(x("$A_x").value, ""); // the name is A_x, as in Go's os.Expand
    assert_eq!(x("${A}_x").value, "alpha_x");
    assert_eq!(x("cost $$5").value, "cost $5");
    assert_eq!(x("a$").value, "a$");
    assert_eq!(x("$1").value, "$1");
    let t = x("$NOPE");
    assert_eq!(
        (t.value.as_str(), t.unset.clone()),
        ("", vec!["NOPE".to_string()])
    );
    assert_eq!(x("${EMPTY}").empty, vec!["EMPTY".to_string()]);
    assert!(expand_vars("${A", &e)
        .err()
        .unwrap()
        .contains("unterminated"));
    assert!(expand_vars("${A-B}", &e).is_err());

    let cfg = parse(
        "dbs:\n  - path: ${DB_DIR}/$DB_NAME\n    replica:\n      type: s3\n      bucket: ${BUCKET}\n      path: $PREFIX\n",
        &env(&[("DB_DIR", "/data"), ("DB_NAME", "app.db"), ("BUCKET", "bkt"), ("PREFIX", "a/b")]),
    )
    .unwrap();
    assert_eq!(cfg.dbs[0].0, PathBuf::from("/data/app.db"));
    let t = s3(&cfg.dbs[0].1[0].target);
    assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("bkt", "a/b"));
}

#[test]
fn replica_and_replicas_forms() {
    let single = "dbs:\n  - path: /data/app.db\n    replica:\n      url: file:///var/backups/app\n      sync-interval: 5s\n";
    let list = "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file:///var/backups/app\n        sync-interval: 5s\n";
    for text in [single, list] {
        let cfg = parse(text, &env(&[])).unwrap();
        assert_eq!(cfg.dbs.len(), 1);
        let (db, replicas) = &cfg.dbs[0];
        let [rc] = &replicas[..] else {
            panic!("expected one replica, got {replicas:?}")
        };
        assert_eq!(db, Path::new("/data/app.db"));
        assert_eq!(file_dir(&rc.target), Path::new("/var/backups/app"));
        assert_eq!(rc.sync_interval, Duration::from_secs(5));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }
    let both = "dbs:\n  - path: /a.db\n    replica: {url: /x}\n    replicas: [{url: /y}]\n";
    assert!(err_text(parse(both, &env(&[]))).contains("dbs[0]: cannot specify both"));
    let none = "dbs:\n  - path: /a.db\n";
    assert!(err_text(parse(none, &env(&[]))).contains("dbs[0]: no replica configured"));
    let empty_list = "dbs:\n  - path: /a.db\n    replicas: []\n";
    assert!(err_text(parse(empty_list, &env(&[]))).contains("dbs[0].replicas: is empty"));
}

#[test]
fn every_replica_of_replicas_is_used_without_a_warning() {
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n      - url: file:///backup/a\n      - type: s3\n        bucket: other\n";
    let cfg = parse(text, &env(&[])).unwrap();
    let urls: Vec<String> = cfg.dbs[0].1.iter().map(|rc| rc.url()).collect();
    assert_eq!(urls, ["s3://bkt/a", "file:///backup/a", "s3://other"]);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // Each one is read as the only one is: a replica libreplica cannot replicate to is an
    // error naming its key, wherever it stands in the list.
    let gs = text.replace(
        "type: s3\n        bucket: other",
        "type: gs\n        bucket: x",
    );
    let e = err_text(parse(&gs, &env(&[])));
    assert!(
        e.contains("dbs[0].replicas[2].type: replica type `gs` is not supported"),
        "{e}"
    );
}

#[test]
fn relative_paths_resolve_against_cwd() {
    let text = "dbs:\n  - path: storage/../storage/./app.sqlite3\n    replica:\n      type: file\n      path: backups/app\n  - path: ~/notes.db\n    replica:\n      path: ~/backups/notes\n";
    let cfg = parse(text, &env(&[("HOME", "/home/u")])).unwrap();
    assert_eq!(cfg.dbs[0].0, PathBuf::from("/app/storage/app.sqlite3"));
    assert_eq!(
        file_dir(&cfg.dbs[0].1[0].target),
        Path::new("/app/backups/app")
    );
    assert_eq!(cfg.dbs[1].0, PathBuf::from("/home/u/notes.db"));
    assert_eq!(
        file_dir(&cfg.dbs[1].1[0].target),
        Path::new("/home/u/backups/notes")
    );
    // `~` without HOME is an error naming the key.
    let e = err_text(parse(text, &env(&[])));
    assert!(
        e.contains("dbs[1].path") && e.contains("HOME is not set"),
        "{e}"
    );
}

#[test]
fn s3_timeouts_from_replica_url_and_top_level() {
    let e = env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")]);
    let cfg = parse(
        "read-timeout: 45s\nconnect-timeout: 3s\ndbs:\n  - path: /app/a.db\n    replica:\n      url: s3://bbb/a?connect-timeout=2s&read-timeout=9s\n      read-timeout: 20s\n  - path: /app/b.db\n    replica:\n      type: s3\n      bucket: bbb\n      path: b\n",
        &e,
    )
    .unwrap();
    let t = |i: usize| s3(&cfg.dbs[i].1[0].target).timeouts;
    let secs = |n| Some(Duration::from_secs(n));
    assert_eq!(
        t(0),
        S3Timeouts {
            connect: secs(2),
            read: secs(20)
        }
    );
    assert_eq!(
        t(1),
        S3Timeouts {
            connect: secs(3),
            read: secs(45)
        }
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let plain = parse_replica_url("s3://bbb/x", &e).unwrap();
    assert_eq!(s3(&plain).timeouts, S3Timeouts::default());
    let msg = parse_replica_url("s3://bbb/x?read-timeout=soon", &e)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("read-timeout") && msg.contains("duration"),
        "{msg}"
    );
    let msg = err_text(parse(
        "dbs:\n  - path: /app/a.db\n    replica:\n      url: s3://bbb/a\n      connect-timeout: 0s\n",
        &e,
    ));
    assert!(
        msg.contains("connect-timeout") && msg.contains("greater than zero"),
        "{msg}"
    );
}

#[test]
fn file_replica_settings() {
    let text = "region: auto\nsync-interval: 10s\nskip-verify: true\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: bbb\n      path: /x/y/\n      endpoint: https://s3.example.com\n      force-path-style: false\n  - path: /b.db\n    replica:\n      url: s3://bkt/pre?region=eu-1\n      endpoint: minio:9000\n      sync-interval: 250ms\n";
    let cfg = parse(text, &env(&[])).unwrap();
    let a = &cfg.dbs[0].1[0];
    let t = s3(&a.target);
    assert_eq!(
        (
            t.prefix.as_str(),
            t.endpoint.as_deref(),
            t.region.as_deref()
        ),
        ("x/y", Some("https://s3.example.com"), Some("auto"))
    );
    assert!(!t.force_path_style && t.skip_verify);
    assert_eq!(a.sync_interval, Duration::from_secs(10));
    let b = &cfg.dbs[1].1[0];
    let t = s3(&b.target);
    assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("bkt", "pre"));
    assert_eq!(
        (t.endpoint.as_deref(), t.region.as_deref()),
        (Some("https://minio:9000"), Some("eu-1"))
    );
    assert!(t.force_path_style);
    assert_eq!(b.sync_interval, Duration::from_millis(250));
    assert_eq!(cfg.global_sync_interval, Some(Duration::from_secs(10)));

    for (text, needle) in [
        ("dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/x, bucket: ccc}\n", "dbs[0].replica.bucket: cannot be combined with `url`"),
        ("dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/x, path: y}\n", "dbs[0].replica.path: cannot be combined"),
        ("dbs:\n  - path: /a.db\n    replica: {type: file, url: s3://bbb/x}\n", "dbs[0].replica.type: is file"),
        ("dbs:\n  - path: /a.db\n    replica: {type: gs, bucket: bbb}\n", "dbs[0].replica.type: replica type `gs` is not supported"),
        ("dbs:\n  - path: /a.db\n    replica: {type: s4, bucket: bbb}\n", "did you mean `s3`?"),
        ("dbs:\n  - path: /a.db\n    replica: {type: s3}\n", "dbs[0].replica: `bucket` is required"),
        ("dbs:\n  - path: /a.db\n    replica: {type: file}\n", "dbs[0].replica: `path` is required"),
        ("dbs:\n  - path: /a.db\n    replica: {path: 's3://bbb/x'}\n", "dbs[0].replica.path: looks like a URL"),
        ("dbs:\n  - path: /a.db\n    replica: {url: 'file://rel/x'}\n", "dbs[0].replica.url: file://rel/x: `file://rel` is not a local path"),
        ("dbs:\n  - replica: {url: /x}\n", "dbs[0]: `path` is required"),
        ("dbs:\n  - path: /a.db\n    replica: {url: /x}\n  - path: /b/../a.db\n    replica: {url: /y}\n", "dbs[1].path: names the same database"),
        ("dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bbb, endpoint: 'ftp://x'}\n", "dbs[0].replica.endpoint: the endpoint must be an http"),
    ] {
        let msg = err_text(parse(text, &env(&[])));
        assert!(msg.contains(needle), "{text}\n=> {msg}");
        assert!(msg.starts_with(FILE), "{msg}");
    }
}

#[test]
fn wrong_types_name_the_key_path() {
    for (text, expected) in [
        (
            "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bbb/x\n        sync-interval: fast\n",
            "dbs[0].replicas[0].sync-interval: expected a duration like 1s or 500ms, got \"fast\"",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica:\n      url: s3://bbb/x\n      force-path-style: maybe\n",
            "dbs[0].replica.force-path-style: expected true or false, got \"maybe\"",
        ),
        ("dbs: 3\n", "dbs: expected a list of databases, got 3"),
        ("dbs:\n  - 7\n", "dbs[0]: expected a mapping with `path` and `replica`, got 7"),
        ("dbs:\n  - path: /a.db\n    replica: [1]\n", "dbs[0].replica: expected a mapping"),
        ("dbs:\n  - path: /a.db\n    replicas: {url: /x}\n", "dbs[0].replicas: expected a list of replicas, got a mapping"),
        ("dbs:\n  - path: [a]\n    replica: {url: /x}\n", "dbs[0].path: expected a string, got a list"),
        ("sync-interval: 5\ndbs: []\n", "sync-interval: expected a duration like 1s or 500ms, got 5 (a number needs a unit)"),
        ("sync-interval: 0s\ndbs: []\n", "sync-interval: must be greater than zero"),
        ("skip-verify: 1\ndbs: []\n", "skip-verify: expected true or false, got 1"),
        ("- just\n- a list\n", "(top level): expected a mapping"),
        ("dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/x, sync-interval: $SI}\n", "dbs[0].replica.sync-interval: expected a duration like 1s or 500ms, got \"soon\""),
    ] {
        let msg = err_text(parse(text, &env(&[("SI", "soon")])));
        assert!(msg.starts_with(&format!("{FILE}: {expected}")), "{text}\n=> {msg}");
    }
    // YAML syntax errors name the file.
    let msg = err_text(parse("dbs: [\n", &env(&[])));
    assert!(msg.starts_with(&format!("{FILE}: invalid YAML:")), "{msg}");
    // Variables make booleans and durations work too.
    let text = "dbs:\n  - path: /a.db\n    replica: {url: s3://bbb/x, force-path-style: $FPS, sync-interval: $SI}\n";
    let cfg = parse(text, &env(&[("FPS", "true"), ("SI", "2s")])).unwrap();
    assert!(s3(&cfg.dbs[0].1[0].target).force_path_style);
    assert_eq!(cfg.dbs[0].1[0].sync_interval, Duration::from_secs(2));
}

#[test]
fn warnings_for_unused_misspelled_and_misplaced_keys() {
    let text = r#"
addr: ":9090"
logging: {level: debug}
snapshot: {interval: 24h}
dsb: []
dbs:
  - path: /a.db
    monitor-interval: 1s
    checkpoint-interval: 1m
    sync-interval: 1s
    replica:
      url: s3://bbb/a
      retention: 24h
      sync-intreval: 1s
      access_key_id: x
  - dir: /data
    pattern: "*.db"
    replica: {url: s3://bbb/dir}
"#;
    let cfg = parse(text, &env(&[])).unwrap();
    let msg = |key: &str| warning_for(&cfg, key);
    assert_eq!(
        msg("addr"),
        "`addr` is accepted but not used by libreplica yet"
    );
    assert!(msg("logging").contains("not used by libreplica yet"));
    assert!(
        cfg.warnings.iter().all(|w| w.key != "snapshot"),
        "snapshot is used: {:?}",
        cfg.warnings
    );
    assert_eq!(
        cfg.dbs[0].1[0].lifecycle.snapshot_interval,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        msg("dsb"),
        "unknown key `dsb` is ignored; did you mean `dbs`?"
    );
    assert!(msg("dbs[0].monitor-interval").contains("not used by libreplica yet"));
    assert!(msg("dbs[0].checkpoint-interval").contains("not used by libreplica yet"));
    assert!(msg("dbs[0].sync-interval").contains("is a replica setting"));
    assert_eq!(
        msg("dbs[0].replica.retention"),
        "`retention` is accepted but not used by libreplica yet"
    );
    assert_eq!(
        msg("dbs[0].replica.sync-intreval"),
        "unknown key `sync-intreval` is ignored; did you mean `sync-interval`?"
    );
    assert!(msg("dbs[0].replica.access_key_id").contains("did you mean `access-key-id`?"));
    assert!(msg("dbs[1]").contains("directory replication"));
    assert_eq!(cfg.dbs.len(), 1);
    let w = cfg
        .warnings
        .iter()
        .find(|w| w.key == "dbs[0].replica.retention")
        .unwrap();
    assert_eq!(
        w.to_string(),
        "litestream.yml: dbs[0].replica.retention: `retention` is accepted but not used by libreplica yet"
    );
    // A file replica warns about s3-only keys.
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    replica: {path: /bk, bucket: bbb}\n",
        &env(&[]),
    )
    .unwrap();
    assert!(cfg.warnings[0]
        .message
        .contains("ignored for a file replica (add `type: s3`"));
    // Empty file: no dbs, a warning.
    let cfg = parse("", &env(&[])).unwrap();
    assert!(cfg.dbs.is_empty() && cfg.warnings[0].key == "dbs");
    // Unknown keys far from anything get no suggestion.
    let cfg = parse("dbs: []\nfoo: 1\n", &env(&[])).unwrap();
    assert_eq!(cfg.warnings[0].message, "unknown key `foo` is ignored");
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let text = r#"
replica_defaults: &defaults
  type: s3
  bucket: $BUCKET
  endpoint: s3.example.com
  sync-interval: 2s
dbs:
  - path: storage/production.sqlite3
    replica:
      <<: *defaults
      path: production
  - path: storage/production_cache.sqlite3
    replica:
      <<: *defaults
      path: cache
      sync-interval: 9s
  - path: storage/other.sqlite3
    replica: *defaults
"#;
    let cfg = parse(text, &env(&[("BUCKET", "bkt")])).unwrap();
    let got: Vec<(String, Duration)> = cfg
        .dbs
        .iter()
        .flat_map(|(_, replicas)| replicas)
        .map(|rc| (rc.url(), rc.sync_interval))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "s3://bkt/production?endpoint=https://s3.example.com".to_string(),
                Duration::from_secs(2)
            ),
            (
                "s3://bkt/cache?endpoint=https://s3.example.com".to_string(),
                Duration::from_secs(9)
            ),
            (
                "s3://bkt?endpoint=https://s3.example.com".to_string(),
                Duration::from_secs(2)
            ),
        ]
    );
    // The anchor holder is an unknown key (ignored, with a warning); nothing else warns.
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert_eq!(cfg.warnings[0].key, "replica_defaults");
}

#[test]
fn numbers_in_text_fields_warn() {
    let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: 12345, path: 0x10, access-key-id: 0777, secret-access-key: '0777'}\n";
    let cfg = parse(text, &env(&[])).unwrap();
    let t = s3(&cfg.dbs[0].1[0].target);
    assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("12345", "16"));
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("replica.path: is a YAML number (read as 16)")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("replica.access-key-id: is a YAML number;")),
        "{w:?}"
    );
    assert!(!w.iter().any(|w| w.contains("secret-access-key")), "{w:?}");
}

#[test]
fn a_missing_key_error_names_the_typo_that_left_it_missing() {
    let e = err_text(parse(
        "dbs:\n  - path: /d/app.db\n    replicaz:\n      url: file:///b\n",
        &env(&[]),
    ));
    assert!(
        e.contains("no replica configured")
            && e.contains(
                "the unknown key `replicaz` (dbs[0].replicaz) was ignored: did you mean `replica`?"
            ),
        "{e}"
    );
    let e = err_text(parse(
        "dbs:\n  - path: /d/app.db\n    replica:\n      url: s3://bkt/app\n      acess-key-id: AKID\n      secret-access-key: SECRET\n",
        &env(&[]),
    ));
    assert!(
        e.contains("`access-key-id` is required")
            && e.contains("the unknown key `acess-key-id` (dbs[0].replica.acess-key-id) was ignored: did you mean `access-key-id`?")
            && !e.contains("SECRET"),
        "{e}"
    );
    // At the top level, for every replica.
    let e = err_text(parse(
        "acess-key-id: AKID\nsecret-access-key: SECRET\ndbs:\n  - path: /d/app.db\n    replica: {url: s3://bkt/app}\n",
        &env(&[]),
    ));
    assert!(e.contains("did you mean `access-key-id`?"), "{e}");
    // A file replica without its directory: a misspelled `url` may be why.
    let e = err_text(parse(
        "dbs:\n  - path: /d/app.db\n    replica:\n      urll: file:///b\n",
        &env(&[]),
    ));
    assert!(
        e.contains("`urll`") && e.contains("did you mean `url`?"),
        "{e}"
    );
    // A typo unrelated to the missing key is not blamed.
    let e = err_text(parse(
        "dbs:\n  - path: /d/app.db\n    replica:\n      type: s3\n      sync-intervall: 1s\n",
        &env(&[]),
    ));
    assert!(
        e.contains("`bucket` is required") && !e.contains("sync-intervall"),
        "{e}"
    );
}
