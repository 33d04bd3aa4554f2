//! Parquet rendering: typed columns in the CSV order, for lakes and DuckDB.
//!
//! Each column's type comes from the record schema (`model::COLUMNS`):
//! text as UTF-8 strings, integers as 64-bit integers, times as UTC
//! instants (microseconds; `--tz` only changes text renderings), `raw` as
//! JSON text. Records are gathered into Arrow arrays [`BATCH`] at a time
//! and written through the Arrow project's Parquet writer, zstd
//! compressed, in row groups of at most [`ROW_GROUP`] rows and [`ROW_GROUP_BYTES`]:
//! memory stays one row group whatever the export's length. The file's key-value metadata
//! carries chatdump's version and each column's description.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::model::{column, digest_text, Cell, ColumnType, Record, RecordKind};
use crate::output::Render;

/// Records gathered before they become one Arrow batch.
const BATCH: usize = 8192;
/// Rows of a row group: what the writer holds (encoded) before writing it;
/// and at most this many bytes of it, whatever the rows' size (a chat with
/// inline images).
const ROW_GROUP: usize = 16_384;
const ROW_GROUP_BYTES: usize = 12 << 20;

/// One column being gathered.
enum Column {
    Text(StringBuilder),
    Integer(Int64Builder),
    Time(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(ty: ColumnType) -> Column {
        match ty {
            ColumnType::Text | ColumnType::Json => Column::Text(StringBuilder::new()),
            ColumnType::Integer => Column::Integer(Int64Builder::new()),
            ColumnType::Time => {
                Column::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Column::Text(b), Cell::Str(s)) => b.append_value(s),
            (Column::Text(b), Cell::Digest(d)) => b.append_value(digest_text(d).as_str()),
            (Column::Text(b), Cell::Int(n)) => b.append_value(n.to_string()),
            (Column::Text(b), Cell::Attachments(list)) => {
                let mut json = Vec::new();
                crate::model::attachments_json(list, &mut json);
                b.append_value(String::from_utf8_lossy(&json))
            }
            (Column::Integer(b), Cell::Int(n)) => b.append_value(n),
            (Column::Time(b), Cell::Time(t)) => b.append_value(t.timestamp_micros()),
            (Column::Text(b), _) => b.append_null(),
            (Column::Integer(b), _) => b.append_null(),
            (Column::Time(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
        }
    }
}

/// The Arrow schema of `kind`'s records, `raw` last with `--include-raw`.
pub fn arrow_schema(kind: RecordKind, include_raw: bool) -> SchemaRef {
    let mut fields: Vec<Field> = kind
        .columns()
        .iter()
        .map(|name| {
            let (_, ty, nullable, _, _) = *column(name);
            let data_type = match ty {
                ColumnType::Text | ColumnType::Json => DataType::Utf8,
                ColumnType::Integer => DataType::Int64,
                ColumnType::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            Field::new(*name, data_type, nullable || ty == ColumnType::Time)
        })
        .collect();
    if include_raw {
        fields.push(Field::new("raw", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    columns: Vec<Column>,
    raw: Option<StringBuilder>,
    rows: usize,
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(out: W, kind: RecordKind, include_raw: bool) -> io::Result<Self> {
        let schema = arrow_schema(kind, include_raw);
        // Each column's meaning, from the record schema.
        let descriptions: serde_json::Map<String, serde_json::Value> = kind
            .columns()
            .iter()
            .map(|name| (name.to_string(), column(name).4.into()))
            .collect();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(into_io)?))
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(
                    "chatdump.version".into(),
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
                KeyValue::new(
                    "chatdump.descriptions".into(),
                    serde_json::Value::Object(descriptions).to_string(),
                ),
            ]))
            .build();
        let writer =
            ArrowWriter::try_new(out, schema.clone(), Some(properties)).map_err(into_io)?;
        Ok(ParquetWriter {
            writer,
            columns: kind
                .columns()
                .iter()
                .map(|name| Column::new(column(name).1))
                .collect(),
            raw: include_raw.then(StringBuilder::new),
            schema,
            rows: 0,
        })
    }

    pub fn write(&mut self, record: &Record, render: &Render) -> io::Result<()> {
        let mut columns = self.columns.iter_mut();
        let mut next = |cell| {
            if let Some(column) = columns.next() {
                column.push(cell);
            }
        };
        next(Cell::Str(&render.source));
        next(Cell::Str(render.platform));
        let raw = match record {
            Record::Conversation(c) => {
                c.record.cells().into_iter().for_each(&mut next);
                c.raw.as_deref()
            }
            Record::Message(m) => {
                m.record.cells().into_iter().for_each(&mut next);
                m.raw.as_deref()
            }
        };
        if let Some(builder) = self.raw.as_mut() {
            match raw {
                Some(raw) => builder.append_value(raw.get()),
                None => builder.append_null(),
            }
        }
        self.rows += 1;
        if self.rows >= BATCH {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        if let Some(raw) = self.raw.as_mut() {
            arrays.push(Arc::new(raw.finish()));
        }
        self.rows = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(into_io)?;
        self.writer.write(&batch).map_err(into_io)
    }

    /// Writes what is gathered; a row group is written once full (Parquet
    /// cannot show a reader half a file, so nothing more is flushed).
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_batch()
    }

    /// Writes the rest and the file's footer, and hands the stream back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.write_batch()?;
        self.writer.into_inner().map_err(into_io)
    }
}

fn into_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// Rewrites the Parquet file `temp` keeping only the rows `keep` marks,
/// in order, with the same schema and properties (one row per
/// conversation in a conversations file).
pub fn keep_rows(
    temp: &std::path::Path,
    keep: &[bool],
    kind: RecordKind,
    include_raw: bool,
) -> io::Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let rewritten = temp.with_file_name(format!(
        "{}.latest",
        temp.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(temp)?)
            .map_err(into_io)?
            .with_batch_size(BATCH)
            .build()
            .map_err(into_io)?;
        let file = crate::safefs::create_new(&rewritten, crate::safefs::existing_mode(temp))?;
        let mut out = ParquetWriter::new(file, kind, include_raw)?;
        let mut row = 0;
        for batch in reader {
            let batch = batch.map_err(into_io)?;
            let mask: arrow_array::BooleanArray = (row..row + batch.num_rows())
                .map(|r| Some(keep.get(r).copied().unwrap_or(true)))
                .collect();
            row += batch.num_rows();
            let kept = arrow_select::filter::filter_record_batch(&batch, &mask).map_err(into_io)?;
            out.writer.write(&kept).map_err(into_io)?;
        }
        let file = out.into_inner()?;
        file.sync_all()?;
        std::fs::rename(&rewritten, temp)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&rewritten);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn render() -> Render {
        Render {
            source: "hanoi".into(),
            platform: "caresoft",
            tz: Some(chrono_tz::Asia::Ho_Chi_Minh),
            include_raw: true,
            csv_raw: false,
        }
    }

    /// Every value read back as written: text (any Unicode), integers at
    /// their edges, UTC instants whatever `--tz`, nulls, raw JSON text.
    #[test]
    fn values_read_back_typed() {
        use crate::model::{Conversation, Item, Message};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        let mut writer = ParquetWriter::new(
            std::fs::File::create(&path).unwrap(),
            RecordKind::Messages,
            true,
        )
        .unwrap();
        let at: chrono::DateTime<chrono::Utc> = "2024-03-05T10:00:01Z".parse().unwrap();
        let texts = ["Xin chào 👋", "", "a\u{0}b\n\"c\"", "=SUM(A1)"];
        for (n, text) in texts.iter().enumerate() {
            let message = Message {
                conversation_id: format!("c{n}").into(),
                message_id: Some(crate::model::MessageId::Platform(format!("m{n}"))),
                seq: u32::MAX - n as u32,
                sent_at: (n % 2 == 0).then_some(at),
                text: Some(text.to_string()),
                ..Default::default()
            };
            let raw = serde_json::value::RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap();
            writer
                .write(
                    &Record::Message(Item {
                        record: message,
                        raw: Some(raw),
                    }),
                    &render(),
                )
                .unwrap();
        }
        let _ = Conversation::default();
        writer.into_inner().unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        let metadata = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        assert!(metadata.iter().any(|kv| kv.key == "chatdump.version"));
        let batch = reader.build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.num_rows(), texts.len());
        assert_eq!(batch.schema().field(0).name(), "source");
        let text = batch
            .column_by_name("text")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let seq = batch
            .column_by_name("seq")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let sent = batch
            .column_by_name("sent_at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let raw = batch
            .column_by_name("raw")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        for (n, expected) in texts.iter().enumerate() {
            assert_eq!(text.value(n), *expected);
            assert_eq!(seq.value(n), i64::from(u32::MAX - n as u32));
            assert_eq!(raw.value(n), format!("{{\"n\":{n}}}"));
            if n % 2 == 0 {
                assert_eq!(sent.value(n), at.timestamp_micros());
            } else {
                assert!(sent.is_null(n));
            }
        }
    }

    /// A conversations file rewritten keeping the rows marked: the others
    /// are gone, the kept ones and their order stay.
    #[test]
    fn keep_rows_drops_the_superseded() {
        use crate::model::{Conversation, Item};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parquet");
        let mut writer = ParquetWriter::new(
            std::fs::File::create(&path).unwrap(),
            RecordKind::Conversations,
            false,
        )
        .unwrap();
        let render = Render {
            include_raw: false,
            ..render()
        };
        for n in 0..10 {
            let record = Conversation {
                conversation_id: format!("c{}", n % 4),
                message_count: Some(n),
                ..Default::default()
            };
            writer
                .write(
                    &Record::Conversation(Box::new(Item { record, raw: None })),
                    &render,
                )
                .unwrap();
        }
        writer.into_inner().unwrap();
        let keep: Vec<bool> = (0..10).map(|n| n >= 6).collect();
        keep_rows(&path, &keep, RecordKind::Conversations, false).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let counts = batch
            .column_by_name("message_count")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(counts.values().to_vec(), [6, 7, 8, 9]);
        assert!(!dir.path().join("c.parquet.latest").exists());
    }
}
