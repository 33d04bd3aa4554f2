//! What happens to records between the driver and the writer:
//! de-duplication, message ids and `seq`, enrichment from conversation
//! context, building conversation rows from messages, and rejects.
//!
//! Memory is bounded by windows, never by the export: de-duplication keeps
//! 128-bit digests of the keys of the current and the previous window (every
//! place a platform can repeat a record: shifting pages, inclusive bounds,
//! retried or bisected responses); messages are held back only when the
//! platform does not deliver them in order; conversations built from
//! messages are held until a window passes without them.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::log;
use crate::model::{
    Conversation, DigestMap, Item, Message, MessageId, Record, RecordKind, Sender, Shared,
};
use crate::output::Output;
use crate::rejects::RejectLog;
use crate::source::{ConversationContext, Parsed, Sink};
use crate::state::Awaiting;
use crate::window::Window;

mod aggregate;
mod chats;
mod memory;
mod seen;

use aggregate::{fill, Aggregator};
use chats::{Chats, Met};
pub use memory::Memory;
use seen::{met, Novelty, Seen};

fn millis(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.timestamp_millis().to_string())
        .unwrap_or_default()
}

/// Counts for the summary line and the exit code.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub records: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub windows: usize,
    pub requests: usize,
    /// Where messages are joined to a separate listing of conversation
    /// details: conversations that had messages but no details in their
    /// window, and details without messages. Both are kept.
    pub messages_only: u64,
    pub details_only: u64,
    /// Attachments asked for (`--attachments`) that could not be had:
    /// listed in the rejects, and the run exits 65.
    pub attachments_missing: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.windows += other.windows;
        self.requests += other.requests;
        self.messages_only += other.messages_only;
        self.details_only += other.details_only;
        self.attachments_missing += other.attachments_missing;
    }
}

/// How long an element whose data is not there yet is read again by later
/// runs before it is given up on (and reported again).
pub const AWAIT_AT_MOST: Duration = Duration::days(7);

/// What the pipeline needs to know about the export's shape.
pub struct Shape {
    pub records: RecordKind,
    /// Messages arrive grouped and ordered: no holding back.
    pub messages_in_order: bool,
    /// The driver delivers messages and `records` asks for conversations
    /// built from them.
    pub aggregate: bool,
    /// How far back from a window's end its keys are kept for a later run
    /// (the source's lookback).
    pub keep_for: Duration,
    /// Each window's messages come with a listing of their conversations'
    /// details to join (counted in [`Stats`]).
    pub joined: bool,
}

/// The [`Sink`] that turns driver output into written records.
pub struct Pipeline<'a> {
    records: RecordKind,
    /// Messages arrive grouped and ordered: no holding back.
    messages_in_order: bool,
    output: &'a mut Output,
    rejects: RejectLog,
    seen: Seen,
    /// Messages of the current window, when they must be sorted first,
    /// with their key and how they were met (only new ones are written;
    /// the others place the rest).
    pending: Vec<(Item<Message>, u128, Novelty)>,
    /// The open conversations: `seq` continuing across windows, slices
    /// and runs, and details for messages of later windows.
    chats: Chats,
    /// Keys per recent window, kept while within `keep_for` of the newest.
    recent: VecDeque<(DateTime<Utc>, Vec<u128>)>,
    remember: bool,
    keep_for: Duration,
    /// Identical messages met so far, by digest, so two identical messages
    /// in one second get two ids, and a repeat of both gets the same two.
    /// Scoped to one response, or one conversation for in-order sources.
    occurrences: DigestMap<u32>,
    occurrence_scope: Shared,
    aggregate: Option<Aggregator>,
    /// Conversations of the current window's messages, when joined.
    window_chats: Option<HashSet<Shared>>,
    /// Elements an earlier run or chunk left to read again, and those this
    /// one leaves.
    retry: Vec<Awaiting>,
    awaiting: Vec<Awaiting>,
    stats: Stats,
}

