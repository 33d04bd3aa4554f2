//! One export run: resolve the window (from the flags, or from the state's
//! checkpoint), cut it into output chunks, drive the source into each
//! chunk's output through the pipeline, commit the output, then advance the
//! state. With a fixed output path or stdout there is one chunk and one
//! commit; with `{from}`/`{to}` in the path each chunk is its own file and
//! its own checkpoint, so a long backfill that dies resumes where it died.
//!
//! Read top-down: `args` (what the user asked for), this file (the window
//! policy, the run: driver -> pipeline -> output -> commit -> state),
//! `plan` (`--dry-run`), `shutdown` (signals). The pipeline and the
//! rejects log it feeds are modules of their own.

mod args;
mod plan;
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, SubsecRound, Utc};

pub use self::args::{Options, RedactOptions, WindowArgs};
pub use self::plan::expand_placeholders;
use self::plan::print_plan;
use self::shutdown::Shutdown;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::log;
use crate::model::RecordKind;
use crate::output::{Output, Render};
use crate::pipeline::{Memory, Pipeline, Shape, Stats};
use crate::redact::{Mode as RedactMode, Redactor};
use crate::rejects::RejectLog;
use crate::source::{drive, ChatSource};
use crate::state::{with_suffix, LedgerEntry, PendingRename, State};
use crate::state_store::StateStore;
use crate::store::Place;
use crate::window::{humanize, Window, MAX_SLICES};

/// `chatdump export SOURCE`.
pub async fn export(
    config: &Config,
    name: &str,
    window: &WindowArgs,
    options: &Options,
    dry_run: bool,
) -> Result<Stats> {
    options.validate()?;
    let redactor = redactor(options, config.redact_key_env.as_deref())?;
    let table = config.source(name)?;
    let platform = crate::source::registry::platform_of(&table)?;
    let phones = table.phone_regions(platform.home)?;
    let redactor = redactor.map(|r| r.with_phone_regions(phones));
    let redactor = redactor.as_ref();
    let source = (platform.build)(&table)?;
    export_one(&*source, name, window, options, redactor, dry_run).await
}

async fn export_one(
    source: &dyn ChatSource,
    name: &str,
    window_args: &WindowArgs,
    options: &Options,
    redactor: Option<&Redactor>,
    dry_run: bool,
) -> Result<Stats> {
    let started = Instant::now();
    let mut export = Exporter::open(source, name, window_args, options, redactor, dry_run).await?;
    let outcome = export_windows(&mut export, dry_run).await;
    // A lock kept in a bucket outlives the process: it is let go however
    // the run ended (one killed outright expires instead).
    let state = export.state.take();
    let outcome = match outcome {
        Ok(true) => export.finish(started),
        Ok(false) => Ok(Stats::default()),
        Err(e) => Err(e),
    };
    if let Some(state) = state {
        state.release().await;
    }
    outcome
}

/// Every window of the run (every poll, following); false for a dry run,
/// which only prints the plan.
async fn export_windows(export: &mut Exporter<'_>, dry_run: bool) -> Result<bool> {
    let (source, name, options) = (export.source, export.name, export.options);
    let shutdown = (!dry_run).then(Shutdown::listen);
    // Following, a poll under way gets a moment to finish and be saved;
    // otherwise a signal ends the run at once, committing nothing more.
    let grace = match options.follow {
        Some(_) => std::time::Duration::from_secs(3),
        None => std::time::Duration::ZERO,
    };
    let mut first_poll = true;
    loop {
        let window = export.next_window(first_poll)?;
        first_poll = false;
        let chunks = export.chunks(window)?;
        if dry_run {
            if let Some(w) = window {
                let state = export.state.as_ref().map(StateStore::shown);
                print_plan(source, name, &w, options, &chunks, state.as_deref());
            }
            return Ok(false);
        }
        for chunk in &chunks {
            match &shutdown {
                Some(s) => s.guard(export.chunk(*chunk), grace).await?,
                None => export.chunk(*chunk).await?,
            }
            if shutdown.as_ref().is_some_and(Shutdown::requested) {
                break;
            }
        }
        let (Some(interval), Some(shutdown)) = (options.follow, &shutdown) else {
            break;
        };
        if !shutdown.wait(interval).await {
            break;
        }
    }
    if shutdown.as_ref().is_some_and(Shutdown::requested) && options.follow.is_none() {
        return Err(Shutdown::interrupted());
    }
    Ok(true)
}

