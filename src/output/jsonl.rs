//! JSON Lines rendering: one object per line, keys in the schema's order,
//! values never altered (no formula guard), `raw` appended verbatim with
//! `--include-raw`.

use std::io::{self, Write};

use crate::model::{digest_text, Cell, Record, RecordKind, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::output::Render;

/// Records are rendered into a buffer of about this size, which is written
/// out whole.
const BUFFER: usize = 64 * 1024;

pub struct JsonlWriter<W: Write> {
    out: W,
    /// Rendered lines not yet written. Rendering appends straight to it, so
    /// the dozens of small pieces of a line (keys, quotes, values) are
    /// copies into a vector, not calls to a writer.
    buffer: Vec<u8>,
    /// `,"name":` for each column after `source` and `platform`.
    conversation_keys: Vec<Box<[u8]>>,
    message_keys: Vec<Box<[u8]>>,
    /// What each line opens with before the record, and closes with after
    /// it: a Singer RECORD message around it.
    wrap: Option<(Box<[u8]>, &'static [u8])>,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        let keys = |columns: &[&str]| -> Vec<Box<[u8]>> {
            columns[2..]
                .iter()
                .map(|name| format!(",\"{name}\":").into_bytes().into_boxed_slice())
                .collect()
        };
        JsonlWriter {
            out,
            buffer: Vec::with_capacity(BUFFER + BUFFER / 4),
            conversation_keys: keys(CONVERSATION_COLUMNS),
            message_keys: keys(MESSAGE_COLUMNS),
            wrap: None,
        }
    }

    /// Each record as a Singer RECORD message of the stream `kind` names
    /// (`conversations`, `messages`).
    pub fn singer(out: W, kind: RecordKind) -> Self {
        let open = format!(
            "{{\"type\":\"RECORD\",\"stream\":\"{}\",\"record\":",
            kind.as_str()
        );
        JsonlWriter {
            wrap: Some((open.into_bytes().into_boxed_slice(), b"}")),
            ..JsonlWriter::new(out)
        }
    }

    pub fn write(&mut self, record: &Record, render: &Render) -> io::Result<()> {
        let line = &mut self.buffer;
        if let Some((open, _)) = &self.wrap {
            line.extend_from_slice(open);
        }
        line.extend_from_slice(b"{\"source\":");
        string(line, &render.source);
        line.extend_from_slice(b",\"platform\":");
        string(line, render.platform);
        let raw = match record {
            Record::Conversation(c) => {
                fields(line, &self.conversation_keys, &c.record.cells(), render);
                c.raw.as_deref()
            }
            Record::Message(m) => {
                fields(line, &self.message_keys, &m.record.cells(), render);
                m.raw.as_deref()
            }
        };
        if render.include_raw {
            line.extend_from_slice(b",\"raw\":");
            compact(line, raw.map_or("null", |r| r.get()).as_bytes());
        }
        line.push(b'}');
        if let Some((_, close)) = self.wrap {
            line.extend_from_slice(close);
        }
        line.push(b'\n');
        if self.buffer.len() >= BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        // Cleared even when writing fails: the export fails with the error,
        // and a later flush must not write a part of it again.
        let result = self.out.write_all(&self.buffer);
        self.buffer.clear();
        // One huge record (an inline image) grew it: not kept that large.
        self.buffer.shrink_to(BUFFER + BUFFER / 4);
        result
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

fn fields(line: &mut Vec<u8>, keys: &[Box<[u8]>], cells: &[Cell<'_>], render: &Render) {
    for (key, cell) in keys.iter().zip(cells) {
        line.extend_from_slice(key);
        match *cell {
            Cell::Null => line.extend_from_slice(b"null"),
            Cell::Str(s) => string(line, s),
            Cell::Digest(d) => {
                // Letters and digits only: no escaping needed.
                line.push(b'"');
                line.extend_from_slice(digest_text(d).as_bytes());
                line.push(b'"');
            }
            Cell::Int(n) => {
                let _ = write!(line, "{n}");
            }
            Cell::Time(t) => {
                // Digits and separators only: no escaping needed.
                line.push(b'"');
                render.push_time(t, line);
                line.push(b'"');
            }
            Cell::Attachments(list) => crate::model::attachments_json(list, line),
        }
    }
}

/// Writes JSON without the whitespace between tokens: platform JSON is often
/// pretty-printed, and a newline inside would split the JSON Lines record.
fn compact(w: &mut Vec<u8>, json: &[u8]) {
    if !json.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return w.extend_from_slice(json);
    }
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b.is_ascii_whitespace() {
            w.extend_from_slice(&json[start..i]);
            start = i + 1;
        }
    }
    w.extend_from_slice(&json[start..]);
}

/// Writes `s` as a JSON string, escaped exactly as `serde_json` does
/// (`\"`, `\\`, the short forms `\b \t \n \f \r`, `\u00XX` for other
/// control characters; everything else as is).
///
/// Hand-rolled because it runs over nearly every byte written: message
/// text rarely needs an escape, so it is checked eight bytes at a time and
/// copied in runs, where `serde_json` looks up every byte.
fn string(w: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    w.push(b'"');
    let mut clean_from = 0;
    while let Some(at) = crate::jsonstream::plain_run_end(bytes, clean_from) {
        w.extend_from_slice(&bytes[clean_from..at]);
        let b = bytes[at];
        match b {
            b'"' => w.extend_from_slice(b"\\\""),
            b'\\' => w.extend_from_slice(b"\\\\"),
            b'\n' => w.extend_from_slice(b"\\n"),
            b'\r' => w.extend_from_slice(b"\\r"),
            b'\t' => w.extend_from_slice(b"\\t"),
            0x08 => w.extend_from_slice(b"\\b"),
            0x0C => w.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (high, low) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]);
                w.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low])
            }
        }
        clean_from = at + 1;
    }
    w.extend_from_slice(&bytes[clean_from..]);
    w.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conversation, Item, CONVERSATION_COLUMNS};
    use serde_json::Value;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "",
            "plain",
            "exactly8",
            "\"",
            "a\\b",
            "line\nbreak\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "sixteen bytes ok\"",
            "ñandú \"São\" 😀 \u{2028}",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    /// Any text, mostly ASCII (where the bytes to escape are), at every
    /// offset within a word.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ascii = (0u8..0x80).prop_map(char::from);
        proptest::collection::vec(prop_oneof![3 => ascii, 1 => any::<char>()], 0..40)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(512))]

        #[test]
        fn any_string_escapes_like_serde_json(s in text()) {
            proptest::prop_assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn a_huge_record_is_written_whole_and_not_kept() {
        let text = "x".repeat(3 << 20);
        let record = Record::Message(Item {
            record: crate::model::Message {
                conversation_id: "c".into(),
                text: Some(text.clone()),
                ..Default::default()
            },
            raw: None,
        });
        let render = Render::for_tests("wolkvox");
        let mut w = JsonlWriter::new(Vec::new());
        w.write(&record, &render).unwrap();
        assert!(w.buffer.capacity() <= 2 * BUFFER, "{}", w.buffer.capacity());
        w.write(&record, &render).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 2);
        for line in out.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["text"].as_str(), Some(text.as_str()));
        }
    }

    #[test]
    fn pretty_raw_json_becomes_one_line() {
        let mut out = Vec::new();
        compact(
            &mut out,
            b"{\n  \"a b\": [1,\n 2],\r\n \"c\": \"x\\\" \\n y\"\n}",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a b":[1,2],"c":"x\" \n y"}"#
        );
    }

    #[test]
    fn keys_in_order_with_raw() {
        let raw = serde_json::value::RawValue::from_string("{\"x\": [1, 2]}".into()).unwrap();
        let rec = Record::Conversation(Box::new(Item {
            record: Conversation {
                conversation_id: "c\"1".into(),
                duration_s: Some(39),
                customer_name: Some("=Lê".into()),
                ..Default::default()
            },
            raw: Some(raw),
        }));
        let render = Render {
            include_raw: true,
            ..Render::for_tests("caresoft")
        };
        let mut w = JsonlWriter::new(Vec::new());
        w.write(&rec, &render).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1);
        let v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        let mut expected = CONVERSATION_COLUMNS.to_vec();
        expected.push("raw");
        let mut sorted = expected.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "every key once");
        let position = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        for pair in expected.windows(2) {
            assert!(
                position(pair[0]) < position(pair[1]),
                "{} before {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(v["conversation_id"], "c\"1");
        assert_eq!(v["duration_s"], 39);
        assert_eq!(v["customer_name"], "=Lê", "JSONL is never altered");
        assert_eq!(v["ended_at"], Value::Null);
        assert_eq!(v["raw"]["x"][1], 2);
    }
}
