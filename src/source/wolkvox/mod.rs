//! Wolkvox: what the report (`chat_2`) and real-time (`chats`) endpoints
//! share: the host, the `wolkvox-token` header, the envelope and its error
//! texts, one request in flight per token, and lenient string fields.
//!
//! - Host `https://wv{server}.wolkvox.com/api/v2/...`, header
//!   `wolkvox-token`. Docs: <https://www.wolkvox.com/en/apis-v2-2/2-conversations/>,
//!   error codes: <https://wolkvox.com/en/api-response-codes>.
//! - Envelope `{"code", "error", "msg", "data"}`; `code` is a number or a
//!   string (200, "200", "0" mean success); `data` may be an object.
//! - Limits: 2 simultaneous requests per token (we keep to 1), a daily token
//!   quota (every request spends one), 60,000 records, 31 days and 256 MB per
//!   response.
//! - Errors: the documented texts, whether they arrive in the HTTP status or
//!   only in the body `code`: `TOKEN LIMIT EXCEEDED` and `PLEASE VALIDATE
//!   TOKEN` are final (77); `EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS` waits
//!   and retries; any other 403 is taken as maintenance and retried; a 404 is
//!   an empty result.

mod chat1;
pub mod live;
pub mod reports;

use std::borrow::Cow;
use std::fmt;

use chrono_tz::Tz;
use reqwest::Url;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::config::{HttpSettings, SourceTable};
use crate::error::{Kind, Result};
use crate::http::{default_verdict, Auth, Verdict};
use crate::jsonstream::Envelope;
use crate::model::Sender;
use crate::source::Connection;

/// Keys both Wolkvox kinds accept.
pub const SHARED_KEYS: &[&str] = &["server", "token", "token_env", "timezone", "max_tokens"];
/// Tokens one run may spend by default: a month of daily windows split a
/// few times over, a small part of even one licence's 1,000 a day.
const DEFAULT_MAX_TOKENS: i64 = 500;

/// The naive format of `date_ini`/`date_end` and of returned `date`s.
pub const QUERY_TIME_FORMAT: &str = "%Y%m%d%H%M%S";

/// What both endpoints need to reach the platform.
pub struct Client {
    pub base: Url,
    auth: Auth,
    http: HttpSettings,
    pub zone: Tz,
}

impl Client {
    pub fn from_config(table: &SourceTable<'_>) -> Result<Client> {
        let base = table.base_url(|| {
            let server = table.required_string("server")?;
            if !server.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(table.error(
                    "server",
                    "must be the operation's server code, e.g. \"0012\"",
                ));
            }
            Ok(format!("https://wv{server}.wolkvox.com"))
        })?;
        Ok(Client {
            base,
            auth: Auth::Header {
                name: "wolkvox-token",
                value: table.secret("token")?,
            },
            // Wolkvox documents no rate per second: it asks for one call at
            // a time (`max_in_flight` 1) and counts a daily token per call.
            // So no spacing by default, and a ceiling on the tokens one run
            // may spend instead.
            http: HttpSettings {
                max_requests: Some(
                    table
                        .integer("max_tokens", 1, 1_000_000)?
                        .unwrap_or(DEFAULT_MAX_TOKENS) as u64,
                ),
                ..table.http(1000.0)?
            },
            zone: table.timezone(chrono_tz::America::Bogota)?,
        })
    }

    pub fn endpoint(table: &SourceTable<'_>) -> String {
        match (table.string("base_url"), table.string("server")) {
            (Ok(Some(u)), _) => u,
            (_, Ok(Some(s))) => format!("https://wv{s}.wolkvox.com"),
            _ => "(server missing)".into(),
        }
    }

    /// The token must never be used by two requests at once.
    pub fn connection(&self) -> Connection {
        Connection {
            auth: self.auth.clone(),
            settings: self.http.clone(),
            max_in_flight: 1,
        }
    }

    pub fn url(&self, script: &str, params: &[(&str, String)]) -> Url {
        crate::source::endpoint(&self.base, &format!("api/v2/{script}"), params)
    }
}

