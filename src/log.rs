//! Stderr messages at three levels, set once per run.
//!
//! stdout carries records and nothing else (SPEC section 3), so everything a
//! person should read goes through here. The verbosity is global because it
//! is one user choice per process; a logging framework would add nothing.

use std::sync::atomic::{AtomicU8, Ordering};

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
        eprintln!("chatdump: warning: {message}");
    }
}

pub fn info(message: &str) {
    if level() >= 1 {
        eprintln!("chatdump: {message}");
    }
}

pub fn verbose(message: &str) {
    if level() >= 2 {
        eprintln!("chatdump: {message}");
    }
}

pub fn trace(message: &str) {
    if level() >= 3 {
        eprintln!("chatdump: {message}");
    }
}
