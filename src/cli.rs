//! The command line as clap sees it: raw flags, nothing validated yet.
//!
//! Kept apart from the validated settings (`config.rs`, `export::Options`) so the
//! core never depends on the argument parser, and so help text lives in one
//! place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  chatdump demo                                   # sample export, no network needed
  chatdump sources                                # what is configured
  chatdump check hanoi                            # one cheap request to test credentials
  chatdump export hanoi --since 7d -o chats.csv   # one-off CSV pull
  chatdump export hanoi --from 2024-03-01 --to 2024-03-08 --records messages -o march.csv
  chatdump export hanoi --records messages | jq -r .text
  chatdump export hanoi --state /var/lib/chatdump/hanoi.state -o '/data/{source}/{to}.jsonl.gz'
  chatdump export bogota-live --follow --records messages --state live.state
";

#[derive(Debug, Parser)]
#[command(
    name = "chatdump",
    version,
    about = "Export chat history from contact-center platforms to CSV, JSON Lines and Parquet",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Configuration file (default: $CHATDUMP_CONFIG, ./chatdump.toml,
    /// then $XDG_CONFIG_HOME/chatdump/config.toml)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export one configured source
    #[command(after_help = EXAMPLES)]
    Export(Box<ExportArgs>),
    /// Validate configuration and credentials with one cheap request per source
    Check {
        /// Sources to check (default: all)
        sources: Vec<String>,
        /// Also check that these outputs or states can be written (a local
        /// path or s3://, gs://, az:// URL; a probe object is written and
        /// removed), e.g. --location s3://chats/hanoi/
        #[arg(long = "location", value_name = "URL")]
        locations: Vec<String>,
    },
    /// List configured sources: kind, endpoint, whether the secret is present
    Sources,
    /// Export the bundled sample data of every source kind (no network, no credentials)
    Demo(OutputArgs),
    /// Print the JSON Schema of the output records, personal data marked (x-pii)
    Schema {
        #[arg(long, value_enum, default_value_t = RecordsArg::Conversations)]
        records: RecordsArg,
        /// Include the `raw` field written by --include-raw
        #[arg(long)]
        include_raw: bool,
    },
    /// Write a commented configuration template (to --config, else ./chatdump.toml; never overwrites)
    Init {
        /// Only these kinds (repeatable; default: all)
        #[arg(long = "kind", value_name = "KIND", value_parser = kind_names())]
        kinds: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    #[command(
        after_help = "Install, e.g.:\n  chatdump completions bash > ~/.local/share/bash-completion/completions/chatdump\n  chatdump completions zsh > ~/.zfunc/_chatdump\n  chatdump completions fish > ~/.config/fish/completions/chatdump.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): chatdump man > chatdump.1
    Man,
    /// How each source's incremental export is doing: checkpoint, lag,
    /// last run, lock (from the state its `state` key names)
    #[command(after_help = STATUS_HELP)]
    Status {
        /// Sources to show (default: all)
        sources: Vec<String>,
        /// `table` for people, `json` for tools
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        /// CRITICAL (exit 2) when a checkpoint is further behind now than
        /// this (e.g. 2h); WARNING (1) when the last run failed; UNKNOWN
        /// (3) when there is no state to judge
        #[arg(long, value_name = "D")]
        max_lag: Option<String>,
    },
    /// Run as a Singer tap (Meltano, or `chatdump tap ... | target-NAME`)
    #[command(after_help = TAP_HELP)]
    Tap {
        /// The Singer state: the value of the last STATE message a run
        /// emitted (resume from there)
        #[arg(long, value_name = "STATE.json")]
        state: Option<PathBuf>,
        /// The Singer catalog: the streams selected in it are synced
        /// (default: every stream the source delivers)
        #[arg(long, value_name = "CATALOG.json")]
        catalog: Option<PathBuf>,
        /// Print the catalog (streams, JSON Schema, keys) instead of syncing
        #[arg(long)]
        discover: bool,
    },
}

const STATUS_HELP: &str = "\
Exit codes follow the monitoring plugin convention: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (the worst source decides; a configuration that cannot be read is 3).

Examples:
  chatdump status                          # every source, a table
  chatdump status hanoi --max-lag 2h       # a Nagios/Icinga check
  chatdump status --format json | jq '.sources[] | {source, lag_seconds}'
";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

const TAP_HELP: &str = "\
Here --config is the Singer configuration, a JSON file, not chatdump's TOML:
the keys of one [sources.NAME] table (\"kind\" and the platform's keys), plus
\"start_date\" (required), \"end_date\", \"name\" (the source's name in records,
default the kind), \"redact\" (\"hash\", \"mask\" or \"drop\"), \"redact_agents\",
\"redact_key\" or \"redact_key_env\", and \"include_raw\".

Examples:
  chatdump tap --config tap.json --discover > catalog.json
  chatdump tap --config tap.json --catalog catalog.json | target-jsonl
  chatdump tap --config tap.json --state last-state.json | target-sqlite --config db.json
";

/// The `--kind` values: the registry's platform names.
fn kind_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::source::registry::PLATFORMS.iter().map(|p| p.name),
    )
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Configured source name (see `chatdump sources`)
    pub source: String,

    /// Start of the window, inclusive: RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in the source's zone
    #[arg(help_heading = "Window", long, value_name = "T")]
    pub from: Option<String>,

    /// End of the window, exclusive (default: now minus the settle lag)
    #[arg(help_heading = "Window", long, value_name = "T")]
    pub to: Option<String>,

    /// Window start relative to now: 90m, 36h, 7d
    #[arg(
        help_heading = "Window",
        long,
        value_name = "D",
        conflicts_with = "from"
    )]
    pub since: Option<String>,

    /// Incremental mode: resume from this checkpoint file and advance it
    #[arg(help_heading = "Incremental", long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// With {from}/{to} in the output path: one file (and checkpoint) per D, e.g. 1d, 6h
    #[arg(help_heading = "Incremental", long, value_name = "D")]
    pub chunk: Option<String>,

    /// Keep polling and emit only what is new, until Ctrl-C or SIGTERM
    #[arg(help_heading = "Incremental", long)]
    pub follow: bool,

    /// Time between polls with --follow (default 5m, the platforms' guidance)
    #[arg(
        help_heading = "Incremental",
        long,
        value_name = "D",
        requires = "follow"
    )]
    pub interval: Option<String>,

    /// Print the plan (windows, requests, files, state) and fetch nothing
    #[arg(help_heading = "Incremental", long)]
    pub dry_run: bool,

    /// After the run, write its metrics here in the Prometheus text format
    /// (atomically), for node_exporter's textfile collector: one file per
    /// source, e.g. /var/lib/node_exporter/textfile/chatdump-hanoi.prom
    #[arg(help_heading = "Monitoring", long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// After the run, push its metrics to this Prometheus Pushgateway
    /// (grouped by job `chatdump`, source and records), e.g.
    /// http://pushgateway:9091
    #[arg(help_heading = "Monitoring", long, value_name = "URL")]
    pub metrics_push: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options shared by `export` and `demo`: what to write and where.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One row per conversation or per message.
    ///
    /// A file holds each conversation once, in the newest version the run
    /// saw. Conversation rows on stdout are a changelog: a conversation that
    /// changed is written again, and the newest `updated_at` wins.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = RecordsArg::Conversations)]
    pub records: RecordsArg,

    /// Output format (default: from the output file's extension, else jsonl)
    #[arg(help_heading = "Output", long, value_enum)]
    pub format: Option<FormatArg>,

    /// Output file (default: stdout). Placeholders: {source} {from} {to} {records}, {to:%Y-%m-%d} (any strftime format); .gz or .zst compresses
    #[arg(help_heading = "Output", short, long, value_name = "PATH")]
    pub output: Option<String>,

    /// Fetch the photos, videos and files messages carry and keep each once,
    /// by content, under DEST/sha256/ (a folder, or s3:// gs:// az://);
    /// inline data: images in the text are replaced by [attachment: PATH]
    #[arg(help_heading = "Output", long, value_name = "DEST")]
    pub attachments: Option<String>,

    /// Render timestamps in this zone (e.g. America/Bogota) instead of UTC
    #[arg(help_heading = "Output", long, value_name = "ZONE")]
    pub tz: Option<String>,

    /// Add each record's original platform JSON under `raw` (JSONL only)
    #[arg(help_heading = "Output", long)]
    pub include_raw: bool,

    /// Do not guard CSV cells that start with = + - @ against spreadsheet formulas
    #[arg(help_heading = "Output", long)]
    pub csv_raw: bool,

    /// Remove personal data before writing: customer fields become keyed pseudonyms
    /// (hash, key in $CHATDUMP_REDACT_KEY), placeholders (mask) or null (drop);
    /// e-mails, phones and card numbers in message text become [EMAIL] [PHONE] [CARD]
    #[arg(help_heading = "Privacy", long, value_enum, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "hash")]
    pub redact: Option<RedactArg>,

    /// With --redact: treat agent names and e-mails as personal data too
    #[arg(help_heading = "Privacy", long, requires = "redact")]
    pub redact_agents: bool,

    /// Only errors on stderr
    #[arg(help_heading = "Messages", short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail on stderr (repeat for requests)
    #[arg(help_heading = "Messages", short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordsArg {
    Conversations,
    Messages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedactArg {
    Hash,
    Mask,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
    Parquet,
}
