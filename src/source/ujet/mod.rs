//! UJET Manager API, also served as Google's Contact Center AI Platform
//! Manager API: chat metadata (the API serves no message text).
//!
//! - `GET https://{subdomain}.{domain}/manager/api/v1/chats`, HTTP Basic
//!   auth: company key + secret (UJET) or subdomain + API token (CCAI
//!   Platform). Docs: <https://cloud.google.com/contact-center/ccai-platform/docs/manager-api-chat>.
//! - The body is a bare JSON array. Paging metadata lives only in headers
//!   (`Link`, `Total`, `Per-Page`), may be missing or wrong, and `per` is
//!   capped at 100 silently. The vendor warns that paging over chats is
//!   unreliable because the set changes meanwhile, so we tail instead
//!   (`source::Paging::Tail`): `updated_at[from]` with
//!   `sort_column=updated_at&sort_direction=ASC`, continuing from the newest
//!   `updated_at` seen, inclusive; the pipeline de-duplicates on
//!   (`id`, `updated_at`), so a chat that changes mid-export arrives again in
//!   its new version.
//! - Rate limit: 10 requests/s per customer per the vendor, about 1/s seen
//!   for `/chats`: we pace at 1/s unless configured.
//! - Types drift between versions: `rating` is a number or a string,
//!   `agent_info` an object, a string or null, unknown keys appear. Fields
//!   are read leniently; a chat without a readable `id` or `updated_at` is
//!   rejected with its raw JSON.
//! - Timestamps are UTC with milliseconds (`2019-07-17T07:27:14.000Z`).
//! - Message text is not in the API: the platform writes each finished
//!   chat's transcript to the customer's external storage. With
//!   `transcripts = "<folder>"`, the chats the tail yields are joined to
//!   their transcripts there (`transcript.rs`).

pub mod transcript;

use chrono::{Duration, Utc};
use chrono_tz::Tz;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::SourceTable;
use crate::error::Result;
use crate::http::{default_verdict, Auth, Verdict};
use crate::jsonstream::{Envelope, ItemsAt};
use crate::model::{Attachment, Conversation, Item, Message, Origin, Record, RecordKind, Rejected};
use crate::source::{
    fields, ChatSource, Connection, FileFound, FilesAt, Paging, Parsed, Query, Timing, Wanted,
};
use crate::source::{Demo, Platform, SourceKind, Traits};
use crate::window::Window;

pub const KEYS: &[&str] = &[
    "subdomain",
    "domain",
    "username",
    "username_env",
    "password",
    "password_env",
    "page_size",
    "transcripts",
    "transcript_names",
    "window",
    "settle",
    "lookback",
];

pub static PLATFORM: Platform = Platform {
    name: "ujet",
    home: "US",
    keys: &[KEYS],
    secrets: &["username", "password"],
    build,
    endpoint: Ujet::endpoint,
    demo: Demo {
        config: demo::config,
        answer: demo::answer,
        files: demo::FILES,
    },
};

fn build(table: &SourceTable<'_>) -> Result<Box<dyn ChatSource>> {
    Ok(Box::new(Ujet::from_config(table)?))
}

/// The API silently serves at most this many records per page.
const MAX_PER: i64 = 100;
const QUERY_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub struct Ujet {
    base: Url,
    auth: Auth,
    http: crate::config::HttpSettings,
    per: u32,
    timing: Timing,
    transcripts: Option<transcript::Transcripts>,
}

/// Statuses of a chat still under way: its transcript is written after it
/// ends, and the tail meets the chat again when it does.
const UNDER_WAY: &[&str] = &[
    "queued",
    "assigned",
    "va_assigned",
    "in_progress",
    "active",
    "switching",
    "selecting",
    "scheduled",
    "connecting",
];

