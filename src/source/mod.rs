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
pub mod fields;
pub mod registry;
#[cfg(test)]
mod testkit;
pub mod ujet;
pub mod wolkvox;

use chrono::Duration;
use chrono_tz::Tz;
use futures_util::stream::{self, StreamExt};
use reqwest::Url;
use std::cell::RefCell;
use std::collections::HashMap;

use crate::config::{HttpSettings, SourceKind};
use crate::error::{Error, Result};
use crate::http::{display_url, read_limited, Auth, Failure, Http, Verdict, UNREADABLE};
use crate::jsonstream::{Envelope, ItemsAt, Scanner};
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
    /// One streamed response per window, silently truncated at `record_cap`
    /// records: a window that reaches the cap is bisected, down to `floor`.
    Capped { record_cap: u64, floor: Duration },
    /// Sorted by `updated_at` ascending, `per` records a page: the driver
    /// moves the query window's start to the newest `updated_at` seen and
    /// starts again at page 1, paging on only through ties.
    Tail { per: u32 },
    /// One request is the whole answer, whatever the window: the state of
    /// things now (real-time endpoints).
    Snapshot,
}

/// What the driver learned from one response besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// Items in the response, including any skipped or rejected.
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
    /// The element is not even valid JSON: the response itself is broken
    /// (cut, garbled), so it is retried whole rather than rejected.
    Unreadable(String),
}

impl Parsed {
    /// Helper for providers: an element `raw` that `serde_json` could not
    /// read into the provider's type. A syntax error (or a cut) breaks the
    /// response; valid JSON of the wrong shape is one rejected record.
    pub fn from_json_error(raw: &[u8], what: &str, e: &serde_json::Error) -> Parsed {
        // serde_json calls some shape mismatches syntax errors ("trailing
        // characters" for an array read as a struct): only JSON that does
        // not parse at all is taken as a broken response.
        let broken = (e.is_syntax() || e.is_eof())
            && (std::str::from_utf8(raw).is_err()
                || serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err());
        if broken {
            Parsed::Unreadable(format!("{what}: {e}"))
        } else {
            Parsed::rejected(raw, format!("{what}: {e}"))
        }
    }

    /// Helper for providers: a rejection of the item `raw` for `reason`.
    pub fn rejected(raw: &[u8], reason: impl Into<String>) -> Parsed {
        Parsed::Rejected(Rejected {
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason: reason.into(),
        })
    }
}

/// When a source's data is fetched, shared by every windowed source and
/// read from the same keys (`window`, `settle`, `lookback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The slice length an export window is cut into.
    pub window: Duration,
    /// The lag behind now below which data is not yet complete.
    pub settle: Duration,
    /// How far before the checkpoint an incremental run starts again, to
    /// catch what the platform adds late to windows already exported.
    pub lookback: Duration,
}

impl Timing {
    /// Reads the three keys, each defaulting to `defaults`; `window` may
    /// not exceed `max_window` (the platform's limit).
    pub fn from_config(
        table: &crate::config::SourceTable<'_>,
        defaults: Timing,
        max_window: Duration,
    ) -> Result<Timing> {
        let window = table.duration("window")?.unwrap_or(defaults.window);
        if window > max_window {
            return Err(table.error(
                "window",
                &format!(
                    "must be at most {} (the platform's limit)",
                    crate::window::humanize(max_window)
                ),
            ));
        }
        Ok(Timing {
            window,
            settle: table.duration("settle")?.unwrap_or(defaults.settle),
            lookback: table.duration("lookback")?.unwrap_or(defaults.lookback),
        })
    }
}

/// `base` with `path` (slash-separated, appended to the base's own path,
/// e.g. a tenant prefix) and query `params`.
pub fn endpoint(base: &Url, path: &str, params: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are validated as http(s)")
        .pop_if_empty()
        .extend(path.split('/'));
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url
}

/// Auth and HTTP tuning a provider asks the shared HTTP layer for.
pub struct Connection {
    pub auth: Auth,
    pub settings: HttpSettings,
    pub max_in_flight: usize,
}

