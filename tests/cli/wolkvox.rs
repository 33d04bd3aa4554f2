//! Wolkvox `chat_2` end to end: the binary against a wiremock Wolkvox.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{command, fixture, jsonl, run, run_command, TOKEN};

const REPORT: &str = "/api/v2/reports_manager.php";

pub(crate) fn config(base: &str, extra: &str) -> tempfile::TempDir {
    crate::common::source_config("bogota", "wolkvox", base, extra)
}

fn param(r: &Request, key: &str) -> String {
    crate::common::param(r, key).unwrap_or_default()
}

/// A chat with `n` messages, one per second from `start` (local time).
fn chat(conn: &str, start: chrono::NaiveDateTime, n: usize) -> Value {
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            json!({"channel": "WhatsApp", "from": if i % 2 == 0 {"CUSTOMER"} else {"AGENT"}, "from_name": "x",
                   "to_name": "y", "date": (start + chrono::Duration::seconds(i as i64)).format("%Y-%m-%d %H:%M:%S").to_string(),
                   "message": format!("mensaje {i}"), "customer_id": "1", "customer_phone": "57300"})
        })
        .collect();
    json!({"conn_id": conn, "agent_name": "Ana", "customer_name": "Luis", "conversation": rows})
}

fn ok(data: Vec<Value>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"code": 200, "error": null, "msg": "records were found", "data": data}),
    )
}

/// A fake report: every chat of `chats` whose first message lies in the
/// requested inclusive range; truncated to `cap` messages like the platform.
struct Report {
    chats: Vec<(chrono::NaiveDateTime, Value)>,
    cap: usize,
}

impl Respond for Report {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let parse =
            |k: &str| chrono::NaiveDateTime::parse_from_str(&param(r, k), "%Y%m%d%H%M%S").unwrap();
        let (from, to) = (parse("date_ini"), parse("date_end"));
        let in_range = self
            .chats
            .iter()
            .filter(|(start, _)| *start >= from && *start <= to);
        ok(cut(in_range, self.cap)
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }
}

/// `chats` in the order given, their messages cut off after `cap` in all.
fn cut<'a>(
    chats: impl Iterator<Item = &'a (chrono::NaiveDateTime, Value)>,
    cap: usize,
) -> Vec<(chrono::NaiveDateTime, Value)> {
    let mut left = cap;
    let mut data = Vec::new();
    for (start, chat) in chats {
        if left == 0 {
            break;
        }
        let mut chat = chat.clone();
        let rows = chat["conversation"].as_array_mut().unwrap();
        rows.truncate(left);
        left -= rows.len();
        data.push((*start, chat));
    }
    data
}

/// A fake Wolkvox answering every report request with `answer`.
async fn serving(answer: impl wiremock::Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

/// The arguments of `export bogota` for 2024-03-05's messages, then `extra`.
fn day_messages<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "export",
        "bogota",
        "--from",
        "2024-03-05",
        "--to",
        "2024-03-06",
        "--records",
        "messages",
    ];
    args.extend_from_slice(extra);
    args
}

/// `export bogota` of 2024-03-05's messages to `output`.
async fn export_day_messages(dir: &std::path::Path, output: &str) -> crate::common::Run {
    run(dir, &day_messages(&["-o", output])).await
}

fn local(s: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[tokio::test]
async fn windows_are_sliced_in_bogota_time_with_inclusive_seconds() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "");
    // The first two windows both answer the sample's chats (a repeat across
    // adjacent windows); the third is empty.
    for day in ["20240305000000", "20240306000000"] {
        Mock::given(method("GET"))
            .and(path(REPORT))
            .and(query_param("api", "chat_2"))
            .and(query_param("date_ini", day))
            .and(header("wolkvox-token", TOKEN))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("wolkvox/chat_2-nested.json")),
            )
            .mount(&server)
            .await;
    }
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-07 12:00",
            "--records",
            "messages",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ranges: Vec<(String, String)> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| (param(r, "date_ini"), param(r, "date_end")))
        .collect();
    assert_eq!(
        ranges,
        [
            ("20240305000000".into(), "20240305235959".into()),
            ("20240306000000".into(), "20240306235959".into()),
            ("20240307000000".into(), "20240307115959".into()),
        ]
    );
    // Every message once, although two windows answered it.
    let rows = jsonl(&r.stdout);
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0]["sent_at"], "2024-03-05T14:22:10Z");
    let seqs: Vec<i64> = rows.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5, 0]);
    assert_ne!(
        rows[4]["message_id"], rows[5]["message_id"],
        "identical messages in one second stay two"
    );
}

