//! How many Wolkvox requests (daily tokens) a capped backfill spends, against
//! the fewest that could cover it (`scripts/bench-split.sh`, BENCHMARKS.md).
//!
//! A fake `chat_2` report on 127.0.0.1 holds seven days of chats (a
//! deterministic mix of short and long ones, busier by day than by night),
//! answers the chats starting in the asked range in time order, and cuts the
//! answer at `record_cap` messages like the platform (`subset` as the second
//! argument: a capped answer holds an arbitrary choice of the range's chats,
//! still sorted by start, the case chatdump must not mistake for the first
//! chats of the range). The chatdump binary
//! (`CHATDUMP_BIN`, default `target/release/chatdump`) exports the week with
//! a small cap; the fake counts the requests.
//!
//! Usage: `cargo run --release --example bench_split -- [CAP] [ordered|subset]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

struct Report {
    chats: Vec<(NaiveDateTime, Value)>,
    cap: usize,
    calls: Arc<AtomicUsize>,
    subset: bool,
}

impl Respond for Report {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let param = |k: &str| {
            r.url
                .query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let parse = |k: &str| NaiveDateTime::parse_from_str(&param(k), "%Y%m%d%H%M%S").unwrap();
        let (from, to) = (parse("date_ini"), parse("date_end"));
        let mut chosen: Vec<(usize, &(NaiveDateTime, Value))> = self
            .chats
            .iter()
            .enumerate()
            .filter(|(_, (start, _))| *start >= from && *start <= to)
            .collect();
        if self.subset {
            chosen.sort_by_key(|(n, _)| (*n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let mut left = self.cap;
        let mut data = Vec::new();
        for (n, (_, chat)) in chosen {
            if left == 0 {
                break;
            }
            let mut chat = chat.clone();
            let rows = chat["conversation"].as_array_mut().unwrap();
            rows.truncate(left);
            left -= rows.len();
            data.push((n, chat));
        }
        // Either way the answer is sorted by start.
        data.sort_by_key(|(n, _)| *n);
        let data: Vec<Value> = data.into_iter().map(|(_, c)| c).collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"code": 200, "error": null, "msg": "ok", "data": data}))
    }
}

/// Seven days of chats from 2024-03-05, busier from 08:00 to 20:00.
fn week() -> Vec<(NaiveDateTime, Value)> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let first = NaiveDate::from_ymd_opt(2024, 3, 5)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut chats = Vec::new();
    let mut t = first;
    let end = first + Duration::days(7);
    let mut n = 0;
    loop {
        let busy = (8..20).contains(&chrono::Timelike::hour(&t));
        let gap = if busy {
            60 + next() % 240
        } else {
            600 + next() % 3000
        };
        t += Duration::seconds(gap as i64);
        if t >= end {
            break;
        }
        let messages = 1 + (next() % 30) as i64 + if next() % 10 == 0 { 60 } else { 0 };
        let rows: Vec<Value> = (0..messages)
            .map(|i| {
                json!({"channel": "WhatsApp", "from": if i % 2 == 0 {"CUSTOMER"} else {"AGENT"},
                       "date": (t + Duration::seconds(20 * i)).format("%Y-%m-%d %H:%M:%S").to_string(),
                       "message": format!("m{i}")})
            })
            .collect();
        chats.push((
            t,
            json!({"conn_id": format!("c{n}"), "customer_name": "x", "conversation": rows}),
        ));
        n += 1;
    }
    chats
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cap: usize = std::env::args()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let subset = std::env::args().nth(2).as_deref() == Some("subset");
    let bin = std::env::var("CHATDUMP_BIN").unwrap_or_else(|_| "target/release/chatdump".into());
    let chats = week();
    let total: usize = chats
        .iter()
        .map(|(_, c)| c["conversation"].as_array().unwrap().len())
        .sum();
    // The fewest requests: each day's messages in answers just under the cap.
    let minimum: usize = (0..7)
        .map(|d| {
            let day = chats[0].0.date() + Duration::days(d);
            let n: usize = chats
                .iter()
                .filter(|(t, _)| t.date() == day)
                .map(|(_, c)| c["conversation"].as_array().unwrap().len())
                .sum();
            n.div_ceil(cap - 1).max(1)
        })
        .sum();
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(wiremock::matchers::any())
        .respond_with(Report {
            chats,
            cap,
            calls: calls.clone(),
            subset,
        })
        .mount(&server)
        .await;
    let dir = std::env::temp_dir().join(format!("chatdump-bench-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("chatdump.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.bench]\nkind = \"wolkvox\"\nbase_url = \"{}\"\ntoken = \"bench\"\nrecord_cap = {cap}\nmax_tokens = 100000\n",
            server.uri()
        ),
    )
    .unwrap();
    let out = dir.join("out.jsonl");
    let status = tokio::task::spawn_blocking({
        let (config, out) = (config.clone(), out.clone());
        move || {
            std::process::Command::new(bin)
                .args(["--config", config.to_str().unwrap(), "export", "bench"])
                .args([
                    "--from",
                    "2024-03-05",
                    "--to",
                    "2024-03-12",
                    "--records",
                    "messages",
                    "-q",
                ])
                .args(["-o", out.to_str().unwrap()])
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let written = std::fs::read_to_string(&out).map_or(0, |t| t.lines().count());
    let requests = calls.load(Ordering::SeqCst);
    println!(
        "cap {cap}{}: {total} messages over 7 days; exit {:?}, {written} written; {requests} requests, \
         minimum {minimum} ({:.2}x)",
        if subset { " (answers not the earliest chats)" } else { "" },
        status.code(),
        requests as f64 / minimum as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
