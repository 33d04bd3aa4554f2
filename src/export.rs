//! One export run: resolve the window (from the flags, or from the state's
//! checkpoint), cut it into output chunks, drive the source into each
//! chunk's output through the pipeline, commit the output, then advance the
//! state. With a fixed output path or stdout there is one chunk and one
//! commit; with `{from}`/`{to}` in the path each chunk is its own file and
//! its own checkpoint, so a long backfill that dies resumes where it died.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::http::Http;
use crate::log;
use crate::model::{RecordKind, Rejected};
use crate::output::{Format, Output, Render};
use crate::pipeline::{Memory, Pipeline, Shape};
use crate::redact::{Mode as RedactMode, Redactor};
use crate::source::{drive, ChatSource};
use crate::state::{with_suffix, LedgerEntry, PendingRename, State, StateFile};
use crate::window::{humanize, parse_duration, parse_time, Window, MAX_SLICES};

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
    /// `--state FILE`: incremental mode.
    pub state: Option<PathBuf>,
    /// `--chunk D`: output chunk length with a templated path.
    pub chunk: Option<Duration>,
    /// `--redact[=MODE]` and `--redact-agents`.
    pub redact: Option<RedactOptions>,
    /// `--follow`: poll again after this interval until interrupted.
    pub follow: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct RedactOptions {
    pub mode: RedactMode,
    pub agents: bool,
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
        if self.include_raw && self.redact.is_some() {
            return Err(Error::usage(
                "--include-raw cannot be combined with --redact: the platform's raw JSON cannot be guaranteed clean",
            ));
        }
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
        self.resolve_from(zone, settle, now, None)
    }

    /// Like [`WindowArgs::resolve`], but without `--from`/`--since` the
    /// window starts at `resume` (an incremental run's checkpoint minus the
    /// lookback) when there is one.
    pub fn resolve_from(
        &self,
        zone: Tz,
        settle: Duration,
        now: DateTime<Utc>,
        resume: Option<DateTime<Utc>>,
    ) -> Result<Window> {
        let (from, to) = self.bounds(zone, settle, now, resume)?;
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

    /// The window's bounds, possibly empty or backwards; every flag that
    /// does not parse is a usage error, whatever the checkpoint.
    fn bounds(
        &self,
        zone: Tz,
        settle: Duration,
        now: DateTime<Utc>,
        resume: Option<DateTime<Utc>>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
        // Whole seconds: the platforms' resolution, and stable file names.
        let now = now.trunc_subsecs(0);
        let before_now = |d: Duration, what: &str| {
            now.checked_sub_signed(d)
                .ok_or_else(|| Error::usage(format!("{what} reaches before the calendar's start")))
        };
        let to = match &self.to {
            Some(t) => parse_time(t, zone).map_err(|e| Error::usage(format!("--to: {e}")))?,
            None => before_now(settle, "the settle lag")?,
        };
        let asked = match (&self.from, &self.since) {
            (Some(f), _) => {
                Some(parse_time(f, zone).map_err(|e| Error::usage(format!("--from: {e}")))?)
            }
            (None, Some(d)) => Some(before_now(
                parse_duration(d).map_err(|e| Error::usage(format!("--since: {e}")))?,
                "--since",
            )?),
            (None, None) => None,
        };
        // With a checkpoint, `--from` is where the export begins, not where
        // every rerun begins again: the same command resumes.
        let from = match (asked, resume) {
            (Some(a), Some(r)) => a.max(r),
            (Some(a), None) => a,
            (None, Some(r)) => r,
            (None, None) => now - Duration::hours(24),
        };
        Ok((from, to))
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

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.windows += other.windows;
        self.requests += other.requests;
    }
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
    let redactor = redactor(options, config.redact_key_env.as_deref())?;
    let table = config.source(name)?;
    let redactor = redactor.as_ref();
    let source = (table.kind.platform().build)(&table)?;
    export_one(&*source, name, window, options, redactor, dry_run).await
}

async fn export_one<S: ChatSource + ?Sized>(
    source: &S,
    name: &str,
    window_args: &WindowArgs,
    options: &Options,
    redactor: Option<&Redactor>,
    dry_run: bool,
) -> Result<Stats> {
    let started = Instant::now();
    let mut export = Exporter::open(source, name, window_args, options, redactor)?;
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
                let state = export.state.as_ref().map(StateFile::given);
                print_plan(source, name, &w, options, &chunks, state);
            }
            return Ok(Stats::default());
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
    export.finish(started)
}

