//! The checkpoint of incremental runs (`--state FILE`; the README's "Incremental runs").
//!
//! The state holds the end of the last window whose records are durably
//! written, the de-duplication keys of the records in the overlap the next
//! run will fetch again (so nothing is emitted twice), and a short ledger of
//! recent windows. It is small, versioned, human-readable JSON, written
//! atomically (temporary file, fsync, rename) and only after the output it
//! describes is in place. A lock held for the whole run keeps a second run
//! out; the operating system releases it when a process dies, so a killed
//! run leaves no stale lock.
//!
//! A state file is input chatdump did not necessarily write: it is
//! validated whole (version, owner, checkpoint, the pending rename) before
//! anything in it is acted on. The lock is taken on the state's resolved
//! path, so two spellings of one state exclude each other.
//!
//! Version 2 keys are SHA-256 based and stable across toolchains. Version 1
//! keys came from the standard library's `DefaultHasher`, which is stable
//! only within one release: a version-1 state is read, its keys are matched
//! through that hasher for the one run that needs them (`legacy_keys`), and
//! it is saved as version 2.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};

pub const VERSION: u32 = 2;
/// A checkpoint may be this far ahead of the clock (hosts sharing a state
/// disagree a little); further is an error, not years of "nothing new".
const CLOCK_SLACK_MINUTES: i64 = 5;
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
    /// Records whose data was not there yet (a chat's transcript): read
    /// again by the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<Awaiting>,
    /// Conversations still open at the checkpoint: the next run continues
    /// their `seq` and enriches their messages as this one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chats: Vec<OpenChat>,
    /// Read from a version-1 file: `recent` holds `DefaultHasher` keys.
    #[serde(skip)]
    pub legacy_keys: bool,
}

/// How a run ended: what `chatdump status` shows and metrics report. It is
/// kept beside the state (`STATE.run`), not in it: a failed run records
/// itself there and leaves the state byte for byte as it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub finished_at: DateTime<Utc>,
    /// `ok` or `failed`.
    pub outcome: String,
    pub exit_code: i32,
    /// The error's first line, when it failed (secrets are masked in
    /// errors already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub records: u64,
    pub rejected: u64,
    /// Attachments asked for that could not be had (a record written by
    /// an earlier version has none).
    #[serde(default)]
    pub attachments_missing: u64,
    pub requests: u64,
    pub retries: u64,
    pub duration_s: f64,
    /// When a run last ended well (this one, or an earlier one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
}

/// A platform element to read again: since when it waits, why, and the
/// element itself (its JSON as the platform sent it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Awaiting {
    pub since: DateTime<Utc>,
    pub reason: String,
    pub raw: String,
}

/// Elements a state may keep waiting, and the size of one: bounds on what
/// a planted state can make a run do. A run keeps its list within them
/// before saving ([`bound_awaiting`]), so what one run saves the next
/// accepts.
pub const MOST_AWAITING: usize = 100_000;
pub const MOST_AWAITING_BYTES: usize = 1 << 20;

/// Keeps `awaiting` within what a state may hold: an element (or reason)
/// over [`MOST_AWAITING_BYTES`] is not kept, and past [`MOST_AWAITING`]
/// the oldest are not. Returns those given up on, each with why, to be
/// reported.
pub fn bound_awaiting(awaiting: &mut Vec<Awaiting>) -> Vec<(Awaiting, String)> {
    let mut given_up = Vec::new();
    let (kept, too_large): (Vec<Awaiting>, Vec<Awaiting>) = std::mem::take(awaiting)
        .into_iter()
        .partition(|a| a.raw.len() <= MOST_AWAITING_BYTES && a.reason.len() <= MOST_AWAITING_BYTES);
    given_up.extend(too_large.into_iter().map(|a| {
        (
            a,
            format!("given up: over {MOST_AWAITING_BYTES} bytes, too large to keep in the state"),
        )
    }));
    *awaiting = kept;
    if awaiting.len() > MOST_AWAITING {
        // Oldest first out; stable, so equal times keep their order.
        awaiting.sort_by_key(|a| a.since);
        let excess = awaiting.len() - MOST_AWAITING;
        given_up.extend(awaiting.drain(..excess).map(|a| {
            (
                a,
                format!("given up: the state keeps at most {MOST_AWAITING} records to read again, the oldest go first"),
            )
        }));
    }
    given_up
}

