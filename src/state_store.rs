//! Where an export's state is kept: a local file (`state.rs`, locked with
//! `flock`) or an object in a bucket, for runs that have no disk of their
//! own (Kubernetes CronJobs, a fleet of cron hosts).
//!
//! In a bucket there is no `flock`. Mutual exclusion is a lock object
//! beside the state (`STATE.lock`), created only if absent and holding its
//! owner, host, PID and an expiry; a run renews it while it works, and a
//! run that finds it expired (a killed pod) takes it over with a
//! conditional overwrite, so of two runs that find the same expired lock
//! only one gets it. The state itself is replaced only if it is still the
//! version this run read: even two runs that both believe they hold the
//! lock (one paused past its expiry) cannot both commit.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};
use crate::state::{self, State, StateFile};
use crate::store::{Place, Version, Written};

/// How long a lock holds without renewal (10 minutes, or
/// `CHATDUMP_STATE_LEASE`); a run renews it every third of that while it
/// works.
fn lease_length() -> Duration {
    std::env::var("CHATDUMP_STATE_LEASE")
        .ok()
        .and_then(|text| crate::window::parse_duration(&text).ok())
        .filter(|d| *d >= Duration::seconds(1))
        .unwrap_or(Duration::minutes(10))
}

/// The most read of a lock object and of a state object: a lease is a
/// few hundred bytes, a state at most some megabytes of keys; an object
/// planted bigger is refused, not read into memory.
const MOST_LOCK_BYTES: usize = 64 * 1024;
const MOST_STATE_BYTES: usize = 512 << 20;

/// A lock or state object too big to be chatdump's: a configuration
/// problem (something else is at that key), not the platform's data.
fn not_ours(e: Error) -> Error {
    if e.kind == Kind::Data {
        Error::config(e.to_string()).with_hint(
            "something other than chatdump's state is at that key: choose another, or remove it",
        )
    } else {
        e
    }
}

/// Where a handed state's saves go.
pub type EmitState = Box<dyn FnMut(&State) -> Result<()>>;

/// An export's state, wherever it is kept.
pub enum StateStore {
    Local(StateFile),
    Object(ObjectState),
    /// A state in a bucket read for a dry run: no lock taken, nothing
    /// written.
    Peeked {
        url: String,
        state: Option<State>,
    },
    /// A state kept by whoever runs chatdump (a Singer runner keeps the
    /// last STATE message a tap emitted): read from what it gave, and
    /// handed to `emit` at each save, after the chunk's records.
    Handed {
        shown: String,
        state: Option<State>,
        emit: EmitState,
    },
}

/// A state as `chatdump status` sees it: what was last saved, how the
/// last run ended, and who holds its lock, read without taking it.
pub struct Inspected {
    pub shown: String,
    pub state: Option<State>,
    pub last_run: Option<state::RunRecord>,
    /// A run holding the lock: who, and whether its lease ran out (an
    /// object lock of a run that was killed).
    pub lock: Option<(String, bool)>,
}

/// Reads the state at `location` for `chatdump status`, locking nothing.
pub async fn inspect(location: &str) -> Result<Inspected> {
    match crate::store::locate(location)? {
        crate::store::Location::Local(path) => {
            let (state, holder) = state::peek(&path)?;
            Ok(Inspected {
                shown: path.display().to_string(),
                state,
                last_run: read_run_file(&state::with_suffix(&path, ".run")),
                lock: holder.map(|pid| (format!("process {pid} on this host"), false)),
            })
        }
        crate::store::Location::Object(place) => {
            let state = match place.get(MOST_STATE_BYTES).await.map_err(not_ours)? {
                Some((bytes, _)) => {
                    Some(state::parse(&String::from_utf8_lossy(&bytes), &place.url)?)
                }
                None => None,
            };
            let lock = match place.with_suffix(".lock").get(MOST_LOCK_BYTES).await {
                Ok(Some((bytes, _))) => serde_json::from_slice::<Lease>(&bytes)
                    .ok()
                    .map(|lease| (lease.holder(), lease.expires_at < Utc::now())),
                _ => None,
            };
            Ok(Inspected {
                last_run: read_run_object(&place.with_suffix(".run")).await,
                shown: place.url,
                state,
                lock,
            })
        }
    }
}

/// A run record kept beside a local state; None when there is none or it
/// does not read (it only informs).
fn read_run_file(path: &std::path::Path) -> Option<state::RunRecord> {
    let bytes = crate::safefs::read_small(path, MOST_LOCK_BYTES).ok()??;
    serde_json::from_slice(&bytes).ok()
}