impl Ujet {
    pub fn from_config(table: &SourceTable<'_>) -> Result<Ujet> {
        table.check_keys(&PLATFORM.all_keys())?;
        let base = table.base_url(|| {
            let sub = table.required_string("subdomain")?;
            let domain = table.string("domain")?.unwrap_or_else(|| "ujet.co".into());
            Ok(format!("https://{sub}.{domain}"))
        })?;
        let http = table.http(1.0)?;
        let transcripts = transcripts(table, http.limits.record)?;
        Ok(Ujet {
            base,
            auth: Auth::Basic {
                user: table.secret("username")?,
                password: table.secret("password")?,
            },
            http,
            per: table.integer("page_size", 1, MAX_PER)?.unwrap_or(MAX_PER) as u32,
            timing: Timing::from_config(
                table,
                Timing {
                    window: Duration::days(1),
                    // The platform writes a transcript after the chat ends
                    // (session metadata 15 minutes after): a chat is
                    // exported with its messages once that has passed.
                    settle: if transcripts.is_some() {
                        Duration::minutes(20)
                    } else {
                        Duration::minutes(2)
                    },
                    // Tailing on updated_at catches every later change by
                    // itself; the lookback only covers clock skew.
                    lookback: Duration::minutes(10),
                },
                Duration::days(3650),
            )?,
            transcripts,
        })
    }

    /// The messages of a chat from its transcript (after the chat itself,
    /// which the tail pages by), or why there are none yet.
    fn messages(
        &self,
        wanted: Wanted,
        found: FileFound,
        want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        let Wanted {
            conversation: chat,
            item,
            ..
        } = wanted;
        let id = chat.conversation_id.clone();
        let under_way = chat
            .status
            .as_deref()
            .is_some_and(|s| UNDER_WAY.contains(&s));
        let base = Message {
            conversation_id: id.as_str().into(),
            channel: chat.channel.as_deref().map(Into::into),
            agent_id: chat.agent_id.as_deref().map(Into::into),
            agent_name: chat.agent_name.as_deref().map(Into::into),
            customer_id: chat.customer_id.as_deref().map(Into::into),
            ..Default::default()
        };
        out(Parsed::Record(Record::Conversation(Box::new(Item {
            record: chat,
            raw: None,
        }))));
        match transcript_lines(found) {
            Ok(lines) => {
                let listed = ChatMedia::of(&item);
                for (n, line) in lines.into_iter().enumerate() {
                    let record = Message {
                        sent_at: line.at,
                        sender: line.sender,
                        sender_name: line.name.as_deref().map(Into::into),
                        attachments: line
                            .media
                            .map(|media| vec![listed.attachment(&id, media)].into())
                            .unwrap_or_default(),
                        text: Some(line.text),
                        order_key: Some(n as i64),
                        ..base.clone()
                    };
                    let raw = if want_raw { line.raw } else { None };
                    out(Parsed::Record(Record::Message(Item { record, raw })));
                }
            }
            // Under way: no transcript yet, and the chat comes back.
            Err(Unread::Missing(_)) if under_way => {}
            Err(Unread::Missing(looked_for)) => out(Parsed::NotYet(Rejected {
                raw: String::from_utf8_lossy(&item).into_owned(),
                reason: format!(
                    "chat {id} has ended but its transcript is not there yet (looked for {})",
                    looked_for.join(", ")
                ),
            })),
            Err(Unread::Bad { file, why }) => out(Parsed::rejected(
                &item,
                format!("chat {id}: transcript {file}: {why}"),
            )),
        }
    }

    pub fn endpoint(table: &SourceTable<'_>) -> String {
        match (table.string("base_url"), table.string("subdomain")) {
            (Ok(Some(u)), _) => u,
            (_, Ok(Some(s))) => {
                let domain = table
                    .string("domain")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "ujet.co".into());
                format!("https://{s}.{domain}")
            }
            _ => "(subdomain missing)".into(),
        }
    }

    fn url(&self, path: &str, params: &[(&str, String)]) -> Url {
        crate::source::endpoint(&self.base, path, params)
    }
}

impl ChatSource for Ujet {
    fn kind(&self) -> SourceKind {
        SourceKind::of(&PLATFORM)
    }

    /// UJET sends UTC; naive `--from` values are read in UTC too.
    fn timezone(&self) -> Tz {
        chrono_tz::UTC
    }