#[tokio::test]
async fn a_capped_window_is_bisected_until_complete_counting_messages() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "record_cap = 10\n");
    // Six chats of 4 messages over the day: 24 messages, cap 10.
    let chats: Vec<(chrono::NaiveDateTime, Value)> = (0..6)
        .map(|i| {
            let start = local("2024-03-05 00:00:00") + chrono::Duration::hours(4 * i);
            (start, chat(&format!("c{i}"), start, 4))
        })
        .collect();
    Mock::given(path(REPORT))
        .respond_with(Report { chats, cap: 10 })
        .mount(&server)
        .await;
    let r = run(dir.path(), &day_messages(&["-v"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    assert_eq!(rows.len(), 24, "every message exactly once");
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|v| v["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 24);
    assert!(
        r.stderr.contains("reach the cap of 10"),
        "the split shows at -v: {}",
        r.stderr
    );
    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() >= 3, "{}", requests.len());
}

#[tokio::test]
async fn a_capped_window_is_bisected_counting_conversations() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "record_cap = 3\n");
    let chats: Vec<(chrono::NaiveDateTime, Value)> = (0..8)
        .map(|i| {
            let start = local("2024-03-05 01:00:00") + chrono::Duration::hours(2 * i);
            (start, chat(&format!("k{i}"), start, 1))
        })
        .collect();
    Mock::given(path(REPORT))
        .respond_with(Report { chats, cap: 3 })
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-06",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    let ids: Vec<&str> = rows
        .iter()
        .map(|v| v["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"]);
    assert!(rows.iter().all(|v| v["message_count"] == 1));
}

#[tokio::test]
async fn a_minute_over_the_cap_stops_with_65_naming_it() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "record_cap = 5\n");
    let start = local("2024-03-05 10:30:00");
    Mock::given(path(REPORT))
        .respond_with(Report {
            chats: vec![(start, chat("big", start, 20))],
            cap: 5,
        })
        .mount(&server)
        .await;
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr.contains("2024-03-05T15:30:"),
        "names the minute (UTC): {}",
        r.stderr
    );
    assert!(!dir.path().join("m.jsonl").exists());
    // Bisection ends: a day halves to a minute in about 11 steps.
    assert!(server.received_requests().await.unwrap().len() < 40);
}

#[tokio::test]
async fn not_found_is_an_empty_window() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "");
    Mock::given(path(REPORT))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"code": 404, "error": "NOT FOUND", "msg": "0 records"})),
        )
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-06",
            "-o",
            "c.csv",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("c.csv")).unwrap();
    assert_eq!(text.lines().count(), 1, "just the header: {text}");
}

