//! A query tailed on `updated_at` (UJET): each page restarts at the newest
//! time it held, and pages on only through ties.

use super::answer::fetch_collect;
use super::{identity, only_repeats, Accept, Walk, MAX_PAGES_PER_QUERY};
use crate::error::{Error, Result};
use crate::http::display_url;
use crate::log;
use crate::model::Record;
use crate::source::{Parsed, Query};
use crate::window::Window;

/// Tails a query sorted by `updated_at`: each page restarts the query at
/// the newest `updated_at` it held (inclusive, so nothing at that instant is
/// skipped; de-duplication drops what repeats). Only when a full page adds
/// nothing newer, because more than a page of records share one instant,
/// does the next request ask for page 2, 3, ... of the same start. No
/// request repeats, and every request either moves the start forward or
/// pages further, so the loop ends.
pub(super) async fn fetch_tail(
    walk: Walk<'_>,
    per: usize,
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
            fetch_collect(source, http, attach, &part, &url, want_raw, None).await?;
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
        if info.items >= per && !ties && only_repeats(&items, &seen) {
            log::verbose(&format!(
                "GET {}: the page only repeats records already read; asking again",
                display_url(&url)
            ));
            (items, info) = fetch_collect(source, http, attach, &part, &url, want_raw, Some(&seen))
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
