//! CareSoft end to end: the binary against a wiremock CareSoft.

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{caresoft_config, export_day, fixture, jsonl, param, run, TOKEN};

const CHATS: &str = "/acme/api/v1/chats";
const MESSAGES: &str = "/acme/api/v1/chats/messages";

fn chat(id: &str, start: &str) -> Value {
    json!({"conversation_id": id, "start_time": start, "end_time": start, "cus_name": "Khách", "chat_status": "LBL_CHAT_STATUS_MEET"})
}

fn page(total: usize, rows: &[Value]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"code": "OK", "numFound": total, "chats": rows}))
}

fn empty() -> ResponseTemplate {
    page(0, &[])
}

/// Answers every conversation type and page not otherwise mocked with nothing.
async fn empty_fallback(server: &MockServer) {
    Mock::given(method("GET"))
        .respond_with(empty())
        .with_priority(100)
        .mount(server)
        .await;
}

fn requests_to(requests: &[Request], p: &str) -> Vec<Request> {
    requests
        .iter()
        .filter(|r| r.url.path() == p)
        .cloned()
        .collect()
}

const WINDOW: [&str; 4] = ["--from", "2024-03-01", "--to", "2024-03-02"];

#[tokio::test]
async fn pages_with_a_shifting_total_exactly_once() {
    let server = MockServer::start().await;
    let dir = caresoft_config(
        &server.uri(),
        "page_size = 2\nconversation_types = [\"livechat\"]\n",
    );
    // numFound says 3 on page 1, then grows to 5: a chat arrived while we
    // paged and pushed one row from page 1 onto page 2 (a duplicate).
    let rows: Vec<Value> = (1..=5)
        .map(|i| chat(&format!("c{i}"), &format!("2024-03-01 10:00:0{i}")))
        .collect();
    for (n, body) in [
        (1, page(3, &rows[0..2])),
        (2, page(5, &rows[1..3])),
        (3, page(5, &rows[3..5])),
        (4, page(5, &[])),
    ] {
        Mock::given(path(CHATS))
            .and(query_param("page", n.to_string()))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(body)
            .mount(&server)
            .await;
    }
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids: Vec<String> = jsonl(&r.stdout)
        .iter()
        .map(|v| v["conversation_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4", "c5"]);
    let pages: Vec<String> = requests_to(&server.received_requests().await.unwrap(), CHATS)
        .iter()
        .map(|r| param(r, "page").unwrap())
        .collect();
    assert_eq!(pages, ["1", "2", "3", "4"], "stops at the empty page");
}

