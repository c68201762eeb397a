//! The README's runnable snippets, run as written: every fenced block of `README.md` preceded
//! by a marker line
//!
//! ```text
//! <!-- runnable expect="restored copy matches" -->
//! ```
//!
//! (an HTML comment, invisible on GitHub) runs in a scratch directory of its own, and must
//! exit 0 with stdout containing every `expect="…"` text of its marker (at least one). The
//! blocks are written to be pasted from the repository root after `make build`: the scratch
//! directory gets `target/release/libreplica.so` (a symlink to the extension under test, see
//! `common::so_path`), so `./target/release/libreplica` means the same there. A snippet sets
//! its own `REPLICA_URL` (or names its replica otherwise); the environment it starts with
//! has no `REPLICA_*`, `LITESTREAM_*` or AWS credential variables.
//!
//! How each language runs: `sh`/`bash`: `bash -e -o pipefail FILE`, with `sqlite3` and
//! `python3` on the `PATH` meaning Debian's `/usr/bin/sqlite3` and `/usr/bin/python3`;
//! `sql`/`sqlite3`: piped into `/usr/bin/sqlite3 -bail`; `python`: `/usr/bin/python3 FILE`;
//! `ruby`: `ruby FILE` (skipped with a notice when ruby or its sqlite3 gem is missing, as in
//! tests/hosts.rs; required under CI).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MARKER: &str = "<!-- runnable";

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence in README.md.
    line: usize,
    lang: String,
    code: String,
    expect: Vec<String>,
}

fn readme() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `expect="…"` values of a marker line; panics on anything else in it.
fn parse_marker(marker: &str, line: usize) -> Vec<String> {
    let inner = marker
        .trim()
        .strip_prefix(MARKER)
        .and_then(|s| s.strip_suffix("-->"))
        .unwrap_or_else(|| {
            panic!("README.md:{line}: a marker is one line: <!-- runnable expect=\"…\" -->")
        });
    let mut rest = inner.trim();
    let mut expect = Vec::new();
    while !rest.is_empty() {
        let after = rest.strip_prefix("expect=\"").unwrap_or_else(|| {
            panic!("README.md:{line}: unknown marker attribute at {rest:?} (known: expect=\"…\")")
        });
        let end = after
            .find('"')
            .unwrap_or_else(|| panic!("README.md:{line}: unterminated expect=\"…\""));
        assert!(end > 0, "README.md:{line}: empty expect=\"\"");
        expect.push(after[..end].to_string());
        rest = after[end + 1..].trim_start();
    }
    assert!(
        !expect.is_empty(),
        "README.md:{line}: a runnable block needs expect=\"…\": what its output must contain"
    );
    expect
}

/// Every runnable block of `text`, in order.
fn runnable_blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with(MARKER) {
            i += 1;
            continue;
        }
        let expect = parse_marker(lines[i], i + 1);
        let fence_line = i + 1;
        let lang = lines
            .get(fence_line)
            .and_then(|l| l.strip_prefix("```"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "README.md:{}: a runnable marker must be followed directly by a fence with a \
                     language, like ```sh",
                    i + 1
                )
            });
        let mut code = String::new();
        let mut j = fence_line + 1;
        loop {
            let l = lines.get(j).unwrap_or_else(|| {
                panic!(
                    "README.md:{}: the fenced block never closes",
                    fence_line + 1
                )
            });
            if l.trim_end() == "```" {
                break;
            }
            code.push_str(l);
            code.push('\n');
            j += 1;
        }
        blocks.push(Block {
            line: fence_line + 1,
            lang: lang.to_string(),
            code,
            expect,
        });
        i = j + 1;
    }
    blocks
}

fn symlink(target: &Path, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", link.display(), target.display()));
}

