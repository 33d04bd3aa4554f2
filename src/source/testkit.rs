//! The driver's test kit: a scripted platform (a fake [`ChatSource`] whose
//! paging is chosen per test) served by wiremock on 127.0.0.1, the unit
//! tests of every paging strategy's stop conditions and guards, and a
//! conformance suite every registered provider runs (retries, rate limits,
//! rejected credentials, an empty window), so a provider's own tests test
//! only its platform.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use reqwest::Url;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;
use crate::config::{Config, HttpSettings, Secret};
use crate::http::{default_verdict, Http};
use crate::model::Item;

/// A platform of the test's making: records `{"id", "at"}` under `items`,
/// a `total` beside them, pages and windows in the query string.
struct Scripted {
    base: Url,
    paging: Paging,
    /// Where the files records ask for (`"file": NAME`) are.
    files: Option<crate::store::Folder>,
}

impl ChatSource for Scripted {
    fn kind(&self) -> SourceKind {
        registry::kind("caresoft").expect("registered")
    }
    fn timezone(&self) -> Tz {
        chrono_tz::UTC
    }
    fn connection(&self) -> Connection {
        Connection {
            auth: Auth::Bearer(Secret::new("scripted-secret")),
            settings: HttpSettings {
                rate_limit: 10_000.0,
                max_retries: 2,
                backoff: std::time::Duration::from_millis(1),
                ..HttpSettings::default()
            },
            max_in_flight: 4,
        }
    }
    fn timing(&self) -> Timing {
        Timing {
            window: Duration::days(1),
            settle: Duration::zero(),
            lookback: Duration::zero(),
        }
    }
    fn paging(&self) -> Paging {
        self.paging
    }
    fn page_url(&self, query: &Query, page: u32) -> Url {
        let time = |t: DateTime<Utc>| t.to_rfc3339();
        endpoint(
            &self.base,
            "items",
            &[
                ("from", time(query.window.from)),
                ("to", time(query.window.to)),
                ("page", page.to_string()),
            ],
        )
    }
    fn verdict(&self, status: u16, _body: &[u8]) -> Verdict {
        default_verdict(status)
    }
    fn items_at(&self) -> ItemsAt {
        ItemsAt::Key("items")
    }
    fn read_envelope(&self, envelope: &Envelope) -> Result<Option<u64>, Verdict> {
        Ok(envelope.text("total").and_then(|t| t.parse().ok()))
    }
    fn parse_item(&self, _query: &Query, item: &[u8], _raw: bool, out: &mut dyn FnMut(Parsed)) {
        let value: Value = match serde_json::from_slice(item) {
            Ok(v) => v,
            Err(e) => return out(Parsed::from_json_error(item, "item", &e)),
        };
        let Some(id) = value["id"].as_str() else {
            return out(Parsed::rejected(item, "no id"));
        };
        let conversation = Conversation {
            conversation_id: id.to_string(),
            updated_at: value["at"].as_str().and_then(|t| t.parse().ok()),
            message_count: value["messages"].as_i64(),
            ..Default::default()
        };
        if let Some(file) = value["file"].as_str() {
            return out(Parsed::Wants(Box::new(Wanted {
                conversation,
                names: vec![format!("{file}.none"), file.to_string()],
                item: item.to_vec(),
            })));
        }
        out(Parsed::Record(Record::Conversation(Box::new(Item {
            record: conversation,
            raw: None,
        }))))
    }
    fn files(&self) -> Option<FilesAt<'_>> {
        self.files.as_ref().map(|folder| FilesAt {
            what: "files",
            folder,
            limit: 64,
        })
    }
    /// A conversation whose message count is its file's length.
    fn parse_with_file(
        &self,
        _query: &Query,
        wanted: Wanted,
        found: FileFound,
        _want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        match found {
            FileFound::Read { bytes, .. } => {
                out(Parsed::Record(Record::Conversation(Box::new(Item {
                    record: Conversation {
                        message_count: Some(bytes.len() as i64),
                        ..wanted.conversation
                    },
                    raw: None,
                }))))
            }
            FileFound::Missing { looked_for } => {
                out(Parsed::rejected(&wanted.item, looked_for.join(" ")))
            }
            FileFound::Bad { why, .. } => out(Parsed::rejected(&wanted.item, why)),
        }
    }
    fn check(&self) -> (Query, Url) {
        let query = Query {
            window: day(),
            stream: RecordKind::Conversations,
            variant: 0,
        };
        let url = self.page_url(&query, 1);
        (query, url)
    }
}

