//! Operating chatdump unattended, end to end: `status` over the state a
//! source's `state` key names (its checkpoint, lag, last run, lock, and the
//! monitoring plugin exit codes), and a run's metrics written for
//! node_exporter's textfile collector (checked by `promtool`) and pushed to
//! a real Pushgateway. `promtool` and `prometheus-pushgateway` are Debian's
//! packages, which `.ci/run` installs; without them the tests that need
//! them say so loudly and pass.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::{caresoft_config, command, run, Run};
use crate::state::{chats, fake};

const ONE_TYPE: &str = "conversation_types = [\"livechat\"]\nstate = \"h.state\"\n";

/// An export from 2024-03-01 to `--to` (2024-03-02 unless `extra` gives
/// one).
fn export(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["export", "hanoi", "--from", "2024-03-01"];
    if !extra.contains(&"--to") {
        args.extend(["--to", "2024-03-02"]);
    }
    args.extend(extra);
    args.into_iter().map(String::from).collect()
}

async fn run_args(dir: &Path, args: &[String]) -> crate::common::Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(dir, &args).await
}

async fn status_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["status", "--format", "json"];
    args.extend(extra);
    let r = run(dir, &args).await;
    let value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    (r.code, value)
}

/// `status` reads the state the source's `state` key names (the one
/// export used without `--state`): checkpoint, lag, the last run, and the
/// plugin exit codes for `--max-lag`.
#[tokio::test]
async fn status_shows_the_checkpoint_lag_and_last_run() {
    let server = fake(chats(24, 60), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let (code, before) = status_json(dir.path(), &[]).await;
    assert_eq!(code, 3, "no state yet: UNKNOWN {before}");
    assert!(before["sources"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("no state yet"));
    let r = run_args(dir.path(), &export(&["-o", "a.jsonl"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        dir.path().join("h.state").exists(),
        "the `state` key was used"
    );
    let (code, status) = status_json(dir.path(), &["--max-lag", "30000d"]).await;
    assert_eq!(code, 0, "{status}");
    let hanoi = &status["sources"][0];
    assert_eq!(hanoi["status"], "OK");
    assert_eq!(hanoi["checkpoint"], "2024-03-01T17:00:00Z");
    assert_eq!(hanoi["records"], "conversations");
    assert!(hanoi["lag_seconds"].as_i64().unwrap() > 86_400 * 365);
    assert_eq!(hanoi["last_run"]["outcome"], "ok");
    assert_eq!(hanoi["last_run"]["records"], 24);
    assert_eq!(hanoi["lock"], Value::Null);
    // Far behind a 2-hour limit: CRITICAL, 2; the table says so too.
    let r = run(dir.path(), &["status", "--max-lag", "2h"]).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stdout.starts_with("CRITICAL: 1 source, lag limit 2h"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("hanoi") && r.stdout.contains("ok "),
        "{}",
        r.stdout
    );
    // A run that fails (the platform gone) leaves the state as it was and
    // records itself beside it: WARNING while within the lag limit.
    let state_before = std::fs::read(dir.path().join("h.state")).unwrap();
    platform_gone(dir.path(), &server);
    let r = run_args(
        dir.path(),
        &export(&["-o", "b.jsonl", "--to", "2024-03-03"]),
    )
    .await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.path().join("h.state")).unwrap(),
        state_before
    );
    let (code, status) = status_json(dir.path(), &["--max-lag", "30000d"]).await;
    assert_eq!(code, 1, "{status}");
    let last = &status["sources"][0]["last_run"];
    assert_eq!(last["outcome"], "failed");
    assert_eq!(last["exit_code"], r.code);
    assert!(
        last["last_success_at"].is_string(),
        "kept from the run before"
    );
    // A source without a `state` key cannot be judged: UNKNOWN.
    crate::common::edit_config(dir.path(), |text| text.replace("state = \"h.state\"\n", ""));
    let (code, status) = status_json(dir.path(), &[]).await;
    assert_eq!(code, 3, "{status}");
    // An unknown source, or an unreadable limit, is UNKNOWN too.
    let r = run(dir.path(), &["status", "nowhere"]).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let r = run(dir.path(), &["status", "--max-lag", "soon"]).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
}

/// While a run holds the lock, `status` names its process, and asking
/// does not make the run find its state busy.
#[tokio::test]
async fn status_names_the_run_holding_the_lock_without_taking_it() {
    let server = fake(chats(24, 60), Duration::from_millis(1500)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let child = command(
        dir.path(),
        &export(&["-o", "a.jsonl"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut seen = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, status) = status_json(dir.path(), &[]).await;
        seen = status["sources"][0]["lock"].clone();
        if !seen.is_null() {
            break;
        }
    }
    assert_eq!(
        seen["holder"],
        format!("process {pid} on this host"),
        "{seen}"
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, status) = status_json(dir.path(), &[]).await;
    assert_eq!(status["sources"][0]["lock"], Value::Null);
}

/// `--metrics-file`: the Prometheus text format, which `promtool` accepts,
/// replaced whole by each run; a failed run keeps the last success.
#[tokio::test]
async fn metrics_file_is_valid_prometheus_text_and_keeps_the_last_success() {
    let server = fake(chats(24, 60), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = run_args(
        dir.path(),
        &export(&["-o", "a.jsonl", "--metrics-file", "chatdump.prom"]),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("chatdump.prom")).unwrap();
    let sample = |text: &str, name: &str| -> Option<f64> {
        let prefix = format!("{name}{{source=\"hanoi\",records=\"conversations\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse().unwrap())
    };
    assert_eq!(sample(&text, "chatdump_last_run_records"), Some(24.0));
    assert_eq!(sample(&text, "chatdump_last_run_exit_code"), Some(0.0));
    assert_eq!(
        sample(&text, "chatdump_checkpoint_timestamp_seconds"),
        Some(1_709_312_400.0)
    );
    let success = sample(&text, "chatdump_last_success_timestamp_seconds").unwrap();
    assert!(!text.contains("CS_TOKEN") && !text.contains(crate::common::TOKEN));
    if let Some(promtool) = tool("promtool") {
        let checked = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(dir.path().join("chatdump.prom")).unwrap())
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        // The alerting rules the README offers load, and name only
        // metrics chatdump writes.
        let rules = crate::common::repo().join("examples/prometheus-rules.yaml");
        let loaded = std::process::Command::new(tool("promtool").unwrap())
            .args(["check", "rules"])
            .arg(&rules)
            .output()
            .unwrap();
        assert!(loaded.status.success(), "{loaded:?}");
        let rules = std::fs::read_to_string(rules).unwrap();
        for name in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.starts_with("chatdump_") {
                assert!(
                    text.contains(&format!("\n{name}{{")),
                    "{name} is not written"
                );
            }
        }
    }
    let r = failed_run(dir.path(), &server, &["--metrics-file", "chatdump.prom"]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("chatdump.prom")).unwrap();
    assert_eq!(
        sample(&text, "chatdump_last_run_exit_code"),
        Some(f64::from(r.code))
    );
    assert_eq!(sample(&text, "chatdump_last_run_success"), Some(0.0));
    assert_eq!(
        sample(&text, "chatdump_last_success_timestamp_seconds"),
        Some(success)
    );
    // A bad push address is a usage error before anything runs.
    let r = run_args(dir.path(), &export(&["--metrics-push", "ftp://gateway"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `--metrics-push`: the run's metrics reach a real Pushgateway, grouped
/// by job, source and records; a failed run's push keeps the last success
/// there.
#[tokio::test]
async fn metrics_are_pushed_to_a_pushgateway() {
    let Some(gateway) = tool("prometheus-pushgateway") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage = tempfile::tempdir().unwrap();
    let mut gateway = std::process::Command::new(gateway)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--persistence.file={}",
            storage.path().join("p").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..50 {
        if client
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the Pushgateway did not start");
    let server = fake(chats(24, 60), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = run_args(
        dir.path(),
        &export(&["-o", "a.jsonl", "--metrics-push", &base]),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let metrics_url = format!("{base}/metrics");
    let text = scrape(&client, &metrics_url).await;
    let line = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("job=\"chatdump\"")
                    && l.contains("source=\"hanoi\"")
            })
            .map(str::to_string)
    };
    let records = line(&text, "chatdump_last_run_records").unwrap_or_else(|| panic!("{text}"));
    assert!(
        records.contains("records=\"conversations\"") && records.ends_with(" 24"),
        "{records}"
    );
    let success = line(&text, "chatdump_last_success_timestamp_seconds").unwrap();
    let r = failed_run(dir.path(), &server, &["--metrics-push", &base]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    let text = scrape(&client, &metrics_url).await;
    assert!(
        line(&text, "chatdump_last_run_success")
            .unwrap()
            .ends_with(" 0"),
        "{text}"
    );
    assert_eq!(
        line(&text, "chatdump_last_success_timestamp_seconds").unwrap(),
        success
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Points the source at a port nobody answers on: its next run fails
/// with 69 after its retries.
fn platform_gone(dir: &Path, server: &wiremock::MockServer) {
    let gone = server.uri();
    crate::common::edit_config(dir, |t| t.replace(&gone, "http://127.0.0.1:9"));
}

/// A Debian tool `.ci/run` installs, or None (said loudly).
/// A run after the platform is gone (it fails), writing `metrics` as it
/// ends.
async fn failed_run(dir: &Path, server: &wiremock::MockServer, metrics: &[&str]) -> Run {
    platform_gone(dir, server);
    let mut args = vec!["-o", "b.jsonl", "--to", "2024-03-03"];
    args.extend_from_slice(metrics);
    run_args(dir, &export(&args)).await
}

fn tool(name: &str) -> Option<std::path::PathBuf> {
    let path = Path::new("/usr/bin").join(name);
    if path.exists() {
        return Some(path);
    }
    eprintln!("SKIPPED: {name} is not installed (.ci/run installs it from Debian)");
    None
}

/// What may be planted beside a state instead of its run record: a FIFO
/// (never waited on), a file far bigger than a record (not read), and a
/// record from the far future (shown, not a panic). `status` goes on
/// judging by the checkpoint.
#[tokio::test]
async fn planted_run_records_are_refused_or_shown_never_waited_on() {
    let server = fake(chats(24, 60), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = run_args(dir.path(), &export(&["-o", "a.jsonl"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let record = dir.path().join("h.state.run");
    std::fs::remove_file(&record).unwrap();
    crate::common::mkfifo(&record);
    let (code, status) = status_json(dir.path(), &["--max-lag", "30000d"]).await;
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["sources"][0]["last_run"], Value::Null);
    std::fs::remove_file(&record).unwrap();
    std::fs::write(&record, " ".repeat(1 << 20)).unwrap();
    let (code, status) = status_json(dir.path(), &["--max-lag", "30000d"]).await;
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["sources"][0]["last_run"], Value::Null);
    std::fs::write(
        &record,
        r#"{"finished_at":"9999-12-31T23:59:59Z","outcome":"failed","exit_code":-2147483648,"records":18446744073709551615,"rejected":0,"requests":0,"retries":0,"duration_s":1e308}"#,
    )
    .unwrap();
    let r = run(dir.path(), &["status", "--max-lag", "30000d"]).await;
    assert_eq!(
        r.code, 1,
        "a failed run within the lag: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains("failed (-2147483648) -"), "{}", r.stdout);
}
