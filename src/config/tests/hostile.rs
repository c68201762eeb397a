//! Config files, URLs and environments written to hurt: alias bombs, deep nesting, huge or
//! endless files, NUL bytes, invalid bucket names, line breaks in header values and unset
//! variables that would move a path. Each is refused with an error naming the file, key or
//! variable, before anything is built from it.

use std::path::Path;

use super::{env, err_text, parse, FILE};
use crate::config::discovery::read_config_file;
use crate::config::{parse_replica_url, ConfigError};

/// Nine levels of nine aliases: about 400 bytes that a loader copying every alias would
/// expand to 9^9 (387 million) values.
fn alias_bomb() -> String {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    text
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 500, "{}", bomb.len());
    let msg = err_text(parse(&bomb, &env(&[])));
    assert!(
        msg.starts_with(FILE) && msg.contains("line 6 column 8: aliases"),
        "{msg}"
    );
    // Anchors and merge keys as configs use them stay fine.
    let defaults = "defaults: &d {type: file, sync-interval: 5s}\ndbs:\n".to_string()
        + &(0..500)
            .map(|i| format!("  - path: /db{i}.db\n    replica: {{<<: *d, path: /bk/{i}}}\n"))
            .collect::<String>();
    assert_eq!(parse(&defaults, &env(&[])).unwrap().dbs.len(), 500);
}

#[test]
fn a_deeply_nested_yaml_is_refused() {
    // Compact nested lists: two bytes a level, which the loader builds by recursion.
    let deep = format!("{}x\n", "- ".repeat(100_000));
    let msg = err_text(parse(&deep, &env(&[])));
    assert!(
        msg.starts_with(FILE) && msg.contains("nest more than 64 levels"),
        "{msg}"
    );
}

