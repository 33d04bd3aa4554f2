//! Parquet outputs read back by a real reader: DuckDB (from PyPI, in the
//! virtual environment `.ci/run` makes, `.ci/venv-duckdb`), every value
//! compared with the JSON Lines export of the same data; per-window files
//! with a state. Without DuckDB the comparisons say so loudly and pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{caresoft_config, jsonl, run};
use crate::state::{chats, fake};

/// DuckDB's Python, or None (said loudly).
fn duckdb() -> Option<PathBuf> {
    let python = crate::common::repo().join(".ci/venv-duckdb/bin/python");
    if python.exists() {
        return Some(python);
    }
    eprintln!("SKIPPED: DuckDB is not installed (.ci/run installs it in .ci/venv-duckdb)");
    None
}

/// The rows of the Parquet files `glob` as DuckDB reads them, one JSON
/// object each, in file order: times as RFC 3339 in UTC, integers as
/// integers, nulls as null. Also the column types DuckDB sees.
fn read_back(python: &Path, dir: &Path, glob: &str) -> (Vec<Value>, Vec<(String, String)>) {
    let script = r#"
import datetime, duckdb, json, sys
c = duckdb.connect()
c.execute("SET TimeZone='UTC'")
rel = c.sql(f"select * from read_parquet('{sys.argv[1]}', union_by_name=false)")
rows = []
for row in rel.fetchall():
    out = {}
    for name, value in zip(rel.columns, row):
        if isinstance(value, datetime.datetime):
            value = value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        # A JSON column is its text in Parquet, its value in JSON Lines.
        if name == 'attachments':
            value = json.loads(value)
        out[name] = value
    rows.append(out)
print(json.dumps({"rows": rows, "types": [[n, str(t)] for n, t in zip(rel.columns, rel.types)]}, default=str))
"#;
    let out = std::process::Command::new(python)
        .current_dir(dir)
        .args(["-c", script, glob])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = read["rows"].as_array().unwrap().clone();
    let types = read["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_string(),
                t[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (rows, types)
}

/// The demo's messages and conversations of every platform (any Unicode,
/// digests, nulls, times), as Parquet and as JSON Lines: DuckDB reads the
/// same values, typed, in the CSV column order.
#[tokio::test]
async fn duckdb_reads_every_value_the_jsonl_export_holds() {
    let dir = tempfile::tempdir().unwrap();
    for records in ["messages", "conversations"] {
        for out in [format!("{records}.parquet"), format!("{records}.jsonl")] {
            let r = run(dir.path(), &["demo", "--records", records, "-o", &out]).await;
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        let Some(python) = duckdb() else {
            return;
        };
        let expected =
            jsonl(&std::fs::read_to_string(dir.path().join(format!("{records}.jsonl"))).unwrap());
        let (rows, types) = read_back(&python, dir.path(), &format!("{records}.parquet"));
        assert_eq!(rows.len(), expected.len());
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(got, want, "{records}");
        }
        let names: Vec<&str> = types.iter().map(|(n, _)| n.as_str()).collect();
        let schema = run(dir.path(), &["schema", "--records", records]).await;
        let schema: Value = serde_json::from_str(&schema.stdout).unwrap();
        let columns: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(names, columns, "the CSV column order");
        let type_of = |name: &str| {
            types
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
        };
        assert_eq!(type_of("conversation_id"), Some("VARCHAR"));
        let (time, integer) = match records {
            "messages" => ("sent_at", "seq"),
            _ => ("started_at", "message_count"),
        };
        assert_eq!(type_of(time), Some("TIMESTAMP WITH TIME ZONE"));
        assert_eq!(type_of(integer), Some("BIGINT"));
    }
}

/// One Parquet file per day with a state, the way a lake is fed; a rerun
/// with nothing new writes nothing twice. A compressed suffix is refused.
#[tokio::test]
async fn per_window_parquet_files_with_a_state() {
    let server = fake(chats(24, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let args = [
        "export",
        "hanoi",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--state",
        "h.state",
        "-o",
        "lake/dt={from:%Y-%m-%d}/conversations.parquet",
    ];
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut days: Vec<String> = std::fs::read_dir(dir.path().join("lake"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    days.sort();
    assert_eq!(days, ["dt=2024-02-29", "dt=2024-03-01", "dt=2024-03-02"]);
    let again = run(dir.path(), &args).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    if let Some(python) = duckdb() {
        let (rows, _) = read_back(&python, dir.path(), "lake/*/conversations.parquet");
        let mut ids: Vec<&str> = rows
            .iter()
            .map(|r| r["conversation_id"].as_str().unwrap())
            .collect();
        ids.sort();
        let expected: Vec<String> = (0..24).map(|i| format!("c{i:04}")).collect();
        assert_eq!(ids, expected);
    }
    let r = crate::common::export_day(dir.path(), "hanoi", &["-o", "x.parquet.gz"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("takes no .gz"), "{}", r.stderr);
}
