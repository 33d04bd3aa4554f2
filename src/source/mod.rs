//! The contract between the pipeline and a platform, and the one driver that
//! walks windows and pages for every platform.
//!
//! A provider (one module per platform) only knows its platform: how to split
//! a window into queries, the URL of one page, how to read a response's
//! status, and how to map one page's body to records. Everything that loops
//! (windows, pages, retries, concurrency, stop conditions, guards against a
//! platform that ignores its page parameter) lives here, once.
//!
//! Provider methods are plain synchronous functions; the driver owns all the
//! async work. That keeps providers trivially testable on fixture bytes.

pub mod caresoft;

use std::collections::HashMap;

use chrono::Duration;
use chrono_tz::Tz;
use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use crate::config::{HttpSettings, SourceKind};
use crate::error::{Error, Result};
use crate::http::{Auth, Http, Verdict};
use crate::log;
use crate::model::{Conversation, Record, RecordKind, Rejected};
use crate::window::Window;

/// One request series: a window of one record stream, plus whatever else the
/// platform needs to be asked separately (CareSoft: the conversation type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub window: Window,
    pub stream: RecordKind,
    /// Provider-defined sub-query, e.g. a channel code; 0 when unused.
    pub variant: u32,
}

/// How a platform pages through a query's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `page=1,2,...` with a fixed page size and, where given, a total count;
    /// pages after the first may be fetched `concurrency` at a time.
    Numbered { page_size: u32, concurrency: usize },
}

/// What a provider learned from one page besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// Items on the page, including any skipped or rejected.
    pub items: usize,
    /// The platform's total for the whole query, when it reports one.
    pub total: Option<u64>,
}

/// One item of a page: a record, or a rejection kept with its raw JSON.
// Rejections are rare; boxing records instead would allocate once per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    Record(Record),
    Rejected(Rejected),
}

/// Auth and HTTP tuning a provider asks the shared HTTP layer for.
pub struct Connection {
    pub auth: Auth,
    pub settings: HttpSettings,
    pub max_in_flight: usize,
}

/// A platform, as the driver sees it.
pub trait ChatSource {
    fn kind(&self) -> SourceKind;
    /// The zone of the platform's naive timestamps (and of naive `--from`).
    fn timezone(&self) -> Tz;
    fn connection(&self) -> Connection;
    /// The slice length the export window is cut into for `stream`.
    fn window_step(&self, stream: RecordKind) -> Duration;
    /// The lag behind now below which data is not yet complete.
    fn settle(&self) -> Duration;
    fn paging(&self) -> Paging;
    /// The queries that together cover `window` for `stream`.
    fn queries(&self, window: Window, stream: RecordKind) -> Vec<Query>;
    /// The URL of page `page` (1-based) of `query`.
    fn page_url(&self, query: &Query, page: u32) -> Url;
    /// How to read a response's status and body.
    fn verdict(&self, status: u16, body: &[u8]) -> Verdict;
    /// Maps one page body to records. Items outside the query's window are
    /// skipped (counted in `items`, not emitted); unreadable items are
    /// emitted as [`Parsed::Rejected`]; an unreadable body is an error.
    fn parse_page(
        &self,
        query: &Query,
        body: &[u8],
        out: &mut dyn FnMut(Parsed),
    ) -> Result<PageInfo>;
    /// Whether message rows need the window's conversations to fill their
    /// customer and agent fields (the platform's message rows lack them).
    fn messages_need_conversations(&self) -> bool {
        false
    }
    /// One cheap authenticated request for `chatdump check`.
    fn check_url(&self) -> Url;
}

/// Receives what the driver produces, window by window.
pub trait Sink {
    /// A record or rejection. Returns whether it was new (not a duplicate).
    fn accept(&mut self, item: Parsed, context: &ConversationContext) -> Result<bool>;
    /// Every query of `window` is done.
    fn end_window(&mut self, window: &Window) -> Result<()>;
}

/// Conversations of the current window by id, for filling message rows.
#[derive(Default)]
pub struct ConversationContext {
    pub by_id: HashMap<String, Conversation>,
}

/// Counters the driver keeps for the summary and `--dry-run`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DriveStats {
    pub windows: usize,
    pub requests: usize,
}

/// Hard stop for a query that never ends (a platform ignoring `page`).
const MAX_PAGES_PER_QUERY: u32 = 100_000;