#[tokio::test]
async fn documented_error_texts_map_to_exit_codes() {
    for (status, msg, code) in [
        (403, "TOKEN LIMIT EXCEEDED", 77),
        (403, "PLEASE VALIDATE TOKEN", 77),
        (401, "PLEASE ENTER THE WOLKVOX-TOKEN", 77),
        (200, "TOKEN LIMIT EXCEEDED", 77),
        (403, "Servidor en mantenimiento", 69),
        (400, "THE API YOU WANT TO CONSULT DOES NOT EXIST", 69),
    ] {
        let server = MockServer::start().await;
        let dir = config(&server.uri(), "max_retries = 1\n");
        let body = json!({"code": if status == 200 { 403 } else { status }, "error": "FORBIDDEN", "msg": msg});
        Mock::given(path(REPORT))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let r = run(
            dir.path(),
            &[
                "export",
                "bogota",
                "--from",
                "2024-03-05",
                "--to",
                "2024-03-06",
            ],
        )
        .await;
        assert_eq!(r.code, code, "{status} {msg}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}

#[tokio::test]
async fn simultaneous_requests_error_waits_and_retries() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "");
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"code": 403, "error": "FORBIDDEN", "msg": "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(REPORT))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("wolkvox/chat_2-flat.json")),
        )
        .mount(&server)
        .await;
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    // The flat fixture holds one unreadable row: exported rest, exit 65.
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["sentiment"], "positive");
    let rejects = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap();
    assert!(rejects.contains("fecha rota"), "{rejects}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// Records when each request arrived; answers after `delay`.
struct Clock {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl Respond for Clock {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals.lock().unwrap().push(Instant::now());
        ok(vec![]).set_delay(self.delay)
    }
}

#[tokio::test]
async fn requests_never_overlap() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "window = \"6h\"\n");
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let delay = Duration::from_millis(150);
    Mock::given(path(REPORT))
        .respond_with(Clock {
            arrivals: arrivals.clone(),
            delay,
        })
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-06",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 4);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= delay,
            "a request started before the previous answer: {:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn dry_run_counts_the_tokens_a_plan_spends() {
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "");
    let r = run(
        dir.path(),
        &["export", "bogota", "--dry-run", "--since", "7d"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("at least 7"),
        "7 days less the settle lag, in daily slices: {}",
        r.stdout
    );
    assert!(r.stdout.contains("daily wolkvox tokens"), "{}", r.stdout);
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// A report that returns, of every chat, the messages dated inside the
/// requested range (so a chat crossing a window boundary comes in pieces),
/// truncated to `cap` messages.
struct ByMessage {
    chats: Vec<Value>,
    cap: usize,
}

impl Respond for ByMessage {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let (from, to) = (param(r, "date_ini"), param(r, "date_end"));
        let stamp = |d: &str| d.replace(['-', ' ', ':'], "");
        let mut left = self.cap;
        let mut data = Vec::new();
        for chat in &self.chats {
            let mut chat = chat.clone();
            let rows = chat["conversation"].as_array_mut().unwrap();
            rows.retain(|m| {
                let t = stamp(m["date"].as_str().unwrap());
                t >= from && t <= to
            });
            rows.truncate(left);
            left -= rows.len();
            if !rows.is_empty() {
                data.push(chat);
            }
        }
        ok(data)
    }
}

/// A chat crossing midnight (two daily windows), and a second day over the
/// cap (bisected): each chat is one row, counting all its messages.
#[tokio::test]
async fn a_chat_across_windows_and_bisected_slices_is_one_complete_row() {
    let server = MockServer::start().await;
    let crossing = {
        let mut c = chat("A", local("2024-03-05 23:40:00"), 40);
        for (i, m) in c["conversation"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let t = local("2024-03-05 23:40:00") + chrono::Duration::minutes(i as i64);
            m["date"] = json!(t.format("%Y-%m-%d %H:%M:%S").to_string());
        }
        c
    };
    Mock::given(path(REPORT))
        .respond_with(ByMessage {
            chats: vec![crossing, chat("B", local("2024-03-06 12:00:00"), 10)],
            cap: 30,
        })
        .mount(&server)
        .await;
    let dir = config(&server.uri(), "record_cap = 30\n");
    for output in ["conv.csv", "conv.jsonl"] {
        let r = run(
            dir.path(),
            &[
                "export",
                "bogota",
                "--from",
                "2024-03-05",
                "--to",
                "2024-03-07",
                "-o",
                output,
                "-v",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains("reach the cap of 30"),
            "day 2 is bisected: {}",
            r.stderr
        );
        let text = std::fs::read_to_string(dir.path().join(output)).unwrap();
        let rows: Vec<(String, i64)> = if output.ends_with(".csv") {
            crate::common::csv_columns(&text, &["conversation_id", "message_count"])
                .into_iter()
                .map(|r| (r[0].clone(), r[1].parse().unwrap()))
                .collect()
        } else {
            jsonl(&text)
                .iter()
                .map(|v| {
                    (
                        v["conversation_id"].as_str().unwrap().to_string(),
                        v["message_count"].as_i64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            rows,
            [("A".to_string(), 40), ("B".to_string(), 10)],
            "{output}"
        );
    }
}

/// A run spends at most `max_tokens` requests (each a daily token), then
/// stops with 77 and commits nothing of the window under way.
#[tokio::test]
async fn a_run_stops_at_its_token_ceiling() {
    let server = serving(ok(vec![chat("1", local("2024-03-05 10:00:00"), 2)])).await;
    let dir = config(&server.uri(), "max_tokens = 2\n");
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-08",
            "-o",
            "out.jsonl",
            "--state",
            "s.state",
        ],
    )
    .await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stderr.contains("max_tokens"), "{}", r.stderr);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert!(!dir.path().join("out.jsonl").exists() && !dir.path().join("s.state").exists());
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-08",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("stops after 2 requests"), "{}", r.stdout);
}

/// Like [`Report`], but a capped answer holds an arbitrary choice of the
/// range's chats (by a hash of their id), sorted by start: an answer in
/// time order that is still not the earliest chats.
struct Subset {
    chats: Vec<(chrono::NaiveDateTime, Value)>,
    cap: usize,
}

impl Respond for Subset {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let parse =
            |k: &str| chrono::NaiveDateTime::parse_from_str(&param(r, k), "%Y%m%d%H%M%S").unwrap();
        let (from, to) = (parse("date_ini"), parse("date_end"));
        let mut chosen: Vec<&(chrono::NaiveDateTime, Value)> = self
            .chats
            .iter()
            .filter(|(start, _)| *start >= from && *start <= to)
            .collect();
        let scramble = |c: &Value| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            c["conn_id"].as_str().hash(&mut h);
            h.finish()
        };
        chosen.sort_by_key(|(_, c)| scramble(c));
        let mut data = cut(chosen.into_iter(), self.cap);
        data.sort_by_key(|(start, _)| *start);
        ok(data.into_iter().map(|(_, c)| c).collect())
    }
}