/// A platform, as the driver sees it. Every method is synchronous and free
/// of I/O: the driver does the fetching.
pub trait ChatSource {
    fn kind(&self) -> SourceKind;
    /// The zone of the platform's naive timestamps (and of naive `--from`).
    fn timezone(&self) -> Tz;
    fn connection(&self) -> Connection;
    /// Slice length, settle lag and lookback.
    fn timing(&self) -> Timing;
    /// How long de-duplication keys are kept across runs (default: the
    /// lookback, the part a later run fetches again).
    fn memory_span(&self) -> Duration {
        self.timing().lookback
    }
    /// Whether a request returns the state of things now rather than a time
    /// window's records (windows then only mark when each poll happened).
    fn is_snapshot(&self) -> bool {
        self.paging() == Paging::Snapshot
    }
    fn paging(&self) -> Paging;
    /// The queries that together cover `window` for `stream`: one, unless
    /// the platform must be asked several times (CareSoft: per type).
    fn queries(&self, window: Window, stream: RecordKind) -> Vec<Query> {
        vec![Query {
            window,
            stream,
            variant: 0,
        }]
    }
    /// The URL of page `page` (1-based) of `query`.
    fn page_url(&self, query: &Query, page: u32) -> Url;
    /// Reads a non-2xx response (status and small body).
    fn verdict(&self, status: u16, body: &[u8]) -> Verdict;
    /// Where the records sit in a response body.
    fn items_at(&self) -> ItemsAt;
    /// Judges a 2xx response's envelope once its records are read; returns
    /// the platform's total count for the query where it gives one.
    fn read_envelope(&self, envelope: &Envelope) -> Result<Option<u64>, Verdict>;
    /// Maps one record element to records. Items outside the query's window
    /// are skipped (nothing emitted); unreadable ones emitted as
    /// [`Parsed::Rejected`]. `want_raw` asks for the platform JSON.
    fn parse_item(&self, query: &Query, item: &[u8], want_raw: bool, out: &mut dyn FnMut(Parsed));
    /// Whether message rows need the window's conversations to fill their
    /// customer and agent fields (the platform's message rows lack them).
    fn messages_need_conversations(&self) -> bool {
        false
    }
    /// Whether conversation rows are built from the messages (the platform
    /// has no conversation listing): the driver fetches messages and the
    /// pipeline aggregates them.
    fn conversations_from_messages(&self) -> bool {
        false
    }
    /// Whether a response delivers each conversation's messages together and
    /// in order, so `seq` can be assigned as they arrive, with nothing held.
    /// Otherwise the pipeline holds a window's messages and sorts them.
    /// For in-order sources a message's `order_key`, when set, is its 0-based
    /// position in the conversation and becomes its `seq`.
    fn messages_in_order(&self) -> bool {
        false
    }
    /// Whether the platform can deliver `records` at all; the text says why
    /// not (a usage error).
    fn records_supported(&self, _records: RecordKind) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Whether every request spends one of the account's daily API tokens
    /// (shown by `--dry-run`).
    fn spends_daily_tokens(&self) -> bool {
        false
    }
    /// The query and URL of one cheap authenticated request for `check`.
    fn check(&self) -> (Query, Url);
}

/// Receives what the driver produces.
pub trait Sink {
    /// A record or rejection. Returns whether it was new (not a duplicate).
    fn accept(&mut self, item: Parsed, context: &ConversationContext) -> Result<bool>;
    /// A new response starts: counters local to one response restart.
    fn begin_response(&mut self);
    /// Every query of `window` is done.
    fn end_window(&mut self, window: &Window) -> Result<()>;
}

/// Conversations of the current window by id, for filling message rows.
#[derive(Default)]
pub struct ConversationContext {
    pub by_id: HashMap<String, Conversation>,
}

/// Counters the driver keeps for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct DriveStats {
    pub windows: usize,
    pub requests: usize,
}