/// One `export` run: its state, memory and outputs across chunks and polls.
struct Exporter<'a> {
    source: &'a dyn ChatSource,
    name: &'a str,
    window_args: &'a WindowArgs,
    options: &'a Options,
    redactor: Option<&'a Redactor>,
    /// One client for the whole run: pacing, the shared pause after a 429
    /// and the throttle count carry across chunks and polls.
    http: Http,
    state: Option<StateStore>,
    /// The end of the last chunk written (from the state at first).
    checkpoint: Option<DateTime<Utc>>,
    memory: Memory,
    /// Following into stdout: one stream for every poll, flushed after each.
    stream: Option<Output>,
    total: Stats,
    targets: Vec<String>,
}

impl<'a> Exporter<'a> {
    async fn open(
        source: &'a dyn ChatSource,
        name: &'a str,
        window_args: &'a WindowArgs,
        options: &'a Options,
        redactor: Option<&'a Redactor>,
        dry_run: bool,
    ) -> Result<Self> {
        let kind = source.kind().as_str();
        source
            .records_supported(options.records)
            .map_err(|why| Error::usage(format!("source {name:?}: {why}")))?;
        if options.follow.is_some() && options.output.is_some() && !Self::templated(options) {
            return Err(Error::usage(
                "--follow writes to stdout, or to a path with {from} or {to} (one file per poll)",
            ));
        }
        if source.is_snapshot()
            && (window_args.from.is_some()
                || window_args.since.is_some()
                || window_args.to.is_some())
        {
            log::warn(&format!(
                "{name}: {kind} answers with what is active now; --from/--to/--since are ignored"
            ));
        }
        let connection = source.connection();
        let http = Http::new(
            name,
            connection.auth,
            connection.settings,
            connection.max_in_flight,
        )?;
        let state = match &options.state {
            Some(path) => {
                Some(StateStore::open(path, name, kind, options.records.as_str(), dry_run).await?)
            }
            None => None,
        };
        let saved = state.as_ref().and_then(StateStore::state);
        let checkpoint = saved.map(|s| s.checkpoint);
        let memory = match (&state, saved) {
            (None, _) => Memory::default(),
            (Some(_), Some(s)) => {
                Memory::carrying(s.keys()?, s.legacy_keys, s.awaiting.clone(), &s.chats)
            }
            (Some(_), None) => Memory::carrying(Vec::new(), false, Vec::new(), &[]),
        };
        Ok(Exporter {
            source,
            name,
            window_args,
            options,
            redactor,
            http,
            state,
            checkpoint,
            memory,
            stream: None,
            total: Stats::default(),
            targets: Vec::new(),
        })
    }

    fn templated(options: &Options) -> bool {
        options
            .output
            .as_deref()
            .is_some_and(plan::has_window_placeholder)
    }

