//! Fields that describe a message's place in its chat, right across every
//! cut of a chat: a window boundary (chats crossing midnight), a capped
//! answer fetched on in pieces, the checkpoint between two `--state` runs.
//! The binary runs against a Wolkvox fake that answers each report by the
//! dates asked, as the platform does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{jsonl, run};

const REPORT: &str = "/api/v2/reports_manager.php";

/// A chat of the fake: its id, agent and messages' local times.
struct Chat {
    id: String,
    agent: String,
    times: Vec<NaiveDateTime>,
}

/// Wolkvox by the dates asked: `chat_2` holds each chat's messages dated
/// in the window (numbered from 0 in the answer), chats by their first
/// message there, cut after `cap` messages; `chat_1` a row per chat that
/// started in the window, with its agent.
struct Fake {
    chats: Vec<Chat>,
    cap: usize,
    /// Chats filtered by their first message, answered whole (else each
    /// chat's messages filtered by their dates).
    by_start: bool,
    requests: Arc<AtomicUsize>,
}

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").unwrap()
}

impl Respond for Fake {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let q: HashMap<String, String> = r.url.query_pairs().into_owned().collect();
        let (from, to) = (local(&q["date_ini"]), local(&q["date_end"]));
        let within = |t: &NaiveDateTime| *t >= from && *t <= to;
        let data: Vec<Value> = if q["api"] == "chat_1" {
            self.chats
                .iter()
                .filter(|c| within(&c.times[0]))
                .map(|c| {
                    json!({"conn_id": c.id, "agent_id": c.agent, "agent_name": format!("Agente {}", c.agent),
                           "date": c.times[0].format("%Y-%m-%d %H:%M:%S").to_string()})
                })
                .collect()
        } else {
            let mut parts: Vec<(NaiveDateTime, &Chat, Vec<&NaiveDateTime>)> = self
                .chats
                .iter()
                .filter_map(|c| {
                    let times: Vec<&NaiveDateTime> = if self.by_start {
                        if !within(&c.times[0]) {
                            return None;
                        }
                        c.times.iter().collect()
                    } else {
                        c.times.iter().filter(|t| within(t)).collect()
                    };
                    times.first().map(|first| (**first, c, times.clone()))
                })
                .collect();
            parts.sort_by_key(|(first, c, _)| (*first, c.id.clone()));
            let mut left = self.cap;
            let mut data = Vec::new();
            for (_, chat, times) in parts {
                if left == 0 {
                    break;
                }
                let taken: Vec<Value> = times
                    .iter()
                    .take(left)
                    .map(|t| {
                        json!({"channel": "WhatsApp", "from": "CUSTOMER", "from_name": "x", "to_name": "y",
                               "date": t.format("%Y-%m-%d %H:%M:%S").to_string(),
                               "message": format!("{} at {t}", chat.id), "customer_id": "1"})
                    })
                    .collect();
                left -= taken.len();
                data.push(
                    json!({"conn_id": chat.id, "customer_name": "Luis", "conversation": taken}),
                );
            }
            data
        };
        ResponseTemplate::new(200).set_body_json(json!({"code": 200, "msg": "ok", "data": data}))
    }
}

/// Chats over three days from 2024-03-05: many crossing midnight, some
/// long enough that a capped answer cuts them.
fn chats() -> Vec<Chat> {
    let start = NaiveDateTime::parse_from_str("2024-03-05 20:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
    (0..40)
        .map(|i| {
            let first = start + Duration::minutes(i * 71);
            let n = 3 + (i as usize * 7) % 40;
            Chat {
                id: format!("chat-{i:02}"),
                agent: format!("{}", 100 + i),
                times: (0..n as i64)
                    .map(|k| first + Duration::minutes(k * 4))
                    .collect(),
            }
        })
        .collect()
}

async fn serve(cap: usize) -> (MockServer, Arc<AtomicUsize>) {
    serve_as(cap, false).await
}

async fn serve_as(cap: usize, by_start: bool) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    let requests = Arc::new(AtomicUsize::new(0));
    Mock::given(path(REPORT))
        .respond_with(Fake {
            chats: chats(),
            cap,
            by_start,
            requests: requests.clone(),
        })
        .mount(&server)
        .await;
    (server, requests)
}

