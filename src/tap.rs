//! `chatdump tap`: chatdump as a Singer tap, so Meltano (or any Singer
//! runner) can schedule it and pipe it into any Singer target.
//!
//! The Singer specification's three messages on stdout, one JSON object a
//! line: SCHEMA (a stream's JSON Schema, before its first record), RECORD
//! (one record, in the shape `export` writes) and STATE (where a next run
//! goes on from). The runner keeps the last STATE it read and hands it
//! back with `--state`. chatdump's STATE is its own checkpoint (the same
//! JSON a `--state` file holds, one per stream under `bookmarks`), emitted
//! after each committed window and never before the window's records, so a
//! run started with it has the same guarantees as `export --state`.
//!
//! The Singer configuration is a JSON object: the keys of one
//! `[sources.NAME]` table (`kind` and the platform's keys), `start_date`
//! and an optional `end_date`, and the tap's own `name`, `redact`,
//! `redact_agents`, `redact_key` (or `redact_key_env`) and `include_raw`.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{json, Map, Value};

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::export::{Options, RedactOptions, WindowArgs};
use crate::model::RecordKind;
use crate::output::Format;
use crate::redact::{Mode as RedactMode, Redactor};
use crate::state_store::{EmitState, StateStore};

/// What `chatdump tap` was asked.
pub struct TapArgs {
    /// The Singer configuration (JSON).
    pub config: PathBuf,
    /// The last STATE message's value, from the previous run.
    pub state: Option<PathBuf>,
    /// The catalog whose selected streams are synced (default: all).
    pub catalog: Option<PathBuf>,
    /// Print the catalog instead of syncing.
    pub discover: bool,
}

/// The streams, in the order they are synced.
const STREAMS: [RecordKind; 2] = [RecordKind::Conversations, RecordKind::Messages];

/// The largest Singer file read (configuration, state, catalog): a state
/// holds the keys of the last windows, some megabytes at most.
const MOST_FILE_BYTES: usize = 512 << 20;

/// The tap's configuration, read from the Singer JSON.
struct TapConfig {
    config: Config,
    name: String,
    window: WindowArgs,
    redact: Option<RedactOptions>,
    redact_key: Option<Secret>,
    include_raw: bool,
}

/// `chatdump tap`.
pub async fn tap(args: &TapArgs) -> Result<()> {
    let tap = read_config(&args.config)?;
    let table = tap.config.source(&tap.name)?;
    let platform = crate::source::registry::platform_of(&table)?;
    let phones = table.phone_regions(platform.home)?;
    let source = (platform.build)(&table)?;
    let supported: Vec<RecordKind> = STREAMS
        .into_iter()
        .filter(|kind| source.records_supported(*kind).is_ok())
        .collect();
    if args.discover {
        let catalog = catalog(&supported, tap.include_raw);
        return print_line(&serde_json::to_string_pretty(&catalog).expect("JSON"));
    }
    let selected = match &args.catalog {
        Some(path) => selected_streams(&read_json(path, "catalog")?, &supported)?,
        None => supported,
    };
    let redactor = match tap.redact {
        Some(redact) => Some(redactor(redact, tap.redact_key.as_ref())?.with_phone_regions(phones)),
        None => None,
    };
    let given = match &args.state {
        Some(path) => read_json(path, "state")?,
        None => json!({}),
    };
    let attachments = match table.string("attachments")? {
        Some(dest) if tap.redact.is_none() => {
            Some(crate::attach::Settings::of(dest, Some(&table))?)
        }
        _ => None,
    };
    let bookmarks = Rc::new(RefCell::new(bookmarks_of(&given)?));
    let mut rejected = 0;
    for kind in selected {
        print_line(
            &json!({
                "type": "SCHEMA",
                "stream": kind.as_str(),
                "schema": stream_schema(kind, tap.include_raw),
                "key_properties": key_properties(kind),
                "bookmark_properties": [replication_key(kind)],
            })
            .to_string(),
        )?;
        let shown = format!("the Singer state's bookmark for {}", kind.as_str());
        let saved = match bookmarks.borrow().get(kind.as_str()) {
            Some(value) => Some(crate::state::parse(&value.to_string(), &shown)?),
            None => None,
        };
        let state = StateStore::handed(
            &shown,
            saved,
            (&tap.name, source.kind().as_str(), kind.as_str()),
            emitter(kind, bookmarks.clone()),
        )?;
        let options = Options {
            records: kind,
            format: Some(Format::Singer),
            output: None,
            // A source's `attachments` key works in a tap as in `export`
            // (never under `redact`).
            attachments: attachments.as_ref().map(|a| a.dest.clone()),
            attach: attachments.clone(),
            tz: None,
            include_raw: tap.include_raw,
            csv_raw: false,
            state: None,
            chunk: None,
            redact: tap.redact,
            follow: None,
            metrics: Default::default(),
        };
        let stats = crate::export::export_with_state(
            &*source,
            &tap.name,
            &tap.window,
            &options,
            redactor.as_ref(),
            state,
        )
        .await?;
        // An attachment that could not be had counts as its record would.
        rejected += stats.rejected + stats.attachments_missing;
    }
    if rejected > 0 {
        return Err(Error::data(format!(
            "{rejected} record{} could not be read or fetched (the others were emitted)",
            if rejected == 1 { "" } else { "s" }
        ))
        .with_hint("the rejects file named above holds each raw record and the reason"));
    }
    Ok(())
}

