//! Turns parsed command-line flags into validated options and runs the
//! chosen command. The small commands (`sources`, `check`) live here; the
//! export pipeline and the demo have modules of their own.

use std::io::Write;
use std::time::Instant;

use chrono_tz::Tz;

use crate::cli::{Cli, Command, ExportArgs, FormatArg, OutputArgs, RecordsArg, RedactArg};
use crate::config::{Config, SourceTable};
use crate::error::{Error, Kind, Result};
use crate::export::{self, Options, RedactOptions, WindowArgs};
use crate::http::{display_url, Http};
use crate::log;
use crate::model::RecordKind;
use crate::output::Format;
use crate::redact::Mode as RedactMode;
use crate::source::ChatSource;
use crate::source::{registry, SourceKind};

/// Runs the command; the error carries the exit code.
pub fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(Kind::Unavailable, format!("cannot start the runtime: {e}")))?;
    match cli.command {
        Command::Export(args) => {
            let mut options = output_options(&args.output)?;
            options.state = args.state.clone();
            options.metrics = crate::metrics::Targets::new(
                args.metrics_file.clone(),
                args.metrics_push.as_deref(),
            )?;
            options.chunk = args
                .chunk
                .as_deref()
                .map(|d| match crate::window::parse_duration(d) {
                    Ok(d) if d >= chrono::Duration::minutes(1) => Ok(d),
                    Ok(_) => Err(Error::usage("--chunk must be at least 1m")),
                    Err(e) => Err(Error::usage(format!("--chunk: {e}"))),
                })
                .transpose()?;
            if args.follow {
                let interval = match args.interval.as_deref() {
                    None => chrono::Duration::minutes(5),
                    Some(d) => crate::window::parse_duration(d)
                        .map_err(|e| Error::usage(format!("--interval: {e}")))?,
                };
                if interval < chrono::Duration::seconds(1) {
                    return Err(Error::usage("--interval must be at least 1s"));
                }
                options.follow = Some(interval);
            }
            let config = Config::load(cli.config.as_deref())?;
            let window = window_args(&args);
            runtime
                .block_on(export::export(
                    &config,
                    &args.source,
                    &window,
                    &options,
                    args.dry_run,
                ))
                .and_then(|stats| {
                    if stats.rejected > 0 {
                        Err(Error::data(format!(
                            "source {:?}: {} record{} could not be read (the others were exported)",
                            args.source,
                            stats.rejected,
                            if stats.rejected == 1 { "" } else { "s" }
                        ))
                        .with_hint(
                            "the rejects file named above holds each raw record and the reason",
                        ))
                    } else if stats.attachments_missing > 0 {
                        let n = stats.attachments_missing;
                        Err(Error::data(format!(
                            "source {:?}: {n} attachment{} could not be had (every record was exported)",
                            args.source,
                            if n == 1 { "" } else { "s" }
                        ))
                        .with_hint(
                            "the rejects file named above lists each with the reason; export the same window again with --from/--to and --attachments to fetch what was missing (what is kept already is not written twice)",
                        ))
                    } else {
                        Ok(())
                    }
                })
        }
        Command::Demo(args) => {
            let options = output_options(&args)?;
            runtime.block_on(crate::demo::demo(&options))
        }
        Command::Sources => sources(&Config::load(cli.config.as_deref())?),
        Command::Schema {
            records,
            include_raw,
        } => {
            let kind = match records {
                RecordsArg::Conversations => RecordKind::Conversations,
                RecordsArg::Messages => RecordKind::Messages,
            };
            let text = serde_json::to_string_pretty(&crate::schema::schema(kind, include_raw))
                .expect("schema serializes");
            writeln!(std::io::stdout(), "{text}").map_err(|e| Error::output("stdout", e))
        }
        Command::Init { kinds } => {
            let kinds: Vec<SourceKind> = kinds.iter().filter_map(|k| registry::kind(k)).collect();
            let path = cli
                .config
                .unwrap_or_else(|| std::path::PathBuf::from("chatdump.toml"));
            crate::init::write(&path, &kinds)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "chatdump", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .map_err(|e| Error::output("stdout", e))
        }
        Command::Status {
            sources,
            format,
            max_lag,
        } => {
            let max_lag = max_lag
                .as_deref()
                .map(crate::status::parse_max_lag)
                .transpose();
            let config = Config::load(cli.config.as_deref());
            let (max_lag, config) = match (max_lag, config) {
                (Ok(max_lag), Ok(config)) => (max_lag, config),
                (Err(e), _) | (_, Err(e)) => {
                    crate::log::report(&e);
                    std::process::exit(crate::status::Verdict::Unknown.exit_code());
                }
            };
            let args = crate::status::StatusArgs {
                sources,
                json: matches!(format, crate::cli::StatusFormat::Json),
                max_lag,
            };
            let code = runtime.block_on(crate::status::status(&config, &args));
            std::process::exit(code);
        }
        Command::Tap {
            state,
            catalog,
            discover,
        } => {
            let config = cli.config.ok_or_else(|| {
                Error::usage("tap needs --config CONFIG.json (the Singer configuration)")
            })?;
            let args = crate::tap::TapArgs {
                config,
                state,
                catalog,
                discover,
            };
            runtime.block_on(crate::tap::tap(&args))
        }
        Command::Check { sources, locations } => {
            let config = Config::load(cli.config.as_deref())?;
            runtime.block_on(check(&config, &sources, &locations))
        }
    }
}

