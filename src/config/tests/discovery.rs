//! Finding the config file from `REPLICA_CONFIG`, `LITESTREAM_CONFIG` and the default places.

use std::path::{Path, PathBuf};

use super::env;
use crate::config::locate_config_file;

#[test]
fn locating_the_config_file() {
    let none = |_: &Path| false;
    let all = |_: &Path| true;
    assert_eq!(locate_config_file(&env(&[]), &none).unwrap(), None);
    assert_eq!(
        locate_config_file(&env(&[]), &all).unwrap(),
        Some(PathBuf::from("/app/config/litestream.yml"))
    );
    let only_etc = |p: &Path| p == Path::new("/etc/litestream.yml");
    assert_eq!(
        locate_config_file(&env(&[]), &only_etc).unwrap(),
        Some(PathBuf::from("/etc/litestream.yml"))
    );
    let e = env(&[
        ("REPLICA_CONFIG", "conf/r.yml"),
        ("LITESTREAM_CONFIG", "/l.yml"),
    ]);
    assert_eq!(
        locate_config_file(&e, &all).unwrap(),
        Some(PathBuf::from("/app/conf/r.yml"))
    );
    let e = env(&[("LITESTREAM_CONFIG", "/l.yml")]);
    assert_eq!(
        locate_config_file(&e, &all).unwrap(),
        Some(PathBuf::from("/l.yml"))
    );
    let err = locate_config_file(&e, &only_etc).unwrap_err();
    assert_eq!(
        err.to_string(),
        "LITESTREAM_CONFIG names the config file /l.yml, which does not exist"
    );
    let err = locate_config_file(&env(&[("REPLICA_CONFIG", "/r.yml")]), &none).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("REPLICA_CONFIG names the config file /r.yml"));
    assert_eq!(
        locate_config_file(
            &env(&[("REPLICA_CONFIG", "off"), ("LITESTREAM_CONFIG", "/l.yml")]),
            &all
        )
        .unwrap(),
        None
    );
}