/// One `export` run: its state, memory and outputs across chunks and polls.
struct Exporter<'a, S: ChatSource + ?Sized> {
    source: &'a S,
    name: &'a str,
    window_args: &'a WindowArgs,
    options: &'a Options,
    redactor: Option<&'a Redactor>,
    /// One client for the whole run: pacing, the shared pause after a 429
    /// and the throttle count carry across chunks and polls.
    http: Http,
    state: Option<StateFile>,
    /// The end of the last chunk written (from the state at first).
    checkpoint: Option<DateTime<Utc>>,
    memory: Memory,
    /// Following into stdout: one stream for every poll, flushed after each.
    stream: Option<Output>,
    total: Stats,
    targets: Vec<String>,
}

impl<'a, S: ChatSource + ?Sized> Exporter<'a, S> {
    fn open(
        source: &'a S,
        name: &'a str,
        window_args: &'a WindowArgs,
        options: &'a Options,
        redactor: Option<&'a Redactor>,
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
        if let (Some(output), false) = (&options.output, Self::templated(options)) {
            check_paths(Path::new(output), options.state.as_deref())?;
        }
        let connection = source.connection();
        let http = Http::new(
            name,
            connection.auth,
            connection.settings,
            connection.max_in_flight,
        )?;
        let state = match &options.state {
            Some(path) => Some(StateFile::open(path, name, kind, options.records.as_str())?),
            None => None,
        };
        let saved = state.as_ref().and_then(|f| f.state.as_ref());
        let checkpoint = saved.map(|s| s.checkpoint);
        let memory = match (&state, saved) {
            (None, _) => Memory::default(),
            (Some(_), Some(s)) => Memory::carrying(s.keys()?, s.legacy_keys),
            (Some(_), None) => Memory::carrying(Vec::new(), false),
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
            .is_some_and(|t| t.contains("{from}") || t.contains("{to}"))
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
        let path = options
            .output
            .as_deref()
            .map(|t| expand_placeholders(t, name, &chunk, records));
        if let Some(p) = &path {
            check_paths(p, self.state.as_ref().map(StateFile::path))?;
        }
        let rejects = match &self.state {
            // Beside the state, kept across runs: cron mail points there.
            Some(f) => RejectLog::appending(name, with_suffix(f.path(), ".rejects.jsonl")),
            None => RejectLog::new(name, path.as_deref()),
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
        let output = match own.as_mut() {
            Some(out) => out,
            None => self.stream.as_mut().expect("created above"),
        };
        let memory = std::mem::take(&mut self.memory);
        let (stats, memory) = run(
            self.source,
            &self.http,
            chunk,
            options,
            output,
            rejects,
            memory,
        )
        .await?;
        self.memory = memory;
        // The records are durable (or handed to the reader) before the
        // state may say so. A file's checkpoint is saved together with the
        // rename that publishes it (`pending`), so the two cannot part: a
        // run killed between them is finished by the next. Nothing below
        // awaits, so a signal cannot stop the run between the two.
        let prepared = match own.take() {
            Some(out) => {
                self.targets.push(out.describe());
                Some(out.prepare()?)
            }
            None => {
                self.stream.as_mut().expect("created above").flush()?;
                None
            }
        };
        if options.follow.is_some() {
            log::verbose(&format!(
                "{name}: {} new {}",
                stats.records,
                records.as_str()
            ));
        }
        if let Some(file) = self.state.as_mut() {
            let mut next = file
                .state
                .clone()
                .unwrap_or_else(|| State::first(name, kind, records.as_str(), chunk.to));
            next.record(LedgerEntry {
                from: chunk.from,
                to: chunk.to,
                records: stats.records,
                output: path.as_ref().map(|p| p.display().to_string()),
                finished_at: Utc::now(),
            });
            next.set_keys(
                self.memory
                    .recent_since(chunk.to - self.source.memory_span()),
            );
            next.pending = prepared.as_ref().and_then(|p| {
                Some(PendingRename {
                    temp: p.temp.clone()?,
                    target: p.target.clone()?,
                })
            });
            file.save(next)?;
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
        log::info(&format!(
            "exported {} {} from {} window{} ({} request{}) in {:.1} s -> {target}",
            log::thousands(total.records),
            self.options.records.as_str(),
            total.windows,
            plural(total.windows),
            total.requests,
            plural(total.requests),
            started.elapsed().as_secs_f64()
        ));
        Ok(total)
    }
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

/// Ctrl-C and SIGTERM. Between polls of `--follow` the run ends cleanly
/// (exit 0, state saved); during a request or a write it ends within
/// seconds: the work under way is dropped (its temporary file removed), the
/// state stays as the last commit left it, and the exit code is 130.
struct Shutdown {
    requested: tokio::sync::watch::Receiver<bool>,
}

impl Shutdown {
    fn listen() -> Shutdown {
        let (tell, requested) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            log::info("stopping: interrupted");
            let _ = tell.send(true);
            // Kept open: a closed channel would read as a second signal.
            std::future::pending::<()>().await;
        });
        Shutdown { requested }
    }

    fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    async fn stopped(&self) {
        let mut requested = self.requested.clone();
        let _ = requested.wait_for(|stop| *stop).await;
    }

    fn interrupted() -> Error {
        Error::new(
            Kind::Interrupted,
            "interrupted: the window under way was not committed",
        )
        .with_hint("the state keeps the last committed window; run again to continue from there")
    }

    /// Runs `work` unless a signal comes: then `work` has `grace` to finish
    /// before it is dropped.
    async fn guard<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
        grace: std::time::Duration,
    ) -> Result<T> {
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            () = self.stopped() => {
                match tokio::time::timeout(grace, &mut work).await {
                    Ok(result) => result,
                    Err(_) => Err(Shutdown::interrupted()),
                }
            }
        }
    }

