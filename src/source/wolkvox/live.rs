//! Wolkvox real-time chats `real_time.php?api=chats`: the chats active right
//! now, per agent, each with its messages so far.
//!
//! - `GET {base}/api/v2/real_time.php?api=chats`
//!   (<https://www.wolkvox.com/en/apis-v2-2/8-real-time-chat-report/>);
//!   no date parameters: every request is a snapshot, and spends a token.
//! - `data[]` holds one entry per agent (`agent_id`) with `active_chats[]`
//!   (`conn_id`, `channel`, `connector_id`, `customer_phone`,
//!   `conversation[]` of `from`, `msg`, `date`). The message key is `msg`,
//!   not `message` as in `chat_2`; `code` is the string "200"; `from` values
//!   are undocumented and never fail.
//! - A snapshot repeats each conversation so far. Message ids are the same
//!   digest the `chat_2` report source computes (conversation, time, sender,
//!   text, occurrence), so they agree across polls and with the next day's
//!   report where both carry the same values; de-duplication across polls is
//!   the pipeline's (with `--state` or `--follow`), and forgets chats not
//!   seen active for `forget_after`.

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Client, Text, SHARED_KEYS};
use crate::config::SourceTable;
use crate::error::Result;
use crate::http::Verdict;
use crate::jsonstream::{Envelope, ItemsAt};
use crate::model::{Conversation, Item, Message, Record, RecordKind, Shared};
use crate::source::{ChatSource, Connection, Paging, Parsed, Query, Timing};
use crate::source::{Demo, Platform, SourceKind, Traits};
use crate::window::{parse_platform_time, Window};

pub const KEYS: &[&str] = &["forget_after"];

pub static PLATFORM: Platform = Platform {
    name: "wolkvox-live",
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
    Ok(Box::new(Live::from_config(table)?))
}

pub struct Live {
    client: Client,
    forget_after: Duration,
}

impl Live {
    pub fn from_config(table: &SourceTable<'_>) -> Result<Live> {
        table.check_keys(&PLATFORM.all_keys())?;
        Ok(Live {
            client: Client::from_config(table)?,
            forget_after: table
                .duration("forget_after")?
                .unwrap_or(Duration::hours(24)),
        })
    }

    fn snapshot_url(&self) -> Url {
        self.client.url("real_time.php", &[("api", "chats".into())])
    }
}

#[derive(Deserialize)]
struct Agent<'a> {
    #[serde(borrow, default)]
    agent_id: Text<'a>,
    #[serde(borrow, default)]
    active_chats: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ActiveChat<'a> {
    #[serde(borrow, default)]
    conn_id: Text<'a>,
    #[serde(borrow, default)]
    channel: Text<'a>,
    #[serde(borrow, default)]
    customer_phone: Text<'a>,
    #[serde(borrow, default)]
    conversation: Vec<Line<'a>>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    from: Text<'a>,
    #[serde(borrow, default)]
    msg: Text<'a>,
    /// Tolerated: the report's key, in case the endpoint adopts it.
    #[serde(borrow, default)]
    message: Text<'a>,
    #[serde(borrow, default)]
    date: Text<'a>,
}