    fn connection(&self) -> Connection {
        Connection {
            auth: self.auth.clone(),
            settings: self.http.clone(),
            // A tail is one request after another; four let the next
            // windows' tails run beside it (the pacer still holds the
            // rate): at a 200 ms round trip, two would do for 10 requests
            // a second (the documented limit), but windows end unevenly
            // (scripts/bench-rate.sh: 2 gave 86%, 3 87%, 4 99%).
            max_in_flight: 4,
        }
    }

    fn timing(&self) -> Timing {
        self.timing
    }

    fn paging(&self) -> Paging {
        Paging::Tail { per: self.per }
    }

    fn records_supported(&self, records: RecordKind) -> std::result::Result<(), String> {
        match records {
            RecordKind::Conversations => Ok(()),
            RecordKind::Messages if self.transcripts.is_some() => Ok(()),
            RecordKind::Messages => Err(
                "the UJET / CCAI Platform Manager API serves no message text: set `transcripts` to the folder the platform's external storage writes chat transcripts to, or export --records conversations".into(),
            ),
        }
    }

    fn traits(&self) -> Traits {
        Traits {
            // A transcript is one chat's messages, in order.
            messages_in_order: true,
            // The organization's settings: an object, not a chat listing.
            check_answers_records: false,
            ..Traits::default()
        }
    }

    fn page_url(&self, query: &Query, page: u32) -> Url {
        self.url(
            "manager/api/v1/chats",
            &[
                (
                    "updated_at[from]",
                    query.window.from.format(QUERY_TIME_FORMAT).to_string(),
                ),
                (
                    "updated_at[to]",
                    query.window.to.format(QUERY_TIME_FORMAT).to_string(),
                ),
                ("sort_column", "updated_at".into()),
                ("sort_direction", "ASC".into()),
                ("per", self.per.to_string()),
                ("page", page.to_string()),
            ],
        )
    }

    fn verdict(&self, status: u16, _body: &[u8]) -> Verdict {
        match status {
            401 | 403 => Verdict::Fail(
                crate::error::Kind::Auth,
                format!("HTTP {status}: the Manager API rejected the credentials"),
                Some(
                    "check the username (company key, or subdomain for CCAI Platform) and password \
                     (company secret, or API token) variables"
                        .into(),
                ),
            ),
            _ => default_verdict(status),
        }
    }

    fn items_at(&self) -> ItemsAt {
        ItemsAt::Root
    }

    fn read_envelope(&self, _envelope: &Envelope) -> Result<Option<u64>, Verdict> {
        // A bare array has no envelope; an object body (an error) has no
        // records, which the tail reads as the end.
        Ok(None)
    }

    fn parse_item(&self, query: &Query, item: &[u8], want_raw: bool, out: &mut dyn FnMut(Parsed)) {
        let row = match fields::object(item) {
            Ok(row) => row,
            Err(e) => return out(Parsed::from_json_error(item, "not a JSON object", &e)),
        };
        let (record, store) = match (chat(&row), &self.transcripts) {
            (Ok(record), Some(store)) => (record, store),
            (Ok(record), None) => {
                let raw = Parsed::raw_of(item, want_raw);
                return out(Parsed::Record(Record::Conversation(Box::new(Item {
                    record,
                    raw,
                }))));
            }
            (Err(reason), _) => return out(Parsed::rejected(item, reason)),
        };
        let messages = query.stream == RecordKind::Messages;
        // A conversation row asks for its transcript only for what the
        // chat lacks: the message count and the agent's name.
        let lacking = record.message_count.is_none() || record.agent_name.is_none();
        match store.names_for(&record.conversation_id) {
            Ok(names) if messages || lacking => out(Parsed::Wants(Box::new(Wanted {
                conversation: record,
                names,
                item: item.to_vec(),
            }))),
            Err(why) if messages => {
                out(Parsed::Record(Record::Conversation(Box::new(Item {
                    record,
                    raw: None,
                }))));
                out(Parsed::rejected(item, why));
            }
            _ => {
                let raw = Parsed::raw_of(item, want_raw);
                out(Parsed::Record(Record::Conversation(Box::new(Item {
                    record,
                    raw,
                }))))
            }
        }
    }

