//! Wolkvox `enrich = ["chat_1"]` end to end: the `chat_1` report joined to
//! the `chat_2` messages by `conn_id`, in conversations and in messages.

use std::collections::HashSet;

use serde_json::{json, Value};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{fixture, jsonl, run};

const REPORT: &str = "/api/v2/reports_manager.php";

fn config(base: &str, extra: &str) -> tempfile::TempDir {
    crate::wolkvox::config(base, &format!("enrich = [\"chat_1\"]\n{extra}"))
}

/// The two fixtures for 2024-03-05 (Bogota), 404 for any other day.
async fn serve_fixtures(server: &MockServer) {
    for (api, file) in [("chat_2", "chat_2-nested.json"), ("chat_1", "chat_1.json")] {
        Mock::given(path(REPORT))
            .and(query_param("api", api))
            .and(query_param("date_ini", "20240305000000"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture(&format!("wolkvox/{file}"))),
            )
            .mount(server)
            .await;
    }
    Mock::given(path(REPORT))
        .respond_with(ResponseTemplate::new(404))
        .mount(server)
        .await;
}

const DAY: [&str; 4] = ["--from", "2024-03-05", "--to", "2024-03-06"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["export", "bogota"];
    all.extend(DAY);
    all.extend(extra);
    all
}

fn by_id(rows: &[Value]) -> std::collections::HashMap<String, &Value> {
    rows.iter()
        .map(|r| (r["conversation_id"].as_str().unwrap().to_string(), r))
        .collect()
}

#[tokio::test]
async fn conversations_carry_the_chat_1_details_and_keep_chats_of_one_report() {
    let server = MockServer::start().await;
    serve_fixtures(&server).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    let rows = by_id(&rows);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let joined = rows["55501"];
    assert_eq!(joined["message_count"], 6, "from the messages");
    assert_eq!(joined["agent_id"], "1001");
    assert_eq!(joined["duration_s"], 512, "the platform's chat_duration");
    assert_eq!(joined["wait_s"], 35, "ASA");
    assert_eq!(joined["queue"], "3", "skill_id");
    assert_eq!(joined["customer_email"], "maria.perez@correo.com.co");
    assert_eq!(joined["customer_id"], "1020304050");
    assert_eq!(joined["sentiment"], "positive");
    assert_eq!(joined["disposition_code"], "12");
    assert_eq!(joined["disposition"], "Venta plan hogar");
    assert_eq!(joined["started_at"], "2024-03-05T14:22:10Z");
    // Details of nothing but empty strings change nothing.
    assert_eq!(rows["55502"]["message_count"], 1);
    assert_eq!(rows["55502"]["agent_id"], Value::Null);
    assert_eq!(rows["55502"]["agent_name"], "Laura Ríos");
    // A chat only chat_1 knows is kept, without a message count.
    let alone = rows["55503"];
    assert_eq!(alone["message_count"], Value::Null);
    assert_eq!(alone["agent_id"], "1002");
    assert_eq!(alone["comments"], "Cliente no respondió");
    assert_eq!(alone["updated_at"], "2024-03-06T01:10:00Z");
    assert!(
        r.stderr
            .contains("0 conversations had messages but no details, 1 had details but no messages"),
        "{}",
        r.stderr
    );
    // One token per report per day.
    let apis: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| param(r, "api"))
        .collect();
    assert_eq!(apis, ["chat_1", "chat_2"]);
}

