//! The configuration file: where it is, what a `[sources.NAME]` table may
//! hold, and how values become validated settings.
//!
//! This module knows the keys every source shares (base URL, pacing, retries,
//! time zone, secrets). The keys that belong to one platform are read by that
//! platform's module through [`SourceTable`], so adding a source never touches
//! this file beyond the list of kinds. Every error names the file, the source
//! and the key, and exits 78.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;

use crate::error::{Error, Result};
use crate::window::parse_duration;

/// A secret value. Its `Debug` and `Display` print `***`, so it cannot leak
/// through a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret as a variable or a file holds it: one trailing line break (a
/// secret file's, `$(cat token)` keeps none but `KEY=$(<file)` in some
/// tools does) is dropped; a secret that is then empty, blank, padded
/// with spaces or holding a control character is refused with the reason
/// (it would be sent as `Bearer    `, or make every request fail with a
/// misleading "platform unavailable").
pub fn secret_text(raw: &str) -> std::result::Result<String, &'static str> {
    let text = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw);
    if text.trim().is_empty() {
        return Err("is empty or only white space");
    }
    if text.chars().any(char::is_control) {
        return Err("holds a line break or another control character");
    }
    if text.trim() != text {
        return Err("begins or ends with white space");
    }
    Ok(text.to_string())
}

/// The loaded configuration file.
#[derive(Debug, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub sources: BTreeMap<String, toml::Table>,
    /// Group- or world-readable: literal secrets in it deserve a warning.
    pub readable_by_others: bool,
    /// The variable holding the `--redact=hash` key, if not the default.
    pub redact_key_env: Option<String>,
}

/// Keys every source accepts besides its kind's own.
pub const COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "rate_limit",
    "max_retries",
    "backoff",
    "max_wait",
    "request_timeout",
    "max_error_body",
    "max_record_size",
    "max_page_size",
    "max_window_memory",
    "phone_regions",
];

impl Config {
    /// Finds and reads the configuration: `--config`, `$CHATDUMP_CONFIG`,
    /// `./chatdump.toml`, `$XDG_CONFIG_HOME/chatdump/config.toml`. No file at
    /// all is an empty configuration; a named file that is missing is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CHATDUMP_CONFIG").map(PathBuf::from));
        let path = match named {
            Some(p) => {
                if !p.exists() {
                    return Err(Error::config(format!(
                        "configuration file {} does not exist",
                        p.display()
                    ))
                    .with_hint(
                        "check the path, or run `chatdump demo` to try the tool without one",
                    ));
                }
                p
            }
            None => match default_locations().into_iter().find(|p| p.exists()) {
                Some(p) => p,
                None => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::config(format!("cannot read configuration {}: {e}", path.display()))
        })?;
        let mut config = Config::parse(&text, &path)?;
        config.readable_by_others = readable_by_others(&path);
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            Error::config(format!(
                "{}: not valid TOML: {}",
                path.display(),
                e.message()
            ))
        })?;
        let sources = match table.remove("sources") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(Error::config(format!(
                    "{}: `sources` must be a table of [sources.NAME] sections",
                    path.display()
                )))
            }
        };
        let redact_key_env = match table.remove("redact_key_env") {
            None => None,
            Some(toml::Value::String(v)) => Some(v),
            Some(_) => {
                return Err(Error::config(format!(
                    "{}: `redact_key_env` must be the name of an environment variable",
                    path.display()
                )))
            }
        };
        if let Some(key) = table.keys().next() {
            return Err(Error::config(format!(
                "{}: unknown top-level key {key:?}",
                path.display()
            ))
            .with_hint("sources are configured in [sources.NAME] sections"));
        }
        let mut out = BTreeMap::new();
        for (name, value) in sources {
            if !is_plain_name(&name) {
                return Err(Error::config(format!(
                    "{}: [sources.{name:?}]: a source name may hold only letters, digits, `_`, `-` and `.`, and may not start with `.`",
                    path.display()
                ))
                .with_hint("the name is used in file names (`{source}` in -o): rename the table, e.g. [sources.bogota-live]"));
            }
            let toml::Value::Table(t) = value else {
                return Err(Error::config(format!(
                    "{}: sources.{name} must be a table",
                    path.display()
                )));
            };
            out.insert(name, t);
        }
        Ok(Config {
            path: Some(path.to_path_buf()),
            sources: out,
            readable_by_others: false,
            redact_key_env,
        })
    }

    pub fn display_path(&self) -> String {
        self.path.as_ref().map_or_else(
            || "(no configuration file)".into(),
            |p| p.display().to_string(),
        )
    }

    /// The table of one source, with its kind checked.
    pub fn source<'a>(&'a self, name: &'a str) -> Result<SourceTable<'a>> {
        let table = self.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                format!(
                    "no sources are configured in {}; see the README's configuration section",
                    self.display_path()
                )
            } else {
                format!("configured sources: {}", known.join(", "))
            };
            Error::config(format!("unknown source {name:?}")).with_hint(hint)
        })?;
        SourceTable::new(self, name, table)
    }
}

