//! Secrets in the configuration: a value that never prints, and the text
//! of a secret read from a variable or a file, taken whole or refused.

use std::fmt;

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
