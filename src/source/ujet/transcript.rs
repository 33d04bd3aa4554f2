//! UJET / CCAI Platform chat transcripts: the files the platform writes to
//! the customer's external storage (a Cloud Storage bucket or an SFTP
//! server) after a chat ends, read from a local folder (the bucket synced
//! with `gcloud storage rsync` or `rclone`, or the SFTP server mounted).
//!
//! Documented (see `fixtures/ujet/transcripts/README.md` for the sources):
//! - `chat-{id}.txt` is the transcript's name in external storage; the name
//!   of a JSON transcript there is not documented, so both patterns are
//!   configurable (`transcript_names`, first found wins).
//! - The JSON transcript record: `comm_type`, `comm_id`,
//!   `transcript_version` "1.0", `assigned_at`, `timezone`, and `entries[]`
//!   of `timestamp` (Unix seconds), `type`, `role` (`end_user`, `agent`,
//!   `manager`, `virtual_agent`, `external_agent`, `task_virtual_agent`,
//!   `system`), `user_data.name` (only when known) and `body` by type
//!   (`text`, `markdown`, `text_template`, `markdown_template` with
//!   `content`; `photo` with `media_id`; `video` with `title` and
//!   `video.url`; `noti`, `action`, ...). Unknown fields are ignored.
//! - The `.txt` layout: a header with the chat id and a date stamp with its
//!   time zone, then message segments separated by dashed lines, each with
//!   a timestamp and who wrote it. Its exact lines are not documented: the
//!   reader below is lenient and says what it could not read.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::Sender;
use crate::source::fields;

/// Where transcripts are and what they are called. Reading them is the
/// driver's business (the folder is the provider's `files`); this module
/// only names them and reads their bytes.
pub struct Transcripts {
    pub folder: crate::store::Folder,
    /// File names with `{id}`; a name ending in `.json` is read as the
    /// JSON record, any other as the text layout.
    pub names: Vec<String>,
    /// The largest transcript read (`max_record_size`).
    pub limit: usize,
}

/// A photo or video entry's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// `photo {media_id}`: the photo's id among the chat's `photos`.
    Photo { media_id: String },
    /// `video {title, video {url}}`.
    Video {
        title: Option<String>,
        url: Option<String>,
    },
}

/// The documented text name, after the (assumed) JSON one.
pub const DEFAULT_NAMES: &[&str] = &["chat-{id}.json", "chat-{id}.txt"];

/// One message of a transcript.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Option<DateTime<Utc>>,
    pub sender: Sender,
    pub name: Option<String>,
    pub text: String,
    /// The photo or video the entry carries (JSON transcripts only).
    pub media: Option<Media>,
    /// The entry's JSON, for `--include-raw` (JSON transcripts only).
    pub raw: Option<Box<RawValue>>,
}

impl Transcripts {
    /// The names chat `id`'s transcript may have. Ids come from the
    /// platform: only plain ones (letters, digits, `-`, `_`) ever become a
    /// file name, so no answer can make chatdump read outside the folder.
    pub fn names_for(&self, id: &str) -> Result<Vec<String>, String> {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("chat id {id:?} cannot name a transcript file"));
        }
        Ok(self.names.iter().map(|n| n.replace("{id}", id)).collect())
    }
}

/// The lines of a transcript read from a file called `name`: the JSON
/// record when the name ends in `.json`, else the text layout.
pub fn lines(name: &str, bytes: &[u8], zone: Tz) -> Result<Vec<Line>, String> {
    if name.ends_with(".json") {
        read_json(bytes)
    } else {
        std::str::from_utf8(bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|text| read_text(text, zone))
    }
}

/// Who wrote an entry, by its documented `role`.
pub fn sender(role: &str) -> Sender {
    match role {
        "end_user" => Sender::Customer,
        "agent" | "manager" | "external_agent" => Sender::Agent,
        "virtual_agent" | "task_virtual_agent" => Sender::Bot,
        "system" => Sender::System,
        _ => Sender::Unknown,
    }
}

