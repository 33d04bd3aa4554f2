//! The one driver: it walks the slices of a window and, for each query, the
//! pages (or bisected windows) of the platform's paging strategy, with their
//! stop conditions and guards, streaming every response through the JSON
//! scanner into the provider's mapper and on to a [`Sink`]. Its tests are
//! in `testkit.rs`. Each paging strategy is a file of its own
//! (`numbered.rs`, `tail.rs`, `capped.rs`); `answer.rs` reads one answer.

use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use super::{ChatSource, ConversationContext, DriveStats, Paging, Parsed, Query, Sink};
use crate::attach::Attach;
use crate::error::{Error, Result};
use crate::http::{read_limited, Failure, Http, Verdict};
use crate::log;
use crate::model::{Record, RecordKind};
use crate::window::Window;

mod answer;
mod attachments;
mod capped;
mod files;
mod numbered;
mod tail;

use answer::{fetch_collect, fetch_streamed};
use capped::fetch_capped;
#[cfg(test)]
pub(super) use capped::split_for_cap;
use numbered::fetch_numbered;
use tail::fetch_tail;

/// Hard stop for a query that never ends (a platform ignoring `page`).
const MAX_PAGES_PER_QUERY: u32 = 100_000;

/// What the driver learns of a platform during a run, kept across the
/// run's chunks: it belongs to the run, not to its requests.
#[derive(Default)]
pub struct Learned {
    /// Whether answers cut at a record cap were seen to hold the earliest
    /// records in chat-start order (see `capped.rs`): learned once a run,
    /// to spend fewer requests (daily tokens) on capped windows.
    capped_in_time_order: std::sync::OnceLock<bool>,
}

impl Learned {
    fn capped_in_time_order(&self) -> Option<bool> {
        self.capped_in_time_order.get().copied()
    }

    fn learn_capped_in_time_order(&self, ordered: bool) {
        let _ = self.capped_in_time_order.set(ordered);
    }
}

/// A source to drive: the platform, the requests it goes through, and
/// what the driver has learned of it this run.
#[derive(Clone, Copy)]
pub struct Driving<'a> {
    pub source: &'a dyn ChatSource,
    pub http: &'a Http,
    pub learned: &'a Learned,
    /// `--attachments`: where what messages carry is fetched to.
    pub attach: Option<&'a Attach>,
}

/// Fetches every query of every slice of `window`, feeding `sink`.
pub async fn drive(
    driving: Driving<'_>,
    window: Window,
    stream: RecordKind,
    want_raw: bool,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let Driving { source, http, .. } = driving;
    // Files are read for pages collected whole; a streamed answer goes to
    // the output as it comes.
    if source.files().is_some()
        && matches!(source.paging(), Paging::Capped { .. } | Paging::Snapshot)
    {
        return Err(Error::config(format!(
            "{}: records that ask for files are read from pages only",
            source.kind().as_str()
        )));
    }
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
        fetch_streamed(source, http, None, &query, &url, false, None, &mut keep).await?;
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
        Some(ahead) => drive_overlapped(driving, window, stream, want_raw, ahead, sink).await?,
        None => drive_windows(driving, window, stream, want_raw, sink).await?,
    };
    stats.requests += lookups.requests;
    Ok(stats)
}

