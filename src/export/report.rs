//! How a run ended: its record kept beside the state (`STATE.run`) and
//! its metrics, written whatever the outcome.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::Options;
use crate::error::{Error, Result};
use crate::log;
use crate::pipeline::Stats;
use crate::state_store::StateStore;

/// How a run ended, as the state and metrics record it, and its result.
pub(super) struct Outcome {
    pub(super) record: crate::state::RunRecord,
    pub(super) result: Result<Stats>,
}

impl Outcome {
    /// The record of a run that ended with `result`; `committed` is what
    /// it had committed when it failed, `sent` its requests and retries.
    pub(super) fn of(
        result: Result<Stats>,
        started: Instant,
        committed: Stats,
        (requests, retries): (u64, u64),
    ) -> Outcome {
        let (stats, exit_code, error) = match &result {
            Ok(stats) if stats.rejected > 0 || stats.attachments_missing > 0 => {
                (*stats, Error::data("").exit_code(), None)
            }
            Ok(stats) => (*stats, 0, None),
            Err(e) => (
                committed,
                e.exit_code(),
                Some(
                    e.to_string()
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(500)
                        .collect(),
                ),
            ),
        };
        let outcome = match (&error, exit_code) {
            (Some(_), _) => "failed",
            (None, 0) => "ok",
            (None, _) => "partial",
        };
        let now = Utc::now();
        Outcome {
            record: crate::state::RunRecord {
                finished_at: now,
                outcome: outcome.into(),
                exit_code,
                error,
                records: stats.records,
                rejected: stats.rejected,
                attachments_missing: stats.attachments_missing,
                requests,
                retries,
                duration_s: started.elapsed().as_secs_f64(),
                last_success_at: (outcome != "failed").then_some(now),
            },
            result,
        }
    }
}

/// Records how the run ended beside its state (the state itself is left
/// as the run's commits made it) and writes its metrics; what fails here is warned
/// about, and the run's own outcome stands.
pub(super) async fn report(
    name: &str,
    options: &Options,
    outcome: &Outcome,
    state: Option<&StateStore>,
    checkpoint: Option<DateTime<Utc>>,
    awaiting: u64,
    received_bytes: u64,
) {
    let mut record = outcome.record.clone();
    if let Some(state) = state {
        if record.last_success_at.is_none() {
            let previous = state.last_run().await;
            record.last_success_at = previous.and_then(|r| r.last_success_at);
        }
        if let Err(e) = state.record_run(&record).await {
            log::warn(&format!(
                "{name}: the run's outcome was not recorded beside the state: {e}"
            ));
        }
    }
    if options.metrics.is_empty() {
        return;
    }
    let metrics = crate::metrics::RunMetrics {
        source: name,
        records: options.records.as_str(),
        run: &record,
        checkpoint,
        awaiting,
        received_bytes,
    };
    if let Err(e) = crate::metrics::publish(&options.metrics, &metrics).await {
        log::warn(&format!("{name}: {e}"));
    }
}
