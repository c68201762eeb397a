//! Where messages go: process-wide warnings (kept for `replica_status()`), errors, notices
//! and the load's summary, each written through the sink the FFI entry installs (SQLite's
//! `sqlite3_log`) and, as `REPLICA_LOG` says, to stderr (the default), to syslog, or to
//! neither (`off`). It must never be given a secret: callers redact first.

use super::lock::lock;
use std::sync::{Mutex, OnceLock};

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SINK: OnceLock<fn(Level, &str)> = OnceLock::new();
static DESTINATION: OnceLock<Destination> = OnceLock::new();

/// How much a line matters; also its syslog severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// What the load found configured: worth a line, never worth action.
    Info,
    /// Something worth knowing that needs no action: a fallback that repairs itself.
    Notice,
    Warning,
    Error,
}

impl Level {
    /// The word stderr lines carry after `libreplica` (none for `Info`).
    fn label(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Notice => " notice",
            Level::Warning => " warning",
            Level::Error => " error",
        }
    }

    /// The syslog severity (RFC 5424): error 3, warning 4, notice 5, informational 6.
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Notice => 5,
            Level::Info => 6,
        }
    }
}

/// Where lines go besides SQLite's log (`REPLICA_LOG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Syslog,
    Off,
}

impl Destination {
    /// `REPLICA_LOG`'s value: unset or empty is stderr; anything unknown is stderr too,
    /// with the warning to show.
    pub fn parse(value: Option<&str>) -> (Destination, Option<String>) {
        match value.map(str::trim) {
            None | Some("") => (Destination::Stderr, None),
            Some(v) if v.eq_ignore_ascii_case("stderr") => (Destination::Stderr, None),
            Some(v) if v.eq_ignore_ascii_case("syslog") => (Destination::Syslog, None),
            Some(v) if v.eq_ignore_ascii_case("off") => (Destination::Off, None),
            Some(v) => (
                Destination::Stderr,
                Some(format!(
                    "REPLICA_LOG={v:?} is not one of stderr, syslog or off; writing to stderr"
                )),
            ),
        }
    }
}

/// The destination, read from the environment at the first line of the process.
fn destination() -> Destination {
    let mut warning = None;
    let d = *DESTINATION.get_or_init(|| {
        let (d, w) = Destination::parse(std::env::var("REPLICA_LOG").ok().as_deref());
        warning = w;
        d
    });
    if let Some(w) = warning {
        write(d, Level::Warning, &w);
    }
    d
}

/// Installs where log lines go besides stderr (once per process; later calls are ignored).
pub fn set_sink(sink: fn(Level, &str)) {
    let _ = SINK.set(sink);
}

/// A process-wide warning, shown by `replica_status()` once however often it is raised.
pub fn add_warning(msg: &str) {
    let mut w = lock(&WARNINGS);
    if !w.iter().any(|x| x == msg) {
        w.push(msg.to_string());
    }
    drop(w);
    line(Level::Warning, msg);
}

pub fn warnings() -> Vec<String> {
    lock(&WARNINGS).clone()
}

/// An error worth the operator's attention.
pub fn error(msg: &str) {
    line(Level::Error, msg);
}

/// Something worth knowing that needs no action: a fallback that repairs itself.
pub fn notice(msg: &str) {
    line(Level::Notice, msg);
}

/// What the load found: which databases replicate where, or that none will.
pub fn info(msg: &str) {
    line(Level::Info, msg);
}

fn line(level: Level, msg: &str) {
    if let Some(sink) = SINK.get() {
        sink(level, &format!("libreplica: {msg}"));
    }
    write(destination(), level, msg);
}

fn write(d: Destination, level: Level, msg: &str) {
    match d {
        Destination::Off => {}
        Destination::Stderr => eprintln!("libreplica{}: {msg}", level.label()),
        Destination::Syslog => {
            if let Err(e) = syslog(level, msg) {
                syslog_unreachable(&e);
                eprintln!("libreplica{}: {msg}", level.label());
            }
        }
    }
}

/// The local syslog socket: the only place syslog(3) itself writes to on Linux.
const SYSLOG_SOCKET: &str = "/dev/log";

fn syslog(level: Level, msg: &str) -> std::io::Result<()> {
    syslog_to(std::path::Path::new(SYSLOG_SOCKET), level, msg)
}

/// One datagram to the syslog socket at `socket`, facility `user` (1), tagged
/// `libreplica[pid]`.
fn syslog_to(socket: &std::path::Path, level: Level, msg: &str) -> std::io::Result<()> {
    let text = format!(
        "<{}>libreplica[{}]: {msg}",
        8 + level.severity(),
        std::process::id()
    );
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.send_to(text.as_bytes(), socket).map(|_| ())
}

/// Says once that syslog cannot be reached, so that lines go to stderr rather than nowhere.
fn syslog_unreachable(e: &std::io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "libreplica warning: REPLICA_LOG=syslog: cannot send to {SYSLOG_SOCKET} ({e}); writing to stderr instead"
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_log_chooses_the_destination() {
        assert_eq!(Destination::parse(None), (Destination::Stderr, None));
        assert_eq!(Destination::parse(Some("")), (Destination::Stderr, None));
        assert_eq!(Destination::parse(Some("OFF")).0, Destination::Off);
        assert_eq!(Destination::parse(Some("syslog")).0, Destination::Syslog);
        let (d, w) = Destination::parse(Some("journald"));
        assert_eq!(d, Destination::Stderr);
        assert!(w.unwrap().contains("\"journald\" is not one of"));
    }

    #[test]
    fn a_syslog_line_is_one_datagram_with_facility_user_and_a_tag() {
        let dir = crate::base::testing::fresh_dir("syslog");
        let path = dir.join("log");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        syslog_to(&path, Level::Warning, "app.db: something").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("<12>libreplica[{}]: app.db: something", std::process::id())
        );
        assert!(syslog_to(&dir.join("none"), Level::Error, "x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn levels_map_to_syslog_severities() {
        assert_eq!(Level::Error.severity(), 3);
        assert_eq!(Level::Info.severity(), 6);
        assert_eq!(Level::Info.label(), "");
        assert_eq!(Level::Warning.label(), " warning");
    }
}
