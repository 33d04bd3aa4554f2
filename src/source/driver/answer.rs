//! Reading one answer: streamed through the JSON scanner into the
//! provider's mapper, held until it is whole, or collected as a page.

use chrono::{DateTime, Utc};
use reqwest::Url;

use super::{only_repeats, Accept};
use crate::attach::Attach;
use crate::error::{Error, Result};
use crate::http::{read_limited, Failure, Http, Verdict};
use crate::jsonstream::{Element, ItemsAt, Lead, Scanner};
use crate::model::Record;
use crate::source::{ChatSource, PageInfo, Paging, Parsed, Query};

/// Fetches one response and parses it into a list: pages are small, and
/// holding one lets pages be fetched concurrently and consumed in order.
/// The files its elements ask for are read and mapped in place.
/// With `earlier`, an answer holding only records among them is taken as
/// unreadable (and so asked again).
pub(super) async fn fetch_collect(
    source: &dyn ChatSource,
    http: &Http,
    attach: Option<&Attach>,
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
    // Attachments are fetched once the page is whole and its files read.
    let answer = fetch_streamed(
        source,
        http,
        None,
        query,
        url,
        want_raw,
        limit,
        &mut collect,
    )
    .await?;
    let (items, file_bytes) = super::files::resolve(source, query, want_raw, collect.items).await?;
    let items = super::attachments::resolve(source, attach, items).await?;
    let info = PageInfo {
        bytes: answer.info.bytes + file_bytes,
        ..answer.info
    };
    Ok((items, info))
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
            Some(earlier) if only_repeats(&self.items, earlier) => {
                Err("the page only repeats records of earlier pages".into())
            }
            _ => Ok(()),
        }
    }
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
            Parsed::Wants(w) => w.item.len(),
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
pub(super) struct Answer {
    pub(super) info: PageInfo,
    /// The response's size in records: elements, or messages if more (what
    /// a record cap counts).
    pub(super) units: u64,
    /// The latest start among its elements (a chat's first message, a
    /// conversation's start): how far into the window a truncated answer
    /// got, when the platform fills it in time order.
    pub(super) latest_start: Option<DateTime<Utc>>,
    /// Every element's start, size in records and in bytes, while they
    /// came in start order (empty once one did not, or had no start): what
    /// a capped answer is compared by.
    pub(super) in_order: Option<Vec<ElementPrint>>,
}

/// An element's start, records and bytes: two answers holding the same
/// chats hold the same prints.
pub(super) type ElementPrint = (DateTime<Utc>, u64, usize);

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
#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch_streamed(
    source: &dyn ChatSource,
    http: &Http,
    attach: Option<&Attach>,
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
                attach.map(|attach| (attach, http)),
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
    http.count_received(answer.info.bytes);
    Ok(answer)
}

/// Reads one answer into `accept`: what [`fetch_streamed`] does with each
/// attempt.
#[allow(clippy::too_many_arguments)]
async fn read_answer(
    source: &dyn ChatSource,
    attach: Option<(&Attach, &Http)>,
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
    // Only a capped platform's whole answers (not collected pages) are
    // compared by their elements' prints: no list kept for the rest.
    let compared = page_limit.is_none() && matches!(source.paging(), Paging::Capped { .. });
    let mut tally = Tally {
        source,
        query,
        want_raw,
        page_limit,
        accept,
        messages: 0,
        latest_start: None,
        in_order: compared.then(Vec::new),
        page_bytes: 0,
        failed: None,
        broken: None,
        // Records with attachments wait for them between two reads.
        waiting: attach.map(|_| Vec::new()),
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
        if let Err(e) = scanner.feed_elements(&chunk, &mut |element| tally.element(element)) {
            outcome = Err(unreadable(e, !scanner.refused_as_not_json()));
            break;
        }
        tally.attach(attach).await;
        if tally.stopped() {
            break;
        }
    }
    // The end of the input: a record still held is read now.
    let mut finished = Ok(());
    if outcome.is_ok() && !tally.stopped() {
        finished = scanner.finish_elements(&mut |element| tally.element(element));
        tally.attach(attach).await;
    }
    // A failed write outranks whatever the response did.
    if let Some(e) = tally.failed.take() {
        return Err(Failure::Fail(e));
    }
    if let Some(why) = tally.broken.take() {
        return Err(unreadable(why, true));
    }
    outcome?;
    finished.map_err(|e| unreadable(e, true))?;
    let total = records_total(source, &scanner, &headers).map_err(|failure| match failure {
        Failure::Unreadable { why, json } => unreadable(why, json),
        other => other,
    })?;
    tally
        .accept
        .end_response()
        .map_err(|why| unreadable(why, true))?;
    Ok(Answer {
        info: PageInfo {
            items: scanner.items,
            total,
            bytes: tally.page_bytes,
        },
        units: tally.messages.max(scanner.items as u64),
        latest_start: tally.latest_start,
        in_order: tally.in_order,
    })
}