/// A conversation open at the checkpoint: the `seq` of its next message,
/// when it was last seen, and what a listing of conversations said of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenChat {
    pub id: String,
    pub next_seq: u32,
    /// The key (32 hex digits) of its message numbered last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    pub seen_until: DateTime<Utc>,
    /// Its earliest message seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ChatDetails>,
}

/// The values a conversation's listing gives its messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_phone: Option<String>,
}

/// Open conversations a state keeps, and the size of one id or value: a
/// run keeps within them when it saves ([`ChatDetails::of`] and
/// `Chats::to_state`), and a state beyond them is refused.
pub const MOST_OPEN_CHATS: usize = 100_000;
pub const MOST_CHAT_VALUE_BYTES: usize = 4096;

impl ChatDetails {
    /// What `c` gives its messages; a value too large to keep is left out.
    pub fn of(c: &crate::model::Conversation) -> ChatDetails {
        let keep = |v: &Option<String>| v.clone().filter(|v| v.len() <= MOST_CHAT_VALUE_BYTES);
        ChatDetails {
            channel: keep(&c.channel),
            agent_id: keep(&c.agent_id),
            agent_name: keep(&c.agent_name),
            customer_id: keep(&c.customer_id),
            customer_name: keep(&c.customer_name),
            customer_phone: keep(&c.customer_phone),
        }
    }

    pub fn to_conversation(&self, id: &str) -> crate::model::Conversation {
        crate::model::Conversation {
            conversation_id: id.to_string(),
            channel: self.channel.clone(),
            agent_id: self.agent_id.clone(),
            agent_name: self.agent_name.clone(),
            customer_id: self.customer_id.clone(),
            customer_name: self.customer_name.clone(),
            customer_phone: self.customer_phone.clone(),
            ..Default::default()
        }
    }

    fn values(&self) -> [&Option<String>; 6] {
        [
            &self.channel,
            &self.agent_id,
            &self.agent_name,
            &self.customer_id,
            &self.customer_name,
            &self.customer_phone,
        ]
    }
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
    /// A state for the first run of `source`: nothing exported yet.
    pub fn first(source: &str, kind: &str, records: &str, checkpoint: DateTime<Utc>) -> State {
        State {
            version: VERSION,
            source: source.to_string(),
            kind: kind.to_string(),
            records: records.to_string(),
            checkpoint,
            recent: Vec::new(),
            ledger: Vec::new(),
            pending: None,
            awaiting: Vec::new(),
            chats: Vec::new(),
            legacy_keys: false,
        }
    }

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
    /// The resolved path every operation uses.
    path: PathBuf,
    /// The path as the user gave it, for messages.
    given: PathBuf,
    /// Held for the whole run; closing it releases the lock.
    _lock: File,
    /// A validated pending rename the previous run left unfinished.
    unfinished: Option<PendingRename>,
    pub state: Option<State>,
}

impl StateFile {
    /// The output move the previous run saved in this state and did not
    /// make (validated: a `.NAME.tmp-PID` file beside its own target); the
    /// caller makes it before the run writes anything.
    pub fn unfinished_move(&mut self) -> Option<PendingRename> {
        self.unfinished.take()
    }

