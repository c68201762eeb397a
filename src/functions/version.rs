//! `replica_version()`: what this build is (crate version, git revision, build profile) and
//! the SQLite it runs in. It must not read anything beyond what the build baked in and the
//! SQLite version it is handed.

pub fn version(sqlite_version: &str) -> String {
    format!(
        "libreplica {} (git {}, {} build, SQLite {sqlite_version})",
        env!("CARGO_PKG_VERSION"),
        env!("REPLICA_GIT_SHA"),
        env!("REPLICA_PROFILE")
    )
}
