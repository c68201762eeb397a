//! Standing by: databases whose spool another process of this host owns (its lock was held
//! when this process opened them). This process leaves their replication to the owner and
//! takes it over when the owner goes away (its lock is released when it dies). It must not
//! capture or upload anything for a database it only stands by for.

use crate::base::lock::lock;
use crate::config::ReplicaConfig;
use crate::database;
use crate::error::Error;
use crate::spool::SpoolError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Databases whose spool another process of this host owns, with their destinations.
static STANDBY: Mutex<Vec<(PathBuf, Vec<ReplicaConfig>)>> = Mutex::new(Vec::new());

/// Opening `path` found its spool locked (`e`): stand by for it, saying so once.
pub(super) fn stand_by(path: &Path, cfgs: Vec<ReplicaConfig>, e: &SpoolError) {
    let mut standby = lock(&STANDBY);
    if !standby.iter().any(|(p, _)| p == path) {
        crate::base::log::add_warning(&format!(
            "{}: {e}; it takes over if that one goes away",
            path.display()
        ));
        standby.push((path.to_path_buf(), cfgs));
    }
}

/// Whether another process of this host replicates `path` for this one: its spool was
/// locked when this process opened it, or this process is a fork of the one that does.
pub fn replicated_elsewhere(path: &Path) -> bool {
    if database::get(path).is_some_and(|db| !db.owned_here()) {
        return true;
    }
    lock(&STANDBY).iter().any(|(p, _)| p == path)
}

/// The databases this process stands by for, with their configuration.
pub fn standby_databases() -> Vec<(PathBuf, Vec<ReplicaConfig>)> {
    lock(&STANDBY).clone()
}

/// Tries to take over every database on standby; returns whether any are left to watch.
pub fn take_over_standbys() -> bool {
    let mut standby = lock(&STANDBY);
    standby.retain(
        |(path, cfgs)| match database::get_or_open(path, cfgs.clone()) {
            Ok(_) => {
                crate::base::log::notice(&format!(
                    "{}: took over replication (the process that replicated it is gone)",
                    path.display()
                ));
                // Its destinations may need uploader threads this process has not started.
                database::wake_uploader();
                false
            }
            Err(Error::Spool(SpoolError::Locked(_))) => true,
            Err(Error::Spool(e)) if super::refused::refuse(path, &cfgs[0], &e) => false,
            Err(e) => {
                crate::base::log::error(&format!(
                    "{}: cannot take over replication: {e}",
                    path.display()
                ));
                false
            }
        },
    );
    !standby.is_empty()
}