async fn read_run_object(place: &Place) -> Option<state::RunRecord> {
    let (bytes, _) = place.get(MOST_LOCK_BYTES).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Makes the output move a local state's previous run saved and did not
/// make, so its file and its checkpoint never part.
fn finish_move(mut file: StateFile) -> Result<StateFile> {
    if let Some(p) = file.unfinished_move() {
        if std::fs::symlink_metadata(&p.temp).is_ok_and(|m| m.is_file()) {
            crate::output::publish(&p.temp, &p.target)?;
            crate::log::info(&format!(
                "finished moving {} into place (the previous run stopped before it)",
                p.target.display()
            ));
        }
    }
    Ok(file)
}

impl StateStore {
    /// Opens and locks the state at `location` (a path, `file://PATH`, or
    /// an object URL).
    /// `read_only` (a dry run): a state in a bucket is read, not locked.
    pub async fn open(
        location: &std::path::Path,
        source: &str,
        kind: &str,
        records: &str,
        read_only: bool,
    ) -> Result<Self> {
        match location.to_str().map(crate::store::locate).transpose()? {
            Some(crate::store::Location::Object(place)) if read_only => {
                let state = read_state(&place, source, kind, records).await?;
                Ok(StateStore::Peeked {
                    url: place.url,
                    state: state.map(|(state, _)| state),
                })
            }
            Some(crate::store::Location::Object(place)) => Ok(StateStore::Object(
                ObjectState::open(place, source, kind, records).await?,
            )),
            Some(crate::store::Location::Local(path)) => Ok(StateStore::Local(finish_move(
                StateFile::open(&path, source, kind, records)?,
            )?)),
            // Not UTF-8: a local path, as it is.
            None => Ok(StateStore::Local(finish_move(StateFile::open(
                location, source, kind, records,
            )?)?)),
        }
    }

    /// A state handed in by whoever runs chatdump: `state` (if any) is
    /// checked like a file's, and each save goes to `emit`.
    pub fn handed(
        shown: &str,
        state: Option<State>,
        (source, kind, records): (&str, &str, &str),
        emit: EmitState,
    ) -> Result<Self> {
        if let Some(s) = &state {
            state::validate_fields(s, shown, source, kind, records)?;
        }
        Ok(StateStore::Handed {
            shown: shown.to_string(),
            state,
            emit,
        })
    }

    pub fn state(&self) -> Option<&State> {
        match self {
            StateStore::Local(f) => f.state.as_ref(),
            StateStore::Object(o) => o.state.as_ref(),
            StateStore::Peeked { state, .. } | StateStore::Handed { state, .. } => state.as_ref(),
        }
    }

    /// How the user named it.
    pub fn shown(&self) -> String {
        match self {
            StateStore::Local(f) => f.given().display().to_string(),
            StateStore::Object(o) => o.place.url.clone(),
            StateStore::Peeked { url, .. } => url.clone(),
            StateStore::Handed { shown, .. } => shown.clone(),
        }
    }

    pub fn local(&self) -> Option<&StateFile> {
        match self {
            StateStore::Local(f) => Some(f),
            _ => None,
        }
    }

    pub async fn save(&mut self, next: State) -> Result<()> {
        match self {
            StateStore::Local(f) => f.save(next),
            StateStore::Object(o) => o.save(next).await,
            StateStore::Peeked { url, .. } => Err(Error::usage(format!(
                "state {url} was read for a dry run and is not written"
            ))),
            StateStore::Handed { state, emit, .. } => {
                emit(&next)?;
                *state = Some(next);
                Ok(())
            }
        }
    }

    /// How the last run that held this state's lock ended (`STATE.run`).
    pub async fn last_run(&self) -> Option<state::RunRecord> {
        match self {
            StateStore::Local(f) => read_run_file(&state::with_suffix(f.path(), ".run")),
            StateStore::Object(o) => read_run_object(&o.place.with_suffix(".run")).await,
            StateStore::Peeked { .. } | StateStore::Handed { .. } => None,
        }
    }

    /// Keeps how this run ended beside the state (`STATE.run`), replacing
    /// the last one; the state itself is not touched. Only a run holding
    /// the lock writes it; a dry run or a handed state writes nothing.
    pub async fn record_run(&self, run: &state::RunRecord) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(run).expect("a run record serializes");
        text.push(b'\n');
        match self {
            StateStore::Local(f) => {
                let path = state::with_suffix(f.path(), ".run");
                crate::safefs::replace_whole(&path, &text, None)
                    .map_err(|e| Error::output(format!("cannot write {}", path.display()), e))
            }
            StateStore::Object(o) => {
                let place = o.place.with_suffix(".run");
                let version = place.get(MOST_LOCK_BYTES).await?.map(|(_, v)| v);
                // Another run that took the lock over may have written it
                // meanwhile: its record stands.
                place.put_if(text, version).await.map(|_| ())
            }
            StateStore::Peeked { .. } | StateStore::Handed { .. } => Ok(()),
        }
    }

    /// Lets the next run in (a local lock goes with the process).
    pub async fn release(self) {
        if let StateStore::Object(o) = self {
            o.release().await;
        }
    }
}

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    owner: String,
    host: String,
    pid: u32,
    acquired_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Lease {
    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a lease serializes")
    }

    fn holder(&self) -> String {
        format!(
            "{} (process {} on {}, lock held until {})",
            crate::log::escape_controls(&self.owner, false),
            self.pid,
            crate::log::escape_controls(&self.host, false),
            self.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// The lock this run holds: its lease and the lock object's version, kept
/// current by the renewal task.
struct Held {
    lease: Lease,
    version: Version,
    /// Set when a renewal found the lock taken over.
    lost: bool,
}

/// A state kept as an object, with its lock object.
pub struct ObjectState {
    place: Place,
    lock: Place,
    held: Arc<Mutex<Held>>,
    renewal: tokio::task::JoinHandle<()>,
    /// The version of the state object as read or last written; None when
    /// there was none.
    version: Option<Version>,
    pub state: Option<State>,
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown host".into())
}

impl ObjectState {
    async fn open(place: Place, source: &str, kind: &str, records: &str) -> Result<ObjectState> {
        let lock = place.with_suffix(".lock");
        let now = Utc::now();
        let host = host();
        let lease = Lease {
            owner: format!(
                "{host}:{}:{}",
                std::process::id(),
                now.timestamp_nanos_opt().unwrap_or(0)
            ),
            host,
            pid: std::process::id(),
            acquired_at: now,
            expires_at: now + lease_length(),
        };
        let version = Self::acquire(&lock, &lease).await?;
        let held = Arc::new(Mutex::new(Held {
            lease,
            version,
            lost: false,
        }));
        let renewal = tokio::spawn(renew_while_running(lock.clone(), held.clone()));
        let mut opened = ObjectState {
            place,
            lock,
            held,
            renewal,
            version: None,
            state: None,
        };
        match opened.read(source, kind, records).await {
            Ok(()) => Ok(opened),
            Err(e) => {
                // A state this run cannot use: the next run must not wait
                // for this one's lock to expire.
                opened.release().await;
                Err(e)
            }
        }
    }

    /// Reads and checks the state object, if there is one.
    async fn read(&mut self, source: &str, kind: &str, records: &str) -> Result<()> {
        if let Some((state, version)) = read_state(&self.place, source, kind, records).await? {
            self.version = Some(version);
            self.state = Some(state);
        }
        Ok(())
    }

    /// Creates the lock object, or takes over an expired one.
    async fn acquire(lock: &Place, lease: &Lease) -> Result<Version> {
        let locked = |why: String| {
            Error::new(Kind::Locked, why).with_hint(
                "another run of this export is still going; this one stops without doing anything",
            )
        };
        if let Written::Done(version) = lock.put_if(lease.bytes(), None).await? {
            return Ok(version);
        }
        let Some((bytes, version)) = lock.get(MOST_LOCK_BYTES).await.map_err(not_ours)? else {
            return Err(locked(format!(
                "the lock {} changed while this run took it; another run is starting",
                lock.url
            )));
        };
        let held: Lease = serde_json::from_slice(&bytes).map_err(|e| {
            Error::config(format!("lock {} is not chatdump's: {e}", lock.url))
                .with_hint("if no run is going, delete the lock object")
        })?;
        if held.expires_at > Utc::now() {
            return Err(locked(format!(
                "state {} is in use by {}",
                lock.url.trim_end_matches(".lock"),
                held.holder()
            )));
        }
        match lock.put_if(lease.bytes(), Some(version)).await? {
            Written::Done(version) => {
                crate::log::warn(&format!(
                    "took over the expired lock {} of {} (a run that stopped without releasing it)",
                    lock.url,
                    held.holder()
                ));
                Ok(version)
            }
            Written::Conflict => Err(locked(format!(
                "the expired lock {} was taken over by another run first",
                lock.url
            ))),
        }
    }

    /// Replaces the state object, only if it is still the version this run
    /// read (or created it, if there was none), and only while this run
    /// still holds the lock.
    async fn save(&mut self, next: State) -> Result<()> {
        let lost = self.held.lock().map(|h| h.lost).unwrap_or(true);
        if lost {
            return Err(Error::new(
                Kind::Locked,
                format!(
                    "lost the lock {} to another run (this one could not renew it in time); nothing more is committed",
                    self.lock.url
                ),
            ));
        }
        let mut text = serde_json::to_vec_pretty(&next).expect("state serializes");
        text.push(b'\n');
        match self.place.put_if(text, self.version.clone()).await? {
            Written::Done(version) => {
                self.version = Some(version);
                self.state = Some(next);
                Ok(())
            }
            Written::Conflict => Err(Error::new(
                Kind::Locked,
                format!(
                    "state {} changed since this run read it: another run committed to it; this one commits nothing more",
                    self.place.url
                ),
            )
            .with_hint("two runs worked on one state at once (a lock taken over while its run was still going); the next run resumes from the state as it is")),
        }
    }

    /// Stops renewing and removes the lock, if it is still this run's.
    /// (Between reading it and removing it, another run could take it over
    /// only if it had expired, that is, if this run had stopped renewing
    /// for a whole lease: its own saves would already have failed.)
    async fn release(self) {
        self.renewal.abort();
        let ours = self.held.lock().map(|h| h.lease.owner.clone()).ok();
        if let Ok(Some((bytes, _))) = self.lock.get(MOST_LOCK_BYTES).await {
            let owner = serde_json::from_slice::<Lease>(&bytes)
                .ok()
                .map(|l| l.owner);
            if owner.is_some() && owner == ours {
                let _ = self.lock.delete().await;
            }
        }
    }

    /// Whether the state's lock is this run's (for `check` and tests).
    pub fn place(&self) -> &Place {
        &self.place
    }
}

/// The state object at `place` and its version, checked, if there is one.
async fn read_state(
    place: &Place,
    source: &str,
    kind: &str,
    records: &str,
) -> Result<Option<(State, Version)>> {
    let Some((bytes, version)) = place.get(MOST_STATE_BYTES).await.map_err(not_ours)? else {
        return Ok(None);
    };
    let url = &place.url;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("state {url} is corrupt: not UTF-8")))?;
    let state = state::parse(&text, url)?;
    state::validate_fields(&state, url, source, kind, records)?;
    if state.pending.is_some() {
        return Err(Error::config(format!(
            "state {url}: it names a pending local rename, which a state kept in a bucket never has"
        )));
    }
    Ok(Some((state, version)))
}

