//! Rejected records: each saved with its raw JSON and the reason, never
//! dropped silently. Beside the output file (stdout: in the current
//! directory), or appended beside the state file so cron runs keep one
//! history. Under `--redact` a rejection keeps only the record's shape and
//! a reason that quotes no value.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::error::{Error, Result};
use crate::log;
use crate::model::Rejected;

/// Where rejected records are saved: beside the output file, or in the
/// current directory when writing to stdout. Created only when needed.
pub struct RejectLog {
    source: String,
    path: PathBuf,
    /// Where the records end up, when the file is uploaded after the run
    /// (an object beside an output in a bucket), for the message.
    shown: Option<String>,
    append: bool,
    /// Under `--redact`, only the shape of a rejected record is kept.
    redact: bool,
    file: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
    /// Attachments that could not be had, listed beside the records.
    attachments: u64,
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
            shown: None,
            append: false,
            redact: false,
            file: None,
            count: 0,
            attachments: 0,
        }
    }

    /// A log that adds to `path` (beside a state file, across runs).
    pub fn appending(source: &str, path: PathBuf) -> RejectLog {
        RejectLog {
            source: source.to_string(),
            path,
            shown: None,
            append: true,
            redact: false,
            file: None,
            count: 0,
            attachments: 0,
        }
    }

    /// Names where the file is uploaded to, in the message.
    pub fn shown_as(mut self, shown: String) -> RejectLog {
        self.shown = Some(shown);
        self
    }

    pub fn redacting(mut self, redact: bool) -> RejectLog {
        self.redact = redact;
        self
    }

    /// Lists an attachment that could not be had (its message was
    /// written): counted apart from rejected records.
    pub fn save_attachment(&mut self, missing: &Rejected) -> Result<()> {
        self.save(missing)?;
        self.count -= 1;
        self.attachments += 1;
        Ok(())
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
            let shown = self
                .shown
                .clone()
                .unwrap_or_else(|| self.path.display().to_string());
            if self.count > 0 {
                log::warn(&format!(
                    "{} record{} could not be read; saved with the reasons to {shown}",
                    self.count,
                    if self.count == 1 { "" } else { "s" },
                ));
            }
            if self.attachments > 0 {
                log::warn(&format!(
                    "{} attachment{} could not be had; listed with the reasons in {shown}",
                    self.attachments,
                    if self.attachments == 1 { "" } else { "s" },
                ));
            }
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
}
