//! Wolkvox report `reports_manager.php?api=chat_1`: one row per chat an
//! agent handled, with what `chat_2`'s messages lack (the agent's id, the
//! chat's duration and wait, the skill, the customer's e-mail and id, the
//! sentiment, and how the agent coded the chat). Read as conversation rows
//! that the pipeline joins to the messages by `conn_id`.
//!
//! Fields (vendor text in `api-docs/wolkvox-chat_1.es.txt`): `conn_id,
//! channel, date, customer_name, customer_email, customer_phone,
//! customer_chars, agent_id, agent_name, agent_chars, time_on_agent,
//! chat_duration, cod_act, description_cod_act, comments, customer_id,
//! skill_id, ASA, last_participant_who_spoke, extra_field, comment, user_id,
//! feeling, agent_anwers`. Every value is a string in the vendor's example,
//! empty when unknown, and one key carries a trailing space (`"agent_anwers
//! "`): keys are read trimmed and values leniently. Only a row without a
//! `conn_id` is rejected: a field that does not read (a date, a number) is
//! left empty, because the row's purpose is to add to a chat, never to lose
//! one.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::model::{Conversation, Item, Record};
use crate::source::fields;
use crate::source::Parsed;

/// Maps one `data` element of a `chat_1` answer.
pub fn parse(item: &[u8], zone: Tz, want_raw: bool, out: &mut dyn FnMut(Parsed)) {
    let row: Map<String, Value> = match fields::object(item) {
        Ok(row) => row,
        Err(e) => return out(Parsed::from_json_error(item, "unreadable chat_1 row", &e)),
    };
    // Trimmed keys: the documented example has `"agent_anwers "`.
    let row: Map<String, Value> = row
        .into_iter()
        .map(|(k, v)| (k.trim().to_string(), v))
        .collect();
    let field = |key: &str| fields::text(row.get(key));
    let Some(conversation_id) = field("conn_id") else {
        return out(Parsed::rejected(item, "chat_1 row without conn_id"));
    };
    let seconds = |key: &str| fields::seconds(row.get(key), key).ok().flatten();
    let notes: Vec<String> = ["comments", "comment"]
        .iter()
        .filter_map(|k| field(k))
        .map(|s| s.trim().to_string())
        .collect();
    let record = Conversation {
        conversation_id,
        channel: field("channel").map(|c| c.to_ascii_lowercase()),
        started_at: fields::local_time(row.get("date"), "date", zone)
            .ok()
            .flatten(),
        duration_s: seconds("chat_duration"),
        wait_s: seconds("ASA"),
        agent_id: field("agent_id"),
        agent_name: field("agent_name"),
        customer_id: field("customer_id"),
        customer_name: field("customer_name"),
        customer_phone: field("customer_phone"),
        customer_email: field("customer_email"),
        queue: field("skill_id"),
        sentiment: field("feeling"),
        disposition_code: field("cod_act"),
        disposition: field("description_cod_act"),
        // Two free-text fields with the same description: both are kept,
        // once each.
        comments: match notes.as_slice() {
            [] => None,
            [a, b] if a == b => Some(a.clone()),
            all => Some(all.join("\n")),
        },
        ..Default::default()
    };
    let raw = Parsed::raw_of(item, want_raw);
    out(Parsed::Record(Record::Conversation(Box::new(Item {
        record,
        raw,
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing;

    fn rows(body: &str) -> (Vec<Conversation>, Vec<String>) {
        let (mut ok, mut rejected) = (Vec::new(), Vec::new());
        let scanned: serde_json::Value = serde_json::from_str(body).unwrap();
        for row in scanned["data"].as_array().unwrap() {
            parse(
                row.to_string().as_bytes(),
                chrono_tz::America::Bogota,
                false,
                &mut |p| match p {
                    Parsed::Record(Record::Conversation(c)) => ok.push(c.record),
                    Parsed::Rejected(r) => rejected.push(r.reason),
                    other => panic!("{other:?}"),
                },
            );
        }
        (ok, rejected)
    }

    #[test]
    fn the_documented_fields() {
        let (rows, rejected) = rows(&testing::fixture("wolkvox/chat_1.json"));
        assert!(rejected.is_empty());
        assert_eq!(rows.len(), 3);
        let c = &rows[0];
        assert_eq!(c.conversation_id, "55501");
        assert_eq!(c.channel.as_deref(), Some("whatsapp"));
        assert_eq!(
            c.started_at.map(|t| t.to_rfc3339()),
            Some("2024-03-05T14:22:10+00:00".into()),
            "naive Bogota time"
        );
        assert_eq!(c.duration_s, Some(512));
        assert_eq!(c.wait_s, Some(35));
        assert_eq!(c.agent_id.as_deref(), Some("1001"));
        assert_eq!(
            c.customer_email.as_deref(),
            Some("maria.perez@correo.com.co")
        );
        assert_eq!(c.customer_id.as_deref(), Some("1020304050"));
        assert_eq!(c.queue.as_deref(), Some("3"));
        assert_eq!(c.sentiment.as_deref(), Some("positive"));
        assert_eq!(c.disposition_code.as_deref(), Some("12"));
        assert_eq!(c.disposition.as_deref(), Some("Venta plan hogar"));
        assert!(c.comments.as_deref().unwrap().contains("300 123 4567"));
        // Every value empty: nothing but the id.
        let empty = &rows[1];
        assert_eq!(empty.conversation_id, "55502");
        assert_eq!(
            Conversation {
                conversation_id: "55502".into(),
                ..Default::default()
            },
            *empty
        );
    }

    #[test]
    fn lenient_values_and_a_row_without_id() {
        let (rows, rejected) = rows(
            r#"{"code":200,"data":[
                {"conn_id":7,"date":"mañana","chat_duration":"00:08:32","ASA":"abc","comments":"x","comment":"x","agent_anwers ":"3"},
                {"conn_id":"","customer_name":"Ana"}
            ]}"#,
        );
        assert_eq!(rejected, ["chat_1 row without conn_id"]);
        assert_eq!(rows[0].conversation_id, "7");
        assert_eq!(rows[0].started_at, None, "an unreadable date is left empty");
        assert_eq!(rows[0].duration_s, Some(512));
        assert_eq!(rows[0].wait_s, None);
        assert_eq!(rows[0].comments.as_deref(), Some("x"), "kept once");
    }
}