/// Writes one message line to stdout, at once: the runner reads STATE as
/// it comes.
fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::output("stdout", e))
}

/// Saves a stream's state: its bookmark is replaced, and the whole state
/// (every stream's bookmark, and whatever else the runner kept) emitted.
fn emitter(kind: RecordKind, bookmarks: Rc<RefCell<Map<String, Value>>>) -> EmitState {
    Box::new(move |state| {
        let value = serde_json::to_value(state)
            .map_err(|e| Error::output("stdout", std::io::Error::other(e)))?;
        let mut all = bookmarks.borrow_mut();
        all.insert(kind.as_str().to_string(), value);
        print_line(&json!({"type": "STATE", "value": {"bookmarks": &*all}}).to_string())
    })
}

/// The streams' bookmarks in a state the runner handed back (`{}` when it
/// has none yet).
fn bookmarks_of(state: &Value) -> Result<Map<String, Value>> {
    match state.get("bookmarks") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(Error::config(
            "the Singer state's `bookmarks` is not an object",
        )
        .with_hint("pass the value of the last STATE message chatdump emitted, or none to start from `start_date`")),
    }
}

/// A Singer file (configuration, state, catalog): one JSON value. The
/// command line names it, like `--config` (a pipe from the shell is fine);
/// more than [`MOST_FILE_BYTES`] is refused, not read.
fn read_json(path: &Path, what: &str) -> Result<Value> {
    let cannot = |e: std::io::Error| {
        Error::config(format!(
            "cannot read the Singer {what} {}: {e}",
            path.display()
        ))
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(cannot)?,
            MOST_FILE_BYTES as u64 + 1,
        ),
        &mut bytes,
    )
    .map_err(cannot)?;
    if bytes.len() > MOST_FILE_BYTES {
        return Err(Error::config(format!(
            "the Singer {what} {} is larger than {MOST_FILE_BYTES} bytes",
            path.display()
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::config(format!(
            "the Singer {what} {} is not JSON: line {} column {}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// The Singer configuration: the source's table and the tap's own keys.
fn read_config(path: &Path) -> Result<TapConfig> {
    let Value::Object(mut keys) = read_json(path, "configuration")? else {
        return Err(Error::config(format!(
            "the Singer configuration {} is not a JSON object",
            path.display()
        )));
    };
    let bad = |key: &str, what: &str| {
        Error::config(format!(
            "the Singer configuration {}: `{key}` {what}",
            path.display()
        ))
    };
    let mut text = |key: &str| -> Result<Option<String>> {
        match keys.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(key, "must be a string")),
        }
    };
    let kind = text("kind")?.ok_or_else(|| bad("kind", "is required (the platform)"))?;
    let name = text("name")?.unwrap_or_else(|| kind.clone());
    let start_date = text("start_date")?.ok_or_else(|| {
        bad(
            "start_date",
            "is required: where the first run starts (RFC 3339 or YYYY-MM-DD)",
        )
    })?;
    let end_date = text("end_date")?;
    let redact = text("redact")?;
    let redact_key = text("redact_key")?;
    let redact_key_env = text("redact_key_env")?;
    let flag = |keys: &mut Map<String, Value>, key: &str| match keys.remove(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(bad(key, "must be true or false")),
    };
    let redact_agents = flag(&mut keys, "redact_agents")?;
    let include_raw = flag(&mut keys, "include_raw")?;
    let redact = redact
        .map(|mode| {
            let mode = match mode.as_str() {
                "hash" => RedactMode::Hash,
                "mask" => RedactMode::Mask,
                "drop" => RedactMode::Drop,
                _ => return Err(bad("redact", "must be \"hash\", \"mask\" or \"drop\"")),
            };
            Ok(RedactOptions {
                mode,
                agents: redact_agents,
            })
        })
        .transpose()?;
    let redact_key = match (redact_key, redact_key_env) {
        (Some(_), Some(_)) => {
            return Err(bad("redact_key", "and `redact_key_env` cannot both be set"))
        }
        (Some(key), None) => {
            if crate::config::readable_by_others(path) {
                crate::log::warn(&format!(
                    "a literal `redact_key` is stored in {}, which other users can read; prefer `redact_key_env`",
                    path.display()
                ));
            }
            Some(key)
        }
        (None, Some(var)) => std::env::var(&var).ok().filter(|k| !k.is_empty()),
        (None, None) => std::env::var("CHATDUMP_REDACT_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
    };
    let redact_key = redact_key
        .map(|raw| {
            crate::config::secret_text(&raw)
                .map(Secret::new)
                .map_err(|why| bad("redact_key", &format!("is a secret which {why}")))
        })
        .transpose()?;
    keys.insert("kind".into(), Value::String(kind));
    let mut table = toml::Table::new();
    for (key, value) in keys {
        if let Some(value) = toml_value(&value).map_err(|why| bad(&key, &why))? {
            table.insert(key, value);
        }
    }
    let mut sources = toml::Table::new();
    sources.insert(name.clone(), toml::Value::Table(table));
    let mut root = toml::Table::new();
    root.insert("sources".into(), toml::Value::Table(sources));
    let mut config = Config::from_table(root, path)?;
    config.readable_by_others = crate::config::readable_by_others(path);
    Ok(TapConfig {
        config,
        name,
        window: WindowArgs {
            from: Some(start_date),
            to: end_date,
            since: None,
        },
        redact,
        redact_key,
        include_raw,
    })
}

/// A JSON value of the Singer configuration as the TOML value a source
/// table holds; None for null (a key not set).
fn toml_value(value: &Value) -> std::result::Result<Option<toml::Value>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("{n} is out of range")),
        },
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .map(|item| toml_value(item)?.ok_or_else(|| "holds a null".to_string()))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut table = toml::Table::new();
            for (key, value) in map {
                if let Some(value) = toml_value(value)? {
                    table.insert(key.clone(), value);
                }
            }
            toml::Value::Table(table)
        }
    }))
}