/// Hard stop for a query that never ends (a platform ignoring `page`).
const MAX_PAGES_PER_QUERY: u32 = 100_000;

/// Fetches every query of every slice of `window`, feeding `sink`.
pub async fn drive(
    source: &dyn ChatSource,
    http: &Http,
    window: Window,
    stream: RecordKind,
    want_raw: bool,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let mut stats = DriveStats::default();
    let slices = window.split(source.timing().window);
    let total = slices.len();
    for (n, slice) in slices.into_iter().enumerate() {
        log::verbose(&format!("window {}/{total}: {}", n + 1, show(&slice)));
        let mut context = ConversationContext::default();
        if stream == RecordKind::Messages && source.messages_need_conversations() {
            let mut collect = CollectContext(&mut context);
            for query in source.queries(slice, RecordKind::Conversations) {
                stats.requests += fetch_query(source, http, &query, false, &mut collect).await?;
            }
        }
        let mut feed = Feed {
            sink: &mut *sink,
            context: &context,
        };
        for query in source.queries(slice, stream) {
            stats.requests += fetch_query(source, http, &query, want_raw, &mut feed).await?;
        }
        sink.end_window(&slice)?;
        stats.windows += 1;
        log::progress::windows((n + 1) as u64, total as u64);
    }
    Ok(stats)
}

/// Sends the check request and reads the response like any page.
pub async fn check(source: &dyn ChatSource, http: &Http) -> Result<Url> {
    let (query, url) = source.check();
    fetch_collect(source, http, &query, &url, false).await?;
    Ok(url)
}

fn show(w: &Window) -> String {
    format!(
        "{} .. {}",
        w.from.format("%Y-%m-%dT%H:%M:%SZ"),
        w.to.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Where the records of one query go.
trait Accept {
    fn accept(&mut self, item: Parsed) -> Result<bool>;
    fn begin_response(&mut self) {}
}

struct Feed<'a> {
    sink: &'a mut dyn Sink,
    context: &'a ConversationContext,
}

impl Accept for Feed<'_> {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        self.sink.accept(item, self.context)
    }

    fn begin_response(&mut self) {
        self.sink.begin_response();
    }
}

/// Gathers conversations as context for message rows. Rejected ones surface
/// in a conversations export; here they are only missing context.
struct CollectContext<'a>(&'a mut ConversationContext);

impl Accept for CollectContext<'_> {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        if let Parsed::Record(Record::Conversation(c)) = item {
            self.0
                .by_id
                .insert(c.record.conversation_id.clone(), c.record);
        }
        Ok(true)
    }
}

/// Walks every page (or bisected window) of one query. Returns the number
/// of requests made.
async fn fetch_query(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    want_raw: bool,
    accept: &mut dyn Accept,
) -> Result<usize> {
    match source.paging() {
        Paging::Numbered {
            page_size,
            concurrency,
        } => {
            fetch_numbered(
                source,
                http,
                query,
                want_raw,
                page_size as usize,
                concurrency,
                accept,
            )
            .await
        }
        Paging::Capped { record_cap, floor } => {
            fetch_capped(source, http, query, want_raw, record_cap, floor, accept).await
        }
        Paging::Tail { per } => {
            fetch_tail(source, http, query, want_raw, per as usize, accept).await
        }
        Paging::Snapshot => {
            let url = source.page_url(query, 1);
            fetch_streamed(source, http, query, &url, want_raw, None, accept).await?;
            Ok(1)
        }
    }
}

