//! `chatdump schema`: the JSON Schema of the records the writers emit, with
//! every field that can carry personal data marked.
//!
//! The column lists in `model.rs` decide the shape; this module describes
//! each column once (type, nullability, personal data, meaning), and a test
//! keeps the two in step. Personal data is marked with the `x-pii` keyword:
//! `"customer"` or `"agent"`, what `--redact` and `--redact-agents` act on.

use serde_json::{json, Map, Value};

use crate::model::RecordKind;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Text,
    Integer,
    Time,
}

/// (column, type, nullable, pii, description)
type Column = (&'static str, Type, bool, Option<&'static str>, &'static str);

const COLUMNS: &[Column] = &[
    ("source", Type::Text, false, None, "The configured source name."),
    ("platform", Type::Text, false, None, "The source kind (its `kind` in the configuration)."),
    ("conversation_id", Type::Text, false, None, "The platform's id of the conversation (chat, conn_id)."),
    ("channel", Type::Text, true, None, "Lowercase channel: whatsapp, facebook, instagram, web, livechat, zalo, sms, app, ..."),
    ("status", Type::Text, true, None, "The conversation's state as the platform reports it (answered, missed, finished, active, ...)."),
    ("started_at", Type::Time, true, None, "When the conversation started."),
    ("ended_at", Type::Time, true, None, "When it ended, if it has."),
    ("updated_at", Type::Time, true, None, "When the platform last changed it (the version of the row)."),
    ("duration_s", Type::Integer, true, None, "Conversation length in whole seconds."),
    ("wait_s", Type::Integer, true, None, "Time the customer waited for an agent, in whole seconds."),
    ("agent_id", Type::Text, true, None, "The platform's id of the agent."),
    ("agent_name", Type::Text, true, Some("agent"), "The agent's name."),
    ("agent_email", Type::Text, true, Some("agent"), "The agent's e-mail address."),
    ("customer_id", Type::Text, true, Some("customer"), "The platform's id of the customer (contact, end user)."),
    ("customer_name", Type::Text, true, Some("customer"), "The customer's name."),
    ("customer_phone", Type::Text, true, Some("customer"), "The customer's phone number."),
    ("customer_email", Type::Text, true, Some("customer"), "The customer's e-mail address."),
    ("queue", Type::Text, true, None, "Queue, group or menu path that handled the conversation."),
    ("message_count", Type::Integer, true, None, "Messages in the conversation (as far as known)."),
    ("rating", Type::Integer, true, None, "The customer's rating, if any."),
    ("sentiment", Type::Text, true, None, "Sentiment the platform recognised."),
    ("disposition_code", Type::Text, true, None, "The code the agent classified the conversation with (Wolkvox `cod_act`)."),
    ("disposition", Type::Text, true, None, "That code's description."),
    ("comments", Type::Text, true, Some("customer"), "The agent's free-text notes on the conversation (can hold anything about the customer)."),
    ("message_id", Type::Text, false, None, "The platform's message id, or `d:` and a stable digest when it has none."),
    ("seq", Type::Integer, false, None, "0-based place of the message in its conversation, across windows, capped pieces and (with --state) runs; a rejected message keeps its place. Starts over only for a conversation not seen for a day or forgotten past 200,000 open ones."),
    ("sent_at", Type::Time, true, None, "When the message was sent."),
    ("sender", Type::Text, false, None, "Who wrote it."),
    ("sender_name", Type::Text, true, Some("customer"), "The name of who wrote it (a customer's when the customer wrote)."),
    ("recipient_name", Type::Text, true, Some("customer"), "The name of who it was for (a customer's when an agent or bot wrote)."),
    ("text", Type::Text, true, Some("customer"), "The message as sent: free text (which can hold anything a customer types), or JSON for attachments and templates."),
];

fn column(name: &str) -> &'static Column {
    COLUMNS
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("column {name} has no schema entry"))
}

/// The JSON Schema (draft 2020-12) of one record type.
pub fn schema(kind: RecordKind, include_raw: bool) -> Value {
    let mut properties = Map::new();
    for name in kind.columns() {
        let (_, ty, nullable, pii, description) = *column(name);
        let mut p = match (ty, nullable) {
            (Type::Text, false) => json!({"type": "string"}),
            (Type::Text, true) => json!({"type": ["string", "null"]}),
            (Type::Integer, false) => json!({"type": "integer"}),
            (Type::Integer, true) => json!({"type": ["integer", "null"]}),
            (Type::Time, _) => json!({"type": ["string", "null"], "format": "date-time"}),
        };
        p["description"] = json!(description);
        if *name == "sender" {
            p["enum"] = json!(["agent", "customer", "bot", "system", "unknown"]);
        }
        if *name == "platform" {
            let names: Vec<&str> = crate::source::registry::PLATFORMS
                .iter()
                .map(|p| p.name)
                .collect();
            p["enum"] = json!(names);
        }
        if let Some(class) = pii {
            p["x-pii"] = json!(class);
        }
        properties.insert(name.to_string(), p);
    }
    if include_raw {
        properties.insert(
            "raw".into(),
            json!({"description": "The platform's original JSON for the record (`--include-raw`); null for rows chatdump built itself.", "x-pii": "customer"}),
        );
    }
    let (title, id) = match kind {
        RecordKind::Conversations => ("chatdump conversation", "conversation"),
        RecordKind::Messages => ("chatdump message", "message"),
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://chatdump.invalid/schema/{id}.json"),
        "title": title,
        "description": "One JSON Lines record (CSV rows hold the same columns in the same order). Times are RFC 3339, in UTC unless --tz. Fields marked x-pii carry personal data: --redact replaces customer fields, --redact-agents agent fields too.",
        "type": "object",
        "properties": Value::Object(properties),
        "required": kind.columns(),
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_described_and_marked() {
        for kind in [RecordKind::Conversations, RecordKind::Messages] {
            let s = schema(kind, false);
            let props = s["properties"].as_object().unwrap();
            assert_eq!(props.len(), kind.columns().len());
            for name in kind.columns() {
                assert!(props[*name]["description"].is_string(), "{name}");
            }
        }
        let m = schema(RecordKind::Messages, true);
        assert_eq!(m["properties"]["customer_phone"]["x-pii"], "customer");
        assert_eq!(m["properties"]["text"]["x-pii"], "customer");
        assert_eq!(m["properties"]["sent_at"]["format"], "date-time");
        assert!(m["properties"]["raw"].is_object());
        let c = schema(RecordKind::Conversations, false);
        assert_eq!(c["properties"]["agent_email"]["x-pii"], "agent");
        assert!(c["properties"]["queue"].get("x-pii").is_none());
    }
}
