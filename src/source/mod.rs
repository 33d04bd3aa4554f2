//! The contract between the pipeline and a platform (`ChatSource`, `Sink`
//! and the types they exchange); the one driver that walks windows and pages
//! for every platform is `driver.rs`, the platforms are listed in
//! `registry.rs`.
//!
//! A provider (one module per platform) only knows its platform: how to split
//! a window into queries, the URL of one page, how to read a response's
//! status, and how to map one page's body to records. Everything that loops
//! (windows, pages, retries, concurrency, stop conditions, guards against a
//! platform that ignores its page parameter) lives in the driver, once.
//!
//! Provider methods are plain synchronous functions; the driver owns all the
//! async work. That keeps providers trivially testable on fixture bytes.

pub mod caresoft;
mod driver;
pub mod fields;
pub mod registry;
#[cfg(test)]
mod testkit;
pub mod ujet;
pub mod wolkvox;

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;
use std::collections::HashMap;

pub use self::driver::{check, drive, read_again, Driving, Learned};
use crate::config::{HttpSettings, SourceTable};
use crate::error::Result;
use crate::http::{Auth, Verdict};
use crate::jsonstream::{Envelope, ItemsAt, Lead};
use crate::model::{Conversation, Record, RecordKind, Rejected};
use crate::window::Window;

/// One request series: a window of one record stream, plus whatever else the
/// platform needs to be asked separately (CareSoft: the conversation type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub window: Window,
    pub stream: RecordKind,
    /// Provider-defined sub-query, e.g. a channel code; 0 when unused.
    pub variant: u32,
}

/// How a platform pages through a query's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `page=1,2,...` with a fixed page size and, where given, a total count;
    /// pages after the first may be fetched `concurrency` at a time.
    Numbered { page_size: u32, concurrency: usize },
    /// One streamed response per window, silently truncated at `record_cap`
    /// records: a window that reaches the cap is bisected, down to `floor`.
    Capped { record_cap: u64, floor: Duration },
    /// Sorted by `updated_at` ascending, `per` records a page: the driver
    /// moves the query window's start to the newest `updated_at` seen and
    /// starts again at page 1, paging on only through ties.
    Tail { per: u32 },
    /// One request is the whole answer, whatever the window: the state of
    /// things now (real-time endpoints).
    Snapshot,
}

/// What the driver learned from one response besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// Items in the response, including any skipped or rejected.
    pub items: usize,
    /// The platform's total for the whole query, when it reports one.
    pub total: Option<u64>,
    /// Bytes of the records it held.
    pub bytes: usize,
}

/// One item of a page: a record, or a rejection kept with its raw JSON.
// Rejections are rare; boxing records instead would allocate once per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    Record(Record),
    Rejected(Rejected),
    /// The element is not even valid JSON: the response itself is broken
    /// (cut, garbled), so it is retried whole rather than rejected.
    Unreadable(String),
    /// The element is fine but what it points to is not there yet (a chat
    /// whose transcript the platform has not written): reported like a
    /// rejection, and with `--state` read again by the next run.
    NotYet(Rejected),
    /// The element is a conversation whose records need a file the
    /// platform keeps elsewhere (a UJET chat's transcript): the driver
    /// reads it and hands it to [`ChatSource::parse_with_file`]. It never
    /// reaches a [`Sink`].
    Wants(Box<Wanted>),
}

/// A conversation waiting for its file: what the element itself says (all
/// that paging and de-duplication look at), the names the file may have in
/// the source's [`ChatSource::files`] folder, and the element, mapped
/// again with the file.
#[derive(Debug)]
pub struct Wanted {
    pub conversation: Conversation,
    /// File names in the folder, tried in order: the first found is read.
    /// Empty when the element cannot name a file (the provider says why
    /// when mapped with [`FileFound::Missing`]).
    pub names: Vec<String>,
    pub item: Vec<u8>,
}

/// The folder (local or in a bucket) a source's [`Wanted`] files are read
/// from.
pub struct FilesAt<'a> {
    /// What the files are, for messages ("transcripts").
    pub what: &'static str,
    pub folder: &'a crate::store::Folder,
    /// The largest file read.
    pub limit: usize,
}

