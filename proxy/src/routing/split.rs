//! The exact weighted split.
//!
//! Hand-written because it is the core of weir's promise: at weight w% the canary gets
//! round(w·n/100) of any n consecutive requests, within one, for every n, across all
//! worker threads. A random pick (what most proxies do) only gets there on average.
//!
//! Every request takes a ticket `i` from one shared atomic counter. With the leg's share
//! written as a fraction a/b, request `i` goes to the leg exactly when
//! floor((i+1)·a/b) > floor(i·a/b). Over any run of consecutive tickets the leg then
//! gets floor or ceil of n·a/b. The test depends only on i mod b, so nothing overflows.
//! With more than two legs, the first leg is split from the rest this way and the rest
//! is split again with its own counter: each level is exact within its own stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A shared ticket counter. The updater keeps the same counter for a route across
/// reloads that keep its weights, so the sequence carries on unbroken.
pub type Counter = Arc<AtomicU64>;

/// One level: take leg `first` with share a/b, else descend.
#[derive(Debug)]
struct Level {
    a: u64,
    b: u64,
    counter: Counter,
}

/// A precomputed split over `n` legs.
#[derive(Debug)]
pub struct Split {
    /// Levels for legs 0..n-1; the last leg takes what the last level passes on.
    levels: Vec<Level>,
    legs: usize,
}

impl Split {
    /// A split over legs with these weights (any unit; at least one is non-zero), drawing
    /// tickets from `counters` (one per level, reused when given; missing ones are made).
    pub fn new(weights: &[u32], counters: &mut Vec<Counter>) -> Split {
        let legs = weights.len();
        let mut levels = Vec::new();
        let mut rest: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        for (i, w) in weights.iter().enumerate().take(legs.saturating_sub(1)) {
            let counter = match counters.get(i) {
                Some(c) => c.clone(),
                None => {
                    let c = Counter::default();
                    counters.push(c.clone());
                    c
                }
            };
            let a = u64::from(*w);
            let b = rest.max(1);
            levels.push(Level { a, b, counter });
            rest = rest.saturating_sub(a);
        }
        Split { levels, legs }
    }

    /// The leg the next request goes to.
    #[inline]
    pub fn pick(&self) -> usize {
        self.pick_with_ticket().0
    }

    /// The leg the next request goes to, and its ticket: the request's place in the
    /// split's sequence (consecutive requests hold consecutive tickets).
    #[inline]
    pub fn pick_with_ticket(&self) -> (usize, u64) {
        let mut first_ticket = None;
        for (i, l) in self.levels.iter().enumerate() {
            let ticket = l.counter.fetch_add(1, Ordering::Relaxed);
            first_ticket.get_or_insert(ticket);
            if l.a == 0 {
                continue;
            }
            if l.a >= l.b {
                return (i, first_ticket.unwrap_or(ticket));
            }
            let t = ticket % l.b;
            if ((t + 1) * l.a) / l.b > (t * l.a) / l.b {
                return (i, first_ticket.unwrap_or(ticket));
            }
        }
        (self.legs - 1, first_ticket.unwrap_or(0))
    }

    /// Number of legs.
    pub fn legs(&self) -> usize {
        self.legs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worst deviation from round(w·n) over every window of n consecutive picks.
    fn worst(picks: &[usize], leg: usize, share: f64, n: usize) -> f64 {
        weir_fixtures::worst_deviation(picks, |p| *p == leg, share, n)
    }

    #[test]
    fn two_legs_are_exact_in_every_window() {
        for (stable, canary) in [
            (9500, 500),
            (9000, 1000),
            (9950, 50),
            (10000, 0),
            (1, 9999),
            (9999, 1),
            (6667, 3333),
        ] {
            let split = Split::new(&[stable, canary], &mut Vec::new());
            let picks: Vec<usize> = (0..30_000).map(|_| split.pick()).collect();
            let share = f64::from(canary) / 10_000.0;
            for n in [1, 2, 3, 7, 10, 100, 1000, 10_000] {
                let w = worst(&picks, 1, share, n);
                assert!(w < 1.0, "{stable}/{canary} n={n}: off by {w}");
            }
        }
    }

    #[test]
    fn three_legs_keep_their_shares() {
        let split = Split::new(&[5000, 3000, 2000], &mut Vec::new());
        let picks: Vec<usize> = (0..10_000).map(|_| split.pick()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 0).count(), 5000);
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 3000);
        assert_eq!(picks.iter().filter(|p| **p == 2).count(), 2000);
        assert!(worst(&picks, 0, 0.5, 100) < 1.0);
    }

    #[test]
    fn counters_carry_over() {
        let mut counters = Vec::new();
        let a = Split::new(&[9000, 1000], &mut counters);
        let mut picks: Vec<usize> = (0..55).map(|_| a.pick()).collect();
        let b = Split::new(&[9000, 1000], &mut counters);
        picks.extend((0..945).map(|_| b.pick()));
        assert!(worst(&picks, 1, 0.1, 10) < 1.0);
    }
}
