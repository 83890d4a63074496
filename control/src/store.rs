//! Rollout status on disk: one JSON file per Rollout in the state folder, written
//! atomically (write a temporary file, fsync, rename, fsync the folder), so that a kill
//! at any moment leaves either the old status or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::RolloutStatus;

/// The state folder.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created when missing).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every status saved, by Rollout name. Unreadable files are logged and skipped.
    pub fn load_all(&self) -> BTreeMap<String, RolloutStatus> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p).map(|b| serde_json::from_slice::<RolloutStatus>(&b)) {
                Ok(Ok(st)) => {
                    out.insert(st.name.clone(), st);
                }
                Ok(Err(e)) => {
                    tracing::warn!(file = %p.display(), "cannot read the saved rollout state: {e}")
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), "cannot read the saved rollout state: {e}")
                }
            }
        }
        out
    }

    /// Saves `st` atomically.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, st: &RolloutStatus) -> std::io::Result<()> {
        let path = self.path(&st.name);
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
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Forgets a Rollout that left the configuration.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }
}