impl Live {
    fn chat(
        &self,
        agent_id: Option<&str>,
        raw: &RawValue,
        stream: RecordKind,
        want_raw: bool,
        out: &mut dyn FnMut(Parsed),
    ) {
        let chat: ActiveChat = match serde_json::from_str(raw.get()) {
            Ok(c) => c,
            Err(e) => {
                return out(Parsed::rejected(
                    raw.get().as_bytes(),
                    format!("unreadable active chat: {e}"),
                ))
            }
        };
        let Some(conn_id) = chat.conn_id.owned() else {
            return out(Parsed::rejected(raw.get().as_bytes(), "conn_id is missing"));
        };
        let channel = chat.channel.get().map(str::to_ascii_lowercase);
        // Shared by the chat's messages: one allocation each per chat.
        let shared_id: Shared = conn_id.as_str().into();
        let shared_channel: Option<Shared> = channel.as_deref().map(Into::into);
        let shared_agent: Option<Shared> = agent_id.map(Into::into);
        let shared_phone: Option<Shared> = chat.customer_phone.get().map(Into::into);
        let mut messages = Vec::with_capacity(chat.conversation.len());
        for (position, line) in chat.conversation.iter().enumerate() {
            let sent_at = match line
                .date
                .get()
                .map(|d| parse_platform_time(d, self.client.zone))
            {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    return out(Parsed::rejected(raw.get().as_bytes(), format!("date: {e}")))
                }
                None => None,
            };
            let text = line
                .msg
                .0
                .as_deref()
                .or(line.message.0.as_deref())
                .map(str::to_string);
            messages.push(Message {
                conversation_id: shared_id.clone(),
                sent_at,
                sender: super::sender(line.from.get()),
                channel: shared_channel.clone(),
                attachments: text
                    .as_deref()
                    .map(crate::media::in_text)
                    .unwrap_or_default(),
                text,
                agent_id: shared_agent.clone(),
                customer_phone: shared_phone.clone(),
                order_key: Some(position as i64),
                ..Default::default()
            });
        }
        let raw_copy = || want_raw.then(|| raw.to_owned());
        match stream {
            RecordKind::Messages => {
                for record in messages {
                    out(Parsed::Record(Record::Message(Item {
                        record,
                        raw: raw_copy(),
                    })));
                }
            }
            RecordKind::Conversations => {
                let times = messages.iter().filter_map(|m| m.sent_at);
                let started_at = times.clone().min();
                let updated_at = times.max();
                let record = Conversation {
                    conversation_id: conn_id,
                    channel,
                    status: Some("active".into()),
                    started_at,
                    // The last message so far: a new message makes a new
                    // version, which a poll emits again.
                    updated_at,
                    duration_s: started_at
                        .zip(updated_at)
                        .map(|(s, u)| (u - s).num_seconds()),
                    agent_id: agent_id.map(str::to_string),
                    customer_phone: chat.customer_phone.owned(),
                    message_count: Some(messages.len() as i64),
                    attachment_count: Some(
                        messages.iter().map(|m| m.attachments.len() as i64).sum(),
                    ),
                    ..Default::default()
                };
                // `connector_id` and the rest travel in `raw`.
                out(Parsed::Record(Record::Conversation(Box::new(Item {
                    record,
                    raw: raw_copy(),
                }))));
            }
        }
    }
}

impl ChatSource for Live {
    fn kind(&self) -> SourceKind {
        SourceKind::of(&PLATFORM)
    }

    fn timezone(&self) -> Tz {
        self.client.zone
    }

    fn connection(&self) -> Connection {
        self.client.connection()
    }

    /// A snapshot is one request, whatever the window; it has no settle
    /// lag and nothing to look back at.
    fn timing(&self) -> Timing {
        Timing {
            window: Duration::days(3650),
            settle: Duration::zero(),
            lookback: Duration::zero(),
        }
    }

    fn memory_span(&self) -> Duration {
        self.forget_after
    }

    fn paging(&self) -> Paging {
        Paging::Snapshot
    }