/// The redactor the tap's `redact` keys ask for.
fn redactor(redact: RedactOptions, key: Option<&Secret>) -> Result<Redactor> {
    if redact.mode == RedactMode::Hash && key.is_none() {
        return Err(Error::config(
            "`redact` \"hash\" needs a key: set `redact_key`, or the variable `redact_key_env` names (default CHATDUMP_REDACT_KEY)",
        )
        .with_hint("keep the key: the same key gives the same pseudonyms; or use \"mask\""));
    }
    Ok(Redactor::new(
        redact.mode,
        redact.agents,
        key.map(|k| k.expose().as_bytes()),
    ))
}

fn key_properties(kind: RecordKind) -> Vec<&'static str> {
    match kind {
        RecordKind::Conversations => vec!["conversation_id"],
        RecordKind::Messages => vec!["conversation_id", "message_id"],
    }
}

/// The field a stream's records advance by: a conversation's version, a
/// message's time. chatdump's own checkpoint is what a run resumes from.
fn replication_key(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Conversations => "updated_at",
        RecordKind::Messages => "sent_at",
    }
}

/// A stream's JSON Schema as `chatdump schema` prints it, personal data
/// marked (`x-pii`), without the document keywords a stream's schema does
/// not carry.
fn stream_schema(kind: RecordKind, include_raw: bool) -> Value {
    let mut schema = crate::schema::schema(kind, include_raw);
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("$id");
    }
    schema
}