    fn files(&self) -> Option<FilesAt<'_>> {
        self.transcripts.as_ref().map(|t| FilesAt {
            what: "transcripts",
            folder: &t.folder,
            limit: t.limit,
        })
    }

    fn parse_with_file(
        &self,
        query: &Query,
        wanted: Wanted,
        found: FileFound,
        want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        if query.stream == RecordKind::Messages {
            return self.messages(wanted, found, want_raw, out);
        }
        let Wanted {
            conversation: mut record,
            item,
            ..
        } = wanted;
        if let Ok(lines) = transcript_lines(found) {
            complete(&mut record, &lines);
        }
        let raw = Parsed::raw_of(&item, want_raw);
        out(Parsed::Record(Record::Conversation(Box::new(Item {
            record,
            raw,
        }))))
    }

    fn check(&self) -> (Query, Url) {
        let now = Utc::now();
        let query = Query {
            window: Window::new(now - Duration::hours(1), now),
            stream: RecordKind::Conversations,
            variant: 0,
        };
        (query, self.url("manager/api/v1/settings/organization", &[]))
    }
}

/// `transcripts` and `transcript_names`: where the platform's external
/// storage puts chat transcripts (a local folder, or a folder in a
/// bucket).
fn transcripts(table: &SourceTable<'_>, limit: usize) -> Result<Option<transcript::Transcripts>> {
    let names = table.string_list("transcript_names")?;
    let Some(location) = table.string("transcripts")? else {
        if names.is_some() {
            return Err(table.error("transcript_names", "needs `transcripts` (the folder)"));
        }
        return Ok(None);
    };
    let folder = crate::store::Folder::new(&location).map_err(|e| {
        // Not a local folder, and not a bucket chatdump reads.
        let other_scheme = location.contains("://") && !crate::store::is_object_url(&location);
        table.error(
            "transcripts",
            &if other_scheme {
                format!("{e} (or copy the transcripts into a folder: `gcloud storage rsync`, `rclone sync`, an SFTP mount)")
            } else {
                e.to_string()
            },
        )
    })?;
    let names = names.unwrap_or_else(|| {
        transcript::DEFAULT_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect()
    });
    if names.is_empty() || names.iter().any(|n| !n.contains("{id}") || n.contains('/')) {
        return Err(table.error(
            "transcript_names",
            "each name must hold `{id}` and no `/`, e.g. [\"chat-{id}.json\", \"chat-{id}.txt\"]",
        ));
    }
    Ok(Some(transcript::Transcripts {
        folder,
        names,
        limit,
    }))
}

/// Why a chat has no transcript lines.
enum Unread {
    /// None of its names is in the folder: the places looked at.
    Missing(Vec<String>),
    /// A file is there but is no transcript.
    Bad { file: String, why: String },
}

/// A chat's transcript lines from what the driver found in the folder.
fn transcript_lines(found: FileFound) -> Result<Vec<transcript::Line>, Unread> {
    match found {
        FileFound::Read { name, file, bytes } => transcript::lines(&name, &bytes, chrono_tz::UTC)
            .map_err(|why| Unread::Bad { file, why }),
        FileFound::Missing { looked_for } => Err(Unread::Missing(looked_for)),
        FileFound::Bad { file, why } => Err(Unread::Bad { file, why }),
    }
}

/// What a transcript adds to a conversation row where the chat lacks it:
/// the message count (system notices aside) and the agent's name.
fn complete(chat: &mut Conversation, lines: &[transcript::Line]) {
    if chat.message_count.is_none() {
        chat.message_count = Some(
            lines
                .iter()
                .filter(|l| l.sender != crate::model::Sender::System)
                .count() as i64,
        );
    }
    if chat.agent_name.is_none() {
        chat.agent_name = lines
            .iter()
            .find(|l| l.sender == crate::model::Sender::Agent)
            .and_then(|l| l.name.clone());
    }
}

