//! Requests made to a replica outside its uploader (restores, drills, restore points, the
//! boot-time check), kept until that replica's uploader counts them in its ledger. It must
//! not do I/O.

use super::process_identity;
use crate::base::lock::lock;
use std::sync::Mutex;

/// Requests made to a replica by others than its uploader (restores, drills, restore points,
/// the boot-time check), by replica, until its uploader counts them in its ledger; each
/// with the fork epoch of the process that made them, so that a forked child never counts
/// its parent's. The oldest are forgotten beyond a bound: restores from replicas nobody
/// here uploads are never taken.
static OUTSIDE_REQUESTS: Mutex<Vec<OutsideRequests>> = Mutex::new(Vec::new());
const OUTSIDE_REQUESTS_MAX: usize = 64;

struct OutsideRequests {
    replica: String,
    /// The process that made them ([`process_identity`]).
    process: (u64, u32),
    counts: crate::store::RequestCounts,
}
/// Which replica a target is, whatever its timeouts or credentials.
fn replica_identity(target: &crate::config::ReplicaTarget) -> String {
    match target {
        crate::config::ReplicaTarget::File { dir } => format!("file {}", dir.display()),
        crate::config::ReplicaTarget::S3(t) => format!(
            "s3 {} {} {}",
            t.endpoint.as_deref().unwrap_or(""),
            t.bucket,
            t.prefix
        ),
    }
}

/// Notes requests made to the replica `target` outside its uploader.
pub fn note_outside_requests(
    target: &crate::config::ReplicaTarget,
    made: crate::store::RequestCounts,
) {
    let (replica, process) = (replica_identity(target), process_identity());
    let mut all = lock(&OUTSIDE_REQUESTS);
    all.retain(|o| o.process == process);
    let at = match all.iter().position(|o| o.replica == replica) {
        Some(i) => i,
        None => {
            if all.len() >= OUTSIDE_REQUESTS_MAX {
                all.remove(0);
            }
            all.push(OutsideRequests {
                replica,
                process,
                counts: Default::default(),
            });
            all.len() - 1
        }
    };
    let counts = &mut all[at].counts;
    counts.put += made.put;
    counts.get += made.get;
    counts.list += made.list;
    counts.delete += made.delete;
}

/// The requests this process noted for the replica `target` since the last call.
pub fn take_outside_requests(target: &crate::config::ReplicaTarget) -> crate::store::RequestCounts {
    let (replica, process) = (replica_identity(target), process_identity());
    let mut all = lock(&OUTSIDE_REQUESTS);
    all.retain(|o| o.process == process);
    match all.iter().position(|o| o.replica == replica) {
        Some(i) => all.remove(i).counts,
        None => Default::default(),
    }
}
