//! The checkpoint of incremental runs (`--state FILE`, SPEC section 6).
//!
//! The state holds the end of the last window whose records are durably
//! written, the de-duplication keys of the records in the overlap the next
//! run will fetch again (so nothing is emitted twice), and a short ledger of
//! recent windows. It is small, versioned, human-readable JSON, written
//! atomically (temporary file, fsync, rename) and only after the output it
//! describes is in place. A lock held for the whole run keeps a second run
//! out; the operating system releases it when a process dies, so a killed
//! run leaves no stale lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};

pub const VERSION: u32 = 1;
/// Ledger entries kept; older ones are dropped.
const LEDGER_LEN: usize = 50;

/// What the file holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub source: String,
    pub kind: String,
    pub records: String,
    /// Everything before this instant is durably written.
    pub checkpoint: DateTime<Utc>,
    /// De-duplication keys (32 hex digits) of records a later run may be
    /// sent again, grouped by the end of the window that last saw them.
    #[serde(default)]
    pub recent: Vec<RecentKeys>,
    #[serde(default)]
    pub ledger: Vec<LedgerEntry>,
    /// An output file written and synced under a temporary name, to be
    /// moved into place right after this state was saved. A run that finds
    /// it still there finishes the move, so file and checkpoint never part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingRename>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingRename {
    pub temp: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecentKeys {
    pub seen_until: DateTime<Utc>,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerEntry {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub finished_at: DateTime<Utc>,
}

impl State {
    /// The remembered keys, oldest window first.
    pub fn keys(&self) -> Result<Vec<(DateTime<Utc>, Vec<u128>)>> {
        self.recent
            .iter()
            .map(|r| {
                let keys = r
                    .keys
                    .iter()
                    .map(|k| {
                        u128::from_str_radix(k, 16)
                            .map_err(|_| Error::config(format!("bad key {k:?}")))
                    })
                    .collect::<Result<Vec<u128>>>()?;
                Ok((r.seen_until, keys))
            })
            .collect()
    }

    pub fn set_keys(&mut self, recent: Vec<(DateTime<Utc>, Vec<u128>)>) {
        self.recent = recent
            .into_iter()
            .map(|(seen_until, keys)| {
                let mut keys: Vec<String> = keys.into_iter().map(|k| format!("{k:032x}")).collect();
                keys.sort_unstable();
                RecentKeys { seen_until, keys }
            })
            .collect();
    }

    pub fn record(&mut self, entry: LedgerEntry) {
        self.checkpoint = entry.to;
        self.ledger.push(entry);
        if self.ledger.len() > LEDGER_LEN {
            let extra = self.ledger.len() - LEDGER_LEN;
            self.ledger.drain(..extra);
        }
    }
}

/// An open, locked state file.
pub struct StateFile {
    path: PathBuf,
    /// Held for the whole run; closing it releases the lock.
    _lock: File,
    pub state: Option<State>,
}

impl StateFile {
    /// Locks `path` (through `PATH.lock`) and reads it if it exists.
    pub fn open(path: &Path, source: &str, kind: &str, records: &str) -> Result<StateFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::output(format!("cannot create directory {}", dir.display()), e)
            })?;
        }
        let lock_path = with_suffix(path, ".lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::output(format!("cannot open lock {}", lock_path.display()), e))?;
        if lock.try_lock().is_err() {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(Error::new(
                Kind::Locked,
                format!("state {} is in use by {who}", path.display()),
            )
            .with_hint(
                "another run of this export is still going; this one stops without doing anything",
            ));
        }
        // Tell a blocked run who holds the lock.
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = write!(lock, "{}", std::process::id());
        let _ = lock.flush();
        let mut state = read(path)?;
        if let Some(p) = state.as_mut().and_then(|s| s.pending.take()) {
            // The previous run saved this checkpoint and died before moving
            // its file into place: finish the move.
            if p.temp.exists() {
                crate::output::publish(&p.temp, &p.target)?;
                crate::log::info(&format!(
                    "finished moving {} into place (the previous run stopped before it)",
                    p.target.display()
                ));
            }
        }
        if let Some(s) = &state {
            if s.source != source || s.records != records || s.kind != kind {
                return Err(Error::config(format!(
                    "state {} belongs to source {:?} ({}, {}), not {source:?} ({kind}, {records})",
                    path.display(),
                    s.source,
                    s.kind,
                    s.records
                ))
                .with_hint("use one state file per source and record type"));
            }
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            _lock: lock,
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `state` atomically: a reader sees the old file or the new one.
    pub fn save(&mut self, state: State) -> Result<()> {
        let temp = with_suffix(&self.path, &format!(".tmp-{}", std::process::id()));
        let fail = |e| Error::output(format!("cannot write state {}", self.path.display()), e);
        let mut text = serde_json::to_string_pretty(&state).expect("state serializes");
        text.push('\n');
        let result = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(fail)?;
        self.state = Some(state);
        Ok(())
    }
}

fn read(path: &Path) -> Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::output(
                format!("cannot read state {}", path.display()),
                e,
            ))
        }
    };
    let corrupt = |what: String| {
        Error::config(format!("state {} is corrupt: {what}", path.display())).with_hint(
            "chatdump never restarts from zero on its own: fix the file, or move it away to start a fresh export",
        )
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) if v > u64::from(VERSION) => {
            return Err(Error::config(format!(
                "state {} has version {v}, newer than this chatdump understands ({VERSION})",
                path.display()
            ))
            .with_hint("run the newer chatdump that wrote it"))
        }
        _ => return Err(corrupt("missing or unknown `version`".into())),
    }
    let state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    state.keys().map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(state))
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            version: VERSION,
            source: "hanoi".into(),
            kind: "caresoft".into(),
            records: "messages".into(),
            checkpoint: "2024-03-08T00:00:00Z".parse().unwrap(),
            recent: Vec::new(),
            ledger: Vec::new(),
            pending: None,
        }
    }

    #[test]
    fn round_trip_and_bounded_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/hanoi.state");
        let mut f = StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap();
        assert!(f.state.is_none());
        let mut s = sample();
        let t0: DateTime<Utc> = "2024-03-08T00:00:00Z".parse().unwrap();
        s.set_keys(vec![(t0, vec![u128::MAX, 1u128])]);
        for i in 0..80 {
            let t: DateTime<Utc> = "2024-03-08T00:00:00Z".parse().unwrap();
            s.record(LedgerEntry {
                from: t,
                to: t + chrono::Duration::hours(i),
                records: 1,
                output: None,
                finished_at: t,
            });
        }
        assert_eq!(s.ledger.len(), LEDGER_LEN);
        f.save(s.clone()).unwrap();
        drop(f);
        let f = StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap();
        let back = f.state.clone().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.keys().unwrap(), vec![(t0, vec![1, u128::MAX])]);
        assert_eq!(
            back.checkpoint,
            "2024-03-11T07:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn a_pending_rename_is_finished_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let (temp, target) = (dir.path().join(".out.tmp-1"), dir.path().join("out.jsonl"));
        std::fs::write(&temp, "{}\n").unwrap();
        let mut s = sample();
        s.pending = Some(PendingRename {
            temp: temp.clone(),
            target: target.clone(),
        });
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let f = StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap();
        assert!(target.exists() && !temp.exists(), "rolled forward");
        assert!(f.state.as_ref().unwrap().pending.is_none());
        drop(f);
        drop(StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "{}\n",
            "a second open has nothing to do"
        );
    }

    #[test]
    fn a_second_open_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let _held = StateFile::open(&path, "a", "caresoft", "messages").unwrap();
        let e = StateFile::open(&path, "a", "caresoft", "messages")
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 75);
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
    }

    #[test]
    fn corrupt_future_and_foreign_states_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        std::fs::write(&path, "{not json").unwrap();
        let e = StateFile::open(&path, "a", "caresoft", "messages")
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 78);
        assert!(e.to_string().contains("corrupt"));
        let mut future = serde_json::to_value(sample()).unwrap();
        future["version"] = 99.into();
        std::fs::write(&path, future.to_string()).unwrap();
        let e = StateFile::open(&path, "hanoi", "caresoft", "messages")
            .err()
            .unwrap();
        assert!(e.to_string().contains("version 99"), "{e}");
        std::fs::write(&path, serde_json::to_string(&sample()).unwrap()).unwrap();
        let e = StateFile::open(&path, "hanoi", "caresoft", "conversations")
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 78);
        assert!(StateFile::open(&path, "hanoi", "caresoft", "messages").is_ok());
    }
}
