//! `chatdump tap` against real Singer consumers: its output piped into
//! `target-jsonl` and `target-duckdb` (and checked by `singer-check-tap`),
//! compared with an `export` of the same window, and a run resumed from the
//! last STATE it emitted. The Singer tools come from PyPI, in the virtual
//! environments `.ci/run` makes (`.ci/venv-singer`, `.ci/venv-duckdb`); without them the tests
//! that need them say so loudly and pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{command, jsonl, run};
use crate::state::{chats, fake};

/// A Singer tool of a virtual environment `.ci/run` makes, or None (said
/// loudly).
fn singer_tool(venv: &str, name: &str) -> Option<PathBuf> {
    let tool = crate::common::repo()
        .join(".ci")
        .join(venv)
        .join("bin")
        .join(name);
    if tool.exists() {
        return Some(tool);
    }
    eprintln!("SKIPPED: {name} is not installed (.ci/run installs it in .ci/{venv})");
    None
}

/// A Singer configuration for the CareSoft fake at `base`.
fn tap_config(dir: &Path, base: &str, extra: Value) -> PathBuf {
    let mut config = json!({
        "kind": "caresoft",
        "name": "hanoi",
        "base_url": format!("{base}/acme"),
        "token_env": "CS_TOKEN",
        "conversation_types": ["livechat"],
        "backoff": "10ms",
        "rate_limit": 1000,
        "start_date": "2024-03-01",
        "end_date": "2024-03-03",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let file = dir.join("tap.json");
    std::fs::write(&file, config.to_string()).unwrap();
    file
}

/// The CareSoft fake with `chats` chats an hour apart, and a folder with
/// a Singer configuration for it (`extra` added) and a catalog selecting
/// conversations.
async fn conversations_tap(
    chats_n: usize,
    extra: Value,
) -> (wiremock::MockServer, tempfile::TempDir) {
    let server = fake(chats(chats_n, 60), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    tap_config(dir.path(), &server.uri(), extra);
    catalog(dir.path(), &["conversations"]).await;
    (server, dir)
}

/// The catalog `--discover` prints, with `streams` selected.
async fn catalog(dir: &Path, streams: &[&str]) -> PathBuf {
    let r = run(dir, &["tap", "--config", "tap.json", "--discover"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut catalog: Value = serde_json::from_str(&r.stdout).unwrap();
    for stream in catalog["streams"].as_array_mut().unwrap() {
        let chosen = streams.contains(&stream["tap_stream_id"].as_str().unwrap());
        stream["metadata"][0]["metadata"]["selected"] = json!(chosen);
    }
    let file = dir.join("catalog.json");
    std::fs::write(&file, catalog.to_string()).unwrap();
    file
}

/// Runs the tap with `args`, its stdout piped into `target` (with its
/// configuration, if any); the tap's stderr and exit code and the
/// target's.
/// The tap of `tap.json` and `catalog.json` piped into `target` (with its
/// `target.json`); both must succeed.
async fn tap_into(dir: &Path, target: &Path) {
    let (code, stderr, target_code, target_stderr) = pipe(
        dir,
        &["tap", "--config", "tap.json", "--catalog", "catalog.json"],
        target,
        Some(&dir.join("target.json")),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(target_code, 0, "{target_stderr}");
}

async fn pipe(
    dir: &Path,
    args: &[&str],
    target: &Path,
    target_config: Option<&Path>,
) -> (i32, String, i32, String) {
    let mut tap = command(dir, args);
    tap.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut consumer = Command::new(target);
    consumer
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(config) = target_config {
        consumer.arg("--config").arg(config);
    }
    tokio::task::spawn_blocking(move || {
        let mut tap = tap.spawn().unwrap();
        let out = tap.stdout.take().unwrap();
        let target = consumer.stdin(out).spawn().unwrap();
        let tap = tap.wait_with_output().unwrap();
        let target = target.wait_with_output().unwrap();
        (
            tap.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&tap.stderr).into_owned(),
            target.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&target.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The same window exported as JSON Lines, for comparison.
async fn exported(dir: &Path) -> Vec<Value> {
    let toml = crate::common::source_table(
        "hanoi",
        "caresoft",
        &format!(
            "{}/acme",
            serde_json::from_str::<Value>(&std::fs::read_to_string(dir.join("tap.json")).unwrap())
                .unwrap()["base_url"]
                .as_str()
                .unwrap()
                .trim_end_matches("/acme")
        ),
        "conversation_types = [\"livechat\"]\n",
    );
    std::fs::write(dir.join("chatdump.toml"), toml).unwrap();
    let r = run(
        dir,
        &[
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-03",
            "-o",
            "export.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    jsonl(&std::fs::read_to_string(dir.join("export.jsonl")).unwrap())
}

#[tokio::test]
async fn discovery_lists_the_streams_the_source_delivers_with_keys_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    tap_config(dir.path(), "http://127.0.0.1:9", json!({}));
    let r = run(dir.path(), &["tap", "--config", "tap.json", "--discover"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let catalog: Value = serde_json::from_str(&r.stdout).unwrap();
    let streams = catalog["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let messages = &streams[1];
    assert_eq!(messages["tap_stream_id"], "messages");
    assert_eq!(
        messages["key_properties"],
        json!(["conversation_id", "message_id"])
    );
    assert_eq!(messages["replication_method"], "INCREMENTAL");
    assert_eq!(
        messages["schema"]["properties"]["text"]["x-pii"],
        "customer"
    );
    assert_eq!(streams[0]["key_properties"], json!(["conversation_id"]));
    // UJET without transcripts delivers no messages: one stream.
    std::fs::write(
        dir.path().join("tap.json"),
        json!({"kind": "ujet", "base_url": "http://127.0.0.1:9", "username": "u", "password_env": "UJET_PASSWORD", "start_date": "2024-03-01"}).to_string(),
    )
    .unwrap();
    let r = run(dir.path(), &["tap", "--config", "tap.json", "--discover"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let catalog: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(catalog["streams"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_singer_configurations_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (config, says) in [
        (
            json!({"kind": "caresoft", "domain": "x", "token_env": "CS_TOKEN"}),
            "start_date",
        ),
        (
            json!({"kind": "caresoft", "domain": "x", "token_env": "CS_TOKEN", "start_date": "2024-03-01", "redact": "yes"}),
            "redact",
        ),
        (
            json!({"kind": "caresoft", "domain": "x", "token_env": "CS_TOKEN", "start_date": "2024-03-01", "page_size": 18446744073709551615u64}),
            "page_size",
        ),
        (
            json!({"kind": "caresoft", "domain": "x", "token_env": "CS_TOKEN", "start_date": "2024-03-01", "no_such_key": 1}),
            "no_such_key",
        ),
        (json!(["not", "an", "object"]), "not a JSON object"),
    ] {
        std::fs::write(dir.path().join("tap.json"), config.to_string()).unwrap();
        let r = run(dir.path(), &["tap", "--config", "tap.json", "--discover"]).await;
        assert_eq!(r.code, 78, "{config}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{config}: {}", r.stderr);
    }
    std::fs::write(dir.path().join("tap.json"), "{").unwrap();
    let r = run(dir.path(), &["tap", "--config", "tap.json"]).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    let r = run(dir.path(), &["tap"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// The tap's messages in order: SCHEMA before the first RECORD of its
/// stream, a STATE after each window (never before its records), and the
/// records the same as an export of the same window.
#[tokio::test]
async fn a_sync_writes_schema_records_and_a_state_after_each_window() {
    let (_server, dir) = conversations_tap(48, json!({})).await;
    let r = run(
        dir.path(),
        &["tap", "--config", "tap.json", "--catalog", "catalog.json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let messages = jsonl(&r.stdout);
    assert_eq!(messages[0]["type"], "SCHEMA");
    assert_eq!(messages[0]["stream"], "conversations");
    assert_eq!(messages[0]["key_properties"], json!(["conversation_id"]));
    let states: Vec<usize> = (0..messages.len())
        .filter(|i| messages[*i]["type"] == "STATE")
        .collect();
    // Two days of one-day windows: a state after each.
    assert_eq!(states.len(), 2, "{}", r.stdout);
    assert_eq!(*states.last().unwrap(), messages.len() - 1);
    let first_day: Vec<&Value> = messages[..states[0]]
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .collect();
    assert_eq!(
        first_day.len(),
        24,
        "the first day's records before its state"
    );
    let bookmark = &messages[states[1]]["value"]["bookmarks"]["conversations"];
    assert_eq!(bookmark["source"], "hanoi");
    assert_eq!(bookmark["checkpoint"], "2024-03-02T17:00:00Z");
    let records: Vec<Value> = messages
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| {
            assert_eq!(m["stream"], "conversations");
            m["record"].clone()
        })
        .collect();
    assert_eq!(records, exported(dir.path()).await);
}

/// A run stopped after the first day, then run again with the last STATE
/// it emitted, gives every record exactly once.
#[tokio::test]
async fn a_run_resumed_from_its_last_state_has_no_gap_and_no_double() {
    let (server, dir) = conversations_tap(72, json!({"end_date": "2024-03-02"})).await;
    let args = ["tap", "--config", "tap.json", "--catalog", "catalog.json"];
    let first = run(dir.path(), &args).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = jsonl(&first.stdout);
    let state = first.iter().rev().find(|m| m["type"] == "STATE").unwrap();
    std::fs::write(dir.path().join("state.json"), state["value"].to_string()).unwrap();
    tap_config(dir.path(), &server.uri(), json!({"end_date": "2024-03-04"}));
    let mut resumed_args = args.to_vec();
    resumed_args.extend(["--state", "state.json"]);
    let second = run(dir.path(), &resumed_args).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let mut ids: Vec<String> = first
        .iter()
        .chain(jsonl(&second.stdout).iter())
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["conversation_id"].as_str().unwrap().to_string())
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "a record emitted twice");
    // 2024-03-01 .. 03-04 local (UTC+7): chats 0..71 all fall inside.
    assert_eq!(count, 72);
    // A state for another source is refused, not taken as this one's.
    let mut foreign = state["value"].clone();
    foreign["bookmarks"]["conversations"]["source"] = json!("other");
    std::fs::write(dir.path().join("state.json"), foreign.to_string()).unwrap();
    let r = run(dir.path(), &resumed_args).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("belongs to source"), "{}", r.stderr);
}

/// Piped into target-jsonl, the records the target writes are the export's.
#[tokio::test]
async fn target_jsonl_gets_what_export_writes() {
    let Some(target) = singer_tool("venv-singer", "target-jsonl") else {
        return;
    };
    let (_server, dir) = conversations_tap(48, json!({})).await;
    std::fs::create_dir(dir.path().join("out")).unwrap();
    std::fs::write(
        dir.path().join("target.json"),
        json!({"destination_path": "out"}).to_string(),
    )
    .unwrap();
    tap_into(dir.path(), &target).await;
    let written: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let records = jsonl(&std::fs::read_to_string(&written[0]).unwrap());
    assert_eq!(records, exported(dir.path()).await);
}

/// Piped into target-duckdb, the table holds one row per conversation,
/// its times as timestamps; a second run over the same window adds none
/// (the target upserts by the key the SCHEMA names).
#[tokio::test]
async fn target_duckdb_holds_each_conversation_once() {
    let Some(target) = singer_tool("venv-duckdb", "target-duckdb") else {
        return;
    };
    let (_server, dir) = conversations_tap(48, json!({})).await;
    std::fs::write(
        dir.path().join("target.json"),
        json!({"filepath": "chats.duckdb", "default_target_schema": "main"}).to_string(),
    )
    .unwrap();
    for _ in 0..2 {
        tap_into(dir.path(), &target).await;
    }
    let python = target.with_file_name("python");
    let query = Command::new(python)
        .current_dir(dir.path())
        .args([
            "-c",
            "import duckdb; c = duckdb.connect('chats.duckdb'); \
             print(c.execute(\"select count(*), count(distinct conversation_id), min(conversation_id), \
             max(conversation_id), strftime(min(started_at), '%Y-%m-%dT%H:%M:%S') from conversations\").fetchone())",
        ])
        .output()
        .unwrap();
    assert!(
        query.status.success(),
        "{}",
        String::from_utf8_lossy(&query.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&query.stdout).trim(),
        "(48, 48, 'c0000', 'c0047', '2024-02-29T17:00:00')"
    );
}

/// singer-tools' checker accepts the tap's output.
#[tokio::test]
async fn singer_check_tap_accepts_the_output() {
    let Some(checker) = singer_tool("venv-singer", "singer-check-tap") else {
        return;
    };
    let (_server, dir) = conversations_tap(24, json!({"end_date": "2024-03-02"})).await;
    let (code, stderr, check_code, check_stderr) = pipe(
        dir.path(),
        &["tap", "--config", "tap.json", "--catalog", "catalog.json"],
        &checker,
        None,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(check_code, 0, "{check_stderr}");
}

/// The tap's `redact` keys: customer fields are masked in the records, and
/// the SCHEMA still marks them; "hash" without a key is refused.
#[tokio::test]
async fn redaction_keys_work_in_tap_mode() {
    let server = fake(chats(24, 60), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    tap_config(
        dir.path(),
        &server.uri(),
        json!({"end_date": "2024-03-02", "redact": "mask"}),
    );
    catalog(dir.path(), &["conversations"]).await;
    let args = ["tap", "--config", "tap.json", "--catalog", "catalog.json"];
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("Khách"), "{}", r.stdout);
    let messages = jsonl(&r.stdout);
    assert_eq!(
        messages[0]["schema"]["properties"]["customer_name"]["x-pii"],
        "customer"
    );
    let record = messages.iter().find(|m| m["type"] == "RECORD").unwrap();
    assert!(record["record"]["customer_name"].is_string(), "{record}");
    tap_config(
        dir.path(),
        &server.uri(),
        json!({"end_date": "2024-03-02", "redact": "hash"}),
    );
    let mut cmd = command(dir.path(), &args);
    cmd.env_remove("CHATDUMP_REDACT_KEY");
    let r = crate::common::run_command(cmd).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("redact_key"), "{}", r.stderr);
    tap_config(
        dir.path(),
        &server.uri(),
        json!({"end_date": "2024-03-02", "redact": "hash", "redact_key": "k3y-for-tests"}),
    );
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("Khách"), "{}", r.stdout);
}
