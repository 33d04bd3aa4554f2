//! One export run: resolve the window (from the flags, or from the state's
//! checkpoint), cut it into output chunks, drive the source into each
//! chunk's output through the pipeline, commit the output, then advance the
//! state. With a fixed output path or stdout there is one chunk and one
//! commit; with `{from}`/`{to}` in the path each chunk is its own file and
//! its own checkpoint, so a long backfill that dies resumes where it died.
//!
//! Read top-down: `args` (what the user asked for), this file (the window
//! policy and the run's life: open, chunks, summary), `commit` (one
//! chunk: output, durability, checkpoint), `run` (the source driven into
//! the pipeline and the output), `handover` (the pipeline on a thread of
//! its own), `targets` (spools and path checks), `plan` (`--dry-run`),
//! `shutdown` (signals), `report` (how the run ended, for the
//! state's run record and metrics). The pipeline and the rejects log it feeds are
//! modules of their own.

mod args;
mod commit;
mod handover;
mod plan;
mod report;
mod run;
mod shutdown;
mod targets;

use std::time::Instant;

use chrono::{DateTime, Duration, SubsecRound, Utc};

pub use self::args::{Options, RedactOptions, WindowArgs};
pub use self::plan::expand_placeholders;
use self::plan::print_plan;
use self::report::{report, Outcome};
pub use self::run::run;
use self::shutdown::Shutdown;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::log;
use crate::output::{Output, Render};
use crate::pipeline::{Memory, Stats};
use crate::redact::{Mode as RedactMode, Redactor};
use crate::source::ChatSource;
use crate::state_store::StateStore;
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
    // `--state`, else the source's `state` key (where `status` looks too).
    let mut options = options.clone();
    if options.state.is_none() {
        options.state = table.string("state")?.map(std::path::PathBuf::from);
    }
    let asked_here = options.attachments.is_some();
    if options.attachments.is_none() {
        options.attachments = table.string("attachments")?;
    }
    options.attach = match options.attachments.clone() {
        // Conversation rows count attachments; messages carry them.
        Some(dest) if options.records == crate::model::RecordKind::Conversations => {
            let why = format!(
                "source {name:?}: attachments are fetched with --records messages (not to {dest}); conversation rows count them"
            );
            if asked_here {
                log::warn(&why);
            } else {
                log::verbose(&why);
            }
            None
        }
        // Under --redact nothing a customer sent is fetched or kept.
        Some(dest) if options.redact.is_some() => {
            log::warn(&format!(
                "source {name:?}: under --redact no attachment is fetched or kept (not to {dest}); rows keep each one's type and size"
            ));
            None
        }
        Some(dest) => Some(crate::attach::Settings::of(dest, Some(&table))?),
        None => None,
    };
    let options = &options;
    if options
        .follow
        .is_some_and(|every| every < Duration::minutes(5))
        && source.traits().spends_daily_tokens
    {
        log::warn(&format!(
            "source {name:?}: polling more often than every 5 minutes spends the account's daily API tokens faster (each poll is a request)"
        ));
    }
    export_one(&*source, name, window, options, redactor, dry_run, None).await
}

/// An export whose state is kept by whoever runs chatdump (`chatdump
/// tap`): `state` is read at the start and written at each commit.
pub async fn export_with_state(
    source: &dyn ChatSource,
    name: &str,
    window: &WindowArgs,
    options: &Options,
    redactor: Option<&Redactor>,
    state: StateStore,
) -> Result<Stats> {
    options.validate()?;
    export_one(source, name, window, options, redactor, false, Some(state)).await
}

async fn export_one(
    source: &dyn ChatSource,
    name: &str,
    window_args: &WindowArgs,
    options: &Options,
    redactor: Option<&Redactor>,
    dry_run: bool,
    state: Option<StateStore>,
) -> Result<Stats> {
    let started = Instant::now();
    let opened = Exporter::open(source, name, window_args, options, redactor, dry_run, state);
    let mut export = match opened.await {
        Ok(export) => export,
        Err(e) => {
            // A run that cannot even start (its state locked or corrupt,
            // bad credentials) is reported to monitoring too.
            let failed = Outcome::of(Err(e), started, Stats::default(), (0, 0));
            report(name, options, &failed, None, None, 0, 0).await;
            return failed.result;
        }
    };
    let outcome = export_windows(&mut export, dry_run).await;
    // A lock kept in a bucket outlives the process: it is let go however
    // the run ended (one killed outright expires instead).
    let state = export.state.take();
    let (sent, committed) = (export.http.requests_sent(), export.total);
    let (checkpoint, awaiting) = (export.checkpoint, export.memory.awaiting.len() as u64);
    let received = export.http.received_bytes();
    let outcome = match outcome {
        Ok(true) => export.finish(started),
        Ok(false) => {
            // A dry run: nothing ran, nothing to record.
            if let Some(state) = state {
                state.release().await;
            }
            return Ok(Stats::default());
        }
        Err(e) => Err(e),
    };
    let outcome = Outcome::of(outcome, started, committed, sent);
    report(
        name,
        options,
        &outcome,
        state.as_ref(),
        checkpoint,
        awaiting,
        received,
    )
    .await;
    if let Some(state) = state {
        state.release().await;
    }
    outcome.result
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
    /// What the driver learns of the source, kept across the chunks.
    learned: crate::source::Learned,
    /// `--attachments`: the stage that fetches and keeps them.
    attach: Option<crate::attach::Attach>,
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
        given: Option<StateStore>,
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
        let state = match (given, &options.state) {
            (Some(given), _) => Some(given),
            (None, Some(path)) => {
                Some(StateStore::open(path, name, kind, options.records.as_str(), dry_run).await?)
            }
            (None, None) => None,
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
            learned: crate::source::Learned::default(),
            // A dry run makes nothing, not even the attachments' folder.
            attach: match &options.attach {
                Some(settings) if !dry_run => Some(crate::attach::Attach::new(settings)?),
                _ => None,
            },
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

    /// Whether each chunk is committed on its own: a file per chunk, or a
    /// Singer stream, which says its state after every chunk.
    fn chunked(options: &Options) -> bool {
        Self::templated(options) || options.format() == crate::output::Format::Singer
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
            if needed > MAX_SLICES && (step == slice || Self::chunked(self.options)) {
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
        Ok(if Self::chunked(self.options) {
            w.split(chunk)
        } else {
            vec![w]
        })
    }

    /// Closes the follow stream and prints the summary.
    fn finish(mut self, started: Instant) -> Result<Stats> {
        if let Some(out) = self.stream.take() {
            self.targets.push(out.describe());
            out.commit()?;
        }
        log::progress::finish();
        // Chunks written to standard output one after another are one target.
        self.targets.dedup();
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
        if let Some(attach) = &self.attach {
            let tally = attach.tally();
            log::info(&format!(
                "attachments: {} stored ({} bytes) in {}{}",
                log::thousands(tally.stored),
                log::thousands(tally.bytes),
                attach.shown(),
                match total.attachments_missing {
                    0 => String::new(),
                    n => format!(
                        "; {} could not be had (listed in the rejects with the reasons)",
                        log::thousands(n)
                    ),
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