/// A chat's `photos` and `videos`: where the files its transcript's
/// photo and video entries name may be had.
#[derive(serde::Deserialize, Default)]
struct ChatMedia {
    #[serde(default, deserialize_with = "lenient_list")]
    photos: Vec<Listed>,
    #[serde(default, deserialize_with = "lenient_list")]
    videos: Vec<Listed>,
}

#[derive(serde::Deserialize)]
struct Listed {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    url: Option<String>,
}

/// A list of objects, or nothing when the value is anything else.
fn lenient_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Listed>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

impl ChatMedia {
    fn of(chat: &[u8]) -> ChatMedia {
        serde_json::from_slice(chat).unwrap_or_default()
    }

    /// An entry's photo or video: the file the external storage keeps
    /// beside the transcript first (`chat-{id}-photo-{photo id}.jpg`,
    /// `chat-{id}-video-{video id}.mp4`), then the chat's link. Ids become
    /// file names only when they are plain.
    fn attachment(&self, chat_id: &str, media: transcript::Media) -> Attachment {
        let plain = |id: &str| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let id_of = |listed: &Listed| fields::text(Some(&listed.id));
        let mut origins = Vec::new();
        let mut name = None;
        match media {
            transcript::Media::Photo { media_id } => {
                if plain(chat_id) && plain(&media_id) {
                    origins.push(Origin::File(format!("chat-{chat_id}-photo-{media_id}.jpg")));
                }
                let listed = self
                    .photos
                    .iter()
                    .find(|p| id_of(p).as_deref() == Some(media_id.as_str()));
                origins.extend(listed.and_then(|p| p.url.clone()).map(Origin::Url));
            }
            transcript::Media::Video { title, url } => {
                let listed = self.videos.iter().find(|v| {
                    url.is_some() && v.url == url || self.videos.len() == 1 && url.is_none()
                });
                if let Some(video_id) = listed.and_then(id_of).filter(|v| plain(v)) {
                    if plain(chat_id) {
                        origins.push(Origin::File(format!("chat-{chat_id}-video-{video_id}.mp4")));
                    }
                }
                origins.extend(
                    url.or_else(|| listed.and_then(|v| v.url.clone()))
                        .map(Origin::Url),
                );
                name = title;
            }
        }
        Attachment {
            name: name.or_else(|| match origins.first() {
                Some(Origin::File(file)) => Some(file.clone()),
                _ => None,
            }),
            origins,
            ..Default::default()
        }
    }
}

fn chat(row: &Map<String, Value>) -> Result<Conversation, String> {
    let id = fields::text(row.get("id")).ok_or("id is missing")?;
    let updated_at =
        fields::utc_time(row.get("updated_at"), "updated_at")?.ok_or("updated_at is missing")?;
    let (agent_id, agent_name) = match row.get("agent_info") {
        Some(Value::Object(agent)) => {
            let name = fields::text(agent.get("name")).or_else(|| {
                let first = fields::text(agent.get("first_name")).unwrap_or_default();
                let last = fields::text(agent.get("last_name")).unwrap_or_default();
                let full = format!("{first} {last}").trim().to_string();
                (!full.is_empty()).then_some(full)
            });
            (fields::text(agent.get("id")).filter(|i| i != "0"), name)
        }
        // Older versions send the agent's name as a plain string.
        Some(Value::String(s)) if !s.trim().is_empty() => (None, Some(s.clone())),
        _ => (None, None),
    };
    let end_user = row.get("end_user").and_then(Value::as_object);
    Ok(Conversation {
        conversation_id: id,
        channel: fields::text(row.get("chat_type")).map(|t| channel(&t)),
        status: fields::text(row.get("status")),
        started_at: fields::utc_time(row.get("created_at"), "created_at")?,
        ended_at: fields::utc_time(row.get("ends_at"), "ends_at")?,
        updated_at: Some(updated_at),
        duration_s: fields::rounded(row.get("chat_duration")),
        // `wait_duration` is deprecated in favour of `queue_duration`.
        wait_s: fields::rounded(row.get("queue_duration"))
            .or_else(|| fields::rounded(row.get("wait_duration"))),
        agent_id,
        agent_name,
        agent_email: None,
        customer_id: end_user
            .and_then(|u| fields::text(u.get("id")))
            .filter(|i| i != "0"),
        customer_name: None,
        customer_phone: None,
        customer_email: None,
        queue: row
            .get("menu_path")
            .and_then(Value::as_object)
            .and_then(|m| fields::text(m.get("name")))
            .or_else(|| {
                row.get("selected_menu")
                    .and_then(Value::as_object)
                    .and_then(|m| fields::text(m.get("name")))
            }),
        message_count: fields::rounded(row.get("message_count")),
        attachment_count: {
            let listed = |key: &str| row.get(key).and_then(Value::as_array).map(Vec::len);
            match (listed("photos"), listed("videos")) {
                (None, None) => None,
                (photos, videos) => Some((photos.unwrap_or(0) + videos.unwrap_or(0)) as i64),
            }
        },
        rating: fields::rounded(row.get("rating")).filter(|r| *r > 0),
        sentiment: None,
        // Dispositions are Wolkvox's (chat_1); the others do not report them.
        disposition_code: None,
        disposition: None,
        comments: None,
    })
}