#[tokio::test]
async fn short_page_ends_the_query_and_count_is_500_by_default() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .and(query_param("page", "1"))
        .and(query_param("count", "500"))
        .respond_with(page(9999, &[chat("only", "2024-03-01 08:00:00")]))
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jsonl(&r.stdout).len(), 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_conversation_type_is_asked_and_labelled() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "");
    for (kind, file) in [
        ("0", "chats-livechat.json"),
        ("1", "chats-facebook.json"),
        ("3", "chats-zalo.json"),
    ] {
        Mock::given(path(CHATS))
            .and(query_param("conversation_type", kind))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture(&format!("caresoft/{file}"))),
            )
            .mount(&server)
            .await;
    }
    let r = run(
        dir.path(),
        &[
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-08",
            "-o",
            "all.csv",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("all.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let channels: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[3].to_string())
        .collect();
    let count = |c: &str| channels.iter().filter(|x| *x == c).count();
    assert_eq!(
        (count("livechat"), count("facebook"), count("zalo")),
        (3, 1, 1),
        "{channels:?}"
    );
    // Seven one-day slices, three types each, one page each.
    assert_eq!(server.received_requests().await.unwrap().len(), 21);
}

#[tokio::test]
async fn message_windows_over_30_days_are_split() {
    let server = MockServer::start().await;
    let dir = caresoft_config(
        &server.uri(),
        "window = \"30d\"\nconversation_types = [\"zalo\"]\n",
    );
    empty_fallback(&server).await;
    let r = run(
        dir.path(),
        &[
            "export",
            "hanoi",
            "--from",
            "2024-01-01",
            "--to",
            "2024-02-15",
            "--records",
            "messages",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let requests = server.received_requests().await.unwrap();
    let windows: Vec<(String, String)> = requests_to(&requests, MESSAGES)
        .iter()
        .map(|r| {
            (
                param(r, "start_time_since").unwrap(),
                param(r, "start_time_to").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        [
            (
                "2024-01-01T00:00:00Z".to_string(),
                "2024-01-31T00:00:00Z".to_string()
            ),
            (
                "2024-01-31T00:00:00Z".to_string(),
                "2024-02-15T00:00:00Z".to_string()
            ),
        ]
    );
    assert!(requests_to(&requests, MESSAGES)
        .iter()
        .all(|r| param(r, "conversation_type").as_deref() == Some("3")));
}

#[tokio::test]
async fn messages_are_ordered_enriched_and_deduplicated() {
    let server = MockServer::start().await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\npage_size = 7\n",
    );
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("caresoft/chats-livechat.json")),
        )
        .mount(&server)
        .await;
    Mock::given(path(MESSAGES))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("caresoft/messages-livechat.json")),
        )
        .mount(&server)
        .await;
    let dir_path = dir.path();
    let r = run(
        dir_path,
        &[
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--records",
            "messages",
            "-o",
            "m.jsonl",
            "--config",
            "chatdump.toml",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir_path.join("m.jsonl")).unwrap());
    let ids: Vec<&str> = rows
        .iter()
        .map(|v| v["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["lc-1001", "lc-1002", "lc-1003", "lc-1004"],
        "sorted by message_index, no duplicates"
    );
    let seqs: Vec<i64> = rows.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(rows[0]["customer_name"], "Nguyễn Thị Hoa");
    assert_eq!(rows[0]["customer_phone"], "0912345678");
    assert_eq!(rows[0]["recipient_name"], "dungntt");
    assert_eq!(rows[1]["sender"], "agent");
    assert_eq!(
        rows[2]["text"],
        "Mã đơn: DH-88231\nSize hiện tại: M\nMuốn đổi: L"
    );
    assert_eq!(
        rows[3]["text"].as_str().unwrap().chars().next(),
        Some('='),
        "JSONL is not guarded"
    );
}

#[tokio::test]
async fn rate_limit_then_success_is_retried() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(json!({"code": "errors", "message": "Too Many Attempts."})),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path(CHATS))
        .respond_with(page(1, &[chat("after-429", "2024-03-01 12:00:00")]))
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &["-vv"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jsonl(&r.stdout)[0]["conversation_id"], "after-429");
    assert!(
        r.stderr.contains("HTTP 429"),
        "retries are visible at -v: {}",
        r.stderr
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(CHATS))
        .respond_with(page(1, &[chat("after-500", "2024-03-01 12:00:00")]))
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jsonl(&r.stdout)[0]["conversation_id"], "after-500");
}

#[tokio::test]
async fn persistent_server_errors_exit_69_after_retries() {
    let server = MockServer::start().await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\nmax_retries = 2\n",
    );
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &["-o", "x.jsonl"]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert!(
        r.stderr.contains("gave up after 3 attempts"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("/acme/api/v1/chats?"),
        "names the request: {}",
        r.stderr
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert!(!dir.path().join("x.jsonl").exists());
}

#[tokio::test]
async fn lockout_body_stops_with_69_and_says_when_to_retry() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"code": "errors", "message": "Domain incorrect too many times , retry after 15 minutes "}),
        ))
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert!(r.stderr.contains("15 minutes"), "{}", r.stderr);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "a lockout is not retried"
    );
    assert!(r.stdout.is_empty());
}

#[tokio::test]
async fn bad_token_exits_77() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "");
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "errors", "message": "Unauthorized"})),
        )
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &[]).await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(
        r.stderr.contains("tip:"),
        "says what to do next: {}",
        r.stderr
    );
    let r = run(dir.path(), &["check", "hanoi"]).await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stdout.contains("hanoi: FAILED"), "{}", r.stdout);
}

#[tokio::test]
async fn malformed_json_exits_65_and_writes_nothing() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("{\"code\":\"OK\",\"numFound\":2,\"chats\":[{\"conv"),
        )
        .mount(&server)
        .await;
    let r = export_day(dir.path(), "hanoi", &["-o", "out.csv"]).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "chatdump.toml")
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[tokio::test]
async fn unreadable_records_are_saved_and_the_rest_exported_with_65() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    Mock::given(path(CHATS))
        .respond_with(page(
            2,
            &[
                chat("good", "2024-03-01 09:00:00"),
                json!({"conversation_id": "bad", "start_time": "31/12/2024"}),
            ],
        ))
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export",
            "hanoi",
            WINDOW[0],
            WINDOW[1],
            WINDOW[2],
            WINDOW[3],
            "-o",
            "out.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let out = jsonl(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    assert_eq!(out.len(), 1);
    let rejects =
        jsonl(&std::fs::read_to_string(dir.path().join("out.jsonl.rejects.jsonl")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["raw"]["conversation_id"], "bad");
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .contains("start_time"));
}