/// [`drive`] one slice after another.
async fn drive_windows(
    driving: Driving<'_>,
    window: Window,
    stream: RecordKind,
    want_raw: bool,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let Driving { source, http, .. } = driving;
    let mut stats = DriveStats::default();
    let slices = window.split(source.timing().window);
    let total = slices.len();
    for (n, slice) in slices.into_iter().enumerate() {
        log::verbose(&format!("window {}/{total}: {}", n + 1, show(&slice)));
        let held = Held::new(http);
        let mut context = ConversationContext::default();
        if stream == RecordKind::Messages && source.traits().messages_need_conversations {
            let mut collect = CollectContext {
                context: &mut context,
                sink: &mut *sink,
            };
            for query in source.queries(slice, RecordKind::Conversations) {
                stats.requests += fetch_query(driving, &query, false, &held, &mut collect).await?;
            }
        }
        let mut feed = Feed {
            sink: &mut *sink,
            context: &context,
        };
        for query in source.queries(slice, stream) {
            stats.requests += fetch_query(driving, &query, want_raw, &held, &mut feed).await?;
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
    driving: Driving<'_>,
    window: Window,
    stream: RecordKind,
    want_raw: bool,
    ahead: usize,
    sink: &mut dyn Sink,
) -> Result<DriveStats> {
    let Driving { source, http, .. } = driving;
    let mut stats = DriveStats::default();
    let slices = window.split(source.timing().window);
    let total = slices.len();
    let with_context =
        stream == RecordKind::Messages && source.traits().messages_need_conversations;
    let fetch_all = |queries: Vec<Query>, raw: bool, held: std::rc::Rc<Held>| async move {
        let fetched = futures_util::future::join_all(queries.iter().map(|query| {
            let held = held.clone();
            async move {
                let mut pages = Pages::default();
                let requests = fetch_query(driving, query, raw, &held, &mut pages).await?;
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

/// Whether `items` hold something and every item is one `seen` already
/// holds: a page or an answer that only repeats what came before.
fn only_repeats(items: &[Parsed], seen: &std::collections::HashSet<u64>) -> bool {
    !items.is_empty() && items.iter().all(|item| seen.contains(&identity(item)))
}

/// What makes a delivered record the same record again, within one query.
fn identity(item: &Parsed) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // A conversation waiting for its file is that conversation.
    if let Some(c) = item.conversation() {
        (0u8, &c.conversation_id, c.updated_at, c.started_at).hash(&mut h);
        return h.finish();
    }
    match item {
        Parsed::Record(Record::Conversation(_)) | Parsed::Wants(_) => {}
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

/// Maps one element again (one an earlier run could not read yet, kept
/// in the state), reading the files it asks for.
pub async fn read_again(
    source: &dyn ChatSource,
    attach: Option<&Attach>,
    query: &Query,
    item: &[u8],
    want_raw: bool,
) -> Result<Vec<Parsed>> {
    let mut read = Vec::new();
    source.parse_item(query, item, want_raw, &mut |p| read.push(p));
    let read = files::resolve(source, query, want_raw, read).await?.0;
    attachments::resolve(source, attach, read).await
}

/// Sends the check request and reads the response like any page.
pub async fn check(source: &dyn ChatSource, http: &Http) -> Result<Url> {
    let (query, url) = source.check();
    if !source.traits().check_answers_records {
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
    fetch_collect(source, http, None, &query, &url, false, None).await?;
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
    attach: Option<&'a Attach>,
    query: &'a Query,
    want_raw: bool,
    held: &'a Held,
    learned: &'a Learned,
}

/// Walks every page (or bisected window) of one query. Returns the number
/// of requests made.
async fn fetch_query(
    driving: Driving<'_>,
    query: &Query,
    want_raw: bool,
    held: &Held,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let Driving {
        source,
        http,
        learned,
        attach,
    } = driving;
    let walk = Walk {
        source,
        http,
        attach,
        query,
        want_raw,
        held,
        learned,
    };
    match source.paging() {
        Paging::Numbered {
            page_size,
            concurrency,
        } => fetch_numbered(walk, page_size as usize, concurrency, accept).await,
        Paging::Capped { record_cap, floor } => fetch_capped(walk, record_cap, floor, accept).await,
        Paging::Tail { per } => fetch_tail(walk, per as usize, accept).await,
        Paging::Snapshot => {
            let url = source.page_url(query, 1);
            fetch_streamed(source, http, attach, query, &url, want_raw, None, accept).await?;
            Ok(1)
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
