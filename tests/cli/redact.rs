//! `--redact` end to end: generated chats full of known personal data, in
//! every field and inside texts, through both providers and both formats.

use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{caresoft_config, command, jsonl};

/// Personal data planted in the generated chats; none may reach an output.
struct Person {
    name: String,
    phone: String,
    email: String,
    id: String,
}

fn person(i: usize) -> Person {
    Person {
        name: format!("Nguyễn Văn Khách{i}"),
        phone: format!("09{:08}", 12_345_670 + i),
        email: format!("khach{i}@gmail.com"),
        id: format!("{}", 770_000_100 + i),
    }
}

const CARD: &str = "4111 1111 1111 1111";

fn caresoft_rows(n: usize) -> (Vec<Value>, Vec<Value>) {
    let mut chats = Vec::new();
    let mut messages = Vec::new();
    for i in 0..n {
        let p = person(i);
        let conv = format!("conv-{i}");
        let start = format!("2024-03-01 10:{:02}:00", i % 60);
        chats.push(json!({"conversation_id": conv, "start_time": start, "end_time": start, "cus_name": p.name,
            "cus_phone": p.phone, "cus_email": p.email, "customer_id": p.id.parse::<u64>().unwrap(),
            "agent_name": "Agent Smith", "agent_email": "smith@acme.vn", "chat_status": "LBL_CHAT_STATUS_MEET"}));
        messages.push(json!({"conversation_id": conv, "start_time": start, "time": start, "msg_id": format!("m{i}a"),
            "message_index": 1, "type": 1, "sender_visitor_id": p.id, "sender_visitor_name": p.name,
            "content": format!("em là {}, sđt {} (hoặc +84 {}), email {}, thẻ {CARD}. Đơn #A-1203 giá 450.000đ ngày 2024-03-01 lúc 10:30",
                p.name, p.phone, &p.phone[1..], p.email)}));
        messages.push(json!({"conversation_id": conv, "start_time": start, "time": start, "msg_id": format!("m{i}b"),
            "message_index": 2, "type": 1, "sender_agent_id": 42, "sender_agent_name": "Agent Smith",
            "content": format!("Dạ chị {} ơi, em gọi lại số {} nhé", p.name, p.phone)}));
    }
    (chats, messages)
}

async fn caresoft(n: usize) -> MockServer {
    let server = MockServer::start().await;
    let (chats, messages) = caresoft_rows(n);
    Mock::given(path("/acme/api/v1/chats"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": "ok", "numFound": n, "chats": chats})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/acme/api/v1/chats/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"code": "ok", "numFound": 2 * n, "chats": messages})),
        )
        .mount(&server)
        .await;
    server
}

async fn export(dir: &std::path::Path, key: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "export",
        "hanoi",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
    ];
    args.extend_from_slice(extra);
    let mut cmd = command(dir, &args);
    cmd.env("CHATDUMP_REDACT_KEY", key);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean(text: &str, n: usize, what: &str) {
    for i in 0..n {
        let p = person(i);
        for secret in [
            &p.name,
            &p.phone,
            &p.email,
            &p.id,
            &p.phone[1..].to_string(),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "{what}: {secret:?} survived"
            );
        }
    }
    assert!(
        !text.contains(CARD) && !text.contains("4111111111111111"),
        "{what}: card survived"
    );
    assert!(!text.contains("Khách"), "{what}: a name fragment survived");
}