/// What the driver found for a [`Wanted`] file.
#[derive(Debug)]
pub enum FileFound {
    /// `name` (one of [`Wanted::names`]) was read: `file` is its place,
    /// for messages.
    Read {
        name: String,
        file: String,
        bytes: Vec<u8>,
    },
    /// None of the names is in the folder (yet): the places looked at.
    Missing { looked_for: Vec<String> },
    /// A file is there but cannot be read as one (not a regular file, a
    /// link out of the folder, over the size limit).
    Bad { file: String, why: String },
}

impl Parsed {
    /// The conversation this item is, if it is one: a record, or one
    /// waiting for its file.
    pub fn conversation(&self) -> Option<&Conversation> {
        match self {
            Parsed::Record(Record::Conversation(c)) => Some(&c.record),
            Parsed::Wants(w) => Some(&w.conversation),
            _ => None,
        }
    }
}

impl Parsed {
    /// Helper for providers: an element `raw` that `serde_json` could not
    /// read into the provider's type. A syntax error (or a cut) breaks the
    /// response; valid JSON of the wrong shape is one rejected record.
    pub fn from_json_error(raw: &[u8], what: &str, e: &serde_json::Error) -> Parsed {
        // serde_json calls some shape mismatches syntax errors ("trailing
        // characters" for an array read as a struct): only JSON that does
        // not parse at all is taken as a broken response.
        let broken = (e.is_syntax() || e.is_eof())
            && (std::str::from_utf8(raw).is_err()
                || serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err());
        if broken {
            Parsed::Unreadable(format!("{what}: {e}"))
        } else {
            Parsed::rejected(raw, format!("{what}: {e}"))
        }
    }

    /// Helper for providers: the element's own JSON for `--include-raw`,
    /// when asked for.
    pub fn raw_of(item: &[u8], want_raw: bool) -> Option<Box<serde_json::value::RawValue>> {
        want_raw
            .then(|| std::str::from_utf8(item).ok())
            .flatten()
            .and_then(|t| serde_json::value::RawValue::from_string(t.to_string()).ok())
    }

    /// Helper for providers: a rejection of the item `raw` for `reason`.
    pub fn rejected(raw: &[u8], reason: impl Into<String>) -> Parsed {
        Parsed::Rejected(Rejected {
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason: reason.into(),
        })
    }
}

/// When a source's data is fetched, shared by every windowed source and
/// read from the same keys (`window`, `settle`, `lookback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The slice length an export window is cut into.
    pub window: Duration,
    /// The lag behind now below which data is not yet complete.
    pub settle: Duration,
    /// How far before the checkpoint an incremental run starts again, to
    /// catch what the platform adds late to windows already exported.
    pub lookback: Duration,
}

impl Timing {
    /// Reads the three keys, each defaulting to `defaults`; `window` may
    /// not exceed `max_window` (the platform's limit).
    pub fn from_config(
        table: &crate::config::SourceTable<'_>,
        defaults: Timing,
        max_window: Duration,
    ) -> Result<Timing> {
        let window = table.duration("window")?.unwrap_or(defaults.window);
        if window > max_window {
            return Err(table.error(
                "window",
                &format!(
                    "must be at most {} (the platform's limit)",
                    crate::window::humanize(max_window)
                ),
            ));
        }
        Ok(Timing {
            window,
            settle: table.duration("settle")?.unwrap_or(defaults.settle),
            lookback: table.duration("lookback")?.unwrap_or(defaults.lookback),
        })
    }
}

/// `base` with `path` (slash-separated, appended to the base's own path,
/// e.g. a tenant prefix) and query `params`.
pub fn endpoint(base: &Url, path: &str, params: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are validated as http(s)")
        .pop_if_empty()
        .extend(path.split('/'));
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url
}

/// Auth and HTTP tuning a provider asks the shared HTTP layer for.
pub struct Connection {
    pub auth: Auth,
    pub settings: HttpSettings,
    pub max_in_flight: usize,
}

