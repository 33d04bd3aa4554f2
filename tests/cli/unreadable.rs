//! Unreadable answers, absurd values and stalls end to end: each is retried
//! or refused, never exported as if complete. After every failure the
//! state file is byte-identical and nothing is at the target path.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{caresoft_config, export_day, run, sigterm, wait_for_exit};

const ONE_TYPE: &str = "conversation_types = [\"livechat\"]\n";

/// A state whose checkpoint is 2024-03-01T00:00:00Z.
fn write_state(dir: &Path, source: &str, kind: &str) -> Vec<u8> {
    let state = json!({
        "version": 2, "source": source, "kind": kind, "records": "conversations",
        "checkpoint": "2024-03-01T00:00:00Z", "recent": [], "ledger": []
    });
    let bytes = serde_json::to_vec_pretty(&state).unwrap();
    std::fs::write(dir.join("s.state"), &bytes).unwrap();
    bytes
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

/// Runs a `--state` export to `out.jsonl` and checks that it failed with
/// `code`, left the state as it was and wrote nothing at the target.
async fn fails_uncommitted(dir: &Path, source: &str, kind: &str, code: i32) -> String {
    let before = write_state(dir, source, kind);
    let r = run(
        dir,
        &[
            "export",
            source,
            "--state",
            "s.state",
            "--to",
            "2024-03-02",
            "-o",
            "out.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, code, "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.join("s.state")).unwrap(),
        before,
        "state unchanged"
    );
    assert!(!dir.join("out.jsonl").exists(), "nothing at the target");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    r.stderr
}

#[tokio::test]
async fn an_answer_without_the_records_envelope_is_never_an_empty_window() {
    for body in [
        json!({}),
        json!({"code": "OK"}),
        json!({"code": "ok", "numFound": 3}),
    ] {
        let server = answering(ResponseTemplate::new(200).set_body_json(&body)).await;
        let dir = caresoft_config(&server.uri(), ONE_TYPE);
        let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 65).await;
        assert!(stderr.contains("no records"), "{body}: {stderr}");
        let asked = server.received_requests().await.unwrap().len();
        assert!(
            asked > 1,
            "{body}: retried like a transient failure ({asked})"
        );
    }
    // UJET answers a bare array; an object is an error body, not the end.
    let server =
        answering(ResponseTemplate::new(200).set_body_json(json!({"message": "token expired"})))
            .await;
    let dir = crate::ujet::config(&server.uri(), "");
    fails_uncommitted(dir.path(), "support", "ujet", 65).await;
}

#[tokio::test]
async fn an_html_page_is_retried_then_exit_69() {
    let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let server = answering(
        ResponseTemplate::new(200)
            .set_body_string(page)
            .insert_header("content-type", "text/html"),
    )
    .await;
    let dir = caresoft_config(&server.uri(), &format!("{ONE_TYPE}max_retries = 2\n"));
    let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 69).await;
    assert!(stderr.contains("not JSON"), "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_html_page_once_then_the_data_is_a_complete_export() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>busy</html>"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": "ok", "numFound": 1,
            "chats": [{"conversation_id": "c1", "start_time": "2024-03-01 08:00:00"}]
        })))
        .mount(&server)
        .await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = export_day(dir.path(), "hanoi", &["-o", "o.jsonl"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read_to_string(dir.path().join("o.jsonl"))
        .unwrap()
        .contains("c1"));
}

#[tokio::test]
async fn a_syntax_error_inside_one_record_breaks_the_whole_answer() {
    let body = r#"{"code":"ok","numFound":2,"chats":[{"conversation_id":"c1","start_time":"2024-03-01 08:00:00"},{"conversation_id":"c2","start_time":"2024-03-01 09:00:00",}]}"#;
    let server = answering(ResponseTemplate::new(200).set_body_string(body)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 65).await;
    assert!(stderr.contains("unreadable"), "{stderr}");
    assert!(
        !dir.path().join("s.state.rejects.jsonl").exists(),
        "not a rejected record"
    );
}

#[tokio::test]
async fn absurd_retry_after_values_end_the_run_without_sleeping_or_panicking() {
    for value in [
        "18446744073709551615",
        "99999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let server =
            answering(ResponseTemplate::new(429).insert_header("Retry-After", value)).await;
        let dir = caresoft_config(&server.uri(), ONE_TYPE);
        let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 69).await;
        assert!(stderr.contains("max_wait"), "{value}: {stderr}");
        assert!(stderr.contains("retry"), "{value}: says when: {stderr}");
    }
}