#[tokio::test]
async fn no_personal_data_survives_in_any_format_or_mode() {
    let n = 12;
    let server = caresoft(n).await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    for (records, file) in [
        ("messages", "m.jsonl"),
        ("messages", "m.csv"),
        ("conversations", "c.jsonl"),
        ("conversations", "c.csv"),
    ] {
        for mode in ["--redact", "--redact=mask", "--redact=drop"] {
            let (code, stderr) = export(d, "k1", &["--records", records, "-o", file, mode]).await;
            assert_eq!(code, 0, "{stderr}");
            let text = std::fs::read_to_string(d.join(file)).unwrap();
            assert_clean(&text, n, &format!("{records} {file} {mode}"));
            assert!(
                text.contains("Agent Smith"),
                "agents stay without --redact-agents"
            );
            if records == "messages" {
                assert!(
                    text.contains("[PHONE]") && text.contains("[EMAIL]") && text.contains("[CARD]")
                );
                assert!(
                    text.contains("#A-1203")
                        && text.contains("450.000đ")
                        && text.contains("2024-03-01 lúc 10:30"),
                    "look-alikes stay"
                );
            }
        }
    }
    let (code, _) = export(
        d,
        "k1",
        &[
            "--records",
            "conversations",
            "-o",
            "a.jsonl",
            "--redact",
            "--redact-agents",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    assert!(!text.contains("Agent Smith") && !text.contains("smith@acme.vn"));
}

#[tokio::test]
async fn pseudonyms_are_stable_for_one_key_and_differ_for_another() {
    let n = 3;
    let server = caresoft(n).await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    let d = dir.path();
    let names = |file: &str| -> Vec<Value> {
        jsonl(&std::fs::read_to_string(d.join(file)).unwrap())
            .iter()
            .map(|v| v["customer_name"].clone())
            .collect()
    };
    export(d, "key-one", &["-o", "1.jsonl", "--redact"]).await;
    export(d, "key-one", &["-o", "2.jsonl", "--redact"]).await;
    export(d, "key-two", &["-o", "3.jsonl", "--redact"]).await;
    let (a, b, c) = (names("1.jsonl"), names("2.jsonl"), names("3.jsonl"));
    assert_eq!(a, b, "same key, same pseudonyms");
    assert_ne!(a, c, "another key, other pseudonyms");
    assert!(a[0].as_str().unwrap().starts_with("name:"));
    assert_ne!(a[0], a[1], "different people, different pseudonyms");
    // The customer's messages carry the same pseudonym as the conversation.
    export(
        d,
        "key-one",
        &["--records", "messages", "-o", "m.jsonl", "--redact"],
    )
    .await;
    let messages = jsonl(&std::fs::read_to_string(d.join("m.jsonl")).unwrap());
    assert_eq!(messages[0]["sender_name"], a[0]);
    assert_eq!(messages[0]["customer_name"], a[0]);
    assert_eq!(messages[1]["recipient_name"], a[0]);
}

#[tokio::test]
async fn hash_without_a_key_and_raw_with_redact_are_refused() {
    let server = caresoft(1).await;
    let dir = caresoft_config(&server.uri(), "");
    let mut cmd = command(dir.path(), &["export", "hanoi", "--redact"]);
    cmd.env_remove("CHATDUMP_REDACT_KEY");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHATDUMP_REDACT_KEY"));
    let (code, stderr) = export(dir.path(), "k", &["--redact", "--include-raw"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_key_variable_can_be_named_in_the_config_and_rejects_keep_only_shapes() {
    let server = MockServer::start().await;
    let p = person(0);
    Mock::given(path("/acme/api/v1/chats"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": "ok", "numFound": 1, "chats": [
            {"conversation_id": "x", "start_time": "not a time", "cus_name": p.name, "cus_phone": p.phone}]})))
        .mount(&server)
        .await;
    let dir = caresoft_config(&server.uri(), "conversation_types = [\"livechat\"]\n");
    crate::common::edit_config(dir.path(), |config| {
        format!("redact_key_env = \"MY_KEY\"\n{config}")
    });
    let mut cmd = command(
        dir.path(),
        &[
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--redact",
            "-o",
            "o.jsonl",
        ],
    );
    cmd.env("MY_KEY", "secret")
        .env_remove("CHATDUMP_REDACT_KEY");
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejects = std::fs::read_to_string(dir.path().join("o.jsonl.rejects.jsonl")).unwrap();
    assert_clean(&rejects, 1, "rejects");
    let line: Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(line["raw_shape"]["cus_name"], "<string>");
    let reason = line["reason"].as_str().unwrap();
    assert!(
        !reason.contains("not a time") && reason.contains("<value>"),
        "the reason quotes no value: {reason}"
    );
}
