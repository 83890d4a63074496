//! Rollout status on disk: one JSON file per Rollout in the state folder, `NAME.json`,
//! written atomically (write a temporary file, fsync, rename, fsync the folder), so that
//! a kill at any moment leaves either the old status or the new one. The status before
//! the last save is kept as `NAME.json.prev`.
//!
//! Reading at start never guesses: a `NAME.json` that cannot be read (truncated, not
//! JSON, unreadable) is never overwritten nor deleted: it stays where it is until a new
//! status is saved, and is then moved aside as `NAME.json.corrupt-<ms since the epoch>`
//! (so that a restart before that finds the same files). `NAME.json.prev` is read
//! instead. When no file of a
//! rollout can be read, what the damaged ones still show (the stable revision, the
//! revision history) is salvaged ([`Loaded::Lost`]); the controller then holds the
//! configured revision as a canary at 0% (see `engine::recover`). A rollout with no file
//! at all is a first sight.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::state::{Revision, RolloutStatus};

const CURRENT: &str = ".json";
const PREVIOUS: &str = ".json.prev";

/// The state folder.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// Files found damaged at start, moved aside before the rollout's next save.
    damaged: Arc<Mutex<BTreeSet<(String, &'static str)>>>,
}

/// What was read of one rollout at start.
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    /// The status as last saved.
    Saved(RolloutStatus),
    /// `NAME.json` could not be read; the status saved before it could.
    Previous {
        /// That status.
        status: RolloutStatus,
        /// What was wrong with `NAME.json`.
        problem: String,
    },
    /// No file could be read: what the damaged ones still show.
    Lost {
        /// The stable revision, if it could be read.
        stable: Option<Revision>,
        /// The revision history, if it could be read.
        history: Vec<Revision>,
        /// The next revision number, if it could be read.
        next_number: Option<u64>,
        /// What was wrong with the files.
        problem: String,
    },
}

/// A file's contents, or why it could not be read (None: there is no such file).
type Read = Option<Result<Vec<u8>, String>>;

