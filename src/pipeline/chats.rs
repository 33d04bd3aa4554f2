//! What the pipeline remembers of each conversation while it is open, so
//! the fields that describe a message's place in its chat stay right
//! whatever cut the chat: a window boundary (a chat crossing midnight), a
//! capped answer fetched on in pieces, the checkpoint between two cron runs.
//!
//! For each conversation: the `seq` its next message takes, and the details
//! a separate listing gave it (Wolkvox `chat_1`: the agent, the customer),
//! which later messages of the chat are enriched with. Memory is bounded:
//! past [`MOST_CHATS`] the chats least recently seen are forgotten (a
//! later message of one then takes the platform's position in the answer
//! as its `seq`, as in a first window), and a state keeps those seen
//! within [`OPEN_FOR`] of its checkpoint.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::model::{Conversation, Message, Shared};
use crate::state::OpenChat;

/// Conversations remembered at once; the least recently seen go first.
pub const MOST_CHATS: usize = 200_000;

/// How long after it was last seen a conversation counts as open: a later
/// run continues its `seq` (and its details) only within this.
pub const OPEN_FOR: Duration = Duration::days(1);

/// One conversation's memory.
struct Note {
    id: Shared,
    /// The `seq` its next new message takes.
    next: u32,
    /// The key of the message numbered last (`next - 1`): where a platform
    /// sends the chat's earlier messages again (a snapshot, an overlap, a
    /// piece fetched again), meeting it tells where the new ones stand.
    anchor: Option<u128>,
    /// The last message of it met in the response numbered `.0`: its
    /// position, and its `seq` where that is known.
    position: Option<(u32, i64, Option<u32>)>,
    /// Details from a listing of conversations (`chat_1`), for messages
    /// that arrive in a later window than their listing.
    details: Option<Box<Conversation>>,
    /// The end of the last window it was met in (None: this window).
    seen_until: Option<DateTime<Utc>>,
    /// Its earliest message met.
    started_at: Option<DateTime<Utc>>,
}

/// How a message was met before, as the pipeline's de-duplication says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// Never: it is written, and numbered.
    New,
    /// In an earlier window or run: written then.
    Before,
    /// In this window already (a response fetched again).
    Again,
}

/// The open conversations.
#[derive(Default)]
pub struct Chats {
    notes: Vec<Note>,
    index: HashMap<Shared, usize>,
    /// The note of the conversation met last: a chat's messages come
    /// together, and a comparison costs less than a lookup.
    last: Option<usize>,
    /// Numbers the responses, so a position is compared only with one of
    /// the same response.
    response: u32,
}

impl Chats {
    /// Memory a previous run left in its state.
    pub fn from_state(open: &[OpenChat]) -> Chats {
        let mut chats = Chats::default();
        for chat in open {
            let at = chats.note(&Shared::from(chat.id.as_str()));
            let note = &mut chats.notes[at];
            note.next = chat.next_seq;
            note.anchor = chat
                .anchor
                .as_deref()
                .and_then(|k| u128::from_str_radix(k, 16).ok());
            note.seen_until = Some(chat.seen_until);
            note.started_at = chat.started_at;
            note.details = chat
                .details
                .as_ref()
                .map(|d| Box::new(d.to_conversation(&chat.id)));
        }
        chats.last = None;
        chats
    }

    /// The conversations seen after `since`, newest last, for a state.
    pub fn to_state(&self, since: DateTime<Utc>) -> Vec<OpenChat> {
        let mut open: Vec<OpenChat> = self
            .notes
            .iter()
            .filter_map(|n| {
                let seen_until = n.seen_until?;
                let fits = n.id.len() <= crate::state::MOST_CHAT_VALUE_BYTES;
                (seen_until > since && fits).then(|| OpenChat {
                    id: n.id.to_string(),
                    next_seq: n.next,
                    anchor: n.anchor.map(|k| format!("{k:032x}")),
                    seen_until,
                    started_at: n.started_at,
                    details: n.details.as_deref().map(crate::state::ChatDetails::of),
                })
            })
            .collect();
        open.sort_by(|a, b| (a.seen_until, &a.id).cmp(&(b.seen_until, &b.id)));
        let excess = open.len().saturating_sub(crate::state::MOST_OPEN_CHATS);
        open.drain(..excess);
        open
    }

    /// A new response begins: positions start over.
    pub fn begin_response(&mut self) {
        self.response = self.response.wrapping_add(1);
    }

    fn note(&mut self, id: &Shared) -> usize {
        if let Some(at) = self.last {
            if *self.notes[at].id == **id {
                return at;
            }
        }
        let at = match self.index.get(id) {
            Some(&at) => at,
            None => {
                self.notes.push(Note {
                    id: id.clone(),
                    next: 0,
                    anchor: None,
                    position: None,
                    details: None,
                    seen_until: None,
                    started_at: None,
                });
                self.index.insert(id.clone(), self.notes.len() - 1);
                self.notes.len() - 1
            }
        };
        self.last = Some(at);
        at
    }

