//! A run's metrics in the Prometheus text format, for the two ways
//! operators collect them from batch jobs: a file node_exporter's textfile
//! collector reads (`--metrics-file`, written atomically), and a push to a
//! Pushgateway (`--metrics-push`, for Kubernetes CronJobs).
//!
//! Every sample carries the labels `source` and `records` (a source name
//! is a plain name, never a credential); the push groups by job
//! `chatdump`, source and records. A failed run reports itself too, keeping
//! the time of the last success: from the state, else from the file it
//! replaces; a push is a POST, which replaces only the metrics it holds,
//! so the Pushgateway keeps the last success a failed run cannot know.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use reqwest::Url;

use crate::error::{Error, Result};
use crate::state::RunRecord;

/// Where a run's metrics go.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    file: Option<PathBuf>,
    push: Option<Url>,
}

impl Targets {
    /// `--metrics-file` and `--metrics-push`, checked before the run.
    pub fn new(file: Option<PathBuf>, push: Option<&str>) -> Result<Targets> {
        let push = push
            .map(|text| {
                let url = Url::parse(text).map_err(|e| {
                    Error::usage(format!("--metrics-push: not a URL ({e})"))
                        .with_hint("give the Pushgateway's address, e.g. http://pushgateway:9091")
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err(Error::usage(
                        "--metrics-push: an http:// or https:// address of a Pushgateway is needed",
                    ));
                }
                Ok(url)
            })
            .transpose()?;
        Ok(Targets { file, push })
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.push.is_none()
    }
}

/// What one run reports.
pub struct RunMetrics<'a> {
    pub source: &'a str,
    pub records: &'a str,
    pub run: &'a RunRecord,
    pub checkpoint: Option<DateTime<Utc>>,
    pub awaiting: u64,
    pub received_bytes: u64,
}

/// The metrics, their help and type, in the order written.
const GAUGES: &[(&str, &str)] = &[
    ("chatdump_last_run_timestamp_seconds", "When the last run ended (Unix time)."),
    ("chatdump_last_success_timestamp_seconds", "When a run last committed its windows (Unix time)."),
    ("chatdump_checkpoint_timestamp_seconds", "Everything before this instant is exported (Unix time)."),
    ("chatdump_last_run_exit_code", "The last run's exit code (0 ok, 65 records rejected, 69 platform unavailable, 77 credentials refused, ...)."),
    ("chatdump_last_run_success", "1 when the last run committed its windows, else 0."),
    ("chatdump_last_run_records", "Records the last run wrote."),
    ("chatdump_last_run_rejected", "Records the last run could not read (in the rejects file)."),
    ("chatdump_last_run_attachments_missing", "Attachments the last run was asked to keep and could not have (in the rejects file)."),
    ("chatdump_last_run_requests", "Requests the last run sent, retries included."),
    ("chatdump_last_run_retries", "Requests of the last run that were retries."),
    ("chatdump_last_run_received_bytes", "Bytes of records the last run received."),
    ("chatdump_last_run_duration_seconds", "How long the last run took."),
    ("chatdump_awaiting_records", "Records whose data was not there yet, to be read again by the next run."),
];

/// The Prometheus text format of a run's metrics; `last_success` when
/// known (this run's, or kept from before).
pub fn render(m: &RunMetrics<'_>, last_success: Option<f64>) -> String {
    let labels = format!(
        "{{source=\"{}\",records=\"{}\"}}",
        escape_label(m.source),
        escape_label(m.records)
    );
    let seconds = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
    let succeeded = m.run.outcome != "failed";
    let value = |name: &str| -> Option<f64> {
        Some(match name {
            "chatdump_last_run_timestamp_seconds" => seconds(m.run.finished_at),
            "chatdump_last_success_timestamp_seconds" => last_success?,
            "chatdump_checkpoint_timestamp_seconds" => seconds(m.checkpoint?),
            "chatdump_last_run_exit_code" => f64::from(m.run.exit_code),
            "chatdump_last_run_success" => f64::from(u8::from(succeeded)),
            "chatdump_last_run_records" => m.run.records as f64,
            "chatdump_last_run_rejected" => m.run.rejected as f64,
            "chatdump_last_run_attachments_missing" => m.run.attachments_missing as f64,
            "chatdump_last_run_requests" => m.run.requests as f64,
            "chatdump_last_run_retries" => m.run.retries as f64,
            "chatdump_last_run_received_bytes" => m.received_bytes as f64,
            "chatdump_last_run_duration_seconds" => m.run.duration_s,
            "chatdump_awaiting_records" => m.awaiting as f64,
            _ => return None,
        })
    };
    let mut text = String::new();
    for (name, help) in GAUGES {
        let Some(v) = value(name) else {
            continue;
        };
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {v}\n"
        ));
    }
    text
}

/// A label value as the text format needs it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the metrics where `targets` say. A failure is returned for the
/// caller to warn about: the run's own outcome stands.
pub async fn publish(targets: &Targets, m: &RunMetrics<'_>) -> Result<()> {
    let mut last_success = m
        .run
        .last_success_at
        .map(|t| t.timestamp_millis() as f64 / 1000.0);
    if let Some(path) = &targets.file {
        if last_success.is_none() {
            last_success = kept_last_success(path, m);
        }
        write_file(path, &render(m, last_success))?;
    }
    if let Some(url) = &targets.push {
        push(url, m, &render(m, last_success)).await?;
    }
    Ok(())
}

