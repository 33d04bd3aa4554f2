//! The shared record schema: what every source is normalized into.
//!
//! The column lists below are the single definition of the output's shape
//! (the README's "Records"): the CSV header, the JSONL key order and the JSON
//! Schema of `chatdump schema` all come from them, so a writer cannot drift
//! from another.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Which record type an export produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Conversations,
    Messages,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Conversations => "conversations",
            RecordKind::Messages => "messages",
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            RecordKind::Conversations => CONVERSATION_COLUMNS,
            RecordKind::Messages => MESSAGE_COLUMNS,
        }
    }
}

/// What a column holds: the JSON Schema's types and a typed output's
/// (Parquet) columns follow from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ColumnType {
    Text,
    Integer,
    Time,
    /// A JSON value of its own (an array): raw in JSON Lines, its text in
    /// CSV and Parquet.
    Json,
}

/// (column, type, nullable, pii, description)
pub type Column = (
    &'static str,
    ColumnType,
    bool,
    Option<&'static str>,
    &'static str,
);

/// Every column, once: its type, nullability, personal data and meaning.
pub const COLUMNS: &[Column] = &[
    ("source", ColumnType::Text, false, None, "The configured source name."),
    ("platform", ColumnType::Text, false, None, "The source kind (its `kind` in the configuration)."),
    ("conversation_id", ColumnType::Text, false, None, "The platform's id of the conversation (chat, conn_id)."),
    ("channel", ColumnType::Text, true, None, "Lowercase channel: whatsapp, facebook, instagram, web, livechat, zalo, sms, app, ..."),
    ("status", ColumnType::Text, true, None, "The conversation's state as the platform reports it (answered, missed, finished, active, ...)."),
    ("started_at", ColumnType::Time, true, None, "When the conversation started."),
    ("ended_at", ColumnType::Time, true, None, "When it ended, if it has."),
    ("updated_at", ColumnType::Time, true, None, "When the platform last changed it (the version of the row)."),
    ("duration_s", ColumnType::Integer, true, None, "Conversation length in whole seconds."),
    ("wait_s", ColumnType::Integer, true, None, "Time the customer waited for an agent, in whole seconds."),
    ("agent_id", ColumnType::Text, true, None, "The platform's id of the agent."),
    ("agent_name", ColumnType::Text, true, Some("agent"), "The agent's name."),
    ("agent_email", ColumnType::Text, true, Some("agent"), "The agent's e-mail address."),
    ("customer_id", ColumnType::Text, true, Some("customer"), "The platform's id of the customer (contact, end user)."),
    ("customer_name", ColumnType::Text, true, Some("customer"), "The customer's name."),
    ("customer_phone", ColumnType::Text, true, Some("customer"), "The customer's phone number."),
    ("customer_email", ColumnType::Text, true, Some("customer"), "The customer's e-mail address."),
    ("queue", ColumnType::Text, true, None, "Queue, group or menu path that handled the conversation."),
    ("message_count", ColumnType::Integer, true, None, "Messages in the conversation (as far as known)."),
    ("attachment_count", ColumnType::Integer, true, None, "Photos, videos and files the conversation's records reference (as far as known)."),
    ("rating", ColumnType::Integer, true, None, "The customer's rating, if any."),
    ("sentiment", ColumnType::Text, true, None, "Sentiment the platform recognised."),
    ("disposition_code", ColumnType::Text, true, None, "The code the agent classified the conversation with (Wolkvox `cod_act`)."),
    ("disposition", ColumnType::Text, true, None, "That code's description."),
    ("comments", ColumnType::Text, true, Some("customer"), "The agent's free-text notes on the conversation (can hold anything about the customer)."),
    ("message_id", ColumnType::Text, false, None, "The platform's message id, or `d:` and a stable digest when it has none."),
    ("seq", ColumnType::Integer, false, None, "0-based place of the message in its conversation, across windows, capped pieces and (with --state) runs; a rejected message keeps its place. Starts over only for a conversation not seen for a day or forgotten past 200,000 open ones."),
    ("sent_at", ColumnType::Time, true, None, "When the message was sent."),
    ("sender", ColumnType::Text, false, None, "Who wrote it."),
    ("sender_name", ColumnType::Text, true, Some("customer"), "The name of who wrote it (a customer's when the customer wrote)."),
    ("recipient_name", ColumnType::Text, true, Some("customer"), "The name of who it was for (a customer's when an agent or bot wrote)."),
    ("text", ColumnType::Text, true, Some("customer"), "The message as sent: free text (which can hold anything a customer types), or JSON for attachments and templates. With --attachments, an inline `data:` file is stored and replaced by `[attachment: PATH]`; under --redact, by `[attachment: TYPE, N bytes]`."),
    ("attachments", ColumnType::Json, false, Some("customer"), "What the message carries: a JSON array (JSON text in CSV and Parquet) of {sha256, content_type, bytes, name, path, url, status}; `path` is relative to the --attachments folder, `status` is stored, not_fetched, redacted, or why it could not be had."),
];