fn day() -> Window {
    Window::new(
        "2024-03-01T00:00:00Z".parse().unwrap(),
        "2024-03-02T00:00:00Z".parse().unwrap(),
    )
}

/// What the driver fed: ids in order, rejects, windows ended.
#[derive(Default)]
struct Collected {
    ids: Vec<String>,
    counts: Vec<Option<i64>>,
    rejected: usize,
    windows: usize,
}

impl Sink for Collected {
    fn accept(&mut self, item: Parsed, _context: &ConversationContext) -> Result<bool> {
        match item {
            Parsed::Record(Record::Conversation(c)) => {
                let new = !self.ids.contains(&c.record.conversation_id);
                self.ids.push(c.record.conversation_id);
                self.counts.push(c.record.message_count);
                Ok(new)
            }
            Parsed::Rejected(_) => {
                self.rejected += 1;
                Ok(true)
            }
            _ => Ok(true),
        }
    }
    fn begin_response(&mut self) {}
    fn end_window(&mut self, _window: &Window, _context: &ConversationContext) -> Result<()> {
        self.windows += 1;
        Ok(())
    }
}

fn query_of(r: &Request) -> HashMap<String, String> {
    r.url.query_pairs().into_owned().collect()
}

/// Serves a page computed from the request by `answer`, counting requests.
struct Script<F: Fn(&HashMap<String, String>) -> Value + Send + Sync + 'static> {
    answer: F,
    calls: Arc<AtomicUsize>,
}

impl<F: Fn(&HashMap<String, String>) -> Value + Send + Sync + 'static> Respond for Script<F> {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json((self.answer)(&query_of(r)))
    }
}

/// Drives one day of a scripted platform; the ids it yielded, and how many
/// requests the server saw.
async fn drive_script(
    paging: Paging,
    answer: impl Fn(&HashMap<String, String>) -> Value + Send + Sync + 'static,
) -> (Result<(Collected, DriveStats)>, usize) {
    drive_script_with(paging, None, answer).await
}

/// [`drive_script`] for records that ask for files in `files`.
async fn drive_script_with(
    paging: Paging,
    files: Option<crate::store::Folder>,
    answer: impl Fn(&HashMap<String, String>) -> Value + Send + Sync + 'static,
) -> (Result<(Collected, DriveStats)>, usize) {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(wiremock::matchers::any())
        .respond_with(Script {
            answer,
            calls: calls.clone(),
        })
        .mount(&server)
        .await;
    let source = Scripted {
        base: Url::parse(&server.uri()).unwrap(),
        paging,
        files,
    };
    let c = source.connection();
    let http = Http::new("scripted", c.auth, c.settings, c.max_in_flight).unwrap();
    let mut sink = Collected::default();
    let learned = Learned::default();
    let driving = Driving {
        source: &source,
        http: &http,
        learned: &learned,
        attach: None,
    };
    let result = drive(driving, day(), RecordKind::Conversations, false, &mut sink).await;
    (
        result.map(|stats| (sink, stats)),
        calls.load(Ordering::SeqCst),
    )
}

fn page_of(q: &HashMap<String, String>) -> usize {
    q["page"].parse().unwrap()
}

fn ids(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|i| json!({"id": format!("c{i}")})).collect()
}

