//! UJET messages from chat transcripts in a local folder, end to end: the
//! binary against a fake Manager API, with the transcripts the platform's
//! external storage would hold.

use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::common::{fixture, jsonl, run};
use crate::ujet::{config, manager};

fn chat(id: Value, status: &str, minute: u32) -> Value {
    json!({"id": id, "status": status, "chat_type": "Messaging (WhatsApp)",
           "created_at": format!("2024-03-05T10:{minute:02}:00.000Z"),
           "updated_at": format!("2024-03-05T11:{minute:02}:00.000Z"),
           "agent_info": {"id": 7, "name": "Ana Torres"}, "end_user": {"id": 55}})
}

/// Chats 100 (JSON transcript), 101 (text), 102 (empty transcript), 103
/// (under way, none), 104 (ended, none yet) and one whose id would leave
/// the folder.
fn chats() -> Vec<Value> {
    vec![
        chat(json!(100), "finished", 1),
        chat(json!(101), "finished", 2),
        chat(json!(102), "finished", 3),
        chat(json!(103), "queued", 4),
        chat(json!(104), "finished", 5),
        chat(json!("../escape"), "finished", 6),
    ]
}

fn folder(dir: &Path) -> std::path::PathBuf {
    let folder = dir.join("transcripts");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("chat-100.json"),
        fixture("ujet/transcripts/chat-31354.json"),
    )
    .unwrap();
    std::fs::write(
        folder.join("chat-101.txt"),
        fixture("ujet/transcripts/chat-31355.txt"),
    )
    .unwrap();
    std::fs::write(
        folder.join("chat-102.json"),
        fixture("ujet/transcripts/chat-31357.json"),
    )
    .unwrap();
    // Beside the folder: what an id with `..` would reach.
    std::fs::write(
        dir.join("chat-escape.json"),
        r#"{"entries":[{"role":"agent","body":{"type":"text","content":"secret"}}]}"#,
    )
    .unwrap();
    folder
}

const DAY: [&str; 4] = [
    "--from",
    "2024-03-05T00:00:00Z",
    "--to",
    "2024-03-06T00:00:00Z",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["export", "support", "--records", "messages"];
    all.extend(DAY);
    all.extend(extra);
    all
}

/// The same state run again, later: it resumes at the checkpoint.
async fn next_run(dir: &Path, output: &str) -> crate::common::Run {
    run(
        dir,
        &[
            "export",
            "support",
            "--records",
            "messages",
            "--state",
            "s.state",
            "--to",
            "2024-03-06T00:00:00Z",
            "-o",
            output,
        ],
    )
    .await
}

fn setup(server: &wiremock::MockServer) -> tempfile::TempDir {
    let dir = config(&server.uri(), "");
    let folder = folder(dir.path());
    crate::common::edit_config(dir.path(), |text| {
        format!("{text}transcripts = \"{}\"\n", folder.display())
    });
    dir
}

#[tokio::test]
async fn messages_come_from_the_transcripts_and_a_missing_one_is_reported() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let r = run(dir.path(), &args(&["-o", "m.jsonl"])).await;
    assert_eq!(r.code, 65, "a transcript is missing: {}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    let of =
        |id: &str| -> Vec<&Value> { rows.iter().filter(|m| m["conversation_id"] == id).collect() };
    let json_chat = of("100");
    assert_eq!(json_chat.len(), 12);
    let seqs: Vec<i64> = json_chat
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());
    assert_eq!(json_chat[2]["sender"], "customer");
    assert_eq!(json_chat[2]["text"], "Hola, quiero cambiar mi plan 📱");
    assert_eq!(json_chat[2]["sent_at"], "2024-03-05T07:27:24Z");
    assert_eq!(json_chat[3]["sender"], "agent");
    assert_eq!(json_chat[3]["sender_name"], "Ana Torres");
    assert_eq!(json_chat[4]["text"], "[photo 7781]");
    assert_eq!(json_chat[1]["sender"], "bot");
    assert_eq!(json_chat[0]["sender"], "system");
    // The chat's own fields, joined from the Manager API.
    assert!(json_chat.iter().all(|m| m["agent_id"] == "7"
        && m["agent_name"] == "Ana Torres"
        && m["customer_id"] == "55"
        && m["channel"] == "whatsapp"));
    let text_chat = of("101");
    assert_eq!(text_chat.len(), 4);
    assert_eq!(text_chat[1]["sender_name"], "Bruno Díaz");
    assert_eq!(text_chat[3]["text"], "gracias 🙏");
    assert!(of("102").is_empty(), "an empty transcript");
    assert!(of("103").is_empty(), "a chat under way");
    assert!(of("104").is_empty());
    assert!(!r.stdout.contains("secret") && !rows.iter().any(|m| m["text"] == "secret"));
    let rejects = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("chat 104 has ended but its transcript is not there yet"),
        "{rejects}"
    );
    assert!(
        rejects.contains("cannot name a transcript file"),
        "{rejects}"
    );
    assert!(r.stderr.contains("not there yet"), "{}", r.stderr);
}