/// The entry of column `name` (a test keeps every column listed).
pub fn column(name: &str) -> &'static Column {
    COLUMNS
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("column {name} has no schema entry"))
}

pub const CONVERSATION_COLUMNS: &[&str] = &[
    "source",
    "platform",
    "conversation_id",
    "channel",
    "status",
    "started_at",
    "ended_at",
    "updated_at",
    "duration_s",
    "wait_s",
    "agent_id",
    "agent_name",
    "agent_email",
    "customer_id",
    "customer_name",
    "customer_phone",
    "customer_email",
    "queue",
    "message_count",
    "rating",
    "sentiment",
    "disposition_code",
    "disposition",
    "comments",
    "attachment_count",
];

pub const MESSAGE_COLUMNS: &[&str] = &[
    "source",
    "platform",
    "conversation_id",
    "message_id",
    "seq",
    "sent_at",
    "sender",
    "sender_name",
    "recipient_name",
    "channel",
    "text",
    "agent_id",
    "agent_name",
    "customer_id",
    "customer_name",
    "customer_phone",
    "sentiment",
    "attachments",
];

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sender {
    Agent,
    Customer,
    Bot,
    System,
    #[default]
    Unknown,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::Agent => "agent",
            Sender::Customer => "customer",
            Sender::Bot => "bot",
            Sender::System => "system",
            Sender::Unknown => "unknown",
        }
    }
}

/// One conversation (chat session). `source` and `platform` are not stored:
/// they are the same for every record of a run and the writer adds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    pub conversation_id: String,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub duration_s: Option<i64>,
    pub wait_s: Option<i64>,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub agent_email: Option<String>,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_email: Option<String>,
    pub queue: Option<String>,
    pub message_count: Option<i64>,
    /// Attachments its records reference.
    pub attachment_count: Option<i64>,
    pub rating: Option<i64>,
    pub sentiment: Option<String>,
    /// How the agent coded the conversation (Wolkvox `cod_act`).
    pub disposition_code: Option<String>,
    /// The code's description.
    pub disposition: Option<String>,
    /// The agent's free-text notes on the conversation.
    pub comments: Option<String>,
}

/// Text that many records repeat (a chat's id, channel and people, on
/// each of its messages): a clone is a reference count, not an allocation.
pub type Shared = std::sync::Arc<str>;

/// One message. `seq` is assigned by the pipeline, not by providers, because
/// only the pipeline sees the whole conversation as far as the run goes.
/// Fields a chat repeats on every message are [`Shared`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub conversation_id: Shared,
    /// The platform's id; when absent the pipeline derives a stable digest.
    pub message_id: Option<MessageId>,
    pub seq: u32,
    pub sent_at: Option<DateTime<Utc>>,
    pub sender: Sender,
    pub sender_name: Option<Shared>,
    pub recipient_name: Option<Shared>,
    pub channel: Option<Shared>,
    pub text: Option<String>,
    /// What the message carries (photos, videos, files): referenced by the
    /// provider, fetched and stored by the driver under `--attachments`.
    pub attachments: Attachments,
    pub agent_id: Option<Shared>,
    pub agent_name: Option<Shared>,
    pub customer_id: Option<Shared>,
    pub customer_name: Option<Shared>,
    pub customer_phone: Option<Shared>,
    pub sentiment: Option<Shared>,
    /// The platform's own ordering within the conversation, when it has one
    /// (CareSoft `message_index`); used to sort before `seq` is assigned.
    pub order_key: Option<i64>,
}

