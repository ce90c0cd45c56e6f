//! What a transaction remembers about the heap between its calls (the blocks it freed);
//! the heap ([`crate::heap`]) reads and changes it; it lives in the transaction's lane
//! and is cleared when the transaction gives the lane back.

use std::collections::BTreeMap;

/// Freed ranges a transaction keeps in place before it files them in a map: most
/// transactions free one or two blocks, and a map's node allocation and drop cost more
/// than the rest of a small free (callgrind: keeping them in place saved 203 of an
/// alloc+free pair's 4,758 instructions).
const FEW: usize = 4;

/// What a transaction remembers about the heap: the blocks it freed. A block freed by
/// this transaction is still live in the committed state, so if this transaction
/// allocates it again its old contents are logged before they are overwritten; any
/// other free block is written without a before-image (an abort frees it again, and
/// no committed state needs its bytes).
///
/// The ranges are disjoint (touching ones merged): in `few` (the first `len`, in no
/// order) while there are at most [`FEW`], else all in `many`, keyed by start.
#[derive(Debug, Default)]
pub(crate) struct TxHeap {
    few: [(u64, u64); FEW],
    len: usize,
    many: BTreeMap<u64, u64>,
}

impl TxHeap {
    /// Records `[off, off + len)` as freed, merged with the ranges it touches so the
    /// ranges stay disjoint (and `overlaps_freed` needs to look at one only in the map).
    pub(crate) fn record_free(&mut self, off: u64, len: u64) {
        let (mut start, mut end) = (off, off + len);
        if self.many.is_empty() {
            let mut i = 0;
            while i < self.len {
                let (s, l) = self.few[i];
                if s <= end && s + l >= start {
                    start = start.min(s);
                    end = end.max(s + l);
                    self.len -= 1;
                    self.few[i] = self.few[self.len];
                } else {
                    i += 1;
                }
            }
            if self.len < FEW {
                self.few[self.len] = (start, end - start);
                self.len += 1;
                return;
            }
            // Full: every range moves to the map, which keeps them from now on.
            self.many.extend(self.few[..self.len].iter().copied());
            self.len = 0;
        }
        let touching: Vec<(u64, u64)> = self
            .many
            .range(..=end)
            .rev()
            .take_while(|&(&s, &l)| s + l >= start)
            .map(|(&s, &l)| (s, l))
            .collect();
        for (s, l) in touching {
            self.many.remove(&s);
            start = start.min(s);
            end = end.max(s + l);
        }
        self.many.insert(start, end - start);
    }

    /// Forgets every range (the transaction ended).
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        if !self.many.is_empty() {
            self.many.clear();
        }
    }

    /// Whether `[off, off + len)` overlaps a range this transaction freed.
    pub(crate) fn overlaps_freed(&self, off: u64, len: u64) -> bool {
        self.few[..self.len]
            .iter()
            .any(|&(s, l)| s < off + len && s + l > off)
            || self
                .many
                .range(..off + len)
                .next_back()
                .is_some_and(|(&s, &l)| s + l > off)
    }

    /// The disjoint ranges, sorted by start (for tests).
    #[cfg(test)]
    fn ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.few[..self.len].to_vec();
        v.extend(self.many.iter().map(|(&s, &l)| (s, l)));
        v.sort_unstable();
        v
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
        assert_eq!(h.ranges(), vec![(1000, 5010)], "touching ranges merge");
        assert!(h.overlaps_freed(6009, 1) && !h.overlaps_freed(6010, 5));
    }

    /// The same answers as a plain list of every range freed, in place and in the map,
    /// across the move from one to the other.
    #[test]
    fn few_and_many_answer_alike() {
        let mut h = TxHeap::default();
        let mut freed: Vec<(u64, u64)> = Vec::new();
        let mut x = 12_345u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..200 {
            let (off, len) = (next(4000), 1 + next(64));
            h.record_free(off, len);
            freed.push((off, len));
            for _ in 0..20 {
                let (o, l) = (next(4100), 1 + next(32));
                let expect = freed.iter().any(|&(s, n)| s < o + l && s + n > o);
                assert_eq!(
                    h.overlaps_freed(o, l),
                    expect,
                    "[{o}, +{l}) after {freed:?}"
                );
            }
            let r = h.ranges();
            assert!(
                r.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0),
                "disjoint, not touching: {r:?}"
            );
        }
        assert!(!h.many.is_empty(), "200 scattered frees reached the map");
    }

    #[test]
    fn clear_forgets_ranges_in_place_and_in_the_map() {
        let mut h = TxHeap::default();
        h.record_free(100, 10);
        h.clear();
        assert!(!h.overlaps_freed(100, 10));
        for i in 0..10 {
            h.record_free(i * 100, 10);
        }
        assert!(h.overlaps_freed(905, 1));
        h.clear();
        assert!(h.ranges().is_empty() && !h.overlaps_freed(905, 1));
        h.record_free(7, 1);
        assert_eq!(h.ranges(), vec![(7, 1)], "in place again after a clear");
    }
}
