//! Zipfian key choice as YCSB makes it (`ZipfianGenerator`, after Gray et al., "Quickly
//! generating billion-record synthetic databases", SIGMOD 1994): rank `i` of `0..n` is
//! drawn with probability about `(i + 1)^-theta / zeta(n, theta)`, in constant time per
//! draw after an `O(n)` set-up.
//!
//! YCSB's `ScrambledZipfianGenerator` then hashes the rank so that the popular keys are
//! spread over the key space instead of being the first ones. [`Scrambled`] does the same
//! with a seeded random permutation of the keys (a plain Zipfian over a shuffled key
//! order), which keeps the exact Zipfian frequencies (YCSB's hash folds ranks together).

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// YCSB's Zipfian constant.
pub const THETA: f64 = 0.99;

/// `sum_{i=1..=n} 1 / i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| (i as f64).powf(-theta)).sum()
}

/// Zipfian ranks `0..n`, rank 0 the most popular.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// Ranks `0..n` (`n >= 1`) with constant `theta` (`0 < theta < 1`).
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(
            n >= 1 && theta > 0.0 && theta < 1.0,
            "n >= 1 and 0 < theta < 1"
        );
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    /// The probability of rank 0 (`1 / zeta(n, theta)`).
    pub fn top_probability(&self) -> f64 {
        1.0 / self.zetan
    }

    /// The next rank.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// Zipfian over keys `0..n` in a seeded shuffled order: the key of rank `i` is
/// `order[i]`.
#[derive(Debug, Clone)]
pub struct Scrambled {
    ranks: Zipfian,
    order: Vec<u64>,
}

impl Scrambled {
    /// Keys `0..n` (`n >= 1`), constant `theta`, the order shuffled by `seed`.
    pub fn new(n: u64, theta: f64, seed: u64) -> Scrambled {
        let mut order: Vec<u64> = (0..n).collect();
        order.shuffle(&mut SmallRng::seed_from_u64(seed));
        Scrambled {
            ranks: Zipfian::new(n, theta),
            order,
        }
    }

    /// The key of rank `rank`.
    pub fn key(&self, rank: u64) -> u64 {
        self.order[rank as usize]
    }

    /// The next key.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        self.key(self.ranks.next(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draw frequencies match the Zipfian law where YCSB's method is exact (ranks 0 and
    /// 1) and where it is close (the top ten's share); every draw is in range.
    #[test]
    fn zipfian_frequencies_follow_the_law() {
        let n = 1000;
        let z = Zipfian::new(n, THETA);
        let mut rng = SmallRng::seed_from_u64(11);
        let draws = 400_000;
        let mut hits = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.next(&mut rng);
            assert!(r < n);
            hits[r as usize] += 1;
        }
        let freq = |r: usize| hits[r] as f64 / f64::from(draws);
        let zn = zeta(n, THETA);
        assert!((freq(0) - 1.0 / zn).abs() < 0.005, "rank 0: {}", freq(0));
        assert!(
            (freq(1) - 0.5f64.powf(THETA) / zn).abs() < 0.005,
            "rank 1: {}",
            freq(1)
        );
        let top10: f64 = (0..10).map(freq).sum();
        let law10 = zeta(10, THETA) / zn;
        assert!((top10 - law10).abs() < 0.03, "top ten {top10} vs {law10}");
        // Skewed, and still reaching the tail.
        assert!(freq(0) > 20.0 * freq(500));
        assert!(hits[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn scrambled_is_a_permutation_with_the_same_skew() {
        let n = 1000;
        let s = Scrambled::new(n, THETA, 3);
        let mut keys: Vec<u64> = (0..n).map(|r| s.key(r)).collect();
        assert_ne!(keys, (0..n).collect::<Vec<_>>(), "not shuffled");
        keys.sort_unstable();
        assert_eq!(keys, (0..n).collect::<Vec<_>>());
        let mut rng = SmallRng::seed_from_u64(4);
        let draws = 200_000;
        let hot = (0..draws).filter(|_| s.next(&mut rng) == s.key(0)).count();
        let p0 = Zipfian::new(n, THETA).top_probability();
        assert!((hot as f64 / f64::from(draws) - p0).abs() < 0.01);
    }

    #[test]
    fn one_key_always_draws_it() {
        let z = Zipfian::new(1, THETA);
        let mut rng = SmallRng::seed_from_u64(0);
        assert!((0..100).all(|_| z.next(&mut rng) == 0));
    }
}