/// Reads a non-2xx response: the status and whatever text the body has.
pub fn verdict(status: u16, body: &[u8]) -> Verdict {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .map(|v| {
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            format!("{} {}", field("error"), field("msg"))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    judge(status, &text).unwrap_or_else(|| default_verdict(status))
}

/// Reads a 2xx response's envelope: the body `code` can still carry an error.
pub fn read_envelope(envelope: &Envelope) -> Result<(), Verdict> {
    let code = envelope.text("code").unwrap_or_default();
    let code = code.trim();
    if code.is_empty() || code == "200" || code == "0" {
        return Ok(());
    }
    let text = format!(
        "{} {}",
        envelope.text("error").unwrap_or_default(),
        envelope.text("msg").unwrap_or_default()
    );
    let status: u16 = code.parse().unwrap_or(0);
    match judge(status, &text) {
        // "No data" in the body: an empty answer even without `data`.
        Some(Verdict::Empty) => Err(Verdict::Empty),
        Some(v) => Err(v),
        None if (200..300).contains(&status) => Ok(()),
        None => Err(Verdict::Fail(
            Kind::Data,
            format!("Wolkvox answered code {code:?}: {}", text.trim()),
            None,
        )),
    }
}

/// The documented error texts, by what a caller should do about them.
fn judge(status: u16, text: &str) -> Option<Verdict> {
    let upper = text.to_ascii_uppercase();
    let said = text.trim();
    if upper.contains("TOKEN LIMIT EXCEEDED") {
        return Some(Verdict::Fail(
            Kind::Auth,
            format!("Wolkvox says the token's daily quota is spent ({said})"),
            Some("the quota (licences x 1000 requests a day) resets daily; see `--dry-run` for what a run costs".into()),
        ));
    }
    if upper.contains("VALIDATE TOKEN") || upper.contains("ENTER THE WOLKVOX-TOKEN") {
        return Some(Verdict::Fail(
            Kind::Auth,
            format!("Wolkvox rejected the token ({said})"),
            Some("check the token (wolkvox Manager > Integrations > Tokens) in the configured environment variable".into()),
        ));
    }
    if upper.contains("SIMULTANEOUS") {
        return Some(Verdict::Retry(format!(
            "Wolkvox: too many simultaneous requests ({said})"
        )));
    }
    if upper.contains("DOES NOT EXIST") || upper.contains("PARAMETERS ARE REQUIRED") {
        return Some(Verdict::Fail(
            Kind::Unavailable,
            format!("Wolkvox refused the request ({said})"),
            Some("check `server` (or `base_url`): this host may not serve the API".into()),
        ));
    }
    match status {
        404 => Some(Verdict::Empty),
        401 => Some(Verdict::Fail(
            Kind::Auth,
            format!("HTTP 401: Wolkvox rejected the token ({said})"),
            Some("check the token in the configured environment variable".into()),
        )),
        // Undocumented 403s happen during maintenance (backups).
        403 => Some(Verdict::Retry(format!(
            "HTTP 403, likely maintenance ({said})"
        ))),
        _ => None,
    }
}

/// Who sent a message: `AGENT` / `CUSTOMER` are documented; the rest is
/// recognised where possible and never fails.
pub fn sender(from: Option<&str>) -> Sender {
    let Some(from) = from else {
        return Sender::Unknown;
    };
    // Compared without making a lower-case copy: this runs once per
    // message.
    let from = from.trim();
    let is = |names: &[&str]| names.iter().any(|n| from.eq_ignore_ascii_case(n));
    if is(&["agent", "agente", "asesor"]) {
        Sender::Agent
    } else if is(&["customer", "cliente", "client", "user", "usuario"]) {
        Sender::Customer
    } else if is(&["system", "sistema"]) {
        Sender::System
    } else if from
        .as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"bot"))
    {
        Sender::Bot
    } else {
        Sender::Unknown
    }
}

