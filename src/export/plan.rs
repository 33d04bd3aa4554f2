//! `--dry-run`: the plan of an export (window, slices, requests, token
//! cost, state, files), and the expansion of the `-o` placeholders that
//! names those files.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::Options;
use crate::model::RecordKind;
use crate::source::ChatSource;
use crate::window::{humanize, Window};

pub(super) fn print_plan(
    source: &dyn ChatSource,
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
    queries += source.lookups().len();
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
            "cost:     at least {queries} of the account's daily {} tokens (one per request); a window over the record cap is split and costs more",
            source.kind().as_str()
        ));
        if let Some(max) = source.connection().settings.max_requests {
            lines.push(format!(
                "ceiling:  this run stops after {max} requests (`max_tokens`)"
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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
