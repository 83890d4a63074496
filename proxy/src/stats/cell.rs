//! One (service, role, revision) cell.

use std::fmt;
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;

use super::HISTORY_SECONDS;
use super::window::{
    LATENCY_BUCKETS, SecondCounts, Slot, Tally, WindowSample, bucket_index, new_histogram,
    status_class,
};

/// A backend's role in a rollout.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A plain service, not part of a rollout.
    None,
    /// The rollout's stable revision.
    Stable,
    /// The rollout's canary revision, chosen by the weighted split (or a user's sticky
    /// bucket, which follows the weights).
    Canary,
    /// The canary revision, chosen by a rule rather than the weights: a `setHeaderRoute`
    /// match, an ingress canary header or cookie, the canary host, a `setMirrorRoute`
    /// copy. Counted apart so that the canary-vs-stable judge compares only what the
    /// split sent (those requests are like the stable's); everything else that reads
    /// the canary's measurements sums both, and Prometheus shows both as `canary`.
    #[serde(rename = "canary-pinned")]
    CanaryPinned,
}

impl Role {
    /// The Prometheus label value: `stable`, `canary`, or empty.
    pub fn label(self) -> &'static str {
        match self {
            Role::None => "",
            Role::Stable => "stable",
            Role::Canary | Role::CanaryPinned => "canary",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::None => "none",
            Role::CanaryPinned => "canary-pinned",
            r => r.label(),
        })
    }
}

/// What a cell is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    /// The Rollout's or the Service's name.
    pub service: Arc<str>,
    /// Stable, canary, or none.
    pub role: Role,
    /// The image, or empty.
    pub revision: Arc<str>,
}

/// How one request ended, for the stats.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The status sent to the client (502/503/504 for proxy errors).
    pub status: u16,
    /// Whether the proxy made the status itself (connect error, timeout).
    pub proxy_error: bool,
    /// Microseconds from the request's arrival to the end of its response.
    pub latency_us: u64,
}

impl Outcome {
    /// 5xx and proxy errors are failures; everything else succeeded.
    pub fn failed(&self) -> bool {
        self.proxy_error || self.status >= 500
    }
}

/// Counts for the second in progress, per shard.
#[derive(Debug)]
pub(super) struct Current {
    pub(super) requests: u64,
    pub(super) failures: u64,
    pub(super) classes: [u64; 6],
    pub(super) latency: Histogram<u32>,
}

impl Current {
    fn new() -> Self {
        Current {
            requests: 0,
            failures: 0,
            classes: [0; 6],
            latency: new_histogram(),
        }
    }
}

/// One thread's share of a cell.
#[derive(Debug)]
struct Shard {
    /// Since start, by status code (index = code; 0..600).
    statuses: Box<[u64; 600]>,
    /// Since start, Prometheus histogram buckets (non-cumulative) plus +Inf.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
    current: Current,
}

/// Measurements of one (service, role, revision).
#[derive(Debug)]
pub struct Cell {
    key: CellKey,
    measure: bool,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// `slots[s % HISTORY_SECONDS]` holds second `s` when `seconds[...] == s`.
    slots: Vec<Option<Box<Slot>>>,
    seconds: Vec<u64>,
    /// The latest second folded in.
    last: u64,
    /// The last cut ([`Cell::cut`]).
    cut: Option<Cut>,
}

/// A moment after which the cell's requests are a new population (an update began with
/// this revision as its canary). The requests of the cut's second that came before it
/// are kept apart, so that a window from the cut leaves them out and any other window
/// still counts them: one-second slots alone could not tell them apart.
#[derive(Debug)]
struct Cut {
    /// Who asked for it (the update's start, in milliseconds since the epoch).
    id: u64,
    /// The second it happened in.
    second: u64,
    /// The requests recorded in that second before it.
    before: Option<Box<Slot>>,
}

thread_local! {
    static SHARD_INDEX: usize = next_shard_index();
}