#[tokio::test]
async fn token_never_appears_on_stderr_even_when_verbose() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "max_retries = 1\n");
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("echo: Bearer {TOKEN}")))
        .mount(&server)
        .await;
    let r = run(
        dir.path(),
        &[
            "export", "hanoi", "-vvv", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3],
        ],
    )
    .await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert!(
        r.stderr.contains("GET "),
        "the trace shows requests: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(TOKEN) && !r.stdout.contains(TOKEN),
        "{}",
        r.stderr
    );
    let r = run(dir.path(), &["sources"]).await;
    assert!(!r.stdout.contains(TOKEN));
    assert!(
        r.stdout.contains("hanoi") && r.stdout.contains("yes"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn check_succeeds_with_one_request() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "");
    Mock::given(path(CHATS))
        .and(query_param("count", "1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(empty())
        .mount(&server)
        .await;
    let r = run(dir.path(), &["check"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("hanoi: ok (caresoft"), "{}", r.stdout);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn configuration_errors_exit_78_and_name_the_key() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "colour = \"blue\"\n");
    let r = run(dir.path(), &["export", "hanoi"]).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(
        r.stderr.contains("chatdump.toml")
            && r.stderr.contains("\"hanoi\"")
            && r.stderr.contains("colour"),
        "{}",
        r.stderr
    );

    let dir = caresoft_config(&server.uri(), "");
    let mut cmd = crate::common::command(dir.path(), &["export", "hanoi"]);
    cmd.env_remove("CS_TOKEN");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CS_TOKEN"));

    let r = run(dir.path(), &["export", "nowhere"]).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(
        r.stderr.contains("hanoi"),
        "lists the configured sources: {}",
        r.stderr
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn dry_run_sends_nothing() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "");
    let r = run(
        dir.path(),
        &[
            "export",
            "hanoi",
            "--dry-run",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-04",
            "--records",
            "messages",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("slices:   3"), "{}", r.stdout);
    assert!(
        r.stdout.contains("at least 18"),
        "3 slices x 3 types x (chats + messages): {}",
        r.stdout
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// One conversation id answered under two conversation types: a file holds
/// it once, in its newest version; stdout shows both (a changelog).
#[tokio::test]
async fn a_conversation_under_two_types_is_one_row_in_a_file() {
    let server = MockServer::start().await;
    for (code, end, status) in [
        ("0", "2024-03-01 08:10:00", "LBL_CHAT_STATUS_MEET"),
        ("1", "2024-03-01 09:30:00", "LBL_CHAT_STATUS_MISS"),
    ] {
        Mock::given(path(CHATS))
            .and(query_param("conversation_type", code))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "code": "ok", "numFound": 2, "chats": [
                    {"conversation_id": "dup", "start_time": "2024-03-01 08:00:00", "end_time": end, "chat_status": status},
                    {"conversation_id": format!("only-{code}"), "start_time": "2024-03-01 08:00:00"}
                ]
            })))
            .mount(&server)
            .await;
    }
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\", \"facebook\"]\n",
    );
    for output in ["c.jsonl", "c.csv"] {
        let mut args = vec!["export", "hanoi", "-o", output];
        args.extend_from_slice(&WINDOW);
        let r = run(dir.path(), &args).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let text = std::fs::read_to_string(dir.path().join(output)).unwrap();
        assert_eq!(text.matches("dup").count(), 1, "{output}: {text}");
        assert!(
            text.contains("2024-03-01T02:30:00Z"),
            "{output}: the newest version: {text}"
        );
        assert!(text.contains("only-0") && text.contains("only-1"));
    }
    let mut args = vec!["export", "hanoi"];
    args.extend_from_slice(&WINDOW);
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dups: Vec<Value> = jsonl(&r.stdout)
        .into_iter()
        .filter(|v| v["conversation_id"] == "dup")
        .collect();
    assert_eq!(dups.len(), 2, "stdout is a changelog: {}", r.stdout);
    assert_eq!(
        dups[1]["updated_at"], "2024-03-01T02:30:00Z",
        "the newest comes last"
    );
}

