//! `chatdump schema`: the JSON Schema of the records the writers emit, with
//! every field that can carry personal data marked.
//!
//! The column lists in `model.rs` decide the shape; this module describes
//! each column once (type, nullability, personal data, meaning), and a test
//! keeps the two in step. Personal data is marked with the `x-pii` keyword:
//! `"customer"` or `"agent"`, what `--redact` and `--redact-agents` act on.

use serde_json::{json, Map, Value};

use crate::model::{column, ColumnType as Type, RecordKind};

/// One element of a message's `attachments`.
fn attachment_schema() -> Value {
    let text = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "required": ["sha256", "content_type", "bytes", "name", "path", "url", "status"],
        "properties": {
            "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "content_type": text,
            "bytes": {"type": ["integer", "null"], "minimum": 0},
            "name": text,
            "path": text,
            "url": text,
            "status": {"enum": ["stored", "not_fetched", "redacted", "unavailable", "expired", "refused", "too_large", "wrong_type", "timed_out", "unreadable"]}
        }
    })
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
            (Type::Json, _) => json!({"type": "array", "items": attachment_schema()}),
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