/// Whether `name` is safe inside a file name: `[A-Za-z0-9_.-]`, not
/// starting with `.`, so `{source}` can never climb out of a directory or
/// hide a file.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn default_locations() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("chatdump.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        out.push(dir.join("chatdump").join("config.toml"));
    }
    out
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

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

/// One `[sources.NAME]` table, read key by key. Reading a key marks it as
/// known; [`SourceTable::check_keys`] rejects whatever is left over.
pub struct SourceTable<'a> {
    config: &'a Config,
    pub name: &'a str,
    table: &'a toml::Table,
}

impl<'a> SourceTable<'a> {
    fn new(config: &'a Config, name: &'a str, table: &'a toml::Table) -> Result<Self> {
        let me = SourceTable {
            config,
            name,
            table,
        };
        // Its text: which platform it names is the registry's to say.
        me.string("kind")?;
        Ok(me)
    }

    /// The `kind` as written, if it is there.
    pub fn kind(&self) -> Option<&'a str> {
        self.table.get("kind").and_then(toml::Value::as_str)
    }

    /// A configuration error about `key` of this source.
    pub fn error(&self, key: &str, what: &str) -> Error {
        Error::config(format!(
            "{}: source {:?}: key {key:?} {what}",
            self.config.display_path(),
            self.name
        ))
    }

    /// Rejects keys outside `COMMON_KEYS` and the kind's own `allowed`.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<()> {
        for key in self.table.keys() {
            if !COMMON_KEYS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
                let mut known: Vec<&str> = COMMON_KEYS.iter().chain(allowed).copied().collect();
                known.sort_unstable();
                return Err(self
                    .error(
                        key,
                        &format!("is not a {} setting", self.kind().unwrap_or("source")),
                    )
                    .with_hint(format!("known keys: {}", known.join(", "))));
            }
        }
        Ok(())
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String> {
        match self.string(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.error(key, "is required")),
        }
    }

    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => Err(self.error(key, "must be a list of strings")),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.error(key, "must be a list of strings")),
        }
    }

    pub fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (min..=max).contains(n) => Ok(Some(*n)),
            Some(_) => Err(self.error(key, &format!("must be a whole number from {min} to {max}"))),
        }
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) if *f > 0.0 => Ok(Some(*f)),
            Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as f64)),
            Some(_) => Err(self.error(key, "must be a positive number")),
        }
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => match parse_duration(&text) {
                Ok(d) if d > Duration::zero() => Ok(Some(d)),
                Ok(_) => Err(self.error(key, "must be longer than zero")),
                Err(e) => Err(self.error(key, &e)),
            },
        }
    }

    pub fn timezone(&self, default: Tz) -> Result<Tz> {
        match self.string("timezone")? {
            None => Ok(default),
            Some(name) => name.parse().map_err(|_| {
                self.error(
                    "timezone",
                    &format!("names unknown time zone {name:?} (use an IANA name such as Asia/Ho_Chi_Minh)"),
                )
            }),
        }
    }

    /// The regions whose national phone numbers redaction looks for:
    /// `phone_regions` (ISO codes), else `home` (the platform's country)
    /// and the country of the source's `timezone`.
    pub fn phone_regions(&self, home: &str) -> Result<crate::redact::PhoneRegions> {
        use crate::redact::PhoneRegions;
        match self.table.get("phone_regions") {
            None => Ok(PhoneRegions::for_platform(
                home,
                self.string("timezone")?.as_deref(),
            )),
            Some(toml::Value::Array(items)) => {
                let codes: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                let codes = codes.ok_or_else(|| {
                    self.error(
                        "phone_regions",
                        "must be a list of region codes, e.g. [\"US\", \"MX\"]",
                    )
                })?;
                PhoneRegions::from_codes(&codes).map_err(|why| self.error("phone_regions", &why))
            }
            Some(_) => Err(self.error(
                "phone_regions",
                "must be a list of region codes, e.g. [\"US\", \"MX\"]",
            )),
        }
    }

    /// Resolves a secret given as `{key}_env` (the documented way) or as a
    /// literal `{key}`. A missing variable is a configuration error.
    pub fn secret(&self, key: &str) -> Result<Secret> {
        let env_key = format!("{key}_env");
        if let Some(var) = self.string(&env_key)? {
            return match std::env::var(&var) {
                Ok(v) if !v.is_empty() => secret_text(&v).map(Secret::new).map_err(|why| {
                    self.error(
                        &env_key,
                        &format!("names environment variable {var}, which {why}"),
                    )
                    .with_hint(format!(
                        "set {var} to the secret alone, with no spaces or line breaks around it"
                    ))
                }),
                _ => Err(self
                    .error(
                        &env_key,
                        &format!("names environment variable {var} which is not set"),
                    )
                    .with_hint(format!("export {var}=... before running chatdump"))),
            };
        }
        if let Some(literal) = self.string(key)? {
            let literal = secret_text(&literal)
                .map_err(|why| self.error(key, &format!("is a secret which {why}")))?;
            if self.config.readable_by_others {
                crate::log::warn(&format!(
                    "source {:?}: a literal `{key}` is stored in {}, which other users can read; prefer `{env_key}`",
                    self.name,
                    self.config.display_path()
                ));
            }
            return Ok(Secret::new(literal));
        }
        Err(self.error(
            &env_key,
            "is required (the environment variable holding the secret)",
        ))
    }

    /// Whether the secret is available, for `chatdump sources`; never fails.
    pub fn secret_present(&self, key: &str) -> bool {
        let env_key = format!("{key}_env");
        match self.string(&env_key) {
            Ok(Some(var)) => std::env::var(var).is_ok_and(|v| !v.is_empty()),
            _ => matches!(self.string(key), Ok(Some(_))),
        }
    }

    /// The base URL: `base_url` if set, else `default`. Plain `http://` is
    /// only allowed to loopback hosts (tests, local proxies).
    pub fn base_url(&self, default: impl FnOnce() -> Result<String>) -> Result<Url> {
        let text = match self.string("base_url")? {
            Some(u) => u,
            None => default()?,
        };
        self.checked_url("base_url", &text)
    }

    /// Another URL key (`backup_url`, `status_url`), held to the same
    /// rules as `base_url`.
    pub fn url(&self, key: &str) -> Result<Option<Url>> {
        self.string(key)?
            .map(|text| self.checked_url(key, &text))
            .transpose()
    }

    fn checked_url(&self, key: &str, text: &str) -> Result<Url> {
        let url = Url::parse(text.trim_end_matches('/')).map_err(|e| {
            // The text may hold `user:password@`: it is not quoted back.
            self.error(key, &format!("is not a valid URL: {e}"))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(self.error(
                    key,
                    "uses http:// to a non-loopback host; secrets would travel in clear text: use https://",
                ))
            }
            other => return Err(self.error(key, &format!("has unsupported scheme {other:?}"))),
        }
        Ok(url)
    }

    pub fn http(&self, default_rate: f64) -> Result<HttpSettings> {
        let defaults = HttpSettings::default();
        let std_duration = |key: &str, default: std::time::Duration| -> Result<_> {
            Ok(self
                .duration(key)?
                .and_then(|d| d.to_std().ok())
                .unwrap_or(default))
        };
        let max_wait = std_duration("max_wait", defaults.max_wait)?;
        let backoff = std_duration("backoff", defaults.backoff)?;
        if backoff > max_wait {
            return Err(self.error(
                "backoff",
                &format!(
                    "is longer than `max_wait` ({}): a first retry would never happen",
                    crate::window::humanize(Duration::from_std(max_wait).unwrap_or(Duration::MAX))
                ),
            ));
        }
        let rate_limit = self.float("rate_limit")?.unwrap_or(default_rate);
        if !(0.001..=10_000.0).contains(&rate_limit) {
            return Err(self.error(
                "rate_limit",
                "must be from 0.001 to 10000 requests a second",
            ));
        }
        Ok(HttpSettings {
            rate_limit,
            max_retries: self.integer("max_retries", 0, 20)?.unwrap_or(5) as u32,
            backoff,
            max_wait,
            request_timeout: std_duration("request_timeout", defaults.request_timeout)?,
            limits: Limits {
                error_body: self
                    .size("max_error_body", 256)?
                    .unwrap_or(defaults.limits.error_body),
                record: self
                    .size("max_record_size", 1024)?
                    .unwrap_or(defaults.limits.record),
                page: self
                    .size("max_page_size", 1024)?
                    .unwrap_or(defaults.limits.page),
                window: self
                    .size("max_window_memory", 1024)?
                    .unwrap_or(defaults.limits.window),
            },
            max_requests: None,
            backup: None,
        })
    }

    /// A byte size: a whole number of bytes, or a string with a unit
    /// (`64KiB`, `256MiB`, `1GiB`; `KB`/`MB`/`GB` read the same way).
    pub fn size(&self, key: &str, min: usize) -> Result<Option<usize>> {
        const MAX: u64 = 1 << 40;
        let bytes = match self.table.get(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
            Some(toml::Value::String(s)) => parse_size(s),
            Some(_) => None,
        };
        match bytes {
            Some(b) if b >= min as u64 && b <= MAX => Ok(Some(b as usize)),
            _ => Err(self.error(
                key,
                &format!("must be a size from {min} bytes to 1TiB, e.g. 64MiB"),
            )),
        }
    }
}