/// Answers like CareSoft after a delay that varies from request to request,
/// so concurrent requests complete out of order.
struct Jittery(Vec<Value>);

impl wiremock::Respond for Jittery {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let q: std::collections::HashMap<String, String> =
            r.url.query_pairs().into_owned().collect();
        let bound = |k: &str| q[k].replace('T', " ").trim_end_matches('Z').to_string();
        let (since, to) = (bound("start_time_since"), bound("start_time_to"));
        let kind = q["conversation_type"].clone();
        let page: usize = q["page"].parse().unwrap();
        let count: usize = q["count"].parse().unwrap();
        let rows: Vec<Value> = self
            .0
            .iter()
            .filter(|c| {
                let s = c["start_time"].as_str().unwrap();
                s >= since.as_str() && s <= to.as_str()
            })
            .map(|c| {
                let mut c = c.clone();
                c["conversation_id"] =
                    json!(format!("{}-{kind}", c["conversation_id"].as_str().unwrap()));
                c
            })
            .collect();
        let body: Vec<&Value> = rows.iter().skip((page - 1) * count).take(count).collect();
        let jitter = r
            .url
            .as_str()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 40;
        ResponseTemplate::new(200)
            .set_body_json(json!({"code": "ok", "numFound": rows.len(), "chats": body}))
            .set_delay(std::time::Duration::from_millis(jitter))
    }
}

/// Queries, types and windows are fetched at once and complete in any
/// order; the output is byte for byte what one request at a time gives.
#[tokio::test]
async fn the_output_is_the_same_whatever_the_concurrency() {
    let rows = crate::state::chats(7 * 24, 60);
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(Jittery(rows))
        .mount(&server)
        .await;
    let mut outputs = Vec::new();
    for concurrency in [1, 8] {
        let dir = caresoft_config(
            &server.uri(),
            &format!("concurrency = {concurrency}\npage_size = 5\n"),
        );
        let r = run(
            dir.path(),
            &[
                "export",
                "hanoi",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-08",
                "-o",
                "o.csv",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        outputs.push(std::fs::read_to_string(dir.path().join("o.csv")).unwrap());
    }
    assert_eq!(
        outputs[0].lines().count(),
        1 + 7 * 24 * 3,
        "every chat of every type"
    );
    crate::common::assert_same_text(&outputs[1], &outputs[0]);
}

/// A primary that stays at 502 through its retries: the backup host (the
/// same tenant path) answers, and the summary says how many went there.
#[tokio::test]
async fn the_backup_host_takes_over_after_the_primary_stays_down() {
    let (primary, backup) = (MockServer::start().await, MockServer::start().await);
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(502))
        .mount(&primary)
        .await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": "ok", "numFound": 1,
            "chats": [{"conversation_id": "from-backup", "start_time": "2024-03-01 08:00:00"}]
        })))
        .mount(&backup)
        .await;
    let dir = caresoft_config(
        &primary.uri(),
        &format!(
            "conversation_types = [\"livechat\"]\nmax_retries = 2\nbackup_url = \"{}/acme\"\n",
            backup.uri()
        ),
    );
    let mut args = vec!["export", "hanoi", "-o", "o.jsonl"];
    args.extend_from_slice(&WINDOW);
    let r = run(dir.path(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read_to_string(dir.path().join("o.jsonl"))
        .unwrap()
        .contains("from-backup"));
    assert_eq!(
        primary.received_requests().await.unwrap().len(),
        3,
        "its own retries first"
    );
    assert!(r.stderr.contains("trying the backup host"), "{}", r.stderr);
    assert!(r.stderr.contains("1 to the backup host"), "{}", r.stderr);
    let sent = backup.received_requests().await.unwrap();
    assert_eq!(sent[0].headers["authorization"], format!("Bearer {TOKEN}"));
}

