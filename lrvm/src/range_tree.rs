//! The per-segment map of latest committed values that recovery and truncation build
//! before touching a data segment (the paper's "in-memory tree of the latest committed
//! changes for each data segment").

use std::collections::BTreeMap;

/// Non-overlapping byte intervals of one segment with their newest value.
#[derive(Debug, Default)]
pub(crate) struct RangeTree {
    /// Start offset -> bytes; no two entries overlap.
    map: BTreeMap<u64, Vec<u8>>,
}

impl RangeTree {
    /// Records that `data` is the newest value at `offset`, shadowing older values.
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Every interval starting before `end` whose end is past `offset` overlaps. Since
        // intervals do not overlap each other, walking backwards from `end` we can stop at
        // the first one that ends at or before `offset`.
        let overlapping: Vec<u64> = self
            .map
            .range(..end)
            .rev()
            .take_while(|(s, v)| **s + v.len() as u64 > offset)
            .map(|(s, _)| *s)
            .collect();
        for s in overlapping {
            let old = self.map.remove(&s).expect("key just listed");
            let old_end = s + old.len() as u64;
            if s < offset {
                self.map.insert(s, old[..(offset - s) as usize].to_vec());
            }
            if old_end > end {
                self.map.insert(end, old[(end - s) as usize..].to_vec());
            }
        }
        self.map.insert(offset, data.to_vec());
    }

    /// The intervals in offset order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.map.iter().map(|(s, v)| (*s, v.as_slice()))
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.map.values().map(|v| v.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_applying_in_order(writes in proptest::collection::vec((0u64..200, 1usize..40, any::<u8>()), 0..40)) {
            let mut model = vec![None::<u8>; 256];
            let mut tree = RangeTree::default();
            for (off, len, byte) in &writes {
                let data = vec![*byte; *len];
                tree.insert(*off, &data);
                for i in 0..*len {
                    model[*off as usize + i] = Some(*byte);
                }
            }
            let mut got = vec![None::<u8>; 256];
            let mut last_end = 0;
            for (s, v) in tree.iter() {
                prop_assert!(s >= last_end, "overlap");
                last_end = s + v.len() as u64;
                for (i, b) in v.iter().enumerate() {
                    got[s as usize + i] = Some(*b);
                }
            }
            prop_assert_eq!(got, model);
        }
    }
}
