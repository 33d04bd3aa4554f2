//! Incremental runs (`--state`) end to end: overlap de-duplication, locks,
//! crashes, broken pipes, corrupt state, empty windows.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{caresoft_config, command, jsonl, run};

const CHATS: &str = "/acme/api/v1/chats";

/// A CareSoft that filters on `start_time` (inclusive bounds, local time)
/// and pages, like the real one; answers after `delay`.
struct Fake {
    rows: Vec<Value>,
    delay: Duration,
}

impl Respond for Fake {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let q: BTreeMap<String, String> = r.url.query_pairs().into_owned().collect();
        let bound = |k: &str| {
            q.get(k)
                .map(|v| v.replace('T', " ").trim_end_matches('Z').to_string())
        };
        let (since, to) = (bound("start_time_since"), bound("start_time_to"));
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let count: usize = q.get("count").and_then(|p| p.parse().ok()).unwrap_or(50);
        let rows: Vec<&Value> = self
            .rows
            .iter()
            .filter(|row| {
                let start = row["start_time"].as_str().unwrap();
                since.as_deref().is_none_or(|s| start >= s)
                    && to.as_deref().is_none_or(|t| start <= t)
            })
            .collect();
        let page_rows: Vec<&&Value> = rows.iter().skip((page - 1) * count).take(count).collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"code": "ok", "numFound": rows.len(), "chats": page_rows}))
            .set_delay(self.delay)
    }
}

/// One chat every `every` minutes from 2024-03-01 00:00 local, `n` of them.
pub fn chats(n: usize, every: i64) -> Vec<Value> {
    let start =
        chrono::NaiveDateTime::parse_from_str("2024-03-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
    (0..n)
        .map(|i| {
            let t = start + chrono::Duration::minutes(every * i as i64);
            json!({"conversation_id": format!("c{i:04}"), "start_time": t.format("%Y-%m-%d %H:%M:%S").to_string(),
                   "cus_name": "Khách", "chat_status": "LBL_CHAT_STATUS_MEET"})
        })
        .collect()
}

pub async fn fake(rows: Vec<Value>, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(Fake { rows, delay })
        .mount(&server)
        .await;
    server
}

const ONE_TYPE: &str = "conversation_types = [\"livechat\"]\n";

/// Every conversation id in every JSONL file under `dir` (not state files).
fn ids_in(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    // A run killed before its first file has not made the folder yet.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ids;
    };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "jsonl") && !p.to_string_lossy().contains("rejects") {
            for v in jsonl(&std::fs::read_to_string(&p).unwrap()) {
                ids.push(v["conversation_id"].as_str().unwrap().to_string());
            }
        }
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn the_overlap_is_fetched_again_but_not_emitted_again() {
    let server = fake(chats(24, 30), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    // 00:00 .. 06:00 local: chats 0..11.
    let r = run(
        d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-01 06:00",
            "-o",
            "a.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.state")).unwrap()).unwrap();
    assert_eq!(state["version"], 2);
    assert_eq!(
        state["checkpoint"], "2024-02-29T23:00:00Z",
        "06:00 in Ho Chi Minh"
    );
    let remembered: usize = state["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["keys"].as_array().unwrap().len())
        .sum();
    assert_eq!(remembered, 12, "{state}");
    // The next run starts two hours (the lookback) before the checkpoint.
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
    assert!(
        r.stderr.contains("2024-02-29T21:00:00Z"),
        "window from checkpoint - 2h: {}",
        r.stderr
    );
    let b = jsonl(&std::fs::read_to_string(d.join("b.jsonl")).unwrap());
    let ids: Vec<&str> = b
        .iter()
        .map(|v| v["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c0012", "c0013", "c0014", "c0015", "c0016", "c0017"]);
    assert_eq!(ids_in(d).len(), 18);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.state")).unwrap()).unwrap();
    assert_eq!(state["checkpoint"], "2024-03-01T02:00:00Z");
    assert_eq!(state["ledger"].as_array().unwrap().len(), 2);
    assert_eq!(state["ledger"][1]["records"], 6);
}

