//! The configuration file: where it is, what a `[sources.NAME]` table may
//! hold, and how values become validated settings.
//!
//! This module knows the keys every source shares (base URL, pacing, retries,
//! time zone, secrets). The keys that belong to one platform are read by that
//! platform's module through [`SourceTable`], so adding a source never touches
//! this file beyond the list of kinds. Every error names the file, the source
//! and the key, and exits 78.

mod secret;
mod settings;
mod table;

pub use secret::{secret_text, Secret};
pub use settings::{HttpSettings, Limits};
pub use table::{is_loopback, SourceTable};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The loaded configuration file.
#[derive(Debug, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub sources: BTreeMap<String, toml::Table>,
    /// Group- or world-readable: literal secrets in it deserve a warning.
    pub readable_by_others: bool,
    /// The variable holding the `--redact=hash` key, if not the default.
    pub redact_key_env: Option<String>,
}

/// Keys every source accepts besides its kind's own.
pub const COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "rate_limit",
    "max_retries",
    "backoff",
    "max_wait",
    "request_timeout",
    "max_error_body",
    "max_record_size",
    "max_page_size",
    "max_window_memory",
    "phone_regions",
    "state",
    "attachments",
    "attachment_hosts",
    "max_attachment_size",
    "attachment_timeout",
    "attachment_rate",
];

impl Config {
    /// Finds and reads the configuration: `--config`, `$CHATDUMP_CONFIG`,
    /// `./chatdump.toml`, `$XDG_CONFIG_HOME/chatdump/config.toml`. No file at
    /// all is an empty configuration; a named file that is missing is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CHATDUMP_CONFIG").map(PathBuf::from));
        let path = match named {
            Some(p) => {
                if !p.exists() {
                    return Err(Error::config(format!(
                        "configuration file {} does not exist",
                        p.display()
                    ))
                    .with_hint(
                        "check the path, or run `chatdump demo` to try the tool without one",
                    ));
                }
                p
            }
            None => match default_locations().into_iter().find(|p| p.exists()) {
                Some(p) => p,
                None => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::config(format!("cannot read configuration {}: {e}", path.display()))
        })?;
        let mut config = Config::parse(&text, &path)?;
        config.readable_by_others = readable_by_others(&path);
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            Error::config(format!(
                "{}: not valid TOML: {}",
                path.display(),
                e.message()
            ))
        })?;
        Config::from_table(table, path)
    }

    /// The configuration a TOML table holds (`path` names it in messages).
    pub fn from_table(mut table: toml::Table, path: &Path) -> Result<Config> {
        let sources = match table.remove("sources") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(Error::config(format!(
                    "{}: `sources` must be a table of [sources.NAME] sections",
                    path.display()
                )))
            }
        };
        let redact_key_env = match table.remove("redact_key_env") {
            None => None,
            Some(toml::Value::String(v)) => Some(v),
            Some(_) => {
                return Err(Error::config(format!(
                    "{}: `redact_key_env` must be the name of an environment variable",
                    path.display()
                )))
            }
        };
        if let Some(key) = table.keys().next() {
            return Err(Error::config(format!(
                "{}: unknown top-level key {key:?}",
                path.display()
            ))
            .with_hint("sources are configured in [sources.NAME] sections"));
        }
        let mut out = BTreeMap::new();
        for (name, value) in sources {
            if !is_plain_name(&name) {
                return Err(Error::config(format!(
                    "{}: [sources.{name:?}]: a source name may hold only letters, digits, `_`, `-` and `.`, and may not start with `.`",
                    path.display()
                ))
                .with_hint("the name is used in file names (`{source}` in -o): rename the table, e.g. [sources.bogota-live]"));
            }
            let toml::Value::Table(t) = value else {
                return Err(Error::config(format!(
                    "{}: sources.{name} must be a table",
                    path.display()
                )));
            };
            out.insert(name, t);
        }
        Ok(Config {
            path: Some(path.to_path_buf()),
            sources: out,
            readable_by_others: false,
            redact_key_env,
        })
    }

    pub fn display_path(&self) -> String {
        self.path.as_ref().map_or_else(
            || "(no configuration file)".into(),
            |p| p.display().to_string(),
        )
    }

    /// The table of one source, with its kind checked.
    pub fn source<'a>(&'a self, name: &'a str) -> Result<SourceTable<'a>> {
        let table = self.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                format!(
                    "no sources are configured in {}; see the README's configuration section",
                    self.display_path()
                )
            } else {
                format!("configured sources: {}", known.join(", "))
            };
            Error::config(format!("unknown source {name:?}")).with_hint(hint)
        })?;
        SourceTable::new(self, name, table)
    }
}

/// Whether `name` is safe inside a file name: `[A-Za-z0-9_.-]`, not
/// starting with `.`, so `{source}` can never climb out of a directory or
/// hide a file.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn default_locations() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("chatdump.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        out.push(dir.join("chatdump").join("config.toml"));
    }
    out
}

