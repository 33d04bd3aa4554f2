//! What the user asked `export` (and `demo`) for, validated: the output
//! options, and the window as given, before it meets a source's time zone
//! and checkpoint.

use std::path::PathBuf;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};
use crate::model::RecordKind;
use crate::output::Format;
use crate::redact::Mode as RedactMode;
use crate::window::{parse_duration, parse_time, Window};

/// What the user asked for, validated: everything `export` and `demo` need
/// besides the source itself.
#[derive(Debug, Clone)]
pub struct Options {
    pub records: RecordKind,
    pub format: Option<Format>,
    /// The `-o` template, placeholders not yet expanded.
    pub output: Option<String>,
    /// `--attachments DEST` (or the source's `attachments`): where the
    /// files messages carry are kept.
    pub attachments: Option<String>,
    /// What the source's configuration adds to `attachments`; set by
    /// `export` once the source is known.
    pub attach: Option<crate::attach::Settings>,
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
    /// `--metrics-file` and `--metrics-push`: where the run's metrics go.
    pub metrics: crate::metrics::Targets,
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
        if let Some(template) = &self.output {
            super::plan::check_template(template).map_err(Error::usage)?;
        }
        let compressed = self.output.as_deref().is_some_and(|o| {
            let o = o.to_ascii_lowercase();
            o.ends_with(".gz") || o.ends_with(".zst")
        });
        if self.format() == Format::Parquet && compressed {
            return Err(Error::usage(
                "a Parquet file compresses its own columns (zstd): it takes no .gz or .zst",
            )
            .with_hint("end the output path in .parquet"));
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
    pub(super) fn bounds(
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
}
