//! Outputs, state, locks and transcripts in object storage, end to end,
//! against real servers started here on 127.0.0.1: the S3-compatible test
//! server moto (from PyPI) and Azure's emulator Azurite (from npm), both
//! installed by `.ci/run`; each case runs against both. Where a server is
//! missing its tests say so loudly and pass: they cannot run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{caresoft_config, command, jsonl, Run};
use crate::state::{chats, fake};

const ONE_TYPE: &str = "conversation_types = [\"livechat\"]\n";

/// Which test server a [`Store`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// moto, an S3-compatible server from PyPI.
    S3,
    /// Azurite, Azure's Blob storage emulator from npm, with its
    /// well-known account.
    Azure,
}

/// Azurite's well-known account and key (documented, public).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An object store of this test's own, on 127.0.0.1: the S3 test server or
/// Azurite. `state` and `per_day` are this store's URLs of the test
/// export's state and per-day objects (`s3://...` or `az://...`).
struct Store {
    backend: Backend,
    child: Child,
    port: u16,
    http: reqwest::Client,
    scheme: &'static str,
    state: String,
    per_day: String,
    _data: tempfile::TempDir,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

impl Store {
    fn new(
        backend: Backend,
        child: Child,
        port: u16,
        http: reqwest::Client,
        data: tempfile::TempDir,
    ) -> Store {
        let scheme = match backend {
            Backend::S3 => "s3",
            Backend::Azure => "az",
        };
        Store {
            backend,
            child,
            port,
            http,
            scheme,
            state: format!("{scheme}://chats/state/hanoi.json"),
            per_day: format!("{scheme}://chats/hanoi/dt={{from:%Y-%m-%d}}/conversations.jsonl"),
            _data: data,
        }
    }

    /// The S3 test server (moto), or None (said loudly).
    async fn s3() -> Option<Store> {
        let port = free_port()?;
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
            eprintln!("SKIPPED: python3 is not installed: the S3 tests did not run");
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
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        let store = Store::new(Backend::S3, child, port, http, tempfile::tempdir().unwrap());
        store
            .ready("moto did not start (python3 -m pip install 'moto[server]'): the S3 tests did not run")
            .await
    }

