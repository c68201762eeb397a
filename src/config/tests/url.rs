//! Replica URLs: the file and s3 forms, provider hosts, refusals, round trips through `url()`,
//! and the environment's endpoint, region and credential fallbacks.

use std::path::PathBuf;

use super::{env, err_text, parse, s3};
use crate::config::{parse_replica_url, ReplicaTarget};

#[test]
fn url_forms() {
    let e = env(&[("HOME", "/home/u")]);
    let file = |u: &str| match parse_replica_url(u, &e) {
        Ok(ReplicaTarget::File { dir }) => dir,
        other => panic!("{u}: {other:?}"),
    };
    assert_eq!(
        file("file:///srv/replicas/app.db"),
        PathBuf::from("/srv/replicas/app.db")
    );
    assert_eq!(file("file://localhost/srv/x"), PathBuf::from("/srv/x"));
    assert_eq!(file("file:/srv/x/"), PathBuf::from("/srv/x"));
    assert_eq!(file("file:///srv/my%20dir"), PathBuf::from("/srv/my dir"));
    assert_eq!(file("/srv/replicas/../r"), PathBuf::from("/srv/r"));
    assert_eq!(file("backups/app"), PathBuf::from("/app/backups/app"));
    assert_eq!(file("~/b"), PathBuf::from("/home/u/b"));
    for bad in ["file://relative/dir", "file:relative", "file://"] {
        let msg = parse_replica_url(bad, &e).unwrap_err().to_string();
        assert!(msg.contains("file URLs must be absolute"), "{bad}: {msg}");
    }
    for (bad, needle) in [
        ("gs://bucket/x", "not supported"),
        ("ftp://x/y", "unknown URL scheme"),
        ("s3:bucket/x", "without `//`"),
        ("s3://", "bucket is missing"),
        ("s3://bbb/x?endpiont=foo", "did you mean `endpoint`"),
        ("s3://bbb/x?force-path-style=maybe", "must be true or false"),
        ("s3://localhost:9000/x", "no bucket"),
        ("", "empty"),
    ] {
        let msg = parse_replica_url(bad, &e).unwrap_err().to_string();
        assert!(msg.contains(needle), "{bad}: {msg}");
    }

    let s = |u: &str| match parse_replica_url(u, &e) {
        Ok(ReplicaTarget::S3(t)) => t,
        other => panic!("{u}: {other:?}"),
    };
    let t = s("s3://bucket/prefix/app.db");
    assert_eq!(
        (t.bucket.as_str(), t.prefix.as_str()),
        ("bucket", "prefix/app.db")
    );
    assert_eq!(
        (t.endpoint, t.region, t.force_path_style, t.skip_verify),
        (None, None, false, false)
    );
    assert_eq!(t.credentials, None);
    assert_eq!(s("s3://bucket").prefix, "");
    assert_eq!(s("s3://bucket//a//b/").prefix, "a/b");
    let t = s("s3://bbb/p?endpoint=minio.internal:9000&region=us-west-1&force-path-style=false&skip-verify=true");
    assert_eq!(t.endpoint.as_deref(), Some("https://minio.internal:9000"));
    assert_eq!(t.region.as_deref(), Some("us-west-1"));
    assert!(!t.force_path_style && t.skip_verify);
    let t = s("s3://bbb/p?endpoint=localhost:9000");
    assert_eq!(t.endpoint.as_deref(), Some("http://localhost:9000"));
    assert!(t.force_path_style, "an endpoint implies path-style");
    let t = s("s3://bbb/p?endpoint=http%3A%2F%2F10.0.0.5%3A9000&forcePathStyle=true&skipVerify=true&storage-class=STANDARD");
    assert_eq!(t.endpoint.as_deref(), Some("http://10.0.0.5:9000"));
    assert!(t.force_path_style && t.skip_verify);
    let t = s("s3://bbb?endpoint=https://acct.r2.cloudflarestorage.com/");
    assert_eq!(
        t.endpoint.as_deref(),
        Some("https://acct.r2.cloudflarestorage.com")
    );
    assert_eq!(
        (t.region.as_deref(), t.force_path_style),
        (Some("auto"), true)
    );
    let t = s("s3://mybucket.s3.eu-west-1.amazonaws.com/db");
    assert_eq!(
        (t.bucket.as_str(), t.region.as_deref(), t.endpoint),
        ("mybucket", Some("eu-west-1"), None)
    );
    let t = s("s3://mybucket.localhost:9000/db");
    assert_eq!(
        (t.bucket.as_str(), t.endpoint.as_deref()),
        ("mybucket", Some("http://localhost:9000"))
    );
    let t = s("s3://bbb.nyc3.digitaloceanspaces.com/db");
    assert_eq!(
        t.endpoint.as_deref(),
        Some("https://nyc3.digitaloceanspaces.com")
    );
    assert!(!t.force_path_style);

    // Credentials in the URL are refused and never echoed.
    let msg = parse_replica_url("s3://AKID:topsecret@bucket/x", &e)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("must not be embedded") && !msg.contains("topsecret"),
        "{msg}"
    );

    // url() round-trips.
    for u in [
        "s3://bbb/p/q",
        "s3://bbb",
        "s3://bbb/p?endpoint=https://acct.r2.cloudflarestorage.com&region=auto",
        "s3://bbb/p?endpoint=http://localhost:9000&force-path-style=false&skip-verify=true",
        "s3://bbb/p?region=eu-west-1&force-path-style=true",
        "file:///srv/replicas/app.db",
        "file:///srv/my%20dir",
    ] {
        let t = parse_replica_url(u, &e).unwrap();
        assert_eq!(t.url(), u);
        assert_eq!(parse_replica_url(&t.url(), &e).unwrap(), t);
    }
}

