//! Creating files in directories chatdump does not control.
//!
//! chatdump often runs from cron as root, writing beside files other users
//! can plant things next to. Every file it creates (output temporaries,
//! state temporaries, the lock, the rejects log) goes through here: created
//! without following a symlink at its own name, owner-only where it holds
//! data, and a leftover of a dead run is removed rather than written
//! through. Paths are compared by what they name, not how they are spelled.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Owner read and write: outputs, state and rejects hold personal data.
#[cfg(unix)]
const PRIVATE_MODE: u32 = 0o600;

/// Opens `path` for writing, creating it owner-only if missing, refusing a
/// symlink at `path` itself (a planted link would redirect the write).
/// `append` keeps what is there; otherwise it is truncated.
pub fn open_nofollow(path: &Path, append: bool) -> io::Result<File> {
    // A file to be truncated that is not ours is replaced by a new one of
    // ours: unlinking it touches nothing else it names.
    if !append && exists_not_ours(path) {
        std::fs::remove_file(path)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).write(true);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    open_regular(path, options, true)
}

/// Opens (creating if needed) a lock file for reading and writing, never
/// through a symlink at its name and never truncating it.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).read(true).write(true).truncate(false);
    open_regular(path, options, true)
}

/// Reads a whole file chatdump keeps (the state), None when it does not
/// exist. Whatever is planted there instead of a regular file (a FIFO that
/// would block the read forever, a device) is refused.
pub fn read_regular(path: &Path) -> io::Result<Option<String>> {
    let mut options = OpenOptions::new();
    options.read(true);
    match open_regular(path, options, false) {
        Ok(mut file) => {
            let mut text = String::new();
            io::Read::read_to_string(&mut file, &mut text)?;
            Ok(Some(text))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads a small file chatdump wrote beside its outputs (a run record, a
/// metrics file), None when it is not there; one planted there that is
/// no regular file, a link out of its folder or over `limit` bytes is an
/// error, not read.
pub fn read_small(path: &Path, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    read_beneath(
        folder.unwrap_or(Path::new(".")),
        &name.to_string_lossy(),
        limit,
    )
}

/// Replaces `path` with `bytes` at once: written and synced under a
/// temporary name beside it (`mode`, or the owner's alone), then renamed,
/// so a reader sees the old file or the new one, never a part; the
/// temporary is removed when anything fails.
pub fn replace_whole(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let temp = temp_beside(path);
    let written = (|| {
        let mut file = create_new(&temp, mode)?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The process holding an exclusive `flock` on the file at `path`, if
/// one does (Linux: read from `/proc/locks`, matched by device and inode),
/// without taking the lock: asking must not make a starting run find it
/// busy.
#[cfg(target_os = "linux")]
pub fn flock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let device = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    flock_holder_in(&locks, device, meta.ino())
}

/// The process `/proc/locks` (its text `locks`) says holds an exclusive
/// `flock` on the file with `device` (major, minor) and `inode`.
pub fn flock_holder_in(locks: &str, device: (u32, u32), inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF`; a blocked
        // waiter's line starts `1: ->`.
        let [_, "FLOCK", _, "WRITE", pid, place, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = place.split(':');
        let major = u32::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
        let ino: u64 = parts.next()?.parse().ok()?;
        ((major, minor) == device && ino == inode)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

#[cfg(not(target_os = "linux"))]
pub fn flock_holder(_path: &Path) -> Option<u32> {
    None
}

/// Reads `name` in a folder someone else fills (transcripts, synced by a
/// tool that may copy symlinks as they are), None when it does not exist.
/// A symlink is followed only when it resolves beneath `folder` (a link to
/// `/etc/shadow` or another user's file is refused, whatever the process
/// may read); a FIFO or device is refused, not waited on; a file over
/// `limit` bytes is an error, not read whole.
pub fn read_beneath(folder: &Path, name: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let Some((file, path)) = open_beneath_at(folder, name)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, limit as u64 + 1), &mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::other(format!(
            "{} is over {limit} bytes (`max_record_size`)",
            path.display()
        )));
    }
    Ok(Some(bytes))
}

/// [`read_beneath`]'s file, opened to be read a piece at a time.
pub fn open_beneath(folder: &Path, name: &str) -> io::Result<Option<File>> {
    Ok(open_beneath_at(folder, name)?.map(|(file, _)| file))
}

fn open_beneath_at(folder: &Path, name: &str) -> io::Result<Option<(File, PathBuf)>> {
    let path = folder.join(name);
    // The usual case, a plain name that is no link: opened as it is,
    // without resolving the folder for every file (`O_NOFOLLOW` refuses a
    // link swapped in meanwhile).
    let plain_name = Path::new(name).components().count() == 1;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Ok(meta) if plain_name && !meta.file_type().is_symlink() => {
            return open_read(&path);
        }
        _ => {}
    }
    let resolved = match std::fs::canonicalize(&path) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing there, or a link to nothing: either way no file,
            // unless the link itself is there (dangling), which is refused.
            return match std::fs::symlink_metadata(&path) {
                Ok(_) => Err(io::Error::other(format!(
                    "{} is a symlink to nothing; chatdump reads no link out of the folder",
                    path.display()
                ))),
                Err(_) => Ok(None),
            };
        }
        Err(e) => return Err(e),
    };
    let root = std::fs::canonicalize(folder)?;
    if !resolved.starts_with(&root) {
        return Err(io::Error::other(format!(
            "{} is a symlink out of the folder {}; chatdump reads no file outside it",
            path.display(),
            folder.display()
        )));
    }
    // The resolved path, never following a link swapped in since.
    open_read(&resolved)
}

fn open_read(path: &Path) -> io::Result<Option<(File, PathBuf)>> {
    let mut options = OpenOptions::new();
    options.read(true);
    match open_regular(path, options, true) {
        Ok(file) => Ok(Some((file, path.to_path_buf()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `path` with `options`, owner-only when it is created, without
/// waiting on a FIFO (`O_NONBLOCK`) and, with `nofollow`, not through a
/// symlink at its own name; anything but a regular file is refused.
fn open_regular(path: &Path, mut options: OpenOptions, nofollow: bool) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let follow = if nofollow { libc::O_NOFOLLOW } else { 0 };
        options
            .mode(PRIVATE_MODE)
            .custom_flags(follow | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    let _ = nofollow;
    let file = options.open(path).map_err(|e| explain_symlink(path, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file; chatdump does not use a FIFO or a device in its place",
            path.display()
        )));
    }
    if nofollow && !owned_alone(&meta) {
        return Err(not_ours(path));
    }
    Ok(file)
}

/// Whether a file is this process's user's, under one name only: what
/// chatdump writes into in place (a lock, a rejects log it appends to).
/// Another user's file (planted 0666 where a rejects log goes) would be
/// filled with raw records and stay readable by them; a hard link would
/// carry the write into whatever other file it names.
#[cfg(unix)]
fn owned_alone(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    meta.uid() == me && meta.nlink() <= 1
}

#[cfg(not(unix))]
fn owned_alone(_meta: &std::fs::Metadata) -> bool {
    true
}

fn not_ours(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} belongs to another user or has other hard links; chatdump does not write into a file that is not its own (remove it, or choose another path)",
            path.display()
        ),
    )
}

/// Whether `path` exists and is not [`owned_alone`] (a file to replace
/// rather than write into, or to refuse).
pub fn exists_not_ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && !owned_alone(&m))
}

/// Creates `path`, which must not exist: `O_CREAT|O_EXCL` never follows a
/// symlink. `mode` is the permission bits (owner-only by default). A name
/// already taken is removed once and created again: it can only be this
/// process id's own leftover or something planted there, and unlinking a
/// planted link touches nothing it points to.
pub fn create_new(path: &Path, mode: Option<u32>) -> io::Result<File> {
    let open = || {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode.unwrap_or(PRIVATE_MODE));
        }
        #[cfg(not(unix))]
        let _ = mode;
        options.open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// The permission bits of an existing file of ours, to give its
/// replacement; None for a file planted by another user (its 0666 would
/// let them read what replaces it), which is replaced owner-only.
pub fn existing_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.uid() == me)
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn explain_symlink(path: &Path, e: io::Error) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            e.kind(),
            format!(
                "{} is a symbolic link; chatdump does not write through a link at a file it creates",
                path.display()
            ),
        );
    }
    let _ = path;
    e
}

/// The temporary name of an output or state being written: `.NAME.tmp-PID`
/// beside `target`, hidden and recognisable.
pub fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `temp` is a name [`temp_beside`] could have given `target`.
pub fn is_temp_of(temp: &Path, target: &Path) -> bool {
    let (Some(name), Some(temp_name)) = (target.file_name(), temp.file_name()) else {
        return false;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    temp.parent() == target.parent()
        && temp_name
            .to_str()
            .and_then(|t| t.strip_prefix(&prefix))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the `.NAME.tmp-PID` files of `target` whose process is gone: a
/// killed run's leftovers, never a live run's file.
pub fn remove_stale_temps(target: &Path) {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let target = dir.join(target.file_name().unwrap_or_default());
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if is_temp_of(&path, &target)
            && pid != std::process::id()
            && !process_alive(pid)
            && std::fs::remove_file(&path).is_ok()
        {
            crate::log::verbose(&format!(
                "removed {}, left by process {pid} which no longer runs",
                path.display()
            ));
        }
    }
}

/// Whether a process with this id exists (on this host).
#[cfg(unix)]
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks existence only; EPERM means it exists as another user.
    // SAFETY: kill with signal 0 sends nothing; it only reports.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
pub fn process_alive(_pid: u32) -> bool {
    // Without a cheap check, assume alive: never remove another run's file.
    true
}

/// `path` as an absolute path with `.`/`..` resolved and the directory's
/// symlinks followed (the file itself too, when it exists): two spellings
/// of one file give one answer.
pub fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    resolve_dir(path)
}

/// [`resolve`] of the directory only: the file's own name is kept even
/// where it is a symlink, so what is made beside it (a lock, temporaries)
/// stays in the directory the user named.
pub fn resolve_dir(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut lexical = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    match (lexical.parent(), lexical.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(lexical),
        _ => lexical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sync tool can leave in a transcripts folder: a plain file is
    /// read, a link within the folder followed, a link out refused, a
    /// directory or a dangling link refused, a missing name absent.
    #[cfg(unix)]
    #[test]
    fn read_beneath_takes_only_files_of_the_folder() {
        let base = tempfile::tempdir().unwrap();
        let folder = base.path().join("t");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.json"), "inside").unwrap();
        std::fs::write(base.path().join("secret"), "SECRET-TEXT").unwrap();
        std::os::unix::fs::symlink(folder.join("a.json"), folder.join("b.json")).unwrap();
        std::os::unix::fs::symlink(base.path().join("secret"), folder.join("c.json")).unwrap();
        std::os::unix::fs::symlink(base.path().join("gone"), folder.join("d.json")).unwrap();
        std::fs::create_dir(folder.join("e.json")).unwrap();
        let read = |name: &str| read_beneath(&folder, name, 1024);
        assert_eq!(read("a.json").unwrap(), Some(b"inside".to_vec()));
        assert_eq!(read("b.json").unwrap(), Some(b"inside".to_vec()));
        for refused in ["c.json", "d.json", "e.json", "../secret"] {
            let e = read(refused).unwrap_err().to_string();
            assert!(!e.contains("SECRET-TEXT"), "{refused}: {e}");
        }
        assert_eq!(read("missing.json").unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_never_created_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let planted = dir.path().join(".out.jsonl.tmp-1");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        // The temp name of a run: the link is replaced, the victim untouched.
        let mut f = create_new(&planted, None).unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&planted).unwrap().is_symlink());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&planted).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Locks and rejects refuse a link at their name.
        let link = dir.path().join("x.state.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_lock(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_nofollow(&link, true).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn temp_names_are_recognised_and_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        assert!(is_temp_of(&temp_beside(&target), &target));
        assert!(!is_temp_of(&dir.path().join(".out.jsonl.tmp-"), &target));
        assert!(!is_temp_of(&dir.path().join(".other.tmp-12"), &target));
        assert!(!is_temp_of(Path::new("/etc/.out.jsonl.tmp-12"), &target));
        // A pid far above any pid_max is never alive.
        let dead = dir.path().join(".out.jsonl.tmp-2000000000");
        let mine = temp_beside(&target);
        let unrelated = dir.path().join(".else.jsonl.tmp-2000000000");
        for p in [&dead, &mine, &unrelated] {
            std::fs::write(p, "x").unwrap();
        }
        remove_stale_temps(&target);
        assert!(!dead.exists(), "a dead run's temp is removed");
        assert!(mine.exists(), "this run's own is kept");
        assert!(unrelated.exists(), "another target's is not touched");
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn two_spellings_resolve_alike() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        assert_eq!(
            resolve(&dir.path().join("a/../a/./x.state")),
            resolve(&dir.path().join("a/x.state"))
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
            assert_eq!(
                resolve(&dir.path().join("b/x.state")),
                resolve(&dir.path().join("a/x.state"))
            );
        }
    }

    #[test]
    fn flock_holders_are_read_from_the_lock_table() {
        let table = "1: POSIX  ADVISORY  WRITE 11 08:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 77 fd:01:1234 0 EOF\n";
        assert_eq!(flock_holder_in(table, (0xfd, 1), 1234), Some(4242));
        assert_eq!(flock_holder_in(table, (0xfd, 1), 99), None);
        assert_eq!(
            flock_holder_in(table, (8, 1), 99),
            None,
            "a POSIX lock is not ours"
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(512))]
        /// Whatever the lock table holds, a holder or none; never a panic.
        #[test]
        fn any_lock_table_reads(text in "[0-9a-fA-F:FLOCKPSIXWRTEADVY >\\-\n]{0,120}", ino in 0u64..2000) {
            let _ = flock_holder_in(&text, (0, 0), ino);
        }
    }
}
