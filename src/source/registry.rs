//! The platforms chatdump knows, one entry each: everything outside a
//! provider's module that needs to know a platform reads it from here (the
//! `kind` values of the configuration, `init --kind`, the schema's platform
//! list, `sources`, completions, the demo, building the provider).
//!
//! Adding a platform is its module (with its `PLATFORM` entry), its
//! fixtures, its tests, and one line in [`PLATFORMS`].

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::SourceTable;
use crate::error::Result;
use crate::source::{caresoft, ujet, wolkvox, ChatSource};

/// One platform, as the rest of chatdump sees it.
pub struct Platform {
    /// The `kind` of its `[sources.NAME]` tables, and its `platform` column.
    pub name: &'static str,
    /// The platform's home country (ISO 3166): whose national phone
    /// numbers its texts hold unless `phone_regions` says otherwise.
    pub home: &'static str,
    /// Its own configuration keys, besides the ones every source accepts.
    pub keys: &'static [&'static [&'static str]],
    /// The secrets it needs, each given as `KEY` or `KEY_env`.
    pub secrets: &'static [&'static str],
    /// Builds the provider from a validated table.
    pub build: fn(&SourceTable<'_>) -> Result<Box<dyn ChatSource>>,
    /// The endpoint `sources` shows, without reading a secret.
    pub endpoint: fn(&SourceTable<'_>) -> String,
    /// The demo: a `[sources.*]` table pointed at the demo server, and the
    /// fake platform answering there (path below the server, query).
    pub demo: Demo,
}

pub struct Demo {
    pub config: fn(SocketAddr) -> String,
    pub answer: DemoAnswer,
}

/// A fake platform's answer (status, body) to a path and its query; None
/// for a path it does not serve.
pub type DemoAnswer = fn(&str, &HashMap<String, String>) -> Option<(u16, String)>;

/// Every platform, in the order lists show them and the demo runs them.
pub static PLATFORMS: &[&Platform] = &[
    &caresoft::PLATFORM,
    &ujet::PLATFORM,
    &wolkvox::live::PLATFORM,
    &wolkvox::reports::PLATFORM,
];

/// The platform named `name`.
pub fn find(name: &str) -> Option<&'static Platform> {
    PLATFORMS.iter().copied().find(|p| p.name == name)
}

/// The names, for messages: `a, b, c or d`.
pub fn names_listed() -> String {
    let names: Vec<&str> = PLATFORMS.iter().map(|p| p.name).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl Platform {
    /// Every key its tables may hold besides the common ones.
    pub fn all_keys(&self) -> Vec<&'static str> {
        self.keys.iter().flat_map(|k| k.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_listed() {
        let mut names: Vec<&str> = PLATFORMS.iter().map(|p| p.name).collect();
        assert_eq!(names_listed(), "caresoft, ujet, wolkvox-live or wolkvox");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PLATFORMS.len());
        for p in PLATFORMS {
            assert!(std::ptr::eq(find(p.name).unwrap(), *p));
            assert!(!p.secrets.is_empty(), "{}", p.name);
            for secret in p.secrets {
                let keys = p.all_keys();
                assert!(keys.contains(secret), "{}: {secret}", p.name);
                assert!(
                    keys.contains(&format!("{secret}_env").as_str()),
                    "{}",
                    p.name
                );
            }
        }
        assert!(find("zendesk").is_none());
    }
}
