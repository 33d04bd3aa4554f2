//! `chatdump status`: how each source's incremental export is doing, read
//! from the state its configuration names (`state = "..."`, local or in a
//! bucket) without locking it: the checkpoint and how far behind now it
//! is, how the last run ended, records awaiting, and whether a run holds
//! the lock. A table for people, `--format json` for tools, and with
//! `--max-lag` the monitoring plugin convention for exit codes (0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN), so Nagios, Icinga, Sensu or a
//! Kubernetes probe can run it as a check.

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::config::Config;
use crate::error::{Error, Result};

/// What `chatdump status` was asked.
pub struct StatusArgs {
    pub sources: Vec<String>,
    pub json: bool,
    pub max_lag: Option<Duration>,
}

/// A source's verdict, in the monitoring plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }

    /// How bad, for the worst of several: CRITICAL, then UNKNOWN (nothing
    /// can be said), then WARNING.
    fn rank(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Unknown => 2,
            Verdict::Critical => 3,
        }
    }
}

/// One source's line.
struct Row {
    source: String,
    state: Option<String>,
    records: Option<String>,
    checkpoint: Option<DateTime<Utc>>,
    last_run: Option<crate::state::RunRecord>,
    awaiting: usize,
    lock: Option<(String, bool)>,
    /// Why nothing can be said (no `state` key, a state that cannot be read).
    problem: Option<String>,
}

impl Row {
    fn lag(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.checkpoint.map(|c| now - c)
    }

    /// CRITICAL past `max_lag`; WARNING when within it but the last run
    /// failed; UNKNOWN when there is no checkpoint to judge.
    fn verdict(&self, now: DateTime<Utc>, max_lag: Option<Duration>) -> Verdict {
        let Some(lag) = self.lag(now) else {
            return Verdict::Unknown;
        };
        if max_lag.is_some_and(|max| lag > max) {
            return Verdict::Critical;
        }
        if self
            .last_run
            .as_ref()
            .is_some_and(|r| r.outcome == "failed")
        {
            return Verdict::Warning;
        }
        Verdict::Ok
    }
}

/// `chatdump status`: prints each source's line; the exit code is the
/// worst verdict (always in the plugin convention: a configuration that
/// cannot be read is UNKNOWN, 3).
pub async fn status(config: &Config, args: &StatusArgs) -> i32 {
    let names: Vec<String> = if args.sources.is_empty() {
        config.sources.keys().cloned().collect()
    } else {
        args.sources.clone()
    };
    if names.is_empty() {
        eprintln!(
            "UNKNOWN: no sources configured in {}",
            config.display_path()
        );
        return Verdict::Unknown.exit_code();
    }
    let mut rows = Vec::new();
    for name in &names {
        rows.push(row(config, name).await);
    }
    let now = Utc::now();
    let worst = rows
        .iter()
        .map(|r| r.verdict(now, args.max_lag))
        .max_by_key(|v| v.rank())
        .unwrap_or(Verdict::Unknown);
    let text = if args.json {
        let rows: Vec<Value> = rows.iter().map(|r| as_json(r, now, args.max_lag)).collect();
        serde_json::to_string_pretty(&json!({"status": worst.as_str(), "sources": rows}))
            .expect("JSON")
    } else {
        table(&rows, now, args.max_lag, worst)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        return Verdict::Unknown.exit_code();
    }
    worst.exit_code()
}

async fn row(config: &Config, name: &str) -> Row {
    let mut row = Row {
        source: name.to_string(),
        state: None,
        records: None,
        checkpoint: None,
        last_run: None,
        awaiting: 0,
        lock: None,
        problem: None,
    };
    let location = match config.source(name).and_then(|t| t.string("state")) {
        Ok(Some(location)) => location,
        Ok(None) => {
            row.problem = Some(
                "no `state` key: set the state's location on the source, where export keeps it"
                    .into(),
            );
            return row;
        }
        Err(e) => {
            row.problem = Some(e.to_string());
            return row;
        }
    };
    row.state = Some(location.clone());
    match crate::state_store::inspect(&location).await {
        Ok(seen) => {
            row.state = Some(seen.shown);
            row.last_run = seen.last_run;
            row.lock = seen.lock;
            match seen.state {
                Some(state) => {
                    row.records = Some(state.records.clone());
                    row.checkpoint = Some(state.checkpoint);
                    row.awaiting = state.awaiting.len();
                }
                None => row.problem = Some("no state yet: no run has committed".into()),
            }
        }
        Err(e) => row.problem = Some(e.to_string()),
    }
    row
}

fn as_json(row: &Row, now: DateTime<Utc>, max_lag: Option<Duration>) -> Value {
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "source": row.source,
        "status": row.verdict(now, max_lag).as_str(),
        "state": row.state,
        "records": row.records,
        "checkpoint": row.checkpoint.map(time),
        "lag_seconds": row.lag(now).map(|l| l.num_seconds()),
        "last_run": row.last_run.as_ref().map(|r| json!({
            "finished_at": time(r.finished_at),
            "outcome": r.outcome,
            "exit_code": r.exit_code,
            "error": r.error,
            "records": r.records,
            "rejected": r.rejected,
            "attachments_missing": r.attachments_missing,
            "requests": r.requests,
            "retries": r.retries,
            "duration_seconds": r.duration_s,
            "last_success_at": r.last_success_at.map(time),
        })),
        "awaiting": row.awaiting,
        "lock": row.lock.as_ref().map(|(holder, expired)| json!({"holder": holder, "expired": expired})),
        "problem": row.problem,
    })
}

