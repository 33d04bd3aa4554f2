//! One answer per window, cut at a record cap (Wolkvox reports): a capped
//! window is fetched on from where its answer stopped, or split.

use chrono::{DateTime, Duration, Utc};

use super::answer::{fetch_streamed, ElementPrint};
use super::{show, Accept, Walk};
use crate::error::{Error, Result};
use crate::log;
use crate::source::Query;
use crate::window::Window;

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
pub(super) async fn fetch_capped(
    walk: Walk<'_>,
    record_cap: u64,
    floor: Duration,
    accept: &mut dyn Accept,
) -> Result<usize> {
    let Walk {
        source,
        http,
        attach,
        query,
        want_raw,
        learned,
        ..
    } = walk;
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
        let answer =
            fetch_streamed(source, http, attach, &part, &url, want_raw, None, accept).await?;
        let units = answer.units;
        requests += 1;
        if let Some(expected) = expected {
            let ordered = units < record_cap
                && answer
                    .in_order
                    .as_ref()
                    .is_some_and(|got| holds_the_chats(got, &expected));
            learned.learn_capped_in_time_order(ordered);
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
        match (reached, learned.capped_in_time_order()) {
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
pub(in crate::source) fn split_for_cap(
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
