//! The settings of the shared HTTP layer a source may tune, and the limits
//! on what one answer, record or window may hold.

use reqwest::Url;

/// Settings of the shared HTTP layer that a source may tune.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Requests per second (pacing between request starts).
    pub rate_limit: f64,
    pub max_retries: u32,
    /// First backoff step; doubles per attempt up to a cap.
    pub backoff: std::time::Duration,
    /// The longest pause chatdump accepts (`Retry-After`, backoff): a
    /// platform asking for more ends the run with 69 and a time to retry,
    /// instead of holding the lock for hours.
    pub max_wait: std::time::Duration,
    /// The deadline of one whole exchange, headers to last byte, besides
    /// the silence timeout between reads: a body trickling a byte at a
    /// time cannot keep a run alive.
    pub request_timeout: std::time::Duration,
    pub limits: Limits,
    /// The most requests one run may send (platforms whose every request
    /// spends a daily token); None: no ceiling.
    pub max_requests: Option<u64>,
    /// A backup host (primary base, backup base): a request that stays
    /// unavailable on the primary (connection errors, 5xx) through its
    /// retries is tried there.
    pub backup: Option<(Url, Url)>,
}

/// Bytes chatdump will hold for one thing a server sends; past them the
/// answer is unreadable, whatever the server meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Read of a non-2xx body (only its first words are ever shown).
    pub error_body: usize,
    /// One record element (a Wolkvox element is a whole chat).
    pub record: usize,
    /// One page collected whole (numbered and tailed pages are held so
    /// they can be fetched concurrently and consumed in order).
    pub page: usize,
    /// The collected pages of one window, together: a platform announcing
    /// endless pages of new rows must end the run cleanly, not have the
    /// kernel kill it.
    pub window: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            error_body: 8 * 1024,
            record: 64 << 20,
            page: 64 << 20,
            window: 512 << 20,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            rate_limit: 1.0,
            max_retries: 5,
            backoff: std::time::Duration::from_millis(500),
            max_wait: std::time::Duration::from_secs(15 * 60),
            request_timeout: std::time::Duration::from_secs(30 * 60),
            limits: Limits::default(),
            max_requests: None,
            backup: None,
        }
    }
}