#[tokio::test]
async fn a_late_transcript_is_read_by_the_next_state_run() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let first = run(dir.path(), &args(&["--state", "s.state", "-o", "a.jsonl"])).await;
    assert_eq!(first.code, 65, "{}", first.stderr);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.state")).unwrap())
            .unwrap();
    assert_eq!(state["awaiting"].as_array().unwrap().len(), 1, "{state}");
    // Still missing on the next run: not reported again.
    let again = next_run(dir.path(), "b.jsonl").await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("not there yet"), "{}", again.stderr);
    // The platform writes it; the next run reads it.
    std::fs::write(
        dir.path().join("transcripts/chat-104.json"),
        r#"{"comm_type":"chat","comm_id":104,"transcript_version":"1.0","entries":[
            {"timestamp":1709636700,"type":"text","role":"end_user","user_data":{},"body":{"type":"text","content":"¿sigue ahí?"}},
            {"timestamp":1709636760,"type":"text","role":"agent","user_data":{"name":"Ana Torres"},"body":{"type":"text","content":"Sí, aquí estoy"}}]}"#,
    )
    .unwrap();
    let late = next_run(dir.path(), "c.jsonl").await;
    assert_eq!(late.code, 0, "{}", late.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap());
    let texts: Vec<&str> = rows.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["¿sigue ahí?", "Sí, aquí estoy"]);
    assert!(rows
        .iter()
        .all(|m| m["conversation_id"] == "104" && m["agent_id"] == "7"));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.state")).unwrap())
            .unwrap();
    assert!(state.get("awaiting").is_none(), "{state}");
}

#[tokio::test]
async fn transcript_text_is_redacted_and_raw_entries_kept() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let r = run(dir.path(), &args(&["--redact=mask"])).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stdout.contains("mi correo es [EMAIL]"), "{}", r.stdout);
    assert!(!r.stdout.contains("ana.perez@example.com"));
    let raw = run(dir.path(), &args(&["--include-raw"])).await;
    let rows = jsonl(&raw.stdout);
    let photo = rows.iter().find(|m| m["text"] == "[photo 7781]").unwrap();
    assert_eq!(photo["raw"]["body"]["media_id"], 7781);
}

#[tokio::test]
async fn conversations_get_the_message_count_they_lack() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let r = run(
        dir.path(),
        &[
            "export",
            "support",
            "--from",
            "2024-03-05T00:00:00Z",
            "--to",
            "2024-03-06T00:00:00Z",
        ],
    )
    .await;
    let rows = jsonl(&r.stdout);
    let count = |id: &str| {
        rows.iter()
            .find(|c| c["conversation_id"] == id)
            .map(|c| c["message_count"].clone())
    };
    assert_eq!(count("100"), Some(json!(11)), "system notices aside");
    assert_eq!(count("101"), Some(json!(4)));
    assert_eq!(count("102"), Some(json!(0)));
    assert_eq!(count("104"), Some(Value::Null), "no transcript, no count");
}