/// Two days of chats, three messages each, one every 40 minutes.
fn two_days() -> Vec<(chrono::NaiveDateTime, Value)> {
    (0..72)
        .map(|i| {
            let start = local("2024-03-05 00:10:00") + chrono::Duration::minutes(40 * i);
            (start, chat(&format!("t{i}"), start, 3))
        })
        .collect()
}

/// The two days' report, answering at most 10 messages a request.
fn two_days_at_cap_10() -> Report {
    Report {
        chats: two_days(),
        cap: 10,
    }
}

/// Exports the two days at a cap of 10; returns stderr, the messages and
/// the (date_ini, date_end) of every request.
async fn capped_backfill(server: &MockServer) -> (String, Vec<Value>, Vec<(String, String)>) {
    let dir = config(&server.uri(), "record_cap = 10\n");
    let r = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-07",
            "--records",
            "messages",
            "-v",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let asked = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|q| (param(q, "date_ini"), param(q, "date_end")))
        .collect();
    (r.stderr, jsonl(&r.stdout), asked)
}

fn assert_every_message_once(rows: &[Value]) {
    let mut ids: Vec<(String, i64)> = rows
        .iter()
        .map(|v| {
            (
                v["conversation_id"].as_str().unwrap().to_string(),
                v["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 72 * 3, "every message, once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 72 * 3, "no message twice");
}

#[tokio::test]
async fn answers_found_to_hold_the_earliest_chats_are_fetched_on_from_where_they_stop() {
    let server = serving(two_days_at_cap_10()).await;
    let (stderr, rows, asked) = capped_backfill(&server).await;
    assert_every_message_once(&rows);
    assert_eq!(
        stderr.matches("capped answers hold the earliest").count(),
        1,
        "checked once a run: {stderr}"
    );
    assert!(stderr.contains("fetching on from"), "{stderr}");
    let unique: std::collections::HashSet<&(String, String)> = asked.iter().collect();
    assert_eq!(unique.len(), asked.len(), "a range asked twice: {asked:?}");
    // 216 messages, at most 10 an answer: 22 is the least. Continuing from
    // each answer's last chat took 25 (the check is one of them); splitting
    // by density alone took 32.
    assert!(asked.len() <= 26, "{} requests: {asked:?}", asked.len());
}

#[tokio::test]
async fn answers_that_do_not_hold_the_earliest_chats_are_split_and_nothing_is_lost() {
    let server = serving(Subset {
        chats: two_days(),
        cap: 10,
    })
    .await;
    let (stderr, rows, asked) = capped_backfill(&server).await;
    assert_every_message_once(&rows);
    assert!(
        stderr.contains("capped answers do not hold the earliest"),
        "{stderr}"
    );
    assert!(!stderr.contains("fetching on from"), "{stderr}");
    let unique: std::collections::HashSet<&(String, String)> = asked.iter().collect();
    assert_eq!(unique.len(), asked.len(), "a range asked twice: {asked:?}");
}

/// The pipeline runs on a thread of its own for this source: a write that
/// fails there (a full disk) still ends the run with 73 and says why, and
/// nothing hangs.
#[tokio::test]
async fn a_full_disk_under_the_pipeline_thread_ends_the_run_with_73() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("SKIPPED: no /dev/full here");
        return;
    }
    let server = MockServer::start().await;
    let dir = config(&server.uri(), "record_cap = 100000\n");
    // Enough messages that batches reach the writer (and fail there) while
    // the answer is still being read.
    let start = local("2024-03-05 08:00:00");
    let chats: Vec<Value> = (0..40)
        .map(|i| chat(&format!("f{i}"), start + chrono::Duration::minutes(i), 200))
        .collect();
    Mock::given(path(REPORT))
        .respond_with(ok(chats))
        .mount(&server)
        .await;
    let r = export_day_messages(dir.path(), "/dev/full").await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("/dev/full"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("it stopped"),
        "the real cause: {}",
        r.stderr
    );
}

/// A loopback server answering every request with `body`, written in
/// pieces of `piece` bytes with a pause between them, so the answer
/// reaches the client cut at odd places (inside characters, inside
/// records). Returns its base URL.
fn trickled(body: Vec<u8>, piece: usize) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8).flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                for part in body.chunks(piece) {
                    if stream
                        .write_all(part)
                        .and_then(|()| stream.flush())
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    base
}

