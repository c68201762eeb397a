//! The config file's vocabulary: which `litestream.yml` keys libreplica uses, which Litestream
//! keys it accepts and ignores, which hold secrets, at which level (top, database, replica)
//! each belongs, and the did-you-mean suggestions for names that are none of these. Tables and
//! string similarity only: no YAML, no values.

/// Replica settings libreplica uses at the top level (defaults for every replica).
pub(super) const TOP_FIELDS: &[&str] = &[
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "endpoint",
    "force-path-style",
    "skip-verify",
    "sync-interval",
    "validation-interval",
    "connect-timeout",
    "read-timeout",
    "request-budget",
    "request-price",
];
/// Litestream's global lifecycle keys: snapshots, compaction levels, level-0 retention,
/// and leaving deletes to the bucket (`retention: bucket-lifecycle` is read besides these,
/// at every level; its other values are Litestream's, accepted and not used).
pub(super) const TOP_LIFECYCLE: &[&str] =
    &["snapshot", "levels", "l0-retention", "skip-remote-deletion"];
/// Litestream's global keys about the process rather than its replicas, which libreplica uses.
const TOP_PROCESS: &[&str] = &["shutdown-sync-timeout"];
/// Litestream's global keys that libreplica accepts and ignores.
const TOP_UNUSED: &[&str] = &[
    "addr",
    "socket",
    "validation",
    "l0-retention-check-interval",
    "verify-compaction",
    "retention",
    "heartbeat-url",
    "heartbeat-interval",
    "exec",
    "logging",
    "mcp-addr",
    "shutdown-sync-interval",
];
const DB_USED: &[&str] = &[
    "path",
    "replica",
    "replicas",
    "snapshot",
    "restore-if-db-not-exists",
];
const DB_UNUSED: &[&str] = &[
    "dir",
    "pattern",
    "recursive",
    "watch",
    "meta-path",
    "meta-dir",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "max-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
];
pub(super) const REPLICA_FIELDS: &[&str] = &[
    "name",
    "type",
    "url",
    "path",
    "bucket",
    "endpoint",
    "region",
    "force-path-style",
    "skip-verify",
    "access-key-id",
    "secret-access-key",
    "sync-interval",
    "validation-interval",
    "connect-timeout",
    "read-timeout",
    "request-budget",
    "request-price",
];
/// Litestream replica keys (v0.5, plus v0.3's retention/snapshot keys) that libreplica ignores.
const REPLICA_UNUSED: &[&str] = &["retention", "retention-check-interval", "snapshot-interval"];
/// Litestream's shared replica settings (allowed globally and per replica) that libreplica ignores.
const SETTINGS_UNUSED: &[&str] = &[
    "max-sync-ltx-files",
    "auto-recover",
    "sign-payload",
    "require-content-md5",
    "storage-class",
    "part-size",
    "concurrency",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "concurrent-writes",
    "host-key",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
];
pub(super) const SECRET_FIELDS: &[&str] = &["access-key-id", "secret-access-key"];
/// Fields that say where the data goes (the database's `path`, a replica's `url`, `path`,
/// `bucket` and `endpoint`): a variable in them that is not set is an error, not an empty
/// string, because the value without it names another place.
const LOCATION_FIELDS: &[&str] = &["path", "url", "bucket", "endpoint"];
/// Fields whose values are sent in HTTP request headers (the endpoint's host, and the region
/// and key id in the signature's credential scope) or signed with: they may hold no control
/// character, which could end a header and start another.
const HEADER_FIELDS: &[&str] = &["endpoint", "region", "access-key-id", "secret-access-key"];

/// What a text field's value may hold, from what it becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TextRules {
    /// Never shown in a message (only its kind).
    pub(super) secret: bool,
    /// A variable that is not set is an error (see `LOCATION_FIELDS`).
    pub(super) location: bool,
    /// No control characters (see `HEADER_FIELDS`).
    pub(super) header: bool,
}

impl TextRules {
    /// The rules of the text field `name` (the key's last part, as in `REPLICA_FIELDS`).
    pub(super) fn of(name: &str) -> TextRules {
        TextRules {
            secret: SECRET_FIELDS.contains(&name),
            location: LOCATION_FIELDS.contains(&name),
            header: HEADER_FIELDS.contains(&name),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Top,
    Db,
    Replica,
}

impl Level {
    pub(super) fn used(self) -> Vec<&'static str> {
        match self {
            Level::Top => {
                let mut v = TOP_FIELDS.to_vec();
                v.push("dbs");
                v.extend_from_slice(TOP_LIFECYCLE);
                v.extend_from_slice(TOP_PROCESS);
                v
            }
            Level::Db => DB_USED.to_vec(),
            Level::Replica => REPLICA_FIELDS.to_vec(),
        }
    }
    pub(super) fn unused(self) -> Vec<&'static str> {
        let mut v = match self {
            Level::Top => TOP_UNUSED.to_vec(),
            Level::Db => DB_UNUSED.to_vec(),
            Level::Replica => REPLICA_UNUSED.to_vec(),
        };
        if self != Level::Db {
            v.extend_from_slice(SETTINGS_UNUSED);
        }
        v
    }
    pub(super) fn knows(self, key: &str) -> bool {
        self.used().contains(&key) || self.unused().contains(&key)
    }
}

/// Optimal-string-alignment distance (a transposition costs 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The known name close to `unknown`, if one is: a case/underscore variant, one edit (for
/// names of 2+ chars) or two (for 6+ chars).
pub(super) fn suggest<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    let folded = lower.replace('_', "-");
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = edit_distance(&lower, k).min(edit_distance(&folded, k));
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    let len = unknown.chars().count();
    match best {
        Some((d, k)) if d == 0 || (d == 1 && len >= 2) || (d == 2 && len >= 6) => Some(k),
        _ => None,
    }
}

/// `; did you mean `x`?` when a known name is close, else "".
pub(super) fn did_you_mean<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> String {
    suggest(unknown, known).map_or_else(String::new, |k| format!("; did you mean `{k}`?"))
}