impl Store {
    /// A store in `dir` (created when missing).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            damaged: Arc::default(),
        })
    }

    fn path(&self, name: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{name}{suffix}"))
    }

    /// Every rollout that has a file, by name, as described in the module's
    /// documentation.
    pub fn load_all(&self) -> BTreeMap<String, Loaded> {
        let mut names = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') {
                    continue;
                }
                if let Some(n) = file.strip_suffix(PREVIOUS).or(file.strip_suffix(CURRENT)) {
                    names.insert(n.to_owned());
                }
            }
        }
        names
            .into_iter()
            .filter_map(|n| self.load(&n).map(|l| (n, l)))
            .collect()
    }

    fn read(&self, name: &str, suffix: &str) -> Read {
        match std::fs::read(self.path(name, suffix)) {
            Ok(b) => Some(Ok(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(e.to_string())),
        }
    }

    /// One rollout's files; None when it has none.
    fn load(&self, name: &str) -> Option<Loaded> {
        let current = self.read(name, CURRENT);
        let mut problems = Vec::new();
        let mut damaged = Vec::new();
        match self.parse(name, CURRENT, current) {
            Ok(Some(st)) => return Some(Loaded::Saved(st)),
            Ok(None) => problems.push(format!("{name}{CURRENT} is missing")),
            Err((problem, bytes)) => {
                problems.push(problem);
                damaged.extend(bytes);
            }
        }
        let previous = self.read(name, PREVIOUS);
        match self.parse(name, PREVIOUS, previous) {
            Ok(Some(status)) => {
                let problem = problems.join("; ");
                tracing::error!(rollout = %name, "{problem}: the previous state saved, {name}{PREVIOUS}, is restored");
                return Some(Loaded::Previous { status, problem });
            }
            Ok(None) => {
                if damaged.is_empty() {
                    return None;
                }
            }
            Err((problem, bytes)) => {
                problems.push(problem);
                damaged.extend(bytes);
            }
        }
        let problem = problems.join("; ");
        let stable: Option<Revision> = damaged.iter().find_map(|b| salvage(b, "stable"));
        tracing::error!(
            rollout = %name,
            "{problem}: no saved state of the rollout can be read; {}",
            match &stable {
                Some(r) => format!("its stable revision, {} ({}), is recovered from the damaged file", r.number, r.image),
                None => "not even its stable revision".to_owned(),
            }
        );
        Some(Loaded::Lost {
            stable,
            history: damaged
                .iter()
                .find_map(|b| salvage(b, "history"))
                .unwrap_or_default(),
            next_number: damaged.iter().find_map(|b| salvage(b, "nextNumber")),
            problem,
        })
    }

    /// The status in `NAME<suffix>`: None when there is no such file; when it cannot be
    /// read, why, and what it held (the file is moved aside at the next save).
    #[allow(clippy::type_complexity)]
    fn parse(
        &self,
        name: &str,
        suffix: &'static str,
        read: Read,
    ) -> Result<Option<RolloutStatus>, (String, Option<Vec<u8>>)> {
        let why = match read {
            None => return Ok(None),
            Some(Ok(bytes)) => match serde_json::from_slice::<RolloutStatus>(&bytes) {
                Ok(st) => return Ok(Some(st)),
                Err(e) => (
                    format!("{name}{suffix} is damaged ({} bytes: {e})", bytes.len()),
                    Some(bytes),
                ),
            },
            Some(Err(e)) => (format!("{name}{suffix} cannot be read: {e}"), None),
        };
        tracing::error!(rollout = %name, "{}: it is kept, and will be moved aside as {name}{suffix}.corrupt-<time> when the rollout's state is next saved", why.0);
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((name.to_owned(), suffix));
        Err(why)
    }

    /// Moves the damaged files of rollout `name` aside.
    fn move_aside(&self, name: &str) -> std::io::Result<()> {
        let mut damaged = self.damaged.lock().unwrap_or_else(|e| e.into_inner());
        let files: Vec<(String, &'static str)> =
            damaged.iter().filter(|(n, _)| n == name).cloned().collect();
        for (n, suffix) in files {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let from = self.path(&n, suffix);
            let mut aside = self.path(&n, &format!("{suffix}.corrupt-{now}"));
            for k in 1.. {
                if !aside.exists() {
                    break;
                }
                aside = self.path(&n, &format!("{suffix}.corrupt-{now}.{k}"));
            }
            match std::fs::rename(&from, &aside) {
                Ok(()) => {
                    tracing::warn!(rollout = %n, "the damaged {} is kept as {}", from.display(), aside.display());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            damaged.remove(&(n, suffix));
        }
        Ok(())
    }

    /// Saves `st` atomically; the status saved before becomes `NAME.json.prev`. A state
    /// folder that was removed is made again.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, st: &RolloutStatus) -> std::io::Result<()> {
        match self.write(st) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)?;
                self.write(st)
            }
            other => other,
        }
    }

    fn write(&self, st: &RolloutStatus) -> std::io::Result<()> {
        let path = self.path(&st.name, CURRENT);
        let tmp = self.dir.join(format!(".{}.json.tmp", st.name));
        let bytes = serde_json::to_vec(st).map_err(std::io::Error::other)?;
        {
            // Owner-only: resolved analysis metrics may hold secretKeyRef values.
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        // Written: the damaged files it replaces go aside, never overwritten.
        self.move_aside(&st.name)?;
        // The last good state stays, as NAME.json.prev: a second name for the file (a
        // copy where links are not supported) renamed over it, so that NAME.json itself
        // is never missing: only the one rename below replaces it, and a kill at any
        // moment leaves the old status or the new one.
        let prev_tmp = self.dir.join(format!(".{}.json.prev.tmp", st.name));
        match std::fs::remove_file(&prev_tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let kept = match std::fs::hard_link(&path, &prev_tmp) {
            Ok(()) => true,
            // No current status (or it was damaged and moved aside): the previous one stays.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => {
                std::fs::copy(&path, &prev_tmp)?;
                true
            }
        };
        if kept {
            std::fs::rename(&prev_tmp, self.path(&st.name, PREVIOUS))?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// The value of the first `"key":` of a (damaged) status, if it can be read whole: the
/// fields are written in order, so a file cut short still holds the first ones.
fn salvage<T: DeserializeOwned>(bytes: &[u8], key: &str) -> Option<T> {
    let needle = format!("\"{key}\":");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?;
    let rest = &bytes[at + needle.len()..];
    serde_json::Deserializer::from_slice(rest)
        .into_iter::<Option<T>>()
        .next()?
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(n: u64) -> Revision {
        Revision {
            number: n,
            hash: format!("h{n}"),
            image: format!("app:v{n}"),
            template: serde_json::json!({"spec": {}}),
            created_at: 1,
        }
    }

    #[test]
    fn saves_keep_the_previous_state_and_damage_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut st = RolloutStatus::new("app");
        st.stable = Some(rev(1));
        st.history = vec![rev(1)];
        st.next_number = 2;
        store.save(&st).unwrap();
        assert!(!dir.path().join("app.json.prev").exists());
        st.current = Some(rev(2));
        store.save(&st).unwrap();
        let prev: RolloutStatus =
            serde_json::from_slice(&std::fs::read(dir.path().join("app.json.prev")).unwrap())
                .unwrap();
        assert_eq!(prev.current, None, "the state before the last save");
        assert_eq!(
            store.load_all()["app"],
            Loaded::Saved(st.clone()),
            "the last save"
        );

        // NAME.json cut short: the previous state, and the damaged file kept aside.
        let whole = std::fs::read(dir.path().join("app.json")).unwrap();
        std::fs::write(dir.path().join("app.json"), &whole[..whole.len() / 2]).unwrap();
        let Loaded::Previous { status, problem } = &store.load_all()["app"] else {
            panic!("the previous state")
        };
        assert_eq!(status, &prev);
        assert!(problem.contains("app.json is damaged"), "{problem}");
        assert!(
            dir.path().join("app.json").exists(),
            "kept in place until the next save"
        );
        assert!(matches!(&store.load_all()["app"], Loaded::Previous { .. }));
        // Saving moves it aside, and does not overwrite the previous state with it.
        store.save(&st).unwrap();
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("app.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap(),
            &whole[..whole.len() / 2]
        );
        let kept: RolloutStatus =
            serde_json::from_slice(&std::fs::read(dir.path().join("app.json.prev")).unwrap())
                .unwrap();
        assert_eq!(kept, prev);
        assert_eq!(store.load_all()["app"], Loaded::Saved(st.clone()));

        // Both damaged: what can be salvaged.
        std::fs::write(dir.path().join("app.json"), &whole[..whole.len() - 3]).unwrap();
        std::fs::write(dir.path().join("app.json.prev"), b"{").unwrap();
        let Loaded::Lost {
            stable,
            history,
            next_number,
            problem,
        } = &store.load_all()["app"]
        else {
            panic!("lost")
        };
        assert_eq!(stable.as_ref(), Some(&rev(1)));
        assert_eq!(history, &vec![rev(1)]);
        assert_eq!(*next_number, Some(2));
        assert!(problem.contains("app.json.prev is damaged"), "{problem}");
        // Until a new state is saved, a restart finds the same.
        assert!(matches!(&store.load_all()["app"], Loaded::Lost { .. }));
        store.save(&st).unwrap();
        assert_eq!(store.load_all()["app"], Loaded::Saved(st.clone()));
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .count();
        assert_eq!(aside, 3, "every damaged file is kept");
    }

    #[test]
    fn a_removed_folder_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        store.save(&RolloutStatus::new("app")).unwrap();
        assert!(state.join("app.json").exists());
        // A file where the folder was cannot be written to.
        std::fs::remove_dir_all(&state).unwrap();
        std::fs::write(&state, b"").unwrap();
        assert!(store.save(&RolloutStatus::new("app")).is_err());
    }
}