    /// The window of this poll; None when nothing is new since the checkpoint.
    fn next_window(&self, first_poll: bool) -> Result<Option<Window>> {
        let now = Utc::now().trunc_subsecs(0);
        if self.source.is_snapshot() {
            // No window: the interval since the last snapshot only names
            // files and ledger entries.
            let from = self
                .checkpoint
                .filter(|c| *c < now)
                .unwrap_or(now - Duration::seconds(1));
            return Ok(Some(Window::new(from, now)));
        }
        // Later polls of --follow continue from where the last one ended.
        let explicit = if first_poll {
            self.window_args.clone()
        } else {
            WindowArgs::default()
        };
        let timing = self.source.timing();
        let zone = self.source.timezone();
        let resume = self
            .checkpoint
            .map(|c| c.checked_sub_signed(timing.lookback).unwrap_or(c));
        let (from, to) = explicit.bounds(zone, timing.settle, now, resume)?;
        if from >= to && self.checkpoint.is_some() && explicit.to.is_none() {
            log::info(&format!(
                "{}: nothing new since the checkpoint; try again later",
                self.name
            ));
            return Ok(None);
        }
        explicit
            .resolve_from(zone, timing.settle, now, resume)
            .map(Some)
    }

    /// One output file per chunk with a templated path, else one output.
    /// A plan too large to be meant (a `1ms` window over a year) is refused
    /// before it is built.
    fn chunks(&self, window: Option<Window>) -> Result<Vec<Window>> {
        let Some(w) = window else {
            return Ok(Vec::new());
        };
        let slice = self.source.timing().window;
        let chunk = self.options.chunk.unwrap_or(slice);
        for (step, what) in [(slice, "request slices"), (chunk, "output files")] {
            let needed = w.count(step);
            if needed > MAX_SLICES && (step == slice || Self::templated(self.options)) {
                return Err(Error::usage(format!(
                    "the window {} .. {} would need {} {what} of {}; at most {} are allowed",
                    w.from.format("%Y-%m-%dT%H:%M:%SZ"),
                    w.to.format("%Y-%m-%dT%H:%M:%SZ"),
                    log::thousands(needed as u64),
                    humanize(step),
                    log::thousands(MAX_SLICES as u64)
                ))
                .with_hint(
                    "narrow the window (--from/--since), or use a longer `window` or --chunk",
                ));
            }
        }
        Ok(if Self::templated(self.options) {
            w.split(chunk)
        } else {
            vec![w]
        })
    }