#[tokio::test]
async fn absurd_durations_are_refused_not_panics() {
    let dir = caresoft_config("http://127.0.0.1:9", ONE_TYPE);
    let d = dir.path();
    for (args, code) in [
        (vec!["--since", "99999999999d"], 2),
        (vec!["--since", "99999999d"], 2),
        (vec!["--since", "7x"], 2),
        (vec!["--from", "0001-01-01", "--to", "9999-12-31"], 2),
        (
            vec![
                "--from",
                "2024-01-01",
                "--to",
                "2025-01-01",
                "--chunk",
                "1m",
                "-o",
                "{from}.jsonl",
            ],
            2,
        ),
    ] {
        let mut all = vec!["export", "hanoi", "--dry-run"];
        all.extend(&args);
        let r = run(d, &all).await;
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    for (key, value) in [
        ("settle", "99999999d"),
        ("lookback", "99999999d"),
        ("backoff", "99999999d"),
        ("window", "0ms"),
    ] {
        let dir = caresoft_config("http://127.0.0.1:9", &format!("{key} = \"{value}\"\n"));
        let r = run(dir.path(), &["export", "hanoi", "--dry-run"]).await;
        assert_eq!(r.code, 78, "{key}: {}", r.stderr);
        assert!(r.stderr.contains(key), "{}", r.stderr);
    }
    let dir = caresoft_config("http://127.0.0.1:9", "window = \"1ms\"\n");
    let r = run(
        dir.path(),
        &["export", "hanoi", "--dry-run", "--since", "1d"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("at most 100,000"), "{}", r.stderr);
}

#[tokio::test]
async fn unparsable_flags_with_a_state_are_usage_errors_not_nothing_new() {
    let dir = caresoft_config("http://127.0.0.1:9", ONE_TYPE);
    let d = dir.path();
    let before = write_state(d, "hanoi", "caresoft");
    for args in [
        ["--since", "7x"],
        ["--from", "last tuesday"],
        ["--to", "soon"],
    ] {
        let mut all = vec!["export", "hanoi", "--state", "s.state", "-q"];
        all.extend(args);
        let r = run(d, &all).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    assert_eq!(std::fs::read(d.join("s.state")).unwrap(), before);
}

#[tokio::test]
async fn a_checkpoint_in_the_future_is_an_error_even_when_quiet() {
    let dir = caresoft_config("http://127.0.0.1:9", ONE_TYPE);
    let d = dir.path();
    let state = json!({
        "version": 2, "source": "hanoi", "kind": "caresoft", "records": "conversations",
        "checkpoint": "2999-01-01T00:00:00Z", "recent": [], "ledger": []
    });
    std::fs::write(d.join("s.state"), state.to_string()).unwrap();
    let r = run(d, &["export", "hanoi", "--state", "s.state", "-q"]).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("in the future"), "{}", r.stderr);
}

#[tokio::test]
async fn pages_that_only_repeat_rows_fail_at_once() {
    let page: Vec<_> = (0..2)
        .map(|i| json!({"conversation_id": format!("c{i}"), "start_time": "2024-03-01 08:00:00"}))
        .collect();
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({
        "code": "ok", "numFound": 1_000_000_000_000u64, "chats": page
    })))
    .await;
    let dir = caresoft_config(
        &server.uri(),
        &format!("{ONE_TYPE}page_size = 2\nconcurrency = 2\n"),
    );
    let r = export_day(dir.path(), "hanoi", &["-o", "o.jsonl"]).await;
    // The announced records cannot be had: nothing is committed.
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(!dir.path().join("o.jsonl").exists());
    let asked = server.received_requests().await.unwrap().len();
    assert!(
        asked <= 10,
        "stopped early, not after 5e11 pages: {asked} requests"
    );
    assert!(
        r.stderr.contains("repeats records of earlier pages"),
        "{}",
        r.stderr
    );
}

/// A loopback server whose every connection gets `respond` (bounded: it
/// ends when the client goes away or after about a minute).
fn raw_server(respond: fn(std::net::TcpStream)) -> String {
    raw_server_counting(respond).0
}

/// [`raw_server`], with the number of requests it has read so far.
fn raw_server_counting(
    respond: fn(std::net::TcpStream),
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16).flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                respond(stream);
            });
        }
    });
    (format!("http://{address}"), requests)
}

