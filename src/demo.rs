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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::export::{self, expand_placeholders, Options, WindowArgs};
use crate::log;
use crate::output::Output;
use crate::pipeline::Stats;
use crate::redact::Redactor;
use crate::rejects::RejectLog;
use crate::source::{registry, ChatSource, DemoContext};

/// The credential every demo source presents.
pub const TOKEN: &str = "demo-token";
/// HTTP Basic for `demo:demo-token`.
const DEMO_BASIC: &str = "Basic ZGVtbzpkZW1vLXRva2Vu";

/// The sample window, in each platform's local time.
const FROM: &str = "2024-03-01";
const TO: &str = "2024-03-08";

pub async fn demo(options: &Options) -> Result<()> {
    options.validate()?;
    if options
        .output
        .as_deref()
        .is_some_and(crate::store::is_object_url)
    {
        return Err(Error::usage(
            "the demo writes to a file or stdout; object storage is for `export`",
        ));
    }
    let redactor = export::redactor(options, None)?;
    // Files a sample needs on disk go in a new owner-only folder of an
    // unpredictable name, removed whatever ends the demo.
    let scratch = tempfile::Builder::new()
        .prefix("chatdump-demo-")
        .tempdir()
        .map_err(|e| Error::output("cannot create the demo's scratch folder", e))?;
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
    let attach = match &options.attachments {
        Some(dest) if options.redact.is_some() => {
            log::warn(&format!(
                "under --redact no attachment is fetched or kept (not to {dest}); rows keep each one's type and size"
            ));
            None
        }
        Some(dest) => {
            let mut settings = crate::attach::Settings::of(dest.clone(), None)?;
            settings.hosts = vec!["127.0.0.1".into()];
            Some(
                crate::attach::Attach::new(&settings)?
                    .fetching_links_from(MEDIA_LINKS, &format!("http://{addr}/media/")),
            )
        }
        None => None,
    };
    let mut total = 0;
    let mut missing = 0;
    for platform in registry::PLATFORMS {
        let folder = scratch.path().join(platform.name);
        platform.demo.write_files(&folder).map_err(|e| {
            Error::output(
                format!("cannot write the demo's files in {}", folder.display()),
                e,
            )
        })?;
        let context = DemoContext {
            addr,
            token: TOKEN,
            folder: &folder,
        };
        let config = Config::parse(&(platform.demo.config)(&context), Path::new("(demo)"))?;
        let name = format!("demo-{}", platform.name);
        let table = config.source(&name)?;
        let source = (platform.build)(&table)?;
        let (stats, back) = run_sample(
            &*source,
            &name,
            options,
            redactor.as_ref(),
            attach.as_ref(),
            output,
            path.as_deref(),
        )
        .await?;
        missing += stats.attachments_missing;
        output = back;
        log::verbose(&format!(
            "{name}: {} {}",
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
    if let Some(attach) = &attach {
        let tally = attach.tally();
        log::info(&format!(
            "demo: {} attachments stored ({} bytes) in {}",
            tally.stored,
            tally.bytes,
            attach.shown()
        ));
    }
    if missing > 0 {
        return Err(Error::data(format!(
            "demo: {missing} attachments could not be had"
        )));
    }
    Ok(())
}

fn sample_window() -> WindowArgs {
    WindowArgs {
        from: Some(FROM.into()),
        to: Some(TO.into()),
        since: None,
    }
}

async fn run_sample(
    source: &dyn ChatSource,
    name: &str,
    options: &Options,
    redactor: Option<&Redactor>,
    attach: Option<&crate::attach::Attach>,
    mut output: Output,
    path: Option<&Path>,
) -> Result<(Stats, Output)> {
    if let Err(why) = source.records_supported(options.records) {
        log::verbose(&format!("{name}: skipped: {why}"));
        return Ok((Stats::default(), output));
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
    let learned = crate::source::Learned::default();
    let driving = crate::source::Driving {
        source,
        http: &http,
        learned: &learned,
        attach,
    };
    let (stats, _, output) = export::run(driving, window, options, output, rejects, memory).await?;
    Ok((stats, output))
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
    // Attachments are fetched without credentials, as from a platform's
    // file host.
    if let Some(name) = target.strip_prefix("/media/") {
        let (status, kind, body): (u16, &str, &[u8]) = match media(name) {
            Some((kind, body)) => (200, kind, body),
            None => (404, "text/plain", b"not found"),
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            if status == 200 { "OK" } else { "Not Found" },
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let _ = stream.shutdown().await;
        return;
    }
    // Each platform's way of presenting the token.
    let authorized = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            (k == "authorization" && (v == format!("Bearer {TOKEN}") || v == DEMO_BASIC))
                || (k == "wolkvox-token" && v == TOKEN)
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

/// The samples' attachments, by the path their links name below
/// [`MEDIA_LINKS`]: their type and bytes.
fn media(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "wolkvox/contrato.pdf" => (
            "application/pdf",
            include_bytes!("../fixtures/media/contrato.pdf"),
        ),
        "ujet/photo-7781.jpg" => (
            "image/jpeg",
            include_bytes!("../fixtures/media/photo-7781.jpg"),
        ),
        "ujet/activar.mp4" => ("video/mp4", include_bytes!("../fixtures/media/activar.mp4")),
        "caresoft/abc123.jpg" => ("image/jpeg", include_bytes!("../fixtures/media/abc123.jpg")),
        _ => return None,
    })
}

/// Where the samples' attachment links point: a name that resolves
/// nowhere, fetched from the sample server instead.
pub const MEDIA_LINKS: &str = "https://media.demo.invalid/";

/// Each platform's fake answers below `/{platform name}`.
fn route(target: &str) -> (u16, String) {
    let url = match reqwest::Url::parse(&format!("http://demo{target}")) {
        Ok(u) => u,
        Err(_) => return (400, "{}".into()),
    };
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let path = url.path();
    let (first, rest) = path[1..].split_once('/').unwrap_or((&path[1..], ""));
    registry::find(first)
        .and_then(|p| (p.demo.answer)(&format!("/{rest}"), &query))
        .unwrap_or_else(|| (404, r#"{"code":"errors","message":"Not found"}"#.into()))
}
