//! A copy of one destination's pending records taken a chunk per hold of the spool's lock,
//! equal to a copy taken in one hold: a second of a busy writer's commits is 100 000
//! records, and copying them in one hold kept the capture thread, and a restarting commit
//! behind it, waiting for milliseconds. It must not take the lock itself.

use super::record::RecordMeta;

/// Records copied per hold of the spool's lock (tens of µs).
pub(super) const PENDING_CHUNK: usize = 1024;

/// A copy under way; see the module doc.
#[derive(Default)]
pub(super) struct PendingCopy {
    pub records: Vec<RecordMeta>,
    /// The destination's start the copy began at: its last record shipped or let go of.
    after: Option<u64>,
    /// The last record there was then; records joining later wait for the next copy.
    through: u64,
}

impl PendingCopy {
    /// One step, under the spool's lock: `needed` is the destination's pending records, all
    /// after `after`, its start. Whether the copy is complete. A start that moved since the
    /// last step (records shipped, or let go of) starts the copy over, so that it never
    /// holds records from both sides of a let-go.
    pub fn step(&mut self, after: u64, needed: &[RecordMeta], chunk: usize) -> bool {
        if self.after != Some(after) {
            self.records.clear();
            self.after = Some(after);
            self.through = needed.last().map_or(after, |r| r.seq);
        }
        let start = self
            .records
            .last()
            .map_or(0, |last| needed.partition_point(|r| r.seq <= last.seq));
        let before = self.records.len();
        let next = needed[start..]
            .iter()
            .take(chunk)
            .take_while(|r| r.seq <= self.through);
        self.records.extend(next.cloned());
        let copied = self.records.len() - before;
        copied < chunk || self.records.last().is_some_and(|r| r.seq >= self.through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<RecordMeta> {
        seqs.map(|seq| RecordMeta {
            seq,
            ..RecordMeta::empty()
        })
        .collect()
    }

    fn seqs(copy: &PendingCopy) -> Vec<u64> {
        copy.records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_joining_during_the_copy_wait_for_the_next_one() {
        let mut copy = PendingCopy::default();
        assert!(!copy.step(0, &records(1..=5), 2));
        assert!(!copy.step(0, &records(1..=7), 2));
        assert!(copy.step(0, &records(1..=9), 2));
        assert_eq!(seqs(&copy), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_start_that_moves_during_the_copy_starts_it_over() {
        let mut copy = PendingCopy::default();
        assert!(!copy.step(0, &records(1..=5), 2));
        // Records 1-6 let go of (the spool's cap): nothing from before them may stay.
        assert!(!copy.step(6, &records(7..=9), 2));
        assert!(copy.step(6, &records(7..=10), 2));
        assert_eq!(seqs(&copy), vec![7, 8, 9]);
    }

    #[test]
    fn nothing_pending_is_a_complete_copy_at_once() {
        let mut copy = PendingCopy::default();
        assert!(copy.step(4, &[], PENDING_CHUNK));
        assert!(copy.records.is_empty());
        let mut exact = PendingCopy::default();
        assert!(
            exact.step(0, &records(1..=2), 2),
            "a last chunk that is full"
        );
        assert_eq!(seqs(&exact), vec![1, 2]);
    }
}
