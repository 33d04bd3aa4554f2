//! chatdump: export chat history from contact-center platforms to CSV and
//! JSON Lines. This file only parses the command line, runs it, prints the
//! error chain and exits with the code the README's "Exit codes" assigns.

mod app;
mod cli;
mod config;
mod demo;
mod error;
mod export;
mod http;
mod init;
mod jsonstream;
mod log;
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
mod store;
mod window;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(e) = app::run(cli) {
        if e.is_broken_pipe() {
            std::process::exit(0);
        }
        report(&e);
        std::process::exit(e.exit_code());
    }
}

/// Prints an error and its hint to stderr, one style for every command.
/// Reads like clap's own errors: `error:` then a `tip:` line.
pub(crate) fn report(e: &error::Error) {
    let text = |t: &str| log::escape_controls(t, true).into_owned();
    eprintln!("error: {}", text(&e.to_string()));
    if let Some(hint) = e.hint() {
        eprintln!("\n  tip: {}", text(hint));
    }
}