    /// The `seq` of `m` (whose de-duplication key is `key`), met in the
    /// platform's order of its chat, or None where it takes no number.
    ///
    /// Where the response re-sends messages numbered before, the last one
    /// numbered (the anchor) places the rest: `seq` goes on from it by the
    /// platform's positions (a rejected message keeps its place). A
    /// response that only continues the chat (the next day's messages, a
    /// later piece) numbers on from the chat's next `seq`. A chat never met
    /// (or forgotten) takes the platform's positions, as a first window does.
    pub fn seq_in_order(&mut self, m: &Message, key: u128, met: Met) -> Option<u32> {
        self.seq_at(m, m.order_key, key, met)
    }

    /// [`Chats::seq_in_order`] for messages sorted by the pipeline: their
    /// order met is their order (a platform's own numbering, 1-based or
    /// with gaps, only sorted them).
    pub fn seq_sorted(&mut self, m: &Message, key: u128, met: Met) -> Option<u32> {
        self.seq_at(m, None, key, met)
    }

    fn seq_at(&mut self, m: &Message, given: Option<i64>, key: u128, met: Met) -> Option<u32> {
        let response = self.response;
        let at = self.note(&m.conversation_id);
        let note = &mut self.notes[at];
        note.seen_until = None;
        if let Some(t) = m.sent_at {
            note.started_at = Some(note.started_at.map_or(t, |s| s.min(t)));
        }
        let in_response = note.position.filter(|(r, ..)| *r == response);
        // Without positions from the platform, the order met is the order.
        let position =
            given.unwrap_or_else(|| in_response.map_or(0, |(_, p, _)| p.saturating_add(1)));
        let derived = |(_, p0, s0): (u32, i64, Option<u32>)| {
            let s0 = s0?;
            let step = position.checked_sub(p0).filter(|d| *d > 0)?;
            u32::try_from(i64::from(s0).checked_add(step)?).ok()
        };
        if note.anchor == Some(key) && note.next > 0 {
            let seq = note.next - 1;
            note.position = Some((response, position, Some(seq)));
            return (met != Met::Again).then_some(seq);
        }
        let known = in_response.and_then(derived);
        if met == Met::Again || (met == Met::Before && known.is_none()) {
            note.position = Some((response, position, known));
            return None;
        }
        let seq = known.unwrap_or_else(|| {
            let at = u32::try_from(position.max(0)).unwrap_or(u32::MAX);
            // Earlier messages of this response whose place is unknown:
            // the platform's position is the best guess.
            if note.next == 0 || in_response.is_some() {
                at
            } else {
                note.next.saturating_add(at)
            }
        });
        note.position = Some((response, position, Some(seq)));
        note.next = note.next.max(seq.saturating_add(1));
        note.anchor = Some(key);
        Some(seq)
    }

    /// Keeps what a listing says of a conversation, for its messages in
    /// later windows.
    pub fn remember_details(&mut self, c: &Conversation) {
        let at = self.note(&Shared::from(c.conversation_id.as_str()));
        let note = &mut self.notes[at];
        note.seen_until = None;
        note.details = Some(Box::new(
            crate::state::ChatDetails::of(c).to_conversation(&c.conversation_id),
        ));
    }

    /// The earliest message met of conversation `id`, in any window or run.
    pub fn started_at(&self, id: &str) -> Option<DateTime<Utc>> {
        let at = *self.index.get(id)?;
        self.notes[at].started_at
    }

    /// The details remembered for conversation `id`.
    pub fn details(&self, id: &str) -> Option<&Conversation> {
        let at = *self.index.get(id)?;
        self.notes[at].details.as_deref()
    }