    fn page_url(&self, _query: &Query, _page: u32) -> Url {
        self.snapshot_url()
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
        // Ids past 64 bits, read as text.
        let exact = crate::source::fields::exact_integers(item);
        let agent: Agent = match std::str::from_utf8(&exact).map(serde_json::from_str) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return out(Parsed::from_json_error(item, "unreadable agent entry", &e)),
            // JSON is UTF-8: other bytes mean a garbled response.
            Err(e) => return out(Parsed::Unreadable(format!("not UTF-8: {e}"))),
        };
        for chat in &agent.active_chats {
            self.chat(agent.agent_id.get(), chat, query.stream, want_raw, out);
        }
    }

    fn traits(&self) -> Traits {
        Traits {
            messages_in_order: true,
            spends_daily_tokens: true,
            ..Traits::default()
        }
    }

    fn check(&self) -> (Query, Url) {
        let now = chrono::Utc::now();
        let query = Query {
            window: Window::new(now, now),
            stream: RecordKind::Messages,
            variant: 0,
        };
        (query, self.snapshot_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Sender;
    use crate::source::testing;
    use std::path::Path;

    fn source() -> Live {
        let config = Config::parse(
            "[sources.l]\nkind = \"wolkvox-live\"\nserver = \"0012\"\ntoken = \"t\"\n",
            Path::new("t"),
        )
        .unwrap();
        Live::from_config(&config.source("l").unwrap()).unwrap()
    }

    fn parse(stream: RecordKind) -> Vec<Parsed> {
        let now = chrono::Utc::now();
        let query = Query {
            window: Window::new(now, now),
            stream,
            variant: 0,
        };
        let page = testing::parse_body(
            &source(),
            &query,
            &testing::fixture("wolkvox/real_time-chats.json"),
            true,
        );
        assert!(page.envelope.is_ok(), "code \"200\" is success");
        page.parsed
    }

    #[test]
    fn snapshot_messages() {
        let items = parse(RecordKind::Messages);
        let msgs = testing::messages(&items);
        assert_eq!(msgs.len(), 5);
        assert_eq!(&*msgs[0].conversation_id, "88001");
        assert_eq!(msgs[0].agent_id.as_deref(), Some("1001"));
        assert_eq!(msgs[0].sender, Sender::Customer);
        assert_eq!(
            msgs[0].text.as_deref(),
            Some("Hola, ¿me ayudan con mi pedido?")
        );
        assert_eq!(msgs[0].channel.as_deref(), Some("whatsapp"));
        assert_eq!(msgs[0].customer_phone.as_deref(), Some("573015550101"));
        assert_eq!(msgs[1].sender, Sender::Agent);
        assert_eq!(
            msgs[2].sender,
            Sender::Unknown,
            "an unexpected `from` never fails"
        );
        assert_eq!(msgs[4].agent_id.as_deref(), Some("1002"));
    }

    #[test]
    fn snapshot_conversations() {
        let items = parse(RecordKind::Conversations);
        let convs: Vec<(&Conversation, &str)> = items
            .iter()
            .filter_map(|p| match p {
                Parsed::Record(Record::Conversation(c)) => {
                    Some((&c.record, c.raw.as_ref().unwrap().get()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(convs.len(), 2);
        let (c, raw) = convs[0];
        assert_eq!(c.status.as_deref(), Some("active"));
        assert_eq!(c.message_count, Some(3));
        assert_eq!(c.duration_s, Some(75));
        assert!(raw.contains("\"connector_id\""), "connector id in raw");
    }
}

/// The demo's real-time chats: the sample under `fixtures/wolkvox`.
pub mod demo {
    use std::collections::HashMap;

    use crate::source::DemoContext;

    /// No files on disk.
    pub const FILES: &[(&str, &[u8])] = &[];

    pub fn config(context: &DemoContext<'_>) -> String {
        let addr = context.addr;
        format!(
            "[sources.demo-wolkvox-live]\nkind = \"wolkvox-live\"\nbase_url = \"http://{addr}/wolkvox-live\"\n\
             token = \"{}\"\nrate_limit = 200\n",
            context.token
        )
    }

    const WOLKVOX_LIVE: &str = include_str!("../../../fixtures/wolkvox/real_time-chats.json");

    pub fn answer(path: &str, query: &HashMap<String, String>) -> Option<(u16, String)> {
        (path == "/api/v2/real_time.php" && query.get("api").is_some_and(|a| a == "chats"))
            .then(|| (200, WOLKVOX_LIVE.to_string()))
    }
}