/// The JSON transcript record: its `entries`, in order.
pub fn read_json(bytes: &[u8]) -> Result<Vec<Line>, String> {
    #[derive(serde::Deserialize)]
    struct Root<'a> {
        #[serde(borrow, default)]
        entries: Option<Vec<&'a RawValue>>,
    }
    let root: Root = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a transcript: {}", quoting_nothing(&e)))?;
    let entries = root.entries.ok_or("no `entries`")?;
    entries
        .into_iter()
        .enumerate()
        .map(|(n, raw)| {
            let entry: Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|e| format!("entry {n} is not an object: {}", quoting_nothing(&e)))?;
            Ok(Line {
                at: match entry.get("timestamp") {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        Some(unix_seconds(v).ok_or_else(|| {
                            format!("entry {n}: its timestamp is not Unix seconds")
                        })?)
                    }
                },
                sender: sender(entry.get("role").and_then(Value::as_str).unwrap_or("")),
                name: entry
                    .get("user_data")
                    .and_then(|u| fields::text(u.get("name"))),
                text: body_text(&entry),
                media: media(&entry),
                raw: Some(raw.to_owned()),
            })
        })
        .collect()
}

/// What is wrong with a file's JSON, by kind and place only: a reason is
/// shown and saved, and the file's text is not ours to repeat (serde's own
/// messages quote the values they met).
fn quoting_nothing(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "a value of the wrong type",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

fn unix_seconds(v: &Value) -> Option<DateTime<Utc>> {
    let seconds = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0).filter(|t| crate::window::in_range(*t))
}

/// The photo or video an entry carries.
fn media(entry: &Map<String, Value>) -> Option<Media> {
    let body = entry.get("body").and_then(Value::as_object);
    let kind = body
        .and_then(|b| fields::text(b.get("type")))
        .or_else(|| fields::text(entry.get("type")))?;
    let field = |key: &str| body.and_then(|b| fields::text(b.get(key)));
    match kind.as_str() {
        "photo" => Some(Media::Photo {
            media_id: field("media_id")?,
        }),
        "video" => Some(Media::Video {
            title: field("title"),
            url: body
                .and_then(|b| b.get("video"))
                .and_then(|v| fields::text(v.get("url"))),
        }),
        _ => None,
    }
}

/// An entry's text: what was written for the text types, a short readable
/// stand-in for the others (the entry itself is kept with `--include-raw`).
fn body_text(entry: &Map<String, Value>) -> String {
    let body = entry.get("body").and_then(Value::as_object);
    let kind = body
        .and_then(|b| fields::text(b.get("type")))
        .or_else(|| fields::text(entry.get("type")))
        .unwrap_or_else(|| "unknown".into());
    let field = |key: &str| body.and_then(|b| fields::text(b.get(key)));
    match kind.as_str() {
        "text" | "markdown" | "text_template" | "markdown_template" => {
            field("content").unwrap_or_default()
        }
        "photo" => match field("media_id") {
            Some(id) => format!("[photo {id}]"),
            None => "[photo]".into(),
        },
        "video" => {
            let url = body
                .and_then(|b| b.get("video"))
                .and_then(|v| fields::text(v.get("url")));
            match (field("title"), url) {
                (Some(title), Some(url)) => format!("[video {title}: {url}]"),
                (Some(title), None) => format!("[video {title}]"),
                (None, Some(url)) => format!("[video {url}]"),
                (None, None) => "[video]".into(),
            }
        }
        other => match field("content").or_else(|| field("text")) {
            Some(content) => format!("[{other}] {content}"),
            None => format!("[{other}]"),
        },
    }
}

/// The text layout, read leniently: a header (up to the first dashed line)
/// that may hold a date and a time zone, then segments between dashed
/// lines, each starting with a line holding a time and who wrote it
/// (`[10:00:05] Ana Torres (Agent): ...`, `2024-03-05 10:00:05 - End User:`),
/// the rest being the message.
pub fn read_text(text: &str, zone: Tz) -> Result<Vec<Line>, String> {
    let mut blocks = text.split('\n').fold(vec![Vec::new()], |mut blocks, line| {
        let line = line.trim_end_matches('\r');
        if is_rule(line) {
            blocks.push(Vec::new());
        } else if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
        blocks
    });
    blocks.retain(|b| b.iter().any(|l| !l.trim().is_empty()));
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let header = blocks.remove(0);
    let header_text = header.join("\n");
    let zone = header_zone(&header_text).unwrap_or(zone);
    let mut day = find_date(&header_text);
    blocks
        .into_iter()
        .enumerate()
        .map(|(n, block)| {
            let mut lines = block.into_iter().skip_while(|l| l.trim().is_empty());
            let first = lines.next().unwrap_or_default();
            let (at, who, rest) = segment_head(first)
                .ok_or_else(|| format!("segment {}: its first line has no time", n + 1))?;
            let date = at.0.or(day);
            day = date;
            let at = date
                .and_then(|d| crate::window::local_to_utc(NaiveDateTime::new(d, at.1), zone))
                .filter(|t| crate::window::in_range(*t));
            let mut body: Vec<&str> = Vec::new();
            if !rest.trim().is_empty() {
                body.push(rest.trim());
            }
            body.extend(lines);
            let (sender, name) = who_wrote(who);
            Ok(Line {
                at,
                sender,
                name,
                text: body.join("\n").trim().to_string(),
                media: None,
                raw: None,
            })
        })
        .collect()
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 3 && t.chars().all(|c| c == '-' || c == '=' || c == '—')
}

