//! Conversation rows built from messages, for platforms without a listing
//! of conversations, with a separate report of their details merged in.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::{Conversation, Message};

/// Conversation rows built from messages, for platforms without a
/// conversation listing. A row is written once a window passes in which
/// none of its messages arrived, so a chat spanning two windows is one row.
/// A platform's separate report of conversation details (Wolkvox `chat_1`)
/// is merged into the rows of the same id.
#[derive(Default)]
pub(super) struct Aggregator {
    rows: Vec<Option<Row>>,
    index: HashMap<String, usize>,
    window: usize,
    /// First message time and counts (messages, attachments) of rows
    /// already written: a chat that comes back after a quiet window gets a
    /// row counting all of them, which then replaces the earlier one in a
    /// file.
    pub(super) written: HashMap<String, Written>,
}

/// What a row already written counted.
#[derive(Clone, Copy)]
pub(super) struct Written {
    first: Option<DateTime<Utc>>,
    messages: i64,
    /// None when not known (the chat began in an earlier run).
    attachments: Option<i64>,
}

struct Row {
    conversation: Conversation,
    /// The window that last added to it.
    touched: usize,
    /// Details were merged: their duration is the platform's own figure,
    /// which message times no longer overwrite.
    detailed: bool,
}

impl Aggregator {
    /// The row of `id`, created (continuing a row already written, if
    /// any) when there is none.
    fn row(&mut self, id: &str) -> &mut Row {
        let slot = match self.index.get(id) {
            Some(&slot) => slot,
            None => {
                let Written {
                    first: started_at,
                    messages: count,
                    attachments,
                } = self.written.get(id).copied().unwrap_or(Written {
                    first: None,
                    messages: 0,
                    attachments: Some(0),
                });
                self.rows.push(Some(Row {
                    conversation: Conversation {
                        conversation_id: id.to_string(),
                        message_count: Some(count),
                        attachment_count: attachments,
                        started_at,
                        ..Default::default()
                    },
                    touched: self.window,
                    detailed: false,
                }));
                self.index.insert(id.to_string(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        let row = self.rows[slot].as_mut().expect("indexed rows are present");
        row.touched = self.window;
        row
    }

    /// Adds a message to its chat's row. `chat`: what is known of the
    /// chat beyond this run's rows (the message's `seq`, the chat's first
    /// message), so a chat going on after an earlier run's checkpoint
    /// gets a row counting from its start.
    pub(super) fn add(&mut self, m: &Message, chat: (Option<u32>, Option<DateTime<Utc>>)) {
        let row = self.row(&m.conversation_id);
        let detailed = row.detailed;
        let c = &mut row.conversation;
        if let Some(first) = chat.1 {
            c.started_at = Some(c.started_at.map_or(first, |s| s.min(first)));
        }
        fill(&mut c.channel, &m.channel);
        fill(&mut c.agent_id, &m.agent_id);
        fill(&mut c.agent_name, &m.agent_name);
        fill(&mut c.customer_id, &m.customer_id);
        fill(&mut c.customer_name, &m.customer_name);
        fill(&mut c.customer_phone, &m.customer_phone);
        if let Some(sentiment) = m.sentiment.as_deref().filter(|_| !detailed) {
            c.sentiment = Some(sentiment.to_string());
        }
        if let Some(t) = m.sent_at {
            c.started_at = Some(c.started_at.map_or(t, |s| s.min(t)));
            c.ended_at = Some(c.ended_at.map_or(t, |e| e.max(t)));
            if !detailed {
                c.duration_s = c
                    .started_at
                    .zip(c.ended_at)
                    .map(|(s, e)| (e - s).num_seconds());
            }
            // Built from messages: the newest one is its last change.
            c.updated_at = c.ended_at;
        }
        let counted = c.message_count.unwrap_or(0) + 1;
        // Messages before this one that this run never saw (an earlier
        // run's): their attachments are not known, so neither is the sum.
        let earlier_unseen = chat.0.is_some_and(|seq| i64::from(seq) + 1 > counted);
        c.attachment_count = match c.attachment_count {
            Some(n) if !earlier_unseen => Some(n + m.attachments.len() as i64),
            _ => None,
        };
        c.message_count = Some(
            chat.0
                .map_or(counted, |seq| counted.max(i64::from(seq) + 1)),
        );
    }

    /// Whether `id` has a row being built.
    pub(super) fn is_building(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Merges a conversation's details into its row (made if there is
    /// none): the platform's figures (duration, wait, sentiment, the
    /// agent's coding and notes) win; for the rest they fill what the
    /// messages left empty.
    pub(super) fn merge(&mut self, details: &Conversation) {
        let row = self.row(&details.conversation_id);
        let fresh = row.conversation.message_count == Some(0);
        row.detailed = true;
        let c = &mut row.conversation;
        if fresh {
            // No messages: no count either, rather than a count of 0.
            c.message_count = None;
            c.attachment_count = None;
        }
        fill(&mut c.channel, &details.channel);
        fill(&mut c.agent_id, &details.agent_id);
        fill(&mut c.agent_name, &details.agent_name);
        fill(&mut c.customer_id, &details.customer_id);
        fill(&mut c.customer_name, &details.customer_name);
        fill(&mut c.customer_phone, &details.customer_phone);
        fill(&mut c.customer_email, &details.customer_email);
        fill(&mut c.queue, &details.queue);
        if c.started_at.is_none() {
            c.started_at = details.started_at;
        }
        // A row of details alone: its date is all that says how new it is.
        if c.updated_at.is_none() {
            c.updated_at = c.ended_at.or(c.started_at);
        }
        let take = |slot: &mut Option<String>, from: &Option<String>| {
            if from.is_some() {
                slot.clone_from(from);
            }
        };
        take(&mut c.sentiment, &details.sentiment);
        take(&mut c.disposition_code, &details.disposition_code);
        take(&mut c.disposition, &details.disposition);
        take(&mut c.comments, &details.comments);
        c.duration_s = details.duration_s.or(c.duration_s);
        c.wait_s = details.wait_s.or(c.wait_s);
    }

    /// Rows not touched in the window that just ended (all rows if `all`),
    /// in the order they were first seen.
    pub(super) fn take_finished(&mut self, all: bool) -> Vec<Conversation> {
        let mut done = Vec::new();
        let mut kept = Vec::new();
        for row in self.rows.drain(..).flatten() {
            if all || row.touched < self.window {
                let c = row.conversation;
                self.written.insert(
                    c.conversation_id.clone(),
                    Written {
                        first: c.started_at,
                        messages: c.message_count.unwrap_or(0),
                        attachments: c.attachment_count,
                    },
                );
                done.push(c);
            } else {
                kept.push(Some(row));
            }
        }
        self.index = kept
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let row = r.as_ref().expect("kept rows are present");
                (row.conversation.conversation_id.clone(), n)
            })
            .collect();
        self.rows = kept;
        self.window += 1;
        done
    }
}

/// Sets an empty field from `from` (a message's shared text or a
/// conversation's own).
pub(super) fn fill<T: for<'a> From<&'a str>>(slot: &mut Option<T>, from: &Option<impl AsRef<str>>) {
    if slot.is_none() {
        *slot = from.as_ref().map(|f| T::from(f.as_ref()));
    }
}