/// What became of one attachment: `stored`, or why it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachStatus {
    /// Referenced only: the run was not asked to fetch attachments.
    #[default]
    NotFetched,
    Stored,
    /// Under `--redact` nothing is fetched or kept.
    Redacted,
    /// Not found (404), or every place it could be had failed.
    Unavailable,
    /// The link no longer grants access (401, 403, 410: a signed URL past
    /// its time).
    Expired,
    /// The address is not one chatdump may reach (not https, a private or
    /// local address, a redirect to one).
    Refused,
    TooLarge,
    /// The bytes are not what the platform said they are.
    WrongType,
    /// Not had within `attachment_timeout`.
    TimedOut,
    /// An inline `data:` payload that does not decode.
    Unreadable,
}

impl AttachStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachStatus::NotFetched => "not_fetched",
            AttachStatus::Stored => "stored",
            AttachStatus::Redacted => "redacted",
            AttachStatus::Unavailable => "unavailable",
            AttachStatus::Expired => "expired",
            AttachStatus::Refused => "refused",
            AttachStatus::TooLarge => "too_large",
            AttachStatus::WrongType => "wrong_type",
            AttachStatus::TimedOut => "timed_out",
            AttachStatus::Unreadable => "unreadable",
        }
    }

    /// Fetching was asked for and did not give the file: counted, listed
    /// in the rejects file, and the run exits 65.
    pub fn is_missing(self) -> bool {
        !matches!(
            self,
            AttachStatus::NotFetched | AttachStatus::Stored | AttachStatus::Redacted
        )
    }
}

/// Where an attachment's bytes may be had, as the platform's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A link (fetched without the platform's credentials).
    Url(String),
    /// The `n`th inline `data:` payload of the message's text.
    Inline(u32),
    /// A file in the source's own storage (UJET's external storage, beside
    /// the transcripts), by name.
    File(String),
}

/// A photo, video or file a message carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    /// Where to get it, best first.
    pub origins: Vec<Origin>,
    /// The name the platform gives it: shown, never used as a path.
    pub name: Option<String>,
    /// The platform's type, replaced by the type the bytes show once had.
    pub content_type: Option<String>,
    pub bytes: Option<u64>,
    /// Lowercase hex, once had.
    pub sha256: Option<String>,
    /// Where it is kept, relative to the `--attachments` folder.
    pub path: Option<String>,
    pub status: AttachStatus,
    /// Why it could not be had, for the rejects file.
    pub why: Option<String>,
}

impl Attachment {
    /// The link it is fetched from, if it has one.
    pub fn url(&self) -> Option<&str> {
        self.origins.iter().find_map(|o| match o {
            Origin::Url(url) => Some(url.as_str()),
            _ => None,
        })
    }
}

/// A message's attachments. Most messages carry none, and a message is
/// moved many times on its way to the writer: none costs one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// A boxed Vec on purpose: one pointer in the message (a boxed slice would
// be two), and the rare message with attachments pays the extra box.
#[allow(clippy::box_collection)]
pub struct Attachments(Option<Box<Vec<Attachment>>>);

impl From<Vec<Attachment>> for Attachments {
    fn from(list: Vec<Attachment>) -> Attachments {
        Attachments((!list.is_empty()).then(|| Box::new(list)))
    }
}

impl FromIterator<Attachment> for Attachments {
    fn from_iter<I: IntoIterator<Item = Attachment>>(items: I) -> Attachments {
        items.into_iter().collect::<Vec<_>>().into()
    }
}

impl std::ops::Deref for Attachments {
    type Target = [Attachment];

    fn deref(&self) -> &[Attachment] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for Attachments {
    fn deref_mut(&mut self) -> &mut [Attachment] {
        match &mut self.0 {
            Some(list) => list.as_mut_slice(),
            None => &mut [],
        }
    }
}

/// `attachments` as the column's JSON array.
pub fn attachments_json(attachments: &[Attachment], out: &mut Vec<u8>) {
    // Most messages carry nothing: no serializer for them.
    if attachments.is_empty() {
        out.extend_from_slice(b"[]");
        return;
    }
    #[derive(serde::Serialize)]
    struct Shown<'a> {
        sha256: Option<&'a str>,
        content_type: Option<&'a str>,
        bytes: Option<u64>,
        name: Option<&'a str>,
        path: Option<&'a str>,
        url: Option<&'a str>,
        status: &'static str,
    }
    let shown: Vec<Shown<'_>> = attachments
        .iter()
        .map(|a| Shown {
            sha256: a.sha256.as_deref(),
            content_type: a.content_type.as_deref(),
            bytes: a.bytes,
            name: a.name.as_deref(),
            path: a.path.as_deref(),
            url: a.url(),
            status: a.status.as_str(),
        })
        .collect();
    serde_json::to_writer(out, &shown).expect("writing to memory");
}

