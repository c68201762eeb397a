//! The writer thread of a restore: writes into the temporary file happen on a thread of
//! their own, in the order queued, with consecutive pages gathered into large writes. It
//! keeps the first write error and reports it at the next job or barrier; it must not
//! reorder jobs nor hold more than a few runs of pages in its queue.

use crate::error::Error;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// What the writer thread does to the temporary file, in order.
pub(super) enum WriteJob {
    Write(u64, Vec<u8>),
    SetLen(u64),
    /// Answered once everything before it is done (or has failed).
    Barrier(crossbeam_channel::Sender<()>),
}

/// Writes the restored file on a thread of its own, so that decoding and verifying the next
/// pages overlaps the copy into the page cache (on a 1 GiB restore the two took about the
/// same time). The first failure is kept and reported at the next [`Writer::settle`].
pub(super) struct Writer {
    jobs: crossbeam_channel::Sender<WriteJob>,
    spare: crossbeam_channel::Receiver<Vec<u8>>,
    failed: std::sync::Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// The writer over `out`, and its loop for the caller to run on a thread.
    pub(super) fn start(out: &std::fs::File) -> (Writer, impl FnOnce() + Send + '_) {
        let (jobs, inbox) = crossbeam_channel::bounded::<WriteJob>(4);
        let (give_back, spare) = crossbeam_channel::bounded(8);
        let failed = std::sync::Arc::new(Mutex::new(None));
        let failure = failed.clone();
        let work = move || {
            for job in inbox {
                let result = match job {
                    WriteJob::Write(offset, bytes) => {
                        let r = out.write_all_at(&bytes, offset);
                        let _ = give_back.try_send(bytes);
                        r
                    }
                    WriteJob::SetLen(len) => out.set_len(len),
                    WriteJob::Barrier(done) => {
                        let _ = done.send(());
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    let mut f = crate::base::lock::lock(&failure);
                    f.get_or_insert_with(|| e.to_string());
                }
            }
        };
        (
            Writer {
                jobs,
                spare,
                failed,
            },
            work,
        )
    }

    /// Queues `job`; fails at once once a write has failed (a full disk should not cost
    /// the rest of the download first).
    pub(super) fn send(&self, job: WriteJob) -> Result<(), Error> {
        self.failure()?;
        self.jobs
            .send(job)
            .map_err(|_| Error::Io("writing the restored database: the writer stopped".into()))
    }

    fn failure(&self) -> Result<(), Error> {
        match &*crate::base::lock::lock(&self.failed) {
            Some(e) => Err(Error::Io(format!("writing the restored database: {e}"))),
            None => Ok(()),
        }
    }

    /// Waits until every job sent so far is done; the first write error, if any.
    pub(super) fn settle(&self) -> Result<(), Error> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.send(WriteJob::Barrier(done))?;
        let _ = wait.recv();
        self.failure()
    }
}

/// Consecutive pages gathered into one write (a snapshot's pages come in order), so a
/// large restore makes a few thousand writes rather than one per page.
#[derive(Default)]
pub(super) struct WriteRun {
    offset: u64,
    bytes: Vec<u8>,
}

impl WriteRun {
    const MAX: usize = 1 << 20;

    pub(super) fn write(&mut self, w: &Writer, offset: u64, page: &[u8]) -> Result<(), Error> {
        if !self.bytes.is_empty() && self.offset + self.bytes.len() as u64 != offset {
            self.flush(w)?;
        }
        if self.bytes.is_empty() {
            self.offset = offset;
        }
        self.bytes.extend_from_slice(page);
        if self.bytes.len() >= Self::MAX {
            self.flush(w)?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self, w: &Writer) -> Result<(), Error> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let mut next = w.spare.try_recv().unwrap_or_default();
        next.clear();
        let bytes = std::mem::replace(&mut self.bytes, next);
        w.send(WriteJob::Write(self.offset, bytes))
    }
}
