//! The one driver: it walks the slices of a window and, for each query, the
//! pages (or bisected windows) of the platform's paging strategy, with their
//! stop conditions and guards, streaming every response through the JSON
//! scanner into the provider's mapper and on to a [`Sink`]. Its tests are
//! in `testkit.rs`.

use std::cell::RefCell;

use chrono::{DateTime, Duration, Utc};
use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use super::{ChatSource, ConversationContext, DriveStats, PageInfo, Paging, Parsed, Query, Sink};
use crate::error::{Error, Result};
use crate::http::{display_url, read_limited, Failure, Http, Verdict};
use crate::jsonstream::{Element, ItemsAt, Lead, Scanner};
use crate::log;
use crate::model::{Record, RecordKind};
use crate::window::Window;

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
    // One response each, whatever the source's paging: a lookup is a list
    // of names, not a window of records.
    let mut lookups = DriveStats::default();
    for query in source.lookups() {
        let mut context = ConversationContext::default();
        let mut keep = CollectContext {
            context: &mut context,
            sink: &mut *sink,
        };
        let url = source.page_url(&query, 1);
        fetch_streamed(source, http, &query, &url, false, None, &mut keep).await?;
        lookups.requests += 1;
    }
    // Slices overlap where a platform answers small pages and allows more
    // than one request at a time: round trips, not the rate limit, would
    // bound a run otherwise. A tail's own pages stay one after another
    // (each starts where the last ended); its slices are independent, and
    // as many run at once as requests are allowed.
    let ahead = match source.paging() {
        Paging::Numbered { .. } => Some(SLICES_AHEAD),
        Paging::Tail { .. } => Some(source.connection().max_in_flight).filter(|n| *n > 1),
        Paging::Capped { .. } | Paging::Snapshot => None,
    };
    let mut stats = match ahead {
        Some(ahead) => {
            drive_overlapped(source, http, window, stream, want_raw, ahead, sink).await?
        }
        None => drive_windows(source, http, window, stream, want_raw, sink).await?,
    };
    stats.requests += lookups.requests;
    Ok(stats)
}

/// [`drive`] one slice after another.
async fn drive_windows(
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
        let held = Held::new(http);
        let mut context = ConversationContext::default();
        if stream == RecordKind::Messages && source.messages_need_conversations() {
            let mut collect = CollectContext {
                context: &mut context,
                sink: &mut *sink,
            };
            for query in source.queries(slice, RecordKind::Conversations) {
                stats.requests +=
                    fetch_query(source, http, &query, false, &held, &mut collect).await?;
            }
        }
        let mut feed = Feed {
            sink: &mut *sink,
            context: &context,
        };
        for query in source.queries(slice, stream) {
            stats.requests += fetch_query(source, http, &query, want_raw, &held, &mut feed).await?;
        }
        sink.end_window(&slice, &context)?;
        stats.windows += 1;
        log::progress::windows((n + 1) as u64, total as u64);
    }
    Ok(stats)
}

/// Slices in hand at once (the one being written and the next being
/// fetched), for platforms whose answers are small pages: enough to keep
/// the in-flight cap busy across query and window boundaries (at 200 ms a
/// round trip, one window alone uses 90-94% of the rate limit, two 98-99%),
/// little enough that memory stays two windows of pages.
const SLICES_AHEAD: usize = 2;

/// [`drive`] for small pages (numbered, or a tail's): every query of a
/// slice (CareSoft: one per conversation type), and the next slices, are
/// fetched at once, bounded by
/// the source's in-flight cap and pacer, so round trips overlap; the pages
/// are then fed in the same order a sequential run feeds them, so the
/// output is byte for byte the same.
async fn drive_overlapped(
    source: &dyn ChatSource,
    http: &Http,
    window: Window,
    stream: RecordKind,
    want_raw: bool,
    ahead: usize,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let mut stats = DriveStats::default();
    let slices = window.split(source.timing().window);
    let total = slices.len();
    let with_context = stream == RecordKind::Messages && source.messages_need_conversations();
    let fetch_all = |queries: Vec<Query>, raw: bool, held: std::rc::Rc<Held>| async move {
        let fetched = futures_util::future::join_all(queries.iter().map(|query| {
            let held = held.clone();
            async move {
                let mut pages = Pages::default();
                let requests = fetch_query(source, http, query, raw, &held, &mut pages).await?;
                Ok::<_, Error>((pages, requests))
            }
        }))
        .await;
        fetched.into_iter().collect::<Result<Vec<_>>>()
    };
    let fetch_slice = |slice: Window| async move {
        // Every page of the slice, its context's included, is held until
        // it is fed: one budget for all of them.
        let held = std::rc::Rc::new(Held::new(http));
        let context = if with_context {
            fetch_all(
                source.queries(slice, RecordKind::Conversations),
                false,
                held.clone(),
            )
            .await?
        } else {
            Vec::new()
        };
        let records = fetch_all(source.queries(slice, stream), want_raw, held).await?;
        Ok::<_, Error>((slice, context, records))
    };
    let mut ahead = stream::iter(slices).map(fetch_slice).buffered(ahead.max(1));
    let mut n = 0;
    while let Some(fetched) = ahead.next().await {
        let (slice, context_pages, record_pages) = fetched?;
        n += 1;
        log::verbose(&format!("window {n}/{total}: {}", show(&slice)));
        let mut context = ConversationContext::default();
        let mut collect = CollectContext {
            context: &mut context,
            sink: &mut *sink,
        };
        for (pages, requests) in context_pages {
            stats.requests += requests;
            pages.replay(&mut collect)?;
        }
        let mut feed = Feed {
            sink: &mut *sink,
            context: &context,
        };
        for (pages, requests) in record_pages {
            stats.requests += requests;
            pages.replay(&mut feed)?;
        }
        sink.end_window(&slice, &context)?;
        stats.windows += 1;
        log::progress::windows(n as u64, total as u64);
    }
    Ok(stats)
}

