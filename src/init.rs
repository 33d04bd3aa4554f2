//! `chatdump init`: a commented configuration to start from.
//!
//! The template is `examples/chatdump.toml`, the same file the README points
//! to, cut down to the kinds asked for; a test checks that it names every
//! key each kind accepts. It never overwrites a file.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Kind, Result};
use crate::source::{registry, SourceKind};

pub const TEMPLATE: &str = include_str!("../examples/chatdump.toml");

/// The template with only the `[sources.*]` sections of `kinds` (all when
/// empty), keeping the header.
pub fn template(kinds: &[SourceKind]) -> String {
    let mut out = String::new();
    for section in sections() {
        let keep = match section_kind(section) {
            None => true,
            Some(k) => kinds.is_empty() || kinds.contains(&k),
        };
        if keep {
            out.push_str(section);
        }
    }
    out
}

/// The header, then one piece per `[sources.NAME]` table.
fn sections() -> Vec<&'static str> {
    let mut starts: Vec<usize> = TEMPLATE
        .match_indices("\n[sources.")
        .map(|(i, _)| i + 1)
        .collect();
    starts.insert(0, 0);
    starts.push(TEMPLATE.len());
    starts.windows(2).map(|w| &TEMPLATE[w[0]..w[1]]).collect()
}

fn section_kind(section: &str) -> Option<SourceKind> {
    if !section.starts_with("[sources.") {
        return None;
    }
    section.lines().find_map(|l| {
        let value = l
            .trim()
            .strip_prefix("kind")?
            .trim()
            .strip_prefix('=')?
            .trim();
        registry::kind(value.trim_matches('"'))
    })
}

pub fn write(path: &Path, kinds: &[SourceKind]) -> Result<()> {
    let text = template(kinds);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    Kind::Output,
                    format!(
                        "{} already exists; chatdump init never overwrites",
                        path.display()
                    ),
                )
                .with_hint("edit it, or choose another path with --config PATH")
            } else {
                Error::output(format!("cannot create {}", path.display()), e)
            }
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::output(format!("cannot write {}", path.display()), e))?;
    crate::log::info(&format!(
        "wrote {}: set the variables its *_env keys name, then run `chatdump check`",
        path.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, COMMON_KEYS};

    fn kind(name: &str) -> SourceKind {
        registry::kind(name).unwrap()
    }

    #[test]
    fn sections_by_kind() {
        let only = template(&[kind("ujet")]);
        assert!(only.contains("[sources.support]") && !only.contains("[sources.hanoi]"));
        assert!(only.starts_with("# chatdump configuration"));
        let all = template(&[]);
        assert_eq!(all, TEMPLATE);
    }

    /// Every platform of the registry has a section naming each of its
    /// keys (literal secrets aside: `*_env` is the documented way), and
    /// every key all sources share is shown somewhere.
    #[test]
    fn the_template_is_a_valid_configuration_naming_every_key() {
        let config = Config::parse(TEMPLATE, Path::new("template")).unwrap();
        for platform in crate::source::registry::PLATFORMS {
            let section = template(&[kind(platform.name)]);
            assert!(
                section.contains("[sources."),
                "{}: no section",
                platform.name
            );
            for key in platform.all_keys() {
                if platform.secrets.contains(&key) {
                    continue;
                }
                assert!(
                    section.contains(&format!("{key} =")),
                    "{}: {key} missing from the template",
                    platform.name
                );
            }
        }
        for key in COMMON_KEYS {
            assert!(TEMPLATE.contains(&format!("{key} =")), "{key}");
        }
        for (name, platform) in [("hanoi", "caresoft"), ("support", "ujet")] {
            let table = config.source(name).unwrap();
            assert_eq!(registry::kind(table.kind().unwrap()), Some(kind(platform)));
        }
    }
}