fn table(rows: &[Row], now: DateTime<Utc>, max_lag: Option<Duration>, worst: Verdict) -> String {
    let mut lines = vec![[
        "SOURCE",
        "STATUS",
        "CHECKPOINT",
        "LAG",
        "LAST RUN",
        "AWAITING",
        "LOCK",
    ]
    .map(String::from)];
    for row in rows {
        let last = match &row.last_run {
            Some(r) => format!(
                "{} {} ago",
                if r.outcome == "failed" {
                    format!("failed ({})", r.exit_code)
                } else {
                    r.outcome.clone()
                },
                roughly(now - r.finished_at)
            ),
            None => "-".into(),
        };
        let lock = match &row.lock {
            Some((holder, false)) => format!("held by {holder}"),
            Some((holder, true)) => format!("expired ({holder})"),
            None => "free".into(),
        };
        lines.push([
            row.source.clone(),
            row.verdict(now, max_lag).as_str().into(),
            row.checkpoint
                .map_or("-".into(), |c| c.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            row.lag(now).map_or("-".into(), roughly),
            last,
            row.awaiting.to_string(),
            lock,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text: Vec<String> = lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect();
    for row in rows {
        if let Some(problem) = &row.problem {
            text.push(format!(
                "{}: {}",
                row.source,
                crate::log::escape_controls(problem, false)
            ));
        }
    }
    let summary = match max_lag {
        Some(max) => format!(
            "{}: {} source{}, lag limit {}",
            worst.as_str(),
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            crate::window::humanize(max)
        ),
        None => format!(
            "{}: {} source{}",
            worst.as_str(),
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ),
    };
    text.insert(0, summary);
    text.join("\n")
}

/// A span as a person reads it at a glance: its two largest units
/// (`2d 3h`, `1h 5m`, `4m 10s`), or `-3m` for a checkpoint ahead of now.
fn roughly(d: Duration) -> String {
    let secs = d.num_seconds();
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let parts: Vec<String> = units
        .iter()
        .filter(|(size, _)| secs >= *size || *size == 1)
        .take(2)
        .scan(secs, |left, (size, unit)| {
            let n = *left / size;
            *left %= size;
            Some(format!("{n}{unit}"))
        })
        .collect();
    let first = units
        .iter()
        .position(|(size, _)| secs >= *size)
        .unwrap_or(3);
    let parts = if parts.len() == 2 && parts[1].starts_with('0') && first < 3 {
        parts[..1].to_vec()
    } else {
        parts
    };
    format!("{sign}{}", parts.join(" "))
}

/// `--max-lag`: a duration (`2h`, `90m`).
pub fn parse_max_lag(text: &str) -> Result<Duration> {
    crate::window::parse_duration(text).map_err(|e| Error::usage(format!("--max-lag: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(checkpoint: Option<&str>, outcome: Option<&str>) -> Row {
        Row {
            source: "hanoi".into(),
            state: Some("h.state".into()),
            records: Some("messages".into()),
            checkpoint: checkpoint.map(|c| c.parse().unwrap()),
            last_run: outcome.map(|o| crate::state::RunRecord {
                finished_at: "2024-03-05T11:00:00Z".parse().unwrap(),
                outcome: o.into(),
                exit_code: if o == "failed" { 69 } else { 0 },
                error: None,
                records: 1,
                rejected: 0,
                attachments_missing: 0,
                requests: 1,
                retries: 0,
                duration_s: 1.0,
                last_success_at: None,
            }),
            awaiting: 0,
            lock: None,
            problem: None,
        }
    }

    #[test]
    fn verdicts_follow_the_lag_and_the_last_run() {
        let now: DateTime<Utc> = "2024-03-05T12:00:00Z".parse().unwrap();
        let max = Some(Duration::hours(2));
        assert_eq!(
            row(Some("2024-03-05T11:00:00Z"), Some("ok")).verdict(now, max),
            Verdict::Ok
        );
        assert_eq!(
            row(Some("2024-03-05T11:00:00Z"), Some("failed")).verdict(now, max),
            Verdict::Warning
        );
        assert_eq!(
            row(Some("2024-03-05T09:00:00Z"), Some("ok")).verdict(now, max),
            Verdict::Critical
        );
        assert_eq!(
            row(Some("2024-03-05T09:00:00Z"), Some("ok")).verdict(now, None),
            Verdict::Ok
        );
        assert_eq!(row(None, None).verdict(now, max), Verdict::Unknown);
        let worst = [Verdict::Warning, Verdict::Unknown, Verdict::Ok]
            .into_iter()
            .max_by_key(|v| v.rank())
            .unwrap();
        assert_eq!(worst, Verdict::Unknown);
        let text = table(
            &[row(Some("2024-03-05T09:00:00Z"), Some("failed"))],
            now,
            max,
            Verdict::Critical,
        );
        assert!(
            text.starts_with("CRITICAL: 1 source, lag limit 2h"),
            "{text}"
        );
        assert!(text.contains("failed (69) 1h ago"), "{text}");
        assert!(text.contains("  3h  "), "{text}");
        assert_eq!(roughly(Duration::seconds(3785)), "1h 3m");
        assert_eq!(roughly(Duration::seconds(40)), "40s");
        assert_eq!(roughly(Duration::seconds(0)), "0s");
        assert_eq!(roughly(Duration::seconds(-180)), "-3m");
        assert_eq!(roughly(Duration::days(3) + Duration::minutes(5)), "3d");
    }
}
