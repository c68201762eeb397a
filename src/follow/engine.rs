//! One follower: its copy, its state file, the poll and the two ways a copy moves forward
//! (the level-0 files that continue it, applied under the lock after a dry run, or the
//! replica's newest state restored beside it and taken over page by page).

use super::journal;
use super::plan::{self, FollowState, Next};
use super::prefetched::Prefetched;
use super::{FollowHooks, Source};
use crate::base::child_release::ReleasedInChildren;
use crate::base::clock::now_ms;
use crate::base::held_dir::HeldDir;
use crate::base::lock::lock;
use crate::base::private_fs::Modes;
use crate::error::Error;
use crate::restore::{self, Base, LtxObject, RestoreRequest, Target, Tuning};
use crate::store::{keys, StoreError};
use std::collections::HashMap;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What status shows of a follower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The txid the copy holds.
    pub applied_txid: u64,
    /// The newest txid the last listing showed.
    pub newest_txid: Option<u64>,
    /// From the writer's commit of the last applied file (its LTX timestamp) to its apply.
    pub lag_ms: Option<u64>,
    pub last_apply_at_ms: Option<u64>,
    pub last_error: Option<String>,
    pub polls: u64,
    /// Batches applied, and copies taken over whole.
    pub applies: u64,
    pub resyncs: u64,
    pub requests: crate::store::RequestCounts,
    /// When the replica was last listed (`None`: the next poll lists it).
    pub listed_at_ms: Option<u64>,
}

/// How often a follower lists the replica while the files it asks for by name do not
/// come: one LIST a minute.
pub const LIST_EVERY_MS: u64 = 60_000;

/// What an apply will change in the copy, for its journal: the pages it writes, in the
/// page size and to the size in pages it leaves.
struct Change<'a> {
    pages: &'a [u32],
    page_size: u32,
    commit: u32,
}

/// Writes the journal of a change before it is made (see `Follower::journal`).
type Journal<'j> = dyn FnMut(&Change) -> Result<(), Error> + 'j;

/// LTX files downloaded for one apply, in chain order.
#[derive(Default)]
struct Batch {
    chain: Vec<LtxObject>,
    bodies: HashMap<String, Vec<u8>>,
    bytes: u64,
}

impl Batch {
    fn add(&mut self, o: LtxObject, body: Vec<u8>) {
        self.bytes += body.len() as u64;
        self.bodies.insert(o.key.clone(), body);
        self.chain.push(o);
    }
}

pub(super) struct Follower {
    pub(super) path: PathBuf,
    pub(super) source: Source,
    pub(super) hooks: &'static dyn FollowHooks,
    /// Held by each poll, and by a promotion while it decides.
    pub(super) step_lock: Mutex<()>,
    /// Set by a promotion: the poll thread ends.
    pub(super) stopped: AtomicBool,
    /// The copy, never closed (not even when a promotion lets the follower go): closing any
    /// descriptor of a file drops every POSIX lock this process holds on it, SQLite's own.
    file: ManuallyDrop<File>,
    /// The `flock` on `<db>-follow/lock` that makes this process the one that polls and
    /// writes the copy; the others read it and take over when the holder goes.
    owner: Mutex<Option<(u32, ReleasedInChildren)>>,
    /// `<db>-follow/`, held (checked once, reached by descriptor): the state file and the
    /// resync's temporary.
    dir: HeldDir,
    pub(super) dir_path: PathBuf,
    state: Mutex<(FollowState, Progress)>,
}