#[cfg(unix)]
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
pub fn readable_by_others(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use table::parse_size;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn source_names_stay_plain() {
        for good in ["bogota", "bogota-live", "a.b_c-9", "X"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in [
            "../etc", "a/b", ".hidden", "", "a b", "é", "a\\b", "..", "a\u{1b}",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        let e = Config::parse(
            "[sources.\"../x\"]\nkind = \"caresoft\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(
            e.to_string().contains("t.toml") && e.to_string().contains("../x"),
            "{e}"
        );
    }

    #[test]
    fn limits_and_waits_are_bounded() {
        let c = parse(
            "[sources.a]\nkind = \"caresoft\"\nmax_record_size = \"2MiB\"\nmax_wait = \"1m\"\n",
        );
        let h = c.source("a").unwrap().http(1.0).unwrap();
        assert_eq!(h.limits.record, 2 << 20);
        assert_eq!(h.max_wait, std::time::Duration::from_secs(60));
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbackoff = \"99999999d\"\n");
        assert_eq!(
            c.source("a").unwrap().http(1.0).unwrap_err().exit_code(),
            78
        );
        let c = parse("[sources.a]\nkind = \"caresoft\"\nmax_page_size = \"lots\"\n");
        assert_eq!(
            c.source("a").unwrap().http(1.0).unwrap_err().exit_code(),
            78
        );
        assert_eq!(parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("9999999999999GiB"), None);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn secrets_are_taken_whole_or_refused() {
        assert_eq!(secret_text("tok").as_deref(), Ok("tok"));
        assert_eq!(
            secret_text("tok\n").as_deref(),
            Ok("tok"),
            "a file's line end"
        );
        assert_eq!(secret_text("tok\r\n").as_deref(), Ok("tok"));
        assert_eq!(secret_text("a b").as_deref(), Ok("a b"));
        for bad in [
            "",
            "   ",
            "\n",
            "tok\n\n",
            " tok",
            "tok ",
            "to\tk",
            "tok\u{1b}",
            "to\nk",
        ] {
            assert!(secret_text(bad).is_err(), "{bad:?} was taken");
        }
    }

    proptest::proptest! {
        /// Whatever a variable holds, a secret taken has no control
        /// character and no white space around it; one refused says why.
        #[test]
        fn any_variable_is_taken_safely_or_refused(raw in "\\PC*|[ \t\r\n]{0,3}\\PC{0,8}[ \t\r\n]{0,3}") {
            if let Ok(secret) = secret_text(&raw) {
                proptest::prop_assert!(!secret.is_empty());
                proptest::prop_assert!(!secret.chars().any(char::is_control));
                proptest::prop_assert_eq!(secret.trim(), secret.as_str());
                proptest::prop_assert!(raw.starts_with(&secret));
            }
        }
    }

    #[test]
    fn phone_regions_are_a_list_of_known_codes() {
        for bad in ["[]", "[\"US\", \"XX\"]", "\"US\"", "[1]"] {
            let c = parse(&format!(
                "[sources.a]\nkind = \"ujet\"\nphone_regions = {bad}\n"
            ));
            let e = c.source("a").unwrap().phone_regions("US").unwrap_err();
            assert_eq!(e.exit_code(), 78, "{bad}");
            assert!(e.to_string().contains("phone_regions"), "{e}");
        }
    }

    #[test]
    fn unknown_keys_name_file_source_and_key() {
        let c = parse("[sources.a]\nkind = \"caresoft\"\ndomian = \"x\"\n");
        let t = c.source("a").unwrap();
        let e = t.check_keys(&["domain"]).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        let msg = e.to_string();
        assert!(
            msg.contains("test.toml") && msg.contains("\"a\"") && msg.contains("domian"),
            "{msg}"
        );
    }

    #[test]
    fn a_kind_is_text_and_an_unknown_source_an_error() {
        let c = parse("[sources.a]\nkind = \"zendesk\"\n[sources.c]\nkind = 7\n");
        assert_eq!(c.source("a").unwrap().kind(), Some("zendesk"));
        assert_eq!(c.source("b").err().unwrap().exit_code(), 78);
        assert_eq!(c.source("c").err().unwrap().exit_code(), 78);
    }

    #[test]
    fn http_to_remote_host_is_refused() {
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbase_url = \"http://example.com/x\"\n");
        let t = c.source("a").unwrap();
        assert!(t.base_url(|| Ok("https://unused".into())).is_err());
        let c = parse("[sources.a]\nkind = \"caresoft\"\nbase_url = \"http://127.0.0.1:9/x\"\n");
        let t = c.source("a").unwrap();
        assert_eq!(
            t.base_url(|| Ok("https://unused".into())).unwrap().as_str(),
            "http://127.0.0.1:9/x"
        );
    }

    #[test]
    fn timezone_and_missing_secret_variable() {
        let c = parse(
            "[sources.a]\nkind = \"caresoft\"\ntimezone = \"Mars/Olympus\"\ntoken_env = \"CHATDUMP_TEST_UNSET_VAR\"\n",
        );
        let t = c.source("a").unwrap();
        assert!(t
            .timezone(chrono_tz::UTC)
            .unwrap_err()
            .to_string()
            .contains("Mars/Olympus"));
        let e = t.secret("token").unwrap_err();
        assert!(e.to_string().contains("CHATDUMP_TEST_UNSET_VAR"));
        assert!(!t.secret_present("token"));
    }
}