/// Numbered pages: page 1 tells the total; the announced pages are fetched
/// concurrently and consumed in order; paging goes on while pages come back
/// full (the total can grow meanwhile) and stops at a short or empty page.
async fn fetch_numbered(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    want_raw: bool,
    page_size: usize,
    concurrency: usize,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let fetch = |page: u32| {
        let url = source.page_url(query, page);
        async move {
            let (items, info) = fetch_collect(source, http, query, &url, want_raw).await?;
            Ok::<_, Error>((page, url, items, info))
        }
    };
    // Feeds one page to `accept`; returns how many records were new.
    let mut consume = |items: Vec<Parsed>| -> Result<usize> {
        accept.begin_response();
        let mut new = 0;
        for item in items {
            new += usize::from(accept.accept(item)?);
        }
        Ok(new)
    };

    let (_, _, items, first) = fetch(1).await?;
    consume(items)?;
    let mut requests = 1;
    if first.items == 0 || first.items < page_size {
        return Ok(requests);
    }
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
            let (page, url, items, info) = result?;
            requests += 1;
            if consume(items)? == 0 && info.items > 0 {
                // A platform repeating one page for every page number would
                // otherwise be asked for all the pages its total announces.
                log::warn(&format!(
                    "GET {}: page {page} only repeated records already seen; stopping this query",
                    display_url(&url)
                ));
                return Ok(requests);
            }
            next_page = page + 1;
            if info.items < page_size {
                // The set shrank while paging: nothing lies beyond.
                last_full = false;
                break;
            }
        }
    }
    while last_full {
        if next_page > MAX_PAGES_PER_QUERY {
            return Err(Error::unavailable(format!(
                "query never ended after {MAX_PAGES_PER_QUERY} pages"
            )));
        }
        let (page, url, items, info) = fetch(next_page).await?;
        requests += 1;
        if consume(items)? == 0 && info.items > 0 {
            log::warn(&format!(
                "GET {}: page {page} only repeated records already seen; stopping this query",
                display_url(&url)
            ));
            break;
        }
        last_full = info.items >= page_size;
        next_page += 1;
    }
    Ok(requests)
}

/// Tails a query sorted by `updated_at`: each page restarts the query at
/// the newest `updated_at` it held (inclusive, so nothing at that instant is
/// skipped; de-duplication drops what repeats). Only when a full page adds
/// nothing newer, because more than a page of records share one instant,
/// does the next request ask for page 2, 3, ... of the same start. No
/// request repeats, and every request either moves the start forward or
/// pages further, so the loop ends.
async fn fetch_tail(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    want_raw: bool,
    per: usize,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let end = query.window.to;
    let mut start = query.window.from;
    let mut page: u32 = 1;
    let mut requests = 0;
    loop {
        if requests >= MAX_PAGES_PER_QUERY as usize {
            return Err(Error::unavailable(format!(
                "query never ended after {MAX_PAGES_PER_QUERY} pages"
            )));
        }
        let part = Query {
            window: Window::new(start, end),
            ..query.clone()
        };
        let url = source.page_url(&part, page);
        let (items, info) = fetch_collect(source, http, &part, &url, want_raw).await?;
        requests += 1;
        accept.begin_response();
        let mut newest = start;
        let mut past_end = false;
        for item in items {
            if let Parsed::Record(Record::Conversation(c)) = &item {
                match c.record.updated_at {
                    // Changed after the window: the next run's business.
                    Some(t) if t >= end => {
                        past_end = true;
                        continue;
                    }
                    Some(t) => newest = newest.max(t),
                    None => {}
                }
            }
            accept.accept(item)?;
        }
        if info.items < per || past_end {
            return Ok(requests);
        }
        if newest > start {
            start = newest;
            page = 1;
        } else {
            page += 1;
        }
    }
}

/// Fetches one response and parses it into a list: pages are small, and
/// holding one lets pages be fetched concurrently and consumed in order.
async fn fetch_collect(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    url: &Url,
    want_raw: bool,
) -> Result<(Vec<Parsed>, PageInfo)> {
    let mut collect = Collect::default();
    let limit = Some(http.settings().limits.page);
    let answer = fetch_streamed(source, http, query, url, want_raw, limit, &mut collect).await?;
    Ok((collect.0, answer.info))
}

/// Gathers one response's items; a retried response starts over.
#[derive(Default)]
struct Collect(Vec<Parsed>);

impl Accept for Collect {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        self.0.push(item);
        Ok(true)
    }

    fn begin_response(&mut self) {
        self.0.clear();
    }
}