    /// The window ending at `end` is over: what was met in it is dated so,
    /// and past [`MOST_CHATS`] the least recently seen are forgotten.
    pub fn end_window(&mut self, end: DateTime<Utc>) {
        for note in &mut self.notes {
            if note.seen_until.is_none() {
                note.seen_until = Some(end);
            }
        }
        if self.notes.len() > MOST_CHATS {
            // Down to three quarters, so this runs seldom.
            self.notes.sort_by_key(|n| std::cmp::Reverse(n.seen_until));
            self.notes.truncate(MOST_CHATS / 4 * 3);
            self.index = self
                .notes
                .iter()
                .enumerate()
                .map(|(at, n)| (n.id.clone(), at))
                .collect();
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conv: &str, position: i64) -> Message {
        Message {
            conversation_id: conv.into(),
            order_key: Some(position),
            ..Default::default()
        }
    }

    /// Numbers the messages of one response: (chat, position, key, how met).
    fn response(chats: &mut Chats, messages: &[(&str, i64, u128, Met)]) -> Vec<Option<u32>> {
        chats.begin_response();
        messages
            .iter()
            .map(|(conv, p, key, met)| chats.seq_in_order(&message(conv, *p), *key, *met))
            .collect()
    }

    #[test]
    fn seq_goes_on_across_windows_pieces_and_snapshots() {
        let mut chats = Chats::default();
        // Position 2 was rejected: it keeps its place.
        let first = response(
            &mut chats,
            &[
                ("a", 0, 10, Met::New),
                ("a", 1, 11, Met::New),
                ("a", 3, 13, Met::New),
            ],
        );
        assert_eq!(first, [Some(0), Some(1), Some(3)]);
        chats.end_window("2024-03-06T00:00:00Z".parse().unwrap());
        // The next day's answer numbers the chat's messages from 0 again.
        let next_day = response(
            &mut chats,
            &[("a", 0, 20, Met::New), ("a", 1, 21, Met::New)],
        );
        assert_eq!(next_day, [Some(4), Some(5)]);
        // The same day's chat fetched again whole in a later piece: its
        // repeats take no number, the rest go on from the last numbered.
        let piece = response(
            &mut chats,
            &[
                ("a", 0, 20, Met::Again),
                ("a", 1, 21, Met::Again),
                ("a", 2, 22, Met::New),
            ],
        );
        assert_eq!(piece, [None, None, Some(6)]);
        // A snapshot sending the whole chat again (earlier messages written
        // by an earlier run): the new one follows the last numbered.
        let snapshot = response(
            &mut chats,
            &[
                ("a", 0, 10, Met::Before),
                ("a", 1, 11, Met::Before),
                ("a", 2, 22, Met::Before),
                ("a", 3, 23, Met::New),
            ],
        );
        assert_eq!(snapshot, [None, None, Some(6), Some(7)]);
        // Without positions, the order met is the order.
        let mut unordered = Chats::default();
        unordered.begin_response();
        let mut m = message("b", 0);
        m.order_key = None;
        assert_eq!(unordered.seq_in_order(&m, 1, Met::New), Some(0));
        assert_eq!(unordered.seq_in_order(&m, 2, Met::New), Some(1));
    }

    #[test]
    fn absurd_positions_never_panic_nor_wrap() {
        let mut chats = Chats::default();
        let seqs = response(
            &mut chats,
            &[
                ("a", i64::MAX, 1, Met::New),
                ("a", i64::MIN, 2, Met::New),
                ("a", -5, 3, Met::New),
                ("a", i64::MAX, 4, Met::New),
            ],
        );
        assert_eq!(
            seqs[0],
            Some(u32::MAX),
            "a position past u32 is held at its top"
        );
        assert!(seqs.iter().all(Option::is_some));
        let next_day = response(&mut chats, &[("a", 0, 5, Met::New)]);
        assert_eq!(next_day, [Some(u32::MAX)], "saturated, not wrapped to 0");
    }

    #[test]
    fn a_state_carries_open_chats_and_forgets_old_ones() {
        let mut chats = Chats::default();
        response(&mut chats, &[("old", 0, 1, Met::New)]);
        chats.end_window("2024-03-01T00:00:00Z".parse().unwrap());
        response(
            &mut chats,
            &[("open", 0, 2, Met::New), ("open", 1, 3, Met::New)],
        );
        chats.remember_details(&Conversation {
            conversation_id: "open".into(),
            agent_id: Some("7".into()),
            ..Default::default()
        });
        chats.end_window("2024-03-05T00:00:00Z".parse().unwrap());
        let open = chats.to_state("2024-03-04T00:00:00Z".parse().unwrap());
        assert_eq!(open.len(), 1);
        let mut next = Chats::from_state(&open);
        // The next run's snapshot: both again, then a new one.
        let seqs = response(
            &mut next,
            &[
                ("open", 0, 2, Met::Before),
                ("open", 1, 3, Met::Before),
                ("open", 2, 4, Met::New),
            ],
        );
        assert_eq!(seqs, [None, Some(1), Some(2)]);
        assert_eq!(
            next.details("open").and_then(|c| c.agent_id.as_deref()),
            Some("7")
        );
        assert_eq!(response(&mut next, &[("old", 0, 1, Met::New)]), [Some(0)]);
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_least_recently_seen() {
        let mut chats = Chats::default();
        let day: DateTime<Utc> = "2024-03-01T00:00:00Z".parse().unwrap();
        chats.begin_response();
        for n in 0..=MOST_CHATS {
            let id = format!("c{n}");
            chats.seq_in_order(&message(&id, 0), n as u128, Met::New);
            if n == 10 {
                chats.end_window(day);
            }
        }
        chats.end_window(day + Duration::days(1));
        assert!(chats.notes.len() <= MOST_CHATS / 4 * 3);
        chats.begin_response();
        assert_eq!(
            chats.seq_in_order(&message("c5", 1), 99, Met::New),
            Some(1),
            "forgotten: its position"
        );
        assert_eq!(
            chats.seq_in_order(&message("c20", 0), 98, Met::New),
            Some(1),
            "kept: goes on"
        );
    }
}
