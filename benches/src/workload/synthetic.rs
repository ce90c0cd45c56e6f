//! Synthetic: each transaction writes N bytes at a uniformly random byte offset of the
//! segment (default 64 MiB) and commits. N runs from 8 B to 64 KiB.
//!
//! Record engines see the segment as 4 KiB pages keyed by page number.

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Workload;
use crate::engine::{Engine, Layout};

/// Record size record engines use for the flat segment.
pub const PAGE: usize = 4096;

/// The synthetic workload for one transaction size.
#[derive(Debug)]
pub struct Synthetic {
    segment_len: u64,
    size: usize,
    rng: SmallRng,
    payload: Vec<u8>,
    committed: u64,
    last_off: Option<u64>,
    /// A copy of the whole segment (see [`Synthetic::with_model`]).
    model: Option<Vec<u8>>,
}

impl Synthetic {
    /// Writes of `size` bytes into a segment of `segment_len` bytes (a multiple of 4 KiB).
    pub fn new(segment_len: u64, size: usize) -> Synthetic {
        assert!(size > 0 && size as u64 <= segment_len && segment_len.is_multiple_of(PAGE as u64));
        let payload = (0..size).map(|i| (i % 251) as u8 | 1).collect();
        Synthetic {
            segment_len,
            size,
            rng: SmallRng::seed_from_u64(0x5157_7a11 ^ size as u64),
            payload,
            committed: 0,
            last_off: None,
            model: None,
        }
    }

    /// Also keeps a copy of the whole segment, so the check compares every byte. Only valid
    /// on an engine opened fresh for this workload (the copy starts zeroed); costs a copy per
    /// transaction, so tests use it, the timed suite does not.
    #[must_use]
    pub fn with_model(mut self) -> Synthetic {
        self.model = Some(vec![0; self.segment_len as usize]);
        self
    }

    fn stamp(&mut self) {
        // The first (up to) 8 bytes carry the transaction number, so every write differs.
        let stamp = (self.committed + 1).to_le_bytes();
        let n = self.size.min(8);
        self.payload[..n].copy_from_slice(&stamp[..n]);
    }
}

impl Workload for Synthetic {
    fn name(&self) -> String {
        format!("synthetic {}", human_bytes(self.size))
    }

    fn txn_bytes(&self) -> Option<usize> {
        Some(self.size)
    }

    fn layout(&self) -> Layout {
        Layout::pages(self.segment_len, PAGE)
    }

    fn load(&mut self, _engine: &mut dyn Engine) -> Result<()> {
        Ok(())
    }

    fn run_one(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let off = self.rng.gen_range(0..=self.segment_len - self.size as u64);
        self.stamp();
        let payload = &self.payload;
        engine.transact(&mut |tx| tx.write(off, payload))?;
        self.committed += 1;
        self.last_off = Some(off);
        if let Some(model) = &mut self.model {
            model[off as usize..off as usize + self.size].copy_from_slice(&self.payload);
        }
        Ok(())
    }

    fn committed(&self) -> u64 {
        self.committed
    }

    fn check(&mut self, engine: &mut dyn Engine) -> Result<()> {
        if let Some(off) = self.last_off {
            let mut got = vec![0; self.size];
            engine.transact(&mut |tx| tx.read(off, &mut got))?;
            ensure!(got == self.payload, "last write at {off} not found");
        }
        if let Some(model) = &self.model {
            let mut got = vec![0; model.len()];
            engine.transact(&mut |tx| tx.read(0, &mut got))?;
            if let Some(at) = got.iter().zip(model).position(|(a, b)| a != b) {
                anyhow::bail!("segment differs from the model at byte {at}");
            }
        }
        Ok(())
    }
}

/// `8B`, `4KiB`, `64KiB`.
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}