/// One streamed response per window; a window whose response reaches the
/// record cap is split in two and both halves fetched, down to the floor.
/// Records of a truncated response are already written; the halves deliver
/// them again and de-duplication drops them.
async fn fetch_capped(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    want_raw: bool,
    record_cap: u64,
    floor: Duration,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let mut requests = 0;
    // Depth-first, left half first, so output stays in time order.
    let mut todo = vec![query.window];
    while let Some(window) = todo.pop() {
        let part = Query {
            window,
            ..query.clone()
        };
        let url = source.page_url(&part, 1);
        let units = fetch_streamed(source, http, &part, &url, want_raw, None, accept)
            .await?
            .units;
        requests += 1;
        if units < record_cap {
            continue;
        }
        let length = window.to - window.from;
        if length <= floor {
            return Err(Error::data(format!(
                "window {} holds at least {record_cap} records, the most one response can carry, and cannot be split below {}",
                show(&window),
                crate::window::humanize(floor)
            ))
            .with_hint("records past the cap may be missing from the platform's answer; raise `record_cap` only if the platform's limit is higher"));
        }
        let middle = window.from + Duration::seconds((length.num_seconds() / 2).max(1));
        log::verbose(&format!(
            "{units} records in {} reach the cap of {record_cap}: splitting at {}",
            show(&window),
            middle.format("%Y-%m-%dT%H:%M:%SZ")
        ));
        todo.push(Window::new(middle, window.to));
        todo.push(Window::new(window.from, middle));
    }
    Ok(requests)
}

/// What the driver learns from one streamed response.
struct Answer {
    info: PageInfo,
    /// The response's size in records: elements, or messages if more (what
    /// a record cap counts).
    units: u64,
}

/// Streams one response into `accept`, element by element: the one place
/// that reads a response, whether it feeds the sink or a page list.
///
/// Anything that makes the response unreadable (not JSON, cut short, a
/// syntax error anywhere, no records envelope, a value or a collected page
/// over its limit) is a transient failure marked [`UNREADABLE`]: retried,
/// and if it stays so the run ends without committing the window.
/// `page_limit` bounds the bytes of records a collected page may hold.
async fn fetch_streamed(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    url: &Url,
    want_raw: bool,
    page_limit: Option<usize>,
    accept: &mut dyn Accept,
) -> Result<Answer> {
    let limits = http.settings().limits;
    let kind = source.kind().as_str();
    let unreadable = |what: String| Failure::Retry(format!("{UNREADABLE}{kind}: {what}"), None);
    http.fetch(url, async |mut response: reqwest::Response| {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        accept.begin_response();
        if !(200..300).contains(&status) {
            let body = read_limited(&mut response, limits.error_body).await?;
            return match source.verdict(status, &body) {
                Verdict::Ok | Verdict::Empty => Ok(Answer {
                    info: PageInfo::default(),
                    units: 0,
                }),
                other => Err(Failure::from_verdict(other, &headers)),
            };
        }
        let mut scanner = Scanner::with_limit(source.items_at(), limits.record);
        let mut messages: u64 = 0;
        let mut page_bytes: usize = 0;
        // Set when the sink fails (a full disk, a closed pipe): stop reading.
        let failed: RefCell<Option<Error>> = RefCell::new(None);
        // Set when an element or the page breaks the response.
        let broken: RefCell<Option<String>> = RefCell::new(None);
        let mut on_item = |bytes: &[u8]| {
            if broken.borrow().is_some() || failed.borrow().is_some() {
                return;
            }
            page_bytes += bytes.len();
            if page_limit.is_some_and(|limit| page_bytes > limit) {
                *broken.borrow_mut() = Some(format!(
                    "a page holds more than {} bytes of records (`max_page_size`)",
                    page_limit.unwrap_or_default()
                ));
                return;
            }
            source.parse_item(query, bytes, want_raw, &mut |parsed| {
                messages += match &parsed {
                    Parsed::Record(Record::Message(_)) => 1,
                    Parsed::Record(Record::Conversation(c)) => {
                        c.record.message_count.unwrap_or(0).max(0) as u64
                    }
                    Parsed::Rejected(_) => 0,
                    Parsed::Unreadable(why) => {
                        broken.borrow_mut().get_or_insert_with(|| why.clone());
                        return;
                    }
                };
                if failed.borrow().is_none() && broken.borrow().is_none() {
                    if let Err(e) = accept.accept(parsed) {
                        *failed.borrow_mut() = Some(e);
                    }
                }
            })
        };
        let mut outcome = Ok(());
        // Reading stops once the root value is complete: whatever a server
        // sends after it (endless padding) cannot hold the run.
        while !scanner.is_done() {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    outcome = Err(Failure::Retry(transport(e), None));
                    break;
                }
            };
            if let Err(e) = scanner.feed(&chunk, &mut on_item) {
                outcome = Err(unreadable(e));
                break;
            }
            if failed.borrow().is_some() || broken.borrow().is_some() {
                break;
            }
        }
        // A failed write outranks whatever the response did.
        if let Some(e) = failed.into_inner() {
            return Err(Failure::Fail(e));
        }
        if let Some(why) = broken.into_inner() {
            return Err(unreadable(why));
        }
        outcome?;
        scanner.finish().map_err(unreadable)?;
        let total = match source.read_envelope(&scanner.envelope) {
            Ok(total) if scanner.envelope.has_items => total,
            Ok(_) => {
                return Err(unreadable(format!(
                    "the answer has no records ({})",
                    match source.items_at() {
                        ItemsAt::Key(key) => format!("no `{key}` member"),
                        ItemsAt::Root => "not an array".to_string(),
                    }
                )))
            }
            // The platform's own way of saying "nothing here".
            Err(Verdict::Empty) => None,
            Err(v) => return Err(Failure::from_verdict(v, &headers)),
        };
        Ok(Answer {
            info: PageInfo {
                items: scanner.items,
                total,
            },
            units: messages.max(scanner.items as u64),
        })
    })
    .await
}

