//! Numbered pages with a total (CareSoft): the announced pages fetched at
//! once and fed in order, a repeat asked again, the total accounted for.

use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use super::answer::fetch_collect;
use super::{identity, only_repeats, show, Accept, Walk, MAX_PAGES_PER_QUERY};
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::log;
use crate::source::{PageInfo, Parsed, Query};

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
pub(super) async fn fetch_numbered(
    walk: Walk<'_>,
    page_size: usize,
    concurrency: usize,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let Walk {
        source,
        http,
        attach,
        query,
        want_raw,
        held,
        ..
    } = walk;
    let fetch = |page: u32| {
        let url = source.page_url(query, page);
        async move {
            let (items, info) =
                fetch_collect(source, http, attach, query, &url, want_raw, None).await?;
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
            (items, info) = fetch_collect(source, http, attach, query, &url, want_raw, Some(&ledger.seen))
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
        only_repeats(items, &self.seen)
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
