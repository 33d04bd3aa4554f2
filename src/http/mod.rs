//! The one place that sends requests: authentication, pacing, a cap on
//! requests in flight, timeouts, retries with capped exponential backoff and
//! jitter, `Retry-After`, and keeping secrets out of every message.
//!
//! It is also a trust boundary: credentials go only to the configured
//! origin (redirects are followed by hand, within that origin, never to
//! another scheme, host or port), every wait a server asks for is bounded,
//! and text a server sends is escaped and cleared of secrets before anyone
//! sees it.
//!
//! Providers never loop on failures themselves. They tell this layer how to
//! read a response of their platform (a [`Verdict`]: fine, empty, retry, or a
//! definite failure), because platforms hide errors in odd places: CareSoft's
//! lockout is a 404, Wolkvox puts its error code in the body.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Datelike;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};

use reqwest::Url;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub(crate) mod pacer;
mod verdict;

use pacer::Pacer;
pub use verdict::{default_verdict, Failure, Verdict};

use crate::config::{HttpSettings, Secret};
use crate::error::{Error, Kind, Result};
use crate::log;

/// How a platform authenticates. The values are secrets and only ever reach
/// request headers.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(Secret),
    Basic {
        user: Secret,
        password: Secret,
    },
    /// A platform-specific header carrying the token (Wolkvox).
    Header {
        name: &'static str,
        value: Secret,
    },
}

/// How an exchange failed, once it is to be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transient {
    Unavailable,
    Throttled,
    Unreadable { json: bool },
}

/// More consecutive 429s than this and we stop: CareSoft locks a domain out
/// for 15 minutes after 20, and no platform rewards insistence.
const MAX_CONSECUTIVE_THROTTLES: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Same-origin redirects followed for one request; a loop ends here.
const MAX_REDIRECTS: usize = 5;
/// Secrets shorter than this are not masked in text: masking every `a` of
/// a message would hide more than it protects.
const MIN_MASKED_SECRET: usize = 4;

/// Time set aside from the deadlines of open answers, while it lives.
pub struct SetAside<'a> {
    http: &'a Http,
    started: tokio::time::Instant,
}