/// The lockout (a 404), a 429 or a 4xx is the platform speaking: the
/// backup host is never asked.
#[tokio::test]
async fn a_lockout_or_a_refusal_never_goes_to_the_backup() {
    let lockout = json!({"code": "errors", "message": "Domain incorrect too many times , retry after 15 minutes "});
    for (status, body, code) in [
        (404, lockout.clone(), 69),
        (401, json!({"code": "errors", "message": "bad token"}), 77),
        (429, json!({}), 69),
    ] {
        let (primary, backup) = (MockServer::start().await, MockServer::start().await);
        Mock::given(path(CHATS))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&primary)
            .await;
        let dir = caresoft_config(
            &primary.uri(),
            &format!(
                "conversation_types = [\"livechat\"]\nmax_retries = 1\nbackup_url = \"{}/acme\"\n",
                backup.uri()
            ),
        );
        let mut args = vec!["export", "hanoi"];
        args.extend_from_slice(&WINDOW);
        let r = run(dir.path(), &args).await;
        assert_eq!(r.code, code, "{status}: {}", r.stderr);
        assert!(
            backup.received_requests().await.unwrap().is_empty(),
            "{status}"
        );
    }
}

#[tokio::test]
async fn check_reports_the_platform_status_page() {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": "ok", "numFound": 0, "chats": []})),
        )
        .mount(&server)
        .await;
    for (monitors, expect) in [
        (
            json!([{"id": 1, "name": "API", "status": 1}, {"id": 2, "name": "Web", "status": 1}]),
            "up (2 monitors)",
        ),
        (
            json!([{"id": 1, "name": "API", "status": 0}, {"id": 2, "name": "Web", "status": 1}]),
            "DOWN: 1 of 2 monitors (API)",
        ),
    ] {
        let status = MockServer::start().await;
        Mock::given(path("/api/v1/heartbeat"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"generated_at": "2024-03-01T00:00:00Z", "title": "CareSoft", "monitors": monitors}),
            ))
            .mount(&status)
            .await;
        let dir = caresoft_config(
            &server.uri(),
            &format!("status_url = \"{}/api/v1/heartbeat\"\n", status.uri()),
        );
        let r = run(dir.path(), &["check", "hanoi"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout
                .contains(&format!("hanoi: platform status: {expect}")),
            "{}",
            r.stdout
        );
        let asked = status.received_requests().await.unwrap();
        assert!(
            !asked[0].headers.contains_key("authorization"),
            "no credentials to the status page"
        );
    }
}

/// A date at the edge of what a date library holds, written with `--tz`:
/// a rejected record naming the date, the rest exported, never a panic of
/// the writer (which would stall a cron job on every run).
#[tokio::test]
async fn a_date_beyond_four_digit_years_is_a_reject_not_a_panic() {
    let server = MockServer::start().await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\nmax_retries = 0\n",
    );
    let rows = [
        chat("c1", "2024-03-01 10:00:00"),
        chat("c2", "+262142-12-31 23:59:59"),
        chat("c3", "9999-12-31 23:00:00"),
    ];
    Mock::given(path(CHATS))
        .and(query_param("page", "1"))
        .respond_with(page(3, &rows))
        .mount(&server)
        .await;
    empty_fallback(&server).await;
    for zone in ["Pacific/Kiritimati", "Etc/GMT+12"] {
        let r = export_day(dir.path(), "hanoi", &["--tz", zone, "-o", "c.jsonl"]).await;
        assert_eq!(r.code, 65, "{}", r.stderr);
        let out = jsonl(&std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap());
        let ids: Vec<&Value> = out.iter().map(|c| &c["conversation_id"]).collect();
        assert_eq!(ids, ["c1"], "{}", r.stderr);
        let rejects = std::fs::read_to_string(dir.path().join("c.jsonl.rejects.jsonl")).unwrap();
        assert!(
            rejects.contains("outside the years 0001 to 9999"),
            "{rejects}"
        );
        std::fs::remove_file(dir.path().join("c.jsonl.rejects.jsonl")).unwrap();
    }
}

