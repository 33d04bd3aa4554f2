//! CareSoft (Vietnam): chat history of live chat, Facebook/Instagram and Zalo.
//!
//! - Endpoints: `GET {base}/api/v1/chats` (conversations) and
//!   `GET {base}/api/v1/chats/messages` (messages), where `{base}` is
//!   `https://api.caresoft.vn/{domain}` (backup host `api2.caresoft.vn`).
//!   Docs: <https://docs.caresoft.vn/danh-muc/restful-api-cua-caresoft/chat>
//! - Auth: `Authorization: Bearer <token>`, one token per domain.
//! - Paging: `page` (1-based) and `count` (at most 500); every page carries
//!   `numFound`, which can shift while paging.
//! - Limits: 15 requests/s and 54,000/hour; HTTP 429 `Too Many Attempts.`;
//!   over 20 consecutive 429s lock the domain out for 15 minutes with a 404
//!   whose body says so. Messages need `start_time_since` and at most 30 days.
//! - Quirks: without `conversation_type` only live chat is returned, so every
//!   configured type is asked separately; `code` is "OK", "ok" or "errors";
//!   times are naive Asia/Ho_Chi_Minh wall clock even though the query format
//!   ends in a literal `Z`; `content` may be a JSON object; durations such as
//!   `waitTime` are `HH:MM:SS` strings.
//!
//! Window membership: both endpoints filter on the conversation's
//! `start_time`. We send [from, to] and keep rows whose `start_time` lies in
//! [from, to), so a boundary row lands in exactly one window whichever way
//! the platform reads its upper bound.

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;
use serde_json::{Map, Value};

use crate::config::SourceTable;
use crate::error::{Kind, Result};
use crate::http::{default_verdict, Auth, Verdict};
use crate::jsonstream::{Envelope, ItemsAt};
use crate::model::{Conversation, Item, Message, MessageId, Record, RecordKind, Sender};
use crate::source::{fields, ChatSource, Connection, Paging, Parsed, Query, Timing};
use crate::source::{Demo, Platform, SourceKind, Traits};
use crate::window::{format_in_zone, Window};

mod attachments;
use attachments::attachments_in;

pub const KEYS: &[&str] = &[
    "domain",
    "token",
    "token_env",
    "timezone",
    "conversation_types",
    "page_size",
    "window",
    "settle",
    "lookback",
    "concurrency",
    "backup_url",
    "status_url",
];

/// The platform's public status page (no authentication, no rate limit).
const STATUS_URL: &str = "https://status.caresoft.vn/api/v1/heartbeat";

pub static PLATFORM: Platform = Platform {
    name: "caresoft",
    home: "VN",
    keys: &[KEYS],
    secrets: &["token"],
    build,
    endpoint: Caresoft::endpoint,
    demo: Demo {
        config: demo::config,
        answer: demo::answer,
        files: demo::FILES,
    },
};

fn build(table: &SourceTable<'_>) -> Result<Box<dyn ChatSource>> {
    Ok(Box::new(Caresoft::from_config(table)?))
}

const QUERY_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
const MAX_PAGE_SIZE: i64 = 500;
/// The messages endpoint refuses longer windows.
const MAX_WINDOW_DAYS: i64 = 30;

/// The conversation types CareSoft knows, by its numeric code.
const CONVERSATION_TYPES: &[(&str, u32, &str)] = &[
    ("livechat", 0, "livechat"),
    ("facebook", 1, "facebook"),
    ("zalo", 3, "zalo"),
];

pub struct Caresoft {
    base: Url,
    connection_auth: Auth,
    http: crate::config::HttpSettings,
    zone: Tz,
    conversation_types: Vec<u32>,
    page_size: u32,
    timing: Timing,
    concurrency: usize,
    status: Option<Url>,
}