fn next_shard_index() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Cell {
    pub(super) fn new(key: CellKey, shards: usize, measure: bool) -> Self {
        let shards = (0..shards)
            .map(|_| {
                CachePadded::new(Mutex::new(Shard {
                    statuses: Box::new([0; 600]),
                    buckets: [0; LATENCY_BUCKETS.len() + 1],
                    sum_seconds: 0.0,
                    count: 0,
                    current: Current::new(),
                }))
            })
            .collect();
        Cell {
            key,
            measure,
            shards,
            ring: Mutex::new(Ring {
                slots: (0..HISTORY_SECONDS).map(|_| None).collect(),
                seconds: vec![u64::MAX; HISTORY_SECONDS],
                last: 0,
                cut: None,
            }),
        }
    }

    /// What this cell measures.
    pub fn key(&self) -> &CellKey {
        &self.key
    }

    /// Records one finished request. Hot path: one short lock on this thread's shard.
    pub fn record(&self, o: Outcome) {
        if !self.measure {
            return;
        }
        let idx = SHARD_INDEX.with(|i| *i) & (self.shards.len() - 1);
        let mut s = self.shards[idx].lock().unwrap_or_else(|e| e.into_inner());
        let code = usize::from(o.status).min(599);
        s.statuses[code] += 1;
        let secs = o.latency_us as f64 / 1e6;
        s.buckets[bucket_index(secs)] += 1;
        s.sum_seconds += secs;
        s.count += 1;
        let c = &mut s.current;
        c.requests += 1;
        c.failures += u64::from(o.failed());
        c.classes[status_class(o.status, o.proxy_error)] += 1;
        c.latency.saturating_record(o.latency_us.max(1));
    }

    /// Folds the shards' current counts into the slot for `epoch_second - 1`.
    pub(super) fn rotate(&self, epoch_second: u64) {
        let second = epoch_second.saturating_sub(1);
        // Lock order everywhere: ring, then shards. Holding the ring while the shards are
        // emptied means a window read never sees a second twice or not at all.
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let i = (second % HISTORY_SECONDS as u64) as usize;
        match self.take_current() {
            None => {
                if ring.seconds[i] != second {
                    ring.slots[i] = None;
                    ring.seconds[i] = second;
                }
            }
            Some(mut slot) => {
                // Two rotations within one second (a late tick) merge into the same slot.
                if ring.seconds[i] == second
                    && let Some(prev) = ring.slots[i].take()
                {
                    slot.merge(&prev);
                }
                ring.slots[i] = Some(Box::new(slot));
                ring.seconds[i] = second;
            }
        }
        ring.last = ring.last.max(second);
    }

    /// Moves the second in progress out of the shards: None if it had no requests. The
    /// caller holds the ring (lock order: ring, then shards).
    fn take_current(&self) -> Option<Slot> {
        let mut slot = Slot::default();
        let mut hist: Option<Histogram<u32>> = None;
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if s.current.requests == 0 {
                continue;
            }
            let cur = std::mem::replace(&mut s.current, Current::new());
            drop(s);
            slot.add_counts(&cur);
            match &mut hist {
                None => hist = Some(cur.latency),
                Some(h) => {
                    let _ = h.add(&cur.latency);
                }
            }
        }
        slot.set_latency(&hist?);
        Some(slot)
    }

    /// Starts a new population now (in second `now_second`), named `id`: a window asked
    /// for with the same `id` counts only the requests recorded after this call. Calling
    /// it again with the same `id` does nothing.
    pub fn cut(&self, id: u64, now_second: u64) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.cut.as_ref().is_some_and(|c| c.id == id) {
            return;
        }
        let mut before = self.take_current();
        // The previous cut's early requests go back with the rest of their second.
        if let Some(prev) = ring.cut.take()
            && let Some(old) = prev.before
        {
            let i = (prev.second % HISTORY_SECONDS as u64) as usize;
            if prev.second == now_second {
                match &mut before {
                    Some(b) => b.merge(&old),
                    None => before = Some(*old),
                }
            } else if ring.seconds[i] == prev.second {
                match &mut ring.slots[i] {
                    Some(slot) => slot.merge(&old),
                    empty => *empty = Some(old),
                }
            } else if ring.seconds[i] == u64::MAX || ring.seconds[i] < prev.second {
                ring.slots[i] = Some(old);
                ring.seconds[i] = prev.second;
            }
        }
        ring.cut = Some(Cut {
            id,
            second: now_second,
            before: before.map(Box::new),
        });
    }

    /// The requests of the last `seconds` seconds ending at `now_second` (the second in
    /// progress included).
    pub fn window(&self, now_second: u64, seconds: u64) -> WindowSample {
        self.window_since(now_second, seconds, None)
    }

    /// [`Cell::window`], counting only the requests after the cut named `since` (a time
    /// in milliseconds since the epoch). Without that cut (none was made, or another one
    /// since), the window starts with the second `since` falls in.
    pub fn window_since(&self, now_second: u64, seconds: u64, since: Option<u64>) -> WindowSample {
        let mut out = WindowSample::new(seconds);
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.add_current(&s.current);
        }
        let span = seconds.clamp(1, HISTORY_SECONDS as u64);
        let mut first = (now_second + 1).saturating_sub(span);
        let mut with_before = true;
        if let Some(since) = since {
            match &ring.cut {
                Some(c) if c.id == since => {
                    first = first.max(c.second);
                    with_before = false;
                }
                _ => first = first.max(since / 1000),
            }
        }
        if with_before
            && let Some(c) = &ring.cut
            && let Some(b) = &c.before
            && (first..=now_second).contains(&c.second)
        {
            out.add_slot(b);
        }
        // Whole seconds before the current one: `first` up to now-1.
        for sec in first..now_second {
            let i = (sec % HISTORY_SECONDS as u64) as usize;
            if ring.seconds[i] == sec
                && let Some(slot) = &ring.slots[i]
            {
                out.add_slot(slot);
            }
        }
        out
    }

    /// The requests of each second from `from_second` to `now_second` (the second in
    /// progress, last), counting, as [`Cell::window_since`] does, only those after the
    /// cut named `since`; with `slow_above_us`, how many took longer than that. Seconds
    /// past the history kept are left out.
    pub fn tallies(
        &self,
        now_second: u64,
        from_second: u64,
        since: Option<u64>,
        slow_above_us: Option<u64>,
    ) -> Vec<(u64, Tally)> {
        // Lock order: ring, then shards (as in `window_since`).
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut first = from_second.max((now_second + 1).saturating_sub(HISTORY_SECONDS as u64));
        let mut with_before = true;
        if let Some(since) = since {
            match &ring.cut {
                Some(c) if c.id == since => {
                    first = first.max(c.second);
                    with_before = false;
                }
                _ => first = first.max(since / 1000),
            }
        }
        let first = first.min(now_second);
        let mut out: Vec<(u64, Tally)> = (first..=now_second)
            .map(|sec| (sec, Tally::default()))
            .collect();
        for (sec, t) in out.iter_mut() {
            if *sec == now_second {
                break;
            }
            let i = (*sec % HISTORY_SECONDS as u64) as usize;
            if ring.seconds[i] == *sec
                && let Some(slot) = &ring.slots[i]
            {
                t.add_slot(slot, slow_above_us);
            }
        }
        if with_before
            && let Some(c) = &ring.cut
            && let Some(b) = &c.before
            && (first..=now_second).contains(&c.second)
        {
            out[(c.second - first) as usize]
                .1
                .add_slot(b, slow_above_us);
        }
        if let Some((_, last)) = out.last_mut() {
            for shard in self.shards.iter() {
                let s = shard.lock().unwrap_or_else(|e| e.into_inner());
                last.add_current(&s.current, slow_above_us);
            }
        }
        out
    }

    /// Each second from `from_second` to two before `now_second` that had requests, as
    /// other replicas of a cluster read them (no cut applies: they see the whole second).
    /// The second just ended is left out: the once-a-second tick may not have closed it
    /// yet in every cell, and a reader that has seen a later second in one cell asks for
    /// no earlier one again.
    pub fn closed_seconds(&self, now_second: u64, from_second: u64) -> Vec<SecondCounts> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let first = from_second.max((now_second + 1).saturating_sub(HISTORY_SECONDS as u64));
        let mut out = Vec::new();
        for sec in first..now_second.saturating_sub(1) {
            let i = (sec % HISTORY_SECONDS as u64) as usize;
            if ring.seconds[i] != sec {
                continue;
            }
            // The early part of a cut second is kept apart: it is part of the second.
            let before = ring
                .cut
                .as_ref()
                .filter(|c| c.second == sec)
                .and_then(|c| c.before.as_deref());
            let mut whole = Slot::default();
            for part in ring.slots[i].as_deref().into_iter().chain(before) {
                whole.merge(part);
            }
            let slot = SecondCounts::of(sec, &whole);
            if slot.requests > 0 {
                out.push(slot);
            }
        }
        out
    }

    /// `points` consecutive windows of `step` seconds each, oldest first, the last one
    /// ending with the second in progress: a time series for charts.
    pub fn series(&self, now_second: u64, points: usize, step: u64) -> Vec<WindowSample> {
        let step = step.max(1);
        let mut out: Vec<WindowSample> = (0..points).map(|_| WindowSample::new(step)).collect();
        let Some(last) = out.last_mut() else {
            return out;
        };
        // Lock order: ring, then shards (as in `window_since`), so a tick cannot move
        // a second from the shards into the ring between the two reads and count it twice.
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            last.add_current(&s.current);
        }
        let span = (points as u64 * step).min(HISTORY_SECONDS as u64);
        for back in 1..span {
            let Some(sec) = now_second.checked_sub(back) else {
                break;
            };
            let i = (sec % HISTORY_SECONDS as u64) as usize;
            if ring.seconds[i] == sec
                && let Some(slot) = &ring.slots[i]
            {
                let point = points - 1 - (back / step) as usize;
                out[point].add_slot(slot);
            }
        }
        if let Some(c) = &ring.cut
            && let Some(b) = &c.before
            && c.second <= now_second
            && now_second - c.second < span.max(1)
        {
            let point = points - 1 - ((now_second - c.second) / step) as usize;
            out[point].add_slot(b);
        }
        out
    }

    /// Totals since start, summed over shards: per-status counts, Prometheus buckets
    /// (cumulative, with +Inf last), sum of seconds, count.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            statuses: Vec::new(),
            buckets: vec![0; LATENCY_BUCKETS.len() + 1],
            sum_seconds: 0.0,
            count: 0,
        };
        let mut statuses = [0u64; 600];
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (a, b) in statuses.iter_mut().zip(s.statuses.iter()) {
                *a += b;
            }
            for (a, b) in t.buckets.iter_mut().zip(s.buckets.iter()) {
                *a += b;
            }
            t.sum_seconds += s.sum_seconds;
            t.count += s.count;
        }
        let mut acc = 0;
        for b in t.buckets.iter_mut() {
            acc += *b;
            *b = acc;
        }
        t.statuses = statuses
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code as u16, *n))
            .collect();
        t
    }
}