/// A secret variable holding a stray line break inside, or only spaces, is
/// a configuration error naming the variable, before any request (not a
/// "platform unavailable" after retries, nor `Bearer    ` sent); one
/// trailing line break, as a secret file has, is dropped.
#[tokio::test]
async fn secrets_with_spaces_or_line_breaks_are_configuration_errors() {
    let server = MockServer::start().await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    for bad in ["tok\nen", "   ", "tok\n\n", " tok"] {
        let mut cmd = crate::common::command(
            dir.path(),
            &[
                "export", "hanoi", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3],
            ],
        );
        cmd.env("CS_TOKEN", bad);
        let r = crate::common::run_command(cmd).await;
        assert_eq!(r.code, 78, "{bad:?}: {}", r.stderr);
        assert!(r.stderr.contains("CS_TOKEN"), "{}", r.stderr);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    Mock::given(path(CHATS))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(empty())
        .mount(&server)
        .await;
    let mut cmd = crate::common::command(
        dir.path(),
        &[
            "export", "hanoi", WINDOW[0], WINDOW[1], WINDOW[2], WINDOW[3],
        ],
    );
    cmd.env("CS_TOKEN", format!("{TOKEN}\n"));
    let r = crate::common::run_command(cmd).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Answers page 2 with page 1's rows the first `glitches` times it is asked
/// (a cache glitch), every page right otherwise; 10 chats in 5 pages.
struct Glitching {
    rows: Vec<Value>,
    glitches: usize,
    asked: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for Glitching {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let mut p: usize = param(r, "page").unwrap().parse().unwrap();
        if p == 2 && self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < self.glitches {
            p = 1;
        }
        let rows = &self.rows[((p - 1) * 2).min(10)..(p * 2).min(10)];
        page(10, rows)
    }
}

async fn glitching_server(glitches: usize) -> MockServer {
    let server = MockServer::start().await;
    let rows: Vec<Value> = (0..10)
        .map(|i| chat(&format!("c{i}"), &format!("2024-03-01 10:00:{i:02}")))
        .collect();
    Mock::given(path(CHATS))
        .respond_with(Glitching {
            rows,
            glitches,
            asked: Default::default(),
        })
        .mount(&server)
        .await;
    server
}

/// Page 2 repeats page 1 once while the total announces 5 pages: page 2 is
/// asked again, and every chat is exported once.
#[tokio::test]
async fn a_page_repeating_another_once_is_asked_again() {
    let server = glitching_server(1).await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\npage_size = 2\n",
    );
    let r = export_day(dir.path(), "hanoi", &["-o", "c.jsonl"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap());
    let ids: Vec<&str> = rows
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
    );
}

/// Page 2 keeps repeating page 1 while the total announces 5 pages: the
/// run ends non-zero, no file appears and the checkpoint stays where it
/// was, so the next run reads those chats (it once exited 0, advancing
/// past them).
#[tokio::test]
async fn a_page_that_keeps_repeating_another_commits_nothing() {
    let server = glitching_server(usize::MAX).await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\npage_size = 2\nmax_retries = 2\n",
    );
    let r = export_day(
        dir.path(),
        "hanoi",
        &["-o", "c.jsonl", "--state", "s.state"],
    )
    .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stderr.contains("repeat"), "{}", r.stderr);
    assert!(!dir.path().join("c.jsonl").exists());
    assert!(!dir.path().join("s.state").exists());
    let asked = server.received_requests().await.unwrap().len();
    assert!(asked <= 10, "{asked} requests");
}

/// Pages of new rows without end, under a total of 10^18: the window's
/// collected pages reach `max_window_memory` and the run ends cleanly
/// (65, with advice, nothing committed) instead of growing until the
/// kernel kills it.
#[tokio::test]
async fn endless_pages_of_new_rows_end_at_the_window_memory_budget() {
    struct Endless;
    impl wiremock::Respond for Endless {
        fn respond(&self, r: &Request) -> ResponseTemplate {
            let p: usize = param(r, "page").unwrap().parse().unwrap();
            let rows: Vec<Value> = (0..2)
                .map(|i| {
                    chat(
                        &format!("p{p}-{i}-{}", "x".repeat(200)),
                        "2024-03-01 10:00:00",
                    )
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(
                json!({"code": "OK", "numFound": 1_000_000_000_000_000_000u64, "chats": rows}),
            )
        }
    }
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(Endless)
        .mount(&server)
        .await;
    let dir = caresoft_config(
        &server.uri(),
        "conversation_types = [\"livechat\"]\npage_size = 2\nmax_window_memory = \"256KiB\"\n",
    );
    let r = export_day(
        dir.path(),
        "hanoi",
        &["-o", "c.jsonl", "--state", "s.state"],
    )
    .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stderr.contains("max_window_memory"), "{}", r.stderr);
    assert!(!dir.path().join("c.jsonl").exists() && !dir.path().join("s.state").exists());
    let asked = server.received_requests().await.unwrap().len();
    assert!(asked < 2000, "{asked} requests");
}
