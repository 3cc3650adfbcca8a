//! The bounded FIFO that holds finished spans and log records until they are exported.

use std::collections::VecDeque;

use super::BATCH;

/// A FIFO that keeps at most `capacity` entries, dropping the oldest.
pub(super) struct Buffer<T> {
    entries: VecDeque<T>,
    capacity: usize,
    dropped: u64,
}

impl<T> Buffer<T> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Appends; returns the new length.
    pub(super) fn push(&mut self, entry: T) -> usize {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
        self.entries.len()
    }

    /// Takes up to a batch from the front. Once a backlog (a collector outage) has drained, the
    /// memory it grew to is given back; a buffer that never held more than a batch keeps its
    /// small allocation instead of reallocating on every cycle.
    pub(super) fn take_batch(&mut self) -> Vec<T> {
        let n = self.entries.len().min(BATCH);
        let batch = self.entries.drain(..n).collect();
        if self.entries.is_empty() && self.entries.capacity() > BATCH {
            self.entries.shrink_to_fit();
        }
        batch
    }

    /// Puts a batch that failed to export back in front, keeping the newest within capacity.
    pub(super) fn requeue(&mut self, batch: Vec<T>) {
        for entry in batch.into_iter().rev() {
            if self.entries.len() >= self.capacity {
                self.dropped += 1;
                continue;
            }
            self.entries.push_front(entry);
        }
    }

    /// Entries waiting.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_buffer_drops_the_oldest_and_counts_them() {
        let mut buffer = Buffer::new(3);
        for i in 0..5 {
            buffer.push(i);
        }
        assert_eq!(buffer.entries, [2, 3, 4]);
        assert_eq!(buffer.take_dropped(), 2);
        assert_eq!(buffer.take_dropped(), 0);
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let mut buffer = Buffer::new(BATCH * 8);
        for i in 0..BATCH * 4 {
            buffer.push(i);
        }
        while !buffer.take_batch().is_empty() {}
        assert_eq!(buffer.entries.capacity(), 0);
        // Steady traffic below a batch keeps its allocation.
        for i in 0..10 {
            buffer.push(i);
        }
        let small = buffer.entries.capacity();
        assert_eq!(buffer.take_batch().len(), 10);
        assert_eq!(buffer.entries.capacity(), small);
    }

    #[test]
    fn failed_batch_goes_back_in_front_within_capacity() {
        let mut buffer = Buffer::new(4);
        for i in 0..4 {
            buffer.push(i);
        }
        let batch = buffer.take_batch();
        assert_eq!(batch, [0, 1, 2, 3]);
        buffer.push(4);
        buffer.push(5);
        buffer.push(6);
        buffer.requeue(batch);
        // Newest kept: the oldest of the failed batch no longer fits.
        assert_eq!(buffer.entries, [3, 4, 5, 6]);
        assert_eq!(buffer.take_dropped(), 3);
    }
}