#[tokio::test]
async fn message_rows_get_the_agent_id_of_their_chat() {
    let server = MockServer::start().await;
    serve_fixtures(&server).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&["--records", "messages"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    assert_eq!(rows.len(), 7);
    for row in &rows {
        let want = match row["conversation_id"].as_str().unwrap() {
            "55501" => json!("1001"),
            _ => Value::Null,
        };
        assert_eq!(row["agent_id"], want, "{row}");
    }
    assert!(
        rows.iter().all(|r| r.get("disposition").is_none()),
        "message rows keep their columns"
    );
    assert!(
        r.stderr.contains("1 had details but no messages"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn agent_notes_are_scrubbed_and_customer_fields_redacted() {
    let server = MockServer::start().await;
    serve_fixtures(&server).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&["--redact=mask"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    let rows = by_id(&rows);
    let c = rows["55501"];
    assert_eq!(
        c["comments"],
        "María pide que la llamen al [PHONE] después de las 5"
    );
    assert_eq!(c["customer_email"], "[EMAIL]");
    assert_eq!(c["customer_id"], "[ID]");
    assert!(!r.stdout.contains("300 123 4567"));
    assert!(!r.stdout.contains("maria.perez@"));
}

#[tokio::test]
async fn dry_run_counts_two_tokens_a_window_with_chat_1() {
    let server = MockServer::start().await;
    for (enrich, tokens) in [(true, "at least 14 of"), (false, "at least 7 of")] {
        let dir = config(&server.uri(), "");
        if !enrich {
            crate::common::edit_config(dir.path(), |text| {
                text.replace("enrich = [\"chat_1\"]", "enrich = []")
            });
        }
        let r = run(
            dir.path(),
            &[
                "export",
                "bogota",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-08",
                "--dry-run",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains(tokens), "{enrich}: {}", r.stdout);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_report_to_join_is_a_config_error() {
    let dir = config("http://127.0.0.1:9", "");
    crate::common::edit_config(dir.path(), |text| {
        text.replace("[\"chat_1\"]", "[\"chat_9\"]")
    });
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("chat_9"), "{}", r.stderr);
}

fn param(r: &Request, key: &str) -> String {
    crate::common::param(r, key).unwrap_or_default()
}

/// Both reports of a day of chats, one an hour: `chat_2` with two messages
/// each, `chat_1` with a row each (one without `conn_id`), both truncated
/// at `cap` records like the platform.
struct Day {
    cap: usize,
}

impl Respond for Day {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let bound =
            |k: &str| chrono::NaiveDateTime::parse_from_str(&param(r, k), "%Y%m%d%H%M%S").unwrap();
        let (from, to) = (bound("date_ini"), bound("date_end"));
        let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 5).unwrap();
        let mut data = Vec::new();
        let mut records = 0;
        for hour in 0..24 {
            let start = day.and_hms_opt(hour, 30, 0).unwrap();
            if start < from || start > to || records >= self.cap {
                continue;
            }
            let date = start.format("%Y-%m-%d %H:%M:%S").to_string();
            if param(r, "api") == "chat_1" {
                let id = if hour == 7 {
                    String::new()
                } else {
                    format!("h{hour}")
                };
                data.push(json!({"conn_id": id, "date": date, "agent_id": format!("a{hour}"), "ASA": "9", "agent_anwers ": "1"}));
                records += 1;
            } else {
                let rows: Vec<Value> = (0..2)
                    .map(|i| json!({"from": "CUSTOMER", "date": date, "message": format!("m{i}")}))
                    .take(self.cap - records)
                    .collect();
                records += rows.len();
                data.push(json!({"conn_id": format!("h{hour}"), "conversation": rows}));
            }
        }
        ResponseTemplate::new(200).set_body_json(json!({"code": 200, "error": null, "data": data}))
    }
}

#[tokio::test]
async fn a_capped_chat_1_window_is_split_like_chat_2_and_no_slice_is_fetched_twice() {
    let server = MockServer::start().await;
    Mock::given(path(REPORT))
        .respond_with(Day { cap: 5 })
        .mount(&server)
        .await;
    let dir = config(&server.uri(), "record_cap = 5\n");
    let r = run(dir.path(), &args(&["-o", "c.jsonl"])).await;
    assert_eq!(r.code, 65, "the row without conn_id: {}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap();
    let rows = jsonl(&text);
    assert_eq!(rows.len(), 24, "every chat once");
    for row in &rows {
        let hour = row["conversation_id"]
            .as_str()
            .unwrap()
            .trim_start_matches('h');
        let want = if hour == "7" {
            Value::Null
        } else {
            json!(format!("a{hour}"))
        };
        assert_eq!(row["agent_id"], want, "{row}");
        assert_eq!(row["message_count"], 2, "{row}");
    }
    let rejects = std::fs::read_to_string(dir.path().join("c.jsonl.rejects.jsonl")).unwrap();
    assert!(rejects.contains("without conn_id"), "{rejects}");
    assert!(
        r.stderr
            .contains("1 conversation had messages but no details"),
        "{}",
        r.stderr
    );
    let requests = server.received_requests().await.unwrap();
    let chat_1: Vec<(String, String)> = requests
        .iter()
        .filter(|r| param(r, "api") == "chat_1")
        .map(|r| (param(r, "date_ini"), param(r, "date_end")))
        .collect();
    assert!(
        chat_1.len() > 1,
        "the capped chat_1 day was split: {chat_1:?}"
    );
    let unique: HashSet<&(String, String)> = chat_1.iter().collect();
    assert_eq!(
        unique.len(),
        chat_1.len(),
        "a slice fetched twice: {chat_1:?}"
    );
}

#[tokio::test]
async fn a_lookback_that_fetches_the_day_again_writes_no_chat_twice() {
    let server = MockServer::start().await;
    serve_fixtures(&server).await;
    let dir = config(&server.uri(), "lookback = \"1d\"\n");
    let first = run(
        dir.path(),
        &args(&["--state", "b.state", "-o", "first.jsonl"]),
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let text = std::fs::read_to_string(dir.path().join("first.jsonl")).unwrap();
    assert_eq!(jsonl(&text).len(), 3);
    // The checkpoint is the day's end; a day of lookback asks for it again.
    let again = run(
        dir.path(),
        &[
            "export",
            "bogota",
            "--state",
            "b.state",
            "--to",
            "2024-03-06",
            "-o",
            "again.jsonl",
        ],
    )
    .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let text = std::fs::read_to_string(dir.path().join("again.jsonl")).unwrap();
    assert_eq!(jsonl(&text), Vec::<Value>::new(), "{}", again.stderr);
    let days: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| param(r, "date_ini"))
        .collect();
    assert_eq!(days.len(), 4, "the day was fetched again: {days:?}");
}

#[tokio::test]
async fn skill_names_are_looked_up_once_a_run() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/information.php"))
        .and(query_param("api", "skills"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": "200", "error": null, "msg": "2 records were found",
            "data": [
                {"skill_id": "3", "skill_name": "Ventas hogar", "skill_description": "", "last_use": ""},
                {"skill_id": 9, "skill_name": "Soporte", "skill_description": "", "last_use": ""}
            ]
        })))
        .mount(&server)
        .await;
    serve_fixtures(&server).await;
    let dir = config(&server.uri(), "");
    crate::common::edit_config(dir.path(), |text| {
        text.replace("[\"chat_1\"]", "[\"chat_1\", \"skills\"]")
    });
    // Two days, a file each: still one lookup.
    let two_days = [
        "export",
        "bogota",
        "--from",
        "2024-03-05",
        "--to",
        "2024-03-07",
        "-o",
        "out/{from}.jsonl",
    ];
    let plan = run(dir.path(), &[&two_days[..], &["--dry-run"]].concat()).await;
    assert!(
        plan.stdout.contains("at least 5 of"),
        "2 days x 2 reports + 1 lookup: {}",
        plan.stdout
    );
    let r = run(dir.path(), &two_days).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("out/20240305T050000Z.jsonl")).unwrap();
    let rows = jsonl(&text);
    let rows = by_id(&rows);
    assert_eq!(rows["55501"]["queue"], "Ventas hogar");
    assert_eq!(rows["55503"]["queue"], "5", "an unknown skill keeps its id");
    let lookups = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("information.php"))
        .count();
    assert_eq!(lookups, 1);
}

#[tokio::test]
async fn skills_without_chat_1_is_a_config_error() {
    let dir = config("http://127.0.0.1:9", "");
    let file = dir.path().join("chatdump.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("[\"chat_1\"]", "[\"skills\"]")).unwrap();
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("add \"chat_1\""), "{}", r.stderr);
}