/// Fetches every query of every slice of `window`, feeding `sink`.
pub async fn drive<S: ChatSource>(
    source: &S,
    http: &Http,
    window: Window,
    stream: RecordKind,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let mut stats = DriveStats::default();
    let slices = window.split(source.window_step(stream));
    let total = slices.len();
    for (n, slice) in slices.into_iter().enumerate() {
        log::verbose(&format!(
            "window {}/{total}: {} .. {}",
            n + 1,
            slice.from.format("%Y-%m-%dT%H:%M:%SZ"),
            slice.to.format("%Y-%m-%dT%H:%M:%SZ")
        ));
        let mut context = ConversationContext::default();
        if stream == RecordKind::Messages && source.messages_need_conversations() {
            for query in source.queries(slice, RecordKind::Conversations) {
                let mut collect = |item: Parsed| {
                    if let Parsed::Record(Record::Conversation(c)) = item {
                        context
                            .by_id
                            .insert(c.record.conversation_id.clone(), c.record);
                    }
                    // Rejected conversations surface in a conversations
                    // export; here they only miss as context.
                    Ok(true)
                };
                stats.requests += fetch_query(source, http, &query, &mut collect).await?;
            }
        }
        for query in source.queries(slice, stream) {
            let mut feed = |item: Parsed| sink.accept(item, &context);
            stats.requests += fetch_query(source, http, &query, &mut feed).await?;
        }
        sink.end_window(&slice)?;
        stats.windows += 1;
    }
    Ok(stats)
}

/// Walks every page of one query. Returns the number of requests made.
async fn fetch_query<S: ChatSource>(
    source: &S,
    http: &Http,
    query: &Query,
    accept: &mut dyn FnMut(Parsed) -> Result<bool>,
) -> Result<usize> {
    let Paging::Numbered {
        page_size,
        concurrency,
    } = source.paging();
    let page_size = page_size as usize;
    let fetch = |page: u32| {
        let url = source.page_url(query, page);
        async move {
            let response = http
                .get(&url, |status, body| source.verdict(status, body))
                .await?;
            Ok::<_, Error>((page, url, response.body))
        }
    };
    // Parses one page into the sink; returns (items on page, new records).
    let mut consume = |url: &Url, body: &[u8]| -> Result<(PageInfo, usize)> {
        let mut new = 0;
        let mut failure = None;
        let info = source
            .parse_page(query, body, &mut |item| {
                if failure.is_some() {
                    return;
                }
                match accept(item) {
                    Ok(true) => new += 1,
                    Ok(false) => {}
                    Err(e) => failure = Some(e),
                }
            })
            .map_err(|e| e.context(format!("GET {}", crate::http::display_url(url))))?;
        match failure {
            Some(e) => Err(e),
            None => Ok((info, new)),
        }
    };

    let (_, url, body) = fetch(1).await?;
    let mut requests = 1;
    let (first, _) = consume(&url, &body)?;
    if first.items == 0 || first.items < page_size {
        return Ok(requests);
    }
    // Pages the platform announced; fetched concurrently, consumed in order.
    let announced = first.total.map_or(1, |t| {
        t.div_ceil(page_size as u64)
            .min(u64::from(MAX_PAGES_PER_QUERY)) as u32
    });
    let mut last_full = true;
    let mut next_page = 2;
    if announced >= 2 {
        let mut pages = stream::iter(2..=announced)
            .map(fetch)
            .buffered(concurrency.max(1));
        while let Some(result) = pages.next().await {
            let (page, url, body) = result?;
            requests += 1;
            let (info, _) = consume(&url, &body)?;
            next_page = page + 1;
            if info.items < page_size {
                // The set shrank while paging: nothing lies beyond.
                last_full = false;
                break;
            }
        }
    }
    // The total can grow while paging: keep going while pages come back full,
    // but a full page with nothing new means the platform is repeating itself.
    while last_full {
        if next_page > MAX_PAGES_PER_QUERY {
            return Err(Error::unavailable(format!(
                "query never ended after {MAX_PAGES_PER_QUERY} pages"
            )));
        }
        let (page, url, body) = fetch(next_page).await?;
        requests += 1;
        let (info, new) = consume(&url, &body)?;
        if info.items > 0 && new == 0 {
            log::warn(&format!(
                "GET {}: page {page} repeated records already seen; stopping this query",
                crate::http::display_url(&url)
            ));
            break;
        }
        last_full = info.items >= page_size;
        next_page += 1;
    }
    Ok(requests)
}