/// The catalog `--discover` prints: every stream the source can deliver.
fn catalog(streams: &[RecordKind], include_raw: bool) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|kind| {
            let schema = stream_schema(*kind, include_raw);
            let keys = key_properties(*kind);
            let mut metadata = vec![json!({
                "breadcrumb": [],
                "metadata": {
                    "inclusion": "available",
                    "selected-by-default": true,
                    "table-key-properties": keys,
                    "forced-replication-method": "INCREMENTAL",
                    "valid-replication-keys": [replication_key(*kind)],
                }
            })];
            for name in kind.columns() {
                let inclusion = if keys.contains(name) || *name == replication_key(*kind) {
                    "automatic"
                } else {
                    "available"
                };
                metadata.push(json!({
                    "breadcrumb": ["properties", name],
                    "metadata": {"inclusion": inclusion},
                }));
            }
            json!({
                "tap_stream_id": kind.as_str(),
                "stream": kind.as_str(),
                "schema": schema,
                "key_properties": keys,
                "replication_key": replication_key(*kind),
                "replication_method": "INCREMENTAL",
                "metadata": metadata,
            })
        })
        .collect();
    json!({ "streams": streams })
}

/// The streams a catalog selects (its top-level metadata `selected`, or
/// the older `selected` in the schema), among those the source delivers.
fn selected_streams(catalog: &Value, supported: &[RecordKind]) -> Result<Vec<RecordKind>> {
    let streams = catalog
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::config("the Singer catalog has no `streams` list"))?;
    let mut selected = Vec::new();
    for stream in streams {
        let id = stream
            .get("tap_stream_id")
            .or_else(|| stream.get("stream"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let top = stream
            .get("metadata")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries.iter().find(|e| {
                    e.get("breadcrumb")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                })
            })
            .and_then(|e| e.get("metadata"));
        let chosen = top
            .and_then(|m| m.get("selected"))
            .or_else(|| stream.get("schema").and_then(|s| s.get("selected")))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !chosen {
            continue;
        }
        match supported.iter().find(|k| k.as_str() == id) {
            Some(kind) => selected.push(*kind),
            None => {
                return Err(Error::usage(format!(
                    "the catalog selects stream {id:?}, which this source does not deliver"
                ))
                .with_hint("run `chatdump tap --config CONFIG --discover` for its streams"))
            }
        }
    }
    // Synced in the tap's order, whatever the catalog's.
    Ok(STREAMS
        .into_iter()
        .filter(|k| selected.contains(k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_selection_follows_the_metadata() {
        let all = [RecordKind::Conversations, RecordKind::Messages];
        let mut catalog = catalog(&all, false);
        assert_eq!(selected_streams(&catalog, &all).unwrap(), []);
        catalog["streams"][1]["metadata"][0]["metadata"]["selected"] = json!(true);
        assert_eq!(
            selected_streams(&catalog, &all).unwrap(),
            [RecordKind::Messages]
        );
        catalog["streams"][0]["schema"]["selected"] = json!(true);
        assert_eq!(selected_streams(&catalog, &all).unwrap(), all);
        // A stream the source cannot deliver is a usage error, not skipped.
        let e = selected_streams(&catalog, &all[..1]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(selected_streams(&json!({"streams": 3}), &all).is_err());
    }

    #[test]
    fn config_values_become_toml_and_nulls_are_unset() {
        let value = json!({"a": 1, "b": 1.5, "c": [1, 2], "d": null, "e": {"f": "g"}});
        let toml = toml_value(&value).unwrap().unwrap();
        assert_eq!(toml["a"].as_integer(), Some(1));
        assert_eq!(toml["b"].as_float(), Some(1.5));
        assert!(toml.get("d").is_none());
        assert_eq!(toml["e"]["f"].as_str(), Some("g"));
        assert!(toml_value(&json!(u64::MAX)).is_err());
        assert!(toml_value(&json!([1, null])).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(256))]
        /// Any JSON a configuration holds either converts or says why;
        /// never a panic.
        #[test]
        fn any_json_converts_or_is_refused(text in "[\\[\\]{}\":,0-9a-z.eE+ -]{0,40}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = toml_value(&value);
                let _ = selected_streams(&value, &STREAMS);
                let _ = bookmarks_of(&value);
            }
        }
    }
}
