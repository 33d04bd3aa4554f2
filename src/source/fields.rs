//! Lenient readers of the fields of a record parsed as a JSON map, shared
//! by the providers that read one that way (CareSoft, UJET). Platforms send
//! numbers as strings and strings as numbers, empty strings for nothing and
//! zero for "no id"; these readers take each value for what it means, and
//! say which field was unreadable when one is.
//!
//! (Wolkvox's typed elements borrow their strings instead: see
//! `wolkvox::Text`.)

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::window::parse_platform_time;

/// Digits from which an integer literal may not fit 64 bits (a negative
/// one of 19 digits already may not): serde_json reads such a number as an
/// `f64`, and two ids that differ in their last digits would become one.
const LONG_INTEGER: usize = 19;

/// `json` with every integer literal of [`LONG_INTEGER`] digits or more
/// (outside strings) written as a string of the same digits, so it is read
/// digit for digit; `json` itself, unchanged, when it holds none (nearly
/// always: a cheap look for a run of that many digits decides).
pub fn exact_integers(json: &[u8]) -> Cow<'_, [u8]> {
    let mut run = 0;
    let long = json.iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= LONG_INTEGER
    });
    if !long {
        return Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut at = 0;
    let mut in_string = false;
    while at < json.len() {
        let b = json[at];
        if in_string {
            out.push(b);
            match b {
                b'\\' if at + 1 < json.len() => {
                    out.push(json[at + 1]);
                    at += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            at += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            // A whole number token: sign, digits, fraction, exponent.
            let start = at;
            at += usize::from(b == b'-');
            let digits_from = at;
            while at < json.len() && json[at].is_ascii_digit() {
                at += 1;
            }
            let digits = at - digits_from;
            let mut plain = true;
            while at < json.len()
                && matches!(json[at], b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9')
            {
                plain = false;
                at += 1;
            }
            let token = &json[start..at];
            if plain && digits >= LONG_INTEGER {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
            } else {
                out.extend_from_slice(token);
            }
            continue;
        }
        out.push(b);
        at += 1;
    }
    Cow::Owned(out)
}

/// One record element read as a JSON object, its long integers digit for
/// digit (see [`exact_integers`]).
pub fn object(item: &[u8]) -> serde_json::Result<Map<String, Value>> {
    serde_json::from_slice(&exact_integers(item))
}

/// A string that is not blank, or a number as written; else absent.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id that counts only when positive (0 or null mean "none").
pub fn positive_id(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) if n.as_i64().is_some_and(|v| v > 0) => Some(n.to_string()),
        Value::Number(n) if n.as_u64().is_some_and(|v| v > 0) => Some(n.to_string()),
        // Digits, not all zeros: any length (an id beyond 64 bits too).
        Value::String(s)
            if !s.trim().is_empty()
                && s.trim().bytes().all(|b| b.is_ascii_digit())
                && s.trim().bytes().any(|b| b != b'0') =>
        {
            Some(s.trim().to_string())
        }
        _ => None,
    }
}

/// A whole number, from a number or a numeric string; blank is absent,
/// anything else an error naming `key`.
pub fn integer(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{key} is not a whole number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} {s:?} is not a number")),
        Some(_) => Err(format!("{key} is not a number")),
    }
}

/// A number rounded to a whole one, from a number or a numeric string;
/// anything else is absent (fields that are only informative).
pub fn rounded(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.round() as i64),
        _ => None,
    }
}

/// Seconds, from a whole number or an `HH:MM:SS` / `MM:SS` string.
/// Never negative: a duration before its own start is a platform error,
/// said as such rather than written; a figure too large for 64 bits is
/// refused rather than wrapped.
pub fn seconds(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        Some(Value::String(s)) if s.contains(':') => {
            let clock = |text: &str| -> Option<i64> {
                let mut total: i64 = 0;
                let parts: Vec<&str> = text.trim().split(':').collect();
                if !(2..=3).contains(&parts.len()) {
                    return None;
                }
                let units = [1, 60, 3600];
                for (part, unit) in parts.iter().rev().zip(units) {
                    // Digits only: no sign, no space, no `+`.
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let n: i64 = part.parse().ok()?;
                    total = total.checked_add(n.checked_mul(unit)?)?;
                }
                Some(total)
            };
            clock(s)
                .map(Some)
                .ok_or_else(|| format!("{key} {s:?} is not a duration HH:MM:SS or MM:SS"))
        }
        _ => match integer(v, key)? {
            Some(n) if n < 0 => Err(format!("{key} {n} is a negative duration")),
            n => Ok(n),
        },
    }
}

/// A platform's naive `YYYY-MM-DD HH:MM:SS`, read in `zone`.
pub fn local_time(v: Option<&Value>, key: &str, zone: Tz) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_platform_time(s, zone).map_err(|e| format!("{key}: {e}")),
        Some(_) => Err(format!("{key} is not a timestamp string")),
    }
}

