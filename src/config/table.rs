//! One `[sources.NAME]` table, read key by key into validated values.

use chrono::Duration;
use chrono_tz::Tz;
use reqwest::Url;

use crate::error::{Error, Result};
use crate::window::parse_duration;

use super::*;

/// One `[sources.NAME]` table, read key by key. Reading a key marks it as
/// known; [`SourceTable::check_keys`] rejects whatever is left over.
pub struct SourceTable<'a> {
    config: &'a Config,
    pub name: &'a str,
    table: &'a toml::Table,
}

impl<'a> SourceTable<'a> {
    pub(super) fn new(config: &'a Config, name: &'a str, table: &'a toml::Table) -> Result<Self> {
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

    /// A pace: requests a second, from 0.001 to 10,000.
    pub fn rate(&self, key: &str) -> Result<Option<f64>> {
        match self.float(key)? {
            Some(rate) if !(0.001..=10_000.0).contains(&rate) => {
                Err(self.error(key, "must be from 0.001 to 10000 requests a second"))
            }
            rate => Ok(rate),
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
        let rate_limit = self.rate("rate_limit")?.unwrap_or(default_rate);
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
pub(super) fn parse_size(text: &str) -> Option<u64> {
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

/// Whether `url` names this machine: where plain http may go (a base
/// URL in tests and local proxies; an attachment host that is listed).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