fn window_args(args: &ExportArgs) -> WindowArgs {
    WindowArgs {
        from: args.from.clone(),
        to: args.to.clone(),
        since: args.since.clone(),
    }
}

fn output_options(args: &OutputArgs) -> Result<Options> {
    log::set_level(if args.quiet { 0 } else { 1 + args.verbose });
    let tz = args
        .tz
        .as_deref()
        .map(|name| {
            name.parse::<Tz>().map_err(|_| {
                Error::usage(format!(
                    "--tz: unknown time zone {name:?} (use an IANA name such as America/Bogota)"
                ))
            })
        })
        .transpose()?;
    Ok(Options {
        records: match args.records {
            RecordsArg::Conversations => RecordKind::Conversations,
            RecordsArg::Messages => RecordKind::Messages,
        },
        format: args.format.map(|f| match f {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Csv => Format::Csv,
            FormatArg::Parquet => Format::Parquet,
        }),
        output: args.output.clone(),
        attachments: args.attachments.clone(),
        attach: None,
        tz,
        include_raw: args.include_raw,
        csv_raw: args.csv_raw,
        state: None,
        chunk: None,
        follow: None,
        metrics: Default::default(),
        redact: args.redact.map(|mode| RedactOptions {
            mode: match mode {
                RedactArg::Hash => RedactMode::Hash,
                RedactArg::Mask => RedactMode::Mask,
                RedactArg::Drop => RedactMode::Drop,
            },
            agents: args.redact_agents,
        }),
    })
}

/// `chatdump sources`: one line per configured source. Never reads a secret's value.
fn sources(config: &Config) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let io = |e| Error::output("stdout", e);
    if config.sources.is_empty() {
        log::info(&format!(
            "no sources configured ({}); see the README's configuration section, or try `chatdump demo`",
            config.display_path()
        ));
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<13} {:<48} SECRET",
        "NAME", "KIND", "ENDPOINT"
    )
    .map_err(io)?;
    for name in config.sources.keys() {
        let table = config.source(name)?;
        let platform = registry::platform_of(&table)?;
        let (endpoint, secret) = describe(&table, platform);
        writeln!(
            out,
            "{:<20} {:<13} {:<48} {}",
            name,
            platform.name,
            endpoint,
            if secret { "yes" } else { "no" }
        )
        .map_err(io)?;
    }
    Ok(())
}

/// The endpoint as `sources` shows it: a URL without its user-info (a
/// `base_url` may hold `user:password@`), never a raw configured string.
fn describe(table: &SourceTable<'_>, platform: &crate::source::Platform) -> (String, bool) {
    let (endpoint, secret) = describe_raw(table, platform);
    let shown = match reqwest::Url::parse(&endpoint) {
        Ok(url) => display_url(&url),
        Err(_) if endpoint.starts_with('(') => endpoint,
        Err(_) => "(base_url is not a valid URL)".into(),
    };
    (log::escape_controls(&shown, false).into_owned(), secret)
}

fn describe_raw(table: &SourceTable<'_>, platform: &crate::source::Platform) -> (String, bool) {
    (
        (platform.endpoint)(table),
        platform.secrets.iter().all(|s| table.secret_present(s)),
    )
}