/// Waits until the server has read a request: the run is then mid-request,
/// its signal handling in place.
async fn until_asked(requests: &std::sync::atomic::AtomicUsize) {
    for _ in 0..200 {
        if requests.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run never sent its request");
}

fn trickle(mut s: std::net::TcpStream) {
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"code\":\"ok\",\"chats\":[",
    );
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(1));
        if s.write_all(b" ").is_err() {
            return;
        }
    }
}

fn endless_padding(mut s: std::net::TcpStream) {
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"code\":\"ok\",\"numFound\":0,\"chats\":[]}",
    );
    let spaces = [b' '; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if s.write_all(&spaces).is_err() {
            return;
        }
    }
}

fn huge_error_body(mut s: std::net::TcpStream) {
    let _ =
        s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1073741824\r\n\r\n");
    let block = [b'x'; 65536];
    let _ = s.write_all(&block);
    // The rest never comes: reading the whole body would stall the run.
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn a_trickling_body_meets_the_exchange_deadline() {
    let base = raw_server(trickle);
    let dir = caresoft_config(
        &base,
        &format!("{ONE_TYPE}request_timeout = \"2s\"\nmax_retries = 0\n"),
    );
    let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 69).await;
    assert!(stderr.contains("request_timeout"), "{stderr}");
}

#[tokio::test]
async fn padding_after_the_answer_is_not_read() {
    let base = raw_server(endless_padding);
    let dir = caresoft_config(&base, &format!("{ONE_TYPE}request_timeout = \"20s\"\n"));
    let r = export_day(dir.path(), "hanoi", &["-o", "o.jsonl"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(dir.path().join("o.jsonl").exists());
}

#[tokio::test]
async fn only_the_start_of_an_error_body_is_read() {
    let base = raw_server(huge_error_body);
    let dir = caresoft_config(
        &base,
        &format!("{ONE_TYPE}request_timeout = \"30s\"\nmax_retries = 0\n"),
    );
    let stderr = fails_uncommitted(dir.path(), "hanoi", "caresoft", 69).await;
    assert!(
        stderr.contains("HTTP 500"),
        "the status, not a timeout: {stderr}"
    );
    assert!(!stderr.contains("request_timeout"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_a_stalled_run_at_once_leaving_the_previous_state() {
    let (base, asked) = raw_server_counting(trickle);
    let dir = caresoft_config(&base, ONE_TYPE);
    let d = dir.path().to_path_buf();
    let before = write_state(&d, "hanoi", "caresoft");
    let child = crate::common::command(
        &d,
        &[
            "export",
            "hanoi",
            "--state",
            "s.state",
            "--to",
            "2024-03-02",
            "-o",
            "out.jsonl",
        ],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    until_asked(&asked).await;
    sigterm(&child);
    let code = wait_for_exit(child, 10).await;
    assert_eq!(code, Some(130), "ended within seconds of SIGTERM");
    assert_eq!(std::fs::read(d.join("s.state")).unwrap(), before);
    assert!(!d.join("out.jsonl").exists());
    let temps = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(temps, 0, "the temporary output is removed");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_during_a_stalled_follow_poll_is_honoured() {
    let (base, asked) = raw_server_counting(trickle);
    let dir = crate::common::source_config("live", "wolkvox-live", &base, "");
    let child = crate::common::command(
        dir.path(),
        &["export", "live", "--follow", "--interval", "5s"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    until_asked(&asked).await;
    sigterm(&child);
    let code = wait_for_exit(child, 10).await;
    assert_eq!(
        code,
        Some(130),
        "the stalled poll is abandoned after a short grace"
    );
}

/// The state the version-1 release wrote for chats 0..11: read, migrated,
/// and its overlap still recognised, so nothing is exported twice.
#[tokio::test]
async fn a_state_of_the_previous_release_still_deduplicates_its_overlap() {
    // The fake and the chats the version-1 state was written from.
    let server = crate::state::fake(crate::state::chats(24, 30), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    std::fs::copy(
        crate::common::repo().join("fixtures/state/v1-caresoft-conversations.state"),
        d.join("h.state"),
    )
    .unwrap();
    let r = run(
        d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--to",
            "2024-03-01 09:00",
            "-o",
            "b.jsonl",
            "-v",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids: Vec<String> =
        crate::common::jsonl(&std::fs::read_to_string(d.join("b.jsonl")).unwrap())
            .iter()
            .map(|v| v["conversation_id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(ids, ["c0012", "c0013", "c0014", "c0015", "c0016", "c0017"]);
    assert!(r.stderr.contains("skipped 4 duplicate"), "{}", r.stderr);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.state")).unwrap()).unwrap();
    assert_eq!(saved["version"], 2);
}
