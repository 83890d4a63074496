//! Hot reload: watch the configuration's files, and on a change run the whole pipeline
//! again. A good model is published on a `watch` channel; a bad one is logged with every
//! issue, counted, and dropped, so the last good model keeps serving.
//!
//! A new model that removes every Rollout, every listener or every route at once, or an
//! empty one, is suspect: an editor may be half-way through writing the file. It is held
//! back and counted as a failed reload, and applied only when a later reload finds
//! exactly the same content again (two suspect loads in a row with one fingerprint are
//! taken as meant).
//!
//! Editors save by writing a temporary file and renaming it over the old one, which
//! replaces the inode a watch on the file itself would follow. So we watch the folders
//! (the config folder recursively, or a config file's parent and each certificate's parent)
//! and filter events by path. notify's callback runs on its own thread; it only forwards
//! events into tokio through a channel and never blocks.
//!
//! A load of a large configuration takes long enough (a second for 10,000 HTTPRoutes when
//! nothing is known yet) to stall the requests queued behind it on a runtime worker, so
//! the watcher loads on tokio's blocking pool, with a [`Loader`] that parses and decodes
//! only the documents whose text changed since the last load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Issue;
use crate::load::Loader;
use crate::model::Model;

/// Quiet time after the last file event before reloading: editors write in bursts. A
/// save by rename is one burst of events microseconds apart; a load that catches a file
/// half-written fails (or is held back as suspect) and the write's next event loads again.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Reload outcomes, for metrics and the admin API.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that produced a new model.
    pub successes: AtomicU64,
    /// Reloads refused because the configuration did not validate.
    pub failures: AtomicU64,
    /// The issues of the last refused reload (empty after a good one).
    pub last_issues: Mutex<Vec<Issue>>,
}

impl ReloadStats {
    /// Whether the last reload (if any) succeeded.
    pub fn last_ok(&self) -> bool {
        self.last_issues
            .lock()
            .map(|v| v.is_empty())
            .unwrap_or(true)
    }
}

/// Watches the configuration at `path` and publishes each good model on `tx`.
pub struct ConfigWatcher {
    path: PathBuf,
    tx: watch::Sender<Arc<Model>>,
    stats: Arc<ReloadStats>,
    trigger: Arc<Notify>,
    /// The fingerprint of the suspect model last held back, if the last reload was one.
    suspect: Mutex<Option<u64>>,
    /// Keeps what each load parsed and decoded for the next.
    loader: Loader,
}

/// Why `new` is suspect next to `current`: the parts it has none of that `current` has.
/// `None` when nothing was removed wholesale.
fn suspect_reason(current: &Model, new: &Model) -> Option<String> {
    let parts = |m: &Model| {
        [
            ("listeners", m.proxy.listeners.len()),
            ("routes", m.proxy.routes.len()),
            ("rollouts", m.argo.rollouts.len()),
            ("services", m.services.len()),
        ]
    };
    let (cur, new_parts) = (parts(current), parts(new));
    if new_parts.iter().all(|(_, n)| *n == 0) && cur.iter().any(|(_, n)| *n > 0) {
        return Some("is empty".to_owned());
    }
    let gone: Vec<&str> = cur
        .iter()
        .zip(&new_parts)
        .take(3)
        .filter(|((_, c), (_, n))| *c > 0 && *n == 0)
        .map(|((what, _), _)| *what)
        .collect();
    match gone.as_slice() {
        [] => None,
        [one] => Some(format!("has no {one}")),
        [init @ .., last] => Some(format!("has no {} and no {last}", init.join(", no "))),
    }
}

impl ConfigWatcher {
    /// A watcher for `path` that publishes on `tx` (which holds the current model).
    pub fn new(path: PathBuf, tx: watch::Sender<Arc<Model>>, stats: Arc<ReloadStats>) -> Self {
        ConfigWatcher {
            path,
            tx,
            stats,
            trigger: Arc::new(Notify::new()),
            suspect: Mutex::new(None),
            loader: Loader::new(),
        }
    }

    /// The same watcher, loading with `loader` (one that has loaded this configuration
    /// already knows its documents; otherwise the watcher's first load warms it).
    pub fn with_loader(mut self, loader: Loader) -> Self {
        self.loader = loader;
        self
    }