/// An RFC 3339 time with its offset; blank is absent.
pub fn utc_time(v: Option<&Value>, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| format!("{key} {s:?} is not an RFC 3339 time"))
            .and_then(|t| crate::window::checked(t.with_timezone(&Utc), s))
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
        Some(_) => Err(format!("{key} is not a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    proptest::proptest! {
        /// Any text is a duration that is exactly its clock's seconds, or
        /// an error: never a wrapped or negative figure.
        #[test]
        fn durations_are_exact_or_refused(text in "\\PC{0,12}|-?[0-9]{1,20}(:[0-9]{1,20}){1,3}") {
            if let Ok(Some(n)) = seconds(Some(&json!(text)), "d") {
                proptest::prop_assert!(n >= 0);
                let parts: Vec<u128> = text.trim().split(':').map(|p| p.parse().unwrap()).collect();
                let want = parts.iter().fold(0u128, |acc, p| acc * 60 + p);
                proptest::prop_assert_eq!(n as u128, want);
            }
        }

        /// Ids of any length survive, whether written as numbers or
        /// strings, and other numbers and strings are untouched.
        #[test]
        fn long_integers_are_read_digit_for_digit(
            digits in "[1-9][0-9]{0,40}",
            text in "\\PC{0,10}[0-9]{0,25}",
            float in "-?[1-9][0-9]{0,24}\\.[0-9]{1,3}(e[0-9])?",
        ) {
            let item = format!(
                r#"{{"id":{digits},"neg":-{digits},"s":{},"f":{float},"list":[{digits},"{digits}"]}}"#,
                serde_json::to_string(&text).unwrap()
            );
            let row = object(item.as_bytes()).unwrap();
            proptest::prop_assert_eq!(text_of(row.get("id")), Some(digits.clone()));
            proptest::prop_assert_eq!(text_of(row.get("neg")), Some(format!("-{digits}")));
            proptest::prop_assert_eq!(row.get("s"), Some(&json!(text)));
            let plain: Value = serde_json::from_str(&float).unwrap();
            proptest::prop_assert_eq!(row.get("f"), Some(&plain));
            proptest::prop_assert_eq!(&row["list"][1], &json!(digits));
            proptest::prop_assert_eq!(positive_id(row.get("id")), Some(digits.clone()));
        }
    }

    fn text_of(v: Option<&Value>) -> Option<String> {
        text(v)
    }

    #[test]
    fn ids_beyond_64_bits_stay_apart() {
        let a = object(br#"{"id":12345678901234567890123}"#).unwrap();
        let b = object(br#"{"id":12345678901234567890124}"#).unwrap();
        assert_eq!(
            text(a.get("id")).as_deref(),
            Some("12345678901234567890123")
        );
        assert_ne!(text(a.get("id")), text(b.get("id")));
        let quoted =
            object(br#"{"t":"12345678901234567890123 \" 12345678901234567890123"}"#).unwrap();
        assert_eq!(
            quoted["t"],
            json!("12345678901234567890123 \" 12345678901234567890123"),
            "digits inside a string are left alone"
        );
    }

    #[test]
    fn values_are_taken_for_what_they_mean() {
        assert_eq!(text(Some(&json!(" "))), None);
        assert_eq!(text(Some(&json!(12))).as_deref(), Some("12"));
        assert_eq!(positive_id(Some(&json!(0))), None);
        assert_eq!(positive_id(Some(&json!("42"))).as_deref(), Some("42"));
        assert_eq!(integer(Some(&json!("")), "k"), Ok(None));
        assert!(integer(Some(&json!("x")), "k").unwrap_err().contains("k"));
        assert_eq!(rounded(Some(&json!("4.6"))), Some(5));
        assert_eq!(rounded(Some(&json!([1]))), None);
        assert_eq!(seconds(Some(&json!("01:02:03")), "d"), Ok(Some(3723)));
        assert_eq!(seconds(Some(&json!(39)), "d"), Ok(Some(39)));
        assert!(seconds(Some(&json!("x:y")), "d").is_err());
        for bad in [
            "-00:05:00",
            "2562047788015216:00:00",
            "1:2:3:4",
            ":05",
            "01: 02",
            "+1:00",
        ] {
            assert!(seconds(Some(&json!(bad)), "d").is_err(), "{bad} was read");
        }
        assert!(seconds(Some(&json!(-5)), "d").is_err());
        assert_eq!(seconds(Some(&json!("100:00:00")), "d"), Ok(Some(360_000)));
        let hcm: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        assert_eq!(
            local_time(Some(&json!("2024-03-01 07:00:00")), "t", hcm),
            Ok(Some("2024-03-01T00:00:00Z".parse().unwrap()))
        );
        assert_eq!(utc_time(Some(&json!("")), "t"), Ok(None));
        assert!(utc_time(Some(&json!("yesterday")), "t").is_err());
    }
}
