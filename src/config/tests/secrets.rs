//! No secret access key or session token appears in any `Debug`, `Display`, `url()` or error
//! output, whichever way it was given.

use std::path::Path;

use super::{env, params, parse, s3, Only};
use crate::config::{parse_replica_url, Credentials, Resolver};

#[test]
fn secrets_never_appear_in_output() {
    const SECRET: &str = "TOPSECRETvalue42";
    const TOKEN: &str = "SESSIONtoken99";
    let e = env(&[
        ("SK", SECRET),
        ("AWS_ACCESS_KEY_ID", "AKIAENVKEY000000"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
        (
            "REPLICA_URL",
            "s3://bucket/pre?endpoint=https://acct.r2.cloudflarestorage.com",
        ),
    ]);
    let text = format!(
        "access-key-id: GLOBALAKID00000\nsecret-access-key: {SECRET}\ndbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, access-key-id: AKIAOWN000000, secret-access-key: $SK}}\n  - path: /b.db\n    replica: {{url: s3://bbb/x}}\n"
    );
    let cfg = parse(&text, &e).unwrap();
    assert_eq!(
        s3(&cfg.dbs[0].1[0].target)
            .credentials
            .as_ref()
            .unwrap()
            .secret_access_key,
        SECRET
    );
    let r = Resolver::new(e.clone(), Some(cfg.clone())).unwrap();
    let from_env = r.resolve(Path::new("/c.db"), &[]).unwrap().unwrap().only();
    assert_eq!(
        s3(&from_env.target)
            .credentials
            .as_ref()
            .unwrap()
            .session_token
            .as_deref(),
        None
    );
    let p = params(&[("replica", "s3://bbb/uri")]);
    let from_uri = r.resolve(Path::new("/c.db"), &p).unwrap().unwrap().only();
    let env_only = parse_replica_url("s3://bbb/y", &e).unwrap();
    assert_eq!(
        s3(&env_only)
            .credentials
            .as_ref()
            .unwrap()
            .session_token
            .as_deref(),
        Some(TOKEN)
    );

    let mut outputs: Vec<String> = vec![
        format!("{cfg:?}"),
        format!("{cfg:#?}"),
        format!("{r:?}"),
        format!("{e:?}"),
        format!("{from_env:?}"),
        format!("{from_uri:?}"),
        format!("{env_only:?}"),
        env_only.url(),
        from_env.url(),
        format!("{:?}", s3(&env_only).credentials),
    ];
    for rc in cfg.dbs.iter().flat_map(|(_, replicas)| replicas) {
        outputs.push(rc.url());
        outputs.push(format!("{rc:?}"));
    }
    outputs.extend(cfg.warnings.iter().map(|w| w.to_string()));
    // Errors that involve secret-bearing values.
    let errors = [
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, secret-access-key: [{SECRET}]}}\n"), &e).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, secret-access-key: '{SECRET}${{oops'}}\n"), &e).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, secret-access-key: '{SECRET}${{a-b}}'}}\n"), &e).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, secret-access-key: {SECRET}}}\n"), &env(&[])).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{url: 's3://AK:{SECRET}@bbb/x?endpoint=http://u:{SECRET}@h'}}\n"), &e).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{url: 's3://bbb/x?secret={SECRET}'}}\n"), &e).unwrap_err(),
        parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bbb, endpoint: 'http://u:{SECRET}@h'}}\n"), &e).unwrap_err(),
        parse_replica_url(&format!("s3://AK:{SECRET}@bbb/x"), &e).unwrap_err(),
        parse_replica_url(&format!("s3://bbb/x?endpoint=https://u:{SECRET}@host"), &e).unwrap_err(),
        parse_replica_url(&format!("gs://AK:{SECRET}@bbb/x"), &e).unwrap_err(),
        Resolver::new(env(&[("REPLICA_URL", &format!("s3://a:{SECRET}@bbb"))]), None).unwrap_err(),
        parse_replica_url("s3://bbb", &env(&[("LITESTREAM_SECRET_ACCESS_KEY", SECRET)])).unwrap_err(),
        r.resolve(Path::new("/c.db"), &params(&[("replica", &format!("s3://k:{SECRET}@bbb"))])).unwrap_err(),
    ];
    for err in &errors {
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
    }
    for out in &outputs {
        assert!(!out.contains(SECRET), "secret leaked: {out}");
        assert!(!out.contains(TOKEN), "token leaked: {out}");
    }
    let c = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: Some(TOKEN.into()),
    };
    assert_eq!(
        format!("{c:?}"),
        "Credentials { access_key_id: \"****MPLE\", secret_access_key: \"<redacted>\", session_token: Some(\"<redacted>\") }"
    );
}