#[test]
fn s3_env_fallbacks_and_credentials_chain() {
    let url = "s3://bbb/p";
    let t = |vars: &[(&str, &str)]| match parse_replica_url(url, &env(vars)) {
        Ok(ReplicaTarget::S3(t)) => t,
        other => panic!("{other:?}"),
    };
    let aws = [
        ("AWS_ACCESS_KEY_ID", "AWSAK"),
        ("AWS_SECRET_ACCESS_KEY", "AWSSK"),
        ("AWS_SESSION_TOKEN", "TOK"),
    ];
    let c = t(&aws).credentials.unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.session_token.as_deref()),
        ("AWSAK", Some("TOK"))
    );
    let mut both = aws.to_vec();
    both.extend([
        ("LITESTREAM_ACCESS_KEY_ID", "LSAK"),
        ("LITESTREAM_SECRET_ACCESS_KEY", "LSSK"),
    ]);
    let c = t(&both).credentials.unwrap();
    assert_eq!(
        (
            c.access_key_id.as_str(),
            c.secret_access_key.as_str(),
            c.session_token
        ),
        ("LSAK", "LSSK", None)
    );
    let half = parse_replica_url(url, &env(&[("AWS_ACCESS_KEY_ID", "x")])).unwrap_err();
    assert_eq!(half.to_string(), "environment variable AWS_SECRET_ACCESS_KEY: is not set, but AWS_ACCESS_KEY_ID is; set both or neither");

    assert_eq!(
        t(&[("AWS_ENDPOINT_URL", "https://a.example")])
            .endpoint
            .as_deref(),
        Some("https://a.example")
    );
    let ep = t(&[
        ("AWS_ENDPOINT_URL", "https://a.example"),
        ("AWS_ENDPOINT_URL_S3", "b.example"),
    ]);
    assert_eq!(ep.endpoint.as_deref(), Some("https://b.example"));
    let ep = t(&[
        ("AWS_ENDPOINT_URL_S3", "b.example"),
        ("LITESTREAM_S3_ENDPOINT", "c.example"),
    ]);
    assert_eq!(ep.endpoint.as_deref(), Some("https://c.example"));
    assert!(ep.force_path_style);
    assert_eq!(
        t(&[("AWS_DEFAULT_REGION", "r1")]).region.as_deref(),
        Some("r1")
    );
    assert_eq!(
        t(&[("AWS_DEFAULT_REGION", "r1"), ("AWS_REGION", "r2")])
            .region
            .as_deref(),
        Some("r2")
    );
    let r2 = t(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_S3", "x.r2.cloudflarestorage.com"),
    ]);
    assert_eq!(r2.region.as_deref(), Some("auto"));

    // In the file: replica keys > top-level keys > environment.
    let text = "access-key-id: GLOBALAK\nsecret-access-key: ${GSK}\ndbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bbb, access-key-id: OWNAK, secret-access-key: OWNSK}\n  - path: /b.db\n    replica: {type: s3, bucket: bbb}\n  - path: /c.db\n    replica: {type: s3, bucket: bbb, access-key-id: OWNAK}\n";
    let cfg = parse(
        text,
        &env(&[
            ("GSK", "GLOBALSK"),
            ("AWS_ACCESS_KEY_ID", "E"),
            ("AWS_SECRET_ACCESS_KEY", "E"),
        ]),
    )
    .unwrap();
    let creds = |i: usize| s3(&cfg.dbs[i].1[0].target).credentials.clone().unwrap();
    assert_eq!(
        (creds(0).access_key_id, creds(0).secret_access_key),
        ("OWNAK".into(), "OWNSK".into())
    );
    assert_eq!(
        (creds(1).access_key_id, creds(1).secret_access_key),
        ("GLOBALAK".into(), "GLOBALSK".into())
    );
    assert_eq!(
        (creds(2).access_key_id, creds(2).secret_access_key),
        ("OWNAK".into(), "GLOBALSK".into())
    );
    assert_eq!(
        cfg.global_credentials.as_ref().unwrap().access_key_id,
        "GLOBALAK"
    );

    // Half a pair in the file names the key and the variable.
    let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bbb, access-key-id: AK, secret-access-key: $SK}\n";
    let msg = err_text(parse(text, &env(&[])));
    assert!(
        msg.contains("dbs[0].replica.secret-access-key: is empty") && msg.contains("SK is not set"),
        "{msg}"
    );
    // Both unset: fall back to the environment, with a warning.
    let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bbb, access-key-id: $AK, secret-access-key: $SK}\n";
    let cfg = parse(
        text,
        &env(&[("AWS_ACCESS_KEY_ID", "E1"), ("AWS_SECRET_ACCESS_KEY", "E2")]),
    )
    .unwrap();
    assert_eq!(
        s3(&cfg.dbs[0].1[0].target)
            .credentials
            .as_ref()
            .unwrap()
            .access_key_id,
        "E1"
    );
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.key == "dbs[0].replica.access-key-id" && w.message.contains("AK is not set")));
}