#[tokio::test]
async fn numbered_pages_follow_the_total_and_stop_at_a_short_page() {
    let paging = Paging::Numbered {
        page_size: 2,
        concurrency: 3,
    };
    let (result, calls) = drive_script(paging, |q| {
        let p = page_of(q);
        json!({"total": 5, "items": ids((p - 1) * 2..(p * 2).min(5))})
    })
    .await;
    let (sink, stats) = result.unwrap();
    assert_eq!(sink.ids, ["c0", "c1", "c2", "c3", "c4"], "in page order");
    assert_eq!((calls, stats.requests, sink.windows), (3, 3, 1));
}

/// Records that ask for files are mapped with them in page order, though
/// the files are read many at once: a missing file and one over the size
/// limit reach the provider as such, and a link out of the folder is
/// refused like an oversized file.
#[tokio::test]
async fn files_asked_for_are_read_and_mapped_in_page_order() {
    let folder = tempfile::tempdir().unwrap();
    for i in 0..40 {
        if i % 7 != 3 {
            std::fs::write(folder.path().join(format!("f{i}")), "x".repeat(i + 1)).unwrap();
        }
    }
    std::fs::write(folder.path().join("f5"), "x".repeat(65)).unwrap();
    std::fs::remove_file(folder.path().join("f6")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", folder.path().join("f6")).unwrap();
    let paging = Paging::Numbered {
        page_size: 20,
        concurrency: 2,
    };
    let local = crate::store::Folder::Local(folder.path().to_path_buf());
    let (result, _) = drive_script_with(paging, Some(local), |q| {
        let p = page_of(q);
        let items: Vec<Value> = ((p - 1) * 20..(p * 20).min(40))
            .map(|i| json!({"id": format!("c{i}"), "file": format!("f{i}")}))
            .collect();
        json!({"total": 40, "items": items})
    })
    .await;
    let (sink, _) = result.unwrap();
    let read: Vec<usize> = (0..40)
        .filter(|i| i % 7 != 3 && *i != 5 && *i != 6)
        .collect();
    let want: Vec<String> = read.iter().map(|i| format!("c{i}")).collect();
    assert_eq!(
        sink.ids, want,
        "in page order, the unreadable ones rejected"
    );
    let counts: Vec<Option<i64>> = read.iter().map(|i| Some(*i as i64 + 1)).collect();
    assert_eq!(sink.counts, counts, "each with its own file");
    assert_eq!(sink.rejected, 40 - read.len());
}

#[tokio::test]
async fn numbered_pages_go_on_while_full_when_the_total_grows() {
    let paging = Paging::Numbered {
        page_size: 2,
        concurrency: 2,
    };
    // The total says 2, but rows keep coming until page 4 is short.
    let (result, calls) = drive_script(paging, |q| {
        let p = page_of(q);
        json!({"total": 2, "items": ids((p - 1) * 2..(p * 2).min(7))})
    })
    .await;
    let (sink, _) = result.unwrap();
    assert_eq!(sink.ids.len(), 7);
    assert_eq!(calls, 4);
}

#[tokio::test]
async fn a_page_repeating_earlier_rows_fails_the_query_at_once() {
    let paging = Paging::Numbered {
        page_size: 2,
        concurrency: 2,
    };
    // A platform ignoring `page`: the same two rows for every page number,
    // with a total announcing a trillion pages. Its records cannot all be
    // had: an error (nothing committed), after a bounded number of asks.
    let (result, calls) = drive_script(
        paging,
        |_| json!({"total": 2_000_000_000_000u64, "items": ids(0..2)}),
    )
    .await;
    let e = result
        .err()
        .expect("a query that cannot be completed fails");
    assert_eq!(e.exit_code(), 65, "{e}");
    assert!(calls <= 8, "{calls} requests");
}

#[tokio::test]
async fn a_page_repeated_once_is_asked_again_and_every_record_delivered() {
    let paging = Paging::Numbered {
        page_size: 2,
        concurrency: 3,
    };
    // Page 2's first answer repeats page 1 (a cache glitch).
    let asked = Arc::new(AtomicUsize::new(0));
    let (result, calls) = drive_script(paging, move |q| {
        let p = page_of(q);
        let first_time = p == 2 && asked.fetch_add(1, Ordering::SeqCst) == 0;
        let p = if first_time { 1 } else { p };
        json!({"total": 9, "items": ids((p - 1) * 2..(p * 2).min(9))})
    })
    .await;
    let (sink, _) = result.unwrap();
    assert_eq!(
        sink.ids,
        ids(0..9)
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(calls, 6, "five pages and page 2 again");
}

#[tokio::test]
async fn pages_that_overlap_while_the_total_stands_fail_the_query() {
    let paging = Paging::Numbered {
        page_size: 2,
        concurrency: 1,
    };
    // Page 2 overlaps page 1 by a record while the total stays 6 (a stale
    // page): c3 is never delivered. Not a shift from a new record (the
    // total would have grown): the query fails rather than lose it.
    let (result, _) = drive_script(paging, |q| {
        let items = match page_of(q) {
            1 => ids(0..2),
            2 => ids(1..3),
            p => ids((p - 1) * 2..(p * 2).min(6)),
        };
        json!({"total": 6, "items": items})
    })
    .await;
    let e = result.err().expect("a record was lost: the query fails");
    assert!(
        e.to_string()
            .contains("5 distinct records where the platform announced 6"),
        "{e}"
    );
}

#[tokio::test]
async fn a_tail_page_repeated_once_is_asked_again() {
    // 6 rows a minute apart, `per` 2; the second request's first answer
    // repeats the first page.
    let rows: Vec<(String, String)> = (0..6)
        .map(|i| (format!("c{i}"), format!("2024-03-01T10:{i:02}:00Z")))
        .collect();
    let asked = Arc::new(AtomicUsize::new(0));
    let (result, _) = drive_script(Paging::Tail { per: 2 }, move |q| {
        let n = asked.fetch_add(1, Ordering::SeqCst);
        let from = if n == 1 {
            "2024-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        } else {
            q["from"].parse::<DateTime<Utc>>().unwrap()
        };
        let items: Vec<Value> = rows
            .iter()
            .filter(|(_, at)| at.parse::<DateTime<Utc>>().unwrap() >= from)
            .skip((page_of(q) - 1) * 2)
            .take(2)
            .map(|(id, at)| json!({"id": id, "at": at}))
            .collect();
        json!({"items": items})
    })
    .await;
    let (sink, _) = result.unwrap();
    let mut unique = sink.ids.clone();
    unique.sort();
    unique.dedup();
    // Taken as ties, the repeat would have sent the tail to page 2 of
    // 10:01, past c2.
    assert_eq!(unique, ["c0", "c1", "c2", "c3", "c4", "c5"]);
}

#[tokio::test]
async fn the_tail_restarts_at_the_newest_time_and_pages_only_through_ties() {
    // 5 rows share 10:00, then one row a minute; `per` 2.
    let rows: Vec<(String, String)> = (0..9)
        .map(|i| {
            let minute = i.max(4) - 4;
            (format!("c{i}"), format!("2024-03-01T10:{minute:02}:00Z"))
        })
        .collect();
    let (result, calls) = drive_script(Paging::Tail { per: 2 }, move |q| {
        let from = q["from"].parse::<DateTime<Utc>>().unwrap();
        let page = page_of(q);
        let items: Vec<Value> = rows
            .iter()
            .filter(|(_, at)| at.parse::<DateTime<Utc>>().unwrap() >= from)
            .skip((page - 1) * 2)
            .take(2)
            .map(|(id, at)| json!({"id": id, "at": at}))
            .collect();
        json!({"items": items})
    })
    .await;
    let (sink, _) = result.unwrap();
    let mut unique = sink.ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 9, "every row: {:?}", sink.ids);
    assert!(calls < 20, "no request repeats forever: {calls}");
}

#[tokio::test]
async fn the_tail_stops_at_rows_changed_after_the_window() {
    let (result, calls) = drive_script(Paging::Tail { per: 2 }, |_| {
        json!({"items": [{"id": "in", "at": "2024-03-01T10:00:00Z"}, {"id": "later", "at": "2024-03-02T10:00:00Z"}]})
    })
    .await;
    let (sink, _) = result.unwrap();
    assert_eq!(sink.ids, ["in"], "the next run's business");
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn a_capped_window_is_bisected_and_the_floor_is_an_error() {
    let capped = Paging::Capped {
        record_cap: 3,
        floor: Duration::hours(6),
    };
    // Four rows at 01:00, 07:00, 13:00, 19:00: the day reaches the cap, its
    // halves do not.
    let hours = [1, 7, 13, 19];
    let (result, calls) = drive_script(capped, move |q| {
        let (from, to) = (
            q["from"].parse::<DateTime<Utc>>().unwrap(),
            q["to"].parse::<DateTime<Utc>>().unwrap(),
        );
        let items: Vec<Value> = hours
            .iter()
            .map(|h| format!("2024-03-01T{h:02}:00:00Z"))
            .filter(|t| {
                let t = t.parse::<DateTime<Utc>>().unwrap();
                from <= t && t < to
            })
            .take(3)
            .map(|t| json!({"id": t}))
            .collect();
        json!({"items": items})
    })
    .await;
    let (sink, _) = result.unwrap();
    let mut unique = sink.ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{:?}", sink.ids);
    assert_eq!(
        calls, 3,
        "the day, then its halves (its rows have no start time)"
    );
    // Always at the cap: split down to the floor, then refused.
    let (result, _) = drive_script(capped, |_| json!({"items": ids(0..3)})).await;
    let e = result.err().expect("over the cap at the floor");
    assert_eq!(e.exit_code(), 65);
    assert!(e.to_string().contains("cannot be split"), "{e}");
}

#[tokio::test]
async fn a_snapshot_is_one_request_and_rejects_are_fed_not_fatal() {
    let (result, calls) = drive_script(
        Paging::Snapshot,
        |_| json!({"items": [{"id": "a"}, 42, {"id": "b"}]}),
    )
    .await;
    let (sink, stats) = result.unwrap();
    assert_eq!(
        (sink.ids.len(), sink.rejected, calls, stats.requests),
        (2, 1, 1, 1)
    );
}

#[test]
fn a_capped_window_is_split_by_the_density_it_showed() {
    let w = day();
    let at = |h: i64| w.from + Duration::hours(h);
    // Filled in time order, the answer reached 06:00: the day holds about
    // four answers' worth, so about six pieces of three quarters each.
    let pieces = super::driver::split_for_cap(&w, 300, 300, Some(at(6)), Duration::minutes(1));
    assert_eq!(pieces.len(), 6);
    assert_eq!(pieces[0].from, w.from);
    assert_eq!(pieces[5].to, w.to);
    for pair in pieces.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "no gap, no overlap");
    }
    // Nothing learnt (unordered answers, or no times): halves.
    assert_eq!(
        super::driver::split_for_cap(&w, 300, 300, None, Duration::minutes(1)).len(),
        2
    );
    assert_eq!(
        super::driver::split_for_cap(&w, 300, 300, Some(at(23)), Duration::minutes(1)).len(),
        2
    );
    // Never below the floor, never more than 64 pieces.
    let short = Window::new(w.from, w.from + Duration::minutes(3));
    assert_eq!(
        super::driver::split_for_cap(&short, 300, 300, Some(short.from), Duration::minutes(1))
            .len(),
        3
    );
    assert!(
        super::driver::split_for_cap(&w, 300, 3, Some(at(0)), Duration::minutes(1)).len() <= 64
    );
    // Absurd answers (a start long before the window, a count far over the
    // cap): still a partition of the window into at most 64 pieces.
    for (units, start) in [
        (u64::MAX, Some(w.from - Duration::days(3650))),
        (1, Some(w.to + Duration::days(1))),
    ] {
        let pieces = super::driver::split_for_cap(&w, units, 300, start, Duration::minutes(1));
        assert!((2..=64).contains(&pieces.len()), "{}", pieces.len());
        assert_eq!(
            (pieces[0].from, pieces[pieces.len() - 1].to),
            (w.from, w.to)
        );
    }
}