    /// Sleeps `interval`; false when asked to stop (before or during).
    async fn wait(&self, interval: Duration) -> bool {
        if self.requested() {
            return false;
        }
        let pause = interval
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => !self.requested(),
            () = self.stopped() => false,
        }
    }
}

#[cfg(unix)]
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn signal() {
    let _ = tokio::signal::ctrl_c().await;
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
pub async fn run<S: ChatSource + ?Sized>(
    source: &S,
    http: &Http,
    window: Window,
    options: &Options,
    output: &mut Output,
    rejects: RejectLog,
    memory: Memory,
) -> Result<(Stats, Memory)> {
    let records = options.records;
    let aggregate = records == RecordKind::Conversations && source.conversations_from_messages();
    let shape = Shape {
        records,
        messages_in_order: source.messages_in_order(),
        aggregate,
        keep_for: source.memory_span(),
    };
    let fetch = if aggregate {
        RecordKind::Messages
    } else {
        records
    };
    let mut pipeline = Pipeline::new(shape, output, rejects, memory);
    let driven = drive(
        source,
        http,
        window,
        fetch,
        options.include_raw,
        &mut pipeline,
    )
    .await?;
    let (mut stats, memory) = pipeline.finish()?;
    stats.windows = driven.windows;
    stats.requests = driven.requests;
    if stats.duplicates > 0 {
        log::verbose(&format!("skipped {} duplicate records", stats.duplicates));
    }
    Ok((stats, memory))
}

/// The redactor `--redact` asks for, with its key from
/// `CHATDUMP_REDACT_KEY` or the variable the config's `redact_key_env` names.
pub fn redactor(options: &Options, key_env: Option<&str>) -> Result<Option<Redactor>> {
    let Some(redact) = options.redact else {
        return Ok(None);
    };
    let var = key_env.unwrap_or("CHATDUMP_REDACT_KEY");
    let key = std::env::var(var).ok().filter(|k| !k.is_empty());
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

fn print_plan<S: ChatSource + ?Sized>(
    source: &S,
    name: &str,
    window: &Window,
    options: &Options,
    chunks: &[Window],
    state: Option<&Path>,
) {
    let records = options.records;
    let fetch = if records == RecordKind::Conversations && source.conversations_from_messages() {
        RecordKind::Messages
    } else {
        records
    };
    let slices: Vec<Window> = chunks
        .iter()
        .flat_map(|c| c.split(source.timing().window))
        .collect();
    let mut queries: usize = slices.iter().map(|s| source.queries(*s, fetch).len()).sum();
    if fetch == RecordKind::Messages && source.messages_need_conversations() {
        queries += slices
            .iter()
            .map(|s| source.queries(*s, RecordKind::Conversations).len())
            .sum::<usize>();
    }
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = std::io::stdout().lock();
    let mut lines = vec![
        format!("source:   {name} ({})", source.kind().as_str()),
        format!(
            "window:   {} .. {} (UTC, end exclusive)",
            time(window.from),
            time(window.to)
        ),
        format!("records:  {}", records.as_str()),
        format!(
            "slices:   {} of at most {}",
            slices.len(),
            humanize(source.timing().window)
        ),
        format!(
            "requests: at least {queries} (one per query; more when a query has several pages)"
        ),
    ];
    if source.spends_daily_tokens() {
        lines.push(format!(
            "cost:     each request spends one of the account's daily {} tokens; a window over the record cap is split and costs more",
            source.kind().as_str()
        ));
    }
    match state {
        Some(p) => lines.push(format!(
            "state:    {} (resumes at the checkpoint minus {} of lookback)",
            p.display(),
            humanize(source.timing().lookback)
        )),
        None => lines.push("state:    none (not incremental)".into()),
    }
    for chunk in chunks.iter().take(20) {
        let target = options.output.as_deref().map_or_else(
            || "stdout".to_string(),
            |t| {
                expand_placeholders(t, name, chunk, records)
                    .display()
                    .to_string()
            },
        );
        lines.push(format!(
            "output:   {} .. {} -> {target}",
            time(chunk.from),
            time(chunk.to)
        ));
    }
    if chunks.len() > 20 {
        lines.push(format!(
            "          ... and {} more files",
            chunks.len() - 20
        ));
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
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
    append: bool,
    /// Under `--redact`, only the shape of a rejected record is kept.
    redact: bool,
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
            append: false,
            redact: false,
            file: None,
            count: 0,
        }
    }

    /// A log that adds to `path` (beside a state file, across runs).
    pub fn appending(source: &str, path: PathBuf) -> RejectLog {
        RejectLog {
            source: source.to_string(),
            path,
            append: true,
            redact: false,
            file: None,
            count: 0,
        }
    }

    pub fn redacting(mut self, redact: bool) -> RejectLog {
        self.redact = redact;
        self
    }

    pub fn save(&mut self, rejected: &Rejected) -> Result<()> {
        if self.file.is_none() {
            // Never through a link planted at its name; owner-only, as it
            // holds the platform's raw records.
            let f = crate::safefs::open_nofollow(&self.path, self.append)
                .map_err(|e| Error::output(format!("cannot create {}", self.path.display()), e))?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let raw = serde_json::from_str::<serde_json::Value>(&rejected.raw)
            .unwrap_or_else(|_| serde_json::Value::String(rejected.raw.clone()));
        let mut line = serde_json::json!({
            "source": self.source,
            "rejected_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "reason": if self.redact { quoting_nothing(&rejected.reason) } else { rejected.reason.clone() },
        });
        if self.redact {
            line["raw_shape"] = shape_of(&raw);
        } else {
            line["raw"] = raw;
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{line}")
            .map_err(|e| Error::output(format!("cannot write {}", self.path.display()), e))?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64> {
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

/// A rejection's reason with every quoted value (`"..."`, `` `...` ``, as
/// providers and serde_json quote them) replaced by `<value>`: under
/// `--redact` the reason says why, never what.
fn quoting_nothing(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' {
            let mut escaped = false;
            for inner in chars.by_ref() {
                match inner {
                    '\\' if !escaped => escaped = true,
                    q if q == c && !escaped => break,
                    _ => escaped = false,
                }
            }
            out.push_str("<value>");
        } else {
            out.push(c);
        }
    }
    out
}

/// The structure of a JSON value with every scalar replaced by its type:
/// enough to see why a record did not parse, nothing personal.
fn shape_of(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(shape_of).collect()),
        Value::String(_) => Value::String("<string>".into()),
        Value::Number(_) => Value::String("<number>".into()),
        Value::Bool(_) => Value::String("<bool>".into()),
        Value::Null => Value::Null,
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
    fn redacted_reasons_quote_no_value() {
        assert_eq!(
            quoting_nothing(r#"unreadable timestamp "Juan 300 123 4567" at line 1"#),
            "unreadable timestamp <value> at line 1"
        );
        assert_eq!(
            quoting_nothing("invalid type: string `juan@x.co`, expected a map"),
            "invalid type: string <value>, expected a map"
        );
        assert_eq!(
            quoting_nothing(r#"bad "a \" b" and "c""#),
            "bad <value> and <value>"
        );
        assert_eq!(quoting_nothing(r#"cut "open"#), "cut <value>");
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
}