/// `Messaging (WhatsApp)` -> `whatsapp`, `Messaging Inbound (App Chat)` -> `app`.
fn channel(chat_type: &str) -> String {
    let lower = chat_type.to_ascii_lowercase();
    for (needle, name) in [
        ("whatsapp", "whatsapp"),
        ("sms", "sms"),
        ("web", "web"),
        ("app", "app"),
        ("mobile", "app"),
        ("facebook", "facebook"),
        ("messenger", "facebook"),
        ("instagram", "instagram"),
    ] {
        if lower.contains(needle) {
            return name.into();
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::testing;
    use std::path::Path;

    fn source() -> Ujet {
        let config = Config::parse(
            "[sources.s]\nkind = \"ujet\"\nsubdomain = \"acme\"\ndomain = \"uc1.ccaiplatform.com\"\nusername = \"u\"\npassword = \"p\"\npage_size = 100\n",
            Path::new("t"),
        )
        .unwrap();
        Ujet::from_config(&config.source("s").unwrap()).unwrap()
    }

    fn parse(body: &str) -> Vec<Parsed> {
        let now = Utc::now();
        let query = Query {
            window: Window::new(now, now),
            stream: RecordKind::Conversations,
            variant: 0,
        };
        testing::parse_body(&source(), &query, body, false).parsed
    }

    #[test]
    fn maps_the_fixture_across_type_drift() {
        let body = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ujet/chats.json"),
        )
        .unwrap();
        let items = parse(&body);
        let chats = testing::conversations(&items);
        assert_eq!(chats.len(), 4);
        let c = chats[0];
        assert_eq!(c.conversation_id, "31354");
        assert_eq!(c.channel.as_deref(), Some("app"));
        assert_eq!(c.status.as_deref(), Some("finished"));
        assert_eq!(c.updated_at, Some("2024-03-05T07:29:02Z".parse().unwrap()));
        assert_eq!(c.duration_s, Some(102));
        assert_eq!(c.wait_s, Some(6));
        assert_eq!(c.agent_name.as_deref(), Some("Ana Torres"));
        assert_eq!(c.agent_id.as_deref(), Some("901"));
        assert_eq!(c.customer_id.as_deref(), Some("5501"));
        assert_eq!(c.queue.as_deref(), Some("Ventas"));
        assert_eq!(c.message_count, Some(3));
        assert_eq!(c.rating, Some(5));
        assert_eq!(chats[1].rating, Some(4), "rating as a string");
        assert_eq!(
            chats[1].agent_name.as_deref(),
            Some("Bruno Díaz"),
            "agent_info as a string"
        );
        assert_eq!(chats[1].channel.as_deref(), Some("whatsapp"));
        assert_eq!(chats[2].agent_name, None, "agent_info null");
        assert_eq!(chats[2].rating, None, "rating 0 means none");
        assert_eq!(chats[3].channel.as_deref(), Some("sms"));
        let rejected: Vec<&str> = items
            .iter()
            .filter_map(|p| match p {
                Parsed::Rejected(r) => Some(r.reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].contains("updated_at"), "{rejected:?}");
    }

    #[test]
    fn urls_tail_on_updated_at_and_messages_are_refused() {
        let src = source();
        let q = Query {
            window: Window::new(
                "2024-03-05T00:00:00Z".parse().unwrap(),
                "2024-03-06T00:00:00Z".parse().unwrap(),
            ),
            stream: RecordKind::Conversations,
            variant: 0,
        };
        let url = src.page_url(&q, 2);
        assert_eq!(url.host_str(), Some("acme.uc1.ccaiplatform.com"));
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("updated_at[from]".into(), "2024-03-05T00:00:00.000Z".into())));
        assert!(pairs.contains(&("sort_direction".into(), "ASC".into())));
        assert!(pairs.contains(&("per".into(), "100".into())));
        assert!(pairs.contains(&("page".into(), "2".into())));
        assert!(src.records_supported(RecordKind::Messages).is_err());
        assert_eq!(
            src.check().1.path(),
            "/manager/api/v1/settings/organization"
        );
    }
}