/// An IANA zone named anywhere in the header (`America/Los_Angeles`, `UTC`).
fn header_zone(header: &str) -> Option<Tz> {
    header
        .split(|c: char| c.is_whitespace() || "(),;".contains(c))
        .find_map(|word| word.parse::<Tz>().ok())
}

fn find_date(text: &str) -> Option<NaiveDate> {
    text.split(|c: char| c.is_whitespace() || "()[],;".contains(c))
        .find_map(|w| NaiveDate::parse_from_str(w, "%Y-%m-%d").ok())
}

/// When a segment was written: its time, and its date when the line has
/// one.
type Stamp = (Option<NaiveDate>, NaiveTime);

/// The time (with its date, when the line has one), who wrote it, and
/// whatever follows on the same line.
fn segment_head(line: &str) -> Option<(Stamp, &str, &str)> {
    let date = find_date(line);
    let words: Vec<&str> = line.split_whitespace().collect();
    let (index, time) = words.iter().enumerate().find_map(|(i, w)| {
        let w = w.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')' || c == ',');
        NaiveTime::parse_from_str(w, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(w, "%H:%M"))
            .ok()
            .map(|t| (i, t))
    })?;
    // Who wrote it: after the time (and an AM/PM or dash), up to a colon.
    let after_time = line.find(words[index]).map(|p| p + words[index].len())?;
    let rest = line[after_time..].trim_start_matches([']', ')', ' ', '-', '–']);
    let rest = rest
        .strip_prefix("AM ")
        .or_else(|| rest.strip_prefix("PM "))
        .unwrap_or(rest)
        .trim_start_matches(['-', ' ']);
    let (who, said) = rest.split_once(':').unwrap_or((rest, ""));
    Some(((date, time), who.trim(), said))
}

