//! Wolkvox real-time chats end to end: snapshots that grow between polls,
//! repeated `--state` runs, follow mode stopped by a signal.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::jsonl;

const LIVE: &str = "/api/v2/real_time.php";

fn config(base: &str) -> tempfile::TempDir {
    crate::common::source_config("live", "wolkvox-live", base, "")
}

async fn run(dir: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let r = crate::common::run(dir.path(), args).await;
    (r.code, r.stdout, r.stderr)
}

/// Snapshot number `n` of two chats that grow by one message per poll;
/// chat 2 ends (disappears) after the third snapshot.
fn snapshot(n: usize) -> Value {
    let lines = |conn: &str, count: usize| -> Vec<Value> {
        (0..count)
            .map(|i| {
                json!({"from": if i % 2 == 0 {"CUSTOMER"} else {"AGENT"}, "msg": format!("{conn} mensaje {i}"),
                       "date": format!("2024-03-05 10:{:02}:00", i)})
            })
            .collect()
    };
    let mut chats = vec![
        json!({"conn_id": "c1", "channel": "WhatsApp", "connector_id": "57300", "customer_phone": "573001112233",
                                "conversation": lines("c1", 2 + n)}),
    ];
    if n < 3 {
        chats.push(
            json!({"conn_id": "c2", "channel": "web", "connector_id": "", "customer_phone": "",
                          "conversation": lines("c2", 1 + n)}),
        );
    }
    json!({"code": "200", "error": null, "msg": "x records were found", "data": [{"agent_id": "1001", "active_chats": chats}]})
}

/// Answers snapshot 0, 1, 2, ... one per request.
struct Growing(AtomicUsize);

impl Respond for Growing {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(snapshot(n))
    }
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(LIVE))
        .and(query_param("api", "chats"))
        .respond_with(Growing(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    server
}

fn texts(stdout: &str) -> Vec<String> {
    jsonl(stdout)
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn each_state_run_emits_only_the_new_messages() {
    let server = server().await;
    let dir = config(&server.uri());
    let args = [
        "export",
        "live",
        "--records",
        "messages",
        "--state",
        "live.state",
    ];
    let (code, out1, err) = run(&dir, &args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        texts(&out1),
        ["c1 mensaje 0", "c1 mensaje 1", "c2 mensaje 0"]
    );
    let (_, out2, _) = run(&dir, &args).await;
    assert_eq!(texts(&out2), ["c1 mensaje 2", "c2 mensaje 1"]);
    let (_, out3, _) = run(&dir, &args).await;
    assert_eq!(texts(&out3), ["c1 mensaje 3", "c2 mensaje 2"]);
    let (_, out4, _) = run(&dir, &args).await;
    assert_eq!(texts(&out4), ["c1 mensaje 4"], "c2 ended; c1 goes on");
    // Ids are stable across snapshots: the same message, the same id.
    let first = jsonl(&out1);
    let (_, again, _) = run(&dir, &["export", "live", "--records", "messages"]).await;
    let again = jsonl(&again);
    assert_eq!(first[0]["message_id"], again[0]["message_id"]);
    assert_eq!(first[0]["seq"], 0);
    assert_eq!(
        jsonl(&out2)[0]["seq"],
        2,
        "seq continues across runs where the snapshot shows it"
    );
}

#[tokio::test]
async fn conversations_are_active_rows_with_the_connector_in_raw() {
    let server = server().await;
    let dir = config(&server.uri());
    let (code, out, err) = run(&dir, &["export", "live", "--include-raw"]).await;
    assert_eq!(code, 0, "{err}");
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "active");
    assert_eq!(rows[0]["agent_id"], "1001");
    assert_eq!(rows[0]["channel"], "whatsapp");
    assert_eq!(rows[0]["customer_phone"], "573001112233");
    assert_eq!(rows[0]["raw"]["connector_id"], "57300");
}

#[tokio::test]
async fn follow_streams_new_messages_and_a_signal_saves_the_state() {
    let server = server().await;
    let dir = config(&server.uri());
    let mut child = crate::common::command(
        dir.path(),
        &[
            "export",
            "live",
            "--records",
            "messages",
            "--follow",
            "--interval",
            "1s",
            "--state",
            "live.state",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Each poll's lines arrive as the poll ends (flushed), not at exit.
    let lines = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        while lines.len() < 5 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            lines.push(line);
        }
        (lines, reader)
    })
    .await
    .unwrap();
    let (mut lines, mut reader) = lines;
    assert_eq!(lines.len(), 5, "two polls streamed while the process runs");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        lines.extend(rest.lines().map(|l| format!("{l}\n")));
        let status = child.wait().unwrap();
        (status, lines)
    })
    .await
    .unwrap();
    let (status, lines) = status;
    assert_eq!(status.code(), Some(0), "a signal ends follow mode cleanly");
    let all = texts(&lines.concat());
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), unique.len(), "no message twice: {all:?}");
    assert!(all.starts_with(&[
        "c1 mensaje 0".into(),
        "c1 mensaje 1".into(),
        "c2 mensaje 0".into()
    ]));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("live.state")).unwrap())
            .unwrap();
    let polls = state["ledger"].as_array().unwrap().len();
    assert!(polls >= 2, "{state}");
    // The next run continues where follow mode stopped.
    let (_, next, _) = run(
        &dir,
        &[
            "export",
            "live",
            "--records",
            "messages",
            "--state",
            "live.state",
        ],
    )
    .await;
    for text in texts(&next) {
        assert!(!all.contains(&text), "{text} was already emitted");
    }
}

#[tokio::test]
async fn follow_refuses_a_fixed_output_path() {
    let server = server().await;
    let dir = config(&server.uri());
    let (code, _, err) = run(&dir, &["export", "live", "--follow", "-o", "fixed.jsonl"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("{from}"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
