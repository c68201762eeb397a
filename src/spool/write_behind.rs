//! Writing buffered records out on a thread of their own, so that the commit path only moves
//! a full write buffer aside and the log restart that needs everything on disk finds little
//! left to write. A segment hands at most one write at a time to the thread and settles it
//! (its bytes counted as on disk, or given back to the buffer if the write failed) before
//! anything else touches its file. One thread per process, started on first use (again in a
//! forked child, which inherits the value but not the thread). It must not decide what is
//! written or when: the segment does.

use crate::base::lock::lock;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Where a segment's handed-off write stands; shared with the thread doing it.
#[derive(Default)]
pub(super) struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Idle,
    /// The writer thread of process `pid` has the bytes.
    Writing { pid: u32 },
    /// The write is over; the bytes come back for reuse (or, if it failed, to be written
    /// again by whoever needs them on disk, who then sees the error).
    Written {
        chunk: Vec<u8>,
        result: std::io::Result<()>,
    },
}

/// How a handed-off write ended, once settled.
pub(super) enum Settled {
    /// Nothing was handed off.
    Idle,
    /// On disk; the buffer comes back empty for reuse.
    Written(Vec<u8>),
    /// Not on disk: the bytes come back as they were (written again where the error can
    /// be reported).
    Failed(Vec<u8>),
    /// Handed to a thread of the process this one was forked from: the bytes are lost here.
    Orphaned,
}

struct Job {
    file: Arc<File>,
    offset: u64,
    chunk: Vec<u8>,
    then: Option<FollowUp>,
    slot: Arc<Slot>,
}

/// A small write that must reach its file only after a chunk is on disk (the `generation`
/// line after the records before a log restart): the whole of `file` becomes `bytes`.
pub(super) struct FollowUp {
    pub file: Arc<File>,
    pub bytes: Vec<u8>,
}

impl FollowUp {
    /// Writes it, once what it follows is on disk (by the writer thread, or by the log
    /// restart that found nothing left to hand over).
    pub fn write(&self) -> std::io::Result<()> {
        crate::fault::point("spool.generation_behind");
        self.file.write_all_at(&self.bytes, 0)
    }

    /// [`Self::write`] once what it follows is written: a failure then only leaves the older
    /// line, which claims less (a crash costs a snapshot), so it is logged, not returned.
    pub fn write_logged(&self) {
        if let Err(e) = self.write() {
            crate::base::log::error(&format!("writing the spool's generation: {e}"));
        }
    }
}

/// The writer thread of this process and how to reach it (see the module docs for forks).
static WRITER: Mutex<Option<(u32, crossbeam_channel::Sender<Job>)>> = Mutex::new(None);

impl Slot {
    /// Hands `chunk` to the writer thread, to be written at `offset` of `file`, and `then`
    /// once it is. Gives both back if there is no thread to take them (it could not start).
    pub fn hand_off(
        self: &Arc<Self>,
        file: &Arc<File>,
        offset: u64,
        chunk: Vec<u8>,
        then: Option<FollowUp>,
    ) -> Result<(), (Vec<u8>, Option<FollowUp>)> {
        let pid = std::process::id();
        let mut state = lock(&self.state);
        let Some(tx) = writer_thread(pid) else {
            return Err((chunk, then));
        };
        *state = SlotState::Writing { pid };
        let job = Job {
            file: file.clone(),
            offset,
            chunk,
            then,
            slot: self.clone(),
        };
        if let Err(crossbeam_channel::SendError(job)) = tx.send(job) {
            *state = SlotState::Idle;
            return Err((job.chunk, job.then));
        }
        Ok(())
    }

    /// Waits for the handed-off write to end and says how it did.
    pub fn settle(&self) -> Settled {
        let mut state = lock(&self.state);
        loop {
            match Self::take_ended(&mut state) {
                Some(settled) => return settled,
                None => state = wait(&self.done, state),
            }
        }
    }

    /// Says how the handed-off write ended, or `None` while it is still being written.
    pub fn try_settle(&self) -> Option<Settled> {
        Self::take_ended(&mut lock(&self.state))
    }

    fn take_ended(state: &mut SlotState) -> Option<Settled> {
        match std::mem::take(state) {
            SlotState::Idle => Some(Settled::Idle),
            SlotState::Writing { pid } if pid != std::process::id() => {
                *state = SlotState::Writing { pid }; // and so it stays: the bytes never come back
                Some(Settled::Orphaned)
            }
            writing @ SlotState::Writing { .. } => {
                *state = writing;
                None
            }
            SlotState::Written { chunk, result } => Some(match result {
                Ok(()) => Settled::Written(chunk),
                Err(_) => Settled::Failed(chunk),
            }),
        }
    }
}

fn wait<'a>(done: &Condvar, guard: MutexGuard<'a, SlotState>) -> MutexGuard<'a, SlotState> {
    done.wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The channel to this process's writer thread, starting it on first use.
fn writer_thread(pid: u32) -> Option<crossbeam_channel::Sender<Job>> {
    let mut writer = lock(&WRITER);
    if writer.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let spawned = std::thread::Builder::new()
            .name("replica-spool".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            crate::base::log::error(&format!("cannot start the spool writer thread: {e}"));
            return None;
        }
        *writer = Some((pid, tx));
    }
    writer.as_ref().map(|(_, tx)| tx.clone())
}

fn run(rx: crossbeam_channel::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        crate::fault::point("spool.write_behind");
        // A panic here would leave the slot `Writing` and its segment waiting for ever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.file.write_all_at(&job.chunk, job.offset)?;
            if let Some(then) = &job.then {
                then.write_logged();
            }
            Ok(())
        }))
        .unwrap_or_else(|_| Err(std::io::Error::other("the spool writer thread panicked")));
        let mut state = lock(&job.slot.state);
        *state = SlotState::Written {
            chunk: job.chunk,
            result,
        };
        job.slot.done.notify_all();
    }
}