#[tokio::test]
async fn check_reads_the_folder_and_bad_locations_are_config_errors() {
    let server = manager(chats(), false, |_, _| {}).await;
    Mock::given(path("/manager/api/v1/settings/organization"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let dir = setup(&server);
    let r = run(dir.path(), &["check", "support"]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("transcripts: 3 files in"), "{}", r.stdout);
    std::fs::rename(dir.path().join("transcripts"), dir.path().join("elsewhere")).unwrap();
    let r = run(dir.path(), &["check", "support"]).await;
    assert_eq!(r.code, 78, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("transcripts folder"), "{}", r.stderr);
    crate::common::edit_config(dir.path(), |text| {
        text.lines()
            .map(|l| {
                if l.starts_with("transcripts") {
                    "transcripts = \"ftp://acme.example/chats\""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("gcloud storage rsync"), "{}", r.stderr);
}

#[tokio::test]
async fn without_transcripts_messages_are_refused_with_the_way_to_get_them() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("set `transcripts`"), "{}", r.stderr);
}

#[tokio::test]
async fn a_transcript_that_never_comes_is_given_up_after_a_week_and_reported() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let first = run(dir.path(), &args(&["--state", "s.state", "-o", "a.jsonl"])).await;
    assert_eq!(first.code, 65, "{}", first.stderr);
    // A week and a day later (as far as the state knows).
    let file = dir.path().join("s.state");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let since = chrono::Utc::now() - chrono::Duration::days(8);
    state["awaiting"][0]["since"] = json!(since.to_rfc3339());
    std::fs::write(&file, state.to_string()).unwrap();
    let later = next_run(dir.path(), "b.jsonl").await;
    assert_eq!(later.code, 65, "reported again: {}", later.stderr);
    let rejects = std::fs::read_to_string(dir.path().join("s.state.rejects.jsonl")).unwrap();
    assert!(rejects.contains("given up"), "{rejects}");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(state.get("awaiting").is_none(), "{state}");
}

/// A FIFO planted at a transcript's name: the run neither waits on it nor
/// reads it; that chat is rejected with the reason, the others exported.
#[cfg(unix)]
#[tokio::test]
async fn a_fifo_planted_at_a_transcript_name_is_refused_not_waited_on() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    crate::common::mkfifo(&dir.path().join("transcripts/chat-104.json"));
    let r = run(dir.path(), &args(&["-o", "m.jsonl"])).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    assert_eq!(rows.len(), 16, "chats 100 and 101");
    let rejects = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap();
    assert!(rejects.contains("chat 104: transcript"), "{rejects}");
    assert!(rejects.contains("not a regular file"), "{rejects}");
}

/// A chat awaiting its transcript whose JSON is larger than a state may
/// keep (1.5 MB, a long custom field): it is given up and reported at once,
/// and the state the run saves is one the next run accepts (it once saved
/// it, and every later run stopped with 78 on its own state).
#[tokio::test]
async fn an_awaiting_chat_too_large_to_keep_is_reported_and_the_state_stays_usable() {
    let mut large = chat(json!(104), "finished", 5);
    large["custom"] = json!("x".repeat(1_500_000));
    let server = manager(
        vec![chat(json!(100), "finished", 1), large],
        false,
        |_, _| {},
    )
    .await;
    let dir = setup(&server);
    crate::common::edit_config(dir.path(), |text| {
        format!("{text}max_record_size = \"4MiB\"\nmax_page_size = \"8MiB\"\n")
    });
    let first = run(dir.path(), &args(&["--state", "s.state", "-o", "a.jsonl"])).await;
    assert_eq!(first.code, 65, "{}", first.stderr);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.state")).unwrap())
            .unwrap();
    assert!(state.get("awaiting").is_none(), "not kept");
    let rejects = std::fs::read_to_string(dir.path().join("s.state.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("too large to keep in the state"),
        "reported"
    );
    let again = next_run(dir.path(), "b.jsonl").await;
    assert_eq!(
        again.code, 0,
        "the next run accepts the state: {}",
        again.stderr
    );
}

/// A transcript name planted as a symlink (a sync tool copying links, an
/// SFTP mount): one out of the folder is never read, and its text reaches
/// neither the messages nor a reject reason; one resolving inside the
/// folder is read. A transcript that does not parse is reported without
/// quoting its text.
#[cfg(unix)]
#[tokio::test]
async fn transcript_links_out_of_the_folder_are_refused_and_reasons_quote_no_text() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    let folder = dir.path().join("transcripts");
    let outside = dir.path().join("private.txt");
    std::fs::write(
        &outside,
        "[10:00:00] agent: the root password is hunter2-SECRET\n",
    )
    .unwrap();
    // 104's transcript is a link out; 103's a link to 101's, inside.
    std::os::unix::fs::symlink(&outside, folder.join("chat-104.txt")).unwrap();
    std::os::unix::fs::symlink(folder.join("chat-101.txt"), folder.join("chat-103.txt")).unwrap();
    // 102's JSON holds a value of the wrong type, quoted by serde's message.
    std::fs::write(
        folder.join("chat-102.json"),
        r#"{"entries":"QUOTED-SECRET-TEXT"}"#,
    )
    .unwrap();
    let r = run(dir.path(), &args(&["-o", "m.jsonl"])).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let out = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
    let rejects = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl")).unwrap();
    for text in [&out, &rejects, &r.stderr] {
        assert!(
            !text.contains("hunter2"),
            "a file out of the folder was read: {text}"
        );
        assert!(
            !text.contains("QUOTED-SECRET-TEXT"),
            "file text quoted: {text}"
        );
    }
    assert!(rejects.contains("symlink out of the folder"), "{rejects}");
    let convs: Vec<String> = jsonl(&out)
        .iter()
        .map(|m| m["conversation_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        convs.iter().any(|c| c == "103"),
        "a link inside the folder is read: {convs:?}"
    );
}

/// A US number in a UJET transcript is redacted (UJET's home region is the
/// United States); a source serving Mexico names its regions; a region
/// code that does not exist is a configuration error.
#[tokio::test]
async fn phone_numbers_are_found_by_the_sources_regions() {
    let server = manager(chats(), false, |_, _| {}).await;
    let dir = setup(&server);
    std::fs::write(
        dir.path().join("transcripts/chat-104.json"),
        r#"{"entries":[
            {"timestamp":1709636700,"type":"text","role":"end_user","body":{"type":"text","content":"you can call me at 415-555-8196"}},
            {"timestamp":1709636760,"type":"text","role":"end_user","body":{"type":"text","content":"o al celular 81 1234 5678, pedido #4155550123"}}]}"#,
    )
    .unwrap();
    let r = run(dir.path(), &args(&["--redact=mask"])).await;
    let texts: Vec<String> = jsonl(&r.stdout)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts.contains(&"you can call me at [PHONE]".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"o al celular 81 1234 5678, pedido #4155550123".to_string()),
        "a Mexican national number is not a US one: {texts:?}"
    );
    crate::common::edit_config(dir.path(), |text| {
        format!("{text}phone_regions = [\"US\", \"MX\"]\n")
    });
    let r = run(dir.path(), &args(&["--redact=mask"])).await;
    assert!(
        r.stdout
            .contains("o al celular [PHONE], pedido #4155550123"),
        "{}",
        r.stdout
    );
    crate::common::edit_config(dir.path(), |text| {
        text.replace("[\"US\", \"MX\"]", "[\"US\", \"XX\"]")
    });
    let r = run(dir.path(), &args(&["--redact=mask"])).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("phone_regions"), "{}", r.stderr);
}

/// A bucket of transcripts whose store refuses the credentials: the run
/// stops with 77 and commits nothing (no output, no state), rather than
/// taking every chat as one whose transcript is missing. The store here is
/// a fake S3 endpoint that answers every request with AccessDenied.
#[tokio::test]
async fn a_transcript_store_that_refuses_us_stops_the_run_and_commits_nothing() {
    let server = manager(chats(), false, |_, _| {}).await;
    let store = wiremock::MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
        ))
        .mount(&store)
        .await;
    let dir = config(
        &server.uri(),
        "transcripts = \"s3://acme-storage/ccaip/\"\n",
    );
    let cmd = crate::objects::s3_command(
        dir.path(),
        &args(&["-o", "m.jsonl", "--state", "s.state"]),
        &store.uri(),
    );
    let r = crate::common::run_command(cmd).await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot read s3://acme-storage/ccaip/chat-100"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("nothing of this window was committed"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("m.jsonl").exists());
    assert!(!dir.path().join("s.state").exists());
    assert!(!store.received_requests().await.unwrap().is_empty());
}