/// The platform's total for the query, from an answer's envelope read
/// whole: an answer without its records member is unreadable.
fn records_total(
    source: &dyn ChatSource,
    scanner: &Scanner,
    headers: &reqwest::header::HeaderMap,
) -> std::result::Result<Option<u64>, Failure> {
    match source.read_envelope(&scanner.envelope) {
        Ok(total) if scanner.envelope.has_items => Ok(total),
        Ok(_) => Err(Failure::Unreadable {
            why: format!(
                "the answer has no records ({})",
                match source.items_at() {
                    ItemsAt::Key(key) => format!("no `{key}` member"),
                    ItemsAt::Root => "not an array".to_string(),
                }
            ),
            json: true,
        }),
        // The platform's own way of saying "nothing here".
        Err(Verdict::Empty) => Ok(None),
        Err(v) => Err(Failure::from_verdict(v, headers)),
    }
}

/// What reading one answer's elements has gathered: each element is
/// mapped and handed on, and counted for the driver's stop conditions.
struct Tally<'a> {
    source: &'a dyn ChatSource,
    query: &'a Query,
    want_raw: bool,
    /// The bytes of records a collected page may hold.
    page_limit: Option<usize>,
    accept: &'a mut dyn Accept,
    /// Records so far: messages, or a conversation's message count.
    messages: u64,
    latest_start: Option<DateTime<Utc>>,
    in_order: Option<Vec<ElementPrint>>,
    page_bytes: usize,
    /// The sink failed (a full disk, a closed pipe): stop reading.
    failed: Option<Error>,
    /// An element or the page broke the response.
    broken: Option<String>,
    /// Under `--attachments`: what was mapped since the last read, held
    /// until its attachments are fetched.
    waiting: Option<Vec<Parsed>>,
}

impl Tally<'_> {
    fn stopped(&self) -> bool {
        self.failed.is_some() || self.broken.is_some()
    }

    /// Maps one element and hands on what it gave.
    fn element(&mut self, element: Element<'_>) -> Lead {
        if self.stopped() {
            // Walked and passed over.
            return Lead::Declined;
        }
        let (source, query, want_raw) = (self.source, self.query, self.want_raw);
        let records_before = self.messages;
        let room = self
            .page_limit
            .map(|limit| limit.saturating_sub(self.page_bytes));
        let mut element_start: Option<DateTime<Utc>> = None;
        let mut handle = |parsed: Parsed| self.take(parsed, &mut element_start);
        let length = match element {
            Element::Whole(bytes) => {
                // Over the page's limit: not even parsed.
                if room.is_none_or(|room| bytes.len() <= room) {
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
        if let Some(limit) = self
            .page_limit
            .filter(|limit| self.page_bytes + length > *limit)
        {
            self.broken.get_or_insert_with(|| {
                format!("a page holds more than {limit} bytes of records (`max_page_size`)")
            });
            return Lead::Read(length);
        }
        self.page_bytes += length;
        self.latest_start = self.latest_start.max(element_start);
        if let Some(prints) = self.in_order.as_mut() {
            let ordered = prints.len() < MOST_PRINTS
                && element_start.is_some_and(|t| prints.last().is_none_or(|(last, ..)| *last <= t));
            match element_start {
                Some(start) if ordered => {
                    prints.push((start, self.messages - records_before, length))
                }
                _ => self.in_order = None,
            }
        }
        Lead::Read(length)
    }

    /// One mapped item: counted, and handed on unless reading stopped.
    fn take(&mut self, parsed: Parsed, element_start: &mut Option<DateTime<Utc>>) {
        let start = match &parsed {
            Parsed::Record(Record::Message(m)) => m.record.sent_at,
            other => other.conversation().and_then(|c| c.started_at),
        };
        *element_start = match (*element_start, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.messages += match &parsed {
            Parsed::Record(Record::Message(_)) => 1,
            Parsed::Record(Record::Conversation(_)) | Parsed::Wants(_) => parsed
                .conversation()
                .and_then(|c| c.message_count)
                .unwrap_or(0)
                .max(0)
                as u64,
            Parsed::Rejected(_) | Parsed::NotYet(_) => 0,
            Parsed::Unreadable(why) => {
                self.broken.get_or_insert_with(|| why.clone());
                return;
            }
        };
        if let Some(waiting) = self.waiting.as_mut() {
            waiting.push(parsed);
            return;
        }
        self.hand_on(parsed);
    }

    fn hand_on(&mut self, parsed: Parsed) {
        if !self.stopped() {
            if let Err(e) = self.accept.accept(parsed) {
                self.failed = Some(e);
            }
        }
    }

    /// Fetches the attachments of what is waiting, then hands it on. The
    /// answer stays open meanwhile; the time is set aside from its
    /// deadline, being chatdump's own, not the platform's.
    async fn attach(&mut self, attach: Option<(&Attach, &Http)>) {
        let Some(waiting) = self.waiting.as_mut().filter(|w| !w.is_empty()) else {
            return;
        };
        let items = std::mem::take(waiting);
        let Some((attach, http)) = attach.filter(|_| !self.stopped()) else {
            return;
        };
        let aside = http.set_aside();
        let resolved = super::attachments::resolve(self.source, Some(attach), items).await;
        drop(aside);
        match resolved {
            Ok(items) => items.into_iter().for_each(|item| self.hand_on(item)),
            Err(e) => self.failed = Some(e),
        }
    }
}