/// Every message row in the JSONL files of `dir`, by chat, in `sent_at`
/// order.
fn messages_by_chat(dir: &Path) -> HashMap<String, Vec<Value>> {
    let mut by_chat: HashMap<String, Vec<Value>> = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !name.contains("rejects") {
            for row in jsonl(&std::fs::read_to_string(&p).unwrap()) {
                let id = row["conversation_id"].as_str().unwrap().to_string();
                by_chat.entry(id).or_default().push(row);
            }
        }
    }
    for rows in by_chat.values_mut() {
        rows.sort_by(|a, b| a["sent_at"].as_str().cmp(&b["sent_at"].as_str()));
    }
    by_chat
}

/// Every chat whole, once, numbered 0..n-1 in time order, each message
/// with its chat's agent.
fn assert_every_chat_numbered_and_enriched(dir: &Path) {
    let by_chat = messages_by_chat(dir);
    let expected = chats();
    assert_eq!(by_chat.len(), expected.len());
    for chat in &expected {
        let rows = &by_chat[&chat.id];
        assert_eq!(
            rows.len(),
            chat.times.len(),
            "{}: every message once",
            chat.id
        );
        let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        let want: Vec<u64> = (0..chat.times.len() as u64).collect();
        assert_eq!(seqs, want, "{}: seq in time order", chat.id);
        for row in rows {
            assert_eq!(row["agent_id"], chat.agent.as_str(), "{}: {row}", chat.id);
        }
    }
}

fn config(base: &str, extra: &str) -> tempfile::TempDir {
    crate::wolkvox::config(
        base,
        &format!("enrich = [\"chat_1\"]\nmax_retries = 0\n{extra}"),
    )
}

/// `export bogota` over the four local days from 2024-03-05, then `extra`.
async fn export_days(dir: &Path, extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        "export",
        "bogota",
        "--from",
        "2024-03-05",
        "--to",
        "2024-03-09",
    ];
    args.extend_from_slice(extra);
    run(dir, &args).await
}

/// A cron job over those days: a `--state` run every 5 hours, each ending
/// while chats go on, writing `out/{to}.jsonl`, then `extra`. Returns the
/// number of runs; each must succeed.
async fn state_runs(dir: &Path, extra: &[&str]) -> usize {
    let mut to = chrono::DateTime::parse_from_rfc3339("2024-03-05T22:00:00-05:00").unwrap();
    let end = chrono::DateTime::parse_from_rfc3339("2024-03-09T00:00:00-05:00").unwrap();
    let mut runs = 0;
    while to < end {
        let to_text = to.to_rfc3339();
        let mut args = vec![
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            &to_text,
            "--state",
            "s.state",
            "-o",
            "out/{to}.jsonl",
        ];
        args.extend_from_slice(extra);
        let r = run(dir, &args).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        to += Duration::hours(5);
        runs += 1;
    }
    runs
}

