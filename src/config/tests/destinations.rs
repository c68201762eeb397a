//! Several destinations per database: every replica of `replicas:` read with its own
//! settings and resolved with the same precedence as a lone one, the names that tell them
//! apart (`name:`, else the target's kind), and the errors for two that clash.

use std::path::Path;
use std::time::Duration;

use super::{env, err_text, params, parse, FILE};
use crate::budget::RequestBudget;
use crate::config::{parse_replica_url, Resolver};
use crate::lifecycle::Expiry;

const THREE: &str = "sync-interval: 7s\nvalidation-interval: 1h\nrequest-budget: 500000/month\ndbs:\n  - path: /a.db\n    restore-if-db-not-exists: false\n    replicas:\n      - url: s3://bkt/a\n        sync-interval: 250ms\n        retention: bucket-lifecycle\n        request-budget: 10/month\n      - url: file:///backup/a\n        sync-interval: 5s\n        validation-interval: 0s\n      - type: s3\n        bucket: other\n        path: a\n        name: offsite\n";

fn names(text: &str) -> Vec<String> {
    let cfg = parse(text, &env(&[])).unwrap();
    cfg.dbs[0].1.iter().map(|rc| rc.name.clone()).collect()
}

#[test]
fn three_replicas_are_each_read_with_their_own_settings() {
    let cfg = parse(THREE, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let replicas = &cfg.dbs[0].1;
    let got: Vec<_> = replicas
        .iter()
        .map(|rc| {
            (
                rc.name.as_str(),
                rc.url(),
                rc.sync_interval,
                rc.lifecycle.expiry,
                rc.validation_interval,
                rc.request_budget.map(|b| b.per_month),
                rc.restore_if_missing,
            )
        })
        .collect();
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(
        got,
        vec![
            (
                "s3",
                "s3://bkt/a".to_string(),
                Duration::from_millis(250),
                Expiry::BucketLifecycle,
                hour,
                Some(10),
                false
            ),
            (
                "file",
                "file:///backup/a".to_string(),
                Duration::from_secs(5),
                Expiry::Uploader,
                None,
                Some(500_000),
                false
            ),
            (
                "offsite",
                "s3://other/a".to_string(),
                Duration::from_secs(7),
                Expiry::Uploader,
                hour,
                Some(500_000),
                false
            ),
        ]
    );

    // Resolved, each keeps its own settings and name, in file order.
    let r = Resolver::new(env(&[]), Some(cfg.clone())).unwrap();
    let resolved = r.resolve(Path::new("/a.db"), &[]).unwrap().unwrap();
    assert_eq!(&resolved, replicas);
    // What overrides every replica's own value overrides it for each destination.
    let p = params(&[("replica_sync_interval", "2s")]);
    let uri = r.resolve(Path::new("/a.db"), &p).unwrap().unwrap();
    assert!(uri
        .iter()
        .all(|rc| rc.sync_interval == Duration::from_secs(2)));
    let vars = [
        ("REPLICA_SYNC_INTERVAL", "3s"),
        ("REPLICA_VALIDATION_INTERVAL", "0s"),
        ("REPLICA_REQUEST_BUDGET", "99/month"),
    ];
    let r = Resolver::new(env(&vars), Some(cfg)).unwrap();
    let over = r.resolve(Path::new("/a.db"), &[]).unwrap().unwrap();
    assert_eq!(over.len(), 3);
    for rc in &over {
        assert_eq!(rc.sync_interval, Duration::from_secs(3));
        assert_eq!(rc.validation_interval, None);
        assert_eq!(rc.request_budget, Some(RequestBudget { per_month: 99 }));
    }
    assert_eq!(over[0].lifecycle.expiry, Expiry::BucketLifecycle);
}

#[test]
fn an_unnamed_replica_is_named_after_its_kind_numbered_from_the_second() {
    let three = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/1\n      - url: s3://bkt/2\n      - url: file:///r/3\n";
    assert_eq!(names(three), ["s3", "s3-2", "file"]);
    let mixed = "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r/1\n      - url: s3://bkt/1\n      - {url: s3://bkt/2, name: x}\n      - url: s3://bkt/3\n      - url: file:///r/2\n";
    assert_eq!(names(mixed), ["file", "s3", "x", "s3-2", "file-2"]);
    // Names are per database: another database's destinations may be named alike.
    let two_dbs = format!("{three}  - path: /b.db\n    replica: {{url: s3://bkt/b}}\n");
    let cfg = parse(&two_dbs, &env(&[])).unwrap();
    assert_eq!(cfg.dbs[1].1[0].name, "s3");
}

#[test]
fn a_replica_named_by_name_keeps_it_and_a_lone_replica_is_a_one_element_list() {
    let named =
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/a\n      name: Off-site_2\n";
    let cfg = parse(named, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.dbs[0].1.len(), 1);
    assert_eq!(cfg.dbs[0].1[0].name, "Off-site_2");
    let r = Resolver::new(env(&[]), Some(cfg)).unwrap();
    let resolved = r.resolve(Path::new("/a.db"), &[]).unwrap().unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].name, "Off-site_2");
    let longest = "x".repeat(32);
    assert_eq!(names(&named.replace("Off-site_2", &longest)), [longest]);
    let unnamed = "dbs:\n  - path: /a.db\n    replica: {path: /bk/a}\n";
    assert_eq!(names(unnamed), ["file"]);

    // A destination given by a URL, not by the file, is named after its kind.
    let r = Resolver::new(env(&[("REPLICA_URL", "s3://bkt/all")]), None).unwrap();
    let from_env = r.resolve(Path::new("/c.db"), &[]).unwrap().unwrap();
    assert_eq!(from_env.len(), 1);
    assert_eq!(from_env[0].name, "s3");
    let p = params(&[("replica", "file:///bk/c")]);
    let from_uri = r.resolve(Path::new("/c.db"), &p).unwrap().unwrap();
    assert_eq!(from_uri.len(), 1);
    assert_eq!(from_uri[0].name, "file");
}

