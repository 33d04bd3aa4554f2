//! Where records go: format choice, the output's writer thread and its
//! life cycle (this file), what a path names and how a file is moved into
//! place (`target.rs`), compression (`compression.rs`), how cells are
//! rendered (`render.rs`), the CSV, JSON Lines (and Singer) and Parquet
//! writers, and one row per conversation in a file (`latest.rs`).
//!
//! A file target is written under a temporary name beside it, then flushed,
//! fsynced and renamed on commit, so a reader (or the next cron run) never
//! sees a truncated file at the target path. An output dropped without
//! commit removes its temporary file. A symlink to a regular file is
//! followed: the file it names is replaced and the link stays a link.
//!
//! A target that is not a regular file (a FIFO, a device, `/dev/stdout`,
//! `-`) cannot be replaced by a rename without destroying what it is (as
//! root, `-o /dev/null` would replace the system's `/dev/null`): it is
//! written in place, like stdout.

mod compression;
mod csv;
mod jsonl;
mod latest;
#[cfg(feature = "parquet")]
mod parquet;
mod render;
mod target;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::model::{Record, RecordKind};
use crate::redact::Redactor;
pub use compression::Compression;
use compression::{Durability, Stream};
pub use render::Render;
use target::Target;
pub use target::{publish, sync_parent, Prepared};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    /// Singer RECORD messages (`chatdump tap`): each JSON Lines record as
    /// the `record` of a message naming its stream.
    Singer,
    /// Apache Parquet: typed columns, zstd-compressed (`parquet.rs`).
    Parquet,
}

impl Format {
    /// The format a path's extension asks for (`.csv`, `.jsonl`, `.ndjson`,
    /// each optionally `.gz` or `.zst`); JSON Lines otherwise.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        let stem = Compression::STRIPPED
            .iter()
            .find_map(|ext| lower.strip_suffix(ext))
            .unwrap_or(&lower);
        if stem.ends_with(".csv") {
            Format::Csv
        } else if stem.ends_with(".parquet") {
            Format::Parquet
        } else {
            Format::Jsonl
        }
    }
}

/// Test builds only (never a release): a message whose text holds
/// `CHATDUMP-TEST-PANIC`, when `CHATDUMP_TEST_PANIC` is set, panics the
/// writer thread with that text in the message, so tests can show what a
/// panic prints and leaves.
#[cfg(debug_assertions)]
fn panic_for_tests(record: &Record) {
    if let Record::Message(m) = record {
        let text = m.record.text.as_deref().unwrap_or_default();
        if text.contains("CHATDUMP-TEST-PANIC") && std::env::var_os("CHATDUMP_TEST_PANIC").is_some()
        {
            panic!("writing {text}");
        }
    }
}

enum Writer {
    Csv(Box<csv::CsvWriter<Stream>>),
    Jsonl(jsonl::JsonlWriter<Stream>),
    #[cfg(feature = "parquet")]
    Parquet(Box<parquet::ParquetWriter<Stream>>),
}

impl Writer {
    fn write(&mut self, record: &Record, render: &Render) -> io::Result<()> {
        match self {
            Writer::Csv(w) => w.write(record, render),
            Writer::Jsonl(w) => w.write(record, render),
            #[cfg(feature = "parquet")]
            Writer::Parquet(w) => w.write(record, render),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Csv(w) => w.flush(),
            Writer::Jsonl(w) => w.flush(),
            #[cfg(feature = "parquet")]
            Writer::Parquet(w) => w.flush(),
        }
    }

    fn into_stream(self) -> io::Result<Stream> {
        match self {
            Writer::Csv(w) => w.into_inner(),
            Writer::Jsonl(w) => w.into_inner(),
            #[cfg(feature = "parquet")]
            Writer::Parquet(w) => w.into_inner(),
        }
    }
}

/// What the writer thread hands back: its stream, and for a file of
/// conversations, which row is each one's newest.
type Written = (Stream, Option<latest::Latest>);