    /// Locks `path` (through `PATH.lock`) and reads it if it exists.
    pub fn open(path: &Path, source: &str, kind: &str, records: &str) -> Result<StateFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::output(format!("cannot create directory {}", dir.display()), e)
            })?;
        }
        // One lock per file, however it is spelled: a symlinked directory
        // or `./a/../a/x.state` must not let two runs in.
        let given = path.to_path_buf();
        let path = &crate::safefs::resolve_dir(path);
        // Through a link, the lock and the temporaries would be made
        // beside its target, in a directory nobody named here.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::output(
                format!("cannot use state {}", given.display()),
                std::io::Error::other("it is a symbolic link; chatdump keeps a state, its lock and its temporaries in the directory named, so it takes no link there"),
            )
            .with_hint("give --state the path of the file itself"));
        }
        let lock_path = with_suffix(path, ".lock");
        let mut lock = crate::safefs::open_lock(&lock_path)
            .map_err(|e| Error::output(format!("cannot open lock {}", lock_path.display()), e))?;
        if lock.try_lock().is_err() {
            let mut holder = String::new();
            let _ = (&lock).take(64).read_to_string(&mut holder);
            let holder = crate::log::escape_controls(holder.trim(), false);
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
        crate::safefs::remove_stale_temps(path);
        let mut state = read(path)?;
        if let Some(s) = &state {
            validate(s, path, source, kind, records)?;
        }
        // The previous run saved this checkpoint and died before moving its
        // file into place: the move is the opener's to finish (see
        // `StateFile::unfinished_move`), before anything else is written.
        let unfinished = state.as_mut().and_then(|s| s.pending.take());
        Ok(StateFile {
            unfinished,
            path: path.to_path_buf(),
            given,
            _lock: lock,
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as the user spelled it.
    pub fn given(&self) -> &Path {
        &self.given
    }

    /// Writes `state` atomically: a reader sees the old file or the new one.
    pub fn save(&mut self, state: State) -> Result<()> {
        let mut text = serde_json::to_string_pretty(&state).expect("state serializes");
        text.push('\n');
        crate::safefs::replace_whole(&self.path, text.as_bytes(), None)
            .map_err(|e| Error::output(format!("cannot write state {}", self.path.display()), e))?;
        crate::output::sync_parent(&self.path);
        self.state = Some(state);
        Ok(())
    }
}

/// Reads the state at `path` without locking it (for `chatdump status`):
/// what was last saved, and the process holding its lock, if a run is
/// under way.
pub fn peek(path: &Path) -> Result<(Option<State>, Option<u32>)> {
    let state = read(path)?;
    let holder = crate::safefs::flock_holder(&with_suffix(path, ".lock"));
    Ok((state, holder))
}

fn read(path: &Path) -> Result<Option<State>> {
    let text = match crate::safefs::read_regular(path) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(Error::output(
                format!("cannot read state {}", path.display()),
                e,
            ))
        }
    };
    parse(&text, &path.display().to_string()).map(Some)
}

/// Reads a state's text (`shown` names it in messages).
pub fn parse(text: &str, shown: &str) -> Result<State> {
    let corrupt = |what: String| {
        Error::config(format!("state {shown} is corrupt: {what}")).with_hint(
            "chatdump never restarts from zero on its own: fix the file, or move it away to start a fresh export",
        )
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(VERSION) || v == 1 => {}
        Some(v) if v > u64::from(VERSION) => {
            return Err(Error::config(format!(
                "state {shown} has version {v}, newer than this chatdump understands ({VERSION})"
            ))
            .with_hint("run the newer chatdump that wrote it"))
        }
        _ => return Err(corrupt("missing or unknown `version`".into())),
    }
    let mut state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    state.keys().map_err(|e| corrupt(e.to_string()))?;
    if version == Some(1) {
        state.version = VERSION;
        state.legacy_keys = true;
    }
    Ok(state)
}

/// Checks everything a run will act on, before it acts on any of it.
fn validate(s: &State, path: &Path, source: &str, kind: &str, records: &str) -> Result<()> {
    validate_fields(s, &path.display().to_string(), source, kind, records)?;
    validate_pending(s, path)
}