    /// A handle that forces a reload (SIGHUP, tests).
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }

    /// Runs until `shutdown` is cancelled.
    ///
    /// # Errors
    /// When the file watcher cannot be created at all.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), notify::Error> {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(move |ev| {
            // Never blocks: the receiver is unbounded and dropping on shutdown is fine.
            let _ = ev_tx.send(ev);
        })?;
        let is_dir = self.path.is_dir();
        let root = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut watched: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
        let mut relevant = self.relevant_files(&root);
        self.rewatch(&mut watcher, &mut watched, &root, is_dir, &relevant);
        if !self.loader.has_loaded() {
            // Warm the loader in the background, so that the first reload is as quick as
            // the next ones. What it loads is not published: the check below does that.
            let (loader, path) = (self.loader.clone(), self.path.clone());
            let _ = tokio::task::spawn_blocking(move || drop(loader.load(&path))).await;
        }
        // A change made between the first load and the watch going in place would
        // otherwise go unseen.
        if self.changed_since_load_async().await && self.reload_async().await {
            relevant = self.relevant_files(&root);
            self.rewatch(&mut watcher, &mut watched, &root, is_dir, &relevant);
        }

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.trigger.notified() => {}
                ev = ev_rx.recv() => {
                    let Some(ev) = ev else { return Ok(()) };
                    if !self.matters(&ev, &root, is_dir, &relevant) {
                        continue;
                    }
                    // Debounce: wait for a quiet moment, dropping the burst.
                    while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, ev_rx.recv()).await {}
                    // New files in a watched folder change the file list, so only skip
                    // when it is a single file whose contents did not change.
                    if !is_dir && !self.changed_since_load_async().await && self.stats.last_ok() {
                        continue;
                    }
                }
            }
            if self.reload_async().await {
                relevant = self.relevant_files(&root);
                self.rewatch(&mut watcher, &mut watched, &root, is_dir, &relevant);
            }
        }
    }

    /// Loads the configuration again, on the calling thread; true when a new model was
    /// published.
    ///
    /// A suspect model (see the module's documentation) is held back and counted as a
    /// failure, unless the reload before this one held back the same content.
    pub fn reload(&self) -> bool {
        let loaded = self.loader.load(&self.path);
        self.publish(loaded)
    }

    /// As [`Self::reload`], loading on tokio's blocking pool so that no runtime worker
    /// waits for the load.
    pub async fn reload_async(&self) -> bool {
        let (loader, path) = (self.loader.clone(), self.path.clone());
        let loaded = match tokio::task::spawn_blocking(move || loader.load(&path)).await {
            Ok(loaded) => loaded,
            // The load panicked: as though it had panicked here.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.publish(loaded)
    }

    /// Publishes a loaded model, or reports why there is none; true when published.
    fn publish(&self, loaded: Result<Model, crate::ConfigError>) -> bool {
        let mut suspect = self.suspect.lock().unwrap_or_else(|e| e.into_inner());
        let held = suspect.take();
        let loaded = match loaded {
            Ok(model) => match suspect_reason(&self.tx.borrow(), &model) {
                Some(_) if held == Some(model.fingerprint) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        "the same configuration was written again: applying it"
                    );
                    Ok(model)
                }
                Some(why) => {
                    *suspect = Some(model.fingerprint);
                    Err(crate::ConfigError::Invalid(vec![Issue {
                        file: Arc::from(self.path.as_path()),
                        pos: crate::error::Pos::default(),
                        field: String::new(),
                        message: format!(
                            "the new configuration {why}; an editor may be half-way through writing it: kept the last good one; write it again to apply"
                        ),
                    }]))
                }
                None => Ok(model),
            },
            Err(e) => Err(e),
        };
        drop(suspect);
        match loaded {
            Ok(model) => {
                // A warning is logged once: at start, or by the reload that brings it.
                let before: std::collections::HashSet<(Arc<std::path::Path>, String)> = self
                    .tx
                    .borrow()
                    .notices
                    .iter()
                    .filter(|n| n.warning)
                    .map(|n| (n.file.clone(), n.message.clone()))
                    .collect();
                for n in &model.notices {
                    if n.warning && !before.contains(&(n.file.clone(), n.message.clone())) {
                        tracing::warn!("{n}");
                    } else {
                        tracing::debug!(notice = %n, "config notice");
                    }
                }
                self.stats.successes.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.stats.last_issues.lock() {
                    last.clear();
                }
                tracing::info!(path = %self.path.display(), "configuration reloaded");
                drop_model(self.tx.send_replace(Arc::new(model)));
                true
            }
            Err(e) => {
                let issues = e.issues();
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "configuration change refused; the last good configuration keeps serving\n{e}"
                );
                if let Ok(mut last) = self.stats.last_issues.lock() {
                    *last = issues;
                }
                false
            }
        }
    }

    /// Whether a file the model was loaded from changed since (read and hashed on the
    /// blocking pool).
    async fn changed_since_load_async(&self) -> bool {
        let (files, loaded) = {
            let model = self.tx.borrow();
            (model.files.clone(), model.fingerprint)
        };
        match tokio::task::spawn_blocking(move || crate::load::fingerprint(&files)).await {
            Ok(now) => now != loaded,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn relevant_files(&self, root: &Path) -> BTreeSet<PathBuf> {
        let model = self.tx.borrow();
        let mut set: BTreeSet<PathBuf> = model
            .files
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        set.insert(root.to_path_buf());
        set
    }

    fn rewatch(
        &self,
        watcher: &mut notify::RecommendedWatcher,
        watched: &mut BTreeSet<(PathBuf, bool)>,
        root: &Path,
        is_dir: bool,
        relevant: &BTreeSet<PathBuf>,
    ) {
        let mut want: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
        if is_dir {
            want.insert((root.to_path_buf(), true));
        }
        for f in relevant {
            if is_dir && f.starts_with(root) {
                continue;
            }
            if let Some(parent) = f.parent() {
                if f == root && is_dir {
                    continue;
                }
                want.insert((parent.to_path_buf(), false));
            }
        }
        for (dir, rec) in watched.difference(&want) {
            let _ = watcher.unwatch(dir);
            tracing::debug!(dir = %dir.display(), recursive = rec, "unwatched");
        }
        for (dir, rec) in want.difference(watched) {
            let mode = if *rec {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(dir, mode) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "watching"),
                Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
            }
        }
        *watched = want;
    }

    fn matters(
        &self,
        ev: &notify::Result<notify::Event>,
        root: &Path,
        is_dir: bool,
        relevant: &BTreeSet<PathBuf>,
    ) -> bool {
        let Ok(ev) = ev else { return true };
        if matches!(ev.kind, EventKind::Access(_)) {
            return false;
        }
        ev.paths.iter().any(|p| {
            relevant.contains(p)
                || (is_dir
                    && p.starts_with(root)
                    && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        })
    }
}

/// Drops a model (or anything holding one) on tokio's blocking pool when there is a
/// runtime: freeing a model of 10,000 routes takes tens of milliseconds.
pub fn drop_model<T: Send + 'static>(v: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(v))),
        Err(_) => drop(v),
    }
}
