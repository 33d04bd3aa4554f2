//! Wolkvox conversation report `reports_manager.php?api=chat_2`: every
//! message of the chats in a date range.
//!
//! - `GET {base}/api/v2/reports_manager.php?api=chat_2&date_ini=YYYYmmddHHiiss&date_end=YYYYmmddHHiiss`
//!   (<https://www.wolkvox.com/en/apis-v2-2/2-conversations/>).
//! - No pagination: one response per date range, believed to be truncated
//!   silently at 60,000 records, at most 31 days. The driver slices the
//!   export into `window`s and bisects any window whose response reaches
//!   `record_cap` (see `source::Paging::Capped`).
//! - Both bounds are naive wall-clock times in the operation's zone and both
//!   are inclusive, at second resolution: [from, to) becomes
//!   `date_ini = from`, `date_end = to - 1 s`, so adjacent windows neither
//!   overlap nor leave a second out.
//! - Two shapes: nested (`data[]` per chat with `conversation[]` messages,
//!   the official collection's) and flat (one row per message, with
//!   `feeling`, the web page's). Both are read; ids and everything else may
//!   arrive as strings or numbers.
//! - Which chats a range selects (by start, or by message date) is not
//!   documented, so rows are not filtered by date on our side; the
//!   pipeline's de-duplication removes any repeat between adjacent windows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Client, Text, QUERY_TIME_FORMAT, SHARED_KEYS};
use crate::config::SourceTable;
use crate::error::Result;
use crate::http::Verdict;
use crate::jsonstream::{Envelope, ItemsAt, Lead};
use crate::model::{Interner, Item, Message, Record, RecordKind, Shared};
use crate::source::{ChatSource, Connection, Paging, Parsed, Query, Timing};
use crate::source::{Demo, Platform, SourceKind, Traits};
use crate::window::{format_in_zone, Window, ZoneClock};

mod quick;
use quick::Quick;

pub const KEYS: &[&str] = &["window", "record_cap", "settle", "lookback", "enrich"];
pub static PLATFORM: Platform = Platform {
    name: "wolkvox",
    home: "CO",
    keys: &[SHARED_KEYS, KEYS],
    secrets: &["token"],
    build,
    endpoint: Client::endpoint,
    demo: Demo {
        config: demo::config,
        answer: demo::answer,
        files: demo::FILES,
    },
};

fn build(table: &SourceTable<'_>) -> Result<Box<dyn ChatSource>> {
    Ok(Box::new(Reports::from_config(table)?))
}

const MAX_WINDOW_DAYS: i64 = 31;
const DEFAULT_RECORD_CAP: i64 = 60_000;

pub struct Reports {
    client: Client,
    timing: Timing,
    record_cap: u64,
    /// `enrich = ["chat_1"]`: each window's `chat_1` rows are fetched too
    /// (a second token per window) and joined to its chats by `conn_id`.
    with_chat_1: bool,
    /// `enrich = ["chat_1", "skills"]`: skill names by id, read once a run
    /// (`information.php?api=skills`, one token); `None` until answered.
    skills: Option<Mutex<Option<HashMap<String, String>>>>,
}

/// The `variant` of the skills lookup query.
const SKILLS: u32 = 1;

impl Reports {
    pub fn from_config(table: &SourceTable<'_>) -> Result<Reports> {
        table.check_keys(&PLATFORM.all_keys())?;
        let defaults = Timing {
            window: Duration::days(1),
            settle: Duration::minutes(10),
            // Reports are built from closed chats; one that closes after a
            // run may still land in a range already exported. An hour
            // costs one extra request per run.
            lookback: Duration::hours(1),
        };
        let (with_chat_1, with_skills) = enrichments(table)?;
        Ok(Reports {
            client: Client::from_config(table)?,
            timing: Timing::from_config(table, defaults, Duration::days(MAX_WINDOW_DAYS))?,
            record_cap: table
                .integer("record_cap", 1, 10_000_000)?
                .unwrap_or(DEFAULT_RECORD_CAP) as u64,
            with_chat_1,
            skills: with_skills.then(|| Mutex::new(None)),
        })
    }

    /// What `queue` says for a `chat_1` skill id: its name, when known.
    fn skill_name(&self, id: &str) -> Option<String> {
        let skills = self.skills.as_ref()?.lock().ok()?;
        skills.as_ref()?.get(id).cloned()
    }