/// Message texts that need every kind of care: several-byte characters,
/// escapes the platform writes as `\uXXXX`, quotes and line breaks.
fn awkward_text(chat: usize, i: usize) -> String {
    format!(
        "{chat}/{i} ñandú 😀 \"Bogotá\"\nsí, mañana {}",
        "ó".repeat(i % 7)
    )
}

/// The answer's JSON as PHP writes it: non-ASCII escaped as `\uXXXX`.
fn php_json(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

#[tokio::test]
async fn a_large_answer_cut_anywhere_is_read_whole_in_place() {
    // Chats from one message to several hundred: records far smaller and
    // far larger than what is first read in place, some with raw UTF-8,
    // some escaped.
    let start = local("2024-03-05 08:00:00");
    let sizes: Vec<usize> = (0..40).map(|c| [1, 3, 25, 400, 60][c % 5]).collect();
    let chats: Vec<Value> = sizes
        .iter()
        .enumerate()
        .map(|(c, &n)| {
            let mut chat = chat(
                &format!("b{c}"),
                start + chrono::Duration::minutes(c as i64),
                n,
            );
            for (i, row) in chat["conversation"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .enumerate()
            {
                row["message"] = json!(awkward_text(c, i));
            }
            chat
        })
        .collect();
    let answer = json!({"code": 200, "error": null, "msg": "records were found", "data": chats});
    for (body, piece) in [
        (serde_json::to_vec(&answer).unwrap(), 4093),
        (php_json(&answer), 1201),
    ] {
        assert!(body.len() > 400_000, "large enough: {}", body.len());
        let base = trickled(body, piece);
        let dir = config(&base, "record_cap = 100000\nwindow = \"2d\"\n");
        let r = export_day_messages(dir.path(), "m.jsonl").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
        assert_eq!(rows.len(), sizes.iter().sum::<usize>());
        let mut expected = Vec::new();
        for (c, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                expected.push((format!("b{c}"), i as u64, awkward_text(c, i)));
            }
        }
        let got: Vec<(String, u64, String)> = rows
            .iter()
            .map(|m| {
                (
                    m["conversation_id"].as_str().unwrap().to_string(),
                    m["seq"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, expected, "every message once, in order, unaltered");
    }
}

#[tokio::test]
async fn an_answer_that_is_not_utf8_is_refused_not_exported() {
    let start = local("2024-03-05 08:00:00");
    let good = serde_json::to_vec(&json!({"code": 200, "data": [chat("u1", start, 3)]})).unwrap();
    // A Latin-1 "ó" (one byte, 0xF3) in the second chat's text.
    let text = String::from_utf8(good).unwrap();
    let mut body = text.replacen("]}", ",", 1).into_bytes();
    body.truncate(body.len() - 1);
    body.extend_from_slice(b",{\"conn_id\":\"u2\",\"conversation\":[{\"date\":\"2024-03-05 09:00:00\",\"message\":\"adi");
    body.push(0xF3);
    body.extend_from_slice(b"s\"}]}]}");
    let server = serving(ResponseTemplate::new(200).set_body_bytes(body)).await;
    let dir = config(&server.uri(), "max_retries = 1\n");
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
    assert!(
        !dir.path().join("m.jsonl").exists(),
        "nothing half-exported"
    );
}

/// Redacting, records reach the pipeline in batches on the reading thread
/// (no thread of its own): the same messages, ids and order as the plain
/// export, every one once across bisected windows, with the people's
/// details scrubbed; and a full disk still ends the run with 73.
#[tokio::test]
async fn a_redacted_capped_backfill_is_the_plain_one_scrubbed() {
    let server = serving(two_days_at_cap_10()).await;
    let dir = config(&server.uri(), "record_cap = 10\n");
    let export = |redact: bool, output: &str| {
        let mut args = vec![
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            "2024-03-07",
            "--records",
            "messages",
            "-o",
            output,
        ];
        if redact {
            args.push("--redact");
        }
        let mut cmd = command(dir.path(), &args);
        cmd.env("CHATDUMP_REDACT_KEY", "a key");
        run_command(cmd)
    };
    let plain = export(false, "plain.jsonl").await;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let redacted = export(true, "redacted.jsonl").await;
    assert_eq!(redacted.code, 0, "{}", redacted.stderr);
    let read = |name: &str| jsonl(&std::fs::read_to_string(dir.path().join(name)).unwrap());
    let (plain, redacted) = (read("plain.jsonl"), read("redacted.jsonl"));
    assert_every_message_once(&redacted);
    let identity = |rows: &[Value]| -> Vec<(Value, Value, Value, Value)> {
        rows.iter()
            .map(|m| {
                (
                    m["conversation_id"].clone(),
                    m["seq"].clone(),
                    m["message_id"].clone(),
                    m["text"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(identity(&redacted), identity(&plain));
    assert!(plain.iter().all(|m| m["customer_name"] == "Luis"));
    let text = std::fs::read_to_string(dir.path().join("redacted.jsonl")).unwrap();
    assert!(!text.contains("Luis") && !text.contains("57300"), "{text}");

    if std::path::Path::new("/dev/full").exists() {
        let full = export(true, "/dev/full").await;
        assert_eq!(full.code, 73, "{}", full.stderr);
        assert!(full.stderr.contains("/dev/full"), "{}", full.stderr);
    }
}

/// A hostile answer: one chat nested a hundred thousand levels deep. It
/// overflows no stack (not read in place, not walked recursively): it is
/// one rejected record, kept whole in the rejects file, and the chat
/// beside it is exported (65: not everything could be read).
#[tokio::test]
async fn a_chat_nested_beyond_any_parser_depth_is_rejected_without_a_crash() {
    let deep = format!(
        "{{\"conn_id\":\"d1\",\"conversation\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let good = chat("g1", local("2024-03-05 08:00:00"), 2).to_string();
    let body = format!("{{\"code\":200,\"data\":[{good},{deep}]}}");
    let server = serving(ResponseTemplate::new(200).set_body_string(body)).await;
    let dir = config(&server.uri(), "max_retries = 0\n");
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    assert_eq!(rows.len(), 2, "the good chat");
    assert!(rows.iter().all(|m| m["conversation_id"] == "g1"));
    let rejects =
        jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        rejects[0]["raw"].as_str().map(str::len),
        Some(deep.len()),
        "kept whole"
    );
}

/// An absurd record: one chat larger than `max_record_size`. It is refused
/// before it is held whole, read in place or not, and nothing is written.
#[tokio::test]
async fn a_chat_over_max_record_size_is_refused_before_it_is_held() {
    let big = chat("b1", local("2024-03-05 08:00:00"), 400);
    let server = serving(ok(vec![big])).await;
    let dir = config(
        &server.uri(),
        "max_retries = 0\nmax_record_size = \"4KiB\"\n",
    );
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stderr.contains("max_record_size"), "{}", r.stderr);
    assert!(!dir.path().join("m.jsonl").exists());
}

/// A planted file: a symlink where a redacted export's rejects go (its
/// records reach the pipeline in batches on the reading thread). The link
/// is not followed: exit 73, its target untouched, nothing exported.
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_planted_at_the_rejects_of_a_redacted_export_is_not_followed() {
    let rows = vec![
        chat("r1", local("2024-03-05 08:00:00"), 2),
        // A flat row without `conn_id`: rejected.
        json!({"date": "2024-03-05 09:00:00", "message": "hola"}),
    ];
    let server = serving(ok(rows)).await;
    let dir = config(&server.uri(), "");
    let d = dir.path();
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("m.jsonl.rejects.jsonl")).unwrap();
    let mut cmd = command(d, &day_messages(&["--redact", "-o", "m.jsonl"]));
    cmd.env("CHATDUMP_REDACT_KEY", "a key");
    let r = run_command(cmd).await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!d.join("m.jsonl").exists(), "nothing exported");
}

/// A hostile answer: a chat that names its id twice, the second time
/// another chat's, as if to file its messages under that one. serde refuses
/// a field given twice; the quick reader gives such a chat up to it rather
/// than take either id. The chat is one rejected record, all of it; the
/// chat beside it is exported; nothing is filed under the second id.
#[tokio::test]
async fn a_chat_naming_its_id_twice_is_rejected_not_filed_under_either() {
    let good = chat("g1", local("2024-03-05 08:00:00"), 2).to_string();
    let mut twice = chat("g2", local("2024-03-05 09:00:00"), 2).to_string();
    twice.insert_str(twice.len() - 1, ",\"conn_id\":\"victim\"");
    let body = format!("{{\"code\":200,\"data\":[{good},{twice}]}}");
    let server = serving(ResponseTemplate::new(200).set_body_string(body)).await;
    let dir = config(&server.uri(), "max_retries = 0\n");
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    let ids: Vec<&Value> = rows.iter().map(|m| &m["conversation_id"]).collect();
    assert_eq!(ids, ["g1", "g1"], "only the good chat");
    let rejects =
        jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        rejects[0]["raw"]["conversation"].as_array().map(Vec::len),
        Some(2),
        "kept whole: {}",
        rejects[0]
    );
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("duplicate field `conn_id`"),
        "{}",
        rejects[0]
    );
}

/// Absurd values: a chat id of nineteen digits sent as a number (beyond what
/// the quick reader takes, so serde reads it), and a message dated the 30th
/// of February. The id is kept digit for digit; the impossible date is one
/// rejected message, the rest of its chat exported in order.
#[tokio::test]
async fn a_nineteen_digit_id_is_kept_and_an_impossible_date_is_one_reject() {
    let mut long = chat("x", local("2024-03-05 08:00:00"), 3);
    long["conn_id"] = json!(1_234_567_890_123_456_789_u64);
    long["conversation"][1]["date"] = json!("2024-02-30 10:00:00");
    let server = serving(ok(vec![long])).await;
    let dir = config(&server.uri(), "max_retries = 0\n");
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["conversation_id"], "1234567890123456789");
    }
    assert_eq!(rows[0]["text"], "mensaje 0");
    assert_eq!(rows[1]["text"], "mensaje 2");
    assert_eq!((&rows[0]["seq"], &rows[1]["seq"]), (&json!(0), &json!(2)));
    let rejects =
        jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("2024-02-30"),
        "{}",
        rejects[0]
    );
}

/// Chat ids beyond 64 bits sent as numbers: serde_json reads such a number
/// as a float, which would make two chats differing in their last digits
/// one. Each keeps its own id, digit for digit, in the quick reader's
/// answer and in serde's.
#[tokio::test]
async fn ids_beyond_64_bits_keep_every_digit() {
    let a = chat("A", local("2024-03-05 08:00:00"), 2).to_string();
    // A nested value sends this chat to serde rather than the quick reader.
    let mut b = chat("B", local("2024-03-05 09:00:00"), 2);
    b["extra"] = json!({"nested": [1, 2]});
    let b = b.to_string();
    let body = format!(
        "{{\"code\":200,\"data\":[{},{}]}}",
        a.replace("\"A\"", "12345678901234567890123"),
        b.replace("\"B\"", "12345678901234567890124")
    );
    assert!(body.contains(":12345678901234567890124"), "{body}");
    let server = serving(ResponseTemplate::new(200).set_body_string(body)).await;
    let dir = config(&server.uri(), "max_retries = 0\n");
    let r = export_day_messages(dir.path(), "m.jsonl").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    let ids: Vec<&Value> = rows.iter().map(|m| &m["conversation_id"]).collect();
    assert_eq!(
        ids,
        [
            "12345678901234567890123",
            "12345678901234567890123",
            "12345678901234567890124",
            "12345678901234567890124"
        ]
    );
}

/// Defence in depth: should a bug ever panic (here the writer thread, made
/// to by a test-build switch, on a message whose text carries terminal
/// escapes), the run ends with 70, prints neither the text nor a raw
/// control character, leaves no temporary file, and the state keeps its
/// checkpoint.
#[tokio::test]
async fn a_panic_ends_with_70_quoting_nothing_and_committing_nothing() {
    let first = serving(ok(vec![chat("c1", local("2024-03-05 08:00:00"), 2)])).await;
    let dir = config(&first.uri(), "max_retries = 0\n");
    let window = |to: &'static str| {
        vec![
            "export",
            "bogota",
            "--from",
            "2024-03-05",
            "--to",
            to,
            "--records",
            "messages",
            "--state",
            "s.state",
            "-o",
            "m-{to}.jsonl",
        ]
    };
    let r = run(dir.path(), &window("2024-03-06")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let state = std::fs::read_to_string(dir.path().join("s.state")).unwrap();
    let files = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = files(dir.path());

    let mut bad = chat("c2", local("2024-03-06 08:00:00"), 2);
    bad["conversation"][1]["message"] =
        json!("Ana Pérez \u{1b}]0;owned\u{7}\u{1b}[31m CHATDUMP-TEST-PANIC");
    let second = serving(ok(vec![bad])).await;
    crate::common::edit_config(dir.path(), |text| text.replace(&first.uri(), &second.uri()));
    let mut cmd = crate::common::command(dir.path(), &window("2024-03-07"));
    cmd.env("CHATDUMP_TEST_PANIC", "1");
    let r = crate::common::run_command(cmd).await;
    assert_eq!(r.code, 70, "{}", r.stderr);
    assert!(r.stderr.contains("internal error"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("Pérez"),
        "record text printed: {}",
        r.stderr
    );
    assert!(
        !r.stderr.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character reached the terminal: {:?}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("s.state")).unwrap(),
        state,
        "the state moved"
    );
    assert_eq!(files(dir.path()), before, "files made or left by the run");
}

/// Answers with `first` the first time, `then` every time after.
struct FirstThen {
    first: String,
    then: String,
    asked: std::sync::atomic::AtomicUsize,
}

impl Respond for FirstThen {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_string(if n == 0 { &self.first } else { &self.then })
    }
}