impl Drop for SetAside<'_> {
    fn drop(&mut self) {
        let spent = self.started.elapsed().as_millis() as u64;
        self.http.set_aside_ms.fetch_add(spent, Ordering::Relaxed);
        self.http.setting_aside.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP client bound to one configured source.
pub struct Http {
    client: reqwest::Client,
    source: String,
    auth: Auth,
    settings: HttpSettings,
    in_flight: Semaphore,
    pacer: Pacer,
    consecutive_throttles: AtomicU32,
    jitter: AtomicU64,
    /// Requests sent so far (retries included): the summary's count, and
    /// what `max_requests` bounds.
    sent: AtomicU64,
    /// Of them, the ones that tried a failed request again.
    retried: AtomicU64,
    /// Requests that went to the backup host.
    backup_sent: AtomicU64,
    /// Bytes of records received (answers read whole).
    received: AtomicU64,
    /// Milliseconds a reader spent on work of its own while an answer was
    /// open (fetching its records' attachments): not the platform's time,
    /// so not counted against `request_timeout`.
    set_aside_ms: AtomicU64,
    /// Readers at such work now.
    setting_aside: AtomicU32,
    /// Every form in which this source's credentials could come back in a
    /// server's text (the values, and Basic auth's base64), to mask them.
    secrets: Vec<String>,
}

impl Http {
    /// `max_in_flight` caps concurrent requests of this source (Wolkvox
    /// allows one per token; CareSoft tolerates a few).
    pub fn new(
        source: &str,
        auth: Auth,
        settings: HttpSettings,
        max_in_flight: usize,
    ) -> Result<Http> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("chatdump/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by `send`, which knows the origin the
            // credentials belong to; reqwest would carry custom headers
            // (Wolkvox's token) to any host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            // A 256 MB answer may take minutes on a slow link: limit silence
            // between reads, not the whole exchange.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::config(format!("cannot start the HTTP client: {e}")))?;
        let pacer = Pacer::per_second(settings.rate_limit);
        let secrets = match &auth {
            Auth::Bearer(token) => vec![token.expose().to_string()],
            Auth::Header { value, .. } => vec![value.expose().to_string()],
            Auth::Basic { user, password } => vec![
                user.expose().to_string(),
                password.expose().to_string(),
                base64(format!("{}:{}", user.expose(), password.expose()).as_bytes()),
            ],
        }
        .into_iter()
        .filter(|s| s.len() >= MIN_MASKED_SECRET)
        .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Ok(Http {
            client,
            source: source.to_string(),
            auth,
            settings,
            in_flight: Semaphore::new(max_in_flight.max(1)),
            pacer,
            consecutive_throttles: AtomicU32::new(0),
            jitter: AtomicU64::new(seed | 1),
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            backup_sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            set_aside_ms: AtomicU64::new(0),
            setting_aside: AtomicU32::new(0),
            secrets,
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// `exchange`'s outcome, or None when it took longer than `deadline`
    /// plus the time its reader set aside meanwhile ([`Http::set_aside`]).
    async fn within<T>(
        &self,
        deadline: Duration,
        exchange: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let started = tokio::time::Instant::now();
        let before = self.set_aside_ms.load(Ordering::Relaxed);
        let set_aside =
            || Duration::from_millis(self.set_aside_ms.load(Ordering::Relaxed) - before);
        let mut exchange = std::pin::pin!(exchange);
        let mut until = started + deadline;
        loop {
            match tokio::time::timeout_at(until, &mut exchange).await {
                Ok(outcome) => return Some(outcome),
                // The reader is at work of its own: looked at again in a
                // second, when it may be done.
                Err(_) if self.setting_aside.load(Ordering::Relaxed) > 0 => {
                    until = tokio::time::Instant::now() + Duration::from_secs(1);
                }
                Err(_) if started + deadline + set_aside() > tokio::time::Instant::now() => {
                    until = started + deadline + set_aside();
                }
                Err(_) => return None,
            }
        }
    }

    /// Marks time a reader spends on its own work while an answer is open
    /// (fetching its records' attachments), until the guard is dropped:
    /// the answer's deadline moves on by as much.
    pub fn set_aside(&self) -> SetAside<'_> {
        self.setting_aside.fetch_add(1, Ordering::Relaxed);
        SetAside {
            http: self,
            started: tokio::time::Instant::now(),
        }
    }

    /// Requests sent so far, and how many of them were retries.
    pub fn requests_sent(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
        )
    }

    /// Counts bytes of records an answer held, for metrics.
    pub fn count_received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes of records received so far.
    pub fn received_bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// How many requests went to the backup host, for the summary.
    pub fn backup_requests(&self) -> u64 {
        self.backup_sent.load(Ordering::Relaxed)
    }

    /// `url` moved from the primary base to the backup base, if this
    /// source has a backup and `url` is on the primary.
    fn on_backup(&self, url: &Url) -> Option<Url> {
        let (primary, backup) = self.settings.backup.as_ref()?;
        let rest = url.as_str().strip_prefix(primary.as_str())?;
        Url::parse(&format!("{}{rest}", backup.as_str())).ok()
    }

    /// `text` with every form of this source's credentials replaced by
    /// `***`: a server may echo a token back in an error body.
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// Sends GET `url` and lets `handle` consume the response, retrying the
    /// whole exchange when the request or `handle` fails transiently. The
    /// in-flight slot is held while `handle` runs, so a streamed body counts
    /// as a request in flight.
    pub async fn fetch<T>(
        &self,
        url: &Url,
        mut handle: impl AsyncFnMut(reqwest::Response) -> Result<T, Failure>,
    ) -> Result<T> {
        let mut url = url.clone();
        let mut shown = display_url(&url);
        let mut on_backup = false;
        let mut attempt: u32 = 0;
        loop {
            let permit = self
                .in_flight
                .acquire()
                .await
                .expect("semaphore never closes");
            let sent_before = self.sent.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 || on_backup {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            self.spend_request(sent_before)?;
            self.pacer.wait().await;
            let started = Instant::now();
            log::progress::request();
            if on_backup {
                self.backup_sent.fetch_add(1, Ordering::Relaxed);
            }
            let exchange = async {
                let response = self.send(&url).await?;
                log::trace(&format!(
                    "GET {shown} -> {} ({} ms to headers)",
                    response.status().as_u16(),
                    started.elapsed().as_millis()
                ));
                handle(response).await
            };
            let deadline = self.settings.request_timeout;
            let outcome = self.within(deadline, exchange).await.unwrap_or_else(|| {
                Err(Failure::Retry(
                    format!(
                        "no complete answer within {} (`request_timeout`)",
                        humanize_std(deadline)
                    ),
                    None,
                ))
            });
            drop(permit);
            let (reason, pause, transient) = match outcome {
                Ok(value) => {
                    self.consecutive_throttles.store(0, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(Failure::Fail(e)) => {
                    return Err(
                        self.clean(e.context(format!("source {:?}: GET {shown}", self.source)))
                    );
                }
                Err(Failure::Retry(why, pause)) => (why, pause, Transient::Unavailable),
                Err(Failure::Throttled(why, pause)) => (why, pause, Transient::Throttled),
                Err(Failure::Unreadable { why, json }) => (
                    format!("unreadable response: {why}"),
                    None,
                    Transient::Unreadable { json },
                ),
            };
            let throttled = transient == Transient::Throttled;
            let reason = self.mask(&reason);
            if throttled {
                let n = self.consecutive_throttles.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= MAX_CONSECUTIVE_THROTTLES {
                    return Err(Error::unavailable(format!(
                        "source {:?}: GET {shown}: {reason}; {n} rate-limit answers in a row",
                        self.source
                    ))
                    .with_hint("the platform keeps throttling; lower `rate_limit` for this source and retry in 15 minutes"));
                }
            }
            // Unavailable through every retry (not throttled, not data
            // that will not parse): the backup host gets its own retries.
            let unavailable = matches!(
                transient,
                Transient::Unavailable | Transient::Unreadable { json: false }
            );
            if attempt >= self.settings.max_retries && unavailable && !on_backup {
                if let Some(backup) = self.on_backup(&url) {
                    log::warn(&format!(
                        "source {:?}: GET {shown}: {reason} after {} attempts; trying the backup host {}",
                        self.source,
                        attempt + 1,
                        backup.origin().ascii_serialization()
                    ));
                    url = backup;
                    shown = display_url(&url);
                    on_backup = true;
                    attempt = 0;
                    continue;
                }
            }
            if attempt >= self.settings.max_retries {
                return Err(self.gave_up(&shown, &reason, attempt + 1, transient));
            }
            let delay = match self.backoff(attempt, pause) {
                Ok(delay) => delay,
                Err(asked) => return Err(self.wait_too_long(&shown, &reason, asked)),
            };
            if throttled {
                // A rate limit applies to the whole account: hold every
                // request of this source, not only this one.
                self.pacer.block_for(delay);
            }
            log::verbose(&format!(
                "source {:?}: {reason} on GET {shown}; retrying in {:.1} s (attempt {} of {})",
                self.source,
                delay.as_secs_f64(),
                attempt + 2,
                self.settings.max_retries + 1
            ));
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Counts a request about to be sent against `max_tokens`; past it,
    /// the run stops (each request spends one of the account's daily
    /// tokens).
    fn spend_request(&self, sent_before: u64) -> Result<()> {
        let Some(max) = self.settings.max_requests else {
            return Ok(());
        };
        if sent_before < max {
            return Ok(());
        }
        // Not sent after all.
        self.sent.fetch_sub(1, Ordering::Relaxed);
        Err(Error::new(
            Kind::Auth,
            format!(
                "source {:?}: this run has sent the {max} requests it may (`max_tokens`); each spends one of the account's daily tokens",
                self.source
            ),
        )
        .with_hint("nothing of the window under way was committed; export a shorter window (see --dry-run), or raise `max_tokens` if the account's daily tokens allow it"))
    }

    /// The error of a request that failed through every retry.
    fn gave_up(&self, shown: &str, reason: &str, attempts: u32, transient: Transient) -> Error {
        let e = Error::unavailable(format!(
            "source {:?}: GET {shown}: {reason} (gave up after {attempts} attempts)",
            self.source,
        ));
        match transient {
            Transient::Unreadable { json } => {
                let mut e = e.with_hint("nothing of this window was committed and the state was not advanced; if this persists, report it with the -vvv trace");
                if json {
                    e.kind = Kind::Data;
                }
                e
            }
            _ => {
                e.with_hint("the platform is unavailable; try again later, or raise `max_retries`")
            }
        }
    }

    /// An error fit to show: secrets masked, server text escaped.
    fn clean(&self, e: Error) -> Error {
        e.map_text(|t| crate::log::escape_controls(&self.mask(t), true).into_owned())
    }

    fn wait_too_long(&self, shown: &str, reason: &str, asked: Duration) -> Error {
        let when = chrono::Duration::from_std(asked)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_add_signed(d))
            .filter(|t| t.year() < 10_000)
            .map_or_else(
                || "much later".to_string(),
                |t| format!("after {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            );
        Error::unavailable(format!(
            "source {:?}: GET {shown}: {reason}; the platform asks to wait {}, longer than `max_wait` ({})",
            self.source,
            humanize_std(asked),
            humanize_std(self.settings.max_wait)
        ))
        .with_hint(format!(
            "retry {when}; nothing of this window was committed (raise `max_wait` to let chatdump wait that long itself)"
        ))
    }

    /// Sends GET `url`, following redirects that stay within its origin.
    /// A redirect elsewhere is refused before anything is sent there: the
    /// request carries credentials, and https is never traded for http.
    async fn send(&self, url: &Url) -> Result<reqwest::Response, Failure> {
        let mut current = url.clone();
        for hop in 0..=MAX_REDIRECTS {
            let response = self
                .send_once(&current)
                .await
                .map_err(|e| Failure::Retry(e, None))?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response.headers().get(LOCATION) else {
                return Ok(response);
            };
            let next = location
                .to_str()
                .ok()
                .and_then(|l| current.join(l).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            let Some(mut next) = next else {
                return Err(Failure::Fail(Error::unavailable(format!(
                    "HTTP {status} redirect with an unusable Location {:?}",
                    crate::log::escape_controls(
                        &String::from_utf8_lossy(location.as_bytes()),
                        false
                    )
                ))));
            };
            let _ = next.set_username("");
            let _ = next.set_password(None);
            if next.origin() != url.origin() {
                let origin = next.origin().ascii_serialization();
                return Err(Failure::Fail(
                    Error::unavailable(format!(
                        "HTTP {status} redirect to {}, another origin than the configured {}; chatdump sends credentials only to the configured origin and did not follow it",
                        display_url(&next),
                        url.origin().ascii_serialization()
                    ))
                    .with_hint(format!(
                        "if the platform really moved, set `base_url` for source {:?} to the new address (e.g. {origin}/...) in the configuration",
                        self.source
                    )),
                ));
            }
            if hop == MAX_REDIRECTS {
                return Err(Failure::Fail(Error::unavailable(format!(
                    "more than {MAX_REDIRECTS} redirects (last to {})",
                    display_url(&next)
                ))));
            }
            log::verbose(&format!(
                "source {:?}: HTTP {status} redirect to {}",
                self.source,
                display_url(&next)
            ));
            current = next;
        }
        unreachable!("the last hop returns")
    }

    async fn send_once(&self, url: &Url) -> Result<reqwest::Response, String> {
        let request = self.client.get(url.clone());
        let request = match &self.auth {
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic { user, password } => {
                request.basic_auth(user.expose(), Some(password.expose()))
            }
            Auth::Header { name, value } => request.header(*name, value.expose()),
        };
        request.send().await.map_err(describe_transport_error)
    }

    /// Capped exponential backoff with jitter; a `Retry-After` from the
    /// platform is a floor, and even `Retry-After: 0` waits the first step.
    /// A `Retry-After` beyond `max_wait` is returned as the error: the run
    /// ends rather than sleep for hours holding its lock.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Result<Duration, Duration> {
        let step = self
            .settings
            .backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF)
            .min(self.settings.max_wait);
        // Jitter in [50%, 100%] of the step keeps the floor while spreading
        // concurrent retries apart.
        let r = self.next_random() % 1000;
        let jittered = step.mul_f64(0.5 + (r as f64) / 2000.0);
        match retry_after {
            Some(pause) if pause > self.settings.max_wait => Err(pause),
            Some(pause) => Ok(pause.max(self.settings.backoff)),
            None => Ok(jittered),
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64: statistical quality is irrelevant for jitter.
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        x
    }
}

/// Reads at most `limit` bytes of a body: enough of an error page to know
/// what it says, never a gigabyte of it.
pub async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::broken_body(e)),
        }
    }
    Ok(body)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

fn describe_transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the response"
    } else {
        "request failed"
    };
    // The error chain holds the OS-level cause; it never contains headers.
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn humanize_std(d: Duration) -> String {
    chrono::Duration::from_std(d).map_or_else(|_| "forever".into(), crate::window::humanize)
}

/// Standard base64 (with padding), for the one place that needs it: the
/// Basic credential's encoded form, masked wherever a server echoes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The URL as it may be shown: no user-info, whatever the configuration held.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(backoff_ms: u64) -> Http {
        Http::new(
            "t",
            Auth::Bearer(Secret::new("x")),
            HttpSettings {
                rate_limit: 100.0,
                max_retries: 3,
                backoff: Duration::from_millis(backoff_ms),
                ..HttpSettings::default()
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn default_verdicts() {
        assert!(matches!(default_verdict(200), Verdict::Ok));
        assert!(matches!(default_verdict(429), Verdict::Throttled(_)));
        assert!(matches!(default_verdict(503), Verdict::Retry(_)));
        assert!(matches!(default_verdict(408), Verdict::Retry(_)));
        assert!(matches!(
            default_verdict(401),
            Verdict::Fail(Kind::Auth, ..)
        ));
        assert!(matches!(
            default_verdict(400),
            Verdict::Fail(Kind::Unavailable, ..)
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let h = http(100);
        for attempt in 0..30 {
            let d = h.backoff(attempt, None).unwrap();
            let step = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            h.backoff(0, Some(Duration::ZERO)),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(
            h.backoff(0, Some(Duration::from_secs(7))),
            Ok(Duration::from_secs(7))
        );
        let forever = Duration::from_secs(u64::MAX);
        assert_eq!(h.backoff(0, Some(forever)), Err(forever), "beyond max_wait");
        let e = h.wait_too_long("u", "HTTP 429", forever);
        assert_eq!(e.exit_code(), 69);
        assert!(e.hint().unwrap().contains("much later"), "{e:?}");
    }

    /// An answer whose reader sets time aside (fetching attachments while
    /// it is open) gets that much longer; one that does not, does not.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn time_a_reader_sets_aside_does_not_count_against_the_deadline() {
        let h = http(1);
        let deadline = Duration::from_secs(10);
        let slow_reader = async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            // 30 s of its own work, past the deadline.
            {
                let _aside = h.set_aside();
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            "read"
        };
        assert_eq!(h.within(deadline, slow_reader).await, Some("read"));
        // The same time, not set aside: the deadline holds.
        let silent_work = async {
            tokio::time::sleep(Duration::from_secs(39)).await;
            "too late"
        };
        assert_eq!(h.within(deadline, silent_work).await, None);
        // Set aside, then more than the deadline and what was set aside.
        let late = async {
            {
                let _aside = h.set_aside();
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            tokio::time::sleep(Duration::from_secs(11)).await;
            "late"
        };
        assert_eq!(h.within(deadline, late).await, None);
    }

    #[test]
    fn secrets_are_masked_in_every_form() {
        let h = Http::new(
            "t",
            Auth::Basic {
                user: Secret::new("company-key"),
                password: Secret::new("hunter22"),
            },
            HttpSettings::default(),
            1,
        )
        .unwrap();
        assert_eq!(
            base64(b"company-key:hunter22"),
            "Y29tcGFueS1rZXk6aHVudGVyMjI="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(
            h.mask("bad key company-key / hunter22 / Basic Y29tcGFueS1rZXk6aHVudGVyMjI="),
            "bad key *** / *** / Basic ***"
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        for huge in ["18446744073709551615", "99999999999999999999999"] {
            h.insert(RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        }
        h.insert(
            RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert!(retry_after(&h).unwrap() > Duration::from_secs(86_400 * 365 * 7000));
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let u = Url::parse("https://user:pw@example.com/a?b=1").unwrap();
        assert_eq!(display_url(&u), "https://example.com/a?b=1");
    }
}
