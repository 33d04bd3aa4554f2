//! The platforms chatdump knows, one entry each: everything outside a
//! provider's module that needs to know a platform reads it from here (the
//! `kind` values of the configuration, `init --kind`, the schema's platform
//! list, `sources`, completions, the demo, building the provider).
//!
//! Adding a platform is its module (with its `PLATFORM` entry), its
//! fixtures, its tests, and one line in [`PLATFORMS`].

use crate::config::SourceTable;
use crate::error::Result;
use crate::source::{caresoft, ujet, wolkvox, Platform, SourceKind};

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

/// The kind `text` names, if it names one.
pub fn kind(text: &str) -> Option<SourceKind> {
    find(text).map(SourceKind::of)
}

/// The platform of a `[sources.NAME]` table: its `kind`, which must name
/// one (a configuration error naming the file, the source and the kinds
/// there are, otherwise).
pub fn platform_of(table: &SourceTable<'_>) -> Result<&'static Platform> {
    let Some(text) = table.kind() else {
        return Err(table.error("kind", &format!("is missing ({})", names_listed())));
    };
    find(text).ok_or_else(|| {
        table.error(
            "kind",
            &format!("unknown kind {text:?}: use {}", names_listed()),
        )
    })
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

    #[test]
    fn a_table_names_a_known_kind_or_is_a_configuration_error() {
        let config = crate::config::Config::parse(
            "[sources.a]\nkind = \"zendesk\"\n[sources.b]\ndomain = \"x\"\n[sources.c]\nkind = \"ujet\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let e = platform_of(&config.source("a").unwrap()).err().unwrap();
        assert_eq!(e.exit_code(), 78);
        assert!(
            e.to_string().contains("zendesk") && e.to_string().contains("caresoft"),
            "{e}"
        );
        let e = platform_of(&config.source("b").unwrap()).err().unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(
            platform_of(&config.source("c").unwrap()).unwrap().name,
            "ujet"
        );
    }
}