/// What the writer thread is told.
enum Message {
    Records(Vec<Record>),
    /// The records that follow come from another source (the demo).
    Origin(String, &'static str),
    /// Push everything written so far to the stream, then answer.
    Flush(SyncSender<io::Result<()>>),
}

/// A hand-over to the writer thread is this many records or this many bytes
/// of text, whichever comes first; two may wait. Enough to keep both cores
/// busy, little enough that memory stays flat with huge messages.
pub const BATCH: usize = 512;
pub const BATCH_BYTES: usize = 1 << 20;
const BATCHES_IN_FLIGHT: usize = 2;

/// An open output of one record kind. Rendering and writing run on a
/// thread of their own, so a large export uses both cores: one parses the
/// platform's response while the other writes.
pub struct Output {
    batch: Vec<Record>,
    batch_bytes: usize,
    sender: Option<SyncSender<Message>>,
    /// Written batches come back to be freed here: memory freed on another
    /// thread than the one that allocated it is slow with the system
    /// allocator, and the freed vectors are reused.
    returned: Option<Receiver<Vec<Record>>>,
    writer: Option<JoinHandle<io::Result<Written>>>,
    /// How the file is laid out, for [`latest::Latest::keep_newest`].
    csv: bool,
    /// A Parquet file's record type and whether it has `raw`, to rewrite
    /// it keeping each conversation's newest row.
    parquet: Option<(RecordKind, bool)>,
    compression: Compression,
    /// The path as the user gave it (None: stdout), for messages.
    shown: Option<PathBuf>,
    /// The regular file to replace on commit (symlinks resolved), and the
    /// temporary beside it; None when written in place.
    target: Option<PathBuf>,
    temp: Option<PathBuf>,
}

impl Output {
    /// Opens `path` (None: stdout) for records of `kind`. The CSV header is
    /// written at once, so an empty export is still a valid file.
    /// A `redactor` is applied on the writer thread, to every record before
    /// it is rendered: nothing personal reaches the stream.
    pub fn create(
        path: Option<&Path>,
        format: Format,
        kind: RecordKind,
        render: Render,
        redactor: Option<Redactor>,
    ) -> Result<Output> {
        let shown = path.map(Path::to_path_buf);
        let compression = path.map_or(Compression::None, Compression::from_path);
        let compress = |file: File, durability: Durability| compression.stream(file, durability);
        let cannot = |what: &str, p: &Path, e: io::Error| {
            Error::output(format!("cannot {what} {}", p.display()), e)
        };
        let target = match path {
            None => Target::Stdout,
            Some(p) => Target::of(p).map_err(|e| cannot("write", p, e))?,
        };
        let (stream, target, temp) = match target {
            Target::Stdout => (Stream::Stdout(io::stdout()), None, None),
            Target::InPlace(p) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| cannot("open", &p, e))?;
                let stream =
                    compress(file, Durability::InPlace).map_err(|e| cannot("open", &p, e))?;
                (stream, None, None)
            }
            Target::Atomic(target) => {
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| cannot("create directory", dir, e))?;
                }
                crate::safefs::remove_stale_temps(&target);
                let temp = crate::safefs::temp_beside(&target);
                // A file being replaced keeps the permissions it was given;
                // a new one is the owner's alone (it holds personal data).
                let mode = crate::safefs::existing_mode(&target);
                let file = crate::safefs::create_new(&temp, mode)
                    .map_err(|e| cannot("create", &temp, e))?;
                let stream =
                    compress(file, Durability::Sync).map_err(|e| cannot("create", &temp, e))?;
                (stream, Some(target), Some(temp))
            }
        };
        let mut out = Output {
            batch: Vec::with_capacity(BATCH),
            batch_bytes: 0,
            sender: None,
            returned: None,
            writer: None,
            csv: format == Format::Csv,
            parquet: (format == Format::Parquet).then_some((kind, render.include_raw)),
            compression,
            shown,
            target,
            temp,
        };
        let mut writer = match format {
            Format::Csv => Writer::Csv(Box::new(
                csv::CsvWriter::new(stream, kind).map_err(|e| out.io_error(e))?,
            )),
            Format::Jsonl => Writer::Jsonl(jsonl::JsonlWriter::new(stream)),
            Format::Singer => Writer::Jsonl(jsonl::JsonlWriter::singer(stream, kind)),
            #[cfg(feature = "parquet")]
            Format::Parquet => Writer::Parquet(Box::new(
                parquet::ParquetWriter::new(stream, kind, render.include_raw)
                    .map_err(|e| out.io_error(e))?,
            )),
            #[cfg(not(feature = "parquet"))]
            Format::Parquet => {
                return Err(Error::usage(
                    "this chatdump was built without Parquet (the `parquet` feature)",
                ))
            }
        };
        let (sender, receiver) = sync_channel::<Message>(BATCHES_IN_FLIGHT);
        let (give_back, returned) = channel::<Vec<Record>>();
        let mut render = render;
        // A file can be rewritten at commit: remember each conversation's
        // newest row. stdout and in-place targets stay a changelog.
        let mut newest =
            (kind == RecordKind::Conversations && out.temp.is_some()).then(latest::Latest::default);
        let handle = std::thread::Builder::new()
            .name("chatdump-writer".into())
            .spawn(move || {
                for message in receiver {
                    match message {
                        Message::Records(mut records) => {
                            for record in &mut records {
                                if let (Some(newest), Record::Conversation(c)) =
                                    (newest.as_mut(), &*record)
                                {
                                    newest.note(
                                        &render.source,
                                        &c.record.conversation_id,
                                        c.record.updated_at,
                                    );
                                }
                                if let Some(r) = &redactor {
                                    r.apply(record);
                                }
                                #[cfg(debug_assertions)]
                                panic_for_tests(record);
                                writer.write(record, &render)?;
                            }
                            let _ = give_back.send(records);
                        }
                        Message::Origin(source, platform) => {
                            render.source = source;
                            render.platform = platform;
                        }
                        Message::Flush(done) => {
                            let result = writer.flush();
                            let failed = result
                                .as_ref()
                                .err()
                                .map(|e| io::Error::new(e.kind(), e.to_string()));
                            let _ = done.send(result);
                            if let Some(e) = failed {
                                return Err(e);
                            }
                        }
                    }
                }
                Ok((writer.into_stream()?, newest))
            })
            .map_err(|e| out.io_error(e))?;
        out.sender = Some(sender);
        out.returned = Some(returned);
        out.writer = Some(handle);
        Ok(out)
    }

    pub fn write(&mut self, record: Record) -> Result<()> {
        self.batch_bytes += record.text_len();
        self.batch.push(record);
        if self.batch.len() >= BATCH || self.batch_bytes >= BATCH_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// [`Output::write`] of many records at once; they go to the writer
    /// thread in the list they came in when nothing is waiting before them.
    pub fn write_batch(&mut self, mut records: Vec<Record>) -> Result<()> {
        self.batch_bytes += records.iter().map(Record::text_len).sum::<usize>();
        if self.batch.is_empty() {
            self.batch = records;
        } else {
            self.batch.append(&mut records);
        }
        if self.batch.len() >= BATCH || self.batch_bytes >= BATCH_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    fn hand_over(&mut self) -> Result<()> {
        let mut next = None;
        if let Some(returned) = &self.returned {
            while let Ok(mut written) = returned.try_recv() {
                written.clear();
                next = Some(written);
            }
        }
        let next = next.unwrap_or_else(|| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.batch, next);
        self.batch_bytes = 0;
        self.send(Message::Records(batch))
    }

    fn send(&mut self, message: Message) -> Result<()> {
        let sender = self.sender.as_ref().expect("sender present until commit");
        if sender.send(message).is_err() {
            // The writer stopped: its error says why.
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => self.io_error(io::Error::other("the writer stopped")),
            });
        }
        Ok(())
    }

    /// Waits for the writer thread and takes back its stream.
    fn join(&mut self) -> Result<Written> {
        self.sender = None;
        let handle = self.writer.take().expect("writer joined once");
        match handle.join() {
            Ok(result) => result.map_err(|e| self.io_error(e)),
            Err(_) => Err(self.io_error(io::Error::other("the writer thread panicked"))),
        }
    }

    /// Flushes, syncs and moves the file into place.
    pub fn commit(self) -> Result<()> {
        self.prepare()?.publish()
    }

    /// Flushes and syncs everything under the temporary name, without
    /// moving it into place yet: the caller may first record that it will
    /// (the state's pending rename), so a crash in between cannot separate
    /// the file from its checkpoint.
    pub fn prepare(mut self) -> Result<Prepared> {
        self.hand_over()?;
        let (stream, newest) = self.join()?;
        stream.finish().map_err(|e| self.io_error(e))?;
        let mut superseded = 0;
        if let (Some(newest), Some(temp)) = (newest, &self.temp) {
            if newest.repeated() {
                match self.parquet {
                    #[cfg(feature = "parquet")]
                    Some((kind, raw)) => parquet::keep_rows(temp, &newest.keep_mask(), kind, raw),
                    _ => newest.keep_newest(temp, self.csv, self.compression),
                }
                .map_err(|e| self.io_error(e))?;
                superseded = newest.superseded();
            }
        }
        Ok(Prepared {
            temp: self.temp.take(),
            target: self.target.take(),
            kept_by_state: false,
            superseded,
        })
    }

    /// Hands every record so far to the stream and waits until it is there
    /// (follow mode: each poll reaches the reader at once).
    pub fn flush(&mut self) -> Result<()> {
        self.hand_over()?;
        let (done, result) = sync_channel(1);
        self.send(Message::Flush(done))?;
        match result.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error(e)),
            Err(_) => Err(match self.join() {
                Err(e) => e,
                Ok(_) => self.io_error(io::Error::other("the writer stopped")),
            }),
        }
    }

    /// Names the source of the records that follow (the demo writes
    /// several sources into one output).
    pub fn set_origin(&mut self, source: &str, platform: &'static str) -> Result<()> {
        self.hand_over()?;
        self.send(Message::Origin(source.to_string(), platform))
    }

    pub fn describe(&self) -> String {
        self.shown
            .as_ref()
            .map_or_else(|| "stdout".into(), |p| p.display().to_string())
    }

    fn io_error(&self, e: io::Error) -> Error {
        Error::output(format!("cannot write {}", self.describe()), e)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Uncommitted: stop the writer, then remove what it wrote.
        self.sender = None;
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(2048))]

        /// Any instant chrono holds, rendered in any zone, never panics; one
        /// a reader takes (`in_range`) is RFC 3339 that reads back as itself.
        #[test]
        fn every_instant_renders_in_every_zone(
            seconds in chrono::DateTime::<Utc>::MIN_UTC.timestamp()..=chrono::DateTime::<Utc>::MAX_UTC.timestamp(),
            edge in 0usize..6,
            zone in 0..chrono_tz::TZ_VARIANTS.len(),
        ) {
            let edges = [
                chrono::DateTime::<Utc>::MIN_UTC.timestamp(),
                chrono::DateTime::<Utc>::MAX_UTC.timestamp(),
                -62_135_596_800 + 86_400,
                253_402_214_399,
                0,
                seconds,
            ];
            let t = chrono::DateTime::<Utc>::from_timestamp(edges[edge], 0).unwrap();
            let mut render = Render::for_tests("x");
            render.tz = Some(chrono_tz::TZ_VARIANTS[zone]);
            let mut out = Vec::new();
            render.push_time(t, &mut out);
            let text = String::from_utf8(out).unwrap();
            if crate::window::in_range(t) {
                let back = chrono::DateTime::parse_from_rfc3339(&text);
                proptest::prop_assert_eq!(back.map(|b| b.to_utc()), Ok(t), "{}", text);
            }
        }
    }

    use crate::model::{Conversation, Item};

    fn render() -> Render {
        Render::for_tests("caresoft")
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(Format::from_path("a.csv"), Format::Csv);
        assert_eq!(Format::from_path("a.CSV.gz"), Format::Csv);
        assert_eq!(Format::from_path("a.jsonl.gz"), Format::Jsonl);
        assert_eq!(Format::from_path("a.csv.zst"), Format::Csv);
        assert_eq!(
            Compression::from_path(Path::new("a.csv.ZST")),
            Compression::Zstd
        );
        assert_eq!(Compression::from_path(Path::new("a.gz")), Compression::Gzip);
        assert_eq!(
            Compression::from_path(Path::new("a.csv")),
            Compression::None
        );
        assert_eq!(Format::from_path("a.ndjson"), Format::Jsonl);
        assert_eq!(Format::from_path("a.txt"), Format::Jsonl);
    }

    #[test]
    fn times_in_utc_or_zone() {
        let t = DateTime::parse_from_rfc3339("2024-03-05T19:22:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut r = render();
        assert_eq!(r.time(t), "2024-03-05T19:22:10Z");
        r.tz = Some(chrono_tz::America::Bogota);
        assert_eq!(r.time(t), "2024-03-05T14:22:10-05:00");
        r.tz = Some(chrono_tz::UTC);
        assert_eq!(r.time(t), "2024-03-05T19:22:10+00:00");
        r.tz = Some(chrono_tz::Asia::Kolkata);
        assert_eq!(r.time(t), "2024-03-06T00:52:10+05:30");
        for zone in [
            None,
            Some(chrono_tz::Asia::Ho_Chi_Minh),
            Some(chrono_tz::America::St_Johns),
        ] {
            r.tz = zone;
            let expected = match zone {
                Some(z) => t
                    .with_timezone(&z)
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
                None => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            };
            assert_eq!(r.time(t), expected, "{zone:?}");
        }
    }

    #[test]
    fn file_appears_only_on_commit_and_gz_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.csv.gz");
        let mut out = Output::create(
            Some(&target),
            Format::Csv,
            RecordKind::Conversations,
            render(),
            None,
        )
        .unwrap();
        out.write(Record::Conversation(Box::new(Item {
            record: Conversation {
                conversation_id: "c1".into(),
                ..Default::default()
            },
            raw: None,
        })))
        .unwrap();
        assert!(!target.exists());
        out.commit().unwrap();
        let mut text = String::new();
        io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&target).unwrap()),
            &mut text,
        )
        .unwrap();
        assert!(text.starts_with("source,platform,conversation_id,"));
        assert!(text.contains("\ns,caresoft,c1,"));
        assert_eq!(
            std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        let out = Output::create(
            Some(&target),
            Format::Jsonl,
            RecordKind::Messages,
            render(),
            None,
        )
        .unwrap();
        drop(out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A prepared file whose state could not be saved (a full disk) leaves
    /// no temporary behind; one a saved state names is kept for the next
    /// run to move, even if this run's move fails.
    #[test]
    fn a_prepared_file_goes_unless_a_state_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        let prepare = || {
            let mut out = Output::create(
                Some(&target),
                Format::Jsonl,
                RecordKind::Messages,
                render(),
                None,
            )
            .unwrap();
            out.write(Record::Message(Item {
                record: Default::default(),
                raw: None,
            }))
            .unwrap();
            out.prepare().unwrap()
        };
        drop(prepare());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed");
        let mut kept = prepare();
        let temp = kept.temp.clone().unwrap();
        kept.keep_for_state();
        // The move fails (a directory stands at the target).
        std::fs::create_dir(&target).unwrap();
        assert!(kept.publish().is_err());
        assert!(temp.exists(), "the state's pending rename still finds it");
    }
}