#[test]
fn an_endpoint_ending_in_slashes_and_spaces_parses_the_same_from_its_url() {
    // Found by fuzz/fuzz_targets/config_url.rs: `/ /` at the end of an endpoint lost its
    // last slash but kept the space, so the URL `url()` shows parsed to another endpoint.
    let e = env(&[]);
    for u in [
        "s3://bbb/p?endpoint=http://localhost:9000// /",
        "s3://bbb/p?endpoint=http://localhost:9000/%20/%20",
    ] {
        let t = parse_replica_url(u, &e).unwrap();
        match &t {
            ReplicaTarget::S3(s) => {
                assert_eq!(s.endpoint.as_deref(), Some("http://localhost:9000"), "{u}")
            }
            other => panic!("{u}: {other:?}"),
        }
        assert_eq!(parse_replica_url(&t.url(), &e).unwrap(), t, "{u}");
    }
}

#[test]
fn an_endpoint_with_a_query_or_fragment_is_refused() {
    // Found by fuzz/fuzz_targets/config_url.rs: `endpoint=h?x@y` was taken as an endpoint
    // (its host `h` has no `@`), and the URL `url()` shows cut `h?x@` off as credentials.
    let e = env(&[]);
    for u in [
        "s3://bbb/p?endpoint=ht%3Fx%40%3Dy",
        "s3://bbb/p?endpoint=https://h/%3Fq",
        "s3://bbb/p?endpoint=https://h%23f",
    ] {
        let msg = parse_replica_url(u, &e).unwrap_err().to_string();
        assert!(msg.contains("query or fragment"), "{u}: {msg}");
    }
    let text =
        "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bkt, endpoint: 'https://h?x'}\n";
    let msg = err_text(parse(text, &e));
    assert!(msg.contains("query or fragment"), "{msg}");
}

#[test]
fn a_bucket_named_like_an_s3_host_is_refused() {
    // Found by fuzz/fuzz_targets/config_url.rs (in make fuzz): a host form whose bucket part
    // is itself a host form (`b.s3.r.amazonaws.com.s3.r.amazonaws.com`) gave a bucket that
    // the URL `url()` shows for it reads as another bucket.
    let e = env(&[]);
    for u in [
        "s3://bucketcket.s3.us-2.-2.amazonaws.com.s3.us-2.-2.amazonaws.com/ps",
        "s3://bkt.nyc3.digitaloceanspaces.com.s3.amazonaws.com/x",
        "s3://bkt.s3.amazonaws.com.s3.eu-west-1.amazonaws.com/x",
    ] {
        let msg = parse_replica_url(u, &e).unwrap_err().to_string();
        assert!(msg.contains("is itself an S3 host"), "{u}: {msg}");
    }
    for u in [
        "s3://bkt.s3.eu-west-1.amazonaws.com/x",
        "s3://bkt.nyc3.digitaloceanspaces.com/x",
        "s3://www.example.com/x",
    ] {
        let t = parse_replica_url(u, &e).unwrap();
        assert_eq!(parse_replica_url(&t.url(), &e).unwrap(), t, "{u}");
    }
}