/// Shares equal texts within one platform element: a chat's messages
/// repeat a handful of values (its id, channel, the two people), so each
/// is allocated once per chat rather than once per message.
#[derive(Default)]
pub struct Interner {
    known: Vec<Shared>,
}

impl Interner {
    /// Values remembered; a chat with more distinct ones still works, the
    /// rest are simply not shared.
    const MOST: usize = 32;

    pub fn share(&mut self, text: &str) -> Shared {
        if let Some(known) = self.known.iter().find(|k| ***k == *text) {
            return known.clone();
        }
        let shared = Shared::from(text);
        if self.known.len() < Self::MOST {
            self.known.push(shared.clone());
        }
        shared
    }

    /// [`Interner::share`] of `text` in ASCII lower case, made only when
    /// it is not known yet.
    pub fn share_lowercase(&mut self, text: &str) -> Shared {
        let lower = |k: &Shared| {
            k.len() == text.len()
                && k.bytes()
                    .zip(text.bytes())
                    .all(|(k, t)| k == t.to_ascii_lowercase())
        };
        if let Some(known) = self.known.iter().find(|k| lower(k)) {
            return known.clone();
        }
        self.share(&text.to_ascii_lowercase())
    }

    pub fn share_opt(&mut self, text: Option<&str>) -> Option<Shared> {
        text.map(|t| self.share(t))
    }
}

impl Message {
    /// Stable digest of (conversation_id, sent_at, sender, text, occurrence),
    /// the basis of `message_id` when the platform has none (the README's
    /// "Records"). `occurrence` tells two identical messages in the same second
    /// apart. Kept as [`MessageId::Digest`].
    pub fn digest(&self, occurrence: u32) -> u128 {
        let mut h = Sha256::new();
        h.update(self.conversation_id.as_bytes());
        h.update([0]);
        if let Some(t) = self.sent_at {
            h.update(t.timestamp().to_be_bytes());
        }
        h.update([0]);
        h.update(self.sender.as_str().as_bytes());
        h.update([0]);
        h.update(self.text.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(occurrence.to_be_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(first)
    }
}

/// Two seeded SipHash runs of the standard library's hasher over `parts`:
/// 128 bits, cheap, but stable only within one build of chatdump (the
/// standard library may change it between releases). For keys that never
/// leave the process, and to read the keys of version-1 states, which were
/// made this way.
pub fn sip_digest128(parts: &[&str]) -> u128 {
    use std::hash::{Hash, Hasher};
    let run = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    };
    (u128::from(run(1)) << 64) | u128::from(run(2))
}

/// Hashes 128-bit digests (already uniform) by their low 64 bits: hashing
/// them again with SipHash would only cost time, per record.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here; anything else still spreads.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of 128-bit digests, kept in 16 tables chosen by a digest's top
/// bits. A hash table that grows holds its old and its new array at once;
/// split in sixteen, growing copies a sixteenth of the keys. Each digest is
/// kept to its top 96 bits, 12 bytes instead of 16: a collision among a
/// million keys stays about one chance in 10^16, and a window of a million
/// keys takes about 14 MB instead of 18.
#[derive(Default, Clone)]
pub struct DigestSet {
    shards: [std::collections::HashSet<Key96, std::hash::BuildHasherDefault<DigestHasher>>; 16],
}

/// The top 96 bits of a digest, at an alignment of 4 (so 12 bytes, not
/// the 16 a `u128` or a `(u64, u32)` takes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key96([u32; 3]);

impl Key96 {
    fn of(key: u128) -> Key96 {
        Key96([(key >> 96) as u32, (key >> 64) as u32, (key >> 32) as u32])
    }

    /// The digest with its low 32 bits cleared: what a state saves.
    fn digest(self) -> u128 {
        (u128::from(self.0[0]) << 96)
            | (u128::from(self.0[1]) << 64)
            | (u128::from(self.0[2]) << 32)
    }
}

impl std::hash::Hash for Key96 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already uniform: bits 32..96 as they are (the shard took 124..).
        state.write_u64((u64::from(self.0[1]) << 32) | u64::from(self.0[2]));
    }
}

impl DigestSet {
    fn shard(key: u128) -> usize {
        (key >> 124) as usize
    }

