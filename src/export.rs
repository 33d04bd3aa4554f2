//! The export pipeline: resolve the window, drive the source, and pass every
//! record through de-duplication, ordering and enrichment to the writer.
//!
//! Records stream from each page to the output. Messages are held back only
//! until their window is complete, because the platform's order within a
//! conversation (and thus `seq`) is known only then. De-duplication remembers
//! the current and the previous window, which covers every place a platform
//! can repeat a record (shifting pages, an inclusive upper bound) while
//! keeping memory bounded by two windows.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::config::{Config, SourceKind, SourceTable};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::log;
use crate::model::{Item, Message, Record, RecordKind, Rejected, Sender};
use crate::output::{Format, Output, Render};
use crate::source::caresoft::Caresoft;
use crate::source::{drive, ChatSource, ConversationContext, Parsed, Sink};
use crate::window::{parse_duration, parse_time, Window};

/// What the user asked for, validated: everything `export` and `demo` need
/// besides the source itself.
#[derive(Debug, Clone)]
pub struct Options {
    pub records: RecordKind,
    pub format: Option<Format>,
    /// The `-o` template, placeholders not yet expanded.
    pub output: Option<String>,
    pub tz: Option<Tz>,
    pub include_raw: bool,
    pub csv_raw: bool,
}

impl Options {
    pub fn format(&self) -> Format {
        self.format.unwrap_or_else(|| {
            self.output
                .as_deref()
                .map_or(Format::Jsonl, Format::from_path)
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.include_raw && self.format() == Format::Csv {
            return Err(
                Error::usage("--include-raw needs JSON Lines output; CSV rows are flat")
                    .with_hint("use --format jsonl or an output path ending in .jsonl"),
            );
        }
        Ok(())
    }
}

/// The window as the user gave it, before it meets a source's time zone.
#[derive(Debug, Clone, Default)]
pub struct WindowArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub since: Option<String>,
}

impl WindowArgs {
    /// [from, to): `--to` defaults to now minus the settle lag, `--from` to
    /// `--since` or the last 24 hours.
    pub fn resolve(&self, zone: Tz, settle: Duration, now: DateTime<Utc>) -> Result<Window> {
        let to = match &self.to {
            Some(t) => parse_time(t, zone).map_err(|e| Error::usage(format!("--to: {e}")))?,
            None => now - settle,
        };
        let from = match (&self.from, &self.since) {
            (Some(f), _) => {
                parse_time(f, zone).map_err(|e| Error::usage(format!("--from: {e}")))?
            }
            (None, Some(d)) => {
                now - parse_duration(d).map_err(|e| Error::usage(format!("--since: {e}")))?
            }
            (None, None) => now - Duration::hours(24),
        };
        if from >= to {
            return Err(Error::usage(format!(
                "the window is empty: from {} is not before to {}",
                from.format("%Y-%m-%dT%H:%M:%SZ"),
                to.format("%Y-%m-%dT%H:%M:%SZ")
            ))
            .with_hint("--to is exclusive and defaults to now minus the source's settle lag"));
        }
        Ok(Window::new(from, to))
    }
}

/// Counts for the summary line and the exit code.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub records: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub windows: usize,
    pub requests: usize,
}

/// `chatdump export SOURCE`.
pub async fn export(
    config: &Config,
    name: &str,
    window: &WindowArgs,
    options: &Options,
    dry_run: bool,
) -> Result<Stats> {
    options.validate()?;
    let table = config.source(name)?;
    with_source(&table, |source| async move {
        export_one(&source, name, window, options, dry_run).await
    })
    .await
}

/// Builds the provider a configured kind names and hands it to `f`. This is
/// the one `match` on the kind; everything after it is generic.
pub async fn with_source<T, F, Fut>(table: &SourceTable<'_>, f: F) -> Result<T>
where
    F: FnOnce(Caresoft) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match table.kind {
        SourceKind::Caresoft => f(Caresoft::from_config(table)?).await,
        other => Err(Error::config(format!(
            "source {:?}: kind {:?} is not available in this build yet",
            table.name,
            other.as_str()
        ))
        .with_hint("this version exports caresoft sources")),
    }
}