    /// Keeps the names of one answer of the skills lookup.
    fn keep_skill(&self, item: &[u8], out: &mut dyn FnMut(Parsed)) {
        #[derive(Deserialize)]
        struct Skill<'a> {
            #[serde(borrow, default)]
            skill_id: Text<'a>,
            #[serde(borrow, default)]
            skill_name: Text<'a>,
        }
        let skill: Skill = match serde_json::from_slice(item) {
            Ok(s) => s,
            Err(e) => return out(Parsed::from_json_error(item, "unreadable skill", &e)),
        };
        let (Some(id), Some(name)) = (skill.skill_id.get(), skill.skill_name.get()) else {
            return;
        };
        if let Some(Ok(mut skills)) = self.skills.as_ref().map(|s| s.lock()) {
            skills
                .get_or_insert_with(HashMap::new)
                .insert(id.trim().to_string(), name.to_string());
        }
    }

    /// The message rows of one `data` element, read from `item`.
    fn messages_of(
        &self,
        mut entry: Entry<'_>,
        item: &[u8],
        want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        let mut clock = ZoneClock::new(self.client.zone);
        let mut shared = Interner::default();
        let chat = ChatFields::of(&entry, &mut shared);
        match entry.conversation.take() {
            Some(Rows(mut rows)) => {
                let raws = want_raw
                    .then(|| serde_json::from_slice::<RawEntry>(item).ok())
                    .flatten()
                    .and_then(|r| r.conversation);
                // Each row is read where it lies: moving it out would copy
                // a few hundred bytes, per message.
                for (n, row) in rows.iter_mut().enumerate() {
                    let raw = raws
                        .as_ref()
                        .and_then(|r| r.get(n))
                        .map(|r| (*r).to_owned());
                    let text = row.message.0.take();
                    match message(row, &chat, text, &mut clock, &mut shared) {
                        Ok(mut record) => {
                            // Its place in the chat: `seq`, even when a
                            // truncated answer or a repeat cut the chat.
                            record.order_key = Some(n as i64);
                            out(Parsed::Record(Record::Message(Item { record, raw })))
                        }
                        Err(reason) => {
                            let shown = raw.as_ref().map_or(item, |r| r.get().as_bytes());
                            out(Parsed::rejected(shown, reason))
                        }
                    }
                }
            }
            None => match message(
                &entry,
                &chat,
                entry.message.0.clone(),
                &mut clock,
                &mut shared,
            ) {
                Ok(record) => {
                    let raw = Parsed::raw_of(item, want_raw);
                    out(Parsed::Record(Record::Message(Item { record, raw })))
                }
                Err(reason) => out(Parsed::rejected(item, reason)),
            },
        }
    }

    /// `chat_2` (messages) or, for the conversation details, `chat_1`.
    fn report_url(&self, window: &Window, stream: RecordKind) -> Url {
        let zone = self.client.zone;
        let last_second = window.to - Duration::seconds(1);
        self.client.url(
            "reports_manager.php",
            &[
                (
                    "api",
                    match stream {
                        RecordKind::Messages => "chat_2",
                        RecordKind::Conversations => "chat_1",
                    }
                    .into(),
                ),
                (
                    "date_ini",
                    format_in_zone(window.from, zone, QUERY_TIME_FORMAT),
                ),
                (
                    "date_end",
                    format_in_zone(last_second.max(window.from), zone, QUERY_TIME_FORMAT),
                ),
            ],
        )
    }
}

/// What `enrich` asks for: the `chat_1` join, and skill names for it.
fn enrichments(table: &SourceTable<'_>) -> Result<(bool, bool)> {
    let (mut with_chat_1, mut with_skills) = (false, false);
    for name in table.string_list("enrich")?.unwrap_or_default() {
        match name.as_str() {
            "chat_1" => with_chat_1 = true,
            "skills" => with_skills = true,
            other => {
                return Err(table.error(
                    "enrich",
                    &format!("names what to join; {other:?} is not one (\"chat_1\", \"skills\")"),
                ))
            }
        }
    }
    if with_skills && !with_chat_1 {
        return Err(table.error(
            "enrich",
            "\"skills\" names the skills of the chat_1 report: add \"chat_1\"",
        ));
    }
    Ok((with_chat_1, with_skills))
}

