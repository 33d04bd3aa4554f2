//! CSV rendering (RFC 4180, UTF-8, `\n`, one header row).
//!
//! `csv::Writer` is already buffered, so its buffer is raised rather than
//! wrapped in another. Cells that a spreadsheet would run as a formula are
//! prefixed with `'` unless `--csv-raw` (the README's "Records").

use std::io::{self, Write};

use crate::model::{digest_text, Cell, Record, RecordKind};
use crate::output::Render;

const BUFFER: usize = 64 * 1024;

pub struct CsvWriter<W: Write> {
    inner: ::csv::Writer<W>,
    scratch: Vec<u8>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(stream: W, kind: RecordKind) -> io::Result<Self> {
        let mut inner = ::csv::WriterBuilder::new()
            .buffer_capacity(BUFFER)
            .terminator(::csv::Terminator::Any(b'\n'))
            .from_writer(stream);
        inner.write_record(kind.columns()).map_err(into_io)?;
        Ok(CsvWriter {
            inner,
            scratch: Vec::new(),
        })
    }

    pub fn write(&mut self, record: &Record, render: &Render) -> io::Result<()> {
        self.field(Cell::Str(&render.source), render)?;
        self.field(Cell::Str(render.platform), render)?;
        match record {
            Record::Conversation(c) => {
                for cell in c.record.cells() {
                    self.field(cell, render)?;
                }
            }
            Record::Message(m) => {
                for cell in m.record.cells() {
                    self.field(cell, render)?;
                }
            }
        }
        self.inner.write_record(None::<&[u8]>).map_err(into_io)
    }

    fn field(&mut self, cell: Cell<'_>, render: &Render) -> io::Result<()> {
        self.scratch.clear();
        let text: &[u8] = match cell {
            Cell::Null => b"",
            Cell::Str(s) if !render.csv_raw && needs_guard(s) => {
                self.scratch.push(b'\'');
                self.scratch.extend_from_slice(s.as_bytes());
                &self.scratch
            }
            Cell::Str(s) => s.as_bytes(),
            Cell::Digest(d) => {
                self.scratch.extend_from_slice(digest_text(d).as_bytes());
                &self.scratch
            }
            Cell::Int(n) => {
                let _ = write!(self.scratch, "{n}");
                &self.scratch
            }
            Cell::Time(t) => {
                render.push_time(t, &mut self.scratch);
                &self.scratch
            }
            Cell::Attachments(list) => {
                crate::model::attachments_json(list, &mut self.scratch);
                &self.scratch
            }
        };
        self.inner.write_field(text).map_err(into_io)
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

/// Whether a spreadsheet would read the cell as a formula.
fn needs_guard(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

fn into_io(e: ::csv::Error) -> io::Error {
    match e.into_kind() {
        ::csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Item, Message};

    fn render(csv_raw: bool) -> Render {
        Render {
            source: "src".into(),
            platform: "caresoft",
            tz: None,
            include_raw: false,
            csv_raw,
        }
    }

    fn row(text: &str, csv_raw: bool) -> String {
        let mut w = CsvWriter::new(Vec::new(), RecordKind::Messages).unwrap();
        let m = Message {
            conversation_id: "c".into(),
            text: Some(text.into()),
            ..Default::default()
        };
        w.write(
            &Record::Message(Item {
                record: m,
                raw: None,
            }),
            &render(csv_raw),
        )
        .unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        out.lines().skip(1).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn formula_guard() {
        assert!(row("=1+1", false).contains(",'=1+1,"));
        assert!(row("=1+1", true).contains(",=1+1,"));
        assert!(row("-5", false).contains(",'-5,"));
        assert!(row("@x", false).contains(",'@x,"));
        assert!(row("hola", false).contains(",hola,"));
    }

    #[test]
    fn quoting_and_newlines() {
        let mut w = CsvWriter::new(Vec::new(), RecordKind::Messages).unwrap();
        let m = Message {
            conversation_id: "c".into(),
            text: Some("a, \"b\"\nc".into()),
            ..Default::default()
        };
        w.write(
            &Record::Message(Item {
                record: m,
                raw: None,
            }),
            &render(false),
        )
        .unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(out.contains(",\"a, \"\"b\"\"\nc\","), "{out}");
        assert!(out.ends_with('\n') && !out.contains('\r'));
        let mut reader = ::csv::Reader::from_reader(out.as_bytes());
        let rec = reader.records().next().unwrap().unwrap();
        assert_eq!(&rec[10], "a, \"b\"\nc");
        assert_eq!(&rec[4], "0");
        assert_eq!(&rec[6], "unknown");
    }
}