/// Answers with `faults` first (status, Retry-After), then as the
/// platform's demo fake would: an empty window.
struct FaultsThenDemo {
    faults: Vec<(u16, Option<&'static str>)>,
    calls: AtomicUsize,
    answer: crate::source::DemoAnswer,
}

impl Respond for FaultsThenDemo {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some((status, retry_after)) = self.faults.get(n) {
            let mut t = ResponseTemplate::new(*status).set_body_string("{}");
            if let Some(after) = retry_after {
                t = t.insert_header("Retry-After", *after);
            }
            return t;
        }
        let path = r.url.path();
        let rest = path[1..].split_once('/').map_or("", |(_, rest)| rest);
        let (status, body) =
            (self.answer)(&format!("/{rest}"), &query_of(r)).unwrap_or((404, "{}".into()));
        ResponseTemplate::new(status).set_body_string(body)
    }
}

/// Every registered provider, against its own fake: transient failures
/// and a rate limit are retried to a complete (empty) window; rejected
/// credentials end the run with 77 at once.
#[tokio::test]
async fn every_provider_conforms_to_the_driver_contract() {
    // The demos' sample files (UJET's transcripts), in a folder of the
    // test's own.
    let scratch = tempfile::tempdir().unwrap();
    for platform in crate::source::registry::PLATFORMS {
        let folder = scratch.path().join(platform.name);
        platform.demo.write_files(&folder).unwrap();
        for (faults, expect) in [
            (vec![(500, None), (429, Some("0")), (503, None)], Ok(())),
            (vec![(401, None)], Err(77)),
        ] {
            let server = MockServer::start().await;
            let fault_count = faults.len();
            Mock::given(wiremock::matchers::any())
                .respond_with(FaultsThenDemo {
                    faults,
                    calls: AtomicUsize::new(0),
                    answer: platform.demo.answer,
                })
                .mount(&server)
                .await;
            let context = crate::source::DemoContext {
                addr: *server.address(),
                token: "demo-token",
                folder: &folder,
            };
            let text = (platform.demo.config)(&context) + "backoff = \"1ms\"\nmax_retries = 3\n";
            let config = Config::parse(&text, std::path::Path::new("conformance")).unwrap();
            let name = format!("demo-{}", platform.name);
            let table = config.source(&name).unwrap();
            let source = (platform.build)(&table).unwrap();
            let c = source.connection();
            let http = Http::new("conformance", c.auth, c.settings, c.max_in_flight).unwrap();
            let mut sink = Collected::default();
            // A window of no samples: the fake answers "nothing here".
            let empty = Window::new(
                "2020-01-01T00:00:00Z".parse().unwrap(),
                "2020-01-02T00:00:00Z".parse().unwrap(),
            );
            let learned = Learned::default();
            let driving = Driving {
                source: &*source,
                http: &http,
                learned: &learned,
                attach: None,
            };
            let result = drive(driving, empty, RecordKind::Conversations, false, &mut sink).await;
            let asked = server.received_requests().await.unwrap().len();
            match expect {
                Ok(()) => {
                    let stats = result.unwrap_or_else(|e| panic!("{}: {e}", platform.name));
                    // A snapshot answers what is active now, whatever the window.
                    assert!(
                        sink.ids.is_empty() || source.is_snapshot(),
                        "{}",
                        platform.name
                    );
                    assert!(
                        asked > fault_count,
                        "{}: retried past the faults",
                        platform.name
                    );
                    assert!(stats.windows >= 1);
                }
                Err(code) => {
                    let e = result
                        .err()
                        .unwrap_or_else(|| panic!("{}: accepted", platform.name));
                    assert_eq!(e.exit_code(), code, "{}: {e}", platform.name);
                    // Each query asked once (CareSoft asks its three
                    // conversation types at once), none asked again.
                    let queries = source.queries(empty, RecordKind::Conversations).len();
                    assert!(
                        asked <= queries,
                        "{}: no retry of rejected credentials ({asked} requests)",
                        platform.name
                    );
                }
            }
        }
    }
}