#[tokio::test]
async fn a_second_run_on_the_same_state_exits_75_at_once() {
    let server = fake(chats(4, 60), Duration::from_millis(1500)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path().to_path_buf();
    let mut first = command(
        &d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "-o",
            "a.jsonl",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Wait until the first run holds the lock (its pid is in the lock file).
    for _ in 0..100 {
        if std::fs::read_to_string(d.join("h.state.lock")).is_ok_and(|s| !s.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let second = run(
        &d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "-o",
            "b.jsonl",
        ],
    )
    .await;
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(
        second.stderr.contains(&first.id().to_string()),
        "names the holder: {}",
        second.stderr
    );
    assert!(started.elapsed() < Duration::from_millis(1000), "at once");
    assert!(!d.join("b.jsonl").exists());
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Released: the next run goes ahead.
    let third = run(
        &d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--to",
            "2024-03-02",
            "-o",
            "c.jsonl",
        ],
    )
    .await;
    assert_eq!(third.code, 0, "{}", third.stderr);
}

#[tokio::test]
async fn a_run_killed_mid_backfill_resumes_and_the_files_hold_everything_once() {
    // Six days, a chat every 3 hours: 48 chats; one file per day. Killed at
    // many points (before anything, between and inside days), then the same
    // command again: the files together hold every chat exactly once.
    let all = chats(48, 180);
    let expected: Vec<String> = (0..48).map(|i| format!("c{i:04}")).collect();
    let args = [
        "export",
        "hanoi",
        "--state",
        "h.state",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-07",
        "-o",
        "out/{from}.jsonl",
    ];
    for (kill_after_files, extra_ms) in [(0, 50), (1, 0), (1, 120), (2, 60), (4, 0)] {
        let slow = fake(all.clone(), Duration::from_millis(100)).await;
        let dir = caresoft_config(&slow.uri(), ONE_TYPE);
        let d = dir.path().to_path_buf();
        let out = d.join("out");
        let mut child = command(&d, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let files = || {
            std::fs::read_dir(&out).map_or(0, |r| {
                r.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "jsonl")
                })
                .count()
            })
        };
        for _ in 0..2000 {
            if files() >= kill_after_files {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_ne!(
            status.code(),
            Some(0),
            "killed before the end ({kill_after_files} files + {extra_ms} ms)"
        );
        assert!(ids_in(&out).len() < 48);
        // Again, the same command, against a fast server.
        let fast = fake(all.clone(), Duration::ZERO).await;
        crate::common::edit_config(&d, |config| config.replace(&slow.uri(), &fast.uri()));
        let r = run(&d, &args).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            ids_in(&out),
            expected,
            "killed after {kill_after_files} files + {extra_ms} ms"
        );
    }
}

#[tokio::test]
async fn empty_windows_commit_and_write_empty_files() {
    let server = fake(Vec::new(), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    let r = run(
        d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-04",
            "-o",
            "{from}.csv",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let files: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in files {
        assert_eq!(
            std::fs::read_to_string(d.join(f)).unwrap().lines().count(),
            1,
            "header only"
        );
    }
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.state")).unwrap()).unwrap();
    assert_eq!(state["checkpoint"], "2024-03-03T17:00:00Z");
}

#[tokio::test]
async fn a_closed_stdout_pipe_never_advances_the_state() {
    let server = fake(chats(600, 1), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path().to_path_buf();
    let mut child = command(
        &d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "quiet exit: {stderr}");
    assert!(
        !d.join("h.state").exists(),
        "no checkpoint for records nobody read"
    );
}

#[tokio::test]
async fn a_corrupt_state_is_an_error_not_a_restart() {
    let server = fake(chats(2, 60), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    std::fs::write(d.join("h.state"), "{\"version\": 1, \"checkpoint\": ").unwrap();
    let r = run(
        d,
        &["export", "hanoi", "--state", "h.state", "-o", "x.jsonl"],
    )
    .await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(server.received_requests().await.unwrap().is_empty());
    assert!(!d.join("x.jsonl").exists());
}

#[tokio::test]
async fn rejects_go_beside_the_state_and_the_checkpoint_still_advances() {
    let mut rows = chats(3, 60);
    rows[1]["start_time"] = json!("2024-03-01 01:00:00");
    rows.push(json!({"conversation_id": "broken", "start_time": "2024-03-01 02:30:00", "end_time": "tomorrow"}));
    let server = fake(rows, Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    let r = run(
        d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "-o",
            "x.jsonl",
        ],
    )
    .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert_eq!(
        jsonl(&std::fs::read_to_string(d.join("x.jsonl")).unwrap()).len(),
        3
    );
    let rejects = jsonl(&std::fs::read_to_string(d.join("h.state.rejects.jsonl")).unwrap());
    assert_eq!(rejects[0]["raw"]["conversation_id"], "broken");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.state")).unwrap()).unwrap();
    assert_eq!(state["checkpoint"], "2024-03-01T17:00:00Z");
}

#[tokio::test]
async fn dry_run_shows_the_resolved_window_files_and_state() {
    let server = fake(Vec::new(), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let d = dir.path();
    let r = run(
        d,
        &[
            "export",
            "hanoi",
            "--state",
            "h.state",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-03",
            "-o",
            "{to}.jsonl",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("state:    h.state"), "{}", r.stdout);
    assert!(
        r.stdout.contains("-> 20240301T170000Z.jsonl"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("-> 20240302T170000Z.jsonl"),
        "{}",
        r.stdout
    );
    assert!(server.received_requests().await.unwrap().is_empty());
    assert!(!d.join("h.state").exists());
}