/// Lifetime totals of a cell, for Prometheus.
#[derive(Clone, Debug)]
pub struct Totals {
    /// (status code, count), codes with a non-zero count only.
    pub statuses: Vec<(u16, u64)>,
    /// Cumulative bucket counts for [`LATENCY_BUCKETS`], then +Inf.
    pub buckets: Vec<u64>,
    /// Sum of latencies in seconds.
    pub sum_seconds: f64,
    /// Number of requests.
    pub count: u64,
}

impl Totals {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Totals) {
        for (code, n) in &other.statuses {
            match self.statuses.binary_search_by_key(code, |(c, _)| *c) {
                Ok(i) => self.statuses[i].1 += n,
                Err(i) => self.statuses.insert(i, (*code, *n)),
            }
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CellKey {
        CellKey {
            service: "app".into(),
            role: Role::Canary,
            revision: "app:v2".into(),
        }
    }

    fn ok(us: u64) -> Outcome {
        Outcome {
            status: 200,
            proxy_error: false,
            latency_us: us,
        }
    }

    #[test]
    fn windows_cover_slots_and_the_current_second() {
        let cell = Cell::new(key(), 2, true);
        // Second 100: 10 requests, 2 of them 500s.
        for i in 0..10 {
            let mut o = ok(1000);
            if i < 2 {
                o.status = 500;
            }
            cell.record(o);
        }
        cell.rotate(101);
        // Second 101 in progress: 5 requests.
        for _ in 0..5 {
            cell.record(ok(2000));
        }
        let w = cell.window(101, 10);
        assert_eq!(w.requests, 15);
        assert_eq!(w.failures, 2);
        assert!((w.success_rate().unwrap() - 13.0 / 15.0).abs() < 1e-9);
        // A one-second window sees only the second in progress.
        assert_eq!(cell.window(101, 1).requests, 5);
        // Ten minutes later the slot has aged out.
        assert_eq!(cell.window(101 + 700, 60).requests, 5);
        let t = cell.totals();
        assert_eq!(t.count, 15);
        assert_eq!(t.statuses, vec![(200, 13), (500, 2)]);
    }

    #[test]
    fn a_cut_leaves_out_what_came_before_it_in_the_same_second() {
        let cell = Cell::new(key(), 2, true);
        // Second 100: 30 requests, all 500s (an update aborted a moment ago).
        cell.rotate(100);
        for _ in 0..30 {
            let mut o = ok(1000);
            o.status = 500;
            cell.record(o);
        }
        // Second 101: 10 more 500s, then a new update begins at 101.4 s.
        cell.rotate(101);
        for _ in 0..10 {
            let mut o = ok(1000);
            o.status = 500;
            cell.record(o);
        }
        cell.cut(101_400, 101);
        cell.cut(101_400, 101); // again: nothing changes
        for _ in 0..4 {
            cell.record(ok(1000));
        }
        // The update's own window: the 4 requests after the cut, nothing before.
        let w = cell.window_since(101, 10, Some(101_400));
        assert_eq!((w.requests, w.failures), (4, 0));
        // Every other window still counts everything.
        let all = cell.window(101, 10);
        assert_eq!((all.requests, all.failures), (44, 40));
        let s = cell.series(101, 2, 1);
        assert_eq!(
            s.iter().map(|w| w.requests).collect::<Vec<_>>(),
            vec![30, 14]
        );
        // Without its cut (another update cut since), the window starts at the second
        // `since` falls in.
        cell.rotate(102);
        cell.record(ok(1000));
        cell.cut(102_500, 102);
        let w = cell.window_since(102, 10, Some(101_400));
        assert_eq!((w.requests, w.failures), (15, 10));
        assert_eq!(cell.window_since(102, 10, Some(102_500)).requests, 0);
        // The first cut's early requests went back into their second's slot.
        assert_eq!(cell.window(102, 10).requests, 45);
    }

    #[test]
    fn tallies_count_each_second_and_the_slow_requests() {
        let cell = Cell::new(key(), 2, true);
        // Second 100: 10 requests, 2 of them 500s, 3 of them slow (200 ms).
        cell.rotate(100);
        for i in 0..10 {
            let mut o = ok(if i < 3 { 200_000 } else { 1000 });
            if i >= 8 {
                o.status = 500;
            }
            cell.record(o);
        }
        cell.rotate(101);
        // Second 101: 4 requests before a cut, 5 after, one of them slow.
        for _ in 0..4 {
            cell.record(ok(1000));
        }
        cell.cut(101_500, 101);
        for i in 0..5 {
            cell.record(ok(if i == 0 { 300_000 } else { 1000 }));
        }
        cell.rotate(102);
        // Second 102, in progress: 2 requests, both slow.
        cell.record(ok(150_000));
        cell.record(ok(150_000));
        let t = |requests, failures, slow| Tally {
            requests,
            failures,
            slow,
        };
        assert_eq!(
            cell.tallies(102, 100, None, Some(100_000)),
            vec![(100, t(10, 2, 3)), (101, t(9, 0, 1)), (102, t(2, 0, 2))]
        );
        // From the cut: the 4 requests before it are left out; without a threshold
        // nothing is slow.
        assert_eq!(
            cell.tallies(102, 99, Some(101_500), None),
            vec![(101, t(5, 0, 0)), (102, t(2, 0, 0))]
        );
        // A threshold between the recorded values splits them as the window does.
        assert_eq!(cell.tallies(102, 102, None, Some(200_000))[0].1.slow, 0);
    }

    #[test]
    fn series_put_each_second_in_its_window() {
        let cell = Cell::new(key(), 1, true);
        // Seconds 100..=109: second s has s-99 requests (1..=10), second 105 all 500s.
        for sec in 100..110u64 {
            cell.rotate(sec);
            for _ in 0..(sec - 99) {
                let mut o = ok(1000);
                if sec == 105 {
                    o.status = 500;
                }
                cell.record(o);
            }
        }
        // Second 109 is in progress. Windows of 5 s: [100..=104] and [105..=109];
        // a third, older window is empty.
        let s = cell.series(109, 3, 5);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].requests, 0);
        assert_eq!(s[1].requests, 1 + 2 + 3 + 4 + 5);
        assert_eq!(s[1].failures, 0);
        assert_eq!(s[2].requests, 6 + 7 + 8 + 9 + 10);
        assert_eq!(s[2].failures, 6);
        // One-second windows line up with seconds.
        let s = cell.series(109, 4, 1);
        let counts: Vec<u64> = s.iter().map(|w| w.requests).collect();
        assert_eq!(counts, vec![7, 8, 9, 10]);
        assert!(cell.series(109, 0, 5).is_empty());
    }

    #[test]
    fn quantiles() {
        let cell = Cell::new(key(), 1, true);
        for i in 1..=1000u64 {
            cell.record(ok(i * 1000)); // 1 ms .. 1 s
        }
        let w = cell.window(5, 10);
        let p99 = w.quantile(0.99).unwrap();
        assert!((p99 - 0.99).abs() < 0.02, "p99 {p99}");
        let p50 = w.quantile(0.5).unwrap();
        assert!((p50 - 0.5).abs() < 0.01, "p50 {p50}");
    }

    #[test]
    fn measurement_off_records_nothing() {
        let cell = Cell::new(key(), 1, false);
        cell.record(ok(5));
        assert_eq!(cell.window(1, 10).requests, 0);
    }
}
