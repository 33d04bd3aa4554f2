//! `chatdump demo`: a complete export of bundled sample data, with no network
//! and no credentials.
//!
//! The samples (the files under `fixtures/`) are served by a small HTTP
//! server on 127.0.0.1 that behaves like each platform's API (filters,
//! paging, auth header), and the real providers talk to it through their
//! `base_url`. So the demo runs exactly the code a real export runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use chrono::{Duration, Utc};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::export::{self, expand_placeholders, Options, RejectLog, WindowArgs};
use crate::log;
use crate::output::Output;
use crate::redact::Redactor;
use crate::source::ChatSource;

const DEMO_TOKEN: &str = "demo-token";
/// HTTP Basic for `demo:demo-token`.
const DEMO_BASIC: &str = "Basic ZGVtbzpkZW1vLXRva2Vu";

/// The sample window, in each platform's local time.
const FROM: &str = "2024-03-01";
const TO: &str = "2024-03-08";

struct Sample {
    name: &'static str,
    config: fn(SocketAddr) -> String,
}

const SAMPLES: &[Sample] = &[
    Sample {
        name: "demo-caresoft",
        config: |addr| {
            format!(
                "[sources.demo-caresoft]\nkind = \"caresoft\"\nbase_url = \"http://{addr}/caresoft/demo\"\n\
                 token = \"{DEMO_TOKEN}\"\nconcurrency = 2\npage_size = 2\nrate_limit = 200\n"
            )
        },
    },
    Sample {
        name: "demo-ujet",
        config: |addr| {
            format!(
                "[sources.demo-ujet]\nkind = \"ujet\"\nbase_url = \"http://{addr}/ujet\"\n\
                 username = \"demo\"\npassword = \"{DEMO_TOKEN}\"\npage_size = 2\nrate_limit = 200\n"
            )
        },
    },
    Sample {
        name: "demo-wolkvox-live",
        config: |addr| {
            format!(
                "[sources.demo-wolkvox-live]\nkind = \"wolkvox-live\"\nbase_url = \"http://{addr}/wolkvox\"\n\
                 token = \"{DEMO_TOKEN}\"\nrate_limit = 200\n"
            )
        },
    },
    Sample {
        name: "demo-wolkvox",
        config: |addr| {
            format!(
                "[sources.demo-wolkvox]\nkind = \"wolkvox\"\nbase_url = \"http://{addr}/wolkvox\"\n\
                 token = \"{DEMO_TOKEN}\"\nrate_limit = 200\n"
            )
        },
    },
];