/// One element of `data`: a chat with its `conversation` (nested shape), or
/// a single message row (flat shape). The same fields serve both. (Most are
/// read by [`quick`]; a new field must be added there too.)
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Entry<'a> {
    #[serde(borrow, default)]
    conn_id: Text<'a>,
    #[serde(borrow, default)]
    agent_name: Text<'a>,
    #[serde(borrow, default)]
    customer_name: Text<'a>,
    #[serde(borrow, default)]
    conversation: Option<Rows<'a>>,
    #[serde(borrow, default)]
    channel: Text<'a>,
    #[serde(borrow, default)]
    from: Text<'a>,
    #[serde(borrow, default)]
    from_name: Text<'a>,
    #[serde(borrow, default)]
    to_name: Text<'a>,
    #[serde(borrow, default)]
    date: Text<'a>,
    #[serde(borrow, default)]
    message: Text<'a>,
    #[serde(borrow, default)]
    customer_id: Text<'a>,
    #[serde(borrow, default)]
    customer_phone: Text<'a>,
    #[serde(borrow, default)]
    feeling: Text<'a>,
}

/// A chat's messages. Read into a list sized for a typical chat at once:
/// growing it one doubling at a time copied every message row several
/// times, per chat.
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Rows<'a>(Vec<Entry<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Rows<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Rows<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of messages")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).clamp(32, 1024));
                while let Some(row) = seq.next_element()? {
                    rows.push(row);
                }
                Ok(Rows(rows))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The same element, keeping each message's JSON for `--include-raw`.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow, default)]
    conversation: Option<Vec<&'a RawValue>>,
}

/// What a chat gives each of its messages, shared once per chat rather
/// than looked up again for every message (a chat has about twenty).
struct ChatFields {
    conversation_id: Option<Shared>,
    channel: Option<Shared>,
    agent_name: Option<Shared>,
    customer_id: Option<Shared>,
    customer_name: Option<Shared>,
    customer_phone: Option<Shared>,
}

impl ChatFields {
    fn of(chat: &Entry<'_>, shared: &mut Interner) -> ChatFields {
        ChatFields {
            conversation_id: shared.share_opt(chat.conn_id.get()),
            channel: channel(&chat.channel, shared),
            agent_name: shared.share_opt(chat.agent_name.get()),
            customer_id: shared.share_opt(chat.customer_id.get()),
            customer_name: shared.share_opt(chat.customer_name.get()),
            customer_phone: shared.share_opt(chat.customer_phone.get()),
        }
    }
}

/// A channel as the records name it: lower case.
fn channel(text: &Text<'_>, shared: &mut Interner) -> Option<Shared> {
    text.get().map(|c| shared.share_lowercase(c))
}

/// Maps one message row; `chat` holds the chat-level fields (those of the
/// row itself in the flat shape), which a row's own value overrides, except
/// the chat's id. `shared` hands out the texts a chat repeats.
fn message(
    row: &Entry<'_>,
    chat: &ChatFields,
    text: Option<Cow<'_, str>>,
    clock: &mut ZoneClock,
    shared: &mut Interner,
) -> Result<Message, String> {
    let conversation_id = match &chat.conversation_id {
        Some(id) => id.clone(),
        None => shared.share(row.conn_id.get().ok_or("conn_id is missing")?),
    };
    let sent_at = match row.date.get() {
        Some(d) => clock.read(d).map_err(|e| format!("date: {e}"))?,
        None => None,
    };
    let own_or_chat =
        |own: &Text<'_>, of_chat: &Option<Shared>, shared: &mut Interner| match own.get() {
            Some(value) => Some(shared.share(value)),
            None => of_chat.clone(),
        };
    Ok(Message {
        conversation_id,
        message_id: None,
        seq: 0,
        sent_at,
        sender: super::sender(row.from.get()),
        sender_name: shared.share_opt(row.from_name.get()),
        recipient_name: shared.share_opt(row.to_name.get()),
        channel: channel(&row.channel, shared).or_else(|| chat.channel.clone()),
        // Kept exactly as sent: HTML links and inline base64 images included.
        // (Text with escapes was already unescaped into a string of its
        // own: it moves, with no second copy.)
        attachments: text
            .as_deref()
            .map(crate::media::in_text)
            .unwrap_or_default(),
        text: text.map(Cow::into_owned),
        agent_id: None,
        agent_name: chat.agent_name.clone(),
        customer_id: own_or_chat(&row.customer_id, &chat.customer_id, shared),
        customer_name: chat.customer_name.clone(),
        customer_phone: own_or_chat(&row.customer_phone, &chat.customer_phone, shared),
        sentiment: shared.share_opt(row.feeling.get()),
        order_key: None,
    })
}