    /// True when `key` was not in the set.
    pub fn insert(&mut self, key: u128) -> bool {
        self.shards[Self::shard(key)].insert(Key96::of(key))
    }

    pub fn contains(&self, key: &u128) -> bool {
        self.shards[Self::shard(*key)].contains(&Key96::of(*key))
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// The keys, as kept (their low 32 bits cleared).
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.shards.iter().flatten().map(|k| k.digest())
    }
}

impl FromIterator<u128> for DigestSet {
    fn from_iter<I: IntoIterator<Item = u128>>(keys: I) -> Self {
        let mut set = DigestSet::default();
        for key in keys {
            set.insert(key);
        }
        set
    }
}

/// A map keyed by 128-bit digests.
pub type DigestMap<V> =
    std::collections::HashMap<u128, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// A message's id: the platform's own, or the digest the pipeline derives
/// when it has none. A digest is kept as its 16 bytes and spelled out only
/// when written: an export of millions of messages then makes no string
/// for each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    Platform(String),
    Digest([u8; 16]),
}

impl MessageId {
    pub fn digest(digest: u128) -> MessageId {
        MessageId::Digest(digest.to_be_bytes())
    }

    /// The id as written: the platform's, or `d:` and 32 lowercase hex
    /// digits.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            MessageId::Platform(id) => std::borrow::Cow::Borrowed(id),
            MessageId::Digest(digest) => {
                std::borrow::Cow::Owned(digest_text(digest).as_str().to_string())
            }
        }
    }
}

impl From<String> for MessageId {
    fn from(id: String) -> MessageId {
        MessageId::Platform(id)
    }
}

/// The text of a digest id, `d:` and 32 lowercase hex digits, made on the
/// stack.
pub struct DigestText([u8; 34]);

impl DigestText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII")
    }
}

pub fn digest_text(digest: &[u8; 16]) -> DigestText {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 34];
    text[..2].copy_from_slice(b"d:");
    for (i, b) in digest.iter().enumerate() {
        text[2 + 2 * i] = HEX[usize::from(b >> 4)];
        text[3 + 2 * i] = HEX[usize::from(b & 15)];
    }
    DigestText(text)
}

/// A normalized record plus, for `--include-raw`, the platform's JSON.
#[derive(Debug, Clone)]
pub struct Item<T> {
    pub record: T,
    pub raw: Option<Box<RawValue>>,
}

/// A record as it travels through the pipeline.
#[derive(Debug, Clone)]
// Messages are most records and stay inline: boxing them too cost an
// allocation each and measured no faster.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    // Boxed: a conversation is twice the size of a message, and every
    // record (most are messages) would be moved at that size.
    Conversation(Box<Item<Conversation>>),
    Message(Item<Message>),
}

impl Record {
    /// The bytes of message text it holds: what batches handed between
    /// threads are bounded by, beside their count.
    pub fn text_len(&self) -> usize {
        match self {
            Record::Message(m) => m.record.text.as_ref().map_or(0, String::len),
            Record::Conversation(_) => 0,
        }
    }
}

/// A record the platform sent that could not be read, kept with its reason so
/// it is never silently dropped.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub raw: String,
    pub reason: String,
}

/// One output cell, borrowed from a record. Writers render cells; the order
/// comes from [`Conversation::cells`] / [`Message::cells`].
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    /// A digest `message_id`, spelled out by the writer.
    Digest(&'a [u8; 16]),
    Int(i64),
    Time(DateTime<Utc>),
    /// A message's attachments, written as a JSON array.
    Attachments(&'a [Attachment]),
}

fn s<T: AsRef<str>>(v: &Option<T>) -> Cell<'_> {
    v.as_ref().map_or(Cell::Null, |v| Cell::Str(v.as_ref()))
}

fn i(v: Option<i64>) -> Cell<'static> {
    v.map_or(Cell::Null, Cell::Int)
}

fn t(v: Option<DateTime<Utc>>) -> Cell<'static> {
    v.map_or(Cell::Null, Cell::Time)
}