impl<'a> Pipeline<'a> {
    /// A pipeline writing to `output`, in the shape `shape` describes,
    /// remembering what `memory` (earlier chunks and runs) saw.
    pub fn new(shape: Shape, output: &'a mut Output, rejects: RejectLog, memory: Memory) -> Self {
        Pipeline {
            records: shape.records,
            messages_in_order: shape.messages_in_order,
            output,
            rejects,
            seen: memory.seen,
            pending: Vec::new(),
            chats: memory.chats,
            recent: memory.recent,
            remember: memory.remember,
            keep_for: shape.keep_for,
            occurrences: DigestMap::default(),
            occurrence_scope: Shared::default(),
            aggregate: (shape.aggregate && shape.records == RecordKind::Conversations)
                .then(Aggregator::default),
            window_chats: shape.joined.then(HashSet::new),
            retry: memory.awaiting,
            awaiting: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn write(&mut self, mut record: Record) -> Result<()> {
        self.settle_attachments(&mut record)?;
        log::progress::records(1);
        self.output.write(record)?;
        self.stats.records += 1;
        Ok(())
    }

    /// What a message's attachments make of it as it is written (after
    /// its id): inline payloads that were kept leave its text, and those
    /// that could not be had are listed in the rejects. Every record to
    /// the output passes here.
    fn settle_attachments(&mut self, record: &mut Record) -> Result<()> {
        if let Record::Message(m) = record {
            if !m.record.attachments.is_empty() {
                self.list_missing_attachments(&m.record)?;
                crate::media::settle_inline(&mut m.record);
            }
        }
        Ok(())
    }

    /// Saves each attachment of `m` that could not be had to the rejects,
    /// with where it was to come from and why.
    fn list_missing_attachments(&mut self, m: &Message) -> Result<()> {
        for attachment in m.attachments.iter().filter(|a| a.status.is_missing()) {
            self.stats.attachments_missing += 1;
            let raw = serde_json::json!({
                "conversation_id": &*m.conversation_id,
                "message_id": m.message_id.as_ref().map(|id| id.text()),
                "sent_at": m.sent_at,
                "attachment": {
                    "name": attachment.name,
                    "url": attachment.url(),
                    "content_type": attachment.content_type,
                    "status": attachment.status.as_str(),
                },
            });
            self.rejects.save_attachment(&crate::model::Rejected {
                raw: raw.to_string(),
                reason: format!(
                    "attachment {}: {}",
                    attachment.status.as_str(),
                    attachment.why.as_deref().unwrap_or("")
                ),
            })?;
        }
        Ok(())
    }

    /// The details of conversation `id`: this window's listing, else what
    /// an earlier window's (or run's) said.
    fn details_of<'c>(
        &'c self,
        context: &'c ConversationContext,
        id: &str,
    ) -> Option<&'c Conversation> {
        context.by_id.get(id).or_else(|| self.chats.details(id))
    }

    fn write_conversations(&mut self, rows: Vec<Conversation>) -> Result<()> {
        for record in rows {
            self.write(Record::Conversation(Box::new(Item { record, raw: None })))?;
        }
        Ok(())
    }

    /// Gives a message without a platform id its digest id; returns its
    /// de-duplication key (the digest itself, when it is one).
    fn assign_id(&mut self, m: &mut Message) -> u128 {
        if let Some(id) = &m.message_id {
            let id = id.text();
            return self.seen.key(&[&m.conversation_id, &id]);
        }
        if self.messages_in_order && self.occurrence_scope != m.conversation_id {
            self.occurrences.clear();
            self.occurrence_scope = m.conversation_id.clone();
        }
        let base = m.digest(0);
        let n = self.occurrences.entry(base).or_insert(0);
        let digest = if *n == 0 { base } else { m.digest(*n) };
        *n += 1;
        m.message_id = Some(MessageId::digest(digest));
        digest
    }

    /// Counts the window's conversations found in only one of messages and
    /// details, and merges the details into the conversation rows being
    /// built from messages. Details without messages become rows of their
    /// own, once (a later run's lookback fetches them again).
    fn join_details(&mut self, context: &ConversationContext) {
        let Some(chats) = self.window_chats.as_mut().map(std::mem::take) else {
            return;
        };
        self.stats.messages_only += chats
            .iter()
            .filter(|id| !context.by_id.contains_key(id.as_ref()))
            .count() as u64;
        // In time order, so rows of their own come out the same every run.
        let mut details: Vec<&Conversation> = context.by_id.values().collect();
        details.sort_by(|a, b| {
            (a.started_at, &a.conversation_id).cmp(&(b.started_at, &b.conversation_id))
        });
        for d in details {
            let id = d.conversation_id.as_str();
            let alone = !chats.contains(id);
            if alone {
                self.stats.details_only += 1;
            }
            let Some(aggregate) = self.aggregate.as_mut() else {
                continue;
            };
            // Details join the row their messages are building. Without
            // one: if the chat had messages, they were all repeats (their
            // row is out, from this run or an earlier one); if it had none,
            // the details make a row of their own, unless one was written
            // before (this run or, through the state, an earlier one).
            let own_row = alone
                && !aggregate.written.contains_key(id)
                && self.seen.insert(&[id, "details without messages"]);
            if aggregate.is_building(id) || own_row {
                aggregate.merge(d);
            }
        }
    }

