//! Outputs and state in S3, end to end, against a real S3-compatible server
//! started here on 127.0.0.1 (`moto`, installed by `.ci/run`). Where moto is
//! missing the tests say so loudly and pass: they cannot run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{caresoft_config, command, jsonl, Run};
use crate::state::{chats, fake};

const ONE_TYPE: &str = "conversation_types = [\"livechat\"]\n";

/// A moto server of this test's own.
struct Moto {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    async fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("SKIPPED: python3 is not installed: the object-storage tests did not run");
            return None;
        };
        // moto takes any signature, and answers 403 to none.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            ),
        );
        let moto = Moto {
            child,
            port,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        };
        for _ in 0..100 {
            if moto.http.get(moto.url("")).send().await.is_ok() {
                return Some(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "SKIPPED: moto did not start (python3 -m pip install 'moto[server]'): the object-storage tests did not run"
        );
        None
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    async fn bucket(&self, name: &str) {
        let r = self.http.put(self.url(name)).send().await.unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// Every key in `bucket`.
    async fn keys(&self, bucket: &str) -> Vec<String> {
        let body = self
            .http
            .get(self.url(&format!("{bucket}?list-type=2")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    async fn get(&self, bucket: &str, key: &str) -> Option<String> {
        let r = self
            .http
            .get(self.url(&format!("{bucket}/{key}")))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        status.is_success().then_some(text)
    }

    async fn put(&self, bucket: &str, key: &str, body: String) {
        let r = self
            .http
            .put(self.url(&format!("{bucket}/{key}")))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    fn command(&self, dir: &std::path::Path, args: &[&str]) -> Command {
        s3_command(dir, args, &self.url(""))
    }

    /// Starts an export without waiting for it (stderr kept if asked).
    fn spawn(&self, dir: &std::path::Path, args: &[&str], stderr: Stdio) -> Child {
        self.command(dir, args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Waits (up to 5 s) until some key of `bucket` ends with `suffix`.
    async fn until_key(&self, bucket: &str, suffix: &str) {
        for _ in 0..200 {
            if self.keys(bucket).await.iter().any(|k| k.ends_with(suffix)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn run(&self, dir: &std::path::Path, args: &[&str]) -> Run {
        crate::common::run_command(self.command(dir, args)).await
    }
}

const DAYS: [&str; 4] = ["--from", "2024-03-01", "--to", "2024-03-04"];

fn export<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["export", "hanoi"];
    all.extend(DAYS);
    all.extend(extra);
    all
}

const PER_DAY: &str = "s3://chats/hanoi/dt={from:%Y-%m-%d}/conversations.jsonl";
const STATE: &str = "s3://chats/state/hanoi.json";
/// The binary with `args`, its S3 client pointed at `endpoint` (a test
/// server on 127.0.0.1) with test credentials, whatever this machine's own
/// AWS settings are.
pub(crate) fn s3_command(dir: &std::path::Path, args: &[&str], endpoint: &str) -> Command {
    let mut cmd = command(dir, args);
    cmd.env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    cmd
}

/// The UJET source's messages of one day (transcripts in object storage).
const SUPPORT_DAY_MESSAGES: [&str; 8] = [
    "export",
    "support",
    "--records",
    "messages",
    "--from",
    "2024-03-05T00:00:00Z",
    "--to",
    "2024-03-06T00:00:00Z",
];

/// The conversation ids in every object under `dt=`.
async fn exported(moto: &Moto) -> Vec<String> {
    let mut ids = Vec::new();
    for key in moto.keys("chats").await {
        if key.starts_with("hanoi/dt=") && key.ends_with(".jsonl") {
            let text = moto.get("chats", &key).await.unwrap();
            ids.extend(
                jsonl(&text)
                    .iter()
                    .map(|r| r["conversation_id"].as_str().unwrap().to_string()),
            );
        }
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn per_window_objects_and_the_state_land_in_the_bucket() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    // A chat every 3 hours over three days: 24.
    let server = fake(chats(24, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let plan = moto
        .run(
            dir.path(),
            &export(&["--state", STATE, "-o", PER_DAY, "--dry-run"]),
        )
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("s3://chats/hanoi/dt=2024-03-01/conversations.jsonl"),
        "the plan shows the keys: {}",
        plan.stdout
    );
    assert!(
        moto.keys("chats").await.is_empty(),
        "a dry run writes nothing"
    );
    let r = moto
        .run(dir.path(), &export(&["--state", STATE, "-o", PER_DAY]))
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keys = moto.keys("chats").await;
    assert_eq!(
        keys,
        [
            "hanoi/dt=2024-02-29/conversations.jsonl",
            "hanoi/dt=2024-03-01/conversations.jsonl",
            "hanoi/dt=2024-03-02/conversations.jsonl",
            "state/hanoi.json",
            "state/hanoi.json.run",
        ],
        "one object per day (windows start at 17:00 UTC, midnight in Hanoi), the state, how the run ended, and no lock left"
    );
    let run: Value =
        serde_json::from_str(&moto.get("chats", "state/hanoi.json.run").await.unwrap()).unwrap();
    assert_eq!(
        (run["outcome"].as_str(), run["records"].as_u64()),
        (Some("ok"), Some(24))
    );
    let expected: Vec<String> = (0..24).map(|i| format!("c{i:04}")).collect();
    assert_eq!(exported(&moto).await, expected);
    let state: Value =
        serde_json::from_str(&moto.get("chats", "state/hanoi.json").await.unwrap()).unwrap();
    assert_eq!(state["checkpoint"], "2024-03-03T17:00:00Z");
    assert_eq!(state["ledger"].as_array().unwrap().len(), 3);
    // Nothing new: the next run writes no object twice.
    let again = moto
        .run(dir.path(), &export(&["--state", STATE, "-o", PER_DAY]))
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(exported(&moto).await, expected);
}

#[tokio::test]
async fn a_run_killed_mid_export_leaves_no_partial_object_and_the_rerun_completes() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let server = fake(chats(24, 180), Duration::from_millis(400)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = export(&["--state", STATE, "-o", PER_DAY]);
    let mut first = moto.spawn(dir.path(), &args, Stdio::null());
    // Killed once the first day is in the bucket.
    moto.until_key("chats", ".jsonl").await;
    first.kill().unwrap();
    first.wait().unwrap();
    let written = moto.keys("chats").await;
    assert!(written.iter().any(|k| k.ends_with(".jsonl")), "{written:?}");
    for key in written.iter().filter(|k| k.ends_with(".jsonl")) {
        let text = moto.get("chats", key).await.unwrap();
        assert!(text.ends_with('\n'), "{key} is whole");
        jsonl(&text);
    }
    // The killed run's lock is there; a rerun finds it held, then (it
    // expires) takes it over: here the lock is aged by hand.
    let lock = moto
        .get("chats", "state/hanoi.json.lock")
        .await
        .expect("the killed run's lock");
    let blocked = moto.run(dir.path(), &args).await;
    assert_eq!(blocked.code, 75, "{}", blocked.stderr);
    assert!(blocked.stderr.contains("in use by"), "{}", blocked.stderr);
    let mut lease: Value = serde_json::from_str(&lock).unwrap();
    lease["expires_at"] = Value::String("2024-01-01T00:00:00Z".into());
    moto.put("chats", "state/hanoi.json.lock", lease.to_string())
        .await;
    let rerun = moto.run(dir.path(), &args).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("took over the expired lock"),
        "{}",
        rerun.stderr
    );
    let expected: Vec<String> = (0..24).map(|i| format!("c{i:04}")).collect();
    assert_eq!(
        exported(&moto).await,
        expected,
        "every chat once, in all objects together"
    );
    assert!(
        moto.get("chats", "state/hanoi.json.lock").await.is_none(),
        "released"
    );
}

#[tokio::test]
async fn two_runs_at_once_on_one_state_one_exits_75() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let server = fake(chats(8, 180), Duration::from_millis(600)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = export(&["--state", STATE, "-o", PER_DAY]);
    let mut first = moto.spawn(dir.path(), &args, Stdio::null());
    moto.until_key("chats", ".lock").await;
    // A dry run only reads: it takes no lock and goes ahead.
    let plan = moto
        .run(dir.path(), &[&args[..], &["--dry-run"]].concat())
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("state:    s3://chats/state/hanoi.json"),
        "{}",
        plan.stdout
    );
    let second = moto.run(dir.path(), &args).await;
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("process {}", first.id())),
        "names the holder: {}",
        second.stderr
    );
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let expected: Vec<String> = (0..8).map(|i| format!("c{i:04}")).collect();
    assert_eq!(exported(&moto).await, expected);
}

#[tokio::test]
async fn a_state_changed_behind_a_runs_back_is_not_overwritten() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    // Three windows of 600 ms each: a save after each.
    let server = fake(chats(24, 180), Duration::from_millis(600)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = export(&["--state", STATE, "-o", PER_DAY]);
    let mut run = moto.spawn(dir.path(), &args, Stdio::piped());
    // Once the run has committed its first window (it read the state long
    // before), another writer puts a state there: what a second run would
    // do after taking over a lock it believed expired. The run's next save
    // must find it changed.
    moto.until_key("chats", ".jsonl").await;
    let theirs = r#"{"version":2,"source":"hanoi","kind":"caresoft","records":"conversations","checkpoint":"2024-03-10T00:00:00Z","recent":[],"ledger":[]}"#;
    moto.put("chats", "state/hanoi.json", theirs.to_string())
        .await;
    let output = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (run.wait().unwrap(), stderr)
    })
    .await
    .unwrap();
    assert_eq!(output.0.code(), Some(75), "{}", output.1);
    assert!(
        output.1.contains("changed since this run read it"),
        "{}",
        output.1
    );
    assert_eq!(
        moto.get("chats", "state/hanoi.json").await.unwrap(),
        theirs,
        "the other writer's state stands"
    );
}

#[tokio::test]
async fn bad_locations_are_refused_before_anything_runs() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let server = fake(chats(2, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    for (args, code, says) in [
        (vec!["-o", "s3://chats"], 2, "no key"),
        (vec!["-o", "s3://chats/a/../b.jsonl"], 2, "`..`"),
        (vec!["--state", STATE, "-o", STATE], 2, "is the state"),
    ] {
        let r = moto.run(dir.path(), &export(&args)).await;
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert!(
        moto.get("chats", "state/hanoi.json").await.is_none(),
        "nothing committed"
    );
    // A bucket that does not exist: nothing is exported, nothing committed.
    let r = moto
        .run(dir.path(), &export(&["-o", "s3://missing-bucket/x.jsonl"]))
        .await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("NoSuchBucket"), "{}", r.stderr);
    // The demo writes to a file or stdout only.
    let r = moto
        .run(dir.path(), &["demo", "-o", "s3://chats/demo.jsonl"])
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[tokio::test]
async fn a_long_run_renews_its_lock() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    // Three windows, each request 1.5 s: a run of about 4.5 s, with locks
    // that expire after 2 s unless renewed.
    let server = fake(chats(8, 180), Duration::from_millis(1500)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = export(&["--state", STATE, "-o", PER_DAY]);
    let mut first = moto.command(dir.path(), &args);
    first.env("CHATDUMP_STATE_LEASE", "2s");
    let mut first = first
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let mut second = moto.command(dir.path(), &args);
    second.env("CHATDUMP_STATE_LEASE", "2s");
    let second = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("is in use by"),
        "the lock was renewed, not taken over: {stderr}"
    );
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn check_writes_and_removes_a_probe_where_outputs_will_go() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chatdump.toml"), "").unwrap();
    let r = moto
        .run(
            dir.path(),
            &[
                "check",
                "--location",
                "s3://chats/hanoi/",
                "--location",
                "s3://chats/state/hanoi.json",
                "--location",
                "local/out/",
            ],
        )
        .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.matches(": ok (wrote and removed").count(),
        3,
        "{}",
        r.stdout
    );
    assert!(moto.keys("chats").await.is_empty(), "cleaned up");
    assert!(dir.path().join("local/out").is_dir());
    assert_eq!(
        std::fs::read_dir(dir.path().join("local/out"))
            .unwrap()
            .count(),
        0
    );
    let r = moto
        .run(
            dir.path(),
            &["check", "--location", "s3://missing-bucket/x/"],
        )
        .await;
    assert_eq!(r.code, 73, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("s3://missing-bucket/x/: FAILED"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn ujet_transcripts_are_read_from_a_bucket() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("acme-storage").await;
    moto.put(
        "acme-storage",
        "ccaip/chat-100.json",
        crate::common::fixture("ujet/transcripts/chat-31354.json"),
    )
    .await;
    let chat = |id: u32, minute: u32| {
        serde_json::json!({"id": id, "status": "finished", "chat_type": "Messaging (WhatsApp)",
            "updated_at": format!("2024-03-05T11:{minute:02}:00.000Z"), "agent_info": {"id": 7, "name": "Ana"}})
    };
    let server = crate::ujet::manager(vec![chat(100, 1), chat(101, 2)], false, |_, _| {}).await;
    wiremock::Mock::given(wiremock::matchers::path(
        "/manager/api/v1/settings/organization",
    ))
    .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("{}"))
    .mount(&server)
    .await;
    let dir = crate::ujet::config(
        &server.uri(),
        "transcripts = \"s3://acme-storage/ccaip/\"\n",
    );
    let r = moto.run(dir.path(), &SUPPORT_DAY_MESSAGES).await;
    assert_eq!(r.code, 65, "chat 101 has none yet: {}", r.stderr);
    let rows = jsonl(&r.stdout);
    assert_eq!(rows.len(), 12, "{}", r.stderr);
    assert!(rows.iter().all(|m| m["conversation_id"] == "100"));
    assert_eq!(rows[2]["text"], "Hola, quiero cambiar mi plan 📱");
    let rejects = std::fs::read_to_string(dir.path().join("support.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("s3://acme-storage/ccaip/chat-101.json"),
        "names what it looked for: {rejects}"
    );
    let check = moto.run(dir.path(), &["check", "support"]).await;
    assert!(
        check
            .stdout
            .contains("transcripts: 1 files in s3://acme-storage/ccaip"),
        "{}{}",
        check.stdout,
        check.stderr
    );
    // A bucket that is not there: `check` says so (an export would find
    // every transcript missing).
    let dir = crate::ujet::config(&server.uri(), "transcripts = \"s3://no-such-bucket/x\"\n");
    let check = moto.run(dir.path(), &["check", "support"]).await;
    assert_eq!(check.code, 78, "{}{}", check.stdout, check.stderr);
    assert!(check.stderr.contains("NoSuchBucket"), "{}", check.stderr);
}

#[tokio::test]
async fn a_corrupt_or_foreign_state_in_the_bucket_is_refused_and_its_lock_let_go() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let server = fake(chats(2, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    // A lock object far bigger than a lease: refused, not read.
    moto.put("chats", "state/hanoi.json.lock", "x".repeat(200_000))
        .await;
    let r = moto
        .run(dir.path(), &export(&["--state", STATE, "-o", PER_DAY]))
        .await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("more than the 65536"), "{}", r.stderr);
    let r = moto
        .http
        .delete(moto.url("chats/state/hanoi.json.lock"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for planted in [
        "{not json".to_string(),
        r#"{"version":2,"source":"other","kind":"caresoft","records":"conversations","checkpoint":"2024-03-01T00:00:00Z"}"#.to_string(),
    ] {
        moto.put("chats", "state/hanoi.json", planted.clone()).await;
        let r = moto
            .run(dir.path(), &export(&["--state", STATE, "-o", PER_DAY]))
            .await;
        assert_eq!(r.code, 78, "{planted}: {}", r.stderr);
        assert!(r.stderr.contains("s3://chats/state/hanoi.json"), "{}", r.stderr);
        assert_eq!(
            moto.keys("chats").await,
            ["state/hanoi.json"],
            "nothing written, and no lock left to wait for"
        );
        assert_eq!(moto.get("chats", "state/hanoi.json").await.unwrap(), planted);
    }
}

#[tokio::test]
async fn rejected_records_go_beside_the_output_object() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("chats").await;
    let mut rows = chats(2, 180);
    rows.push(serde_json::json!({"start_time": "2024-03-01 09:00:00", "cus_name": "sin id"}));
    let server = fake(rows, Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = moto
        .run(
            dir.path(),
            &[
                "export",
                "hanoi",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                "-o",
                "s3://chats/day.jsonl",
            ],
        )
        .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("saved with the reasons to s3://chats/day.jsonl.rejects.jsonl"),
        "{}",
        r.stderr
    );
    assert_eq!(
        moto.keys("chats").await,
        ["day.jsonl", "day.jsonl.rejects.jsonl"]
    );
    let rejects = moto.get("chats", "day.jsonl.rejects.jsonl").await.unwrap();
    assert!(rejects.contains("sin id"), "{rejects}");
    assert_eq!(
        jsonl(&moto.get("chats", "day.jsonl").await.unwrap()).len(),
        2
    );
}

/// A transcript object over `max_record_size` is refused before it is
/// read (its size is known from the answer's headers): that chat is
/// rejected, the run goes on.
#[tokio::test]
async fn a_transcript_object_too_big_is_refused_unread() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.bucket("acme-storage").await;
    moto.put("acme-storage", "ccaip/chat-100.json", "x".repeat(4096))
        .await;
    let chat = serde_json::json!({"id": 100, "status": "finished", "chat_type": "Messaging (WhatsApp)",
        "updated_at": "2024-03-05T11:01:00.000Z"});
    let server = crate::ujet::manager(vec![chat], false, |_, _| {}).await;
    let dir = crate::ujet::config(
        &server.uri(),
        "transcripts = \"s3://acme-storage/ccaip\"\nmax_record_size = \"1KiB\"\n",
    );
    let r = moto.run(dir.path(), &SUPPORT_DAY_MESSAGES).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rejects = std::fs::read_to_string(dir.path().join("support.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("4096 bytes, more than the 1024"),
        "{rejects}"
    );
}
