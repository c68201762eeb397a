//! The shipped `.so` itself: it must load into any host's SQLite (so it links no libsqlite3
//! of its own and reaches SQLite only through the API table it is handed), and it exports
//! nothing but its entry point.

mod common;

use common::*;
use std::process::Command;

fn tool(program: &str, args: &[&str]) -> String {
    let so = so_path();
    let o = Command::new(program)
        .args(args)
        .arg(&so)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (binutils): {e}"));
    check(&o, &format!("{program} {}", args.join(" ")))
}

#[test]
fn links_no_libsqlite3() {
    let out = tool("readelf", &["-d", "-W"]);
    let needed: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        needed.iter().any(|n| n.starts_with("libc.so")),
        "readelf found no NEEDED entries (parsing?):\n{out}"
    );
    let sqlite: Vec<&&str> = needed
        .iter()
        .filter(|n| n.to_ascii_lowercase().contains("sqlite"))
        .collect();
    assert!(sqlite.is_empty(), "the extension links {sqlite:?}; it must use the host's SQLite through the API table:\n{out}");
}

#[test]
fn exports_only_the_entry_point() {
    let out = tool("nm", &["-D", "--defined-only"]);
    // `ADDRESS TYPE NAME`; text symbols are T (global) or W/i (weak, indirect).
    let text: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "T" | "t" | "W" | "i").then_some(name)
        })
        .collect();
    assert_eq!(
        text,
        ["sqlite3_replica_init"],
        "exported text symbols of {}:\n{out}",
        so_path().display()
    );
    // No Rust or other symbols leak through the dynamic table either (data, BSS, …).
    let all: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        all,
        ["sqlite3_replica_init"],
        "exported symbols of {}:\n{out}",
        so_path().display()
    );
}
