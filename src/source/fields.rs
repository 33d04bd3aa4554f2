//! Lenient readers of the fields of a record parsed as a JSON map, shared
//! by the providers that read one that way (CareSoft, UJET). Platforms send
//! numbers as strings and strings as numbers, empty strings for nothing and
//! zero for "no id"; these readers take each value for what it means, and
//! say which field was unreadable when one is.
//!
//! (Wolkvox's typed elements borrow their strings instead: see
//! `wolkvox::Text`.)

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::window::parse_platform_time;

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
        Value::String(s) if s.trim().parse::<i64>().is_ok_and(|v| v > 0) => {
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
pub fn seconds(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        Some(Value::String(s)) if s.contains(':') => {
            let parts: Vec<&str> = s.trim().split(':').collect();
            let numbers: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
            match numbers.as_deref() {
                Some([h, m, s]) => Ok(Some(h * 3600 + m * 60 + s)),
                Some([m, s]) => Ok(Some(m * 60 + s)),
                _ => Err(format!("{key} {s:?} is not HH:MM:SS")),
            }
        }
        _ => integer(v, key),
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
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("{key} {s:?} is not an RFC 3339 time")),
        Some(_) => Err(format!("{key} is not a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let hcm: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        assert_eq!(
            local_time(Some(&json!("2024-03-01 07:00:00")), "t", hcm),
            Ok(Some("2024-03-01T00:00:00Z".parse().unwrap()))
        );
        assert_eq!(utc_time(Some(&json!("")), "t"), Ok(None));
        assert!(utc_time(Some(&json!("yesterday")), "t").is_err());
    }
}
