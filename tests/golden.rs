//! Golden SQL tests: each `sql/tests/NAME.sql` is piped into Debian's `/usr/bin/sqlite3` in a
//! fresh scratch directory (the working directory), and what it prints (stdout and stderr,
//! merged in order) must equal `sql/tests/NAME.expected`.
//!
//! In the script, `@LIB@` is the extension's load path and `@TMP@` the scratch directory; in
//! the output, the scratch directory is written back as `@TMP@` and the load path as `@LIB@`.
//! A non-zero exit status of sqlite3 is appended as a last line `[exit status N]`.
//!
//! The environment is the clean one of `common::run` plus
//! `REPLICA_URL=file://@TMP@/replicas` and `REPLICA_LOG=off` (the extension's log lines,
//! on stderr by default, are `tests/messages.rs`'s subject). Leading comment lines of a script are directives:
//!
//! ```text
//! -- env: NAME=VALUE      set a variable (an empty value unsets it: `-- env: REPLICA_URL=`)
//! -- args: -bail          extra sqlite3 arguments
//! -- file: NAME           write the file NAME (in the scratch dir) from the `--| ` lines after it
//! --| dbs:
//! --|   - path: app.db
//! ```
//!
//! `UPDATE_GOLDEN=1 cargo nextest run --test golden` rewrites the `.expected` files (review
//! the diff before committing it).

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn sql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/tests")
}

/// One test per script; `every_script_has_a_test` keeps this list complete.
macro_rules! golden {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_golden(stringify!($name));
            }
        )*
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

golden!(
    load_and_sync,
    status_shape,
    status_after_sync,
    restore_by_name_and_url,
    restore_point_in_time,
    restore_points_and_verify,
    snapshot,
    errors,
    restore_errors,
    no_replica_configured,
    not_tracked,
    vfs_uri_param,
    replica_off_param,
    bad_config,
    bad_env,
    missing_config,
    config_file,
    version,
);

#[test]
fn every_script_has_a_test() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(sql_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".sql") {
            if !SCRIPTS.contains(&stem) {
                missing.push(stem.to_string());
            }
            assert!(
                sql_dir().join(format!("{stem}.expected")).exists()
                    || std::env::var_os("UPDATE_GOLDEN").is_some(),
                "sql/tests/{stem}.sql has no .expected file (run with UPDATE_GOLDEN=1 to write it)"
            );
        }
    }
    for name in SCRIPTS {
        assert!(
            sql_dir().join(format!("{name}.sql")).exists(),
            "golden!({name}) names a missing sql/tests/{name}.sql"
        );
    }
    assert!(
        missing.is_empty(),
        "sql/tests scripts without a golden!() entry in tests/golden.rs: {missing:?}"
    );
}

struct Script {
    env: Vec<(String, String)>,
    args: Vec<String>,
    files: Vec<(String, String)>,
    sql: String,
}

/// Reads the leading directive comments of a script (after substitution).
fn parse_script(text: &str) -> Script {
    let mut script = Script {
        env: Vec::new(),
        args: Vec::new(),
        files: Vec::new(),
        sql: text.to_string(),
    };
    for line in text.lines() {
        if !line.starts_with("--") {
            break;
        }
        if let Some(kv) = line.strip_prefix("-- env:") {
            let (k, v) = kv
                .trim()
                .split_once('=')
                .unwrap_or_else(|| panic!("bad directive {line:?}: want NAME=VALUE"));
            script
                .env
                .push((k.trim().to_string(), v.trim().to_string()));
        } else if let Some(args) = line.strip_prefix("-- args:") {
            script
                .args
                .extend(args.split_whitespace().map(str::to_string));
        } else if let Some(name) = line.strip_prefix("-- file:") {
            script.files.push((name.trim().to_string(), String::new()));
        } else if let Some(content) = line.strip_prefix("--|") {
            let (_, body) = script
                .files
                .last_mut()
                .unwrap_or_else(|| panic!("{line:?} outside a `-- file:` directive"));
            body.push_str(content.strip_prefix(' ').unwrap_or(content));
            body.push('\n');
        }
    }
    script
}

fn run_golden(name: &str) {
    let sql_path = sql_dir().join(format!("{name}.sql"));
    let expected_path = sql_dir().join(format!("{name}.expected"));
    let source = std::fs::read_to_string(&sql_path)
        .unwrap_or_else(|e| panic!("{}: {e}", sql_path.display()));

    let tmp = TempDir::new(&format!("golden-{name}"));
    let tmp_str = tmp.path().display().to_string();
    let lib = load_path();
    let text = source.replace("@LIB@", &lib).replace("@TMP@", &tmp_str);
    let script = parse_script(&text);
    for (file, body) in &script.files {
        let path = tmp.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    let replicas = format!("file://{tmp_str}/replicas");
    // The extension's log (stderr by default) is not part of a script's output.
    let mut env: Vec<(&str, &str)> = vec![("REPLICA_URL", &replicas), ("REPLICA_LOG", "off")];
    for (k, v) in &script.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    // `sh -c` merges stderr into stdout on one pipe, so the two interleave as printed.
    let mut args: Vec<&str> = vec!["-c", "exec \"$0\" \"$@\" 2>&1", SQLITE3];
    args.extend(script.args.iter().map(String::as_str));
    let out = run("/bin/sh", &args, tmp.path(), &env, &script.sql);

    let mut actual = normalize(&String::from_utf8_lossy(&out.stdout), tmp.path(), &lib);
    if let Some(code) = out.status.code().filter(|&c| c != 0) {
        actual.push_str(&format!("[exit status {code}]\n"));
    } else if out.status.code().is_none() {
        actual.push_str(&format!("[killed: {}]\n", out.status));
    }

    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)\nactual output:\n{actual}",
            expected_path.display()
        )
    });
    if expected != actual {
        panic!(
            "sql/tests/{name}.sql: output differs from sql/tests/{name}.expected (- expected, + actual; \
             UPDATE_GOLDEN=1 rewrites it):\n{}",
            diff(&expected, &actual)
        );
    }
}

/// Writes the scratch directory (as given and canonical) as `@TMP@` and the library as `@LIB@`.
fn normalize(output: &str, tmp: &Path, lib: &str) -> String {
    let mut s = output.replace(lib, "@LIB@");
    if let Ok(canon) = tmp.canonicalize() {
        s = s.replace(&canon.display().to_string(), "@TMP@");
    }
    s.replace(&tmp.display().to_string(), "@TMP@")
}

/// A line diff (longest common subsequence) with a little context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c != ' ')
        .map(|(k, _)| k)
        .collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (c, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&x| x.abs_diff(k) <= CONTEXT);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != k) {
            out.push_str("  ...\n");
        }
        out.push_str(&format!("{c} {line}\n"));
        last_shown = Some(k);
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str("(the two differ in the final newline)\n");
    }
    out
}
