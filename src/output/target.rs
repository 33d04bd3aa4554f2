//! What an output path names (stdout, a file written in place, a file
//! replaced atomically), and how a prepared file is moved into place.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What an output path names, and so how it is written.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// `-`, `/dev/stdout` and its aliases: this process's stdout.
    Stdout,
    /// Not a regular file (or one reached through `/dev` or `/proc`):
    /// written where it is, never replaced.
    InPlace(PathBuf),
    /// A regular file or a new name: written beside, renamed over it.
    Atomic(PathBuf),
}

impl Target {
    pub(super) fn of(path: &Path) -> io::Result<Target> {
        if path == Path::new("-")
            || ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
                .iter()
                .any(|alias| path == Path::new(alias))
        {
            return Ok(Target::Stdout);
        }
        // Names of this process's descriptors: replacing what they point
        // to would cut the file away from whoever opened it.
        let system = path.starts_with("/proc")
            || path.starts_with("/dev/fd")
            || path == Path::new("/dev/stderr");
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory; give a file name",
            )),
            Ok(m) if !m.is_file() || system => Ok(Target::InPlace(path.to_path_buf())),
            // A symlink (to a regular file) is followed: its target is
            // replaced, the link stays.
            Ok(_) => Ok(Target::Atomic(std::fs::canonicalize(path)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) {
                    // A dangling link: create what it names, where it names.
                    let link = std::fs::read_link(path)?;
                    let dir = path.parent().unwrap_or(Path::new("."));
                    let pointed = dir.join(link);
                    if pointed == path {
                        return Err(io::Error::other("is a symbolic link to itself"));
                    }
                    return Ok(Target::Atomic(crate::safefs::resolve(&pointed)));
                }
                Ok(Target::Atomic(path.to_path_buf()))
            }
            Err(e) => Err(e),
        }
    }
}

/// A complete, synced output under its temporary name.
#[derive(Debug)]
pub struct Prepared {
    pub temp: Option<PathBuf>,
    pub target: Option<PathBuf>,
    /// A saved state names the temporary as its pending rename: the next
    /// run finishes the move, so it must outlive any failure of this one.
    pub(super) kept_by_state: bool,
    /// Rows written but left out of the file: older versions of a
    /// conversation whose newest row it keeps.
    pub superseded: u64,
}

impl Prepared {
    /// The saved state names the temporary (its pending rename): from now
    /// on it is the next run's to move, never to be removed.
    pub fn keep_for_state(&mut self) {
        self.kept_by_state = true;
    }

    /// Moves the file into place (nothing to do for stdout).
    pub fn publish(mut self) -> Result<()> {
        match (self.temp.clone(), self.target.clone()) {
            (Some(temp), Some(target)) => {
                publish(&temp, &target)?;
                self.temp = None;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Prepared {
    /// Not published (a failed state save, a failed rename): the
    /// temporary, personal data under a hidden name, goes, unless a saved
    /// state is waiting to move it.
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take().filter(|_| !self.kept_by_state) {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Renames `temp` to `target` and makes the rename durable. On failure the
/// temporary is left where it is: its owner decides (a state's pending
/// rename keeps it for the next run).
pub fn publish(temp: &Path, target: &Path) -> Result<()> {
    std::fs::rename(temp, target).map_err(|e| {
        Error::output(
            format!("cannot move output into place at {}", target.display()),
            e,
        )
    })?;
    sync_parent(target);
    Ok(())
}

/// Makes the rename itself durable; best effort where directories cannot be
/// opened (non-Unix).
pub fn sync_parent(target: &Path) {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