impl ChatSource for Reports {
    fn kind(&self) -> SourceKind {
        SourceKind::of(&PLATFORM)
    }

    fn timezone(&self) -> Tz {
        self.client.zone
    }

    fn connection(&self) -> Connection {
        self.client.connection()
    }

    fn timing(&self) -> Timing {
        self.timing
    }

    fn paging(&self) -> Paging {
        Paging::Capped {
            record_cap: self.record_cap,
            floor: Duration::minutes(1),
        }
    }

    fn lookups(&self) -> Vec<Query> {
        let unanswered = self
            .skills
            .as_ref()
            .is_some_and(|s| s.lock().is_ok_and(|names| names.is_none()));
        if !unanswered {
            return Vec::new();
        }
        let always = Window::new(chrono::DateTime::UNIX_EPOCH, chrono::Utc::now());
        vec![Query {
            window: always,
            stream: RecordKind::Conversations,
            variant: SKILLS,
        }]
    }

    fn page_url(&self, query: &Query, _page: u32) -> Url {
        if query.variant == SKILLS {
            return self
                .client
                .url("information.php", &[("api", "skills".into())]);
        }
        self.report_url(&query.window, query.stream)
    }

    fn verdict(&self, status: u16, body: &[u8]) -> Verdict {
        super::verdict(status, body)
    }

    fn items_at(&self) -> ItemsAt {
        ItemsAt::Key("data")
    }

    fn read_envelope(&self, envelope: &Envelope) -> Result<Option<u64>, Verdict> {
        super::read_envelope(envelope).map(|()| None)
    }

    fn parse_item(&self, query: &Query, item: &[u8], want_raw: bool, out: &mut dyn FnMut(Parsed)) {
        if query.variant == SKILLS {
            return self.keep_skill(item, out);
        }
        if query.stream == RecordKind::Conversations {
            return super::chat1::parse(item, self.client.zone, want_raw, &mut |mut parsed| {
                if let Parsed::Record(Record::Conversation(c)) = &mut parsed {
                    let c = &mut c.record;
                    if let Some(name) = c.queue.as_deref().and_then(|id| self.skill_name(id)) {
                        c.queue = Some(name);
                    }
                }
                out(parsed)
            });
        }
        // One UTF-8 check for the whole element is much cheaper than
        // serde_json's check of every string it meets (`from_slice`).
        // Ids past 64 bits, read as text (the element itself stays the raw).
        let exact = super::super::fields::exact_integers(item);
        let entry: Entry = match std::str::from_utf8(&exact).map(serde_json::from_str) {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return out(Parsed::from_json_error(item, "unreadable chat", &e)),
            // JSON is UTF-8: other bytes mean a garbled response.
            Err(e) => return out(Parsed::Unreadable(format!("not UTF-8: {e}"))),
        };
        self.messages_of(entry, item, want_raw, out);
    }

    fn reads_in_place(&self, query: &Query) -> bool {
        query.variant != SKILLS && query.stream == RecordKind::Messages
    }

    fn parse_leading_item(
        &self,
        query: &Query,
        text: &str,
        want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) -> Lead {
        if !self.reads_in_place(query) {
            return Lead::Declined;
        }
        let mut entry = Entry::default();
        match quick::read_chat(text, &mut entry) {
            Quick::Read(length) => {
                self.messages_of(entry, &text.as_bytes()[..length], want_raw, out);
                return Lead::Read(length);
            }
            Quick::Short => return Lead::Short,
            Quick::GiveUp => {}
        }
        let mut entries = serde_json::Deserializer::from_str(text).into_iter::<Entry>();
        match entries.next() {
            Some(Ok(entry)) => {
                let length = entries.byte_offset();
                self.messages_of(entry, &text.as_bytes()[..length], want_raw, out);
                Lead::Read(length)
            }
            Some(Err(e)) if e.is_eof() => Lead::Short,
            // Read whole, which says what is wrong with it.
            _ => Lead::Declined,
        }
    }

    fn traits(&self) -> Traits {
        Traits {
            messages_in_order: true,
            spends_daily_tokens: true,
            conversations_from_messages: true,
            messages_need_conversations: self.with_chat_1,
            ..Traits::default()
        }
    }