/// What every state must be, wherever it is kept (`shown` names it).
pub fn validate_fields(
    s: &State,
    shown: &str,
    source: &str,
    kind: &str,
    records: &str,
) -> Result<()> {
    let corrupt = |what: String| {
        Error::config(format!("state {shown}: {what}")).with_hint(
            "chatdump acts on nothing in a state it cannot trust: fix the file, or move it away to start a fresh export",
        )
    };
    if s.source != source || s.records != records || s.kind != kind {
        return Err(Error::config(format!(
            "state {shown} belongs to source {:?} ({}, {}), not {source:?} ({kind}, {records})",
            crate::log::escape_controls(&s.source, false),
            crate::log::escape_controls(&s.kind, false),
            crate::log::escape_controls(&s.records, false),
        ))
        .with_hint("use one state file per source and record type"));
    }
    let now = Utc::now();
    if s.awaiting.len() > MOST_AWAITING
        || s.awaiting
            .iter()
            .any(|a| a.raw.len() > MOST_AWAITING_BYTES || a.reason.len() > MOST_AWAITING_BYTES)
    {
        return Err(corrupt(format!(
            "it keeps more than {MOST_AWAITING} records to read again, or one over {MOST_AWAITING_BYTES} bytes"
        )));
    }
    if s.chats.len() > MOST_OPEN_CHATS
        || s.chats.iter().any(|c| {
            c.id.len() > MOST_CHAT_VALUE_BYTES
                || c.anchor
                    .as_ref()
                    .is_some_and(|k| k.len() != 32 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
                || c.details.as_ref().is_some_and(|d| {
                    d.values()
                        .iter()
                        .any(|v| v.as_ref().is_some_and(|v| v.len() > MOST_CHAT_VALUE_BYTES))
                })
        })
    {
        return Err(corrupt(format!(
            "it keeps more than {MOST_OPEN_CHATS} open conversations, or a value over {MOST_CHAT_VALUE_BYTES} bytes"
        )));
    }
    if s.checkpoint.timestamp() < 0 {
        return Err(corrupt(format!(
            "checkpoint {} is before 1970",
            s.checkpoint.format("%Y-%m-%dT%H:%M:%SZ")
        )));
    }
    if s.checkpoint > now + chrono::Duration::minutes(CLOCK_SLACK_MINUTES) {
        return Err(Error::config(format!(
            "state {shown}: checkpoint {} is in the future (now {}): every run would find nothing new",
            s.checkpoint.format("%Y-%m-%dT%H:%M:%SZ"),
            now.format("%Y-%m-%dT%H:%M:%SZ")
        ))
        .with_hint(
            "check this machine's clock; if the state came from a machine whose clock ran ahead, set `checkpoint` back to the last window really exported",
        ));
    }
    Ok(())
}

/// A local state's pending rename: only ever chatdump's own.
fn validate_pending(s: &State, path: &Path) -> Result<()> {
    let corrupt = |what: String| {
        Error::config(format!("state {}: {what}", path.display())).with_hint(
            "chatdump acts on nothing in a state it cannot trust: fix the file, or move it away to start a fresh export",
        )
    };
    if let Some(p) = &s.pending {
        // Only ever a `.NAME.tmp-PID` beside its own target, and the target
        // never one of this state's own files.
        let own = [
            path.to_path_buf(),
            with_suffix(path, ".lock"),
            with_suffix(path, ".rejects.jsonl"),
        ];
        let target_name_plain = p.target.file_name().is_some_and(|n| n != ".." && n != ".");
        if !target_name_plain
            || !crate::safefs::is_temp_of(&p.temp, &p.target)
            || own.iter().any(|f| crate::safefs::resolve(&p.target) == *f)
        {
            return Err(corrupt(format!(
                "its pending rename {} -> {} is not chatdump's own (a `.NAME.tmp-PID` file beside its target)",
                p.temp.display(),
                p.target.display()
            )));
        }
        if std::fs::symlink_metadata(&p.temp).is_ok_and(|m| !m.is_file()) {
            return Err(corrupt(format!(
                "its pending file {} is not a regular file",
                p.temp.display()
            )));
        }
    }
    Ok(())
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

    /// A planted state's open conversations are checked before anything
    /// in them is used: an anchor that is not 32 hex digits, a value over
    /// its bound or too many of them is a corrupt state (78).
    #[test]
    fn open_conversations_of_a_planted_state_are_checked() {
        let chat = |id: &str, anchor: Option<&str>| OpenChat {
            id: id.into(),
            next_seq: 3,
            anchor: anchor.map(str::to_string),
            seen_until: "2024-03-07T00:00:00Z".parse().unwrap(),
            started_at: None,
            details: None,
        };
        let check = |chats: Vec<OpenChat>| {
            let mut s = sample();
            s.chats = chats;
            validate_fields(&s, "s", "hanoi", "caresoft", "messages")
        };
        assert!(check(vec![chat("a", Some(&"0f".repeat(16)))]).is_ok());
        for bad in [
            vec![chat("a", Some("zz"))],
            vec![chat("a", Some(&"g".repeat(32)))],
            vec![chat(&"x".repeat(MOST_CHAT_VALUE_BYTES + 1), None)],
            (0..=MOST_OPEN_CHATS)
                .map(|n| chat(&n.to_string(), None))
                .collect(),
        ] {
            assert_eq!(check(bad).unwrap_err().exit_code(), 78);
        }
        let mut long = chat("a", None);
        long.details = Some(ChatDetails {
            customer_name: Some("n".repeat(MOST_CHAT_VALUE_BYTES + 1)),
            ..Default::default()
        });
        assert_eq!(check(vec![long]).unwrap_err().exit_code(), 78);
    }

    #[test]
    fn awaiting_is_kept_within_what_a_state_accepts() {
        let at = |n: i64| Awaiting {
            since: chrono::DateTime::from_timestamp(1_700_000_000 + n, 0).unwrap(),
            reason: "transcript not there yet".into(),
            raw: format!("{{\"id\":{n}}}"),
        };
        let mut awaiting: Vec<Awaiting> = (0..MOST_AWAITING as i64 + 2).rev().map(at).collect();
        let mut large = at(-1);
        large.raw = "x".repeat(MOST_AWAITING_BYTES + 1);
        awaiting.push(large);
        let given_up = bound_awaiting(&mut awaiting);
        let raws: Vec<&str> = given_up.iter().map(|(a, _)| a.raw.as_str()).collect();
        assert_eq!(raws.len(), 3);
        assert_eq!(raws[0].len(), MOST_AWAITING_BYTES + 1, "the one too large");
        assert_eq!(
            &raws[1..],
            [r#"{"id":0}"#, r#"{"id":1}"#],
            "then the oldest"
        );
        assert_eq!(awaiting.len(), MOST_AWAITING);
        let mut state = sample();
        state.awaiting = awaiting;
        validate_fields(&state, "s", "hanoi", "caresoft", "messages").expect("accepted as saved");
    }

    fn sample() -> State {
        State::first(
            "hanoi",
            "caresoft",
            "messages",
            "2024-03-08T00:00:00Z".parse().unwrap(),
        )
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
    fn a_pending_rename_is_handed_to_the_next_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let (temp, target) = (
            dir.path().join(".out.jsonl.tmp-1"),
            dir.path().join("out.jsonl"),
        );
        std::fs::write(&temp, "{}\n").unwrap();
        let mut s = sample();
        s.pending = Some(PendingRename {
            temp: temp.clone(),
            target: target.clone(),
        });
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let mut f = StateFile::open(&path, "hanoi", "caresoft", "messages").unwrap();
        assert_eq!(
            f.unfinished_move(),
            Some(PendingRename {
                temp: temp.clone(),
                target: target.clone()
            }),
            "handed to the opener, which makes the move"
        );
        assert!(f.state.as_ref().unwrap().pending.is_none());
        assert_eq!(f.unfinished_move(), None, "once");
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

    /// A state whose `pending` names other files: refused whole (78), and
    /// nothing is moved, whatever it names.
    #[test]
    fn a_planted_pending_rename_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "keep me").unwrap();
        let planted = [
            (secret.clone(), dir.path().join("stolen")),
            (
                dir.path().join(".stolen.tmp-1"),
                dir.path().join("sub/stolen"),
            ),
            (dir.path().join("..tmp-1"), dir.path().join("..")),
            (dir.path().join(".x.state.tmp-7"), path.clone()),
            (
                dir.path().join(".x.state.lock.tmp-7"),
                with_suffix(&path, ".lock"),
            ),
        ];
        for (temp, target) in planted {
            if temp != secret {
                std::fs::write(&temp, "{}").unwrap();
            }
            let mut s = sample();
            s.pending = Some(PendingRename {
                temp: temp.clone(),
                target: target.clone(),
            });
            std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
            let e = StateFile::open(&path, "hanoi", "caresoft", "messages")
                .err()
                .unwrap_or_else(|| panic!("accepted {temp:?} -> {target:?}"));
            assert_eq!(e.exit_code(), 78, "{e}");
            assert!(temp.exists(), "{temp:?} was moved");
        }
        // A foreign state is refused before its pending rename is touched.
        let temp = dir.path().join(".out.jsonl.tmp-1");
        std::fs::write(&temp, "{}").unwrap();
        let mut s = sample();
        s.source = "other".into();
        s.pending = Some(PendingRename {
            temp: temp.clone(),
            target: dir.path().join("out.jsonl"),
        });
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(
            StateFile::open(&path, "hanoi", "caresoft", "messages")
                .err()
                .unwrap()
                .exit_code(),
            78
        );
        assert!(temp.exists() && !dir.path().join("out.jsonl").exists());
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "keep me");
    }

    #[test]
    fn a_checkpoint_in_the_future_or_before_1970_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        for checkpoint in [
            Utc::now() + chrono::Duration::days(400),
            "1900-01-01T00:00:00Z".parse().unwrap(),
            DateTime::<Utc>::MIN_UTC,
        ] {
            let mut s = sample();
            s.checkpoint = checkpoint;
            std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
            let e = StateFile::open(&path, "hanoi", "caresoft", "messages")
                .err()
                .unwrap();
            assert_eq!(e.exit_code(), 78, "{checkpoint}: {e}");
        }
        let mut s = sample();
        s.checkpoint = Utc::now() + chrono::Duration::days(400);
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let e = StateFile::open(&path, "hanoi", "caresoft", "messages")
            .err()
            .unwrap();
        assert!(e.to_string().contains("in the future"), "{e}");
        assert!(e.hint().unwrap().contains("clock"), "{e:?}");
    }

    /// The file the version-1 release wrote (fixtures/state): read, its
    /// keys marked as the old digest, saved back as version 2.
    #[test]
    fn a_version_1_state_is_read_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.state");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/state/v1-caresoft-conversations.state"),
            &path,
        )
        .unwrap();
        let mut f = StateFile::open(&path, "hanoi", "caresoft", "conversations").unwrap();
        let s = f.state.clone().unwrap();
        assert!(s.legacy_keys);
        assert_eq!(s.version, VERSION);
        assert_eq!(s.keys().unwrap()[0].1.len(), 12);
        f.save(s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn two_spellings_of_one_state_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let _held = StateFile::open(
            &dir.path().join("real/x.state"),
            "a",
            "caresoft",
            "messages",
        )
        .unwrap();
        let e = StateFile::open(
            &dir.path().join("link/x.state"),
            "a",
            "caresoft",
            "messages",
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 75);
    }
}