    /// Whether message records matter to this export (as records, or to
    /// build conversation rows from).
    fn takes_messages(&self) -> bool {
        self.records == RecordKind::Messages || self.aggregate.is_some()
    }

    /// Notes a message's conversation for the window, gives it its id and
    /// returns its de-duplication key.
    fn identify(&mut self, m: &mut Message) -> u128 {
        if let Some(chats) = self.window_chats.as_mut() {
            if !chats.contains(&*m.conversation_id) {
                chats.insert(m.conversation_id.clone());
            }
        }
        self.assign_id(m)
    }

    /// Counts a message whose key was checked: a duplicate unless it is
    /// new. Returns whether it is to be written.
    fn counted(&mut self, novelty: Novelty) -> bool {
        if novelty != Novelty::New {
            self.stats.duplicates += 1;
        }
        novelty == Novelty::New
    }

    /// Counts, numbers, enriches and writes (or holds) a message whose key
    /// was checked; returns whether it was new.
    fn place(
        &mut self,
        mut m: Item<Message>,
        key: u128,
        novelty: Novelty,
        context: &ConversationContext,
    ) -> Result<bool> {
        let emit = self.counted(novelty);
        let enrich_from = |pipeline: &Self, m: &mut Message| {
            if let Some(c) = pipeline.details_of(context, &m.conversation_id) {
                enrich(m, c);
            }
        };
        match novelty {
            // A repeat takes no place, but in a platform's order its
            // position tells where the next message stands.
            Novelty::Repeated => {
                if self.messages_in_order {
                    self.chats.seq_in_order(&m.record, key, Met::Again);
                }
            }
            _ if self.aggregate.is_some() => {
                let seq = if self.messages_in_order {
                    self.chats.seq_in_order(&m.record, key, met(novelty))
                } else {
                    None
                };
                if emit {
                    enrich_from(self, &mut m.record);
                    let first = self.chats.started_at(&m.record.conversation_id);
                    if let Some(aggregate) = self.aggregate.as_mut() {
                        aggregate.add(&m.record, (seq, first));
                    }
                }
            }
            _ if self.messages_in_order => {
                let seq = self.chats.seq_in_order(&m.record, key, met(novelty));
                if emit {
                    m.record.seq = seq.unwrap_or_default();
                    enrich_from(self, &mut m.record);
                    self.write(Record::Message(m))?;
                }
            }
            _ => {
                enrich_from(self, &mut m.record);
                self.pending.push((m, key, novelty));
            }
        }
        Ok(emit)
    }

    /// [`Sink::accept`] for a batch, with the same outcome: ids and keys
    /// first, then every key looked up in one tight pass, then the rest in
    /// order. A key lookup is a trip to memory, and in one pass the trips
    /// overlap, where one per message in turn each waited for its own.
    /// (Keys of other records, looked up in the last pass, can never equal
    /// a message's, so the changed order of lookups changes no answer.)
    pub fn accept_batch(&mut self, mut items: Vec<Parsed>) -> Result<()> {
        let takes_messages = self.takes_messages();
        let mut keys: Vec<Option<u128>> = Vec::with_capacity(items.len());
        for item in &mut items {
            keys.push(match item {
                Parsed::Record(Record::Message(m)) if takes_messages => {
                    Some(self.identify(&mut m.record))
                }
                _ => None,
            });
        }
        let novelties: Vec<Option<(u128, Novelty)>> = keys
            .into_iter()
            .map(|key| key.map(|k| (k, self.seen.check(k))))
            .collect();
        let only_messages = novelties.iter().all(Option::is_some);
        if only_messages
            && self.messages_in_order
            && self.records == RecordKind::Messages
            && self.aggregate.is_none()
        {
            return self.write_in_order(items, &novelties);
        }
        let none = ConversationContext::default();
        for (item, novelty) in items.into_iter().zip(novelties) {
            match (item, novelty) {
                (Parsed::Record(Record::Message(m)), Some((key, novelty))) => {
                    self.place(m, key, novelty, &none)?;
                }
                (item, _) => {
                    self.accept(item, &none)?;
                }
            }
        }
        Ok(())
    }