impl Follower {
    /// Opens (or first restores) the copy at `path`; see [`super::start`].
    pub(super) fn open(
        path: &Path,
        source: Source,
        hooks: &'static dyn FollowHooks,
    ) -> Result<Follower, Error> {
        let dir_path = dir_for(path);
        let fresh = !path.exists();
        if crate::wal::log_path_of(path).exists() {
            return Err(Error::InvalidArgument(format!(
                "{}: it has a WAL, so it is a database of its own, not a follower's copy: follow into another path",
                path.display()
            )));
        }
        let held = read_state(&dir_path.join("state"));
        if !fresh && held.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{} exists and is not a follower's copy (no {}): remove it to follow into it, or follow into another path",
                path.display(),
                dir_path.join("state").display()
            )));
        }
        let modes = Modes::beside(path);
        let dir = HeldDir::ensure(&dir_path, modes)
            .map_err(|e| Error::Io(format!("{}: {e}", dir_path.display())))?;
        let owner = take_ownership(&dir)?;
        if owner.is_none() && fresh {
            return Err(Error::Unsupported(format!(
                "{}: another process is creating this follower's copy; open it again once it has",
                path.display()
            )));
        }
        let file = match fresh {
            true => modes.create_new(path),
            false => modes.open_rw().open(path),
        }
        .map_err(|e| Error::Io(format!("opening {}: {e}", path.display())))?;
        let state = held.as_deref().and_then(FollowState::decode);
        let f = Follower {
            path: path.to_path_buf(),
            source,
            hooks,
            step_lock: Mutex::new(()),
            stopped: AtomicBool::new(false),
            file: ManuallyDrop::new(file),
            owner: Mutex::new(owner.map(|l| (std::process::id(), l))),
            dir,
            dir_path,
            state: Mutex::new((state.unwrap_or_default(), Progress::default())),
        };
        let owned = lock(&f.owner).is_some();
        if let Some(held) = state.filter(|s| owned && s.applying) {
            // A crash during an apply: SQLite plays the journal back (readers meanwhile got
            // an error, never a torn page), then the copy is taken over whole all the same,
            // since what was under way may itself have been a resync.
            if journal::path_of(path).exists() {
                f.roll_back(held);
            }
        }
        if owned && state.is_none_or(|s| s.applying) {
            let why = if fresh {
                "a new copy"
            } else {
                "its last apply did not finish"
            };
            if let Err(e) = f.resync(why) {
                if fresh {
                    let _ = std::fs::remove_file(path);
                    let _ = std::fs::remove_dir_all(&f.dir_path);
                }
                return Err(e);
            }
        }
        lock(&f.state).1.applied_txid = f.held().txid;
        Ok(f)
    }

    /// Whether this process polls and writes the copy: it holds the owner lock, or takes
    /// it now that the holder went away (then it goes on from the state the holder saved).
    pub(super) fn owns(&self) -> Result<bool, Error> {
        let mut owner = lock(&self.owner);
        let me = std::process::id();
        match owner.as_ref() {
            Some((pid, _)) if *pid == me => return Ok(true),
            // A forked child: its copy of the lock was given up at the fork.
            Some(_) => *owner = None,
            None => {}
        }
        *owner = take_ownership(&self.dir)?.map(|l| (me, l));
        let held = read_state(&self.dir.at("state"))
            .as_deref()
            .and_then(FollowState::decode);
        let mut s = lock(&self.state);
        if let Some(h) = held {
            s.0 = h;
            s.1.applied_txid = h.txid;
        }
        Ok(owner.is_some())
    }

    pub(super) fn progress(&self) -> Progress {
        let mut p = lock(&self.state).1.clone();
        p.requests = self.source.store.request_counts();
        p
    }

    pub(super) fn held(&self) -> FollowState {
        lock(&self.state).0
    }

    /// Polls every interval until a promotion stops it.
    pub(super) fn run(&self) {
        loop {
            let step = lock(&self.step_lock);
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let step_once = || match self.owns()? {
                true => self.step(),
                false => Ok(()), // another process polls: this one reads
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step_once))
                .unwrap_or_else(|_| Err(Error::Io("the follower's step panicked".into())));
            drop(step);
            let mut s = lock(&self.state);
            s.1.polls += 1;
            let error = outcome.err().map(|e| e.to_string());
            if error.is_some() && error != s.1.last_error {
                // Logged when it starts or changes, not at every poll while it lasts.
                let e = error.as_deref().unwrap_or_default();
                crate::base::log::error(&format!("following {}: {e}", self.path.display()));
            }
            s.1.last_error = error;
            drop(s);
            std::thread::park_timeout(Duration::from_millis(self.source.interval_ms));
        }
    }

    /// One poll. Level-0 files are named by their txid (`<n>-<n>.ltx`, one per
    /// transaction shipped), so the next one is asked for by name: a GET, which the
    /// replica answers 404 until it exists. A LIST (a dearer request) runs at the first
    /// poll, after a failure and once every [`LIST_EVERY_MS`]: it finds the files when the
    /// next one is gone (compacted, or the replica started over).
    fn step(&self) -> Result<(), Error> {
        let held = self.held();
        if held.applying {
            return self.resync("the last apply did not finish");
        }
        let now = now_ms();
        let listed_at = lock(&self.state).1.listed_at_ms;
        if listed_at.is_none_or(|t| now.saturating_sub(t) >= LIST_EVERY_MS) {
            return self.list_step(held, now);
        }
        let mut batch = Batch::default();
        let prefix = &self.source.prefix;
        while batch.bytes < plan::BATCH_BYTES {
            let txid = held.txid + batch.chain.len() as u64 + 1;
            let key = keys::s3_key(prefix, 0, txid, txid);
            match (self.source.store).get_bounded(&key, plan::BATCH_BYTES - batch.bytes) {
                Ok(body) => batch.add(
                    LtxObject {
                        key,
                        level: 0,
                        min_txid: txid,
                        max_txid: txid,
                        size: body.len() as u64,
                        modified_ms: 0,
                    },
                    body,
                ),
                Err(StoreError::NotFound(_)) => break,
                Err(e) => {
                    lock(&self.state).1.listed_at_ms = None; // the next poll lists
                    if batch.chain.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
            }
        }
        if let Some(last) = batch.chain.last().map(|o| o.max_txid) {
            {
                let newest = &mut lock(&self.state).1.newest_txid;
                *newest = Some(newest.unwrap_or(0).max(last));
            }
            return self.apply(held, batch);
        }
        Ok(())
    }

    /// Lists the replica and applies until the copy holds the newest txid listed; the
    /// caller holds the step lock. The newest txid, for a promotion to check.
    pub(super) fn catch_up(&self) -> Result<u64, Error> {
        for _ in 0..64 {
            let held = self.held();
            if held.applying {
                self.resync("the last apply did not finish")?;
                continue;
            }
            self.list_step(held, now_ms())?;
            let newest = lock(&self.state).1.newest_txid.unwrap_or(0);
            if self.held().txid >= newest {
                return Ok(newest);
            }
        }
        Err(Error::Io(format!(
            "{} did not catch up with its replica (the writer is still writing?)",
            self.path.display()
        )))
    }

    /// A poll that lists the replica and does what the listing calls for.
    fn list_step(&self, held: FollowState, now: u64) -> Result<(), Error> {
        let objects = restore::list_objects(self.source.store.as_ref(), &self.source.prefix)?;
        {
            let mut s = lock(&self.state);
            s.1.listed_at_ms = Some(now);
            s.1.newest_txid = plan::newest(&objects).or(s.1.newest_txid);
        }
        match plan::next(&objects, held.txid) {
            Next::UpToDate => Ok(()),
            Next::Apply(chain) => {
                let mut batch = Batch::default();
                for o in chain {
                    let body = self.source.store.get_bounded(&o.key, o.size)?;
                    batch.add(
                        LtxObject {
                            size: body.len() as u64,
                            ..o
                        },
                        body,
                    );
                }
                self.apply(held, batch)
            }
            Next::Resync(why) => self.resync(&why),
        }
    }

    /// Verifies `batch` against the copy without writing, then applies it under the lock.
    fn apply(&self, held: FollowState, batch: Batch) -> Result<(), Error> {
        let chain = batch.chain;
        let written_at = written_at(&batch.bodies, chain.last());
        let batch = Prefetched(batch.bodies);
        let dry = Tuning {
            parallelism: 1,
            verify_only: true,
            db_checksums: false,
            ..Default::default()
        };
        let dry_run = restore::apply_onto(&batch, &chain, &self.file, held.base, &dry)?;
        let touched = dry_run.touched;
        let txid = chain.last().map_or(held.txid, |o| o.max_txid);
        let mut base = held.base;
        let dry_base = dry_run.base;
        self.under_lock(held, &mut |file, journal| {
            journal(&Change {
                pages: &touched,
                page_size: dry_base.page_size,
                commit: dry_base.commit,
            })?;
            let wet = Tuning {
                parallelism: 1,
                rollback_mode: true,
                db_checksums: false,
                ..Default::default()
            };
            base = restore::apply_onto(&batch, &chain, file, held.base, &wet)?.base;
            Ok(base.commit)
        })?;
        let now = FollowState {
            txid,
            base,
            applying: false,
        };
        self.applied(now, written_at, false)
    }

    /// Restores the replica's newest state beside the copy and takes over the pages that
    /// differ, under the lock.
    fn resync(&self, why: &str) -> Result<(), Error> {
        crate::base::log::info(&format!(
            "following {}: taking over the replica's newest state whole ({why})",
            self.path.display()
        ));
        let temp = self.dir.at("resync.db");
        let check = |p: &Path| self.hooks.check(p);
        let restored = restore::restore_with(
            &RestoreRequest {
                store: self.source.store.as_ref(),
                prefix: &self.source.prefix,
                output: &temp,
                target: Target::Latest,
                overwrite: true,
                check: &check,
            },
            &Tuning::default(),
        );
        let result = restored.and_then(|r| match r.base.page_size {
            0 => Err(Error::Unsupported(
                "the replica is a Litestream 0.3 replica (generations/): it has no LTX files to follow".into(),
            )),
            _ => self.take_over(&temp, r.base, r.txid),
        });
        let _ = std::fs::remove_file(&temp);
        result
    }

    /// Writes the pages of `temp` (a database `base` describes, at `txid`) that differ from
    /// the copy's, under the lock.
    fn take_over(&self, temp: &Path, base: Base, txid: u64) -> Result<(), Error> {
        let new = File::open(temp)?;
        let ps = u64::from(base.page_size.max(512));
        let held = self.held();
        self.under_lock(held, &mut |file, journal| {
            // Compared under the lock, after SQLite played back any journal a crash left.
            let (mut a, mut b) = (vec![0u8; ps as usize], vec![0u8; ps as usize]);
            let mut differ = Vec::new();
            for pgno in 1..=base.commit {
                read_page(&new, u64::from(pgno), &mut a)?;
                read_page(file, u64::from(pgno), &mut b)?;
                if a != b {
                    differ.push(pgno);
                }
            }
            journal(&Change {
                pages: &differ,
                page_size: base.page_size,
                commit: base.commit,
            })?;
            for &pgno in &differ {
                read_page(&new, u64::from(pgno), &mut a)?;
                if pgno == 1 {
                    a[18..20].copy_from_slice(&[1, 1]); // never a WAL-mode header on disk
                }
                file.write_all_at(&a, u64::from(pgno - 1) * ps)?;
            }
            file.set_len(u64::from(base.commit) * ps)?;
            Ok(base.commit)
        })?;
        lock(&self.state).1.resyncs += 1;
        self.applied(
            FollowState {
                txid,
                base,
                applying: false,
            },
            None,
            true,
        )
    }

    /// Runs `write` on the copy under SQLite's exclusive lock, the state file saying an
    /// apply is under way until it is done. `write` tells the journal what it will change
    /// before it changes anything, and returns the copy's new size in pages; then page 1
    /// gets the follower's header and the journal goes (the commit).
    fn under_lock(
        &self,
        held: FollowState,
        write: &mut dyn FnMut(&File, &mut Journal) -> Result<u32, Error>,
    ) -> Result<(), Error> {
        let mut committed = false;
        let written = self.hooks.exclusively(&self.path, &mut || {
            // Only the owner writes; should the copy have moved on under another follower
            // all the same, this one catches up from what that one saved.
            let saved = read_state(&self.dir.at("state"))
                .as_deref()
                .and_then(FollowState::decode);
            if let Some(on_disk) = saved.filter(|s| s.txid != held.txid) {
                lock(&self.state).0 = on_disk;
                return Err(Error::Io(format!(
                    "the copy is at txid {} on disk, not {}: another follower wrote it",
                    on_disk.txid, held.txid
                )));
            }
            let mut head = [0u8; 100];
            let _ = self.file.read_at(&mut head, 0)?;
            let prev = plan::change_counter(&head);
            self.save(&FollowState {
                applying: true,
                ..held
            })?;
            lock(&self.state).0.applying = true;
            let commit = write(&self.file, &mut |change| self.journal(change))?;
            crate::fault::point("follow.after_pages");
            head = [0u8; 100];
            let _ = self.file.read_at(&mut head, 0)?;
            plan::follower_header(&mut head, prev, commit);
            self.file.write_all_at(&head, 0)?;
            self.file.sync_data()?;
            journal::commit(&journal::path_of(&self.path))?;
            committed = true;
            Ok(())
        });
        match written {
            // Past the journal's deletion the apply has landed, whatever failed after it
            // (the end of the private connection's transaction).
            Err(_) if committed => Ok(()),
            Err(e) => {
                if lock(&self.state).0.applying {
                    self.roll_back(held);
                }
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Writes the rollback journal of `change` before it is made: every page it overwrites
    /// (page 1 always: its header is the follower's), and every page past its new size up
    /// to the copy's (SQLite's playback restores a shrunk file with zeros otherwise); all
    /// of them when the page size changes. The copy's page size is its own header's.
    fn journal(&self, change: &Change) -> Result<(), Error> {
        let mut head = [0u8; 18];
        let size = self.file.metadata()?.len();
        let old_ps = match self.file.read_at(&mut head, 0)? {
            18 => crate::wal::page_size_from_header_field(u16::from_be_bytes([head[16], head[17]])),
            _ => 0,
        };
        let (ps, orig) = match old_ps {
            0 => (change.page_size.max(512), 0),
            ps => (ps, u32::try_from(size / u64::from(ps)).unwrap_or(u32::MAX)),
        };
        let pages: Vec<u32> = if ps != change.page_size {
            (1..=orig).collect()
        } else {
            let mut p: Vec<u32> = change.pages.to_vec();
            p.push(1);
            p.extend(change.commit.saturating_add(1)..=orig);
            p.sort_unstable();
            p.dedup();
            p
        };
        let mode = Modes::beside(&self.path).file;
        let target = journal::path_of(&self.path);
        journal::write(&target, mode, &self.file, (orig, ps), &pages)?;
        crate::fault::point("follow.after_journal");
        Ok(())
    }

    /// After a failed apply: SQLite plays the journal back (the private connection that
    /// takes the lock finds it hot), and the copy is at `held` again; failing that, the
    /// state file still says an apply was under way, and the next step resyncs (under the
    /// lock, after the playback).
    fn roll_back(&self, held: FollowState) {
        let replayed = self.hooks.exclusively(&self.path, &mut || Ok(()));
        if replayed.is_ok() && !journal::path_of(&self.path).exists() && self.save(&held).is_ok() {
            lock(&self.state).0 = held;
        }
    }

    fn applied(
        &self,
        now: FollowState,
        written_at: Option<u64>,
        resync: bool,
    ) -> Result<(), Error> {
        self.save(&now)?;
        let t = now_ms();
        let mut s = lock(&self.state);
        s.0 = now;
        s.1.applied_txid = now.txid;
        s.1.last_apply_at_ms = Some(t);
        if let Some(w) = written_at {
            s.1.lag_ms = Some(t.saturating_sub(w));
        }
        if !resync {
            s.1.applies += 1;
        }
        Ok(())
    }

    /// Writes the state file: a temporary, synced, renamed over the old one.
    fn save(&self, state: &FollowState) -> Result<(), Error> {
        let modes = Modes::inside(&self.dir.at("."));
        modes.write_atomically(&self.dir.at("state"), state.encode().as_bytes(), true)?;
        File::open(self.dir.at("."))?.sync_all()?; // the rename
        Ok(())
    }
}

/// Takes `<db>-follow/lock` for this process, unless another process holds it (`None`).
fn take_ownership(dir: &HeldDir) -> Result<Option<ReleasedInChildren>, Error> {
    let shown = dir.shown("lock");
    let file = (Modes::inside(&dir.at(".")).open_rw())
        .open(dir.at("lock"))
        .map_err(|e| Error::Io(format!("opening {}: {e}", shown.display())))?;
    match file.try_lock() {
        // A forked child must not keep a share of it after this process is gone.
        Ok(()) => Ok(Some(ReleasedInChildren::new(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Io(format!("locking {}: {e}", shown.display())))
        }
    }
}

/// The state file's text, if it is there (and not a symlink), read up to 4 KiB.
fn read_state(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    let file = crate::base::private_fs::open_read(path).ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `<db>-follow`: the follower's own files beside its copy.
pub(super) fn dir_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-follow");
    PathBuf::from(name)
}

/// Reads page `pgno` (1-based, `buf.len()` bytes) of `file`; past its end, zeros.
fn read_page(file: &File, pgno: u64, buf: &mut [u8]) -> std::io::Result<()> {
    buf.fill(0);
    let ps = buf.len() as u64;
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], (pgno - 1) * ps + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(())
}

/// When the writer committed the last file of a batch: its LTX header's timestamp.
fn written_at(bodies: &HashMap<String, Vec<u8>>, last: Option<&LtxObject>) -> Option<u64> {
    let body = bodies.get(&last?.key)?;
    let dec = crate::ltx::Decoder::new(body.as_slice()).ok()?;
    Some(dec.header().timestamp_ms).filter(|&t| t != 0)
}
