//! What a transaction remembers about the heap between its calls (the blocks it freed);
//! the heap ([`crate::heap`]) reads and changes it, the transaction only carries it.

use std::collections::BTreeMap;

/// What a transaction remembers about the heap: the blocks it freed. A block freed by
/// this transaction is still live in the committed state, so if this transaction
/// allocates it again its old contents are logged before they are overwritten; any
/// other free block is written without a before-image (an abort frees it again, and
/// no committed state needs its bytes).
#[derive(Debug, Default)]
pub(crate) struct TxHeap {
    freed: BTreeMap<u64, u64>,
}

impl TxHeap {
    /// Records `[off, off + len)` as freed, merged with the ranges it touches so the
    /// map holds disjoint ranges (and `overlaps_freed` needs to look at one only).
    pub(crate) fn record_free(&mut self, off: u64, len: u64) {
        let (mut start, mut end) = (off, off + len);
        let touching: Vec<(u64, u64)> = self
            .freed
            .range(..=end)
            .rev()
            .take_while(|&(&s, &l)| s + l >= start)
            .map(|(&s, &l)| (s, l))
            .collect();
        for (s, l) in touching {
            self.freed.remove(&s);
            start = start.min(s);
            end = end.max(s + l);
        }
        self.freed.insert(start, end - start);
    }

    pub(crate) fn overlaps_freed(&self, off: u64, len: u64) -> bool {
        self.freed
            .range(..off + len)
            .next_back()
            .is_some_and(|(&s, &l)| s + l > off)
    }
}

#[cfg(test)]
mod tests {
    use super::TxHeap;

    #[test]
    fn freed_ranges_stay_disjoint() {
        let mut h = TxHeap::default();
        h.record_free(1000, 5000);
        h.record_free(1100, 16);
        h.record_free(1000, 16);
        assert!(
            h.overlaps_freed(5000, 16),
            "the large range is not hidden by small ones"
        );
        assert!(!h.overlaps_freed(6000, 16));
        h.record_free(6000, 10);
        assert_eq!(h.freed.len(), 1, "touching ranges merge");
        assert!(h.overlaps_freed(6009, 1) && !h.overlaps_freed(6010, 5));
    }
}
