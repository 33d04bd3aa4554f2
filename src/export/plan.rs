//! `--dry-run`: the plan of an export (window, slices, requests, token
//! cost, state, files), and the expansion of the `-o` placeholders that
//! names those files.

use std::io::Write;
use std::path::PathBuf;

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
    state: Option<&str>,
) {
    let records = options.records;
    let fetch =
        if records == RecordKind::Conversations && source.traits().conversations_from_messages {
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
    if fetch == RecordKind::Messages && source.traits().messages_need_conversations {
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
    if source.traits().spends_daily_tokens {
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
            "state:    {p} (resumes at the checkpoint minus {} of lookback)",
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

/// Expands `{source}`, `{from}`, `{to}` (UTC, `%Y%m%dT%H%M%SZ`) and
/// `{records}`; `{from:FORMAT}` and `{to:FORMAT}` format the bound with a
/// strftime FORMAT (UTC), for date-partitioned layouts
/// (`dt={to:%Y-%m-%d}/...`). Templates are checked by [`check_template`]
/// first; a format that does not parse falls back to the default.
pub fn expand_placeholders(
    template: &str,
    source: &str,
    window: &Window,
    records: RecordKind,
) -> PathBuf {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match placeholder(after) {
            Some((len, name, format)) => {
                let bound = match name {
                    "from" => Some(window.from),
                    "to" => Some(window.to),
                    _ => None,
                };
                match (name, bound) {
                    ("source", _) => out.push_str(source),
                    ("records", _) => out.push_str(records.as_str()),
                    (_, Some(t)) => out.push_str(&format_time(t, format)),
                    _ => out.push_str(&after[..len]),
                }
                rest = &after[len..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

/// A placeholder at the start of `text`: its length, name and format.
fn placeholder(text: &str) -> Option<(usize, &str, Option<&str>)> {
    let close = text.find('}')?;
    let inner = &text[1..close];
    let (name, format) = match inner.split_once(':') {
        Some((name, format)) => (name, Some(format)),
        None => (inner, None),
    };
    match (name, format) {
        ("source" | "records", None) | ("from" | "to", _) => Some((close + 1, name, format)),
        _ => None,
    }
}

fn format_time(t: DateTime<Utc>, format: Option<&str>) -> String {
    const DEFAULT: &str = "%Y%m%dT%H%M%SZ";
    let format = format.filter(|f| valid_format(f)).unwrap_or(DEFAULT);
    t.format(format).to_string()
}

/// Whether chrono can render `format` (an unknown specifier would make the
/// rendering fail).
fn valid_format(format: &str) -> bool {
    !format.is_empty()
        && chrono::format::StrftimeItems::new(format)
            .all(|item| !matches!(item, chrono::format::Item::Error))
}

/// Whether `template` names a window bound (`{from}`, `{to}`, with or
/// without a format): then each chunk is a file of its own.
pub fn has_window_placeholder(template: &str) -> bool {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if let Some((_, "from" | "to", _)) = placeholder(&rest[open..]) {
            return true;
        }
        rest = &rest[open + 1..];
    }
    false
}

/// Refuses a template whose `{from:FORMAT}` / `{to:FORMAT}` chrono cannot
/// render (a usage error, before anything runs).
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if let Some((_, name, Some(format))) = placeholder(&rest[open..]) {
            if !valid_format(format) {
                return Err(format!(
                    "{{{name}:{format}}} in the output path is not a strftime format chatdump can render (e.g. {{{name}:%Y-%m-%d}})"
                ));
            }
        }
        rest = &rest[open + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn formatted_bounds_for_partitioned_layouts() {
        let w = Window::new(utc("2024-03-01T00:00:00Z"), utc("2024-03-02T00:00:00Z"));
        assert_eq!(
            expand_placeholders(
                "s3/{source}/dt={to:%Y-%m-%d}/{from:%H%M}-{to}.{records}.jsonl.gz",
                "hanoi",
                &w,
                RecordKind::Conversations
            ),
            PathBuf::from("s3/hanoi/dt=2024-03-02/0000-20240302T000000Z.conversations.jsonl.gz")
        );
        assert_eq!(
            expand_placeholders("{x}/{from:%Y}{", "s", &w, RecordKind::Messages),
            PathBuf::from("{x}/2024{"),
            "anything else stays as written"
        );
        assert!(has_window_placeholder("a/{to:%Y}/b"));
        assert!(has_window_placeholder("{from}"));
        assert!(!has_window_placeholder("{source}/{fromage}.csv"));
        assert!(check_template("dt={to:%Y-%m-%d}").is_ok());
        assert!(check_template("dt={to:%Q}")
            .unwrap_err()
            .contains("strftime"));
        assert!(check_template("dt={to:}").is_err());
        // Checked first, but never a panic if not.
        assert_eq!(
            expand_placeholders("{to:%Q}", "s", &w, RecordKind::Messages),
            PathBuf::from("20240302T000000Z")
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
