//! Session affinity's arithmetic: a user's id to a bucket, a bucket to a leg.
//!
//! The hash is written here rather than taken from `std` (whose `DefaultHasher` may change
//! between Rust versions) or seeded per process: every replica, before and after an
//! upgrade, must put a user in the same bucket. FNV-1a over the id's bytes, then
//! SplitMix64's finalizer to spread FNV's weak low bits over the whole word; both are
//! fixed, published functions.

use weir_config::model::Weight;

/// Buckets: one per hundredth of a percent, so a weight in basis points is a count of
/// buckets.
pub const BUCKETS: u64 = Weight::SCALE as u64;

/// The bucket-deciding hash of an id.
pub fn hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SplitMix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The leg of a user whose id hashes to `key`, given the legs' weights: the last leg (the
/// canary) takes the lowest buckets, the one before it the next ones, and so on. So a leg
/// that grows only takes buckets from the legs before it, and a leg at 0 gets no user.
pub fn leg(weights: &[Weight], key: u64) -> usize {
    let bucket = key % BUCKETS;
    let mut upto = 0u64;
    for (i, w) in weights.iter().enumerate().rev() {
        upto += u64::from(w.basis_points());
        if bucket < upto {
            return i;
        }
    }
    // Weights that do not add up to the whole (rounding): the first leg.
    0
}

/// A new user's id: random, so that users spread over the buckets.
pub fn new_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState draws its keys from the OS once per thread, then steps them: a cheap,
    // well-spread source that needs no extra crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(bp: &[u32]) -> Vec<Weight> {
        bp.iter().map(|b| Weight::from_basis_points(*b)).collect()
    }

    /// The hash is a fixed function: these values hold on every machine, replica and
    /// version (computed apart, by a script implementing FNV-1a and SplitMix64's
    /// finalizer). A change here moves every user to another bucket.
    #[test]
    fn the_hash_is_fixed() {
        assert_eq!(hash(b"a"), 0x02c0_bdbf_4814_20f8);
        assert_eq!(hash(b"user-42"), 0x7a15_96f0_e94b_5793);
        assert_eq!(hash(b"0123456789abcdef") % BUCKETS, 8514);
    }

    #[test]
    fn users_share_the_legs_as_the_weights_say() {
        let weights = w(&[8000, 2000]);
        let n = 100_000u64;
        let canary = (0..n)
            .filter(|i| leg(&weights, hash(format!("{i:016x}").as_bytes())) == 1)
            .count() as f64;
        // 20% of users, within 1% (about 8 standard deviations).
        assert!((canary / n as f64 - 0.2).abs() < 0.01, "{canary}");
    }

    #[test]
    fn raising_the_canary_only_moves_users_onto_it() {
        for i in 0..20_000u64 {
            let key = hash(&i.to_le_bytes());
            let mut was_canary = false;
            for bp in (0..=10_000).step_by(500) {
                let on = leg(&w(&[10_000 - bp, bp]), key) == 1;
                assert!(!was_canary || on, "user {i} left the canary at {bp}");
                was_canary = on;
            }
            assert!(was_canary, "at 100% every user is on the canary");
            assert_eq!(leg(&w(&[10_000, 0]), key), 0, "at 0 no user is");
        }
    }
}
