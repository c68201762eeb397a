//! Stamps the version and the git commit into the build, for `replica_version()`.
fn main() {
    let sha = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=REPLICA_GIT_SHA={sha}");
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=REPLICA_PROFILE={profile}");
    println!("cargo:rerun-if-changed=.git/HEAD");
}