/// A string field that tolerates what Wolkvox sends instead: numbers,
/// booleans, null. Borrowed from the response where possible.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    /// The value, unless missing or blank.
    pub fn get(&self) -> Option<&str> {
        let text = self.0.as_deref()?;
        match text.as_bytes().first() {
            // A visible ASCII character first: not blank, without looking
            // at the rest (this runs for every field of every message).
            Some(b'!'..=b'~') => Some(text),
            _ => (!text.trim().is_empty()).then_some(text),
        }
    }

    pub fn owned(&self) -> Option<String> {
        self.get().map(str::to_string)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
                // An integer past 2^53 came through f64 and lost its last
                // digits (two ids would become one): refused, so the
                // element is read again with its long integers as text
                // (`fields::exact_integers`), or rejected.
                if v.fract() == 0.0 && v.abs() >= 9_007_199_254_740_992.0 {
                    return Err(E::custom("a number too large to be read exactly"));
                }
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_error_texts() {
        let body = |msg: &str| format!(r#"{{"code":403,"error":"FORBIDDEN","msg":"{msg}"}}"#);
        assert!(matches!(
            verdict(403, body("TOKEN LIMIT EXCEEDED").as_bytes()),
            Verdict::Fail(Kind::Auth, ..)
        ));
        assert!(matches!(
            verdict(403, body("PLEASE VALIDATE TOKEN").as_bytes()),
            Verdict::Fail(Kind::Auth, ..)
        ));
        assert!(matches!(
            verdict(
                403,
                body("EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)").as_bytes()
            ),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            verdict(403, b"<html>maintenance</html>"),
            Verdict::Retry(_)
        ));
        assert!(matches!(verdict(404, b""), Verdict::Empty));
        assert!(matches!(
            verdict(400, br#"{"code":400,"error":"BAD REQUEST","msg":"THE API YOU WANT TO CONSULT DOES NOT EXIST"}"#),
            Verdict::Fail(Kind::Unavailable, ..)
        ));
        assert!(matches!(verdict(503, b""), Verdict::Retry(_)));
    }

    fn envelope(json: &str) -> Envelope {
        let mut s = crate::jsonstream::Scanner::new(crate::jsonstream::ItemsAt::Key("data"));
        s.feed(json.as_bytes(), &mut |_| {}).unwrap();
        s.finish().unwrap();
        s.envelope
    }

    #[test]
    fn body_codes_are_checked_too() {
        assert!(read_envelope(&envelope(r#"{"code":200,"data":[]}"#)).is_ok());
        assert!(read_envelope(&envelope(r#"{"code":"200","data":[]}"#)).is_ok());
        assert!(read_envelope(&envelope(r#"{"code":"0","data":[]}"#)).is_ok());
        assert!(matches!(
            read_envelope(&envelope(
                r#"{"code":404,"error":"NOT FOUND","msg":"no data"}"#
            )),
            Err(Verdict::Empty)
        ));
        assert!(matches!(
            read_envelope(&envelope(
                r#"{"code":403,"error":"FORBIDDEN","msg":"TOKEN LIMIT EXCEEDED"}"#
            )),
            Err(Verdict::Fail(Kind::Auth, ..))
        ));
        assert!(matches!(
            read_envelope(&envelope(r#"{"code":"500","error":"x","msg":"y"}"#)),
            Err(Verdict::Fail(Kind::Data, ..))
        ));
    }

    #[test]
    fn senders() {
        assert_eq!(sender(Some("AGENT")), Sender::Agent);
        assert_eq!(sender(Some("customer")), Sender::Customer);
        assert_eq!(sender(Some("CHAT BOT")), Sender::Bot);
        assert_eq!(sender(Some(" Cliente\t")), Sender::Customer);
        assert_eq!(sender(Some("SISTEMA")), Sender::System);
        assert_eq!(sender(Some("Asesor")), Sender::Agent);
        assert_eq!(sender(Some("WhatsappBoT")), Sender::Bot);
        assert_eq!(sender(Some("agents")), Sender::Unknown);
        assert_eq!(sender(Some("bo")), Sender::Unknown);
        assert_eq!(sender(Some("supervisor")), Sender::Unknown);
        assert_eq!(sender(None), Sender::Unknown);
    }

    #[test]
    fn lenient_text() {
        #[derive(Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            a: Text<'a>,
            #[serde(borrow)]
            b: Text<'a>,
            #[serde(borrow)]
            c: Text<'a>,
            #[serde(borrow)]
            d: Text<'a>,
            #[serde(borrow, default)]
            e: Text<'a>,
        }
        let t: T = serde_json::from_str(r#"{"a":"x","b":12,"c":null,"d":"  "}"#).unwrap();
        assert_eq!(t.a.get(), Some("x"));
        assert!(matches!(t.a.0, Some(Cow::Borrowed(_))));
        assert_eq!(t.b.get(), Some("12"));
        assert_eq!(t.c.get(), None);
        assert_eq!(t.d.get(), None);
        assert_eq!(t.e.get(), None);
        // Blank is any Unicode white space, first or not; anything else,
        // visible or not, is a value, kept as sent.
        let text = |s: &'static str| Text(Some(Cow::Borrowed(s)));
        for blank in [
            "",
            " ",
            "\t\n\r",
            "\u{b}\u{c}",
            "\u{a0}",
            " \u{3000} ",
            "\u{2028}",
        ] {
            assert_eq!(text(blank).get(), None, "{blank:?}");
        }
        for value in [
            "~", "!", " x ", "\u{7f}", "\u{1}", "\u{a0}é", "ñ", "\u{200b}",
        ] {
            assert_eq!(text(value).get(), Some(value), "{value:?}");
        }
    }
}