/// A platform, as the driver sees it. Every method is synchronous and free
/// of I/O: the driver does the fetching.
/// One platform, as the rest of chatdump sees it: a provider module's
/// `PLATFORM`, listed in [`registry::PLATFORMS`].
pub struct Platform {
    /// The `kind` of its `[sources.NAME]` tables, and its `platform` column.
    pub name: &'static str,
    /// The platform's home country (ISO 3166): whose national phone
    /// numbers its texts hold unless `phone_regions` says otherwise.
    pub home: &'static str,
    /// Its own configuration keys, besides the ones every source accepts.
    pub keys: &'static [&'static [&'static str]],
    /// The secrets it needs, each given as `KEY` or `KEY_env`.
    pub secrets: &'static [&'static str],
    /// Builds the provider from a validated table.
    pub build: fn(&SourceTable<'_>) -> Result<Box<dyn ChatSource>>,
    /// The endpoint `sources` shows, without reading a secret.
    pub endpoint: fn(&SourceTable<'_>) -> String,
    /// The demo: a `[sources.*]` table pointed at the demo server, and the
    /// fake platform answering there (path below the server, query).
    pub demo: Demo,
}

impl Platform {
    /// Every key its tables may hold besides the common ones.
    pub fn all_keys(&self) -> Vec<&'static str> {
        self.keys.iter().flat_map(|k| k.iter().copied()).collect()
    }
}

/// A platform's part of `chatdump demo`.
pub struct Demo {
    /// Its `[sources.demo-NAME]` table, for the demo's context.
    pub config: fn(&DemoContext<'_>) -> String,
    /// Its fake platform.
    pub answer: DemoAnswer,
    /// Files its sample needs on disk (name, bytes), written by the demo
    /// into a folder of its own, [`DemoContext::folder`].
    pub files: &'static [(&'static str, &'static [u8])],
}

impl Demo {
    /// Writes [`Demo::files`] into `folder`, a new folder of the caller's.
    pub fn write_files(&self, folder: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir(folder)?;
        for (file, text) in self.files {
            let mut f = crate::safefs::create_new(&folder.join(file), None)?;
            std::io::Write::write_all(&mut f, text)?;
        }
        Ok(())
    }
}

/// What the demo hands a platform's demo: where its fake answers, the
/// credential to present, and the folder holding its files.
pub struct DemoContext<'a> {
    pub addr: std::net::SocketAddr,
    pub token: &'a str,
    pub folder: &'a std::path::Path,
}

/// A fake platform's answer (status, body) to a path and its query; None
/// for a path it does not serve.
pub type DemoAnswer = fn(&str, &HashMap<String, String>) -> Option<(u16, String)>;

/// A platform, as a `kind` names it (see [`registry::kind`]).
#[derive(Clone, Copy)]
pub struct SourceKind(&'static Platform);

impl SourceKind {
    pub const fn of(platform: &'static Platform) -> Self {
        SourceKind(platform)
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for SourceKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for SourceKind {}

impl std::fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

/// Yes-or-no facts about a platform's answers, which the driver, the
/// pipeline and the export read; a provider states the ones that differ
/// from the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    /// Message rows need the window's conversations to fill their customer
    /// and agent fields (the platform's message rows lack them).
    pub messages_need_conversations: bool,
    /// Conversation rows are built from the messages (the platform has no
    /// conversation listing): the driver fetches messages and the pipeline
    /// aggregates them.
    pub conversations_from_messages: bool,
    /// A response delivers each conversation's messages together and in
    /// order, so `seq` is assigned as they arrive, with nothing held
    /// (otherwise the pipeline holds a window's messages and sorts them).
    /// A message's `order_key`, when set, is its position in what the
    /// response holds of its chat.
    pub messages_in_order: bool,
    /// Every request spends one of the account's daily API tokens (shown
    /// by `--dry-run`).
    pub spends_daily_tokens: bool,
    /// `check`'s URL answers records like a page (read as one), rather
    /// than anything else JSON (only the credentials are checked).
    pub check_answers_records: bool,
}

impl Default for Traits {
    fn default() -> Traits {
        Traits {
            messages_need_conversations: false,
            conversations_from_messages: false,
            messages_in_order: false,
            spends_daily_tokens: false,
            check_answers_records: true,
        }
    }
}

pub trait ChatSource {
    fn kind(&self) -> SourceKind;
    /// The zone of the platform's naive timestamps (and of naive `--from`).
    fn timezone(&self) -> Tz;
    fn connection(&self) -> Connection;
    /// Slice length, settle lag and lookback.
    fn timing(&self) -> Timing;
    /// How long de-duplication keys are kept across runs (default: the
    /// lookback, the part a later run fetches again).
    fn memory_span(&self) -> Duration {
        self.timing().lookback
    }
    /// Whether a request returns the state of things now rather than a time
    /// window's records (windows then only mark when each poll happened).
    fn is_snapshot(&self) -> bool {
        self.paging() == Paging::Snapshot
    }
    fn paging(&self) -> Paging;
    /// Whether each window is one large streamed answer (a capped report)
    /// rather than pages: the pipeline then takes its records in batches,
    /// on a thread of its own.
    fn answers_are_large(&self) -> bool {
        matches!(self.paging(), Paging::Capped { .. })
    }
    /// The queries that together cover `window` for `stream`: one, unless
    /// the platform must be asked several times (CareSoft: per type).
    fn queries(&self, window: Window, stream: RecordKind) -> Vec<Query> {
        vec![Query {
            window,
            stream,
            variant: 0,
        }]
    }
    /// Requests made once, before the first window, whose answers the
    /// provider keeps to name what records only give an id for (Wolkvox:
    /// skill names). Asked again only while not answered.
    fn lookups(&self) -> Vec<Query> {
        Vec::new()
    }
    /// The URL of page `page` (1-based) of `query`.
    fn page_url(&self, query: &Query, page: u32) -> Url;
    /// Reads a non-2xx response (status and small body).
    fn verdict(&self, status: u16, body: &[u8]) -> Verdict;
    /// Where the records sit in a response body.
    fn items_at(&self) -> ItemsAt;
    /// Judges a 2xx response's envelope once its records are read; returns
    /// the platform's total count for the query where it gives one.
    fn read_envelope(&self, envelope: &Envelope) -> Result<Option<u64>, Verdict>;
    /// Maps one record element to records. Items outside the query's window
    /// are skipped (nothing emitted); unreadable ones emitted as
    /// [`Parsed::Rejected`]. `want_raw` asks for the platform JSON.
    fn parse_item(&self, query: &Query, item: &[u8], want_raw: bool, out: &mut dyn FnMut(Parsed));
    /// Whether the records of `query` are read in place
    /// ([`ChatSource::parse_leading_item`]): worth it for answers of
    /// hundreds of megabytes, where finding each record's end before
    /// parsing it costs as much again.
    fn reads_in_place(&self, _query: &Query) -> bool {
        false
    }
    /// Reads the record at the start of `text` like
    /// [`ChatSource::parse_item`], when `text` may run on past its end or
    /// stop inside it: [`Lead::Read`] with its length once read;
    /// [`Lead::Short`] when `text` stops inside it, and
    /// [`Lead::Declined`] when it does not read (it is then handed to
    /// `parse_item` whole, which says why). Nothing reaches `out` unless
    /// the record was read.
    fn parse_leading_item(
        &self,
        _query: &Query,
        _text: &str,
        _want_raw: bool,
        _out: &mut dyn FnMut(Parsed),
    ) -> Lead {
        Lead::Declined
    }
    /// Where the files its elements ask for ([`Parsed::Wants`]) are read
    /// from.
    fn files(&self) -> Option<FilesAt<'_>> {
        None
    }
    /// Maps an element that asked for a file ([`Parsed::Wants`]) again,
    /// with what was found. Like `parse_item`, free of I/O.
    fn parse_with_file(
        &self,
        _query: &Query,
        wanted: Wanted,
        _found: FileFound,
        _want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        out(Parsed::rejected(
            &wanted.item,
            "the platform's mapper asked for a file it cannot read",
        ))
    }
    /// What the platform's answers are like (see [`Traits`]).
    fn traits(&self) -> Traits {
        Traits::default()
    }
    /// Whether the platform can deliver `records` at all; the text says why
    /// not (a usage error).
    fn records_supported(&self, _records: RecordKind) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The query and URL of one cheap authenticated request for `check`.
    fn check(&self) -> (Query, Url);
    /// A public status page `check` also reads (no credentials are sent
    /// there), where the platform has one.
    fn status_url(&self) -> Option<Url> {
        None
    }
}

/// Receives what the driver produces.
pub trait Sink {
    /// A record or rejection. Returns whether it was new (not a duplicate).
    fn accept(&mut self, item: Parsed, context: &ConversationContext) -> Result<bool>;
    /// A new response starts: counters local to one response restart.
    fn begin_response(&mut self);
    /// Every query of `window` is done; `context` holds the conversations
    /// fetched to go with its messages, if any.
    fn end_window(&mut self, window: &Window, context: &ConversationContext) -> Result<()>;
}

/// Conversations of the current window by id, for filling message rows.
#[derive(Default)]
pub struct ConversationContext {
    pub by_id: HashMap<String, Conversation>,
}

/// Counters the driver keeps for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct DriveStats {
    pub windows: usize,
    pub requests: usize,
}

/// What the provider tests share: a body split and mapped the way the
/// driver does it, and the records picked out of the result.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::model::Message;