#[test]
fn a_bad_name_is_an_error_naming_the_key_and_the_rule() {
    let long = "x".repeat(33);
    for (value, why) in [
        ("'a b'", "\"a b\" holds ' '"),
        ("café", "\"café\" holds 'é'"),
        ("a/b", "\"a/b\" holds '/'"),
        ("''", "is empty"),
        ("$UNSET_NAME", "UNSET_NAME is not set"),
        (long.as_str(), "is 33 characters long"),
    ] {
        let text = format!("dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/1\n      - url: s3://bkt/2\n        name: {value}\n");
        let e = err_text(parse(&text, &env(&[])));
        assert!(
            e.contains("dbs[0].replicas[1].name: ") && e.contains(why),
            "{value}: {e}"
        );
        assert!(
            e.contains("1 to 32 characters, each a letter (A-Z, a-z), a digit, `_` or `-`"),
            "{e}"
        );
    }
}

#[test]
fn two_destinations_of_a_database_with_one_name_are_an_error_naming_the_key() {
    let twice = "dbs:\n  - path: /a.db\n    replicas:\n      - {url: s3://bkt/1, name: main}\n      - {url: s3://bkt/2, name: main}\n";
    let e = err_text(parse(twice, &env(&[])));
    assert!(
        e.ends_with("dbs[0].replicas[1].name: `main` is already the name of dbs[0].replicas[0] (names are compared without case); each destination of a database needs a name of its own"),
        "{e}"
    );
    // Names that differ only in case would share a folder where case is ignored.
    let cased = twice.replacen("name: main}", "name: Main}", 1);
    let e = err_text(parse(&cased, &env(&[])));
    assert!(
        e.contains("is already the name of dbs[0].replicas[0]"),
        "{e}"
    );
    // A name that an unnamed destination takes by default is taken too; the error names the
    // key that was written.
    let default = "dbs:\n  - path: /a.db\n    replicas:\n      - {url: file:///r, name: s3-2}\n      - url: s3://bkt/1\n      - url: s3://bkt/2\n";
    let e = err_text(parse(default, &env(&[])));
    assert!(
        e.contains("dbs[0].replicas[0].name: `s3-2` is also the name of dbs[0].replicas[2], which has no `name:`"),
        "{e}"
    );
}

