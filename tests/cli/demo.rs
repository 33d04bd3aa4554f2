//! The demo, the README's first command: bundled samples through the real
//! providers, compared with the expected files.

use std::io::Read;
use std::process::Stdio;

use crate::common::{assert_same_text, command, repo, run};

#[tokio::test]
async fn demo_messages_match_the_expected_csv() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["demo", "--records", "messages", "-o", "out/msgs.csv"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.is_empty(),
        "records went to the file: {}",
        r.stdout
    );
    assert!(r.stderr.contains("exported 42 messages"), "{}", r.stderr);
    let got = std::fs::read_to_string(dir.path().join("out/msgs.csv")).unwrap();
    let want = std::fs::read_to_string(repo().join("tests/expected/demo-messages.csv")).unwrap();
    assert_same_text(&got, &want);
}

#[tokio::test]
async fn demo_conversations_on_stdout_match_the_expected_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["demo", "-q"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "-q keeps stderr empty: {}", r.stderr);
    let want =
        std::fs::read_to_string(repo().join("tests/expected/demo-conversations.jsonl")).unwrap();
    assert_same_text(&r.stdout, &want);
}

#[tokio::test]
async fn demo_renders_in_a_zone_and_gzips() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["demo", "--tz", "Asia/Ho_Chi_Minh", "-o", "c.jsonl.gz"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("c.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("\"started_at\":\"2024-03-01T09:48:30+07:00\""),
        "{text}"
    );
}

#[tokio::test]
async fn include_raw_is_refused_for_csv() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["demo", "--include-raw", "-o", "x.csv"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--include-raw"), "{}", r.stderr);
    assert!(!dir.path().join("x.csv").exists());
}

#[test]
fn closed_stdout_pipe_ends_quietly_with_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(
        dir.path(),
        &["demo", "--records", "messages", "--include-raw"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    // The demo's scratch folder (UJET's sample transcripts) goes with it,
    // however it ends.
    assert!(!std::env::temp_dir()
        .join(format!("chatdump-demo-{pid}"))
        .exists());
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["export"]).await;
    assert_eq!(r.code, 2);
    let r = run(dir.path(), &["demo", "--records", "calls"]).await;
    assert_eq!(r.code, 2);
    let r = run(dir.path(), &["demo", "--tz", "Mars/Base"]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Mars/Base"), "{}", r.stderr);
}

/// The demo's attachments, one of each kind (an inline image, links in
/// Wolkvox and CareSoft messages, a photo beside a UJET transcript, a
/// video link), fetched from its own server and kept once each.
#[tokio::test]
async fn demo_keeps_an_attachment_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &[
            "demo",
            "--records",
            "messages",
            "--attachments",
            "files",
            "-o",
            "m.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("5 attachments stored"), "{}", r.stderr);
    let rows = crate::common::jsonl(&std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap());
    let kept: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|m| m["attachments"].as_array().unwrap())
        .map(|a| {
            (
                a["content_type"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    let mut types: Vec<&str> = kept.iter().map(|(t, _)| *t).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/pdf",
            "image/jpeg",
            "image/jpeg",
            "image/png",
            "video/mp4"
        ]
    );
    assert!(kept.iter().all(|(_, s)| *s == "stored"), "{kept:?}");
    let inline = rows
        .iter()
        .find(|m| m["attachments"][0]["content_type"] == "image/png")
        .unwrap();
    assert_eq!(
        inline["text"],
        format!(
            "[attachment: {}]",
            inline["attachments"][0]["path"].as_str().unwrap()
        )
    );
    for path in rows
        .iter()
        .flat_map(|m| m["attachments"].as_array().unwrap())
        .map(|a| a["path"].as_str().unwrap())
    {
        assert!(dir.path().join("files").join(path).is_file(), "{path}");
    }
}
