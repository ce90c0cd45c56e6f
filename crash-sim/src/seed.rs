//! Seeds: every random choice of a campaign is drawn from its seed through SplitMix64,
//! so a seed replays a run.

/// SplitMix64: the deterministic mixing behind every seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The seed of cycle `n` of the campaign with seed `seed`.
pub fn cycle_seed(seed: u64, n: u64) -> u64 {
    mix(seed ^ mix(n))
}
