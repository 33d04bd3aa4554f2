//! How an answer is judged: a provider's [`Verdict`] on a response, and the
//! [`Failure`] the retry loop acts on.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::retry_after;
use crate::error::{Error, Kind};

/// A provider's reading of one HTTP response.
#[derive(Debug)]
pub enum Verdict {
    /// Use the body.
    Ok,
    /// The platform's way of saying "nothing here" (a 404 for an empty
    /// window): no records, not an error.
    Empty,
    /// Transient: try again after backoff. The text says why, for `-v`.
    Retry(String),
    /// Transient, but the platform asked for a specific pause, and every
    /// request of this source must wait it out (rate limiting).
    Throttled(String),
    /// Definite failure; no retry helps.
    Fail(Kind, String, Option<String>),
}

/// The verdict every platform shares for plain HTTP statuses.
pub fn default_verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Ok,
        429 => Verdict::Throttled("HTTP 429 (rate limited)".into()),
        408 | 500..=599 => Verdict::Retry(format!("HTTP {status}")),
        401 | 403 => Verdict::Fail(
            Kind::Auth,
            format!("HTTP {status}: credentials rejected"),
            Some("check the token in the configured environment variable".into()),
        ),
        _ => Verdict::Fail(
            Kind::Unavailable,
            format!("HTTP {status}: the platform refused the request"),
            None,
        ),
    }
}

/// Why one exchange failed, as the retry loop needs to know it.
#[derive(Debug)]
pub enum Failure {
    /// Transient; an optional pause the platform asked for.
    Retry(String, Option<Duration>),
    /// Rate limited: every request of the source waits.
    Throttled(String, Option<Duration>),
    /// The answer could not be read (the README's "Unreadable answers and
    /// rejected records"): retried like a transient failure; if it stays
    /// so, the run ends with 65, or 69 when it was not JSON at all (a
    /// proxy's page: the platform is not really answering).
    Unreadable { why: String, json: bool },
    /// Definite; the error says what to do.
    Fail(Error),
}

impl Failure {
    /// The connection broke while a body was being read: transient.
    pub fn broken_body(e: reqwest::Error) -> Failure {
        Failure::Retry(
            format!(
                "connection broke while reading the response: {}",
                e.without_url()
            ),
            None,
        )
    }
}

impl Failure {
    /// Turns a provider's verdict on a response into a failure. `Ok` and
    /// `Empty` are not failures; callers handle them first. The verdict's
    /// text often quotes the server, so its control characters are escaped
    /// here, once for every platform.
    pub fn from_verdict(verdict: Verdict, headers: &HeaderMap) -> Failure {
        let escape = |text: String| crate::log::escape_controls(&text, false).into_owned();
        match verdict {
            Verdict::Retry(why) => Failure::Retry(escape(why), retry_after(headers)),
            Verdict::Throttled(why) => Failure::Throttled(escape(why), retry_after(headers)),
            Verdict::Fail(kind, what, hint) => {
                let e = Error::new(kind, escape(what));
                Failure::Fail(match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                })
            }
            Verdict::Ok | Verdict::Empty => Failure::Fail(Error::new(
                Kind::Data,
                "internal: success passed as failure",
            )),
        }
    }
}
