//! The crate error and its mapping onto the exit codes in the README's "Exit codes".
//!
//! Every failure a user can meet is one of a handful of kinds, each with one
//! exit code, so cron jobs and wrappers can react without parsing text. The
//! message itself carries the specifics: which source, which request (with
//! secrets already removed by the HTTP layer) and what to do next.

use std::fmt;

/// What went wrong, at the granularity a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line (exit 2).
    Usage,
    /// The platform sent data that could not be read (exit 65).
    Data,
    /// The platform stayed unavailable after retries (exit 69).
    Unavailable,
    /// Output or state could not be written (exit 73).
    Output,
    /// Another run holds the lock on the state (exit 75).
    Locked,
    /// Credentials rejected or quota exhausted (exit 77).
    Auth,
    /// Configuration error (exit 78).
    Config,
    /// Stopped by Ctrl-C or SIGTERM in the middle of a run (exit 130, as a
    /// shell reports a process ended by SIGINT); nothing was committed.
    Interrupted,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Data => 65,
            Kind::Unavailable => 69,
            Kind::Output => 73,
            Kind::Locked => 75,
            Kind::Auth => 77,
            Kind::Config => 78,
            Kind::Interrupted => 130,
        }
    }
}

/// The crate error: a kind, a lowercase message, and an optional hint telling
/// the user what to do next.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    message: String,
    hint: Option<String>,
    /// Set when the error is a closed stdout pipe, which ends the run quietly.
    broken_pipe: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            broken_pipe: false,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message)
    }

    pub fn data(message: impl Into<String>) -> Self {
        Self::new(Kind::Data, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, message)
    }

    /// An I/O failure on output or state. A closed pipe is remembered as such
    /// so `main` can exit 0 without a word, as the README's "Commands" promises.
    pub fn output(what: impl fmt::Display, err: std::io::Error) -> Self {
        let broken_pipe = err.kind() == std::io::ErrorKind::BrokenPipe;
        let mut e = Self::new(Kind::Output, format!("{what}: {err}"));
        e.broken_pipe = broken_pipe;
        e
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefixes the message with context, keeping kind and hint.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Rewrites the message and hint (masking secrets, escaping server
    /// text), keeping everything else.
    pub fn map_text(mut self, f: impl Fn(&str) -> String) -> Self {
        self.message = f(&self.message);
        self.hint = self.hint.as_deref().map(&f);
        self
    }

    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        let table = [
            (Kind::Usage, 2),
            (Kind::Data, 65),
            (Kind::Unavailable, 69),
            (Kind::Output, 73),
            (Kind::Locked, 75),
            (Kind::Auth, 77),
            (Kind::Config, 78),
            (Kind::Interrupted, 130),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
        }
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let e = Error::output(
            "stdout",
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        );
        assert!(e.is_broken_pipe());
        let e = Error::output("out.csv", std::io::Error::other("disk full"));
        assert!(!e.is_broken_pipe());
        assert_eq!(e.to_string(), "out.csv: disk full");
    }
}
