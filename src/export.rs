//! The export pipeline: resolve the window, drive the source, and pass every
//! record through de-duplication, ordering and enrichment to the writer.
//!
//! Records stream from each page to the output. Messages are held back only
//! until their window is complete, because the platform's order within a
//! conversation (and thus `seq`) is known only then. De-duplication remembers
//! the current and the previous window, which covers every place a platform
//! can repeat a record (shifting pages, an inclusive upper bound) while
//! keeping memory bounded by two windows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::log;
use crate::model::{RecordKind, Rejected};
use crate::output::{Format, Output, Render};
use crate::pipeline::Pipeline;
use crate::source::{drive, ChatSource};
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
    crate::with_source!(&table, source => export_one(&source, name, window, options, dry_run).await)
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
        render(name, source.kind().as_str(), options),
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

pub fn render(name: &str, platform: &'static str, options: &Options) -> Render {
    Render {
        source: name.to_string(),
        platform,
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
    let aggregate = records == RecordKind::Conversations && source.conversations_from_messages();
    let fetch = if aggregate {
        RecordKind::Messages
    } else {
        records
    };
    let mut pipeline = Pipeline::new(
        records,
        source.messages_in_order(),
        aggregate,
        output,
        rejects,
    );
    let driven = drive(source, &http, window, fetch, want_raw, &mut pipeline).await?;
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
    if source.spends_daily_tokens() {
        let _ = writeln!(
            out,
            "cost:     each request spends one of the account's daily {} tokens; a window over the record cap is split and costs more",
            source.kind().as_str()
        );
    }
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

    pub fn save(&mut self, rejected: &Rejected) -> Result<()> {
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
}