impl Caresoft {
    pub fn from_config(table: &SourceTable<'_>) -> Result<Caresoft> {
        table.check_keys(&PLATFORM.all_keys())?;
        let base = table.base_url(|| {
            let domain = table.required_string("domain")?;
            Ok(format!(
                "https://api.caresoft.vn/{}",
                domain.trim_matches('/')
            ))
        })?;
        let conversation_types = match table.string_list("conversation_types")? {
            None => CONVERSATION_TYPES.iter().map(|t| t.1).collect(),
            Some(names) if names.is_empty() => {
                return Err(table.error("conversation_types", "must name at least one type"))
            }
            Some(names) => names
                .iter()
                .map(|n| {
                    CONVERSATION_TYPES
                        .iter()
                        .find(|t| t.0.eq_ignore_ascii_case(n))
                        .map(|t| t.1)
                        .ok_or_else(|| {
                            table.error(
                                "conversation_types",
                                &format!("has unknown type {n:?}: use livechat, facebook or zalo"),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let defaults = Timing {
            window: Duration::days(1),
            settle: Duration::minutes(10),
            // A chat and its messages belong to the window it started in;
            // messages keep arriving while it lasts. Two hours covers
            // nearly every live chat; raise it for long social threads.
            lookback: Duration::hours(2),
        };
        let timing = Timing::from_config(table, defaults, Duration::days(MAX_WINDOW_DAYS))?;
        // The documented backup of api.caresoft.vn, for the same tenant,
        // unless `base_url` points elsewhere (a proxy, a test) and no
        // `backup_url` says where its backup is.
        let backup = match (table.url("backup_url")?, table.string("base_url")?) {
            (Some(url), _) => Some(url),
            (None, None) => {
                let mut backup = base.clone();
                backup
                    .set_host(Some("api2.caresoft.vn"))
                    .map_err(|e| table.error("domain", &format!("gives no backup URL: {e}")))?;
                Some(backup)
            }
            (None, Some(_)) => None,
        };
        let mut http = table.http(10.0)?;
        http.backup = backup.map(|b| (base.clone(), b));
        // Likewise the public status page: read for the platform's own
        // hosts, or where `status_url` says.
        let status = match (table.url("status_url")?, table.string("base_url")?) {
            (Some(url), _) => Some(url),
            (None, None) => Some(Url::parse(STATUS_URL).expect("a valid constant")),
            (None, Some(_)) => None,
        };
        Ok(Caresoft {
            base,
            status,
            connection_auth: Auth::Bearer(table.secret("token")?),
            http,
            zone: table.timezone(chrono_tz::Asia::Ho_Chi_Minh)?,
            conversation_types,
            page_size: table
                .integer("page_size", 1, MAX_PAGE_SIZE)?
                .unwrap_or(MAX_PAGE_SIZE) as u32,
            timing,
            concurrency: table.integer("concurrency", 1, 8)?.unwrap_or(4) as usize,
        })
    }

    /// The endpoint URL for display (`chatdump sources`) without reading secrets.
    pub fn endpoint(table: &SourceTable<'_>) -> String {
        match (table.string("base_url"), table.string("domain")) {
            (Ok(Some(u)), _) => u,
            (_, Ok(Some(d))) => format!("https://api.caresoft.vn/{d}"),
            _ => "(domain missing)".into(),
        }
    }

    fn url(&self, path: &str, params: &[(&str, String)]) -> Url {
        crate::source::endpoint(&self.base, path, params)
    }

    fn channel(variant: u32) -> &'static str {
        CONVERSATION_TYPES
            .iter()
            .find(|t| t.1 == variant)
            .map_or("livechat", |t| t.2)
    }

    fn conversation(
        &self,
        query: &Query,
        row: &Map<String, Value>,
    ) -> Result<Option<Conversation>, String> {
        let id = fields::text(row.get("conversation_id")).ok_or("conversation_id is missing")?;
        let started_at = fields::local_time(row.get("start_time"), "start_time", self.zone)?;
        if started_at.is_some_and(|t| !query.window.contains(t)) {
            return Ok(None);
        }
        Ok(Some(Conversation {
            conversation_id: id,
            channel: Some(Self::channel(query.variant).to_string()),
            status: fields::text(row.get("chat_status")).map(|s| status_name(&s)),
            started_at,
            ended_at: fields::local_time(row.get("end_time"), "end_time", self.zone)?,
            updated_at: None,
            duration_s: fields::seconds(row.get("chat_duration"), "chat_duration")?,
            wait_s: fields::seconds(row.get("waitTime"), "waitTime")?,
            agent_id: fields::text(row.get("agent_id")),
            agent_name: fields::text(row.get("agent_name")),
            agent_email: fields::text(row.get("agent_email")),
            customer_id: fields::text(row.get("customer_id")),
            customer_name: fields::text(row.get("cus_name")),
            customer_phone: fields::text(row.get("cus_phone")),
            customer_email: fields::text(row.get("cus_email")),
            queue: fields::text(row.get("group_name")),
            message_count: None,
            attachment_count: None,
            rating: None,
            sentiment: None,
            // Dispositions are Wolkvox's (chat_1); the others do not report them.
            disposition_code: None,
            disposition: None,
            comments: None,
        }))
    }

    fn message(&self, query: &Query, row: &Map<String, Value>) -> Result<Option<Message>, String> {
        let id = fields::text(row.get("conversation_id")).ok_or("conversation_id is missing")?;
        let conversation_start =
            fields::local_time(row.get("start_time"), "start_time", self.zone)?;
        if conversation_start.is_some_and(|t| !query.window.contains(t)) {
            return Ok(None);
        }
        let sent_at = fields::local_time(row.get("time"), "time", self.zone)?;
        let agent_id = fields::positive_id(row.get("sender_agent_id"));
        let visitor_id = fields::positive_id(row.get("sender_visitor_id"));
        let sender = if fields::integer(row.get("type"), "type")? == Some(3) {
            Sender::System
        } else if agent_id.is_some() {
            Sender::Agent
        } else if visitor_id.is_some() {
            Sender::Customer
        } else {
            Sender::Unknown
        };
        let sender_name = match sender {
            Sender::Agent => fields::text(row.get("sender_agent_name")),
            Sender::Customer => fields::text(row.get("sender_visitor_name")),
            _ => None,
        };
        let attachments = if fields::integer(row.get("type"), "type")? == Some(2) {
            attachments_in(row.get("content"))
        } else {
            Vec::new()
        };
        let content = match row.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Attachments (type 2) and templates (type 4) are JSON objects:
            // kept whole, serialized, so nothing is lost.
            Some(other) => Some(other.to_string()),
        };
        Ok(Some(Message {
            conversation_id: id.into(),
            message_id: fields::text(row.get("msg_id"))
                .or_else(|| fields::text(row.get("id")))
                .map(MessageId::from),
            seq: 0,
            sent_at,
            sender,
            sender_name: sender_name.map(Into::into),
            recipient_name: None,
            channel: Some(Self::channel(query.variant).into()),
            text: content,
            attachments: attachments.into(),
            agent_id: agent_id
                .or_else(|| fields::positive_id(row.get("last_agent_user_id")))
                .map(Into::into),
            agent_name: None,
            customer_id: visitor_id
                .or_else(|| fields::positive_id(row.get("requester_id")))
                .map(Into::into),
            customer_name: None,
            customer_phone: None,
            sentiment: None,
            order_key: fields::integer(row.get("message_index"), "message_index")?,
        }))
    }
}

impl ChatSource for Caresoft {
    fn kind(&self) -> SourceKind {
        SourceKind::of(&PLATFORM)
    }

    fn timezone(&self) -> Tz {
        self.zone
    }

    fn status_url(&self) -> Option<Url> {
        self.status.clone()
    }

    fn connection(&self) -> Connection {
        Connection {
            auth: self.connection_auth.clone(),
            settings: self.http.clone(),
            max_in_flight: self.concurrency,
        }
    }

    fn timing(&self) -> Timing {
        self.timing
    }

    fn paging(&self) -> Paging {
        Paging::Numbered {
            page_size: self.page_size,
            concurrency: self.concurrency,
        }
    }

    fn queries(&self, window: Window, stream: RecordKind) -> Vec<Query> {
        self.conversation_types
            .iter()
            .map(|&variant| Query {
                window,
                stream,
                variant,
            })
            .collect()
    }

    fn page_url(&self, query: &Query, page: u32) -> Url {
        let path = match query.stream {
            RecordKind::Conversations => "api/v1/chats",
            RecordKind::Messages => "api/v1/chats/messages",
        };
        self.url(
            path,
            &[
                (
                    "start_time_since",
                    format_in_zone(query.window.from, self.zone, QUERY_TIME_FORMAT),
                ),
                (
                    "start_time_to",
                    format_in_zone(query.window.to, self.zone, QUERY_TIME_FORMAT),
                ),
                ("conversation_type", query.variant.to_string()),
                ("page", page.to_string()),
                ("count", self.page_size.to_string()),
            ],
        )
    }

    fn verdict(&self, status: u16, body: &[u8]) -> Verdict {
        verdict(status, body)
    }

    fn items_at(&self) -> ItemsAt {
        ItemsAt::Key("chats")
    }

    fn read_envelope(&self, envelope: &Envelope) -> Result<Option<u64>, Verdict> {
        if let Some(code) = envelope.text("code") {
            if !code.eq_ignore_ascii_case("ok") {
                let message = envelope
                    .text("message")
                    .unwrap_or_else(|| "(no message)".into());
                return Err(Verdict::Fail(
                    Kind::Data,
                    format!("CareSoft answered code {code:?}: {message}"),
                    None,
                ));
            }
        }
        Ok(envelope
            .text("numFound")
            .and_then(|n| n.trim().parse().ok()))
    }

    fn parse_item(&self, query: &Query, item: &[u8], want_raw: bool, out: &mut dyn FnMut(Parsed)) {
        let row = match fields::object(item) {
            Ok(row) => row,
            Err(e) => return out(Parsed::from_json_error(item, "not a JSON object", &e)),
        };
        let raw = || Parsed::raw_of(item, want_raw);
        let mapped = match query.stream {
            RecordKind::Conversations => self.conversation(query, &row).map(|c| {
                c.map(|record| Record::Conversation(Box::new(Item { record, raw: raw() })))
            }),
            RecordKind::Messages => self
                .message(query, &row)
                .map(|m| m.map(|record| Record::Message(Item { record, raw: raw() }))),
        };
        match mapped {
            Ok(Some(record)) => out(Parsed::Record(record)),
            Ok(None) => {}
            Err(reason) => out(Parsed::rejected(item, reason)),
        }
    }

    fn traits(&self) -> Traits {
        Traits {
            messages_need_conversations: true,
            ..Traits::default()
        }
    }

    /// The last hour's live chats, one row: cheap and authenticated.
    fn check(&self) -> (Query, Url) {
        let now = chrono::Utc::now();
        let query = Query {
            window: Window::new(now - Duration::hours(1), now),
            stream: RecordKind::Conversations,
            variant: 0,
        };
        let url = self.url(
            "api/v1/chats",
            &[
                (
                    "start_time_since",
                    format_in_zone(query.window.from, self.zone, QUERY_TIME_FORMAT),
                ),
                ("page", "1".into()),
                ("count", "1".into()),
            ],
        );
        (query, url)
    }
}

/// Reads CareSoft's statuses, including the ones that do not mean what HTTP says.
fn verdict(status: u16, body: &[u8]) -> Verdict {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if message.contains("Domain incorrect too many times") {
        let retry_at = chrono::Utc::now() + Duration::minutes(15);
        return Verdict::Fail(
            Kind::Unavailable,
            format!("CareSoft locked this domain out after too many requests ({:?})", message.trim()),
            Some(format!(
                "wait 15 minutes (until about {} UTC) before the next run, and lower `rate_limit` for this source",
                retry_at.format("%H:%M")
            )),
        );
    }
    match status {
        401 | 403 => Verdict::Fail(
            Kind::Auth,
            format!("HTTP {status}: CareSoft rejected the token{}", suffix(&message)),
            Some("check the API token (CareSoft Admin > Api > Api token) in the configured environment variable".into()),
        ),
        // Any other 404 is a wrong domain or path, not an empty result.
        404 => Verdict::Fail(
            Kind::Config,
            format!("HTTP 404: CareSoft does not know this path{}", suffix(&message)),
            Some("check `domain` (the tenant slug of your CareSoft login URL) or `base_url`".into()),
        ),
        _ => default_verdict(status),
    }
}

fn suffix(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(" ({:?})", message.trim())
    }
}

fn status_name(raw: &str) -> String {
    match raw {
        "LBL_CHAT_STATUS_MEET" => "answered".into(),
        "LBL_CHAT_STATUS_MISS" => "missed".into(),
        other => other
            .trim_start_matches("LBL_CHAT_STATUS_")
            .to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::testing;
    use std::path::Path;

    fn source(extra: &str) -> Caresoft {
        let text = format!(
            "[sources.hanoi]\nkind = \"caresoft\"\ndomain = \"acme\"\ntoken = \"secret-token\"\n{extra}"
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        Caresoft::from_config(&config.source("hanoi").unwrap()).unwrap()
    }

    fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    fn march() -> Window {
        Window::new(utc("2024-02-29T17:00:00Z"), utc("2024-03-07T17:00:00Z"))
    }

    #[test]
    fn the_documented_hosts_bring_their_backup_and_status_page() {
        let build = |extra: &str| {
            let text = format!(
                "[sources.h]\nkind = \"caresoft\"\ndomain = \"acme\"\ntoken = \"t\"\n{extra}"
            );
            let config =
                crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
            Caresoft::from_config(&config.source("h").unwrap()).unwrap()
        };
        let cs = build("");
        let (primary, backup) = cs.connection().settings.backup.unwrap();
        assert_eq!(primary.as_str(), "https://api.caresoft.vn/acme");
        assert_eq!(backup.as_str(), "https://api2.caresoft.vn/acme");
        assert_eq!(cs.status_url().unwrap().as_str(), STATUS_URL);
        // A proxy in front: no guessing where its backup or status page is.
        let proxied = build("base_url = \"https://proxy.example/acme\"\n");
        assert!(proxied.connection().settings.backup.is_none());
        assert!(proxied.status_url().is_none());
        let e = Caresoft::from_config(
            &crate::config::Config::parse(
                "[sources.h]\nkind = \"caresoft\"\ndomain = \"a\"\ntoken = \"t\"\nbackup_url = \"http://example.com/a\"\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap()
            .source("h")
            .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 78, "http:// to a remote host: {e}");
    }

    /// Splits `body` like the driver does and maps every element.
    fn parse(
        cs: &Caresoft,
        stream: RecordKind,
        variant: u32,
        body: &str,
    ) -> (Result<Option<u64>, Verdict>, usize, Vec<Parsed>) {
        let query = Query {
            window: march(),
            stream,
            variant,
        };
        let page = testing::parse_body(cs, &query, body, true);
        (page.envelope, page.items, page.parsed)
    }

    fn fixture(name: &str) -> String {
        testing::fixture(&format!("caresoft/{name}"))
    }

    #[test]
    fn urls_carry_local_wall_clock_with_literal_z() {
        let cs = source("");
        let q = Query {
            window: march(),
            stream: RecordKind::Messages,
            variant: 3,
        };
        assert_eq!(
            cs.page_url(&q, 2).as_str(),
            "https://api.caresoft.vn/acme/api/v1/chats/messages?start_time_since=2024-03-01T00%3A00%3A00Z\
             &start_time_to=2024-03-08T00%3A00%3A00Z&conversation_type=3&page=2&count=500"
        );
    }

    #[test]
    fn config_validation() {
        let config = Config::parse(
            "[sources.h]\nkind = \"caresoft\"\ndomain = \"a\"\ntoken = \"t\"\nconversation_types = [\"sms\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let e = Caresoft::from_config(&config.source("h").unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("sms"), "{e}");
        let config = Config::parse(
            "[sources.h]\nkind = \"caresoft\"\ndomain = \"a\"\ntoken = \"t\"\nwindow = \"31d\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(Caresoft::from_config(&config.source("h").unwrap()).is_err());
        assert_eq!(
            source("conversation_types = [\"Zalo\"]").conversation_types,
            vec![3]
        );
    }

    #[test]
    fn maps_conversations_from_the_fixture() {
        let cs = source("");
        let (total, count, items) = parse(
            &cs,
            RecordKind::Conversations,
            0,
            &fixture("chats-livechat.json"),
        );
        assert_eq!(total.unwrap(), Some(3));
        assert_eq!(count, 3);
        let convs = testing::conversations(&items);
        assert_eq!(convs.len(), 3);
        let c = convs[0];
        assert_eq!(c.conversation_id, "20240301094830-AIVGTIVI-503996");
        assert_eq!(c.channel.as_deref(), Some("livechat"));
        assert_eq!(c.status.as_deref(), Some("answered"));
        assert_eq!(c.started_at, Some(utc("2024-03-01T02:48:30Z")));
        assert_eq!(c.ended_at, Some(utc("2024-03-01T02:52:10Z")));
        assert_eq!(c.duration_s, Some(220));
        assert_eq!(c.wait_s, Some(8));
        assert_eq!(c.customer_name.as_deref(), Some("Nguyễn Thị Hoa"));
        assert_eq!(c.customer_email, None, "empty strings are missing values");
        assert_eq!(c.customer_id.as_deref(), Some("165644057"));
        assert_eq!(c.queue.as_deref(), Some("CSKH"));
        assert_eq!(convs[1].status.as_deref(), Some("missed"));
        assert_eq!(convs[1].agent_name, None);
    }

    #[test]
    fn rows_outside_the_window_are_skipped_and_bad_rows_rejected() {
        let cs = source("");
        let body = r#"{"code":"ok","numFound":3,"chats":[
            {"conversation_id":"in","start_time":"2024-03-07 23:59:59"},
            {"conversation_id":"edge","start_time":"2024-03-08 00:00:00"},
            {"conversation_id":"bad","start_time":"yesterday"},
            [1,2]]}"#;
        let (_, count, items) = parse(&cs, RecordKind::Conversations, 0, body);
        assert_eq!(count, 4);
        let ids: Vec<String> = items
            .iter()
            .map(|p| match p {
                Parsed::Record(Record::Conversation(c)) => c.record.conversation_id.clone(),
                Parsed::Rejected(r) => format!("rejected: {}", r.reason),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], "in");
        assert!(ids[1].contains("start_time"), "{ids:?}");
        assert!(ids[2].starts_with("rejected: not a JSON object"), "{ids:?}");
    }

    #[test]
    fn maps_messages_senders_and_json_content() {
        let cs = source("");
        let (_, _, items) = parse(&cs, RecordKind::Messages, 3, &fixture("messages-zalo.json"));
        let msgs = testing::messages(&items);
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].sender, Sender::System);
        assert_eq!(msgs[1].sender, Sender::Customer);
        assert_eq!(msgs[1].sender_name.as_deref(), Some("Trần Văn Nam"));
        assert_eq!(
            msgs[1].text.as_deref(),
            Some("Cho mình hỏi đơn hàng #A-1203 giao chưa ạ?")
        );
        assert_eq!(msgs[2].sender, Sender::Agent);
        assert_eq!(msgs[2].agent_id.as_deref(), Some("124734559"));
        assert_eq!(msgs[1].order_key, Some(2));
        assert_eq!(msgs[3].channel.as_deref(), Some("zalo"));
        let attachment: Value = serde_json::from_str(msgs[3].text.as_deref().unwrap()).unwrap();
        assert_eq!(attachment["type"], "image");
        assert_eq!(msgs[1].sent_at, Some(utc("2024-03-02T06:55:19Z")));
        assert_eq!(
            msgs[1].message_id,
            Some(MessageId::Platform("zl-8812".into()))
        );
    }

    #[test]
    fn error_codes_and_raw_json() {
        let cs = source("");
        let (total, _, _) = parse(
            &cs,
            RecordKind::Conversations,
            0,
            r#"{"code":"errors","message":"bad"}"#,
        );
        assert!(matches!(total, Err(Verdict::Fail(Kind::Data, ..))));
        let (total, count, _) = parse(
            &cs,
            RecordKind::Conversations,
            0,
            r#"{"code":"OK","numFound":0,"chats":[]}"#,
        );
        assert_eq!((total.unwrap(), count), (Some(0), 0));
        let (_, _, items) = parse(
            &cs,
            RecordKind::Conversations,
            0,
            &fixture("chats-zalo.json"),
        );
        let Parsed::Record(Record::Conversation(c)) = &items[0] else {
            panic!("{items:?}")
        };
        let raw: Value = serde_json::from_str(c.raw.as_ref().unwrap().get()).unwrap();
        assert_eq!(
            raw["service_id"], 62062484,
            "the platform JSON is kept whole"
        );
    }

    #[test]
    fn verdicts_know_the_lockout() {
        let lockout = br#"{"code": "errors", "message": "Domain incorrect too many times , retry after 15 minutes "}"#;
        assert!(matches!(
            verdict(404, lockout),
            Verdict::Fail(Kind::Unavailable, ..)
        ));
        assert!(matches!(
            verdict(404, b"{}"),
            Verdict::Fail(Kind::Config, ..)
        ));
        assert!(matches!(
            verdict(429, br#"{"code":"errors","message":"Too Many Attempts."}"#),
            Verdict::Throttled(_)
        ));
        assert!(matches!(verdict(401, b""), Verdict::Fail(Kind::Auth, ..)));
        assert!(matches!(verdict(200, b"{}"), Verdict::Ok));
    }

    #[test]
    fn durations() {
        let row: Map<String, Value> =
            serde_json::from_str(r#"{"a":"01:02:03","b":"00:08","c":39,"d":"","e":"x:y"}"#)
                .unwrap();
        assert_eq!(fields::seconds(row.get("a"), "a").unwrap(), Some(3723));
        assert_eq!(fields::seconds(row.get("b"), "b").unwrap(), Some(8));
        assert_eq!(fields::seconds(row.get("c"), "c").unwrap(), Some(39));
        assert_eq!(fields::seconds(row.get("d"), "d").unwrap(), None);
        assert!(fields::seconds(row.get("e"), "e").is_err());
    }
}

/// The demo's CareSoft: the samples under `fixtures/caresoft`, answered
/// the way the platform's listing answers.
pub mod demo {
    use std::collections::HashMap;

    use crate::source::DemoContext;

    use serde_json::Value;

    /// No files on disk.
    pub const FILES: &[(&str, &[u8])] = &[];

    pub fn config(context: &DemoContext<'_>) -> String {
        let addr = context.addr;
        format!(
            "[sources.demo-caresoft]\nkind = \"caresoft\"\nbase_url = \"http://{addr}/caresoft/demo\"\n\
             token = \"{}\"\nconcurrency = 2\npage_size = 2\nrate_limit = 200\n",
            context.token
        )
    }

    pub fn answer(path: &str, query: &HashMap<String, String>) -> Option<(u16, String)> {
        match path {
            "/demo/api/v1/chats" => Some(caresoft_page(&CARESOFT_CHATS, query)),
            "/demo/api/v1/chats/messages" => Some(caresoft_page(&CARESOFT_MESSAGES, query)),
            _ => None,
        }
    }

    const CARESOFT_CHATS: [(u32, &str); 3] = [
        (
            0,
            include_str!("../../../fixtures/caresoft/chats-livechat.json"),
        ),
        (
            1,
            include_str!("../../../fixtures/caresoft/chats-facebook.json"),
        ),
        (
            3,
            include_str!("../../../fixtures/caresoft/chats-zalo.json"),
        ),
    ];

    const CARESOFT_MESSAGES: [(u32, &str); 3] = [
        (
            0,
            include_str!("../../../fixtures/caresoft/messages-livechat.json"),
        ),
        (
            1,
            include_str!("../../../fixtures/caresoft/messages-facebook.json"),
        ),
        (
            3,
            include_str!("../../../fixtures/caresoft/messages-zalo.json"),
        ),
    ];

    /// CareSoft's listing behaviour: one conversation type (live chat when not
    /// given), filtered on `start_time` (both bounds inclusive), paged.
    fn caresoft_page(files: &[(u32, &str)], query: &HashMap<String, String>) -> (u16, String) {
        let kind: u32 = query
            .get("conversation_type")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: usize = query
            .get("page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let count: usize = query
            .get("count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(50)
            .clamp(1, 500);
        // The query's `...T..:..:..Z` is local wall clock, like the rows.
        let bound = |key: &str| {
            query
                .get(key)
                .map(|v| v.replace('T', " ").trim_end_matches('Z').to_string())
        };
        let (since, to) = (bound("start_time_since"), bound("start_time_to"));
        let rows: Vec<Value> = files
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, text)| {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("chats").and_then(Value::as_array).cloned())
                    .unwrap_or_default()
            })
            .filter(|row| {
                let start = row.get("start_time").and_then(Value::as_str).unwrap_or("");
                since.as_deref().is_none_or(|s| start >= s)
                    && to.as_deref().is_none_or(|t| start <= t)
            })
            .collect();
        let page_rows: Vec<&Value> = rows.iter().skip((page - 1) * count).take(count).collect();
        let body = serde_json::json!({"code": "ok", "numFound": rows.len(), "chats": page_rows});
        (200, body.to_string())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn fake_caresoft_filters_and_pages() {
            let mut q: HashMap<String, String> = HashMap::new();
            q.insert("count".into(), "2".into());
            let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["numFound"], 3, "live chat when no type is given");
            assert_eq!(v["chats"].as_array().unwrap().len(), 2);
            q.insert("page".into(), "2".into());
            let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["chats"].as_array().unwrap().len(), 1);
            q.insert("start_time_since".into(), "2024-03-03T00:00:00Z".into());
            q.insert("page".into(), "1".into());
            let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["numFound"], 2);
            q.insert("conversation_type".into(), "3".into());
            let (_, body) = caresoft_page(&CARESOFT_CHATS, &q);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["numFound"], 0, "the zalo sample starts on March 2");
        }
    }
}
