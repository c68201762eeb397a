//! `age:` (Litestream 0.3's encryption keys) in the config file and `REPLICA_AGE_*` in the
//! environment: what each gives, which wins, and errors that name the key and never echo an
//! identity.

use super::{env, parse};
use crate::config::{merge_age, AgeConfig, IdentitySource};
use age::secrecy::ExposeSecret;
use std::path::PathBuf;

fn keypair() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        id.to_public().to_string(),
        id.to_string().expose_secret().to_string(),
    )
}

#[test]
fn recipients_and_identities_inline_or_as_files() {
    let (public, secret) = keypair();
    let (other, _) = keypair();
    let text = format!(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/a\n      age:\n        recipients: [{public}, {other}]\n        identities:\n          - {secret}\n          - keys/backup.txt\n  - path: /b.db\n    replica:\n      url: s3://bkt/b\n"
    );
    let cfg = parse(&text, &env(&[])).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let age = cfg.dbs[0].1[0].age.clone().unwrap();
    assert_eq!(age.recipients, vec![public, other]);
    assert_eq!(
        age.identities,
        vec![
            IdentitySource::Inline(secret.clone()),
            IdentitySource::File(PathBuf::from("/app/keys/backup.txt"))
        ]
    );
    assert!(!format!("{age:?}").contains(&secret));
    assert_eq!(cfg.dbs[1].1[0].age, None);
}

#[test]
fn bad_keys_are_errors_naming_the_key_without_the_secret() {
    let (public, secret) = keypair();
    let cases = [
        (
            format!("recipients: [age1bogus]\n        identities: [{secret}]"),
            "recipient #1",
        ),
        (format!("recipients: [{public}]"), "no identity"),
        (
            "identities: [AGE-SECRET-KEY-1NOTAKEY]".to_string(),
            "not an age X25519 identity",
        ),
        (
            format!("identities: {secret}\n        recipients: [{secret}]"),
            "is a secret key",
        ),
    ];
    for (body, want) in cases {
        let text = format!("dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/a\n      age:\n        {body}\n");
        match parse(&text, &env(&[])) {
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.contains("age") && shown.contains(want), "{shown}");
                assert!(
                    !shown.contains(&secret) && !shown.contains("NOTAKEY"),
                    "{shown}"
                );
            }
            Ok(cfg) => panic!("accepted: {cfg:?}"),
        }
    }
    // A key in lower case is still a key (inline), never taken for a file's name.
    let lower = secret.to_lowercase();
    let text = format!("dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/a\n      age:\n        identities: [{lower}]\n");
    let cfg = parse(&text, &env(&[])).unwrap();
    let age = cfg.dbs[0].1[0].age.clone().unwrap();
    assert_eq!(age.identities, vec![IdentitySource::Inline(lower.clone())]);
    assert!(!format!("{age:?}").contains(&lower));
}

#[test]
fn age_anywhere_but_under_a_replica_fails_the_load() {
    let (_, secret) = keypair();
    let age = format!("{{identities: [{secret}]}}");
    let cases = [
        (
            format!("age: {age}\ndbs:\n  - path: /a.db\n    replica: {{url: s3://bkt/a}}\n"),
            "age",
        ),
        (
            format!("dbs:\n  - path: /a.db\n    age: {age}\n    replica: {{url: s3://bkt/a}}\n"),
            "dbs[0].age",
        ),
        (
            format!("dbs:\n  - path: /a.db\n    replica: {{url: s3://bkt/a, Age: {age}}}\n"),
            "Age",
        ),
    ];
    for (text, key) in cases {
        let e = parse(&text, &env(&[])).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("unencrypted"), "{e}");
        assert!(!e.contains(&secret), "{e}");
    }
}

#[test]
fn the_environment_replaces_each_part_it_sets() {
    let (public, secret) = keypair();
    let (other, _) = keypair();
    let file_age = AgeConfig {
        recipients: vec![public.clone()],
        identities: vec![IdentitySource::Inline(secret)],
    };
    assert_eq!(
        merge_age(&env(&[]), Some(&file_age)).unwrap(),
        Some(file_age.clone())
    );
    let both = format!("{public}, {other}");
    let merged = merge_age(&env(&[("REPLICA_AGE_RECIPIENTS", &both)]), Some(&file_age))
        .unwrap()
        .unwrap();
    assert_eq!(merged.recipients, vec![public.clone(), other]);
    assert_eq!(merged.identities, file_age.identities);
    let from_env = merge_age(&env(&[("REPLICA_AGE_IDENTITY_FILE", "key.txt")]), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        from_env.identities,
        vec![IdentitySource::File("/app/key.txt".into())]
    );
    let e = merge_age(&env(&[("REPLICA_AGE_RECIPIENTS", &public)]), None).unwrap_err();
    assert!(e.to_string().contains("REPLICA_AGE_RECIPIENTS"), "{e}");
}