#[test]
fn the_same_replica_twice_is_an_error_naming_the_key() {
    for second in [
        "{type: s3, bucket: bkt, path: /a/, name: again}",
        "{url: 's3://bkt/a'}",
    ] {
        let text = format!(
            "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n      - {second}\n"
        );
        let e = err_text(parse(&text, &env(&[])));
        assert!(
            e.contains("dbs[0].replicas[1]: replicates to s3://bkt/a, as dbs[0].replicas[0] does: the same replica twice"),
            "{e}"
        );
    }
    let dirs = "dbs:\n  - path: /a.db\n    replicas:\n      - path: /bk/a\n      - url: file:///bk/./x/../a\n";
    let e = err_text(parse(dirs, &env(&[])));
    assert!(
        e.contains("dbs[0].replicas[1]: replicates to file:///bk/a"),
        "{e}"
    );
    // Only one database's destinations are compared here; two databases listing one
    // replica is left as it was.
    let shared = "dbs:\n  - path: /a.db\n    replica: {url: s3://bkt/a}\n  - path: /b.db\n    replica: {url: s3://bkt/a}\n";
    assert!(parse(shared, &env(&[])).is_ok());
}

#[test]
fn the_summary_has_a_line_per_destination_naming_each_of_several() {
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n      - {url: file:///bk/a, name: local, retention: bucket-lifecycle}\n  - path: /b.db\n    replica: {url: s3://bkt/b}\n";
    let (r, warnings) = Resolver::from_config_text(env(&[]), Path::new(FILE), text).unwrap();
    // The directory replica that leaves deletes to a bucket is named in the warning.
    assert!(
        warnings.iter().any(|w| w.key == "dbs[0].replicas[1]"),
        "{warnings:?}"
    );
    assert_eq!(
        r.summary(),
        [
            format!("/a.db replicates to s3://bkt/a (destination s3, from {FILE})"),
            format!("/a.db replicates to file:///bk/a (destination local, from {FILE}), never deleting: old files are left to the bucket's lifecycle rules (retention: bucket-lifecycle)"),
            format!("/b.db replicates to s3://bkt/b (from {FILE})"),
        ]
    );
    let debug = format!("{r:?}");
    for url in ["s3://bkt/a", "file:///bk/a", "s3://bkt/b"] {
        assert!(debug.contains(url), "{debug}");
    }
}

#[test]
fn drills_and_encryption_keys_are_found_on_any_destination() {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let secret = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
    let text = format!("dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///bk/a\n      - url: s3://bkt/a\n        validation-interval: 1h\n        age:\n          recipients: [{public}]\n          identities: [{secret}]\n");
    let cfg = parse(&text, &env(&[])).unwrap();
    let r = Resolver::new(env(&[]), Some(cfg)).unwrap();
    assert!(r.schedules_drills());
    let second = parse_replica_url("s3://bkt/a", &env(&[])).unwrap();
    let age = r.age_for_target(&second).unwrap().unwrap();
    assert_eq!(age.recipients, [public]);
    let first = parse_replica_url("file:///bk/a", &env(&[])).unwrap();
    assert_eq!(r.age_for_target(&first).unwrap(), None);
    // A `?replica=` URL the file lists for another database takes that replica's keys.
    let p = params(&[("replica", "s3://bkt/a")]);
    let other = r.resolve(Path::new("/c.db"), &p).unwrap().unwrap();
    assert_eq!(other[0].age.as_ref(), Some(&age));
    let resolved = r.resolve(Path::new("/a.db"), &[]).unwrap().unwrap();
    assert_eq!(resolved[0].age, None);
    assert_eq!(resolved[1].age.as_ref(), Some(&age));
    assert!(!format!("{r:?}{resolved:?}").contains(&secret));
}