    /// The usual batch, an in-order platform's messages (each with its
    /// novelty), written as [`Pipeline::place`] would write them one by
    /// one (no context to enrich them with on this path). Each record moves
    /// once, into a list the output takes whole, rather than through every
    /// step of `place`: a message is a few hundred bytes.
    fn write_in_order(
        &mut self,
        items: Vec<Parsed>,
        novelties: &[Option<(u128, Novelty)>],
    ) -> Result<()> {
        // Made in place: a parsed message and a record have one layout.
        let mut records: Vec<Record> = items
            .into_iter()
            .filter_map(|item| match item {
                Parsed::Record(record) => Some(record),
                _ => None,
            })
            .collect();
        let mut emit = Vec::with_capacity(records.len());
        for (record, novelty) in records.iter_mut().zip(novelties) {
            let (Record::Message(m), Some((key, novelty))) = (record, *novelty) else {
                emit.push(false);
                continue;
            };
            emit.push(self.counted(novelty));
            // As in `place`: a repeat within the window takes no place in
            // its chat (but marks where the next one stands).
            if let Some(seq) = self.chats.seq_in_order(&m.record, key, met(novelty)) {
                m.record.seq = seq;
            }
        }
        let mut emit = emit.into_iter();
        records.retain(|_| emit.next().unwrap_or(false));
        for record in &mut records {
            self.settle_attachments(record)?;
        }
        log::progress::records(records.len() as u64);
        self.stats.records += records.len() as u64;
        self.output.write_batch(records)
    }

    /// Elements an earlier run or chunk left to read again; each is to be
    /// parsed anew and what comes of it handed to [`Pipeline::retried`].
    pub fn take_retries(&mut self) -> Vec<Awaiting> {
        std::mem::take(&mut self.retry)
    }

    /// What reading `entry` again gave. Still not there: it keeps waiting
    /// (reported once, when it first was), up to [`AWAIT_AT_MOST`], then
    /// it is given up on and reported again, saying so.
    pub fn retried(&mut self, item: Parsed, entry: &Awaiting) -> Result<bool> {
        match item {
            Parsed::NotYet(r) => {
                if Utc::now() - entry.since > AWAIT_AT_MOST {
                    self.rejects.save(&crate::model::Rejected {
                        raw: r.raw,
                        reason: format!(
                            "{} (waited since {}; given up)",
                            r.reason,
                            entry.since.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                    })?;
                } else if !self.awaiting.iter().any(|a| a.raw == r.raw) {
                    // Still waiting: kept (the first report stands).
                    self.awaiting.push(entry.clone());
                }
                Ok(false)
            }
            other => self.accept(other, &ConversationContext::default()),
        }
    }

    /// Writes whatever is still held and closes the rejects file; returns
    /// the counts and what the next output of the run must remember.
    pub fn finish(mut self) -> Result<(Stats, Memory)> {
        debug_assert!(self.pending.is_empty(), "end_window flushes messages");
        if let Some(mut aggregate) = self.aggregate.take() {
            let rows = aggregate.take_finished(true);
            self.write_conversations(rows)?;
        }
        // What the state keeps must be what the next run accepts.
        for (given_up, why) in crate::state::bound_awaiting(&mut self.awaiting) {
            let reason = format!(
                "{} (waited since {}; {why})",
                given_up.reason,
                given_up.since.format("%Y-%m-%dT%H:%M:%SZ")
            );
            self.rejects.save(&crate::model::Rejected {
                raw: given_up.raw,
                reason,
            })?;
        }
        let mut stats = self.stats;
        stats.rejected = self.rejects.finish()?;
        let memory = Memory {
            seen: self.seen,
            chats: self.chats,
            recent: self.recent,
            remember: self.remember,
            awaiting: self.awaiting,
        };
        Ok((stats, memory))
    }
}

impl Sink for Pipeline<'_> {
    fn accept(&mut self, item: Parsed, context: &ConversationContext) -> Result<bool> {
        match item {
            // The driver retries a broken response; one never gets here.
            Parsed::Unreadable(why) => Err(crate::error::Error::data(why)),
            // The driver maps these with their files; one never gets here.
            Parsed::Wants(w) => Err(crate::error::Error::data(format!(
                "conversation {} reached the output without the file it needs",
                w.conversation.conversation_id
            ))),
            Parsed::Rejected(r) => {
                if !self.seen.insert(&["rejected", &r.raw]) {
                    return Ok(false);
                }
                self.rejects.save(&r)?;
                Ok(true)
            }
            Parsed::NotYet(r) => {
                if !self.seen.insert(&["not yet", &r.raw]) {
                    return Ok(false);
                }
                self.rejects.save(&r)?;
                self.awaiting.push(Awaiting {
                    since: Utc::now(),
                    reason: r.reason,
                    raw: r.raw,
                });
                Ok(true)
            }
            Parsed::Record(Record::Conversation(mut c)) => {
                // Every row says how new it is, so readers (and a file
                // keeping one row per conversation) can take the newest:
                // where the platform has no update time, its last activity
                // stands in.
                let row = &mut c.record;
                let platform_version = millis(row.updated_at);
                row.updated_at = row.updated_at.or(row.ended_at).or(row.started_at);
                // A conversation that changed is a new version: its
                // `updated_at` is part of its identity.
                let version = millis(row.updated_at);
                let id = row.conversation_id.as_str();
                let key = self.seen.key_was(&[id, &version], &[id, &platform_version]);
                // A messages export can be handed a message's conversation
                // too (a tail that pages by it): not a duplicate, just not
                // this export's record.
                if self.records != RecordKind::Conversations {
                    return Ok(false);
                }
                if !self.seen.insert_key(key) {
                    self.stats.duplicates += 1;
                    return Ok(false);
                }
                self.write(Record::Conversation(c))?;
                Ok(true)
            }
            Parsed::Record(Record::Message(mut m)) => {
                if !self.takes_messages() {
                    return Ok(false);
                }
                let key = self.identify(&mut m.record);
                let novelty = self.seen.check(key);
                self.place(m, key, novelty, context)
            }
        }
    }