/// The demo's Manager API: the sample under `fixtures/ujet`.
pub mod demo {
    use std::collections::HashMap;

    use crate::source::DemoContext;

    use serde_json::Value;

    /// The sample transcripts, as the platform's external storage would
    /// hold them: the demo writes them into the folder it hands `config`.
    pub const FILES: &[(&str, &[u8])] = &[
        (
            "chat-31354.json",
            include_bytes!("../../../fixtures/ujet/transcripts/chat-31354.json"),
        ),
        // The photo its transcript shows, beside it as the platform's
        // external storage keeps it.
        (
            "chat-31354-photo-7781.jpg",
            include_bytes!("../../../fixtures/ujet/transcripts/chat-31354-photo-7781.jpg"),
        ),
        (
            "chat-31355.txt",
            include_bytes!("../../../fixtures/ujet/transcripts/chat-31355.txt"),
        ),
        (
            "chat-31357.json",
            include_bytes!("../../../fixtures/ujet/transcripts/chat-31357.json"),
        ),
    ];

    pub fn config(context: &DemoContext<'_>) -> String {
        let addr = context.addr;
        let folder = context
            .folder
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        format!(
            "[sources.demo-ujet]\nkind = \"ujet\"\nbase_url = \"http://{addr}/ujet\"\n\
             username = \"demo\"\npassword = \"{}\"\npage_size = 2\nrate_limit = 200\n\
             transcripts = \"{folder}\"\n",
            context.token
        )
    }

    pub fn answer(path: &str, query: &HashMap<String, String>) -> Option<(u16, String)> {
        (path == "/manager/api/v1/chats").then(|| ujet_chats(query))
    }

    const UJET_CHATS: &str = include_str!("../../../fixtures/ujet/chats.json");

    /// The Manager API's chat listing: `updated_at` in [from, to), sorted
    /// ascending, `per` (at most 100) a page.
    fn ujet_chats(query: &HashMap<String, String>) -> (u16, String) {
        let from = query.get("updated_at[from]").cloned().unwrap_or_default();
        let to = query
            .get("updated_at[to]")
            .cloned()
            .unwrap_or_else(|| "9".into());
        let per: usize = query
            .get("per")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
            .clamp(1, 100);
        let page: usize = query
            .get("page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let all: Vec<Value> = serde_json::from_str(UJET_CHATS).unwrap_or_default();
        let updated = |c: &Value| c["updated_at"].as_str().unwrap_or("").to_string();
        let mut rows: Vec<Value> = all
            .into_iter()
            .filter(|c| {
                let u = updated(c);
                u >= from && u < to
            })
            .collect();
        rows.sort_by_key(updated);
        let page_rows: Vec<Value> = rows.into_iter().skip((page - 1) * per).take(per).collect();
        (200, Value::Array(page_rows).to_string())
    }
}