    /// Exports `chunk`, makes it durable, then moves the checkpoint.
    async fn chunk(&mut self, chunk: Window) -> Result<()> {
        let (name, options, records) = (self.name, self.options, self.options.records);
        let kind = self.source.kind().as_str();
        let expanded = options.output.as_deref().map(|t| {
            expand_placeholders(t, name, &chunk, records)
                .to_string_lossy()
                .into_owned()
        });
        // An object is written to a file of this run's own first, and
        // uploaded once complete: the key holds the whole file or nothing.
        let object = match expanded.as_deref() {
            Some(url) if crate::store::is_object_url(url) => Some(Place::new(url)?),
            _ => None,
        };
        // The spool's folder goes when the chunk ends, however it ends.
        let spool = match &object {
            Some(place) => Some(spool_for(place)?),
            None => None,
        };
        let path: Option<PathBuf> = match (&spool, expanded) {
            (Some((_, spooled)), _) => Some(spooled.clone()),
            (None, Some(text)) => Some(PathBuf::from(
                text.strip_prefix("file://").unwrap_or(&text).to_string(),
            )),
            (None, None) => None,
        };
        // Each path as expanded (`{source}`, `{records}`, `{from}`, `{to}`),
        // before anything is created there.
        match (&object, &path, self.state.as_ref()) {
            (Some(place), _, Some(StateStore::Object(state))) => {
                check_objects(place, state.place())?
            }
            (None, Some(p), Some(StateStore::Local(f))) => check_paths(p, Some(f.path()))?,
            (None, Some(p), _) => check_paths(p, None)?,
            _ => {}
        }
        let rejects = match (self.state.as_ref().and_then(StateStore::local), &object) {
            // Beside the state, kept across runs: cron mail points there.
            (Some(f), _) => RejectLog::appending(name, with_suffix(f.path(), ".rejects.jsonl")),
            (None, Some(place)) => RejectLog::new(name, path.as_deref())
                .shown_as(place.with_suffix(".rejects.jsonl").url),
            (None, None) => RejectLog::new(name, path.as_deref()),
        }
        .redacting(self.redactor.is_some());
        let create = |path: Option<&Path>| {
            Output::create(
                path,
                options.format(),
                records,
                render(name, kind, options),
                self.redactor.cloned(),
            )
        };
        let streaming = options.follow.is_some() && path.is_none();
        let mut own = if streaming {
            None
        } else {
            Some(create(path.as_deref())?)
        };
        if streaming && self.stream.is_none() {
            self.stream = Some(create(None)?);
        }
        let output = match own.take() {
            Some(out) => out,
            None => self.stream.take().expect("created above"),
        };
        let memory = std::mem::take(&mut self.memory);
        let (mut stats, memory, output) = run(
            self.source,
            &self.http,
            chunk,
            options,
            output,
            rejects,
            memory,
        )
        .await?;
        if streaming {
            self.stream = Some(output);
        } else {
            own = Some(output);
        }
        self.memory = memory;
        // The records are durable (or handed to the reader) before the
        // state may say so. A file's checkpoint is saved together with the
        // rename that publishes it (`pending`), so the two cannot part: a
        // run killed between them is finished by the next. Nothing below
        // awaits, so a signal cannot stop the run between the two.
        let mut prepared = match own.take() {
            Some(out) => {
                self.targets.push(match &object {
                    Some(place) => place.url.clone(),
                    None => out.describe(),
                });
                let prepared = out.prepare()?;
                // What the file holds, not every version written to it.
                stats.records = stats.records.saturating_sub(prepared.superseded);
                Some(prepared)
            }
            None => {
                self.stream.as_mut().expect("created above").flush()?;
                None
            }
        };
        let upload = match (&object, &path) {
            (Some(place), Some(spool)) => prepared.take().map(|local| (place, spool, local)),
            _ => None,
        };
        if let Some((place, spool, local)) = upload {
            // The object first, then the state: a run stopped between the
            // two exports the window again, to the same key.
            local.publish()?;
            let rejected = with_suffix(spool, ".rejects.jsonl");
            let mut uploaded = place.upload(spool).await;
            if uploaded.is_ok() && rejected.exists() {
                uploaded = place.with_suffix(".rejects.jsonl").upload(&rejected).await;
            }
            for file in [spool.as_path(), rejected.as_path()] {
                let _ = std::fs::remove_file(file);
            }
            if let Some(dir) = spool.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            uploaded?;
        }
        if options.follow.is_some() {
            log::verbose(&format!(
                "{name}: {} new {}",
                stats.records,
                records.as_str()
            ));
        }
        if let Some(file) = self.state.as_mut() {
            let mut next = file
                .state()
                .cloned()
                .unwrap_or_else(|| State::first(name, kind, records.as_str(), chunk.to));
            next.record(LedgerEntry {
                from: chunk.from,
                to: chunk.to,
                records: stats.records,
                output: match &object {
                    Some(place) => Some(place.url.clone()),
                    None => path.as_ref().map(|p| p.display().to_string()),
                },
                finished_at: Utc::now(),
            });
            next.set_keys(
                self.memory
                    .recent_since(chunk.to - self.source.memory_span()),
            );
            next.awaiting.clone_from(&self.memory.awaiting);
            next.chats = self.memory.open_chats(chunk.to);
            next.pending = prepared.as_ref().and_then(|p| {
                Some(PendingRename {
                    temp: p.temp.clone()?,
                    target: p.target.clone()?,
                })
            });
            file.save(next).await?;
            if let Some(prepared) = prepared.as_mut() {
                prepared.keep_for_state();
            }
        }
        if let Some(prepared) = prepared {
            prepared.publish()?;
        }
        self.checkpoint = Some(chunk.to);
        self.total += stats;
        Ok(())
    }