impl Conversation {
    /// The cells after `source` and `platform`, in column order.
    pub fn cells(&self) -> [Cell<'_>; 23] {
        [
            Cell::Str(&self.conversation_id),
            s(&self.channel),
            s(&self.status),
            t(self.started_at),
            t(self.ended_at),
            t(self.updated_at),
            i(self.duration_s),
            i(self.wait_s),
            s(&self.agent_id),
            s(&self.agent_name),
            s(&self.agent_email),
            s(&self.customer_id),
            s(&self.customer_name),
            s(&self.customer_phone),
            s(&self.customer_email),
            s(&self.queue),
            i(self.message_count),
            i(self.rating),
            s(&self.sentiment),
            s(&self.disposition_code),
            s(&self.disposition),
            s(&self.comments),
            i(self.attachment_count),
        ]
    }
}

impl Message {
    /// The cells after `source` and `platform`, in column order.
    pub fn cells(&self) -> [Cell<'_>; 16] {
        [
            Cell::Str(&self.conversation_id),
            match &self.message_id {
                None => Cell::Null,
                Some(MessageId::Platform(id)) => Cell::Str(id),
                Some(MessageId::Digest(digest)) => Cell::Digest(digest),
            },
            Cell::Int(i64::from(self.seq)),
            t(self.sent_at),
            Cell::Str(self.sender.as_str()),
            s(&self.sender_name),
            s(&self.recipient_name),
            s(&self.channel),
            s(&self.text),
            s(&self.agent_id),
            s(&self.agent_name),
            s(&self.customer_id),
            s(&self.customer_name),
            s(&self.customer_phone),
            s(&self.sentiment),
            Cell::Attachments(&self.attachments),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_lower_case_is_shared_and_made_once() {
        let mut shared = Interner::default();
        let first = shared.share_lowercase("WhatsApp");
        assert_eq!(&*first, "whatsapp");
        for spelling in ["whatsapp", "WHATSAPP", "WhatsApp"] {
            let again = shared.share_lowercase(spelling);
            assert!(std::sync::Arc::ptr_eq(&first, &again), "{spelling}");
        }
        assert!(std::sync::Arc::ptr_eq(&first, &shared.share("whatsapp")));
        // Only ASCII letters change; other text is compared as it is.
        assert_eq!(&*shared.share_lowercase("ÉXITO Web"), "Éxito web");
        assert_eq!(&*shared.share_lowercase("éxito web"), "éxito web");
        assert_eq!(&*shared.share_lowercase("whatsapp2"), "whatsapp2");
    }

    #[test]
    fn cells_match_the_column_lists() {
        assert_eq!(
            Conversation::default().cells().len() + 2,
            CONVERSATION_COLUMNS.len()
        );
        assert_eq!(Message::default().cells().len() + 2, MESSAGE_COLUMNS.len());
    }

    #[test]
    fn digest_sets_hold_keys_of_every_shard() {
        let keys: Vec<u128> = (0..1000u128)
            .map(|n| n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        let mut set: DigestSet = keys[..500].iter().copied().collect();
        assert!(set.shards.iter().all(|s| !s.is_empty()), "spread");
        assert!(keys[..500].iter().all(|k| set.contains(k)));
        assert!(!keys[500..].iter().any(|k| set.contains(k)));
        assert!(!set.insert(keys[3]), "already there");
        assert!(set.insert(keys[700]));
        assert_eq!(set.iter().count(), 501);
        assert!(DigestSet::default().is_empty() && !set.is_empty());
        // Kept to 96 bits: a state saves them with the low 32 bits cleared,
        // and a full key (a state written before) still matches.
        assert!(set.iter().all(|k| k as u32 == 0));
        assert!(set.contains(&(keys[3] ^ 0xffff_ffff)));
        let saved: DigestSet = set.iter().collect();
        assert!(keys[..500].iter().all(|k| saved.contains(k)));
    }

    #[test]
    fn digest_is_stable_and_counts_occurrences() {
        let m = Message {
            conversation_id: "c1".into(),
            text: Some("hola".into()),
            sender: Sender::Customer,
            ..Default::default()
        };
        assert_eq!(m.digest(0), m.digest(0));
        assert_ne!(m.digest(0), m.digest(1));
        let other = Message {
            text: Some("hola!".into()),
            ..m.clone()
        };
        assert_ne!(m.digest(0), other.digest(0));
        let id = MessageId::digest(m.digest(0));
        assert!(id.text().starts_with("d:"));
        assert_eq!(id.text().len(), 34);
        assert_eq!(
            MessageId::digest(0xab << 120 | 0xf1).text(),
            format!("d:ab{}f1", "0".repeat(28))
        );
        assert_eq!(MessageId::from("zl-1".to_string()).text(), "zl-1");
    }
}