/// Extends the lease every third of its length while the run goes on; a
/// renewal that finds the lock taken over marks it lost, and the next
/// save refuses to commit.
async fn renew_while_running(lock: Place, held: Arc<Mutex<Held>>) {
    let length = lease_length();
    let every = (length / 3)
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(200));
    loop {
        tokio::time::sleep(every).await;
        let Some((mut lease, version)) = held
            .lock()
            .ok()
            .map(|h| (h.lease.clone(), h.version.clone()))
        else {
            return;
        };
        lease.expires_at = Utc::now() + length;
        match lock.put_if(lease.bytes(), Some(version)).await {
            Ok(Written::Done(version)) => {
                if let Ok(mut h) = held.lock() {
                    h.lease = lease;
                    h.version = version;
                }
            }
            Ok(Written::Conflict) => {
                if let Ok(mut h) = held.lock() {
                    h.lost = true;
                }
                return;
            }
            // A failed renewal is tried again; the lease has time left.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PendingRename;

    #[test]
    fn a_pending_rename_is_finished_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let (temp, target) = (
            dir.path().join(".out.jsonl.tmp-1"),
            dir.path().join("out.jsonl"),
        );
        std::fs::write(&temp, "{}\n").unwrap();
        let mut s = State::first(
            "hanoi",
            "caresoft",
            "messages",
            "2024-03-08T00:00:00Z".parse().unwrap(),
        );
        s.pending = Some(PendingRename {
            temp: temp.clone(),
            target: target.clone(),
        });
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let f =
            finish_move(StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap()).unwrap();
        assert!(target.exists() && !temp.exists(), "rolled forward");
        drop(f);
        drop(
            finish_move(StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap()).unwrap(),
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "{}\n",
            "a second open has nothing to do"
        );
    }
}
