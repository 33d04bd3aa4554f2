//! UJET / CCAI Platform Manager API end to end: the binary against a fake
//! Manager API that sorts, filters and pages like the real one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{jsonl, run};

const CHATS: &str = "/manager/api/v1/chats";

pub(crate) fn config(base: &str, extra: &str) -> tempfile::TempDir {
    crate::common::source_config("support", "ujet", base, extra)
}

/// `n` chats updated one second apart from 2024-03-05T10:00:00Z, except
/// that `ties` of them share the first instant.
fn chats(n: usize, ties: usize) -> Vec<Value> {
    let base = chrono::DateTime::parse_from_rfc3339("2024-03-05T10:00:00Z").unwrap();
    (0..n)
        .map(|i| {
            let offset = i.saturating_sub(ties.saturating_sub(1)) as i64;
            let t = base + chrono::Duration::seconds(offset);
            json!({"id": 1000 + i, "status": "finished", "chat_type": "Messaging (WhatsApp)",
                   "updated_at": t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), "rating": 5})
        })
        .collect()
}

/// The Manager API's listing: filters on `updated_at[from]`/`[to]`, sorts
/// ascending, caps `per` at 100, pages, and sets `Link`, `Total`,
/// `Per-Page`. After each answer, `change` may edit the data (chats that
/// change while we page).
pub(crate) struct Manager {
    chats: Arc<Mutex<Vec<Value>>>,
    link: bool,
    calls: AtomicUsize,
    change: fn(usize, &mut [Value]),
}

impl Respond for Manager {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let q: std::collections::HashMap<String, String> =
            r.url.query_pairs().into_owned().collect();
        let mut chats = self.chats.lock().unwrap();
        let from = q.get("updated_at[from]").cloned().unwrap_or_default();
        let to = q
            .get("updated_at[to]")
            .cloned()
            .unwrap_or_else(|| "9".into());
        let mut rows: Vec<Value> = chats
            .iter()
            .filter(|c| {
                let u = c["updated_at"].as_str().unwrap();
                u >= from.as_str() && u < to.as_str()
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            (a["updated_at"].as_str(), a["id"].as_i64())
                .cmp(&(b["updated_at"].as_str(), b["id"].as_i64()))
        });
        let per: usize = q
            .get("per")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100)
            .min(100);
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let total = rows.len();
        let body: Vec<Value> = rows.into_iter().skip((page - 1) * per).take(per).collect();
        let mut response = ResponseTemplate::new(200)
            .set_body_json(body)
            .insert_header("Total", total.to_string().as_str())
            .insert_header("Per-Page", per.to_string().as_str());
        if self.link {
            let last = total.div_ceil(per).max(1);
            let mut links = vec![format!(
                "<https://acme.ujet.co{CHATS}?page={last}&per={per}>; rel=\"last\""
            )];
            if page < last {
                links.push(format!(
                    "<https://acme.ujet.co{CHATS}?page={}&per={per}>; rel=\"next\"",
                    page + 1
                ));
            }
            response = response.insert_header("Link", links.join(", ").as_str());
        }
        (self.change)(call, &mut chats[..]);
        response
    }
}

pub(crate) async fn manager(
    chats: Vec<Value>,
    link: bool,
    change: fn(usize, &mut [Value]),
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(Manager {
            chats: Arc::new(Mutex::new(chats)),
            link,
            calls: AtomicUsize::new(0),
            change,
        })
        .mount(&server)
        .await;
    server
}

const WINDOW: [&str; 4] = [
    "--from",
    "2024-03-05T00:00:00Z",
    "--to",
    "2024-03-06T00:00:00Z",
];

fn ids(stdout: &str) -> Vec<String> {
    jsonl(stdout)
        .iter()
        .map(|v| v["conversation_id"].as_str().unwrap().to_string())
        .collect()
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["export", "support"];
    a.extend_from_slice(&WINDOW);
    a.extend_from_slice(extra);
    a
}

#[tokio::test]
async fn every_chat_once_with_link_headers_and_the_100_cap() {
    let server = manager(chats(250, 0), true, |_, _| {}).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = ids(&r.stdout);
    let want: Vec<String> = (0..250).map(|i| (1000 + i).to_string()).collect();
    assert_eq!(got, want);
    let requests = server.received_requests().await.unwrap();
    assert!(requests
        .iter()
        .all(|r| r.url.query_pairs().any(|(k, v)| k == "per" && v == "100")));
    assert!(requests.iter().all(|r| r
        .headers
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Basic "))));
    assert!(
        requests.len() <= 4,
        "tailing needs few requests: {}",
        requests.len()
    );
}

#[tokio::test]
async fn without_link_headers_a_short_last_page_ends_it() {
    let server = manager(chats(130, 0), false, |_, _| {}).await;
    let dir = config(&server.uri(), "page_size = 100\n");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ids(&r.stdout).len(), 130);
}

#[tokio::test]
async fn more_than_a_page_of_ties_is_paged_through() {
    // 150 chats share one updated_at: the start cannot move, pages must.
    let server = manager(chats(180, 150), true, |_, _| {}).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut got = ids(&r.stdout);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 180);
    assert_eq!(ids(&r.stdout).len(), 180, "no duplicates");
}