/// One run over three days, a file per day: chats crossing midnight go
/// on numbering in the next day's file, and carry their agent there.
#[tokio::test]
async fn seq_and_agent_follow_a_chat_across_midnight_in_one_run() {
    let (server, _) = serve(usize::MAX).await;
    let dir = config(&server.uri(), "");
    let r = export_days(
        dir.path(),
        &[
            "--records",
            "messages",
            "-o",
            "out/{from}.jsonl",
            "--chunk",
            "1d",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_every_chat_numbered_and_enriched(&dir.path().join("out"));
}

/// Answers capped at 60 messages, so answers end in the middle of a chat
/// and are fetched on in pieces: numbering goes on across the pieces.
#[tokio::test]
async fn seq_follows_a_chat_across_capped_pieces() {
    let (server, _) = serve(60).await;
    let dir = config(&server.uri(), "record_cap = 60\n");
    let r = export_days(
        dir.path(),
        &["--records", "messages", "-o", "out/all.jsonl"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_every_chat_numbered_and_enriched(&dir.path().join("out"));
}

/// A cron job every few hours: each `--state` run ends while chats are
/// still going on; the next run continues their numbering and their
/// agent from what the state kept.
#[tokio::test]
async fn seq_and_agent_follow_a_chat_across_state_runs() {
    let (server, _) = serve(usize::MAX).await;
    let dir = config(&server.uri(), "lookback = \"1h\"\n");
    assert!(state_runs(dir.path(), &["--records", "messages"]).await > 10);
    assert_every_chat_numbered_and_enriched(&dir.path().join("out"));
}

/// A state written before it kept open conversations still loads, and the
/// run goes on from its checkpoint.
#[tokio::test]
async fn a_state_without_open_conversations_still_loads() {
    let (server, _) = serve(usize::MAX).await;
    let dir = config(&server.uri(), "");
    let state = json!({
        "version": 2, "source": "bogota", "kind": "wolkvox", "records": "messages",
        "checkpoint": "2024-03-06T05:00:00Z", "recent": [], "ledger": []
    });
    std::fs::write(dir.path().join("s.state"), state.to_string()).unwrap();
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--to",
            "2024-03-06T12:00:00Z",
            "--records",
            "messages",
            "--state",
            "s.state",
            "-o",
            "m.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.state")).unwrap())
            .unwrap();
    assert!(
        saved["chats"].as_array().is_some_and(|c| !c.is_empty()),
        "open conversations kept from now on: {saved}"
    );
}

/// Conversation rows built from messages, over `--state` runs that each end
/// while chats go on: a chat's newest row counts all its messages and
/// starts at its first, not at the last checkpoint.
#[tokio::test]
async fn a_conversation_row_counts_its_whole_chat_across_state_runs() {
    let (server, _) = serve(usize::MAX).await;
    let dir = config(&server.uri(), "lookback = \"1h\"\n");
    state_runs(dir.path(), &[]).await;
    let mut newest: HashMap<String, Value> = HashMap::new();
    for rows in messages_by_chat(&dir.path().join("out")).into_values() {
        for row in rows {
            let id = row["conversation_id"].as_str().unwrap().to_string();
            let newer = newest
                .get(&id)
                .is_none_or(|n| n["updated_at"].as_str() <= row["updated_at"].as_str());
            if newer {
                newest.insert(id, row);
            }
        }
    }
    let bogota = chrono_tz::America::Bogota;
    for chat in chats() {
        let row = &newest[&chat.id];
        assert_eq!(row["message_count"], chat.times.len(), "{}: {row}", chat.id);
        let first = chat.times[0]
            .and_local_timezone(bogota)
            .unwrap()
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        assert_eq!(row["started_at"], first.as_str(), "{}", chat.id);
        assert_eq!(row["agent_id"], chat.agent.as_str(), "{}", chat.id);
    }
}

/// The fewest requests that can export the local days from 2024-03-05 to
/// 2024-03-08 at `cap` messages an answer: each day's messages (by their
/// dates, or by their chat's start) in full answers.
fn fewest_requests(cap: usize, by_start: bool) -> usize {
    let mut per_day: HashMap<chrono::NaiveDate, usize> = HashMap::new();
    for chat in chats() {
        for t in &chat.times {
            let day = if by_start { chat.times[0] } else { *t }.date();
            *per_day.entry(day).or_default() += 1;
        }
    }
    let days = 4;
    let empty = days - per_day.len();
    per_day.values().map(|n| n.div_ceil(cap)).sum::<usize>() + empty
}

/// Capped answers that end in the middle of a chat: fetched on from the
/// cut chat's start, every chat whole and once, in about the fewest
/// requests (within 1.3 times, the one request that learns the platform's
/// order included), whether the platform reads the window by message dates
/// or by chat starts.
#[tokio::test]
async fn capped_answers_cut_in_a_chat_cost_about_the_fewest_requests() {
    for by_start in [false, true] {
        for cap in [100, 150] {
            let (server, requests) = serve_as(cap, by_start).await;
            let dir = crate::wolkvox::config(
                &server.uri(),
                &format!("max_retries = 0\nrecord_cap = {cap}\n"),
            );
            let r = export_days(
                dir.path(),
                &["--records", "messages", "-o", "out/all.jsonl"],
            )
            .await;
            assert_eq!(r.code, 0, "{}", r.stderr);
            let by_chat = messages_by_chat(&dir.path().join("out"));
            for chat in chats() {
                assert_eq!(by_chat[&chat.id].len(), chat.times.len(), "{}", chat.id);
            }
            let sent = requests.load(Ordering::SeqCst);
            let fewest = fewest_requests(cap, by_start);
            eprintln!("cap {cap}, by start {by_start}: {sent} requests, the fewest {fewest}");
            assert!(
                sent as f64 <= fewest as f64 * 1.3,
                "cap {cap}, by start {by_start}: {sent} requests, the fewest {fewest}"
            );
        }
    }
}