/// The pages of one query, held to be fed in order later. A record is "new"
/// when this query has not delivered it before, which is what the
/// numbered-paging guard (a page only repeating earlier rows) asks.
#[derive(Default)]
struct Pages {
    pages: Vec<Vec<Parsed>>,
    seen: std::collections::HashSet<u64>,
}

impl Pages {
    fn replay(self, accept: &mut dyn Accept) -> Result<()> {
        for page in self.pages {
            accept.begin_response();
            for item in page {
                accept.accept(item)?;
            }
        }
        Ok(())
    }
}

impl Accept for Pages {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        let new = self.seen.insert(identity(&item));
        match self.pages.last_mut() {
            Some(page) => page.push(item),
            None => self.pages.push(vec![item]),
        }
        Ok(new)
    }

    fn begin_response(&mut self) {
        self.pages.push(Vec::new());
    }
}

/// What makes a delivered record the same record again, within one query.
fn identity(item: &Parsed) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match item {
        Parsed::Record(Record::Conversation(c)) => (
            0u8,
            &c.record.conversation_id,
            c.record.updated_at,
            c.record.started_at,
        )
            .hash(&mut h),
        Parsed::Record(Record::Message(m)) => (
            1u8,
            &m.record.conversation_id,
            &m.record.message_id,
            m.record.sent_at,
            &m.record.text,
            m.record.order_key,
        )
            .hash(&mut h),
        Parsed::Rejected(r) => (2u8, &r.raw).hash(&mut h),
        Parsed::Unreadable(why) => (3u8, why).hash(&mut h),
        Parsed::NotYet(r) => (4u8, &r.raw).hash(&mut h),
    }
    h.finish()
}

/// Sends the check request and reads the response like any page.
pub async fn check(source: &dyn ChatSource, http: &Http) -> Result<Url> {
    let (query, url) = source.check();
    if !source.check_answers_records() {
        // An endpoint of its own (UJET: the organization's settings, an
        // object): any JSON answer the credentials get is a pass.
        let limit = http.settings().limits.page;
        http.fetch(&url, async |mut response: reqwest::Response| {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = read_limited(&mut response, limit).await?;
            if !(200..300).contains(&status) {
                return match source.verdict(status, &body) {
                    Verdict::Ok | Verdict::Empty => Ok(()),
                    other => Err(Failure::from_verdict(other, &headers)),
                };
            }
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map(|_| ())
                .map_err(|e| Failure::Unreadable {
                    why: format!(
                        "{}: the check's answer is not JSON: {e}",
                        source.kind().as_str()
                    ),
                    json: false,
                })
        })
        .await?;
        return Ok(url);
    }
    fetch_collect(source, http, &query, &url, false, None).await?;
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
    /// Judges a response read whole: an error makes it unreadable (asked
    /// again, and if it stays so the window is not committed).
    fn end_response(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }
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

/// Gathers conversations as context for message rows; what the platform
/// sent that could not be read goes to the sink's rejects, as anywhere.
struct CollectContext<'a> {
    context: &'a mut ConversationContext,
    sink: &'a mut dyn Sink,
}

impl Accept for CollectContext<'_> {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        match item {
            Parsed::Record(Record::Conversation(c)) => {
                self.context
                    .by_id
                    .insert(c.record.conversation_id.clone(), c.record);
                Ok(true)
            }
            rejected @ Parsed::Rejected(_) => {
                self.sink.accept(rejected, &ConversationContext::default())
            }
            _ => Ok(true),
        }
    }
}

