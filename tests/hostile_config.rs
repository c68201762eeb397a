//! A hostile `litestream.yml` in a real host: Debian's python3 loads the release extension
//! with `REPLICA_CONFIG` naming a ~400-byte file of nested YAML aliases (a "billion laughs"),
//! under an address-space limit. The load must fail with an error naming the file and the
//! aliases, and the host must go on, instead of growing until an allocation fails and the
//! process aborts. The same host and limit with a sound config file load, write and ship,
//! so the limit is not what refuses the bomb.
mod common;

use common::*;
use std::time::Duration;

/// The host's address space: ample for python3 with the extension, its threads and a
/// replicated write, and a tiny fraction of what the bomb would expand to (tens of GB).
const ADDRESS_SPACE: &str = "--as=1073741824";

/// Nine levels of nine aliases: 9^9 values once every alias is copied.
fn alias_bomb() -> String {
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(", ");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text
}

/// Loads the extension in python3 under the address-space limit with `REPLICA_CONFIG` set
/// to `config`, then runs `body`; prints `refused <error>` if the load fails.
fn load_with_config(dir: &TempDir, config: &str, body: &str) -> std::process::Output {
    let script = format!(
        r#"
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
try:
    boot.load_extension(os.environ["REPLICA_TEST_LIB"])
except sqlite3.Error as e:
    print("refused", e)
    raise SystemExit(0)
print("loaded")
{body}
"#
    );
    let lib = load_path();
    let cmd = replica_command(
        "/usr/bin/prlimit",
        &[ADDRESS_SPACE, PYTHON3, "-"],
        dir.path(),
        &[("REPLICA_TEST_LIB", &lib), ("REPLICA_CONFIG", config)],
    );
    run_command(cmd, &script, Duration::from_secs(120))
}

#[test]
fn a_yaml_alias_bomb_fails_the_load_instead_of_aborting_the_host() {
    let dir = TempDir::new("alias-bomb");
    let bomb = alias_bomb();
    assert!(bomb.len() < 500, "the bomb is {} bytes", bomb.len());
    std::fs::write(dir.join("bomb.yml"), &bomb).unwrap();
    let o = load_with_config(&dir, "bomb.yml", "");
    let out = check(&o, "loading the extension with an alias bomb as its config");
    let expected = format!("{}: invalid YAML: line ", dir.join("bomb.yml").display());
    assert!(
        out.starts_with("refused ") && out.contains(&expected) && out.contains("aliases"),
        "the load was not refused with an error naming the file and the aliases:\n{out}\nstderr:\n{}",
        stderr(&o)
    );

    // The same limit leaves room for the extension's real work with a sound config.
    std::fs::write(
        dir.join("sound.yml"),
        "dbs:\n  - path: app.db\n    replica:\n      path: replicas/app.db\n",
    )
    .unwrap();
    let o = load_with_config(
        &dir,
        "sound.yml",
        r#"c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(x)")
c.execute("INSERT INTO t VALUES (1)")
print("synced", c.execute("SELECT replica_sync(30000)").fetchone()[0])
"#,
    );
    let out = check(
        &o,
        "loading the extension with a sound config under the limit",
    );
    assert!(
        out.contains("loaded\n") && out.contains("synced "),
        "{out}\nstderr:\n{}",
        stderr(&o)
    );
}