    fn begin_response(&mut self) {
        self.chats.begin_response();
        self.occurrences.clear();
        self.occurrence_scope = Shared::default();
    }

    fn end_window(&mut self, window: &Window, context: &ConversationContext) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        // Stable: rows without an order key keep the platform's order.
        pending.sort_by(|(a, ..), (b, ..)| {
            let key = |m: &Item<Message>| (m.record.order_key, m.record.sent_at);
            a.record
                .conversation_id
                .cmp(&b.record.conversation_id)
                .then(key(a).cmp(&key(b)))
        });
        // Sorted, the window's messages are numbered as an in-order
        // platform's are, one response of their own.
        self.chats.begin_response();
        for (mut m, key, novelty) in pending {
            let seq = self.chats.seq_sorted(&m.record, key, met(novelty));
            if novelty == Novelty::New {
                m.record.seq = seq.unwrap_or_default();
                self.write(Record::Message(m))?;
            }
        }
        self.join_details(context);
        if let Some(mut aggregate) = self.aggregate.take() {
            let rows = aggregate.take_finished(false);
            self.aggregate = Some(aggregate);
            self.write_conversations(rows)?;
        }
        if self.remember {
            self.recent
                .push_back((window.to, self.seen.current.iter().collect()));
        }
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t <= window.to - self.keep_for)
        {
            self.recent.pop_front();
        }
        self.seen.rotate();
        // A chat's details reach its messages in later windows too.
        for c in context.by_id.values() {
            self.chats.remember_details(c);
        }
        self.chats.end_window(window.to);
        Ok(())
    }
}