    /// The last minute's report: the cheapest request the API has (and it
    /// still spends one daily token).
    fn check(&self) -> (Query, Url) {
        let now = chrono::Utc::now();
        let query = Query {
            window: Window::new(now - Duration::minutes(1), now),
            stream: RecordKind::Messages,
            variant: 0,
        };
        let url = self.report_url(&query.window, query.stream);
        (query, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Sender;
    use crate::source::testing;
    use std::path::Path;

    fn source(extra: &str) -> Reports {
        let text = format!(
            "[sources.bogota]\nkind = \"wolkvox\"\nserver = \"0012\"\ntoken = \"t\"\n{extra}"
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        Reports::from_config(&config.source("bogota").unwrap()).unwrap()
    }

    fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    fn messages(body: &str, want_raw: bool) -> (Vec<Message>, Vec<String>, Vec<Option<String>>) {
        let query = Query {
            window: Window::new(utc("2024-03-05T05:00:00Z"), utc("2024-03-06T05:00:00Z")),
            stream: RecordKind::Messages,
            variant: 0,
        };
        let page = testing::parse_body(&source(""), &query, body, want_raw);
        assert!(page.envelope.is_ok());
        let (mut msgs, mut rejects, mut raws) = (Vec::new(), Vec::new(), Vec::new());
        for p in page.parsed {
            match p {
                Parsed::Record(Record::Message(m)) => {
                    raws.push(m.raw.map(|r| r.get().to_string()));
                    msgs.push(m.record)
                }
                Parsed::Rejected(r) => rejects.push(r.reason),
                other => panic!("{other:?}"),
            }
        }
        (msgs, rejects, raws)
    }

    fn fixture(name: &str) -> String {
        testing::fixture(&format!("wolkvox/{name}"))
    }

    #[test]
    fn half_open_window_maps_to_inclusive_seconds() {
        let src = source("");
        let url = src.report_url(
            &Window::new(utc("2024-03-05T05:00:00Z"), utc("2024-03-06T05:00:00Z")),
            RecordKind::Messages,
        );
        assert_eq!(
            url.as_str(),
            "https://wv0012.wolkvox.com/api/v2/reports_manager.php?api=chat_2&date_ini=20240305000000&date_end=20240305235959"
        );
    }

    #[test]
    fn nested_shape() {
        let (msgs, rejects, raws) = messages(&fixture("chat_2-nested.json"), true);
        assert!(rejects.is_empty(), "{rejects:?}");
        assert_eq!(msgs.len(), 7);
        let m = &msgs[0];
        assert_eq!(&*m.conversation_id, "55501");
        assert_eq!(m.sender, Sender::Customer);
        assert_eq!(m.sender_name.as_deref(), Some("María José Pérez"));
        assert_eq!(m.recipient_name.as_deref(), Some("chat bot"));
        assert_eq!(m.channel.as_deref(), Some("whatsapp"), "lowercased");
        assert_eq!(m.agent_name.as_deref(), Some("Andrés Gómez"));
        assert_eq!(m.customer_name.as_deref(), Some("María José Pérez"));
        assert_eq!(m.customer_phone.as_deref(), Some("573001234567"));
        assert_eq!(
            m.sent_at,
            Some(utc("2024-03-05T14:22:10Z")),
            "Bogota is UTC-5"
        );
        assert_eq!(msgs[1].sender, Sender::Agent);
        assert!(msgs[1]
            .text
            .as_deref()
            .unwrap()
            .contains("\"Plan Hogar\", con\nfibra"));
        assert!(msgs[2].text.as_deref().unwrap().starts_with("<a href=\""));
        assert!(msgs[3]
            .text
            .as_deref()
            .unwrap()
            .starts_with("data:image/png;base64,"));
        assert_eq!(
            msgs[4].text, msgs[5].text,
            "identical messages in one second stay two"
        );
        assert_eq!(
            &*msgs[6].conversation_id, "55502",
            "numeric conn_id accepted"
        );
        assert!(raws[0].as_deref().unwrap().contains("\"from\""));
    }

    #[test]
    fn flat_shape_with_feeling() {
        let (msgs, rejects, raws) = messages(&fixture("chat_2-flat.json"), false);
        assert_eq!(rejects.len(), 1, "the row with a broken date");
        assert!(rejects[0].contains("date"));
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].sentiment.as_deref(), Some("positive"));
        assert_eq!(msgs[0].channel.as_deref(), Some("facebook"));
        assert_eq!(msgs[1].sender, Sender::Agent);
        assert!(raws.iter().all(Option::is_none), "no raw unless asked");
    }

    #[test]
    fn data_as_a_single_object() {
        let (msgs, _, _) = messages(
            r#"{"code":"200","error":null,"msg":"1 records were found","data":{"conn_id":"9","agent_name":"a","customer_name":"c","conversation":[{"channel":"Web","from":"CUSTOMER","date":"2024-03-05 10:00:00","message":"hola"}]}}"#,
            false,
        );
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].channel.as_deref(), Some("web"));
    }

    #[test]
    fn config_limits() {
        let config = Config::parse(
            "[sources.b]\nkind = \"wolkvox\"\nserver = \"1\"\ntoken = \"t\"\nwindow = \"32d\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert!(Reports::from_config(&config.source("b").unwrap()).is_err());
        let config = Config::parse(
            "[sources.b]\nkind = \"wolkvox\"\nserver = \"a/b\"\ntoken = \"t\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert!(Reports::from_config(&config.source("b").unwrap()).is_err());
        assert_eq!(source("record_cap = 10").record_cap, 10);
    }
}

/// The demo's `chat_2` report: the sample under `fixtures/wolkvox`.
pub mod demo {
    use std::collections::HashMap;

    use crate::source::DemoContext;

    use serde_json::Value;

    /// No files on disk.
    pub const FILES: &[(&str, &[u8])] = &[];

    pub fn config(context: &DemoContext<'_>) -> String {
        let addr = context.addr;
        format!(
            "[sources.demo-wolkvox]\nkind = \"wolkvox\"\nbase_url = \"http://{addr}/wolkvox\"\n\
             token = \"{}\"\nrate_limit = 200\nenrich = [\"chat_1\"]\n",
            context.token
        )
    }

    pub fn answer(path: &str, query: &HashMap<String, String>) -> Option<(u16, String)> {
        (path == "/api/v2/reports_manager.php").then(|| wolkvox_report(query))
    }

    const WOLKVOX_CHATS: &str = include_str!("../../../fixtures/wolkvox/chat_2-nested.json");
    const WOLKVOX_DETAILS: &str = include_str!("../../../fixtures/wolkvox/chat_1.json");

    /// Wolkvox `chat_2`: the chats whose first message falls in
    /// [date_ini, date_end] (both inclusive, naive local time); `chat_1`:
    /// the rows dated in the range, and those without a date that belong
    /// to a chat of the range; 404 when none.
    fn wolkvox_report(query: &HashMap<String, String>) -> (u16, String) {
        let bound = |key: &str| {
            query
                .get(key)
                .and_then(|v| chrono::NaiveDateTime::parse_from_str(v, "%Y%m%d%H%M%S").ok())
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        };
        let (Some(from), Some(to)) = (bound("date_ini"), bound("date_end")) else {
            return (
                400,
                r#"{"code":400,"error":"BAD REQUEST","msg":"SOME PARAMETERS ARE REQUIRED"}"#.into(),
            );
        };
        let within = |date: &str| date >= from.as_str() && date <= to.as_str();
        // Ids come as strings or numbers.
        let id = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let all: Value = serde_json::from_str(WOLKVOX_CHATS).unwrap_or_default();
        let chats: Vec<&Value> = all["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|chat| within(chat["conversation"][0]["date"].as_str().unwrap_or("")))
            .collect();
        let details: Value = serde_json::from_str(WOLKVOX_DETAILS).unwrap_or_default();
        let rows: Vec<&Value> = match query.get("api").map(String::as_str) {
            Some("chat_1") => details["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|row| match row["date"].as_str().unwrap_or("") {
                    "" => chats
                        .iter()
                        .any(|c| id(&c["conn_id"]) == id(&row["conn_id"])),
                    date => within(date),
                })
                .collect(),
            _ => chats,
        };
        if rows.is_empty() {
            return (
                404,
                r#"{"code":404,"error":"NOT FOUND","msg":"0 records were found"}"#.into(),
            );
        }
        let body = serde_json::json!({"code": 200, "error": null, "msg": format!("{} records were found", rows.len()), "data": rows});
        (200, body.to_string())
    }
}