/// Runs one block in a scratch directory of its own; `Err` says what went wrong, `Ok(false)`
/// that it was skipped.
fn run_block(b: &Block) -> Result<bool, String> {
    let tmp = TempDir::new(&format!("readme-{}", b.line));
    let work = tmp.join("work");
    symlink(&so_path(), &work.join("target/release/libreplica.so"));
    let bin = tmp.join("bin");
    symlink(Path::new(SQLITE3), &bin.join("sqlite3"));
    symlink(Path::new(PYTHON3), &bin.join("python3"));

    let file = |name: &str| -> PathBuf {
        let p = tmp.join(name);
        std::fs::write(&p, &b.code).unwrap();
        p
    };
    let (program, args, stdin): (String, Vec<String>, &str) = match b.lang.as_str() {
        "sh" | "bash" => {
            let f = file("snippet.sh");
            let args = ["-e", "-o", "pipefail", f.to_str().unwrap()];
            ("bash".into(), args.map(String::from).to_vec(), "")
        }
        "sql" | "sqlite3" => (SQLITE3.into(), vec!["-bail".into()], &b.code),
        "python" => {
            let f = file("snippet.py");
            (PYTHON3.into(), vec![f.display().to_string()], "")
        }
        "ruby" => {
            if !ruby_available() {
                return Ok(false);
            }
            let f = file("snippet.rb");
            ("ruby".into(), vec![f.display().to_string()], "")
        }
        other => {
            return Err(format!(
                "no runner for ```{other} (known: sh, bash, sql, sqlite3, python, ruby)"
            ))
        }
    };

    let mut cmd = std::process::Command::new(&program);
    cmd.args(&args).current_dir(&work);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("REPLICA_")
            || k.starts_with("LITESTREAM_")
            || k.starts_with("AWS_")
            || k == "RUBYOPT"
        {
            cmd.env_remove(&k);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", bin.display()));
    let out = run_command(cmd, stdin, Duration::from_secs(120));
    let (so, se) = (stdout(&out), stderr(&out));
    let missing: Vec<&String> = b
        .expect
        .iter()
        .filter(|e| !so.contains(e.as_str()))
        .collect();
    if !out.status.success() || !missing.is_empty() {
        return Err(format!(
            "{}; stdout lacks {missing:?}\n--- snippet:\n{}--- stdout:\n{so}--- stderr:\n{se}",
            out.status, b.code
        ));
    }
    Ok(true)
}

#[test]
fn readme_snippets_run() {
    let blocks = runnable_blocks(&readme());
    assert!(
        !blocks.is_empty(),
        "README.md has no runnable blocks (a `<!-- runnable expect=\"…\" -->` line before a fence)"
    );
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for b in &blocks {
        match run_block(b) {
            Ok(true) => ran += 1,
            Ok(false) => skipped += 1,
            Err(e) => failures.push(format!("README.md:{} (```{}): {e}", b.line, b.lang)),
        }
    }
    println!(
        "{} runnable README blocks: {ran} ran, {skipped} skipped, {} failed",
        blocks.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The parser itself: a marker before a fence, its expectations, and the block's text.
#[test]
fn the_marker_parser_finds_blocks() {
    let text = "intro\n<!-- runnable expect=\"a b\" expect=\"c\" -->\n```sh\necho a b c\n```\n\
                ```sh\nnot marked\n```\n";
    let blocks = runnable_blocks(text);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].lang, "sh");
    assert_eq!(blocks[0].code, "echo a b c\n");
    assert_eq!(blocks[0].expect, ["a b", "c"]);
    assert_eq!(blocks[0].line, 3);
}

#[test]
#[should_panic(expected = "needs expect")]
fn a_marker_without_expectations_is_refused() {
    runnable_blocks("<!-- runnable -->\n```sh\ntrue\n```\n");
}

#[test]
#[should_panic(expected = "followed directly by a fence")]
fn a_marker_away_from_its_fence_is_refused() {
    runnable_blocks("<!-- runnable expect=\"x\" -->\n\n```sh\ntrue\n```\n");
}