async fn export_one<S: ChatSource>(
    source: &S,
    name: &str,
    window_args: &WindowArgs,
    options: &Options,
    dry_run: bool,
) -> Result<Stats> {
    let started = Instant::now();
    let window = window_args.resolve(source.timezone(), source.settle(), Utc::now())?;
    let path = options
        .output
        .as_deref()
        .map(|t| expand_placeholders(t, name, &window, options.records));
    if dry_run {
        print_plan(source, name, &window, options, path.as_deref());
        return Ok(Stats::default());
    }
    let mut output = Output::create(
        path.as_deref(),
        options.format(),
        options.records,
        render(source, name, options),
    )?;
    let rejects = RejectLog::new(name, path.as_deref());
    let stats = run(
        source,
        name,
        window,
        options.records,
        options.include_raw,
        &mut output,
        rejects,
    )
    .await?;
    let target = output.describe();
    output.commit()?;
    log::info(&format!(
        "exported {} {} from {} window{} ({} request{}) in {:.1} s -> {target}",
        stats.records,
        options.records.as_str(),
        stats.windows,
        plural(stats.windows),
        stats.requests,
        plural(stats.requests),
        started.elapsed().as_secs_f64()
    ));
    Ok(stats)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn render<S: ChatSource>(source: &S, name: &str, options: &Options) -> Render {
    Render {
        source: name.to_string(),
        platform: source.kind().as_str(),
        tz: options.tz,
        include_raw: options.include_raw,
        csv_raw: options.csv_raw,
    }
}

/// Drives `source` over `window` into `output`. The caller commits.
pub async fn run<S: ChatSource>(
    source: &S,
    name: &str,
    window: Window,
    records: RecordKind,
    want_raw: bool,
    output: &mut Output,
    rejects: RejectLog,
) -> Result<Stats> {
    let connection = source.connection();
    let http = Http::new(
        name,
        connection.auth,
        connection.settings,
        connection.max_in_flight,
    )?;
    let mut pipeline = Pipeline::new(records, source.messages_in_order(), output, rejects);
    let driven = drive(source, &http, window, records, want_raw, &mut pipeline).await?;
    let mut stats = pipeline.finish()?;
    stats.windows = driven.windows;
    stats.requests = driven.requests;
    if stats.duplicates > 0 {
        log::verbose(&format!("skipped {} duplicate records", stats.duplicates));
    }
    Ok(stats)
}

fn print_plan<S: ChatSource>(
    source: &S,
    name: &str,
    window: &Window,
    options: &Options,
    path: Option<&Path>,
) {
    let slices = window.split(source.window_step(options.records));
    let mut queries = slices
        .iter()
        .map(|s| source.queries(*s, options.records).len())
        .sum::<usize>();
    if options.records == RecordKind::Messages && source.messages_need_conversations() {
        queries += slices
            .iter()
            .map(|s| source.queries(*s, RecordKind::Conversations).len())
            .sum::<usize>();
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "source:   {name} ({})\nwindow:   {} .. {} (UTC, end exclusive)\nrecords:  {}\nslices:   {} of at most {}\nrequests: at least {queries} (one per query; more when a query has several pages)\noutput:   {}",
        source.kind().as_str(),
        window.from.format("%Y-%m-%dT%H:%M:%SZ"),
        window.to.format("%Y-%m-%dT%H:%M:%SZ"),
        options.records.as_str(),
        slices.len(),
        crate::window::humanize(source.window_step(options.records)),
        path.map_or_else(|| "stdout".into(), |p| p.display().to_string()),
    );
    for slice in slices.iter().take(20) {
        let _ = writeln!(
            out,
            "  {} .. {}",
            slice.from.format("%Y-%m-%dT%H:%M:%SZ"),
            slice.to.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    if slices.len() > 20 {
        let _ = writeln!(out, "  ... and {} more", slices.len() - 20);
    }
}

/// Expands `{source}`, `{from}`, `{to}` (UTC, `%Y%m%dT%H%M%SZ`) and `{records}`.
pub fn expand_placeholders(
    template: &str,
    source: &str,
    window: &Window,
    records: RecordKind,
) -> PathBuf {
    PathBuf::from(
        template
            .replace("{source}", source)
            .replace("{from}", &window.from.format("%Y%m%dT%H%M%SZ").to_string())
            .replace("{to}", &window.to.format("%Y%m%dT%H%M%SZ").to_string())
            .replace("{records}", records.as_str()),
    )
}

/// Where rejected records are saved: beside the output file, or in the
/// current directory when writing to stdout. Created only when needed.
pub struct RejectLog {
    source: String,
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
}

impl RejectLog {
    pub fn new(source: &str, output: Option<&Path>) -> RejectLog {
        let path = match output {
            Some(p) => {
                let mut s = p.as_os_str().to_os_string();
                s.push(".rejects.jsonl");
                PathBuf::from(s)
            }
            None => PathBuf::from(format!("{source}.rejects.jsonl")),
        };
        RejectLog {
            source: source.to_string(),
            path,
            file: None,
            count: 0,
        }
    }

    fn save(&mut self, rejected: &Rejected) -> Result<()> {
        if self.file.is_none() {
            let f = std::fs::File::create(&self.path)
                .map_err(|e| Error::output(format!("cannot create {}", self.path.display()), e))?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let line = serde_json::json!({
            "source": self.source,
            "reason": rejected.reason,
            "raw": serde_json::from_str::<serde_json::Value>(&rejected.raw)
                .unwrap_or_else(|_| serde_json::Value::String(rejected.raw.clone())),
        });
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{line}")
            .map_err(|e| Error::output(format!("cannot write {}", self.path.display()), e))?;
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        if let Some(mut f) = self.file.take() {
            f.flush()
                .and_then(|_| f.get_ref().sync_all())
                .map_err(|e| Error::output(format!("cannot write {}", self.path.display()), e))?;
            log::warn(&format!(
                "{} record{} could not be read; saved with the reasons to {}",
                self.count,
                plural(self.count as usize),
                self.path.display()
            ));
        }
        Ok(self.count)
    }
}

/// Two generations of keys: the current window's and the previous one's.
#[derive(Default)]
struct Seen {
    current: HashSet<String>,
    previous: HashSet<String>,
}

impl Seen {
    /// True when `key` is new; records it.
    fn insert(&mut self, key: &str) -> bool {
        if self.previous.contains(key) || self.current.contains(key) {
            return false;
        }
        self.current.insert(key.to_string());
        true
    }

    fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// The [`Sink`] that turns driver output into written records.
struct Pipeline<'a> {
    records: RecordKind,
    /// Messages arrive grouped and ordered: no holding back.
    messages_in_order: bool,
    output: &'a mut Output,
    rejects: RejectLog,
    seen: Seen,
    /// Messages of the current window, written when it completes.
    pending: Vec<Item<Message>>,
    /// Next `seq` per conversation, for conversations spanning windows.
    next_seq: HashMap<String, u32>,
    /// Identical messages seen so far in this response, by digest, so two
    /// identical messages in one second get two ids, and the same two get
    /// the same ids when a later response repeats them.
    occurrences: HashMap<String, u32>,
    stats: Stats,
}

impl<'a> Pipeline<'a> {
    fn new(
        records: RecordKind,
        messages_in_order: bool,
        output: &'a mut Output,
        rejects: RejectLog,
    ) -> Self {
        Pipeline {
            records,
            messages_in_order,
            output,
            rejects,
            seen: Seen::default(),
            pending: Vec::new(),
            next_seq: HashMap::new(),
            occurrences: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn write_message(&mut self, mut m: Item<Message>) -> Result<()> {
        let seq = self
            .next_seq
            .entry(m.record.conversation_id.clone())
            .or_insert(0);
        m.record.seq = *seq;
        *seq += 1;
        self.write(&Record::Message(m))
    }

    fn write(&mut self, record: &Record) -> Result<()> {
        self.output.write(record)?;
        self.stats.records += 1;
        Ok(())
    }

    fn finish(self) -> Result<Stats> {
        debug_assert!(self.pending.is_empty(), "end_window flushes messages");
        let mut stats = self.stats;
        stats.rejected = self.rejects.finish()?;
        Ok(stats)
    }
}

impl Sink for Pipeline<'_> {
    fn accept(&mut self, item: Parsed, context: &ConversationContext) -> Result<bool> {
        match item {
            Parsed::Rejected(r) => {
                if !self.seen.insert(&format!("rejected:{}", r.raw)) {
                    return Ok(false);
                }
                self.rejects.save(&r)?;
                Ok(true)
            }
            Parsed::Record(record) if record.kind() != self.records => Ok(false),
            Parsed::Record(Record::Conversation(c)) => {
                if !self.seen.insert(&c.record.conversation_id) {
                    self.stats.duplicates += 1;
                    return Ok(false);
                }
                self.write(&Record::Conversation(c))?;
                Ok(true)
            }
            Parsed::Record(Record::Message(mut m)) => {
                if m.record.message_id.is_none() {
                    let base = m.record.digest_id(0);
                    let n = self.occurrences.entry(base.clone()).or_insert(0);
                    m.record.message_id = Some(if *n == 0 {
                        base
                    } else {
                        m.record.digest_id(*n)
                    });
                    *n += 1;
                }
                let id = m.record.message_id.as_deref().unwrap_or_default();
                if !self
                    .seen
                    .insert(&format!("{}\u{1f}{id}", m.record.conversation_id))
                {
                    self.stats.duplicates += 1;
                    return Ok(false);
                }
                if let Some(c) = context.by_id.get(&m.record.conversation_id) {
                    enrich(&mut m.record, c);
                }
                if self.messages_in_order {
                    self.write_message(m)?;
                } else {
                    self.pending.push(m);
                }
                Ok(true)
            }
        }
    }

    fn begin_response(&mut self) {
        self.occurrences.clear();
    }

    fn end_window(&mut self, _window: &Window) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        // Stable: rows without an order key keep the platform's order.
        pending.sort_by(|a, b| {
            (
                &a.record.conversation_id,
                a.record.order_key,
                a.record.sent_at,
            )
                .cmp(&(
                    &b.record.conversation_id,
                    b.record.order_key,
                    b.record.sent_at,
                ))
        });
        for m in pending {
            self.write_message(m)?;
        }
        self.seen.rotate();
        // `seq` continues across windows for conversations that span them;
        // the map is bounded like the de-duplication memory.
        if self.next_seq.len() > 200_000 {
            self.next_seq.clear();
        }
        Ok(())
    }
}

/// Fills a message's missing context from its conversation.
fn enrich(m: &mut Message, c: &crate::model::Conversation) {
    fn fill(slot: &mut Option<String>, from: &Option<String>) {
        if slot.is_none() {
            slot.clone_from(from);
        }
    }
    fill(&mut m.agent_name, &c.agent_name);
    fill(&mut m.agent_id, &c.agent_id);
    fill(&mut m.customer_id, &c.customer_id);
    fill(&mut m.customer_name, &c.customer_name);
    fill(&mut m.customer_phone, &c.customer_phone);
    fill(&mut m.channel, &c.channel);
    match m.sender {
        Sender::Customer => {
            fill(&mut m.sender_name, &c.customer_name);
            fill(&mut m.recipient_name, &c.agent_name);
        }
        Sender::Agent => {
            fill(&mut m.sender_name, &c.agent_name);
            fill(&mut m.recipient_name, &c.customer_name);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn window_defaults_and_errors() {
        let now = utc("2024-03-10T12:00:00Z");
        let zone = chrono_tz::Asia::Ho_Chi_Minh;
        let w = WindowArgs::default()
            .resolve(zone, Duration::minutes(10), now)
            .unwrap();
        assert_eq!(
            w,
            Window::new(utc("2024-03-09T12:00:00Z"), utc("2024-03-10T11:50:00Z"))
        );
        let since = WindowArgs {
            since: Some("36h".into()),
            ..Default::default()
        };
        assert_eq!(
            since.resolve(zone, Duration::zero(), now).unwrap().from,
            utc("2024-03-09T00:00:00Z")
        );
        let explicit = WindowArgs {
            from: Some("2024-03-01".into()),
            to: Some("2024-03-08".into()),
            ..Default::default()
        };
        assert_eq!(
            explicit.resolve(zone, Duration::zero(), now).unwrap(),
            Window::new(utc("2024-02-29T17:00:00Z"), utc("2024-03-07T17:00:00Z"))
        );
        let backwards = WindowArgs {
            from: Some("2024-03-08".into()),
            to: Some("2024-03-01".into()),
            ..Default::default()
        };
        assert_eq!(
            backwards
                .resolve(zone, Duration::zero(), now)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn placeholders() {
        let w = Window::new(utc("2024-03-01T00:00:00Z"), utc("2024-03-02T00:00:00Z"));
        assert_eq!(
            expand_placeholders(
                "/d/{source}/{from}-{to}.{records}.csv",
                "hanoi",
                &w,
                RecordKind::Messages
            ),
            PathBuf::from("/d/hanoi/20240301T000000Z-20240302T000000Z.messages.csv")
        );
    }

    #[test]
    fn seen_covers_two_windows() {
        let mut seen = Seen::default();
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        seen.rotate();
        assert!(!seen.insert("a"), "previous window remembered");
        seen.rotate();
        seen.rotate();
        assert!(seen.insert("a"), "forgotten after two windows");
    }
}