/// The last success a previous run wrote to `path` for this source.
fn kept_last_success(path: &Path, m: &RunMetrics<'_>) -> Option<f64> {
    // A metrics file is some hundreds of bytes: a bigger one is not ours.
    let bytes = crate::safefs::read_small(path, 64 * 1024).ok()??;
    let text = String::from_utf8_lossy(&bytes);
    let prefix = format!(
        "chatdump_last_success_timestamp_seconds{{source=\"{}\",records=\"{}\"}} ",
        escape_label(m.source),
        escape_label(m.records)
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &f64| v.is_finite())
}

/// Replaces `path` with `text` at once: the collector reads the old file
/// or the new one, never a part (its temporary name does not end in
/// `.prom`, which the collector skips).
fn write_file(path: &Path, text: &str) -> Result<()> {
    let mode = crate::safefs::existing_mode(path).or(Some(0o644));
    crate::safefs::replace_whole(path, text.as_bytes(), mode)
        .map_err(|e| Error::output(format!("cannot write metrics {}", path.display()), e))
}

/// POSTs the metrics to the Pushgateway at `base`, grouped by job, source
/// and records. User and password in the address go as basic
/// authentication, and are never shown.
async fn push(base: &Url, m: &RunMetrics<'_>, text: &str) -> Result<()> {
    let mut url = base.clone();
    let (user, password) = (
        url.username().to_string(),
        url.password().map(str::to_string),
    );
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let shown = crate::http::display_url(&url);
    url.path_segments_mut()
        .map_err(|()| Error::usage(format!("--metrics-push {shown}: not a base address")))?
        .pop_if_empty()
        .extend([
            "metrics", "job", "chatdump", "source", m.source, "records", m.records,
        ]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Error::unavailable(format!("cannot push metrics: {e}")))?;
    let mut request = client
        .post(url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text.to_string());
    if !user.is_empty() || password.is_some() {
        request = request.basic_auth(user, password);
    }
    let fail = |why: String| Error::unavailable(format!("cannot push metrics to {shown}: {why}"));
    let response = request
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!(
            "the Pushgateway answered {}",
            response.status()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: &str) -> RunRecord {
        RunRecord {
            finished_at: "2024-03-05T10:00:00Z".parse().unwrap(),
            outcome: outcome.into(),
            exit_code: if outcome == "failed" { 69 } else { 0 },
            error: None,
            records: 12,
            rejected: 0,
            attachments_missing: 2,
            requests: 3,
            retries: 1,
            duration_s: 1.5,
            last_success_at: None,
        }
    }

    #[test]
    fn every_sample_has_help_type_and_labels() {
        let record = run("ok");
        let m = RunMetrics {
            source: "ha\"noi\\x",
            records: "messages",
            run: &record,
            checkpoint: Some("2024-03-05T09:00:00Z".parse().unwrap()),
            awaiting: 2,
            received_bytes: 4096,
        };
        let text = render(&m, Some(1_709_632_800.0));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), GAUGES.len());
        assert!(text.contains(
            "chatdump_checkpoint_timestamp_seconds{source=\"ha\\\"noi\\\\x\",records=\"messages\"} 1709629200\n"
        ), "{text}");
        assert!(text.contains("chatdump_last_run_success{"), "{text}");
        assert!(
            text.contains("chatdump_last_run_attachments_missing{source=\"ha\\\"noi\\\\x\",records=\"messages\"} 2\n"),
            "{text}"
        );
        // Unknown: left out, not written as 0.
        let text = render(
            &RunMetrics {
                checkpoint: None,
                ..m
            },
            None,
        );
        assert!(!text.contains("chatdump_checkpoint_timestamp_seconds{"));
        assert!(!text.contains("chatdump_last_success_timestamp_seconds{"));
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_of_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdump.prom");
        let ok = RunRecord {
            last_success_at: Some("2024-03-05T10:00:00Z".parse().unwrap()),
            ..run("ok")
        };
        let m = |record| RunMetrics {
            source: "hanoi",
            records: "conversations",
            run: record,
            checkpoint: None,
            awaiting: 0,
            received_bytes: 0,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let targets = Targets::new(Some(path.clone()), None).unwrap();
        runtime.block_on(publish(&targets, &m(&ok))).unwrap();
        let failed = run("failed");
        runtime.block_on(publish(&targets, &m(&failed))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(
                "chatdump_last_run_exit_code{source=\"hanoi\",records=\"conversations\"} 69"
            ),
            "{text}"
        );
        assert!(text.contains("chatdump_last_success_timestamp_seconds{source=\"hanoi\",records=\"conversations\"} 1709632800"), "{text}");
        assert!(Targets::new(None, Some("ftp://x")).is_err());
        assert!(Targets::new(None, Some("not a url")).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(256))]
        /// A metrics file someone else changed (any text) gives a last
        /// success that is a finite number, or none; never a panic.
        #[test]
        fn any_previous_file_reads(text in "(chatdump_last_success_timestamp_seconds\\{source=\"hanoi\",records=\"messages\"\\} )?[-+0-9.eEinfNa \n]{0,40}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.prom");
            std::fs::write(&path, &text).unwrap();
            let record = run("ok");
            let m = RunMetrics {
                source: "hanoi",
                records: "messages",
                run: &record,
                checkpoint: None,
                awaiting: 0,
                received_bytes: 0,
            };
            if let Some(v) = kept_last_success(&path, &m) {
                proptest::prop_assert!(v.is_finite());
            }
        }
    }
}