/// After the first answer, chat 1005 (already seen) and chat 1150 (not yet
/// seen) change: both move to the end of the window, status "reopened".
fn reopen_two(call: usize, chats: &mut [Value]) {
    if call == 0 {
        for c in chats.iter_mut() {
            if c["id"] == 1005 || c["id"] == 1150 {
                c["updated_at"] = json!("2024-03-05T20:00:00.000Z");
                c["status"] = json!("reopened");
            }
        }
    }
}

#[tokio::test]
async fn chats_changing_while_we_tail_arrive_in_their_latest_version_once() {
    let server = manager(chats(200, 0), true, reopen_two).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&r.stdout);
    let versions = |id: &str| -> Vec<String> {
        rows.iter()
            .filter(|v| v["conversation_id"] == id)
            .map(|v| v["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        versions("1005"),
        ["finished", "reopened"],
        "seen, then its new version"
    );
    assert_eq!(
        versions("1150"),
        ["reopened"],
        "only the latest version, once"
    );
    for i in (0..200).filter(|i| *i != 5 && *i != 150) {
        assert_eq!(
            versions(&(1000 + i).to_string()).len(),
            1,
            "chat {}",
            1000 + i
        );
    }
}

/// Rows of a CSV, JSONL, compressed or Parquet output as
/// (conversation_id, status).
fn rows_in(path: &std::path::Path) -> Vec<(String, String)> {
    let name = path.to_string_lossy().into_owned();
    #[cfg(feature = "parquet")]
    if name.ends_with(".parquet") {
        return parquet_rows(path);
    }
    let mut text = String::new();
    let file = std::fs::File::open(path).unwrap();
    if name.ends_with(".gz") {
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text).unwrap();
    } else if name.ends_with(".zst") {
        std::io::Read::read_to_string(&mut zstd::Decoder::new(file).unwrap(), &mut text).unwrap();
    } else {
        std::io::Read::read_to_string(&mut std::io::BufReader::new(file), &mut text).unwrap();
    }
    if name
        .trim_end_matches(".gz")
        .trim_end_matches(".zst")
        .ends_with(".csv")
    {
        crate::common::csv_columns(&text, &["conversation_id", "status"])
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    } else {
        jsonl(&text)
            .iter()
            .map(|v| {
                (
                    v["conversation_id"].as_str().unwrap().to_string(),
                    v["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// A Parquet file's (conversation_id, status), read with the Arrow reader.
#[cfg(feature = "parquet")]
fn parquet_rows(path: &std::path::Path) -> Vec<(String, String)> {
    use arrow_array::{Array, StringArray};
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (ids, status) = (column("conversation_id"), column("status"));
        for i in 0..ids.len() {
            rows.push((ids.value(i).to_string(), status.value(i).to_string()));
        }
    }
    rows
}

/// The same changing chats as above, into files: there each chat is one
/// row, its newest version.
#[tokio::test]
async fn a_file_holds_each_changed_chat_once_in_its_newest_version() {
    let plain: &[&str] = &[];
    for (output, flags) in [
        ("chats.csv", plain),
        ("chats.jsonl", plain),
        ("chats.jsonl.gz", plain),
        ("chats.csv.gz", plain),
        ("chats.jsonl.zst", plain),
        ("chats.csv.zst", plain),
        ("zoned.csv", &["--tz", "America/Bogota"]),
        ("raw.jsonl", &["--include-raw"]),
        ("masked.jsonl.gz", &["--redact=mask"]),
        #[cfg(feature = "parquet")]
        ("chats.parquet", plain),
        #[cfg(feature = "parquet")]
        ("raw.parquet", &["--include-raw"]),
    ] {
        let server = manager(chats(200, 0), true, reopen_two).await;
        let dir = config(&server.uri(), "");
        let mut extra = vec!["-o", output];
        extra.extend_from_slice(flags);
        let r = run(dir.path(), &args(&extra)).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows = rows_in(&dir.path().join(output));
        assert_eq!(rows.len(), 200, "{output}: one row per chat");
        let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200, "{output}: no chat twice");
        for changed in ["1005", "1150"] {
            let status: Vec<&str> = rows
                .iter()
                .filter(|(id, _)| id == changed)
                .map(|(_, s)| s.as_str())
                .collect();
            assert_eq!(
                status,
                ["reopened"],
                "{output}: {changed} in its newest version"
            );
        }
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(
            left, 2,
            "{output}: the config and the output, no temporaries"
        );
    }
}

#[tokio::test]
async fn bad_credentials_exit_77_and_check_uses_the_organization_settings() {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(path("/manager/api/v1/settings/organization"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "unauthorized"})))
        .mount(&server)
        .await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    let r = run(dir.path(), &["check", "support"]).await;
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stdout.contains("support: FAILED"));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"id": 7, "updated_at": "2024-03-05T01:00:00.000Z"}])),
        )
        .mount(&server)
        .await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ids(&r.stdout), ["7"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn unreadable_chats_are_saved_and_counted_and_messages_are_refused() {
    let server = MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(crate::common::fixture("ujet/chats.json")),
        )
        .mount(&server)
        .await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&["-o", "c.csv"])).await;
    assert_eq!(r.code, 65, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join("c.csv")).unwrap();
    assert_eq!(text.lines().count(), 5, "header and four chats: {text}");
    let rejects = std::fs::read_to_string(dir.path().join("c.csv.rejects.jsonl")).unwrap();
    assert!(rejects.contains("31358"));
    let r = run(dir.path(), &args(&["--records", "messages"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no message text"), "{}", r.stderr);
}

/// [`Manager`] answering the tail of some days slower than others.
struct Slow {
    inner: Manager,
    slow_day: &'static str,
}

impl Respond for Slow {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let from = r
            .url
            .query_pairs()
            .find(|(k, _)| k == "updated_at[from]")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let delay = if from.starts_with(self.slow_day) {
            120
        } else {
            5
        };
        self.inner
            .respond(r)
            .set_delay(std::time::Duration::from_millis(delay))
    }
}

#[tokio::test]
async fn the_tails_of_several_windows_overlap_and_the_output_is_the_same() {
    // Four days, 30 chats a day, pages of 10: each day's tail is four
    // requests. Whichever day answers slowly, the rows come out in the
    // order of one tail after another.
    let base = chrono::DateTime::parse_from_rfc3339("2024-03-05T01:00:00Z").unwrap();
    let all: Vec<Value> = (0..120)
        .map(|i| {
            let t = base + chrono::Duration::minutes(47 * i as i64);
            json!({"id": 5000 + i, "status": "finished", "chat_type": "Messaging (WhatsApp)",
                   "updated_at": t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()})
        })
        .collect();
    let mut outputs = Vec::new();
    for slow_day in ["2024-03-05", "2024-03-06", "2024-03-08"] {
        let server = MockServer::start().await;
        Mock::given(path(CHATS))
            .respond_with(Slow {
                inner: Manager {
                    chats: Arc::new(Mutex::new(all.clone())),
                    link: false,
                    calls: AtomicUsize::new(0),
                    change: |_, _| {},
                },
                slow_day,
            })
            .mount(&server)
            .await;
        let dir = config(&server.uri(), "page_size = 10\n");
        let r = run(
            dir.path(),
            &[
                "export",
                "support",
                "--from",
                "2024-03-05T00:00:00Z",
                "--to",
                "2024-03-09T00:00:00Z",
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let got = ids(&r.stdout);
        let want: Vec<String> = (0..120).map(|i| (5000 + i).to_string()).collect();
        assert_eq!(got, want, "slow {slow_day}");
        outputs.push(r.stdout);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "byte for byte");
}

/// The summary tells what the committed file holds: chats that changed
/// while the export paged are written twice, and the file keeps one row
/// each, so the summary counts the file's rows, not the versions met. And
/// every request sent is counted, retries too.
#[tokio::test]
async fn the_summary_counts_the_files_rows_and_every_request_sent() {
    let server = manager(chats(200, 0), true, reopen_two).await;
    let dir = config(&server.uri(), "");
    let r = run(dir.path(), &args(&["-o", "c.jsonl"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = jsonl(&std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap());
    assert_eq!(rows.len(), 200);
    assert!(
        r.stderr.contains("exported 200 conversations"),
        "{}",
        r.stderr
    );
    let sent = server.received_requests().await.unwrap().len();
    assert!(
        r.stderr.contains(&format!("({sent} requests")),
        "{sent} sent: {}",
        r.stderr
    );

    // Two failures before each answer of a one-page export: 3 requests.
    let flaky = wiremock::MockServer::start().await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&flaky)
        .await;
    Mock::given(path(CHATS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(2)
        .mount(&flaky)
        .await;
    let dir = config(&flaky.uri(), "");
    let r = run(dir.path(), &args(&["-o", "d.jsonl"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("(3 requests, 2 of them retries)"),
        "{}",
        r.stderr
    );
}