pub async fn demo(options: &Options) -> Result<()> {
    options.validate()?;
    let redactor = export::redactor(options, None)?;
    let addr = serve().await?;
    let started = std::time::Instant::now();
    // The samples' dates, in UTC, name the output for `{from}` / `{to}`.
    let named = sample_window().resolve(chrono_tz::UTC, Duration::zero(), Utc::now())?;
    let path = options
        .output
        .as_deref()
        .map(|t| expand_placeholders(t, "demo", &named, options.records));
    let mut output = Output::create(
        path.as_deref(),
        options.format(),
        options.records,
        export::render("demo", "demo", options),
        redactor.clone(),
    )?;
    let mut total = 0;
    for sample in SAMPLES {
        let config = Config::parse(&(sample.config)(addr), Path::new("(demo)"))?;
        let table = config.source(sample.name)?;
        let stats = crate::with_source!(&table, source => {
            run_sample(&source, sample.name, options, redactor.as_ref(), &mut output, path.as_deref()).await
        })?;
        log::verbose(&format!(
            "{}: {} {}",
            sample.name,
            stats.records,
            options.records.as_str()
        ));
        total += stats.records;
    }
    let target = output.describe();
    output.commit()?;
    log::info(&format!(
        "demo: exported {total} {} from bundled samples in {:.1} s -> {target}",
        options.records.as_str(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn sample_window() -> WindowArgs {
    WindowArgs {
        from: Some(FROM.into()),
        to: Some(TO.into()),
        since: None,
    }
}

async fn run_sample<S: ChatSource>(
    source: &S,
    name: &str,
    options: &Options,
    redactor: Option<&Redactor>,
    output: &mut Output,
    path: Option<&Path>,
) -> Result<export::Stats> {
    if let Err(why) = source.records_supported(options.records) {
        log::verbose(&format!("{name}: skipped: {why}"));
        return Ok(export::Stats::default());
    }
    let window = sample_window().resolve(source.timezone(), source.timing().settle, Utc::now())?;
    output.set_origin(name, source.kind().as_str())?;
    let rejects = RejectLog::new(name, path).redacting(redactor.is_some());
    let memory = crate::pipeline::Memory::default();
    let connection = source.connection();
    let http = crate::http::Http::new(
        name,
        connection.auth,
        connection.settings,
        connection.max_in_flight,
    )?;
    let (stats, _) = export::run(source, &http, window, options, output, rejects, memory).await?;
    Ok(stats)
}

/// Starts the sample server on a free loopback port.
async fn serve() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::unavailable(format!("demo: cannot listen on 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::unavailable(format!("demo: {e}")))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    Ok(addr)
}

async fn handle(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    // Each platform's way of presenting the token.
    let authorized = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            (k == "authorization" && (v == format!("Bearer {DEMO_TOKEN}") || v == DEMO_BASIC))
                || (k == "wolkvox-token" && v == DEMO_TOKEN)
        })
    });
    let (status, body) = if authorized {
        route(target)
    } else {
        (
            401,
            r#"{"code":"errors","message":"Unauthorized"}"#.to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(target: &str) -> (u16, String) {
    let url = match reqwest::Url::parse(&format!("http://demo{target}")) {
        Ok(u) => u,
        Err(_) => return (400, "{}".into()),
    };
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    match url.path() {
        "/caresoft/demo/api/v1/chats" => caresoft_page(&CARESOFT_CHATS, &query),
        "/caresoft/demo/api/v1/chats/messages" => caresoft_page(&CARESOFT_MESSAGES, &query),
        "/wolkvox/api/v2/reports_manager.php" => wolkvox_report(&query),
        "/wolkvox/api/v2/real_time.php" if query.get("api").is_some_and(|a| a == "chats") => {
            (200, WOLKVOX_LIVE.to_string())
        }
        "/ujet/manager/api/v1/chats" => ujet_chats(&query),
        _ => (404, r#"{"code":"errors","message":"Not found"}"#.into()),
    }
}

const CARESOFT_CHATS: [(u32, &str); 3] = [
    (0, include_str!("../fixtures/caresoft/chats-livechat.json")),
    (1, include_str!("../fixtures/caresoft/chats-facebook.json")),
    (3, include_str!("../fixtures/caresoft/chats-zalo.json")),
];

const CARESOFT_MESSAGES: [(u32, &str); 3] = [
    (
        0,
        include_str!("../fixtures/caresoft/messages-livechat.json"),
    ),
    (
        1,
        include_str!("../fixtures/caresoft/messages-facebook.json"),
    ),
    (3, include_str!("../fixtures/caresoft/messages-zalo.json")),
];

/// CareSoft's listing behaviour: one conversation type (live chat when not
/// given), filtered on `start_time` (both bounds inclusive), paged.
fn caresoft_page(files: &[(u32, &str)], query: &HashMap<String, String>) -> (u16, String) {
    let kind: u32 = query
        .get("conversation_type")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let page: usize = query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let count: usize = query
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    // The query's `...T..:..:..Z` is local wall clock, like the rows.
    let bound = |key: &str| {
        query
            .get(key)
            .map(|v| v.replace('T', " ").trim_end_matches('Z').to_string())
    };
    let (since, to) = (bound("start_time_since"), bound("start_time_to"));
    let rows: Vec<Value> = files
        .iter()
        .filter(|(k, _)| *k == kind)
        .flat_map(|(_, text)| {
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("chats").and_then(Value::as_array).cloned())
                .unwrap_or_default()
        })
        .filter(|row| {
            let start = row.get("start_time").and_then(Value::as_str).unwrap_or("");
            since.as_deref().is_none_or(|s| start >= s) && to.as_deref().is_none_or(|t| start <= t)
        })
        .collect();
    let page_rows: Vec<&Value> = rows.iter().skip((page - 1) * count).take(count).collect();
    let body = serde_json::json!({"code": "ok", "numFound": rows.len(), "chats": page_rows});
    (200, body.to_string())
}

const UJET_CHATS: &str = include_str!("../fixtures/ujet/chats.json");

/// The Manager API's chat listing: `updated_at` in [from, to), sorted
/// ascending, `per` (at most 100) a page.
fn ujet_chats(query: &HashMap<String, String>) -> (u16, String) {
    let from = query.get("updated_at[from]").cloned().unwrap_or_default();
    let to = query
        .get("updated_at[to]")
        .cloned()
        .unwrap_or_else(|| "9".into());
    let per: usize = query
        .get("per")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let page: usize = query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let all: Vec<Value> = serde_json::from_str(UJET_CHATS).unwrap_or_default();
    let updated = |c: &Value| c["updated_at"].as_str().unwrap_or("").to_string();
    let mut rows: Vec<Value> = all
        .into_iter()
        .filter(|c| {
            let u = updated(c);
            u >= from && u < to
        })
        .collect();
    rows.sort_by_key(updated);
    let page_rows: Vec<Value> = rows.into_iter().skip((page - 1) * per).take(per).collect();
    (200, Value::Array(page_rows).to_string())
}

const WOLKVOX_LIVE: &str = include_str!("../fixtures/wolkvox/real_time-chats.json");

const WOLKVOX_CHATS: &str = include_str!("../fixtures/wolkvox/chat_2-nested.json");

/// Wolkvox `chat_2`: the chats whose first message falls in
/// [date_ini, date_end] (both inclusive, naive local time); 404 when none.
fn wolkvox_report(query: &HashMap<String, String>) -> (u16, String) {
    let bound = |key: &str| {
        query
            .get(key)
            .and_then(|v| chrono::NaiveDateTime::parse_from_str(v, "%Y%m%d%H%M%S").ok())
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let (Some(from), Some(to)) = (bound("date_ini"), bound("date_end")) else {
        return (
            400,
            r#"{"code":400,"error":"BAD REQUEST","msg":"SOME PARAMETERS ARE REQUIRED"}"#.into(),
        );
    };
    let all: Value = serde_json::from_str(WOLKVOX_CHATS).unwrap_or_default();
    let chats: Vec<&Value> = all["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|chat| {
            let first = chat["conversation"][0]["date"].as_str().unwrap_or("");
            first >= from.as_str() && first <= to.as_str()
        })
        .collect();
    if chats.is_empty() {
        return (
            404,
            r#"{"code":404,"error":"NOT FOUND","msg":"0 records were found"}"#.into(),
        );
    }
    let body = serde_json::json!({"code": 200, "error": null, "msg": format!("{} records were found", chats.len()), "data": chats});
    (200, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_caresoft_filters_and_pages() {
        let mut q: HashMap<String, String> = HashMap::new();
        q.insert("count".into(), "2".into());
        let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["numFound"], 3, "live chat when no type is given");
        assert_eq!(v["chats"].as_array().unwrap().len(), 2);
        q.insert("page".into(), "2".into());
        let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["chats"].as_array().unwrap().len(), 1);
        q.insert("start_time_since".into(), "2024-03-03T00:00:00Z".into());
        q.insert("page".into(), "1".into());
        let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["numFound"], 2);
        q.insert("conversation_type".into(), "3".into());
        let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["numFound"], 0, "the zalo sample starts on March 2");
    }
}