/// What walking the pages of one query needs besides its strategy's own.
#[derive(Clone, Copy)]
struct Walk<'a> {
    source: &'a dyn ChatSource,
    http: &'a Http,
    query: &'a Query,
    want_raw: bool,
    held: &'a Held,
}

/// Walks every page (or bisected window) of one query. Returns the number
/// of requests made.
async fn fetch_query(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    want_raw: bool,
    held: &Held,
    accept: &mut dyn Accept,
) -> Result<usize> {
    match source.paging() {
        Paging::Numbered {
            page_size,
            concurrency,
        } => {
            let walk = Walk {
                source,
                http,
                query,
                want_raw,
                held,
            };
            fetch_numbered(walk, page_size as usize, concurrency, accept).await
        }
        Paging::Capped { record_cap, floor } => {
            fetch_capped(source, http, query, want_raw, record_cap, floor, accept).await
        }
        Paging::Tail { per } => {
            let walk = Walk {
                source,
                http,
                query,
                want_raw,
                held,
            };
            fetch_tail(walk, per as usize, accept).await
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
///
/// A repeat never ends a query silently while the platform announces
/// more: a page within the announced ones that only repeats earlier pages
/// (a cache glitch, a platform ignoring `page`) is asked again like an
/// unreadable answer, and where pages overlapped at all, the distinct
/// records must reach the smallest total any page announced (a stale page
/// overlapping the last one hides a record; a new record shifting rows
/// forward grows the total instead). Otherwise the query fails and nothing
/// is committed. Pages that never overlap are taken as the platform gives
/// them: a short page is the end, whatever the total said (its documented
/// way to page).
async fn fetch_numbered(
    walk: Walk<'_>,
    page_size: usize,
    concurrency: usize,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let Walk {
        source,
        http,
        query,
        want_raw,
        held,
    } = walk;
    let fetch = |page: u32| {
        let url = source.page_url(query, page);
        async move {
            let (items, info) = fetch_collect(source, http, query, &url, want_raw, None).await?;
            Ok::<_, Error>((page, url, items, info))
        }
    };
    let mut ledger = Ledger::default();
    let mut requests = 0;
    // Feeds one page to `accept`, asking again for a page that only
    // repeats earlier ones while more are announced.
    let mut take = async |page: u32,
                          url: Url,
                          mut items: Vec<Parsed>,
                          mut info: PageInfo,
                          announced: bool| {
        requests += 1;
        if announced && ledger.only_repeats(&items) {
            log::verbose(&format!(
                "GET {}: page {page} only repeats earlier pages; asking again",
                display_url(&url)
            ));
            (items, info) = fetch_collect(source, http, query, &url, want_raw, Some(&ledger.seen))
                .await
                .map_err(|e| {
                    e.with_hint("the platform's pages repeat each other while it announces more records; nothing of this window was committed: rerun later, or lower `page_size`")
                })?;
            requests += 1;
        }
        // Past the announced pages, a page of nothing new is the end (a
        // platform ignoring `page` is found out there): not counted.
        if !announced && page > 1 && ledger.only_repeats(&items) {
            return Ok((0, info));
        }
        held.add(info.bytes, &query.window)?;
        ledger.total(info.total);
        accept.begin_response();
        let new = ledger.note(&items, info.items);
        for item in items {
            accept.accept(item)?;
        }
        Ok::<_, Error>((new, info))
    };

    let (_, url, items, first) = fetch(1).await?;
    let (_, first) = take(1, url, items, first, false).await?;
    if first.items == 0 || first.items < page_size {
        return ledger.balance(requests, query);
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
            let (_, info) = take(page, url, items, info, true).await?;
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
        // Past the announced pages: a page adding nothing new is where a
        // platform ignoring `page` is found out; the totals decide then.
        let (new, info) = take(page, url, items, info, false).await?;
        if new == 0 && info.items > 0 {
            log::verbose(&format!(
                "page {page} only repeated records already seen; the query ends there"
            ));
            break;
        }
        last_full = info.items >= page_size;
        next_page += 1;
    }
    ledger.balance(requests, query)
}

/// What the pages of one numbered query have delivered, against what the
/// platform announced.
#[derive(Default)]
struct Ledger {
    seen: std::collections::HashSet<u64>,
    /// Distinct elements delivered (records, rejects, and elements the
    /// provider passes over, which a total counts too).
    distinct: u64,
    /// The smallest total a page announced.
    least_total: Option<u64>,
    /// A page held a record an earlier page held.
    overlapped: bool,
}

impl Ledger {
    fn only_repeats(&self, items: &[Parsed]) -> bool {
        !items.is_empty() && items.iter().all(|item| self.seen.contains(&identity(item)))
    }

    fn total(&mut self, total: Option<u64>) {
        if let Some(total) = total {
            self.least_total = Some(self.least_total.map_or(total, |t| t.min(total)));
        }
    }

    /// Notes a page's records; returns how many were new.
    /// Notes a page's records, of its `elements`; returns how many were new.
    fn note(&mut self, items: &[Parsed], elements: usize) -> usize {
        let identities: Vec<u64> = items.iter().map(identity).collect();
        let repeated = identities.iter().filter(|i| self.seen.contains(i)).count();
        self.overlapped |= repeated > 0;
        let new = identities
            .into_iter()
            .filter(|i| self.seen.insert(*i))
            .count();
        self.distinct += elements.saturating_sub(repeated) as u64;
        new
    }

    /// `requests`, if pages that overlapped still delivered every
    /// announced record.
    fn balance(&self, requests: usize, query: &Query) -> Result<usize> {
        match self.least_total {
            Some(total) if self.overlapped && self.distinct < total => Err(Error::data(format!(
                "the pages of {} held {} distinct records where the platform announced {total}",
                show(&query.window),
                self.distinct
            ))
            .with_hint("records moved between pages while they were read (or pages repeat each other); nothing of this window was committed: rerun, and if it persists lower `page_size` or the window")),
            _ => Ok(requests),
        }
    }
}

/// Tails a query sorted by `updated_at`: each page restarts the query at
/// the newest `updated_at` it held (inclusive, so nothing at that instant is
/// skipped; de-duplication drops what repeats). Only when a full page adds
/// nothing newer, because more than a page of records share one instant,
/// does the next request ask for page 2, 3, ... of the same start. No
/// request repeats, and every request either moves the start forward or
/// pages further, so the loop ends.
async fn fetch_tail(walk: Walk<'_>, per: usize, accept: &mut dyn Accept) -> Result<usize> {
    let Walk {
        source,
        http,
        query,
        want_raw,
        held,
    } = walk;
    let end = query.window.to;
    let mut start = query.window.from;
    let mut page: u32 = 1;
    let mut requests = 0;
    let mut seen = std::collections::HashSet::new();
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
        let (mut items, mut info) =
            fetch_collect(source, http, &part, &url, want_raw, None).await?;
        requests += 1;
        // A full page of records all met before is the next page of ties
        // only as the first page at a new start, every record at that very
        // instant; anything else is a repeated answer (a cache glitch),
        // which would skip a page of records: asked again, like an
        // unreadable answer.
        let ties = page == 1
            && items.iter().all(|item| match item {
                Parsed::Record(Record::Conversation(c)) => c.record.updated_at == Some(start),
                _ => true,
            });
        if info.items >= per && !ties && items.iter().all(|i| seen.contains(&identity(i))) {
            log::verbose(&format!(
                "GET {}: the page only repeats records already read; asking again",
                display_url(&url)
            ));
            (items, info) = fetch_collect(source, http, &part, &url, want_raw, Some(&seen))
                .await
                .map_err(|e| e.with_hint("the platform answers a page it already gave instead of the next; nothing of this window was committed: rerun later"))?;
            requests += 1;
        }
        held.add(info.bytes, &query.window)?;
        seen.extend(items.iter().map(identity));
        accept.begin_response();
        let mut newest = start;
        let mut past_end = false;
        // A conversation's own records (its messages) follow it.
        let mut skipping = false;
        for item in items {
            match &item {
                Parsed::Record(Record::Conversation(c)) => {
                    skipping = false;
                    match c.record.updated_at {
                        // Changed after the window: the next run's business.
                        Some(t) if t >= end => {
                            past_end = true;
                            skipping = true;
                            continue;
                        }
                        Some(t) => newest = newest.max(t),
                        None => {}
                    }
                }
                _ if skipping => continue,
                _ => {}
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

/// The bytes of records one window holds (pages collected to be fed in
/// order, messages waiting to be ordered), against `max_window_memory`.
struct Held {
    used: std::cell::Cell<usize>,
    limit: usize,
}

impl Held {
    fn new(http: &Http) -> Held {
        Held {
            used: std::cell::Cell::new(0),
            limit: http.settings().limits.window,
        }
    }

    fn add(&self, bytes: usize, window: &Window) -> Result<()> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return Err(Error::data(format!(
                "window {} holds more than {} bytes of records (`max_window_memory`)",
                show(window),
                crate::log::thousands(self.limit as u64)
            ))
            .with_hint("nothing of this window was committed; a shorter `window` for this source splits the export into smaller pieces, or raise `max_window_memory` if the machine has the memory"));
        }
        Ok(())
    }
}

/// Fetches one response and parses it into a list: pages are small, and
/// holding one lets pages be fetched concurrently and consumed in order.
/// With `earlier`, an answer holding only records among them is taken as
/// unreadable (and so asked again).
async fn fetch_collect(
    source: &dyn ChatSource,
    http: &Http,
    query: &Query,
    url: &Url,
    want_raw: bool,
    earlier: Option<&std::collections::HashSet<u64>>,
) -> Result<(Vec<Parsed>, PageInfo)> {
    let mut collect = Collect {
        items: Vec::new(),
        earlier,
    };
    let limit = Some(http.settings().limits.page);
    let answer = fetch_streamed(source, http, query, url, want_raw, limit, &mut collect).await?;
    Ok((collect.items, answer.info))
}

/// Gathers one response's items; a retried response starts over.
struct Collect<'a> {
    items: Vec<Parsed>,
    earlier: Option<&'a std::collections::HashSet<u64>>,
}

impl Accept for Collect<'_> {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        self.items.push(item);
        Ok(true)
    }

    fn begin_response(&mut self) {
        self.items.clear();
    }

    fn end_response(&mut self) -> std::result::Result<(), String> {
        match self.earlier {
            Some(earlier)
                if !self.items.is_empty()
                    && self
                        .items
                        .iter()
                        .all(|item| earlier.contains(&identity(item))) =>
            {
                Err("the page only repeats records of earlier pages".into())
            }
            _ => Ok(()),
        }
    }
}

/// One streamed response per window; a window whose response reaches the
/// record cap is fetched again in pieces, down to the floor. Records of a
/// truncated response are already written; when the pieces deliver them
/// again, de-duplication drops them.
///
/// Every request spends a daily token, so the driver learns, once per run,
/// whether the platform fills a capped answer with the earliest records in
/// time order: the first capped answer that came in start order is checked
/// by fetching the part of its window before its latest start, which must
/// answer the chats the capped answer held there (see [`holds_the_chats`]:
/// a platform that reads the window by message dates answers each with
/// only its messages before that start). If it does, every
/// later capped answer is taken as complete up to its latest start and only
/// the rest of its window is fetched; if not, windows are split as if
/// nothing were known. The check never loses data either way: its two
/// requests together cover the window.
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
    // Depth-first, earliest piece first, so output stays in time order.
    // A piece may carry what its answer must hold to confirm the order.
    let mut todo: Vec<(Window, Option<Vec<ElementPrint>>)> = vec![(query.window, None)];
    while let Some((window, expected)) = todo.pop() {
        let part = Query {
            window,
            ..query.clone()
        };
        let url = source.page_url(&part, 1);
        let answer = fetch_streamed(source, http, &part, &url, want_raw, None, accept).await?;
        let units = answer.units;
        requests += 1;
        if let Some(expected) = expected {
            let ordered = units < record_cap
                && answer
                    .in_order
                    .as_ref()
                    .is_some_and(|got| holds_the_chats(got, &expected));
            http.learn_capped_in_time_order(ordered);
            log::verbose(&format!(
                "capped answers {} the earliest records in time order: {}",
                if ordered { "hold" } else { "do not hold" },
                if ordered {
                    "a capped window is fetched on from its latest start"
                } else {
                    "capped windows are split"
                }
            ));
        }
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
        // How far an answer in start order got: everything that starts
        // before its latest start is whole (the chat at it may be cut).
        let reached = match (&answer.in_order, answer.latest_start) {
            (Some(prints), Some(latest)) if latest > window.from && latest < window.to => {
                Some((prints, latest))
            }
            _ => None,
        };
        match (reached, http.capped_in_time_order()) {
            (Some((_, latest)), Some(true)) => {
                log::verbose(&format!(
                    "{units} records in {} reach the cap of {record_cap}: fetching on from {}",
                    show(&window),
                    latest.format("%Y-%m-%dT%H:%M:%SZ")
                ));
                todo.push((Window::new(latest, window.to), None));
                continue;
            }
            (Some((prints, latest)), None) => {
                let before: Vec<ElementPrint> =
                    prints.iter().filter(|p| p.0 < latest).copied().collect();
                log::verbose(&format!(
                    "{units} records in {} reach the cap of {record_cap}: checking whether the answer holds the earliest chats, by fetching up to {}",
                    show(&window),
                    latest.format("%Y-%m-%dT%H:%M:%SZ")
                ));
                todo.push((Window::new(latest, window.to), None));
                todo.push((Window::new(window.from, latest), Some(before)));
                continue;
            }
            _ => {}
        }
        let pieces = split_for_cap(&window, units, record_cap, answer.latest_start, floor);
        log::verbose(&format!(
            "{units} records in {} reach the cap of {record_cap}: splitting in {} at {}",
            show(&window),
            pieces.len(),
            pieces
                .iter()
                .skip(1)
                .map(|p| p.from.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        todo.extend(pieces.into_iter().rev().map(|p| (p, None)));
    }
    Ok(requests)
}

/// Whether the answer to the check (the part of a capped window before
/// its latest start) holds the chats the capped answer held there: the
/// same chats, starting at the same times, each with no more than the
/// capped answer had of it. A platform that filters chats by their start
/// answers each whole (the same records); one that filters messages by
/// their dates answers each with its messages before that start (fewer).
/// Either way no chat that starts before it is missing from the capped
/// answer, and what any chat has after it is fetched again with the rest
/// of the window, so nothing is lost taking it as complete.
fn holds_the_chats(got: &[ElementPrint], expected: &[ElementPrint]) -> bool {
    got.len() == expected.len()
        && got.iter().zip(expected).all(
            |((start, records, bytes), (was_start, was_records, was_bytes))| {
                start == was_start && records <= was_records && bytes <= was_bytes
            },
        )
}

/// The pieces a window whose answer reached the cap is fetched again in,
/// sized so that each should hold about three quarters of a capped answer:
/// every request spends a daily token. How far the truncated answer got
/// (`latest_start`) tells the density when the platform fills answers in
/// time order; when it does not (or says nothing), that estimate is the
/// whole window and this is a plain halving. Pieces never go below `floor`,
/// and a piece still over the cap is split again.
pub(super) fn split_for_cap(
    window: &Window,
    units: u64,
    record_cap: u64,
    latest_start: Option<DateTime<Utc>>,
    floor: Duration,
) -> Vec<Window> {
    let length = (window.to - window.from).num_seconds().max(1);
    let reached = latest_start
        .map_or(length, |t| (t - window.from).num_seconds())
        .clamp(length / 16 + 1, length);
    let estimated = units as f64 * length as f64 / reached as f64;
    let wanted = (estimated / (record_cap as f64 * 0.75)).ceil() as i64;
    let most = (length / floor.num_seconds().max(1)).max(2);
    let pieces = wanted.clamp(2, most.min(64));
    let step = length / pieces;
    (0..pieces)
        .map(|i| {
            let from = window.from + Duration::seconds(i * step);
            let to = if i + 1 == pieces {
                window.to
            } else {
                window.from + Duration::seconds((i + 1) * step)
            };
            Window::new(from, to)
        })
        .collect()
}

/// Records of a streamed answer held until it has been read whole: a retry
/// of a broken answer (cut short, a syntax error, an error envelope that
/// also carried records) then starts from nothing, and only the attempt
/// that succeeds reaches the output. So that a 256 MB answer never sits in
/// memory, at most [`ATTEMPT_RECORDS`] records or [`ATTEMPT_BYTES`] of text
/// are held; past that they flow on as they come, and an answer that then
/// breaks is not retried in place (what it gave cannot be taken back from
/// the output): the window fails, nothing of it is committed, and the
/// next run fetches it again.
struct Attempt<'a> {
    inner: &'a mut dyn Accept,
    /// Whether records are held at all (a collected page is all or
    /// nothing already).
    holding: bool,
    held: Vec<Parsed>,
    held_bytes: usize,
    /// Records of this attempt have reached `inner`.
    released: bool,
    /// An attempt was started again after records of an earlier one had
    /// reached `inner`: this answer can no longer be had whole.
    spoiled: bool,
}

/// Records of one answer held until it is whole (see [`Attempt`]).
const ATTEMPT_RECORDS: usize = 8192;
/// Bytes of text of one answer held until it is whole.
const ATTEMPT_BYTES: usize = 8 << 20;

impl<'a> Attempt<'a> {
    fn new(inner: &'a mut dyn Accept, holding: bool) -> Attempt<'a> {
        Attempt {
            inner,
            holding,
            held: Vec::new(),
            held_bytes: 0,
            released: false,
            spoiled: false,
        }
    }

    /// Hands what is held to `inner`, as the start of its response.
    fn release(&mut self) -> Result<()> {
        if !self.released {
            self.inner.begin_response();
            self.released = true;
        }
        for item in self.held.drain(..) {
            self.inner.accept(item)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    fn spoiled_error() -> Error {
        Error::unavailable(
            "an answer broke after its first records had been written, and a retry cannot take them back",
        )
        .with_hint("nothing of this window was committed and the state was not advanced: rerun, and the next run fetches it again")
    }

    /// What an attempt's failure becomes: not retried once its records
    /// have reached the output.
    fn judge<T>(
        &mut self,
        outcome: std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failure> {
        match outcome {
            Err(Failure::Fail(e)) => Err(Failure::Fail(e)),
            Err(other) if self.holding && self.released => {
                let why = match &other {
                    Failure::Retry(why, _) | Failure::Throttled(why, _) => why.clone(),
                    Failure::Unreadable { why, .. } => why.clone(),
                    Failure::Fail(_) => String::new(),
                };
                Err(Failure::Fail(Self::spoiled_error().context(why)))
            }
            other => other,
        }
    }

    /// The answer was read whole: what is held goes on.
    fn settle(&mut self) -> Result<()> {
        if self.spoiled {
            return Err(Self::spoiled_error());
        }
        if self.holding {
            self.release()?;
        }
        Ok(())
    }
}

impl Accept for Attempt<'_> {
    fn accept(&mut self, item: Parsed) -> Result<bool> {
        if self.spoiled {
            return Err(Self::spoiled_error());
        }
        if !self.holding || self.released {
            return self.inner.accept(item);
        }
        self.held_bytes += match &item {
            Parsed::Record(record) => record.text_len(),
            Parsed::Rejected(r) | Parsed::NotYet(r) => r.raw.len(),
            Parsed::Unreadable(_) => 0,
        };
        self.held.push(item);
        if self.held.len() >= ATTEMPT_RECORDS || self.held_bytes >= ATTEMPT_BYTES {
            self.release()?;
        }
        Ok(true)
    }

    fn begin_response(&mut self) {
        if self.released && self.holding {
            self.spoiled = true;
        }
        self.held.clear();
        self.held_bytes = 0;
        if !self.holding {
            self.inner.begin_response();
        }
    }

    fn end_response(&mut self) -> std::result::Result<(), String> {
        self.inner.end_response()
    }
}

/// What the driver learns from one streamed response.
struct Answer {
    info: PageInfo,
    /// The response's size in records: elements, or messages if more (what
    /// a record cap counts).
    units: u64,
    /// The latest start among its elements (a chat's first message, a
    /// conversation's start): how far into the window a truncated answer
    /// got, when the platform fills it in time order.
    latest_start: Option<DateTime<Utc>>,
    /// Every element's start, size in records and in bytes, while they
    /// came in start order (empty once one did not, or had no start): what
    /// a capped answer is compared by.
    in_order: Option<Vec<ElementPrint>>,
}

/// An element's start, records and bytes: two answers holding the same
/// chats hold the same prints.
type ElementPrint = (DateTime<Utc>, u64, usize);

/// Elements remembered per answer for the comparison; an answer with more
/// is not compared (its window is split as usual).
const MOST_PRINTS: usize = 200_000;

/// Streams one response into `accept`, element by element: the one place
/// that reads a response, whether it feeds the sink or a page list.
///
/// Anything that makes the response unreadable (not JSON, cut short, a
/// syntax error anywhere, no records envelope, a value or a collected page
/// over its limit) is a [`Failure::Unreadable`]: retried, and if it stays
/// so the run ends without committing the window.
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
    // A collected page is all or nothing already (it is fed once whole);
    // an answer streamed to the output is held until it is read whole.
    let mut attempt = Attempt::new(accept, page_limit.is_none());
    let answer = http
        .fetch(url, async |response: reqwest::Response| {
            let outcome = read_answer(
                source,
                query,
                want_raw,
                page_limit,
                limits,
                &mut attempt,
                response,
            )
            .await;
            attempt.judge(outcome)
        })
        .await?;
    attempt.settle()?;
    Ok(answer)
}

/// Reads one answer into `accept`: what [`fetch_streamed`] does with each
/// attempt.
async fn read_answer(
    source: &dyn ChatSource,
    query: &Query,
    want_raw: bool,
    page_limit: Option<usize>,
    limits: crate::config::Limits,
    accept: &mut dyn Accept,
    mut response: reqwest::Response,
) -> std::result::Result<Answer, Failure> {
    let kind = source.kind().as_str();
    let unreadable = |what: String, json: bool| Failure::Unreadable {
        why: format!("{kind}: {what}"),
        json,
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    accept.begin_response();
    if !(200..300).contains(&status) {
        let body = read_limited(&mut response, limits.error_body).await?;
        return match source.verdict(status, &body) {
            Verdict::Ok | Verdict::Empty => Ok(Answer {
                info: PageInfo::default(),
                units: 0,
                latest_start: None,
                in_order: Some(Vec::new()),
            }),
            other => Err(Failure::from_verdict(other, &headers)),
        };
    }
    let mut scanner = Scanner::with_limit(source.items_at(), limits.record);
    if source.reads_in_place(query) {
        scanner = scanner.reading_in_place();
    }
    let mut messages: u64 = 0;
    let mut latest_start: Option<DateTime<Utc>> = None;
    // Only a capped platform's whole answers (not collected pages) are
    // compared by their elements' prints: no list kept for the rest.
    let compared = page_limit.is_none() && matches!(source.paging(), Paging::Capped { .. });
    let mut in_order: Option<Vec<ElementPrint>> = compared.then(Vec::new);
    let mut page_bytes: usize = 0;
    // Set when the sink fails (a full disk, a closed pipe): stop reading.
    let failed: RefCell<Option<Error>> = RefCell::new(None);
    // Set when an element or the page breaks the response.
    let broken: RefCell<Option<String>> = RefCell::new(None);
    let mut on_element = |element: Element<'_>| -> Lead {
        if broken.borrow().is_some() || failed.borrow().is_some() {
            // Walked and passed over.
            return Lead::Declined;
        }
        let mut element_start: Option<DateTime<Utc>> = None;
        let records_before = messages;
        let mut handle = |parsed: Parsed| {
            let start = match &parsed {
                Parsed::Record(Record::Message(m)) => m.record.sent_at,
                Parsed::Record(Record::Conversation(c)) => c.record.started_at,
                _ => None,
            };
            element_start = match (element_start, start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            messages += match &parsed {
                Parsed::Record(Record::Message(_)) => 1,
                Parsed::Record(Record::Conversation(c)) => {
                    c.record.message_count.unwrap_or(0).max(0) as u64
                }
                Parsed::Rejected(_) | Parsed::NotYet(_) => 0,
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
        };
        let length = match element {
            Element::Whole(bytes) => {
                // Over the page's limit: not even parsed.
                if page_limit.is_none_or(|limit| page_bytes + bytes.len() <= limit) {
                    source.parse_item(query, bytes, want_raw, &mut handle);
                }
                bytes.len()
            }
            Element::Leading(text) => {
                match source.parse_leading_item(query, text, want_raw, &mut handle) {
                    Lead::Read(length) => length,
                    other => return other,
                }
            }
        };
        if page_limit.is_some_and(|limit| page_bytes + length > limit) {
            broken.borrow_mut().get_or_insert_with(|| {
                format!(
                    "a page holds more than {} bytes of records (`max_page_size`)",
                    page_limit.unwrap_or_default()
                )
            });
            return Lead::Read(length);
        }
        page_bytes += length;
        latest_start = latest_start.max(element_start);
        if let Some(prints) = in_order.as_mut() {
            let ordered = prints.len() < MOST_PRINTS
                && element_start.is_some_and(|t| prints.last().is_none_or(|(last, ..)| *last <= t));
            match element_start {
                Some(start) if ordered => prints.push((start, messages - records_before, length)),
                _ => in_order = None,
            }
        }
        Lead::Read(length)
    };
    let mut outcome = Ok(());
    // Reading stops once the root value is complete: whatever a server
    // sends after it (endless padding) cannot hold the run.
    while !scanner.is_done() {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                outcome = Err(Failure::broken_body(e));
                break;
            }
        };
        if let Err(e) = scanner.feed_elements(&chunk, &mut on_element) {
            outcome = Err(unreadable(e, !scanner.refused_as_not_json()));
            break;
        }
        if failed.borrow().is_some() || broken.borrow().is_some() {
            break;
        }
    }
    // The end of the input: a record still held is read now.
    let mut finished = Ok(());
    if outcome.is_ok() && failed.borrow().is_none() && broken.borrow().is_none() {
        finished = scanner.finish_elements(&mut on_element);
    }
    // A failed write outranks whatever the response did.
    if let Some(e) = failed.into_inner() {
        return Err(Failure::Fail(e));
    }
    if let Some(why) = broken.into_inner() {
        return Err(unreadable(why, true));
    }
    outcome?;
    finished.map_err(|e| unreadable(e, true))?;
    let total = match source.read_envelope(&scanner.envelope) {
        Ok(total) if scanner.envelope.has_items => total,
        Ok(_) => {
            return Err(unreadable(
                format!(
                    "the answer has no records ({})",
                    match source.items_at() {
                        ItemsAt::Key(key) => format!("no `{key}` member"),
                        ItemsAt::Root => "not an array".to_string(),
                    }
                ),
                true,
            ))
        }
        // The platform's own way of saying "nothing here".
        Err(Verdict::Empty) => None,
        Err(v) => return Err(Failure::from_verdict(v, &headers)),
    };
    accept.end_response().map_err(|why| unreadable(why, true))?;
    Ok(Answer {
        info: PageInfo {
            items: scanner.items,
            total,
            bytes: page_bytes,
        },
        units: messages.max(scanner.items as u64),
        latest_start,
        in_order,
    })
}