/// `64MiB`, `512 KB`, `1GiB`, `4096`: binary units either way.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn source_names_stay_plain() {
        for good in ["bogota", "bogota-live", "a.b_c-9", "X"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in [
            "../etc", "a/b", ".hidden", "", "a b", "é", "a\\b", "..", "a\u{1b}",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        let e = Config::parse(
            "[sources.\"../x\"]\nkind = \"caresoft\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(
            e.to_string().contains("t.toml") && e.to_string().contains("../x"),
            "{e}"
        );
    }

    #[test]
    fn limits_and_waits_are_bounded() {
        let c = parse(
            "[sources.a]\nkind = \"caresoft\"\nmax_record_size = \"2MiB\"\nmax_wait = \"1m\"\n",
        );
        let h = c.source("a").unwrap().http(1.0).unwrap();
        assert_eq!(h.limits.record, 2 << 20);
        assert_eq!(h.max_wait, std::time::Duration::from_secs(60));
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbackoff = \"99999999d\"\n");
        assert_eq!(
            c.source("a").unwrap().http(1.0).unwrap_err().exit_code(),
            78
        );
        let c = parse("[sources.a]\nkind = \"caresoft\"\nmax_page_size = \"lots\"\n");
        assert_eq!(
            c.source("a").unwrap().http(1.0).unwrap_err().exit_code(),
            78
        );
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("9999999999999GiB"), None);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn secrets_are_taken_whole_or_refused() {
        assert_eq!(secret_text("tok").as_deref(), Ok("tok"));
        assert_eq!(
            secret_text("tok\n").as_deref(),
            Ok("tok"),
            "a file's line end"
        );
        assert_eq!(secret_text("tok\r\n").as_deref(), Ok("tok"));
        assert_eq!(secret_text("a b").as_deref(), Ok("a b"));
        for bad in [
            "",
            "   ",
            "\n",
            "tok\n\n",
            " tok",
            "tok ",
            "to\tk",
            "tok\u{1b}",
            "to\nk",
        ] {
            assert!(secret_text(bad).is_err(), "{bad:?} was taken");
        }
    }

    proptest::proptest! {
        /// Whatever a variable holds, a secret taken has no control
        /// character and no white space around it; one refused says why.
        #[test]
        fn any_variable_is_taken_safely_or_refused(raw in "\\PC*|[ \t\r\n]{0,3}\\PC{0,8}[ \t\r\n]{0,3}") {
            if let Ok(secret) = secret_text(&raw) {
                proptest::prop_assert!(!secret.is_empty());
                proptest::prop_assert!(!secret.chars().any(char::is_control));
                proptest::prop_assert_eq!(secret.trim(), secret.as_str());
                proptest::prop_assert!(raw.starts_with(&secret));
            }
        }
    }

    #[test]
    fn phone_regions_are_a_list_of_known_codes() {
        for bad in ["[]", "[\"US\", \"XX\"]", "\"US\"", "[1]"] {
            let c = parse(&format!(
                "[sources.a]\nkind = \"ujet\"\nphone_regions = {bad}\n"
            ));
            let e = c.source("a").unwrap().phone_regions("US").unwrap_err();
            assert_eq!(e.exit_code(), 78, "{bad}");
            assert!(e.to_string().contains("phone_regions"), "{e}");
        }
    }

    #[test]
    fn unknown_keys_name_file_source_and_key() {
        let c = parse("[sources.a]\nkind = \"caresoft\"\ndomian = \"x\"\n");
        let t = c.source("a").unwrap();
        let e = t.check_keys(&["domain"]).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        let msg = e.to_string();
        assert!(
            msg.contains("test.toml") && msg.contains("\"a\"") && msg.contains("domian"),
            "{msg}"
        );
    }

    #[test]
    fn a_kind_is_text_and_an_unknown_source_an_error() {
        let c = parse("[sources.a]\nkind = \"zendesk\"\n[sources.c]\nkind = 7\n");
        assert_eq!(c.source("a").unwrap().kind(), Some("zendesk"));
        assert_eq!(c.source("b").err().unwrap().exit_code(), 78);
        assert_eq!(c.source("c").err().unwrap().exit_code(), 78);
    }

    #[test]
    fn http_to_remote_host_is_refused() {
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbase_url = \"http://example.com/x\"\n");
        let t = c.source("a").unwrap();
        assert!(t.base_url(|| Ok("https://unused".into())).is_err());
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbase_url = \"http://127.0.0.1:9/x\"\n");
        let t = c.source("a").unwrap();
        assert_eq!(
            t.base_url(|| Ok("https://unused".into())).unwrap().as_str(),
            "http://127.0.0.1:9/x"
        );
    }

    #[test]
    fn timezone_and_missing_secret_variable() {
        let c = parse(
            "[sources.a]\nkind = \"caresoft\"\ntimezone = \"Mars/Olympus\"\ntoken_env = \"CHATDUMP_TEST_UNSET_VAR\"\n",
        );
        let t = c.source("a").unwrap();
        assert!(t
            .timezone(chrono_tz::UTC)
            .unwrap_err()
            .to_string()
            .contains("Mars/Olympus"));
        let e = t.secret("token").unwrap_err();
        assert!(e.to_string().contains("CHATDUMP_TEST_UNSET_VAR"));
        assert!(!t.secret_present("token"));
    }
}