/// Fills a message's missing context from its conversation.
fn enrich(m: &mut Message, c: &Conversation) {
    fill(&mut m.agent_name, &c.agent_name);
    fill(&mut m.agent_id, &c.agent_id);
    fill(&mut m.customer_id, &c.customer_id);
    fill(&mut m.customer_name, &c.customer_name);
    fill(&mut m.customer_phone, &c.customer_phone);
    fill(&mut m.channel, &c.channel);
    match m.sender {
        Sender::Customer => {
            fill(&mut m.sender_name, &c.customer_name);
            fill(&mut m.recipient_name, &c.agent_name);
        }
        Sender::Agent => {
            fill(&mut m.sender_name, &c.agent_name);
            fill(&mut m.recipient_name, &c.customer_name);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::seen::digest128;
    use super::*;
    use crate::model::sip_digest128;

    #[test]
    fn seen_covers_two_windows() {
        let mut seen = Seen::default();
        assert!(seen.insert(&["a", "1"]));
        assert!(!seen.insert(&["a", "1"]));
        assert!(
            seen.insert(&["a1", ""]),
            "parts are not concatenated blindly"
        );
        seen.rotate();
        assert!(!seen.insert(&["a", "1"]), "previous window remembered");
        seen.rotate();
        seen.rotate();
        assert!(seen.insert(&["a", "1"]), "forgotten after two windows");
        seen.carried.insert(digest128(&["b"]));
        assert!(!seen.insert(&["b"]), "carried from a previous run");
        assert!(seen.current.contains(&digest128(&["b"])), "and handed on");
        seen.legacy.insert(sip_digest128(&["c", "2"]));
        assert!(!seen.insert(&["c", "2"]), "carried by a version-1 state");
        assert!(seen.insert(&["c", "3"]));
        assert!(
            seen.current.contains(&digest128(&["c", "2"])),
            "handed on in the new digest"
        );
    }

    #[test]
    fn keys_are_stable_sha256() {
        // Pinned: a state written today must mean the same after any
        // toolchain upgrade.
        assert_eq!(
            format!("{:032x}", digest128(&["c0001", "2024-03-01T00:00:00Z"])),
            format!("{:032x}", {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                h.update(5u64.to_le_bytes());
                h.update(b"c0001");
                h.update(20u64.to_le_bytes());
                h.update(b"2024-03-01T00:00:00Z");
                u128::from_be_bytes(h.finalize()[..16].try_into().unwrap())
            })
        );
        assert_ne!(digest128(&["ab", "c"]), digest128(&["a", "bc"]));
    }

    fn msg(conv: &str, at: &str) -> Message {
        Message {
            conversation_id: conv.into(),
            sent_at: Some(
                DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            agent_name: Some("Ana".into()),
            ..Default::default()
        }
    }

    /// What a pipeline for messages in order writes from `batches`, fed
    /// one record at a time or a batch at a time: the file, the rejects
    /// file and the counts.
    fn pipeline_output(batches: Vec<Vec<Parsed>>, batched: bool) -> (String, String, u64, u64) {
        use crate::output::{Format, Output, Render};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let render = Render::for_tests("wolkvox");
        let mut output = Output::create(
            Some(&path),
            Format::Jsonl,
            RecordKind::Messages,
            render,
            None,
        )
        .unwrap();
        let shape = Shape {
            records: RecordKind::Messages,
            messages_in_order: true,
            aggregate: false,
            keep_for: Duration::hours(1),
            joined: false,
        };
        let rejects = RejectLog::new("s", Some(&path));
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, Memory::default());
        let none = ConversationContext::default();
        for batch in batches {
            // An empty batch stands for the end of a window.
            if batch.is_empty() {
                let window = Window::new(Utc::now() - Duration::days(1), Utc::now());
                pipeline.end_window(&window, &none).unwrap();
                continue;
            }
            pipeline.begin_response();
            if batched {
                pipeline.accept_batch(batch).unwrap();
            } else {
                for item in batch {
                    pipeline.accept(item, &none).unwrap();
                }
            }
        }
        let (stats, _) = pipeline.finish().unwrap();
        output.commit().unwrap();
        // Without the time each was written.
        let rejected = std::fs::read_to_string(dir.path().join("m.jsonl.rejects.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut r: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).unwrap();
                r.remove("rejected_at");
                serde_json::Value::Object(r).to_string() + "\n"
            })
            .collect();
        (
            std::fs::read_to_string(&path).unwrap(),
            rejected,
            stats.records,
            stats.duplicates,
        )
    }

    #[test]
    fn a_batch_is_accepted_exactly_as_its_records_one_by_one() {
        let message = |conv: &str, at: &str, text: &str, position: i64| {
            let mut m = msg(conv, at);
            m.text = Some(text.into());
            m.order_key = Some(position);
            Parsed::Record(Record::Message(Item {
                record: m,
                raw: None,
            }))
        };
        let unordered = |conv: &str, at: &str, text: &str| {
            let mut m = message(conv, at, text, 0);
            if let Parsed::Record(Record::Message(m)) = &mut m {
                m.record.order_key = None;
            }
            m
        };
        let rejected = |raw: &str| Parsed::rejected(raw.as_bytes(), "no date");
        let hi = || message("c1", "2024-03-01T10:00:00Z", "hola", 0);
        let batches = || {
            vec![
                vec![
                    hi(),
                    // The same message twice in one second: two ids.
                    message("c1", "2024-03-01T10:00:01Z", "ok", 1),
                    message("c1", "2024-03-01T10:00:01Z", "ok", 2),
                    rejected("{\"x\":1}"),
                    rejected("{\"x\":1}"),
                ],
                vec![
                    message("c2", "2024-03-01T11:00:00Z", "buenas", 0),
                    hi(),
                    message("c2", "2024-03-01T11:00:00Z", "buenas", 0),
                    rejected("{\"x\":2}"),
                    unordered("c5", "2024-03-01T11:30:00Z", "p"),
                ],
                vec![],
                // Messages only: the batch an in-order platform usually
                // hands over, written as one.
                vec![
                    message("c3", "2024-03-01T12:00:00Z", "a", 0),
                    unordered("c4", "2024-03-01T12:30:00Z", "x"),
                    message("c3", "2024-03-01T12:00:00Z", "a", 0),
                    hi(),
                    unordered("c4", "2024-03-01T12:31:00Z", "y"),
                    message("c3", "2024-03-01T12:00:05Z", "b", 1),
                    // Written in the window before, it places the next one.
                    unordered("c5", "2024-03-01T11:30:00Z", "p"),
                    unordered("c5", "2024-03-01T11:31:00Z", "q"),
                ],
            ]
        };
        let one_by_one = pipeline_output(batches(), false);
        // hola, ok, ok again, buenas, p, a, x, y, b and q; hola (twice),
        // buenas, a and p repeated.
        assert_eq!((one_by_one.2, one_by_one.3), (10, 5), "{one_by_one:?}");
        let seq_of = |text: &str| {
            one_by_one
                .0
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|v| v["text"] == text)
                .map(|v| v["seq"].clone())
        };
        assert_eq!((seq_of("x"), seq_of("y")), (Some(0.into()), Some(1.into())));
        assert_eq!(seq_of("b"), Some(1.into()));
        assert_eq!(seq_of("p"), Some(0.into()));
        assert_eq!(
            seq_of("q"),
            Some(1.into()),
            "p, then q: not p counted twice"
        );
        assert_eq!(one_by_one.1.lines().count(), 2, "{one_by_one:?}");
        assert_eq!(pipeline_output(batches(), true), one_by_one);
    }

    #[test]
    fn aggregates_span_windows_and_flush_when_quiet() {
        let mut a = Aggregator::default();
        a.add(&msg("c1", "2024-03-01T10:00:00Z"), (None, None));
        let mut with_photo = msg("c2", "2024-03-01T11:00:00Z");
        with_photo.attachments = vec![crate::model::Attachment::default()].into();
        a.add(&with_photo, (None, None));
        assert!(
            a.take_finished(false).is_empty(),
            "touched in the window that just ended"
        );
        a.add(&msg("c1", "2024-03-02T00:00:30Z"), (None, None));
        let done = a.take_finished(false);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].conversation_id, "c2");
        let done = a.take_finished(true);
        assert_eq!(done.len(), 1);
        let c = &done[0];
        assert_eq!(c.conversation_id, "c1");
        assert_eq!(c.message_count, Some(2));
        assert_eq!(c.attachment_count, Some(0));
        assert_eq!(c.duration_s, Some(14 * 3600 + 30));
        assert_eq!(c.agent_name.as_deref(), Some("Ana"));
        assert_eq!(c.updated_at, c.ended_at, "its newest message");
        // c2 comes back after a quiet window: its new row counts every
        // message and starts at its first.
        a.add(&msg("c2", "2024-03-03T09:00:00Z"), (None, None));
        let back = a.take_finished(true);
        assert_eq!(back[0].message_count, Some(2));
        assert_eq!(back[0].attachment_count, Some(1), "c2's first message's");
        assert_eq!(back[0].started_at, "2024-03-01T11:00:00Z".parse().ok());
        assert_eq!(back[0].duration_s, Some(46 * 3600));
        // A chat an earlier run began (its message is the 5th): how many
        // attachments its first four carried is not known.
        a.add(&msg("c3", "2024-03-03T10:00:00Z"), (Some(4), None));
        let continued = a.take_finished(true);
        assert_eq!(continued[0].message_count, Some(5));
        assert_eq!(continued[0].attachment_count, None);
    }
}