/// The sender of a text segment, from its label: the role in brackets when
/// there is one, else the label itself.
fn who_wrote(label: &str) -> (Sender, Option<String>) {
    let lower = label.to_ascii_lowercase();
    let (name, role) = match (label.rfind('('), label.ends_with(')')) {
        (Some(open), true) => (
            label[..open].trim(),
            lower[open + 1..lower.len() - 1].trim().to_string(),
        ),
        _ => (label.trim(), lower.trim().to_string()),
    };
    let sender = if role.contains("virtual") || role.contains("bot") {
        Sender::Bot
    } else if role.contains("agent") || role.contains("manager") {
        Sender::Agent
    } else if role.contains("end user")
        || role.contains("end_user")
        || role.contains("customer")
        || role.contains("consumer")
    {
        Sender::Customer
    } else if role.contains("system") {
        Sender::System
    } else {
        Sender::Unknown
    };
    let generic = [
        "end user",
        "end_user",
        "customer",
        "agent",
        "system",
        "virtual agent",
        "consumer",
    ];
    let name = (!name.is_empty() && !generic.contains(&name.to_ascii_lowercase().as_str()))
        .then(|| name.to_string());
    (sender, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/ujet/transcripts")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn every_role_and_body_type_of_the_json_record() {
        let lines = read_json(&fixture("chat-31354.json")).unwrap();
        let senders: Vec<Sender> = lines.iter().map(|l| l.sender).collect();
        assert_eq!(
            senders,
            [
                Sender::System,
                Sender::Bot,
                Sender::Customer,
                Sender::Agent,
                Sender::Customer,
                Sender::Agent,
                Sender::Agent,
                Sender::Agent,
                Sender::Bot,
                Sender::Customer,
                Sender::Unknown,
                Sender::Agent,
            ]
        );
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts[2], "Hola, quiero cambiar mi plan 📱");
        assert_eq!(texts[3], "**Claro**, ¿cuál plan tienes hoy?");
        assert_eq!(texts[4], "[photo 7781]");
        assert_eq!(texts[5], "Tu plan: {{plan}}");
        assert_eq!(
            texts[7],
            "[video Cómo activar: https://media.demo.invalid/ujet/activar.mp4]"
        );
        // The photo and the video, as references to fetch.
        assert_eq!(
            lines[4].media,
            Some(Media::Photo {
                media_id: "7781".into()
            })
        );
        assert_eq!(
            lines[7].media,
            Some(Media::Video {
                title: Some("Cómo activar".into()),
                url: Some("https://media.demo.invalid/ujet/activar.mp4".into())
            })
        );
        assert!(lines.iter().filter(|l| l.media.is_some()).count() == 2);
        assert_eq!(texts[10], "[carousel]", "an unknown body type");
        assert_eq!(lines[3].name.as_deref(), Some("Ana Torres"));
        assert_eq!(lines[2].name, None, "end users carry no user_data");
        assert_eq!(
            lines[0].at.map(|t| t.to_rfc3339()),
            Some("2024-03-05T07:27:14+00:00".into())
        );
        assert!(lines[4].raw.as_ref().unwrap().get().contains("7781"));
    }

    #[test]
    fn the_text_layout() {
        let text = String::from_utf8(fixture("chat-31355.txt")).unwrap();
        let lines = read_text(&text, chrono_tz::UTC).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].sender, Sender::Customer);
        assert_eq!(lines[0].name, None);
        assert_eq!(
            lines[0].at.map(|t| t.to_rfc3339()),
            Some("2024-03-05T08:00:10+00:00".into()),
            "the header's date and zone (America/Bogota, UTC-5)"
        );
        assert_eq!(lines[1].sender, Sender::Agent);
        assert_eq!(lines[1].name.as_deref(), Some("Bruno Díaz"));
        assert_eq!(lines[1].text, "Buenos días, ¿en qué le ayudo?\nSoy Bruno.");
        assert_eq!(lines[2].sender, Sender::Bot);
        assert_eq!(lines[3].text, "gracias 🙏");
    }

    #[test]
    fn unreadable_and_odd_transcripts_say_why() {
        assert!(read_json(b"{\"comm_id\": 1}")
            .unwrap_err()
            .contains("entries"));
        assert!(read_json(b"[1,2]").is_err());
        assert!(read_json(br#"{"entries":[{"timestamp":"soon"}]}"#)
            .unwrap_err()
            .contains("timestamp"));
        // Absurd instants: beyond what a date can hold, read as no date,
        // never a panic or a wrapped-around year.
        for absurd in ["1e20", "-9223372036854775808", "9223372036854775807"] {
            let body = format!(r#"{{"entries":[{{"timestamp":{absurd},"role":"agent"}}]}}"#);
            assert!(
                read_json(body.as_bytes())
                    .unwrap_err()
                    .contains("not Unix seconds"),
                "{absurd}"
            );
        }
        assert!(read_json(br#"{"entries":[]}"#).unwrap().is_empty());
        assert!(read_text("Chat 1\n-----\nno time here\n", chrono_tz::UTC).is_err());
        assert!(read_text("", chrono_tz::UTC).unwrap().is_empty());
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(256))]

        /// Whatever a transcript file holds, reading it ends in lines or a
        /// reason, never a panic: text built from the layout's own pieces
        /// (rules, times, labels, brackets, non-ASCII) and arbitrary bytes.
        #[test]
        fn any_text_reads_or_says_why(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("-----\n".to_string()),
                    proptest::strategy::Just("[10:00:05] ".to_string()),
                    proptest::strategy::Just("2024-03-05 ".to_string()),
                    proptest::strategy::Just("Ana (Agent): ".to_string()),
                    proptest::strategy::Just("End User:".to_string()),
                    proptest::strategy::Just("America/Bogota\n".to_string()),
                    proptest::strategy::Just("() ) ( :\r\n".to_string()),
                    "[ -~ñé😀\n]{0,12}",
                ],
                0..24,
            ),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let text = pieces.concat();
            let _ = read_text(&text, chrono_tz::UTC);
            let _ = read_json(text.as_bytes());
            let _ = read_json(&bytes);
            if let Ok(t) = std::str::from_utf8(&bytes) {
                let _ = read_text(t, chrono_tz::UTC);
            }
        }
    }

    #[test]
    fn ids_that_are_not_plain_never_name_a_file() {
        let store = Transcripts {
            folder: crate::store::Folder::Local("/nonexistent".into()),
            names: vec!["chat-{id}.json".into(), "x/{id}/chat-{id}.txt".into()],
            limit: 1024,
        };
        for id in ["../../etc/passwd", "a/b", "", "1 2", "x\0", "..", "é"] {
            assert!(store.names_for(id).is_err(), "{id:?}");
        }
        assert_eq!(
            store.names_for("31354-a_b").unwrap(),
            ["chat-31354-a_b.json", "x/31354-a_b/chat-31354-a_b.txt"]
        );
    }
}
