//! The proxy's own measurements: the base of all canary analysis.
//!
//! One [`Cell`] per (service, role, revision). Recording is on the hot path, so each cell
//! is split into per-thread shards (a worker thread always writes the same shard, behind a
//! short uncontended `Mutex`: no `.await` while locked). Once a second the [`Stats::tick`]
//! task folds every shard's current second into the cell's ring of one-second slots
//! (ten minutes of history), off the hot path. A window of any length is the sum of its
//! slots plus the second in progress.

mod cell;
mod window;

pub use cell::Totals;
pub use cell::{Cell, CellKey, Outcome, Role};
pub use window::{
    LATENCY_BUCKETS, SecondCounts, StatusClasses, Tally, WindowSample, WindowSummary,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds of history each cell keeps.
pub const HISTORY_SECONDS: usize = 600;

/// The registry of cells.
#[derive(Debug)]
pub struct Stats {
    cells: Mutex<HashMap<CellKey, Arc<Cell>>>,
    shards: usize,
    measure: bool,
}

impl Stats {
    /// A registry whose cells have one shard per worker thread (rounded up to a power of
    /// two). With `measure` false, cells count nothing (the benchmark's "measurement off").
    pub fn new(worker_threads: usize, measure: bool) -> Self {
        Stats {
            cells: Mutex::new(HashMap::new()),
            shards: worker_threads.max(1).next_power_of_two(),
            measure,
        }
    }

    /// The cell for `key`, created on first use. Cells live as long as the registry, so
    /// counters never go backwards for Prometheus and windows survive reloads.
    pub fn cell(&self, key: CellKey) -> Arc<Cell> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Cell::new(key, self.shards, self.measure)))
            .clone()
    }

    /// An existing cell.
    pub fn get(&self, key: &CellKey) -> Option<Arc<Cell>> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.get(key).cloned()
    }

    /// Every cell, in a stable order.
    pub fn cells(&self) -> Vec<Arc<Cell>> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = cells.values().cloned().collect();
        v.sort_by(|a, b| a.key().cmp(b.key()));
        v
    }

    /// Closes the second `epoch_second - 1` in every cell; call once a second.
    pub fn tick(&self, epoch_second: u64) {
        for cell in self.cells() {
            cell.rotate(epoch_second);
        }
    }
}
