//! chatdump: export chat history from contact-center platforms to CSV and
//! JSON Lines. This file only parses the command line, runs it, prints the
//! error chain and exits with the code the README's "Exit codes" assigns.

mod app;
mod attach;
mod cli;
mod config;
mod demo;
mod error;
mod export;
mod http;
mod init;
mod jsonstream;
mod log;
mod media;
mod metrics;
mod model;
mod output;
mod pipeline;
mod redact;
mod rejects;
mod safefs;
mod schema;
mod source;
mod state;
mod state_store;
mod status;
mod store;
mod tap;
mod window;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

/// Set by the panic hook: whatever error the run then ends with, its exit
/// code is 70 (an internal error), so a cron job's log says "bug", not
/// "disk full".
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Exit code of an internal error (sysexits' EX_SOFTWARE).
const EXIT_INTERNAL: i32 = 70;

fn main() {
    install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Unwinding runs every cleanup on the way (temporary files removed,
    // nothing committed): the state keeps its last checkpoint.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app::run(cli)));
    if PANICKED.load(Ordering::SeqCst) {
        std::process::exit(EXIT_INTERNAL);
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if e.is_broken_pipe() {
                std::process::exit(0);
            }
            log::report(&e);
            std::process::exit(e.exit_code());
        }
        Err(_) => std::process::exit(EXIT_INTERNAL),
    }
}

/// A panic is a bug; its message can quote whatever was being handled (a
/// customer's text, escape sequences and all), so only where it happened
/// is printed, once, whichever thread it was on.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if PANICKED.swap(true, Ordering::SeqCst) {
            return;
        }
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        eprintln!(
            "error: internal error at {at}: this is a bug in chatdump; nothing of this run was committed\n\n  tip: report it with the command line and this location (the panic's message is withheld: it may quote personal data); a rerun starts from the last checkpoint"
        );
    }));
}
