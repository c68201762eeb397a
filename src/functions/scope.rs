//! What a call refers to: the replicated databases of a connection (or of the process, for
//! an in-memory or temporary main database), the replica a name or URL resolves to, and
//! that replica's store. It owns the wording of "not replicated" errors; it must not
//! change any database's state.

use crate::config::{self, ReplicaTarget};
use crate::database::{self, Database};
use crate::error::Error;
use std::path::Path;
use std::sync::Arc;

/// The databases a call on a connection refers to: its main database, which must replicate;
/// for a connection on an in-memory or temporary database, every database this process
/// replicates.
pub(super) fn databases_for(
    conn_db: Option<&Path>,
    what: &str,
) -> Result<Vec<Arc<Database>>, Error> {
    if let Some(db) = conn_db.and_then(database::get) {
        if !db.owned_here() {
            return Err(Error::Unsupported(format!(
                "{what}: this process was forked from the one that replicates {}; that process ships this one's commits too",
                db.name
            )));
        }
        return Ok(vec![db]);
    }
    if let Some(path) = conn_db.filter(|p| standing_by(p)) {
        return Err(Error::Unsupported(format!(
            "{what}: {}",
            standby_owner(path)
        )));
    }
    if let Some(reason) = conn_db.and_then(crate::shim::refused_reason) {
        return Err(Error::NotReplicated(format!("{what}: {reason}")));
    }
    if let Some(path) = conn_db {
        // A real database file that does not replicate: succeeding here would mislead.
        return Err(Error::NotReplicated(format!(
            "{what}: {} is not replicated (set REPLICA_URL, add it to litestream.yml, or open it with ?replica=URL; replica_status() and its warnings say why)",
            path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| path.display().to_string())
        )));
    }
    // An in-memory or temporary main database: the call is about the process's databases.
    let all = database::all();
    if all.is_empty() {
        return Err(Error::NotReplicated(format!(
            "{what}: no database is replicated in this process (set REPLICA_URL, add it to litestream.yml, or open it with ?replica=URL)"
        )));
    }
    Ok(all)
}

/// Whether this process stands by for `path`: it is configured to replicate, but another
/// process of this host owns its spool (and replicates it).
pub(super) fn standing_by(path: &Path) -> bool {
    database::get(path).is_none()
        && crate::shim::standby_databases()
            .iter()
            .any(|(p, _)| p == path)
}

/// Whether this process is a forked copy of the one that replicates `path`: it holds the
/// parent's `Database` but not its spool, and the parent takes its commits from the
/// shared WAL (as for a standby).
pub(super) fn forked_copy(path: &Path) -> bool {
    database::get(path).is_some_and(|db| !db.owned_here())
}

/// Who replicates a database this process stands by for, and what this process does.
pub(super) fn standby_owner(path: &Path) -> String {
    let owner = crate::spool::Spool::owner_pid(&crate::spool::Spool::dir_for(path))
        .map(|pid| format!("another process (pid {pid})"))
        .unwrap_or_else(|| "another process".into());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string());
    format!("{owner} uploads {name}; this process stands by and takes over if it goes away")
}

/// Opens a database's WAL for reading (the FFI layer reads through SQLite's VFS).
pub type WalOpener<'a> = dyn FnMut(&Path) -> Option<Box<dyn crate::base::io::ReadAt>> + 'a;

/// A replica a call reads: the destination's name (`None` for a URL given as it is) and
/// where it is.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub name: Option<String>,
    pub target: ReplicaTarget,
}

impl Source {
    fn of(cfg: &config::ReplicaConfig) -> Source {
        Source {
            name: Some(cfg.name.clone()),
            target: cfg.target.clone(),
        }
    }

    /// How messages name it: `replica 'b' (s3://…)`, or the URL alone.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("replica '{name}' ({})", self.target.url()),
            None => self.target.url(),
        }
    }
}

/// What `replica_restore`'s first argument names: a replica URL, or a database (this
/// process's, or one the configuration names), with every destination it has, the first
/// one first.
pub(super) fn resolve_sources(src: &str) -> Result<Vec<Source>, Error> {
    if src.contains("://") || src.starts_with("s3:") {
        let target = config::parse_replica_url(src, &config::Env::from_process())?;
        return Ok(vec![Source { name: None, target }]);
    }
    if let Some(db) = database::find(src) {
        return Ok(db
            .destinations
            .iter()
            .map(|d| Source::of(&d.config))
            .collect());
    }
    let abs =
        std::path::absolute(src).map_err(|e| Error::InvalidArgument(format!("{src}: {e}")))?;
    match crate::shim::resolve_for_path(&abs)? {
        Some(cfgs) => Ok(cfgs.iter().map(Source::of).collect()),
        None => Err(Error::NotReplicated(format!(
            "replica_restore: {src} has no replica: give a replica URL (file:///dir/{0} or s3://bucket/path), set REPLICA_URL, or add it to litestream.yml",
            abs.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        ))),
    }
}

/// The encryption keys of a replica: those of the database this process replicates to it,
/// else those the config file gives it, under the environment's `REPLICA_AGE_*`.
pub(super) fn age_of(replica: &ReplicaTarget) -> Result<Option<config::AgeConfig>, Error> {
    let configured = database::all().into_iter().find_map(|db| {
        db.destinations
            .iter()
            .find(|d| d.config.target.url() == replica.url())
            .map(|d| d.config.age.clone())
    });
    if let Some(age) = configured {
        return Ok(age);
    }
    let (resolver, _) = config::Resolver::from_process()?;
    Ok(resolver.age_for_target(replica)?)
}

/// The store and key prefix of a replica.
pub(super) fn open_replica(
    replica: &ReplicaTarget,
) -> Result<(Box<dyn crate::store::ObjectStore>, String), Error> {
    let store = crate::store::open(replica, age_of(replica)?.as_ref())?;
    Ok((store, prefix_of(replica)))
}

/// The key prefix of a replica's objects in its store.
pub(super) fn prefix_of(replica: &ReplicaTarget) -> String {
    match replica {
        ReplicaTarget::S3(t) => t.prefix.clone(),
        ReplicaTarget::File { .. } => String::new(),
    }
}

/// The replicas a restore-points listing is about: (database name, destination name,
/// replica), every destination of each database.
pub(super) fn replicas_of(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
    what: &str,
) -> Result<Vec<(String, Source)>, Error> {
    match db_arg {
        Some(src) => {
            let name = database::find(src)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| src.to_string());
            Ok(resolve_sources(src)?
                .into_iter()
                .map(|source| (name.clone(), source))
                .collect())
        }
        None => Ok(databases_for(conn_db, what)?
            .into_iter()
            .flat_map(|db| {
                let sources: Vec<Source> = db
                    .destinations
                    .iter()
                    .map(|d| Source::of(&d.config))
                    .collect();
                sources.into_iter().map(move |s| (db.name.clone(), s))
            })
            .collect()),
    }
}
