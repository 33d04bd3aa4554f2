//! Stderr: messages at three levels, and a progress line on terminals.
//!
//! stdout carries records and nothing else (the README's "Commands"), so everything a
//! person should read goes through here. The verbosity is one user choice
//! per process, so it is global; a logging framework would add nothing.
//!
//! The progress line (windows done, records, requests, rate, elapsed) is
//! drawn only when stderr is a terminal and not `-q`, redrawn in place at
//! most a few times a second, and erased before any other message, so logs
//! and pipes never see it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::Error;

static LEVEL: AtomicU8 = AtomicU8::new(1);

/// 0 = quiet (errors only), 1 = normal, 2 = verbose, 3 = every request.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

pub fn warn(message: &str) {
    if level() >= 1 {
        say(&format!("warning: {message}"));
    }
}

pub fn info(message: &str) {
    if level() >= 1 {
        say(message);
    }
}

pub fn verbose(message: &str) {
    if level() >= 2 {
        say(message);
    }
}

pub fn trace(message: &str) {
    if level() >= 3 {
        say(message);
    }
}

fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
        let _ = write!(err, "\r\x1b[2K");
    }
    let _ = writeln!(err, "{}", escape_controls(message, true));
}

/// `text` with every control character (C0, DEL, C1) and every Unicode
/// bidirectional override written as a `\u{..}` escape, so text a server
/// sent cannot move the cursor, recolour or retitle the terminal, or
/// reorder what the reader sees. `keep_newlines` leaves `\n` alone for
/// chatdump's own multi-line messages.
pub fn escape_controls(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

static PROGRESS_SHOWN: AtomicBool = AtomicBool::new(false);
static WINDOWS_DONE: AtomicU64 = AtomicU64::new(0);
static WINDOWS_TOTAL: AtomicU64 = AtomicU64::new(0);
static RECORDS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static DRAWN: Mutex<Option<Instant>> = Mutex::new(None);
static STARTED: Mutex<Option<Instant>> = Mutex::new(None);

/// Progress counters; cheap, and only drawn on a terminal.
pub mod progress {
    use super::*;

    pub fn windows(done: u64, total: u64) {
        WINDOWS_DONE.store(done, Ordering::Relaxed);
        WINDOWS_TOTAL.store(total, Ordering::Relaxed);
        draw();
    }

    pub fn request() {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        draw();
    }

    pub fn records(n: u64) {
        RECORDS.fetch_add(n, Ordering::Relaxed);
    }

    /// Erases the line before the summary.
    pub fn finish() {
        if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

fn draw() {
    if level() == 0 || !std::io::stderr().is_terminal() {
        return;
    }
    let now = Instant::now();
    let started = *STARTED.lock().expect("progress lock").get_or_insert(now);
    {
        let mut drawn = DRAWN.lock().expect("progress lock");
        if drawn.is_some_and(|t| now.duration_since(t).as_millis() < 200) {
            return;
        }
        *drawn = Some(now);
    }
    let elapsed = now.duration_since(started).as_secs_f64();
    let records = RECORDS.load(Ordering::Relaxed);
    let line = format!(
        "window {}/{} · {} records · {} requests · {}/s · {:.0} s",
        WINDOWS_DONE.load(Ordering::Relaxed),
        WINDOWS_TOTAL.load(Ordering::Relaxed),
        thousands(records),
        thousands(REQUESTS.load(Ordering::Relaxed)),
        thousands((records as f64 / elapsed.max(0.001)) as u64),
        elapsed
    );
    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{line}");
    PROGRESS_SHOWN.store(true, Ordering::Relaxed);
}

/// `12345` -> `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints an error and its hint to stderr, one style for every command.
/// Reads like clap's own errors: `error:` then a `tip:` line.
pub fn report(e: &Error) {
    let text = |t: &str| escape_controls(t, true).into_owned();
    eprintln!("error: {}", text(&e.to_string()));
    if let Some(hint) = e.hint() {
        eprintln!("\n  tip: {}", text(hint));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(12_345), "12,345");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        use super::escape_controls;
        assert_eq!(escape_controls("plain ñ text", false), "plain ñ text");
        assert_eq!(
            escape_controls("a\x1b[31mred\x07\r\nb\u{9b}c\u{202e}d", false),
            "a\\u{1b}[31mred\\u{7}\\u{d}\\u{a}b\\u{9b}c\\u{202e}d"
        );
        assert_eq!(escape_controls("one\ntwo\x1b", true), "one\ntwo\\u{1b}");
    }
}