#[test]
fn a_config_file_over_the_size_bound_is_refused() {
    let big = format!("# {}\ndbs: []\n", "x".repeat(1 << 20));
    let msg = err_text(parse(&big, &env(&[])));
    assert!(
        msg.contains(FILE) && msg.contains("more than a config file may be (1024 KiB)"),
        "{msg}"
    );

    let dir = crate::base::testing::fresh_dir("config-bounds");
    let file = dir.join("big.yml");
    std::fs::write(&file, &big).unwrap();
    let read_err = |p: &Path| match read_config_file(p) {
        Ok(t) => panic!("{} was read ({} bytes)", p.display(), t.len()),
        Err(e @ ConfigError::ReadConfigFile { .. }) => e.to_string(),
        Err(e) => panic!("{}: {e}", p.display()),
    };
    let msg = read_err(&file);
    assert!(
        msg.contains("big.yml") && msg.contains("bytes, more than"),
        "{msg}"
    );
    // Endless or special files are refused without reading: a device, a FIFO nobody
    // writes, a directory.
    let msg = read_err(Path::new("/dev/zero"));
    assert!(
        msg.contains("/dev/zero") && msg.contains("a device, not a regular file"),
        "{msg}"
    );
    let fifo = dir.join("fifo.yml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert!(read_err(&fifo).contains("a FIFO, not a regular file"));
    assert!(read_err(&dir).contains("a directory"));
    // A file within the bound reads as before.
    std::fs::write(&file, "dbs: []\n").unwrap();
    assert_eq!(read_config_file(&file).unwrap(), "dbs: []\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_nul_byte_in_a_value_is_refused() {
    // A raw NUL would end the scanner's input: the entries after it would vanish.
    let raw = "dbs:\n  - path: /a.db\0\n    replica: {path: /bk}\n";
    let msg = err_text(parse(raw, &env(&[])));
    assert!(
        msg.starts_with(FILE) && msg.contains("line 2 column 16: a NUL byte"),
        "{msg}"
    );
    // An escaped one in a double-quoted value, wherever it is.
    for text in [
        "dbs:\n  - path: \"/a.db\\0.x\"\n    replica: {path: /bk}\n",
        "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: bkt, region: \"us\\0east\"}\n",
        "unused-key: \"\\0\"\n",
    ] {
        let msg = err_text(parse(text, &env(&[])));
        assert!(
            msg.starts_with(FILE) && msg.contains("NUL byte"),
            "{text:?}: {msg}"
        );
    }
    // In a URL (SQL text can hold one), raw or percent-encoded.
    for url in [
        "/bk/a\0b",
        "file:///bk/a%00b",
        "s3://bkt/a%00b",
        "s3://bkt/a\0b",
    ] {
        let msg = parse_replica_url(url, &env(&[])).unwrap_err().to_string();
        assert!(msg.contains("NUL byte"), "{url:?}: {msg}");
    }
}

#[test]
fn invalid_bucket_names_are_refused() {
    let bad = [
        ("ab", "3 to 63 characters"),
        (&"a".repeat(64), "3 to 63 characters"),
        ("My-Bucket", "characters a bucket name cannot have"),
        ("my_bucket", "characters a bucket name cannot have"),
        ("-bucket", "begin and end with a letter or digit"),
        ("bucket.", "begin and end with a letter or digit"),
        ("my..bucket", "must not contain `..`"),
        ("192.168.5.4", "must not be an IP address"),
    ];
    for (bucket, why) in bad {
        for endpoint in ["", "?endpoint=https://acct.r2.cloudflarestorage.com"] {
            let url = format!("s3://{bucket}/db{endpoint}");
            let msg = parse_replica_url(&url, &env(&[])).unwrap_err().to_string();
            assert!(msg.contains(why), "{url}: {msg}");
        }
        let text =
            format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: '{bucket}'}}\n");
        let msg = err_text(parse(&text, &env(&[])));
        assert!(
            msg.contains("dbs[0].replica.bucket") && msg.contains(why),
            "{msg}"
        );
    }
    // The top level's bucket is named as such; a control character is not echoed.
    let text = "bucket: \"bk\\r\\nX: y\"\ndbs:\n  - path: /a.db\n    replica: {type: s3}\n";
    let msg = err_text(parse(text, &env(&[])));
    assert!(
        msg.contains(": bucket: the bucket name given has characters") && !msg.contains("X: y"),
        "{msg}"
    );
    for good in ["abc", "my-bucket.2026", &"a".repeat(63), "1.2.3.4.5"] {
        assert!(
            parse_replica_url(&format!("s3://{good}/x"), &env(&[])).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn crlf_in_a_header_value_is_refused() {
    let injected = "us-east-1\r\nX-Amz-Injected: 1";
    let quoted = "\"us-east-1\\r\\nX-Amz-Injected: 1\"";
    for field in ["region", "access-key-id", "secret-access-key", "endpoint"] {
        let mut fields = vec![("access-key-id", "AK"), ("secret-access-key", "SK")];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, quoted));
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let text = format!(
            "dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: bkt, {}}}\n",
            fields.join(", ")
        );
        let msg = err_text(parse(&text, &env(&[])));
        assert!(
            msg.contains(&format!("dbs[0].replica.{field}"))
                && msg.contains("control character")
                && !msg.contains("Injected"),
            "{field}: {msg}"
        );
    }
    for url in [
        "s3://bkt/db?region=us-east-1%0D%0AX-Amz-Injected:%201",
        "s3://bkt/db?endpoint=https://h%0D%0AX-Amz-Injected:%201/",
    ] {
        let msg = parse_replica_url(url, &env(&[])).unwrap_err().to_string();
        assert!(msg.contains("control character"), "{url}: {msg}");
    }
    for var in [
        "AWS_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_ENDPOINT_URL",
    ] {
        let mut vars = vec![("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];
        vars.retain(|(k, _)| *k != var);
        vars.push((var, injected));
        let msg = parse_replica_url("s3://bkt/db", &env(&vars))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(var) && msg.contains("control character") && !msg.contains("Injected"),
            "{var}: {msg}"
        );
    }
}

#[test]
fn a_line_break_in_an_s3_url_host_is_refused() {
    // Found by fuzz/fuzz_targets/config_url.rs: the host forms of an s3 URL
    // (`bucket.host:port`, `bucket.s3.<region>.amazonaws.com`) made an endpoint or a region
    // from the host without the header-value check, so a line break reached a header.
    for url in [
        "s3://bkt.minio\r\nX-Amz-Injected:9000/db",
        "s3://bkt.s3.us-east-1\r\nX-Amz-Injected.amazonaws.com/db",
        "s3://bkt.s3.us-east-1\n.amazonaws.com/db",
        "s3://bkt.eu\t1.digitaloceanspaces.com/db",
    ] {
        let msg = parse_replica_url(url, &env(&[])).unwrap_err().to_string();
        assert!(
            msg.contains("the URL's host holds a control character"),
            "{url:?}: {msg}"
        );
    }
    assert!(parse_replica_url("s3://bkt.minio:9000/db", &env(&[])).is_ok());
}

#[test]
fn a_space_in_an_s3_url_host_is_refused() {
    // Found by fuzz/fuzz_targets/config_url.rs: `s3://bkt.h:9000 /db` made the endpoint
    // `http://h:9000 ` (with the space), and the URL `url()` shows for it parsed to another
    // endpoint; no host holds a space.
    for url in [
        "s3://bkt.minio:9000 /db",
        "s3://bkt.mi nio:9000/db",
        "s3://bkt.minio:9000\u{2003}/db",
        "s3://bkt.s3.us-east-1 .amazonaws.com/db",
    ] {
        let msg = parse_replica_url(url, &env(&[])).unwrap_err().to_string();
        assert!(
            msg.contains("the URL's host holds a space"),
            "{url:?}: {msg}"
        );
    }
}

#[test]
fn an_unset_variable_in_a_path_is_an_error() {
    let e = env(&[("SET", "here")]);
    for (text, key) in [
        ("dbs:\n  - path: ${DB_DIR}/app.db\n    replica: {path: /bk}\n", "dbs[0].path"),
        ("dbs:\n  - path: /app.db\n    replica: {path: /bk/$SET/$MISSING}\n", "dbs[0].replica.path"),
        ("dbs:\n  - path: /app.db\n    replica: {url: 'file:///bk/${MISSING}/app'}\n", "dbs[0].replica.url"),
        ("dbs:\n  - path: /app.db\n    replica: {url: 's3://bkt/${MISSING}/app'}\n", "dbs[0].replica.url"),
        ("dbs:\n  - path: /app.db\n    replica: {type: s3, bucket: 'app-${MISSING}', path: x}\n", "dbs[0].replica.bucket"),
        ("dbs:\n  - path: /app.db\n    replica: {type: s3, bucket: bkt, endpoint: 'https://${MISSING}.r2.cloudflarestorage.com'}\n", "dbs[0].replica.endpoint"),
    ] {
        let msg = err_text(parse(text, &e));
        assert!(
            msg.contains(&format!("{key}: ")) && msg.contains("is not set") && msg.contains("another place"),
            "{text}: {msg}"
        );
    }
    // Litestream's behaviour stays where it is documented: a value that is only an unset
    // variable is not given (an optional endpoint is then AWS), and other fields warn.
    let text = "dbs:\n  - path: /app.db\n    replica: {type: s3, bucket: bkt, endpoint: $NO_ENDPOINT, region: 'us-${NO_REGION}'}\n";
    let cfg = parse(text, &e).unwrap();
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.key == "dbs[0].replica.region" && w.message.contains("NO_REGION is not set")));
}
