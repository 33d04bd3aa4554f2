//! Where a chunk's output goes: a spool for an object, and the checks that
//! keep an output off the state's own files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::with_suffix;
use crate::store::Place;

/// A file of this run's own where an object is written before its upload,
/// in a new owner-only directory (nothing planted in `TMPDIR` under a name
/// chatdump would use is written through); it keeps the object's name, so
/// its format and compression are the same.
pub(super) fn spool_for(place: &Place) -> Result<(tempfile::TempDir, PathBuf)> {
    // A new owner-only folder of an unpredictable name: another user
    // cannot have taken it, or planted anything in it, beforehand.
    let dir = tempfile::Builder::new()
        .prefix("chatdump-spool-")
        .tempdir()
        .map_err(|e| {
            Error::output(
                format!(
                    "cannot create a spool directory in {}",
                    std::env::temp_dir().display()
                ),
                e,
            )
        })?;
    let name = place.url.rsplit('/').next().unwrap_or("output");
    let path = dir.path().join(name);
    Ok((dir, path))
}

/// Refuses an output object that is one of the state's own objects.
pub(super) fn check_objects(output: &Place, state: &Place) -> Result<()> {
    for (own, what) in [
        (state.url.clone(), "the state"),
        (state.with_suffix(".lock").url, "the state's lock"),
    ] {
        if output.url == own {
            return Err(Error::usage(format!(
                "the output {} is {what}: writing records there would destroy it",
                output.url
            ))
            .with_hint("give the output and the state different keys"));
        }
    }
    Ok(())
}

/// Refuses an output path that is one of the state's own files: writing
/// records over the state, its lock or its rejects log would destroy them.
pub(super) fn check_paths(output: &Path, state: Option<&Path>) -> Result<()> {
    let Some(state) = state else {
        return Ok(());
    };
    let out = crate::safefs::resolve(output);
    for (own, what) in [
        (state.to_path_buf(), "the state file"),
        (with_suffix(state, ".lock"), "the state's lock"),
        (
            with_suffix(state, ".rejects.jsonl"),
            "the state's rejects log",
        ),
    ] {
        if crate::safefs::resolve(&own) == out {
            return Err(Error::usage(format!(
                "-o {} is {what} ({}); records would overwrite it",
                output.display(),
                own.display()
            ))
            .with_hint("give the output and the state different paths"));
        }
    }
    Ok(())
}
