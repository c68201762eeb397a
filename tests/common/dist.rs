//! The packages `make dist` built into `dist/`, for the tests that install them as a user
//! would (tests/dist_*.rs, run by `make test-dist`): never the source tree. Without
//! `dist/` a test prints a skip, unless `REPLICA_DIST_REQUIRED` is set (as `make test-dist`
//! does), when it fails.

use std::path::{Path, PathBuf};

/// `dist/`, or `None` (a printed skip) when `make dist` has not run and it is not required.
pub fn dist_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    if dir.join("BUILD").exists() {
        return Some(dir);
    }
    let why = format!("{} has no build: run `make dist`", dir.display());
    assert!(std::env::var_os("REPLICA_DIST_REQUIRED").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// The one file of `dir` whose name starts with `prefix` and ends with `suffix`.
pub fn dist_file(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {prefix}*{suffix} in {}, found {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

/// A value of `dist/BUILD` (`version`, `glibc`, `so_bytes`, `so_sha256`).
pub fn build_value(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("BUILD")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("dist/BUILD has no {key}"))
        .to_string()
}

/// The SHA-256 of a file, by `sha256sum`: every package must carry the same stripped .so.
pub fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