/// `chatdump check`: one cheap authenticated request per source, and a
/// probe written to and removed from each `--location`.
async fn check(config: &Config, names: &[String], locations: &[String]) -> Result<()> {
    let names: Vec<String> = if names.is_empty() {
        config.sources.keys().cloned().collect()
    } else {
        names.to_vec()
    };
    if names.is_empty() && locations.is_empty() {
        return Err(Error::config(format!(
            "no sources configured in {}",
            config.display_path()
        )));
    }
    // Every source is checked, whatever the ones before it did; the exit
    // code is the worst (highest) of their codes.
    let mut worst: Option<Kind> = None;
    let mut failed = 0;
    for name in &names {
        let mut status = None;
        let result = async {
            let table = config.source(name)?;
            let source = (registry::platform_of(&table)?.build)(&table)?;
            if let Some(url) = source.status_url() {
                status = Some(platform_status(&url).await);
            }
            let local =
                match source.files() {
                    Some(files) => match files.folder.count().await {
                        Ok(n) => format!("; {}: {n} files in {}", files.what, files.folder.shown()),
                        Err(why) => return Err(Error::config(format!(
                            "{} folder {}: {why}",
                            files.what,
                            files.folder.shown()
                        ))
                        .with_hint(
                            "the folder must exist and be readable by the user chatdump runs as",
                        )),
                    },
                    None => String::new(),
                };
            // Where attachments go must take a file.
            let attachments = match table.string("attachments")? {
                Some(dest) => {
                    let dest = format!("{}/", dest.trim_end_matches('/'));
                    format!("; attachments: {}", crate::store::probe(&dest).await?)
                }
                None => String::new(),
            };
            check_one(&*source, name)
                .await
                .map(|m| m + &local + &attachments)
        }
        .await;
        if let Some(status) = status {
            println!("{name}: platform status: {status}");
        }
        match result {
            Ok(message) => println!("{name}: ok ({message})"),
            Err(e) => {
                println!("{name}: FAILED");
                crate::log::report(&e);
                failed += 1;
                if worst.is_none_or(|w| e.exit_code() > w.exit_code()) {
                    worst = Some(e.kind);
                }
            }
        }
    }
    for location in locations {
        match crate::store::probe(location).await {
            Ok(found) => println!("{location}: ok ({found})"),
            Err(e) => {
                println!("{location}: FAILED");
                crate::log::report(&e);
                failed += 1;
                if worst.is_none_or(|w| e.exit_code() > w.exit_code()) {
                    worst = Some(e.kind);
                }
            }
        }
    }
    let checked = names.len() + locations.len();
    match worst {
        None => Ok(()),
        Some(kind) => Err(Error::new(
            kind,
            format!(
                "{failed} of {checked} check{} failed (each is reported above)",
                if checked == 1 { "" } else { "s" }
            ),
        )),
    }
}

/// A platform's public status page, read without credentials: `up`, `DOWN`
/// with the monitors that are down, or `unknown` and why. Informative
/// only: `check`'s exit code is about this source's own request.
async fn platform_status(url: &reqwest::Url) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let answer = match client {
        Ok(c) => c.get(url.clone()).send().await,
        Err(e) => return format!("unknown ({e})"),
    };
    let response = match answer {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            return format!(
                "unknown (HTTP {} from {})",
                r.status().as_u16(),
                display_url(url)
            )
        }
        Err(e) => {
            return format!(
                "unknown ({} unreachable: {})",
                display_url(url),
                e.without_url()
            )
        }
    };
    let mut response = response;
    let body = match crate::http::read_limited(&mut response, 1 << 20).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
        Err(_) => None,
    };
    let Some(body) = body else {
        return format!("unknown ({} did not answer JSON)", display_url(url));
    };
    let Some(monitors) = body.get("monitors").and_then(|m| m.as_array()) else {
        return format!("unknown ({} has no `monitors`)", display_url(url));
    };
    let down: Vec<String> = monitors
        .iter()
        .filter(|m| m.get("status").and_then(serde_json::Value::as_i64) != Some(1))
        .map(|m| {
            let name = m.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            log::escape_controls(name, false).into_owned()
        })
        .collect();
    if down.is_empty() {
        format!("up ({} monitors)", monitors.len())
    } else {
        format!(
            "DOWN: {} of {} monitors ({})",
            down.len(),
            monitors.len(),
            down.join(", ")
        )
    }
}

async fn check_one(source: &dyn ChatSource, name: &str) -> Result<String> {
    let connection = source.connection();
    let http = Http::new(name, connection.auth, connection.settings, 1)?;
    let started = Instant::now();
    let url = crate::source::check(source, &http).await?;
    Ok(format!(
        "{}, {}, {} ms",
        source.kind().as_str(),
        display_url(&url),
        started.elapsed().as_millis()
    ))
}
