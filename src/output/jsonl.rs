//! JSON Lines rendering: one object per line, keys in the schema's order,
//! values never altered (no formula guard), `raw` appended verbatim with
//! `--include-raw`.

use std::io::{self, BufWriter, Write};

use crate::model::{Cell, Record, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use crate::output::Render;

const BUFFER: usize = 64 * 1024;

pub struct JsonlWriter<W: Write> {
    inner: BufWriter<W>,
    scratch: String,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(stream: W) -> Self {
        JsonlWriter {
            inner: BufWriter::with_capacity(BUFFER, stream),
            scratch: String::with_capacity(32),
        }
    }

    pub fn write(&mut self, record: &Record, render: &Render) -> io::Result<()> {
        let w = &mut self.inner;
        w.write_all(b"{\"source\":")?;
        string(w, &render.source)?;
        w.write_all(b",\"platform\":")?;
        string(w, render.platform)?;
        let raw = match record {
            Record::Conversation(c) => {
                fields(
                    w,
                    &mut self.scratch,
                    &CONVERSATION_COLUMNS[2..],
                    &c.record.cells(),
                    render,
                )?;
                c.raw.as_deref()
            }
            Record::Message(m) => {
                fields(
                    w,
                    &mut self.scratch,
                    &MESSAGE_COLUMNS[2..],
                    &m.record.cells(),
                    render,
                )?;
                m.raw.as_deref()
            }
        };
        if render.include_raw {
            w.write_all(b",\"raw\":")?;
            compact(w, raw.map_or("null", |r| r.get()).as_bytes())?;
        }
        w.write_all(b"}\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    pub fn into_inner(self) -> io::Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))
    }
}

fn fields(
    w: &mut impl Write,
    scratch: &mut String,
    names: &[&str],
    cells: &[Cell<'_>],
    render: &Render,
) -> io::Result<()> {
    for (name, cell) in names.iter().zip(cells) {
        w.write_all(b",\"")?;
        w.write_all(name.as_bytes())?;
        w.write_all(b"\":")?;
        match *cell {
            Cell::Null => w.write_all(b"null")?,
            Cell::Str(s) => string(w, s)?,
            Cell::Int(n) => write!(w, "{n}")?,
            Cell::Time(t) => {
                // Digits and separators only: no escaping needed.
                scratch.clear();
                scratch.push('"');
                render.push_time(t, scratch);
                scratch.push('"');
                w.write_all(scratch.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Writes JSON without the whitespace between tokens: platform JSON is often
/// pretty-printed, and a newline inside would split the JSON Lines record.
fn compact(w: &mut impl Write, json: &[u8]) -> io::Result<()> {
    if !json.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return w.write_all(json);
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
            w.write_all(&json[start..i])?;
            start = i + 1;
        }
    }
    w.write_all(&json[start..])
}

fn string(w: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conversation, Item, CONVERSATION_COLUMNS};
    use serde_json::Value;

    #[test]
    fn pretty_raw_json_becomes_one_line() {
        let mut out = Vec::new();
        compact(
            &mut out,
            b"{\n  \"a b\": [1,\n 2],\r\n \"c\": \"x\\\" \\n y\"\n}",
        )
        .unwrap();
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
            source: "s".into(),
            platform: "caresoft",
            tz: None,
            include_raw: true,
            csv_raw: false,
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