    /// Azurite (`.ci/run` installs it from npm into `.ci/azurite`), or
    /// None (said loudly).
    async fn azure() -> Option<Store> {
        let azurite = crate::common::repo().join(".ci/azurite/node_modules/.bin/azurite-blob");
        if !azurite.exists() {
            eprintln!("SKIPPED: Azurite is not installed (.ci/run installs it in .ci/azurite): the Azure tests did not run");
            return None;
        }
        let port = free_port()?;
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(azurite)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--location",
            ])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let store = Store::new(Backend::Azure, child, port, reqwest::Client::new(), data);
        store
            .ready("Azurite did not start: the Azure tests did not run")
            .await
    }

    async fn ready(self, otherwise: &str) -> Option<Store> {
        for _ in 0..100 {
            if self
                .request(reqwest::Method::GET, "", &[], None)
                .send()
                .await
                .is_ok()
            {
                return Some(self);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("SKIPPED: {otherwise}");
        None
    }

    /// The store's URL of `path` (`BUCKET/KEY`).
    fn at(&self, path: &str) -> String {
        format!("{}://{path}", self.scheme)
    }

    /// A request to `path` (`BUCKET/KEY`) of the server, signed for
    /// Azurite with its well-known key (SharedKey), as any Azure client
    /// signs.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let root = match self.backend {
            Backend::S3 => format!("http://127.0.0.1:{}/", self.port),
            Backend::Azure => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}/", self.port),
        };
        let mut url = reqwest::Url::parse(&format!("{root}{path}")).unwrap();
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut request = self.http.request(method.clone(), url);
        if self.backend == Backend::Azure {
            use base64::Engine;
            use hmac::Mac;
            let date = chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            let length = body.as_ref().map_or(0, Vec::len);
            let blob =
                method == reqwest::Method::PUT && !query.iter().any(|(k, _)| *k == "restype");
            let mut headers = vec![("x-ms-date", date.as_str()), ("x-ms-version", "2021-08-06")];
            if blob {
                headers.push(("x-ms-blob-type", "BlockBlob"));
            }
            headers.sort();
            let mut query: Vec<(&str, &str)> = query.to_vec();
            query.sort();
            let canonical_headers: String =
                headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
            let mut resource = format!("/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{path}");
            for (k, v) in &query {
                resource.push_str(&format!("\n{k}:{v}"));
            }
            let length = if length == 0 {
                String::new()
            } else {
                length.to_string()
            };
            let to_sign =
                format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canonical_headers}{resource}");
            let key = base64::engine::general_purpose::STANDARD
                .decode(AZURITE_KEY)
                .unwrap();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(to_sign.as_bytes());
            let signature =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request = request.header(
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            );
        }
        match body {
            Some(body) => request.body(body),
            None => request,
        }
    }

    async fn bucket(&self, name: &str) {
        let query: &[(&str, &str)] = match self.backend {
            Backend::S3 => &[],
            Backend::Azure => &[("restype", "container")],
        };
        let r = self
            .request(reqwest::Method::PUT, name, query, None)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// Every key in `bucket`.
    async fn keys(&self, bucket: &str) -> Vec<String> {
        let (query, tag): (&[(&str, &str)], &str) = match self.backend {
            Backend::S3 => (&[("list-type", "2")], "Key"),
            Backend::Azure => (&[("restype", "container"), ("comp", "list")], "Name"),
        };
        let body = self
            .request(reqwest::Method::GET, bucket, query, None)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut keys: Vec<String> = body
            .split(open.as_str())
            .skip(1)
            .filter_map(|part| part.split(close.as_str()).next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    async fn get(&self, bucket: &str, key: &str) -> Option<String> {
        let r = self
            .request(reqwest::Method::GET, &format!("{bucket}/{key}"), &[], None)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        status.is_success().then_some(text)
    }

    async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let r = self
            .request(
                reqwest::Method::PUT,
                &format!("{bucket}/{key}"),
                &[],
                Some(body.into()),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    async fn delete(&self, bucket: &str, key: &str) {
        let r = self
            .request(
                reqwest::Method::DELETE,
                &format!("{bucket}/{key}"),
                &[],
                None,
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    fn command(&self, dir: &std::path::Path, args: &[&str]) -> Command {
        match self.backend {
            Backend::S3 => s3_command(dir, args, &format!("http://127.0.0.1:{}", self.port)),
            Backend::Azure => {
                let mut cmd = command(dir, args);
                cmd.env("AZURE_STORAGE_USE_EMULATOR", "true")
                    .env(
                        "AZURITE_BLOB_STORAGE_URL",
                        format!("http://127.0.0.1:{}", self.port),
                    )
                    .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
                    .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
                    .env_remove("AZURE_STORAGE_SAS_KEY");
                cmd
            }
        }
    }

    /// The test export, per day into this store, its state here too.
    fn incremental(&self) -> Vec<&str> {
        export(&["--state", &self.state, "-o", &self.per_day])
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

    /// The CareSoft source's day of 2024-03-01 into `target`.
    async fn export_day_to(&self, dir: &std::path::Path, target: &str) -> Run {
        let args = [
            "export",
            "hanoi",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "-o",
            target,
        ];
        self.run(dir, &args).await
    }

    async fn run(&self, dir: &std::path::Path, args: &[&str]) -> Run {
        crate::common::run_command(self.command(dir, args)).await
    }
}

/// Each test, against the S3 test server and against Azurite: the same
/// cases, each store's own URLs.
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test]
                async fn s3() {
                    if let Some(store) = super::Store::s3().await {
                        super::$test(store).await
                    }
                }

                #[tokio::test]
                async fn azure() {
                    if let Some(store) = super::Store::azure().await {
                        super::$test(store).await
                    }
                }
            }
        )*
    };
}

on_every_store!(
    per_window_objects_and_the_state_land_in_the_bucket,
    a_run_killed_mid_export_leaves_no_partial_object_and_the_rerun_completes,
    two_runs_at_once_on_one_state_one_exits_75,
    a_state_changed_behind_a_runs_back_is_not_overwritten,
    a_long_run_renews_its_lock,
    check_writes_and_removes_a_probe_where_outputs_will_go,
    ujet_transcripts_are_read_from_a_bucket,
    a_corrupt_or_foreign_state_in_the_bucket_is_refused_and_its_lock_let_go,
    rejected_records_go_beside_the_output_object,
    a_transcript_object_too_big_is_refused_unread,
    a_parquet_output_lands_whole,
    attachments_land_in_the_bucket_once_each,
);

const DAYS: [&str; 4] = ["--from", "2024-03-01", "--to", "2024-03-04"];

fn export<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["export", "hanoi"];
    all.extend(DAYS);
    all.extend(extra);
    all
}

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
pub(crate) const SUPPORT_DAY_MESSAGES: [&str; 8] = [
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
async fn exported(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    for key in store.keys("chats").await {
        if key.starts_with("hanoi/dt=") && key.ends_with(".jsonl") {
            let text = store.get("chats", &key).await.unwrap();
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

async fn per_window_objects_and_the_state_land_in_the_bucket(store: Store) {
    store.bucket("chats").await;
    // A chat every 3 hours over three days: 24.
    let server = fake(chats(24, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let plan = store
        .run(
            dir.path(),
            &export(&[
                "--state",
                store.state.as_str(),
                "-o",
                store.per_day.as_str(),
                "--dry-run",
            ]),
        )
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains(&store.at("chats/hanoi/dt=2024-03-01/conversations.jsonl")),
        "the plan shows the keys: {}",
        plan.stdout
    );
    assert!(
        store.keys("chats").await.is_empty(),
        "a dry run writes nothing"
    );
    let r = store.run(dir.path(), &store.incremental()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keys = store.keys("chats").await;
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
        serde_json::from_str(&store.get("chats", "state/hanoi.json.run").await.unwrap()).unwrap();
    assert_eq!(
        (run["outcome"].as_str(), run["records"].as_u64()),
        (Some("ok"), Some(24))
    );
    let expected: Vec<String> = (0..24).map(|i| format!("c{i:04}")).collect();
    assert_eq!(exported(&store).await, expected);
    let state: Value =
        serde_json::from_str(&store.get("chats", "state/hanoi.json").await.unwrap()).unwrap();
    assert_eq!(state["checkpoint"], "2024-03-03T17:00:00Z");
    assert_eq!(state["ledger"].as_array().unwrap().len(), 3);
    // `status` reads the same state from the bucket, through the source's
    // `state` key.
    crate::common::edit_config(dir.path(), |text| {
        format!("{text}state = \"{}\"\n", store.state)
    });
    let status = store
        .run(
            dir.path(),
            &["status", "--format", "json", "--max-lag", "30000d"],
        )
        .await;
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let hanoi = &status["sources"][0];
    assert_eq!(hanoi["checkpoint"], "2024-03-03T17:00:00Z");
    assert_eq!(hanoi["last_run"]["records"], 24);
    assert_eq!(hanoi["lock"], Value::Null);
    // Nothing new: the next run writes no object twice.
    let again = store.run(dir.path(), &store.incremental()).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(exported(&store).await, expected);
}

async fn a_run_killed_mid_export_leaves_no_partial_object_and_the_rerun_completes(store: Store) {
    store.bucket("chats").await;
    let server = fake(chats(24, 180), Duration::from_millis(400)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = store.incremental();
    let mut first = store.spawn(dir.path(), &args, Stdio::null());
    // Killed once the first day is in the bucket.
    store.until_key("chats", ".jsonl").await;
    first.kill().unwrap();
    first.wait().unwrap();
    let written = store.keys("chats").await;
    assert!(written.iter().any(|k| k.ends_with(".jsonl")), "{written:?}");
    for key in written.iter().filter(|k| k.ends_with(".jsonl")) {
        let text = store.get("chats", key).await.unwrap();
        assert!(text.ends_with('\n'), "{key} is whole");
        jsonl(&text);
    }
    // The killed run's lock is there; a rerun finds it held, then (it
    // expires) takes it over: here the lock is aged by hand.
    let lock = store
        .get("chats", "state/hanoi.json.lock")
        .await
        .expect("the killed run's lock");
    let blocked = store.run(dir.path(), &args).await;
    assert_eq!(blocked.code, 75, "{}", blocked.stderr);
    assert!(blocked.stderr.contains("in use by"), "{}", blocked.stderr);
    let mut lease: Value = serde_json::from_str(&lock).unwrap();
    lease["expires_at"] = Value::String("2024-01-01T00:00:00Z".into());
    store
        .put("chats", "state/hanoi.json.lock", lease.to_string())
        .await;
    let rerun = store.run(dir.path(), &args).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("took over the expired lock"),
        "{}",
        rerun.stderr
    );
    let expected: Vec<String> = (0..24).map(|i| format!("c{i:04}")).collect();
    assert_eq!(
        exported(&store).await,
        expected,
        "every chat once, in all objects together"
    );
    assert!(
        store.get("chats", "state/hanoi.json.lock").await.is_none(),
        "released"
    );
}

async fn two_runs_at_once_on_one_state_one_exits_75(store: Store) {
    store.bucket("chats").await;
    let server = fake(chats(8, 180), Duration::from_millis(600)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = store.incremental();
    let mut first = store.spawn(dir.path(), &args, Stdio::null());
    store.until_key("chats", ".lock").await;
    // A dry run only reads: it takes no lock and goes ahead.
    let plan = store
        .run(dir.path(), &[&args[..], &["--dry-run"]].concat())
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(&format!("state:    {}", store.state)),
        "{}",
        plan.stdout
    );
    // `status` names the run holding the lock, read from the lock object.
    crate::common::edit_config(dir.path(), |text| {
        format!("{text}state = \"{}\"\n", store.state)
    });
    let status = store.run(dir.path(), &["status", "--format", "json"]).await;
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let holder = status["sources"][0]["lock"]["holder"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        holder.contains(&format!("process {}", first.id())),
        "{status}"
    );
    let second = store.run(dir.path(), &args).await;
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
    assert_eq!(exported(&store).await, expected);
}

async fn a_state_changed_behind_a_runs_back_is_not_overwritten(store: Store) {
    store.bucket("chats").await;
    // Three windows of 600 ms each: a save after each.
    let server = fake(chats(24, 180), Duration::from_millis(600)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = store.incremental();
    let mut run = store.spawn(dir.path(), &args, Stdio::piped());
    // Once the run has committed its first window (it read the state long
    // before), another writer puts a state there: what a second run would
    // do after taking over a lock it believed expired. The run's next save
    // must find it changed.
    store.until_key("chats", ".jsonl").await;
    let theirs = r#"{"version":2,"source":"hanoi","kind":"caresoft","records":"conversations","checkpoint":"2024-03-10T00:00:00Z","recent":[],"ledger":[]}"#;
    store
        .put("chats", "state/hanoi.json", theirs.to_string())
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
        store.get("chats", "state/hanoi.json").await.unwrap(),
        theirs,
        "the other writer's state stands"
    );
}

#[tokio::test]
async fn bad_locations_are_refused_before_anything_runs() {
    let Some(store) = Store::s3().await else {
        return;
    };
    store.bucket("chats").await;
    let server = fake(chats(2, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    for (args, code, says) in [
        (vec!["-o", "s3://chats"], 2, "no key"),
        (vec!["-o", "s3://chats/a/../b.jsonl"], 2, "`..`"),
        (
            vec!["--state", store.state.as_str(), "-o", store.state.as_str()],
            2,
            "is the state",
        ),
    ] {
        let r = store.run(dir.path(), &export(&args)).await;
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert!(
        store.get("chats", "state/hanoi.json").await.is_none(),
        "nothing committed"
    );
    // A bucket that does not exist: nothing is exported, nothing committed.
    let r = store
        .run(dir.path(), &export(&["-o", "s3://missing-bucket/x.jsonl"]))
        .await;
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("NoSuchBucket"), "{}", r.stderr);
    // The demo writes to a file or stdout only.
    let r = store
        .run(dir.path(), &["demo", "-o", "s3://chats/demo.jsonl"])
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

async fn a_long_run_renews_its_lock(store: Store) {
    store.bucket("chats").await;
    // Three windows, each request 1.5 s: a run of about 4.5 s, with locks
    // that expire after 2 s unless renewed.
    let server = fake(chats(8, 180), Duration::from_millis(1500)).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let args = store.incremental();
    let mut first = store.command(dir.path(), &args);
    first.env("CHATDUMP_STATE_LEASE", "2s");
    let mut first = first
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let mut second = store.command(dir.path(), &args);
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

async fn check_writes_and_removes_a_probe_where_outputs_will_go(store: Store) {
    store.bucket("chats").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chatdump.toml"), "").unwrap();
    let r = store
        .run(
            dir.path(),
            &[
                "check",
                "--location",
                &store.at("chats/hanoi/"),
                "--location",
                &store.state,
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
    assert!(store.keys("chats").await.is_empty(), "cleaned up");
    assert!(dir.path().join("local/out").is_dir());
    assert_eq!(
        std::fs::read_dir(dir.path().join("local/out"))
            .unwrap()
            .count(),
        0
    );
    let r = store
        .run(
            dir.path(),
            &["check", "--location", &store.at("missing-bucket/x/")],
        )
        .await;
    assert_eq!(r.code, 73, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("{}: FAILED", store.at("missing-bucket/x/"))),
        "{}",
        r.stdout
    );
}

async fn ujet_transcripts_are_read_from_a_bucket(store: Store) {
    store.bucket("acme-storage").await;
    store
        .put(
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
        &format!("transcripts = \"{}\"\n", store.at("acme-storage/ccaip/")),
    );
    let r = store.run(dir.path(), &SUPPORT_DAY_MESSAGES).await;
    assert_eq!(r.code, 65, "chat 101 has none yet: {}", r.stderr);
    let rows = jsonl(&r.stdout);
    assert_eq!(rows.len(), 12, "{}", r.stderr);
    assert!(rows.iter().all(|m| m["conversation_id"] == "100"));
    assert_eq!(rows[2]["text"], "Hola, quiero cambiar mi plan 📱");
    let rejects = std::fs::read_to_string(dir.path().join("support.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains(&store.at("acme-storage/ccaip/chat-101.json")),
        "names what it looked for: {rejects}"
    );
    let check = store.run(dir.path(), &["check", "support"]).await;
    assert!(
        check.stdout.contains(&format!(
            "transcripts: 1 files in {}",
            store.at("acme-storage/ccaip")
        )),
        "{}{}",
        check.stdout,
        check.stderr
    );
    // A bucket that is not there: `check` says so (an export would find
    // every transcript missing).
    let dir = crate::ujet::config(
        &server.uri(),
        &format!("transcripts = \"{}\"\n", store.at("no-such-bucket/x")),
    );
    let check = store.run(dir.path(), &["check", "support"]).await;
    assert_eq!(check.code, 78, "{}{}", check.stdout, check.stderr);
    let missing = match store.backend {
        Backend::S3 => "NoSuchBucket",
        Backend::Azure => "ContainerNotFound",
    };
    assert!(check.stderr.contains(missing), "{}", check.stderr);
}

async fn a_corrupt_or_foreign_state_in_the_bucket_is_refused_and_its_lock_let_go(store: Store) {
    store.bucket("chats").await;
    let server = fake(chats(2, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    // A lock object far bigger than a lease: refused, not read.
    store
        .put("chats", "state/hanoi.json.lock", "x".repeat(200_000))
        .await;
    let r = store.run(dir.path(), &store.incremental()).await;
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("more than the 65536"), "{}", r.stderr);
    store.delete("chats", "state/hanoi.json.lock").await;
    for planted in [
        "{not json".to_string(),
        r#"{"version":2,"source":"other","kind":"caresoft","records":"conversations","checkpoint":"2024-03-01T00:00:00Z"}"#.to_string(),
    ] {
        store.put("chats", "state/hanoi.json", planted.clone()).await;
        let r = store
            .run(dir.path(), &store.incremental())
            .await;
        assert_eq!(r.code, 78, "{planted}: {}", r.stderr);
        assert!(r.stderr.contains(&store.state), "{}", r.stderr);
        assert_eq!(
            store.keys("chats").await,
            ["state/hanoi.json"],
            "nothing written, and no lock left to wait for"
        );
        assert_eq!(store.get("chats", "state/hanoi.json").await.unwrap(), planted);
    }
}

async fn rejected_records_go_beside_the_output_object(store: Store) {
    store.bucket("chats").await;
    let mut rows = chats(2, 180);
    rows.push(serde_json::json!({"start_time": "2024-03-01 09:00:00", "cus_name": "sin id"}));
    let server = fake(rows, Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let r = store
        .export_day_to(dir.path(), &store.at("chats/day.jsonl"))
        .await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "saved with the reasons to {}",
            store.at("chats/day.jsonl.rejects.jsonl")
        )),
        "{}",
        r.stderr
    );
    assert_eq!(
        store.keys("chats").await,
        ["day.jsonl", "day.jsonl.rejects.jsonl"]
    );
    let rejects = store.get("chats", "day.jsonl.rejects.jsonl").await.unwrap();
    assert!(rejects.contains("sin id"), "{rejects}");
    assert_eq!(
        jsonl(&store.get("chats", "day.jsonl").await.unwrap()).len(),
        2
    );
}

/// A transcript object over `max_record_size` is refused before it is
/// read (its size is known from the answer's headers): that chat is
/// rejected, the run goes on.
async fn a_transcript_object_too_big_is_refused_unread(store: Store) {
    store.bucket("acme-storage").await;
    store
        .put("acme-storage", "ccaip/chat-100.json", "x".repeat(4096))
        .await;
    let chat = serde_json::json!({"id": 100, "status": "finished", "chat_type": "Messaging (WhatsApp)",
        "updated_at": "2024-03-05T11:01:00.000Z"});
    let server = crate::ujet::manager(vec![chat], false, |_, _| {}).await;
    let dir = crate::ujet::config(
        &server.uri(),
        &format!(
            "transcripts = \"{}\"\nmax_record_size = \"1KiB\"\n",
            store.at("acme-storage/ccaip")
        ),
    );
    let r = store.run(dir.path(), &SUPPORT_DAY_MESSAGES).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let rejects = std::fs::read_to_string(dir.path().join("support.rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("4096 bytes, more than the 1024"),
        "{rejects}"
    );
}

/// A Parquet output goes to the store like any other: spooled, then
/// uploaded whole (its magic number at both ends).
async fn a_parquet_output_lands_whole(store: Store) {
    if !cfg!(feature = "parquet") {
        eprintln!("SKIPPED: built without the `parquet` feature");
        return;
    }
    store.bucket("chats").await;
    let server = fake(chats(8, 180), Duration::ZERO).await;
    let dir = caresoft_config(&server.uri(), ONE_TYPE);
    let target = store.at("chats/day.parquet");
    let r = store.export_day_to(dir.path(), &target).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let object = store.get("chats", "day.parquet").await.expect("the object");
    assert!(
        object.starts_with("PAR1") && object.ends_with("PAR1"),
        "{}",
        object.len()
    );
}

/// `--attachments` into the store: a transcript's photo and a video (over
/// the size sent in one request, so uploaded in parts) read from the
/// platform's bucket and kept by their content; a second run adds nothing.
async fn attachments_land_in_the_bucket_once_each(store: Store) {
    use sha2::Digest;
    store.bucket("acme-storage").await;
    store.bucket("chats").await;
    let photo = b"\xff\xd8\xff\xe0\0\x10JFIF\0photo".to_vec();
    let mut video = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    video.resize(9 << 20, 7);
    let transcript = serde_json::json!({"comm_type": "chat", "comm_id": 100, "entries": [
        {"timestamp": 1709632800, "role": "end_user", "body": {"type": "photo", "media_id": 7781}},
        {"timestamp": 1709632801, "role": "agent", "body": {"type": "video", "title": "Cómo", "video": {"url": "https://media.invalid/v.mp4"}}}
    ]});
    store
        .put(
            "acme-storage",
            "ccaip/chat-100.json",
            transcript.to_string(),
        )
        .await;
    store
        .put(
            "acme-storage",
            "ccaip/chat-100-photo-7781.jpg",
            photo.clone(),
        )
        .await;
    store
        .put("acme-storage", "ccaip/chat-100-video-42.mp4", video.clone())
        .await;
    let chat = serde_json::json!({"id": 100, "status": "finished", "chat_type": "Messaging (WhatsApp)",
        "updated_at": "2024-03-05T11:01:00.000Z", "photos": [{"id": 7781, "url": "https://media.invalid/p.jpg"}],
        "videos": [{"id": 42, "url": "https://media.invalid/v.mp4"}]});
    let server = crate::ujet::manager(vec![chat], false, |_, _| {}).await;
    let dir = crate::ujet::config(
        &server.uri(),
        &format!("transcripts = \"{}\"\n", store.at("acme-storage/ccaip/")),
    );
    let dest = store.at("chats/files");
    let mut args = SUPPORT_DAY_MESSAGES.to_vec();
    args.extend(["--attachments", &dest]);
    let kept = |bytes: &[u8], extension: &str| {
        let hash: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("files/sha256/{}/{hash}.{extension}", &hash[..2])
    };
    let mut want = vec![kept(&photo, "jpg"), kept(&video, "mp4")];
    want.sort();
    for run in 0..2 {
        let r = store.run(dir.path(), &args).await;
        assert_eq!(r.code, 0, "run {run}: {}", r.stderr);
        let rows = jsonl(&r.stdout);
        let statuses: Vec<&str> = rows
            .iter()
            .map(|m| m["attachments"][0]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["stored", "stored"], "run {run}");
        assert_eq!(rows[1]["attachments"][0]["bytes"], video.len());
        assert_eq!(store.keys("chats").await, want, "run {run}");
    }
}