    /// Closes the follow stream and prints the summary.
    fn finish(mut self, started: Instant) -> Result<Stats> {
        if let Some(out) = self.stream.take() {
            self.targets.push(out.describe());
            out.commit()?;
        }
        log::progress::finish();
        let target = match self.targets.as_slice() {
            [] => "nothing written".to_string(),
            [one] => one.clone(),
            many => format!("{} files", many.len()),
        };
        let total = self.total;
        let backup = match self.http.backup_requests() {
            0 => String::new(),
            n => format!(", {n} to the backup host"),
        };
        // Every request sent, retries too: what the platform (and a daily
        // token quota) saw.
        let (requests, retried) = self.http.requests_sent();
        let retries = match retried {
            0 => String::new(),
            n => format!(
                ", {} of them {}",
                log::thousands(n),
                if n == 1 { "a retry" } else { "retries" }
            ),
        };
        log::info(&format!(
            "exported {} {} from {} window{} ({} request{}{retries}{backup}) in {:.1} s -> {target}",
            log::thousands(total.records),
            self.options.records.as_str(),
            total.windows,
            plural(total.windows),
            log::thousands(requests),
            plural(requests as usize),
            started.elapsed().as_secs_f64()
        ));
        // What is left to read again is what the run's memory carries on.
        let awaiting = self.memory.awaiting.len() as u64;
        if awaiting > 0 {
            log::warn(&format!(
                "{} {} not there yet (saved to the rejects with the reason); {}",
                log::thousands(awaiting),
                if awaiting == 1 {
                    "record's data is"
                } else {
                    "records' data are"
                },
                if self.options.state.is_some() {
                    "the next run with this --state reads them again"
                } else {
                    "a run with --state would read them again"
                }
            ));
        }
        if total.messages_only + total.details_only > 0 {
            log::info(&format!(
                "joining conversation details: {} conversation{} had messages but no details, {} had details but no messages; all kept",
                log::thousands(total.messages_only),
                plural(total.messages_only as usize),
                log::thousands(total.details_only),
            ));
        }
        Ok(total)
    }
}

/// A file of this run's own where an object is written before its upload,
/// in a new owner-only directory (nothing planted in `TMPDIR` under a name
/// chatdump would use is written through); it keeps the object's name, so
/// its format and compression are the same.
fn spool_for(place: &Place) -> Result<(tempfile::TempDir, PathBuf)> {
    // A new owner-only folder of an unpredictable name: another user
    // cannot have taken it, or planted anything in it, beforehand.
    let dir = tempfile::Builder::new()
        .prefix("chatdump-spool-")
        .tempdir()
        .map_err(|e| {
            Error::output(
                format!(
                    "cannot create a spool directory in {}",
                    std::env::temp_dir().display()
                ),
                e,
            )
        })?;
    let name = place.url.rsplit('/').next().unwrap_or("output");
    let path = dir.path().join(name);
    Ok((dir, path))
}

/// Refuses an output object that is one of the state's own objects.
fn check_objects(output: &Place, state: &Place) -> Result<()> {
    for (own, what) in [
        (state.url.clone(), "the state"),
        (state.with_suffix(".lock").url, "the state's lock"),
    ] {
        if output.url == own {
            return Err(Error::usage(format!(
                "the output {} is {what}: writing records there would destroy it",
                output.url
            ))
            .with_hint("give the output and the state different keys"));
        }
    }
    Ok(())
}

