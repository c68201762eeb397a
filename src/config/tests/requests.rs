//! `request-budget`, `request-price` and per-database `sync-interval`: the README's four
//! databases, what `REPLICA_REQUEST_BUDGET` overrides, and the errors that name the key.

use super::{env, err_text, parse, Only};
use crate::budget::RequestBudget;
use crate::config::Resolver;
use std::path::Path;
use std::time::Duration;

const FOUR_DATABASES: &str = r#"
request-price: 4.50
access-key-id: AKIAEXAMPLEEXAMPLE12
secret-access-key: secret
dbs:
  - path: storage/production.sqlite3
    replica: {url: "s3://backups/production", sync-interval: 1s}
  - path: storage/production_queue.sqlite3
    replica: {url: "s3://backups/queue", sync-interval: 10s, request-budget: 500k/month}
  - path: storage/production_cache.sqlite3
    replica: {url: "s3://backups/cache", request-budget: $0.50/month}
  - path: storage/production_cable.sqlite3
    replica: {url: "s3://backups/cable", request-budget: 100000/month}
"#;

fn budget(n: u64) -> Option<RequestBudget> {
    Some(RequestBudget { per_month: n })
}

#[test]
fn each_database_has_its_own_interval_and_budget() {
    let cfg = parse(FOUR_DATABASES, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let got: Vec<_> = cfg
        .dbs
        .iter()
        .map(|(_, replicas)| (replicas[0].sync_interval, replicas[0].request_budget))
        .collect();
    let s = Duration::from_secs;
    assert_eq!(
        got,
        vec![
            (s(1), None),
            (s(10), budget(500_000)),
            (s(1), budget(111_111)),
            (s(1), budget(100_000)),
        ]
    );
    let r = Resolver::new(env(&[]), Some(cfg.clone())).unwrap();
    let queue = r
        .resolve(Path::new("storage/production_queue.sqlite3"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(queue.request_budget, budget(500_000));
    assert_eq!(queue.sync_interval, s(10));
    // The environment caps every database.
    let r = Resolver::new(env(&[("REPLICA_REQUEST_BUDGET", "2.6M/month")]), Some(cfg)).unwrap();
    let main = r
        .resolve(Path::new("storage/production.sqlite3"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(main.request_budget, budget(2_600_000));
}

#[test]
fn a_top_level_budget_is_every_replicas_default_and_a_price_changes_dollars() {
    let yaml = "request-budget: $5/month\nrequest-price: $5.00\ndbs:\n  - path: a.db\n    replica: {path: /r/a}\n  - path: b.db\n    replica: {path: /r/b, request-budget: 10/month}\n";
    let cfg = parse(yaml, &env(&[])).unwrap();
    assert_eq!(cfg.dbs[0].1[0].request_budget, budget(1_000_000));
    assert_eq!(cfg.dbs[1].1[0].request_budget, budget(10));
    assert_eq!(cfg.global_request_budget, budget(1_000_000));
    assert_eq!(cfg.dbs[0].1[0].prices.class_a_nanos, 5_000);
}

#[test]
fn bad_budgets_name_the_key_and_the_variable() {
    let e = err_text(parse(
        "dbs:\n  - path: a.db\n    replica: {path: /r/a, request-budget: lots}\n",
        &env(&[]),
    ));
    assert!(e.contains("dbs[0].replica.request-budget"), "{e}");
    assert!(e.contains("500000/month"), "{e}");
    let e = err_text(parse("request-price: free\ndbs: []\n", &env(&[])));
    assert!(e.contains("request-price"), "{e}");
    let e = Resolver::new(env(&[("REPLICA_REQUEST_BUDGET", "1000")]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("REPLICA_REQUEST_BUDGET"), "{e}");
}