fn transport(e: reqwest::Error) -> String {
    format!(
        "connection broke while reading the response: {}",
        e.without_url()
    )
}

/// What the provider tests share: a body split and mapped the way the
/// driver does it, and the records picked out of the result.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::model::Message;

    /// One response as a provider turns it into records.
    pub struct Page {
        /// The provider's reading of the envelope (the total, or why not).
        pub envelope: std::result::Result<Option<u64>, Verdict>,
        /// Elements of the records array.
        pub items: usize,
        pub parsed: Vec<Parsed>,
    }

    /// Feeds `body` in small pieces, as a network would cut it.
    pub fn parse_body<S: ChatSource>(
        source: &S,
        query: &Query,
        body: &str,
        want_raw: bool,
    ) -> Page {
        let mut parsed = Vec::new();
        let mut scanner = Scanner::new(source.items_at());
        let mut on_item =
            |item: &[u8]| source.parse_item(query, item, want_raw, &mut |p| parsed.push(p));
        for piece in body.as_bytes().chunks(7) {
            scanner.feed(piece, &mut on_item).unwrap();
        }
        scanner.finish().unwrap();
        Page {
            envelope: source.read_envelope(&scanner.envelope),
            items: scanner.items,
            parsed,
        }
    }

    pub fn conversations(parsed: &[Parsed]) -> Vec<&Conversation> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Record(Record::Conversation(c)) => Some(&c.record),
                _ => None,
            })
            .collect()
    }

    pub fn messages(parsed: &[Parsed]) -> Vec<&Message> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Record(Record::Message(m)) => Some(&m.record),
                _ => None,
            })
            .collect()
    }

    /// `fixtures/{path}`.
    pub fn fixture(path: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(path),
        )
        .unwrap()
    }

    /// Arbitrary JSON shaped like the platforms' records: their field names
    /// with values of any type, nested a little.
    fn record_like() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        const KEYS: &[&str] = &[
            "conversation_id",
            "id",
            "conn_id",
            "start_time",
            "end_time",
            "created_at",
            "updated_at",
            "ended_at",
            "date",
            "status",
            "chat_status",
            "channel",
            "from",
            "from_name",
            "to_name",
            "message",
            "msg",
            "content",
            "conversation",
            "active_chats",
            "agent_id",
            "agent_name",
            "agent",
            "end_user",
            "customer_id",
            "customer_name",
            "customer_phone",
            "cus_name",
            "cus_phone",
            "cus_email",
            "wait_time",
            "chat_duration",
            "duration",
            "queue_wait_time",
            "menu_path",
            "rating",
            "service_id",
            "type",
            "sender_visitor_name",
            "sender_agent_name",
            "conversation_type",
            "waitTime",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "(20[0-9]{2}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}Z?|[A-Za-z0-9 :.+-]{0,12}|)"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..10).prop_map(
                    |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    /// Every provider, as a configuration builds it.
    fn every_provider() -> crate::config::Config {
        crate::config::Config::parse(
            "[sources.c]\nkind = \"caresoft\"\ndomain = \"a\"\ntoken = \"t\"\n\
             [sources.w]\nkind = \"wolkvox\"\nserver = \"0012\"\ntoken = \"t\"\n\
             [sources.l]\nkind = \"wolkvox-live\"\nserver = \"0012\"\ntoken = \"t\"\n\
             [sources.u]\nkind = \"ujet\"\nsubdomain = \"a\"\nusername = \"u\"\npassword = \"p\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    /// Valid JSON is never an unreadable response: the mapper makes
    /// records or rejections of it, and never panics.
    fn map_any<S: ChatSource>(source: &S, item: &[u8]) -> std::result::Result<(), String> {
        let window = Window::new(
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
            chrono::DateTime::<chrono::Utc>::MAX_UTC,
        );
        for stream in [RecordKind::Conversations, RecordKind::Messages] {
            let query = Query {
                window,
                stream,
                variant: 0,
            };
            for want_raw in [false, true] {
                let mut bad = None;
                source.parse_item(&query, item, want_raw, &mut |p| {
                    if let Parsed::Unreadable(why) = p {
                        bad = Some(why);
                    }
                });
                if let Some(why) = bad {
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(384))]

        #[test]
        fn every_providers_mapper_takes_any_json_value(value in record_like()) {
            let config = every_provider();
            let item = serde_json::to_vec(&value).unwrap();
            let caresoft = caresoft::Caresoft::from_config(&config.source("c").unwrap()).unwrap();
            let reports = wolkvox::reports::Reports::from_config(&config.source("w").unwrap()).unwrap();
            let live = wolkvox::live::Live::from_config(&config.source("l").unwrap()).unwrap();
            let ujet = ujet::Ujet::from_config(&config.source("u").unwrap()).unwrap();
            proptest::prop_assert_eq!(map_any(&caresoft, &item), Ok(()));
            proptest::prop_assert_eq!(map_any(&reports, &item), Ok(()));
            proptest::prop_assert_eq!(map_any(&live, &item), Ok(()));
            proptest::prop_assert_eq!(map_any(&ujet, &item), Ok(()));
        }
    }

    #[test]
    fn a_syntax_error_in_a_record_is_unreadable_not_rejected() {
        let config = every_provider();
        let caresoft = caresoft::Caresoft::from_config(&config.source("c").unwrap()).unwrap();
        let reports = wolkvox::reports::Reports::from_config(&config.source("w").unwrap()).unwrap();
        for item in [
            &br#"{"conversation_id":"a",}"#[..],
            br#"{"conn_id":"1""#,
            b"\xff\xfe",
        ] {
            assert!(map_any(&caresoft, item).is_err() || map_any(&reports, item).is_err());
            assert!(
                map_any(&reports, item).is_err(),
                "{:?}",
                String::from_utf8_lossy(item)
            );
        }
    }
}