    /// One response as a provider turns it into records.
    pub struct Page {
        /// The provider's reading of the envelope (the total, or why not).
        pub envelope: std::result::Result<Option<u64>, Verdict>,
        /// Elements of the records array.
        pub items: usize,
        pub parsed: Vec<Parsed>,
    }

    /// Feeds `body` in small pieces, as a network would cut it. A source
    /// that reads records in place is read both ways, which must agree:
    /// whole, and in place with every record offered from its first bytes
    /// on (so most offers come up short first).
    pub fn parse_body<S: ChatSource>(
        source: &S,
        query: &Query,
        body: &str,
        want_raw: bool,
    ) -> Page {
        let whole = read_body(source, query, body, want_raw, false);
        if source.reads_in_place(query) {
            let in_place = read_body(source, query, body, want_raw, true);
            assert_eq!(
                format!("{:?}", (&in_place.parsed, in_place.items)),
                format!("{:?}", (&whole.parsed, whole.items)),
                "read in place"
            );
        }
        whole
    }

    fn read_body<S: ChatSource>(
        source: &S,
        query: &Query,
        body: &str,
        want_raw: bool,
        in_place: bool,
    ) -> Page {
        use crate::jsonstream::{Element, Lead, Scanner};
        let mut parsed = Vec::new();
        let mut scanner = Scanner::new(source.items_at());
        if in_place {
            scanner = scanner.reading_in_place().offering_from(1);
        }
        let mut on_element = |element: Element<'_>| match element {
            Element::Whole(item) => {
                source.parse_item(query, item, want_raw, &mut |p| parsed.push(p));
                Lead::Read(item.len())
            }
            Element::Leading(text) => {
                source.parse_leading_item(query, text, want_raw, &mut |p| parsed.push(p))
            }
        };
        for piece in body.as_bytes().chunks(7) {
            scanner.feed_elements(piece, &mut on_element).unwrap();
        }
        scanner.finish_elements(&mut on_element).unwrap();
        Page {
            envelope: source.read_envelope(&scanner.envelope),
            items: scanner.items,
            parsed,
        }
    }

    pub fn conversations(parsed: &[Parsed]) -> Vec<&Conversation> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Record(Record::Conversation(c)) => Some(&c.record),
                _ => None,
            })
            .collect()
    }

    pub fn messages(parsed: &[Parsed]) -> Vec<&Message> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Record(Record::Message(m)) => Some(&m.record),
                _ => None,
            })
            .collect()
    }

    /// `fixtures/{path}`.
    pub fn fixture(path: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(path),
        )
        .unwrap()
    }

    /// Arbitrary JSON shaped like the platforms' records: their field names
    /// with values of any type, nested a little.
    fn record_like() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        const KEYS: &[&str] = &[
            "conversation_id",
            "id",
            "conn_id",
            "start_time",
            "end_time",
            "created_at",
            "updated_at",
            "ended_at",
            "date",
            "status",
            "chat_status",
            "channel",
            "from",
            "from_name",
            "to_name",
            "message",
            "msg",
            "content",
            "conversation",
            "active_chats",
            "agent_id",
            "agent_name",
            "agent",
            "end_user",
            "customer_id",
            "customer_name",
            "customer_phone",
            "cus_name",
            "cus_phone",
            "cus_email",
            "wait_time",
            "chat_duration",
            "duration",
            "queue_wait_time",
            "menu_path",
            "rating",
            "service_id",
            "type",
            "sender_visitor_name",
            "sender_agent_name",
            "conversation_type",
            "waitTime",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "(20[0-9]{2}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}Z?|[A-Za-z0-9 :.+-]{0,12}|)"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..10).prop_map(
                    |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    /// Every provider, as a configuration builds it.
    fn every_provider() -> crate::config::Config {
        crate::config::Config::parse(
            "[sources.c]\nkind = \"caresoft\"\ndomain = \"a\"\ntoken = \"t\"\n\
             [sources.w]\nkind = \"wolkvox\"\nserver = \"0012\"\ntoken = \"t\"\n\
             [sources.l]\nkind = \"wolkvox-live\"\nserver = \"0012\"\ntoken = \"t\"\n\
             [sources.u]\nkind = \"ujet\"\nsubdomain = \"a\"\nusername = \"u\"\npassword = \"p\"\n\
             [sources.t]\nkind = \"ujet\"\nsubdomain = \"a\"\nusername = \"u\"\npassword = \"p\"\n\
             transcripts = \"/nonexistent/chatdump-transcripts\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    /// Valid JSON is never an unreadable response: the mapper makes
    /// records or rejections of it, and never panics.
    fn map_any(source: &dyn ChatSource, item: &[u8]) -> std::result::Result<(), String> {
        let window = Window::new(
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
            chrono::DateTime::<chrono::Utc>::MAX_UTC,
        );
        for stream in [RecordKind::Conversations, RecordKind::Messages] {
            let query = Query {
                window,
                stream,
                variant: 0,
            };
            for want_raw in [false, true] {
                let mut bad = None;
                source.parse_item(&query, item, want_raw, &mut |p| {
                    if let Parsed::Unreadable(why) = p {
                        bad = Some(why);
                    }
                });
                if let Some(why) = bad {
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(384))]

        /// Every provider the registry lists (as its demo configures it,
        /// UJET with its transcripts folder), and UJET without transcripts.
        #[test]
        fn every_providers_mapper_takes_any_json_value(value in record_like()) {
            let item = serde_json::to_vec(&value).unwrap();
            let (_scratch, providers) = every_registered_provider();
            for (name, source) in &providers {
                proptest::prop_assert_eq!(map_any(&**source, &item), Ok(()), "{}", name);
            }
            let config = every_provider();
            let ujet = ujet::Ujet::from_config(&config.source("u").unwrap()).unwrap();
            proptest::prop_assert_eq!(map_any(&ujet, &item), Ok(()));
        }
    }

    /// A provider and its platform's name.
    type Named = (&'static str, Box<dyn ChatSource>);

    /// Every platform of the registry, built from its demo's configuration
    /// (a new platform is covered by being listed), with the folder its
    /// demo files are in.
    fn every_registered_provider() -> (tempfile::TempDir, Vec<Named>) {
        let scratch = tempfile::tempdir().unwrap();
        let providers: Vec<Named> = registry::PLATFORMS
            .iter()
            .map(|platform| {
                let folder = scratch.path().join(platform.name);
                platform.demo.write_files(&folder).unwrap();
                let context = DemoContext {
                    addr: "127.0.0.1:9".parse().unwrap(),
                    token: "t",
                    folder: &folder,
                };
                let text = (platform.demo.config)(&context);
                let config =
                    crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
                let name = format!("demo-{}", platform.name);
                let table = config.source(&name).unwrap();
                (platform.name, (platform.build)(&table).unwrap())
            })
            .collect();
        assert_eq!(providers.len(), registry::PLATFORMS.len());
        (scratch, providers)
    }

    #[test]
    fn a_syntax_error_in_a_record_is_unreadable_not_rejected() {
        let config = every_provider();
        let caresoft = caresoft::Caresoft::from_config(&config.source("c").unwrap()).unwrap();
        let reports = wolkvox::reports::Reports::from_config(&config.source("w").unwrap()).unwrap();
        for item in [
            &br#"{"conversation_id":"a",}"#[..],
            br#"{"conn_id":"1""#,
            b"\xff\xfe",
        ] {
            assert!(map_any(&caresoft, item).is_err() || map_any(&reports, item).is_err());
            assert!(
                map_any(&reports, item).is_err(),
                "{:?}",
                String::from_utf8_lossy(item)
            );
        }
    }
}