/// Refuses an output path that is one of the state's own files: writing
/// records over the state, its lock or its rejects log would destroy them.
fn check_paths(output: &Path, state: Option<&Path>) -> Result<()> {
    let Some(state) = state else {
        return Ok(());
    };
    let out = crate::safefs::resolve(output);
    for (own, what) in [
        (state.to_path_buf(), "the state file"),
        (with_suffix(state, ".lock"), "the state's lock"),
        (
            with_suffix(state, ".rejects.jsonl"),
            "the state's rejects log",
        ),
    ] {
        if crate::safefs::resolve(&own) == out {
            return Err(Error::usage(format!(
                "-o {} is {what} ({}); records would overwrite it",
                output.display(),
                own.display()
            ))
            .with_hint("give the output and the state different paths"));
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn render(name: &str, platform: &'static str, options: &Options) -> Render {
    Render {
        source: name.to_string(),
        platform,
        tz: options.tz,
        include_raw: options.include_raw,
        csv_raw: options.csv_raw,
    }
}

/// Drives `source` over `window` into `output`; the caller commits. The
/// memory of earlier chunks (or runs) comes in and goes out.
pub async fn run(
    source: &dyn ChatSource,
    http: &Http,
    window: Window,
    options: &Options,
    mut output: Output,
    rejects: RejectLog,
    memory: Memory,
) -> Result<(Stats, Memory, Output)> {
    let records = options.records;
    let aggregate = records == RecordKind::Conversations && source.conversations_from_messages();
    let shape = Shape {
        records,
        messages_in_order: source.messages_in_order(),
        aggregate,
        keep_for: source.memory_span(),
        joined: source.messages_need_conversations(),
    };
    let fetch = if aggregate {
        RecordKind::Messages
    } else {
        records
    };
    // A platform that streams one large answer per window: nothing in this
    // path asks the pipeline whether a record was new, and there is no
    // per-window context to share, so records go to it in batches (its key
    // lookups then overlap). Parsing the answer keeps this thread busy, so
    // ids, de-duplication and `seq` run on a thread of their own, fed in
    // order. Not when redacting: then the writer thread is busy too, and a
    // third thread only takes the two cores' time from it (BENCHMARKS.md).
    let batched = matches!(source.paging(), crate::source::Paging::Capped { .. })
        && !source.messages_need_conversations()
        && memory.awaiting.is_empty();
    let beside = batched && options.redact.is_none();
    let (mut stats, memory, output, driven) = if beside {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<handover::Handed>(2);
        let worker = std::thread::Builder::new()
            .name("chatdump-pipeline".into())
            .spawn(move || handover::work(shape, output, rejects, memory, receiver))
            .map_err(|e| Error::output("cannot start the pipeline thread", e))?;
        let mut sink = handover::Batching::new(sender);
        let driven = drive(source, http, window, fetch, options.include_raw, &mut sink).await;
        let closed = sink.close();
        let worked = worker.join().map_err(|_| {
            Error::output("the pipeline", std::io::Error::other("its thread panicked"))
        })?;
        // The pipeline's own failure (a full disk) explains why handing
        // over stopped: it is the one to report.
        let (stats, memory, output) = worked?;
        let driven = driven?;
        closed?;
        (stats, memory, output, driven)
    } else if batched {
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
        let mut sink = handover::Batching::new(&mut pipeline);
        let driven = drive(source, http, window, fetch, options.include_raw, &mut sink).await;
        // A failed write explains why the drive stopped: it comes first.
        sink.close()?;
        let driven = driven?;
        let (stats, memory) = pipeline.finish()?;
        (stats, memory, output, driven)
    } else {
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
        // What an earlier run (or chunk) could not read yet comes first.
        let again = crate::source::Query {
            window,
            stream: fetch,
            variant: 0,
        };
        for entry in pipeline.take_retries() {
            let mut read = Vec::new();
            source.parse_item(
                &again,
                entry.raw.as_bytes(),
                options.include_raw,
                &mut |p| read.push(p),
            );
            for item in read {
                pipeline.retried(item, &entry)?;
            }
        }
        let driven = drive(
            source,
            http,
            window,
            fetch,
            options.include_raw,
            &mut pipeline,
        )
        .await?;
        let (stats, memory) = pipeline.finish()?;
        (stats, memory, output, driven)
    };
    stats.windows = driven.windows;
    stats.requests = driven.requests;
    if stats.duplicates > 0 {
        log::verbose(&format!("skipped {} duplicate records", stats.duplicates));
    }
    Ok((stats, memory, output))
}

/// The pipeline on a thread of its own, fed through a channel.
mod handover {
    use std::sync::mpsc::{Receiver, SyncSender};

    use crate::error::{Error, Result};
    use crate::output::{Output, BATCH, BATCH_BYTES};
    use crate::pipeline::{Memory, Pipeline, Shape, Stats};
    use crate::rejects::RejectLog;
    use crate::source::{ConversationContext, Parsed, Sink};
    use crate::window::Window;

    // Items are handed over in the output's batches (a count, or a size of
    // text): enough that the channel costs little per record, few enough
    // that memory stays flat, and a batch of messages goes on to the
    // writer whole.

    /// What the driver hands over, in the order it happened.
    pub enum Handed {
        Items(Vec<Parsed>),
        BeginResponse,
        EndWindow(Window),
    }

    /// Where batches go: the pipeline thread's channel, or the pipeline
    /// itself when it runs on the driver's thread.
    pub trait Receiving {
        fn take(&mut self, handed: Handed) -> Result<()>;
    }

    impl Receiving for SyncSender<Handed> {
        fn take(&mut self, handed: Handed) -> Result<()> {
            self.send(handed)
                .map_err(|_| Error::output("the pipeline", std::io::Error::other("it stopped")))
        }
    }

    impl Receiving for &mut Pipeline<'_> {
        fn take(&mut self, handed: Handed) -> Result<()> {
            apply(self, handed)
        }
    }

    /// The driver's [`Sink`] for a path that never asks whether a record
    /// was new: batches what it is given, in order, for
    /// [`Pipeline::accept_batch`].
    pub struct Batching<T: Receiving> {
        to: T,
        batch: Vec<Parsed>,
        /// The message text the batch holds.
        text_bytes: usize,
        /// A failure met where the driver cannot be told at once.
        failed: Option<Error>,
    }

    impl<T: Receiving> Batching<T> {
        pub fn new(to: T) -> Self {
            Batching {
                to,
                batch: Vec::with_capacity(BATCH),
                text_bytes: 0,
                failed: None,
            }
        }

        fn flush(&mut self) -> Result<()> {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.text_bytes = 0;
            self.to.take(Handed::Items(batch))
        }

        /// Hands over what is left (a pipeline thread finishes once its
        /// channel is dropped with this).
        pub fn close(mut self) -> Result<()> {
            self.flush()
        }
    }

    impl<T: Receiving> Sink for Batching<T> {
        fn accept(&mut self, item: Parsed, _context: &ConversationContext) -> Result<bool> {
            if let Parsed::Record(record) = &item {
                self.text_bytes += record.text_len();
            }
            self.batch.push(item);
            // Bounded by text too, as the output's batches are: 512 large
            // messages would hold several megabytes at each step.
            if self.batch.len() >= BATCH || self.text_bytes >= BATCH_BYTES {
                self.flush()?;
            }
            // Whether it was new is the pipeline's to know; this path never
            // asks.
            Ok(true)
        }

        fn begin_response(&mut self) {
            // A failure here shows at the next item or window.
            if let Err(e) = self
                .flush()
                .and_then(|()| self.to.take(Handed::BeginResponse))
            {
                self.failed = Some(e);
            }
        }

        fn end_window(&mut self, window: &Window, _context: &ConversationContext) -> Result<()> {
            // No per-window context on this path (see `run`).
            self.flush()?;
            self.to.take(Handed::EndWindow(*window))
        }
    }

    /// What the pipeline does with one thing handed over.
    fn apply(pipeline: &mut Pipeline<'_>, handed: Handed) -> Result<()> {
        match handed {
            Handed::Items(items) => pipeline.accept_batch(items),
            Handed::BeginResponse => {
                pipeline.begin_response();
                Ok(())
            }
            Handed::EndWindow(window) => {
                pipeline.end_window(&window, &ConversationContext::default())
            }
        }
    }

    /// The pipeline thread: everything handed over, in order; then what
    /// the run needs back.
    pub fn work(
        shape: Shape,
        mut output: Output,
        rejects: RejectLog,
        memory: Memory,
        receiver: Receiver<Handed>,
    ) -> Result<(Stats, Memory, Output)> {
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
        for handed in receiver {
            apply(&mut pipeline, handed)?;
        }
        let (stats, memory) = pipeline.finish()?;
        Ok((stats, memory, output))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::model::{Item, Message, Record};

        /// What was handed over: the items of each batch, and their text.
        #[derive(Default)]
        struct Taken(Vec<(usize, usize)>);

        impl Receiving for &mut Taken {
            fn take(&mut self, handed: Handed) -> Result<()> {
                if let Handed::Items(items) = handed {
                    let text = items
                        .iter()
                        .map(|item| match item {
                            Parsed::Record(Record::Message(m)) => {
                                m.record.text.as_ref().map_or(0, String::len)
                            }
                            _ => 0,
                        })
                        .sum();
                    self.0.push((items.len(), text));
                }
                Ok(())
            }
        }

        fn message(text_len: usize) -> Parsed {
            Parsed::Record(Record::Message(Item {
                record: Message {
                    conversation_id: "c".into(),
                    text: Some("x".repeat(text_len)),
                    ..Default::default()
                },
                raw: None,
            }))
        }

        /// Batches are a count of short messages, or a size of long ones,
        /// and nothing is lost or reordered either way.
        #[test]
        fn batches_are_bounded_by_count_and_by_text() {
            let mut taken = Taken::default();
            let mut sink = Batching::new(&mut taken);
            let none = ConversationContext::default();
            for _ in 0..BATCH + 10 {
                sink.accept(message(10), &none).unwrap();
            }
            for _ in 0..20 {
                sink.accept(message(300_000), &none).unwrap();
            }
            sink.close().unwrap();
            let sizes: Vec<usize> = taken.0.iter().map(|(n, _)| *n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), BATCH + 30);
            assert_eq!(sizes[0], BATCH);
            for (n, text) in &taken.0 {
                assert!(*n <= BATCH && *text < BATCH_BYTES + 300_000, "{n} {text}");
            }
            // 300 kB messages: four to a batch.
            assert!(taken
                .0
                .iter()
                .skip(1)
                .take(4)
                .all(|(_, text)| *text >= BATCH_BYTES));
        }
    }
}

/// The redactor `--redact` asks for, with its key from
/// `CHATDUMP_REDACT_KEY` or the variable the config's `redact_key_env` names.
pub fn redactor(options: &Options, key_env: Option<&str>) -> Result<Option<Redactor>> {
    let Some(redact) = options.redact else {
        return Ok(None);
    };
    let var = key_env.unwrap_or("CHATDUMP_REDACT_KEY");
    let key = match std::env::var(var).ok().filter(|k| !k.is_empty()) {
        Some(raw) => Some(crate::config::secret_text(&raw).map_err(|why| {
            Error::config(format!("the redaction key in {var} {why}")).with_hint(format!(
                "set {var} to the key alone, with no spaces or line breaks around it"
            ))
        })?),
        None => None,
    };
    if redact.mode == RedactMode::Hash && key.is_none() {
        return Err(Error::config(format!(
            "--redact=hash needs a key: the environment variable {var} is not set"
        ))
        .with_hint(format!(
            "export {var}=<a long random secret> (keep it: the same key gives the same pseudonyms), or use --redact=mask"
        )));
    }
    Ok(Some(Redactor::new(
        redact.mode,
        redact.agents,
        key.as_deref().map(str::as_bytes),
    )))
}