async fn first_then(first: String, then: String) -> MockServer {
    serving(FirstThen {
        first,
        then,
        asked: Default::default(),
    })
    .await
}

/// A broken first answer, then a clean retry: only the retry's records
/// reach the output, whether the first broke in its JSON after good
/// records or was an error envelope that also carried records.
#[tokio::test]
async fn only_the_attempt_that_succeeds_reaches_the_output() {
    let failed = chat("failed-attempt", local("2024-03-05 08:00:00"), 2);
    let good = chat("retried", local("2024-03-05 09:00:00"), 2);
    let clean = json!({"code": 200, "error": null, "msg": "ok", "data": [good]}).to_string();
    let broken_json = format!("{{\"code\":200,\"data\":[{failed},{{\"conn_id\":\"x\",,]}}");
    let error_envelope =
        json!({"code": 429, "error": "TOO MANY SIMULTANEOUS REQUESTS", "msg": "", "data": [failed]})
            .to_string();
    for first in [broken_json, error_envelope] {
        let server = first_then(first, clean.clone()).await;
        let dir = config(&server.uri(), "max_retries = 2\n");
        let r = export_day_messages(dir.path(), "m.jsonl").await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
        let ids: Vec<&Value> = rows.iter().map(|m| &m["conversation_id"]).collect();
        assert_eq!(ids, ["retried", "retried"], "{}", r.stderr);
        let seqs: Vec<&Value> = rows.iter().map(|m| &m["seq"]).collect();
        assert_eq!(seqs, [0, 1]);
    }
}

/// An answer too large to hold whole (its records already flowing to the
/// output) that breaks is not retried in place: the run ends non-zero,
/// no file appears and the state does not move, so nothing of the broken
/// answer is kept and the next run fetches the window again.
#[tokio::test]
async fn a_large_answer_that_breaks_commits_nothing() {
    let big = chat("big", local("2024-03-05 08:00:00"), 9000);
    let first = format!("{{\"code\":200,\"data\":[{big},{{\"conn_id\":\"x\",,]}}");
    let clean =
        json!({"code": 200, "data": [chat("other", local("2024-03-05 09:00:00"), 1)]}).to_string();
    let server = first_then(first, clean).await;
    let dir = config(&server.uri(), "max_retries = 2\n");
    let r = run(
        dir.path(),
        &day_messages(&["-o", "m.jsonl", "--state", "s.state"]),
    )
    .await;
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("cannot take them back"), "{}", r.stderr);
    assert!(!dir.path().join("m.jsonl").exists());
    assert!(!dir.path().join("s.state").exists());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried in place"
    );
}
