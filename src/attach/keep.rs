//! The attachment store: each file kept once, by its content, at
//! `DEST/sha256/<first two hex digits>/<sha256 hex>.<extension>`, in a
//! folder or in a bucket. A file is streamed to a temporary file while
//! it is hashed (memory stays one chunk, whatever its size), then made
//! visible whole: renamed into place in a folder, created in a bucket
//! only if the key is free (a small file) or uploaded in parts that a
//! store publishes only when complete. The same bytes in a hundred chats
//! are one file.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::model::AttachStatus;
use crate::store::{is_object_url, Place, Written};

/// Files up to this size go to a bucket in one conditional request;
/// larger ones in parts.
const ONE_REQUEST: u64 = 8 << 20;

/// The folder of a local store's temporaries.
const PARTIAL: &str = ".partial";

/// Where kept files go.
pub struct Keep {
    target: Target,
}

enum Target {
    Local(PathBuf),
    Object(Place),
}

/// A file kept (or found kept already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub sha256: String,
    pub bytes: u64,
    pub content_type: String,
    /// Relative to the store's root.
    pub path: String,
}

/// The bytes of one attachment as they arrive.
pub enum Body {
    Http(reqwest::Response),
    Stream(futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>>),
    Whole(Option<Vec<u8>>),
}

impl Body {
    async fn next(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        use futures_util::StreamExt;
        match self {
            Body::Http(response) => match response.chunk().await {
                Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
                Err(e) => Err(format!("the download broke: {}", without_url(&e))),
            },
            Body::Stream(stream) => stream.next().await.transpose().map_err(|e| e.to_string()),
            Body::Whole(bytes) => Ok(bytes.take()),
        }
    }

    /// The size the answer announces.
    fn announced(&self) -> Option<u64> {
        match self {
            Body::Http(response) => response.content_length(),
            Body::Whole(bytes) => bytes.as_ref().map(|b| b.len() as u64),
            Body::Stream(_) => None,
        }
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut shown = e.to_string();
    if let Some(url) = e.url() {
        shown = shown.replace(url.as_str(), "");
    }
    shown
}

/// Why a body was not kept: the file's fault, written in its row.
pub type Refused = (AttachStatus, String);

impl Keep {
    /// The store at `dest`: a folder (made if missing), `file://PATH`, or
    /// an `s3://`, `gs://` or `az://` location.
    pub fn new(dest: &str) -> Result<Keep> {
        if is_object_url(dest) {
            return Ok(Keep {
                target: Target::Object(Place::folder(dest)?),
            });
        }
        let root = PathBuf::from(dest.strip_prefix("file://").unwrap_or(dest));
        make_dirs(&root, PARTIAL).map_err(|e| {
            Error::output(format!("cannot use {} for attachments", root.display()), e)
        })?;
        let keep = Keep {
            target: Target::Local(root),
        };
        keep.sweep();
        Ok(keep)
    }

    /// Where files go, for messages.
    pub fn shown(&self) -> String {
        match &self.target {
            Target::Local(root) => root.display().to_string(),
            Target::Object(place) => place.url.clone(),
        }
    }

    /// Where temporaries go: inside a folder target, so the rename that
    /// publishes a file never crosses file systems; none for a bucket.
    fn partial(&self) -> Option<PathBuf> {
        match &self.target {
            Target::Local(root) => Some(root.join(PARTIAL)),
            Target::Object(_) => None,
        }
    }

    /// Removes the temporaries of runs that were killed mid-download.
    fn sweep(&self) {
        let Some(partial) = self.partial() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(partial) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() && !crate::safefs::process_alive(pid) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Streams `body` into the store. `declared`: the types the platform
    /// and the answer gave, each checked against the bytes. An error is
    /// the store's (a full disk, a bucket refusing): it ends the run.
    pub async fn keep(
        &self,
        mut body: Body,
        declared: &[&str],
        limit: u64,
    ) -> Result<std::result::Result<Kept, Refused>> {
        let too_large = || {
            Ok(Err((
                AttachStatus::TooLarge,
                format!("over {limit} bytes (`max_attachment_size`)"),
            )))
        };
        if body.announced().is_some_and(|n| n > limit) {
            return too_large();
        }
        let temp = self.temporary()?;
        let mut file = tokio::fs::File::from_std(temp.file()?);
        let mut hash = Sha256::new();
        let mut head = Vec::with_capacity(64);
        let mut bytes = 0u64;
        loop {
            let chunk = match body.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(why) => return Ok(Err((AttachStatus::Unavailable, why))),
            };
            bytes += chunk.len() as u64;
            if bytes > limit {
                return too_large();
            }
            if head.len() < 64 {
                let take = (64 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hash.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::output(format!("cannot write {}", temp.path.display()), e))?;
        }
        let sniffed = crate::media::sniff(&head);
        if let Some(wrong) = declared.iter().find(|d| !crate::media::agrees(d, sniffed)) {
            return Ok(Err((
                AttachStatus::WrongType,
                format!(
                    "declared {}, but the bytes are {}",
                    crate::media::media_type(wrong),
                    sniffed.unwrap_or("of no type chatdump recognises")
                ),
            )));
        }
        file.sync_all()
            .await
            .map_err(|e| Error::output(format!("cannot write {}", temp.path.display()), e))?;
        drop(file);
        let content_type = crate::media::verified_type(declared.first().copied(), sniffed);
        let sha256 = hex(&hash.finalize());
        let path = format!(
            "sha256/{}/{sha256}.{}",
            &sha256[..2],
            crate::media::extension(&content_type)
        );
        self.publish(temp, &path, bytes).await?;
        Ok(Ok(Kept {
            sha256,
            bytes,
            content_type,
            path,
        }))
    }

    /// A new temporary: in the folder's `.partial/` (named for this
    /// process, so a later run can tell a dead run's leftovers), else in
    /// the system's temporary folder. An unpredictable name, created anew.
    fn temporary(&self) -> Result<Temporary> {
        let folder = self.partial().unwrap_or_else(std::env::temp_dir);
        let prefix = format!("{}-", std::process::id());
        let made = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".chatdump-attachment")
            // Owner-only (tempfile's own default): it is what a customer sent.
            .tempfile_in(&folder)
            .and_then(|named| named.keep().map_err(|e| e.error));
        let (file, path) = made.map_err(|e| {
            Error::output(
                format!("cannot create a temporary in {}", folder.display()),
                e,
            )
        })?;
        Ok(Temporary {
            path,
            file: Some(file),
        })
    }

    /// Makes the temporary visible at `path` (relative to the root), whole.
    async fn publish(&self, mut temp: Temporary, path: &str, bytes: u64) -> Result<()> {
        match &self.target {
            Target::Local(root) => {
                let (folder, name) = path.rsplit_once('/').expect("sha256/ab/NAME");
                let target = make_dirs(root, folder)
                    .map_err(|e| {
                        Error::output(format!("cannot create {}", root.join(folder).display()), e)
                    })?
                    .join(name);
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
                    // Kept already: the same bytes, by their name.
                    return Ok(());
                }
                std::fs::rename(&temp.path, &target).map_err(|e| {
                    Error::output(format!("cannot move a file into {}", target.display()), e)
                })?;
                temp.kept();
                Ok(())
            }
            Target::Object(folder) => {
                let object = path
                    .split('/')
                    .fold(folder.clone(), |at, part| at.child(part));
                if bytes <= ONE_REQUEST {
                    let content = tokio::fs::read(&temp.path).await.map_err(|e| {
                        Error::output(format!("cannot read {}", temp.path.display()), e)
                    })?;
                    // A conflict is the same bytes, kept by another chat.
                    match object.put_if(content, None).await? {
                        Written::Done(_) | Written::Conflict => Ok(()),
                    }
                } else if object.exists().await? {
                    Ok(())
                } else {
                    object.upload(&temp.path).await
                }
            }
        }
    }
}

/// A temporary file, removed when dropped unless it was kept.
struct Temporary {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Temporary {
    fn file(&self) -> Result<std::fs::File> {
        self.file
            .as_ref()
            .expect("opened when made")
            .try_clone()
            .map_err(|e| Error::output(format!("cannot write {}", self.path.display()), e))
    }

    fn kept(&mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes `root` (the folder the user named, trusted as it is) and the
/// folders `beneath` it, owner-only. Each folder beneath is checked to be
/// a real one, not a symlink: a link planted at `sha256` or `.partial`
/// would carry files (or temporaries) wherever it points.
fn make_dirs(root: &Path, beneath: &str) -> std::io::Result<PathBuf> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.recursive(true).create(root)?;
    builder.recursive(false);
    let mut at = root.to_path_buf();
    for part in beneath.split('/') {
        at.push(part);
        match builder.create(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !std::fs::symlink_metadata(&at)?.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a folder (a symlink?); chatdump keeps attachments only in a real one",
                at.display()
            )));
        }
    }
    Ok(at)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-some-pixels";

    #[tokio::test(flavor = "current_thread")]
    async fn files_are_kept_once_by_content_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Keep::new(dir.path().to_str().unwrap()).unwrap();
        let first = keep
            .keep(Body::Whole(Some(PNG.to_vec())), &["image/png"], 1000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.content_type, "image/png");
        assert_eq!(first.bytes, PNG.len() as u64);
        assert_eq!(first.sha256, hex(&Sha256::digest(PNG)));
        assert_eq!(
            first.path,
            format!("sha256/{}/{}.png", &first.sha256[..2], first.sha256)
        );
        assert_eq!(std::fs::read(dir.path().join(&first.path)).unwrap(), PNG);
        // The same bytes again, in pieces and declared loosely: one file.
        let pieces =
            futures_util::stream::iter(PNG.chunks(3).map(|c| Ok(c.to_vec())).collect::<Vec<_>>());
        let again = keep
            .keep(
                Body::Stream(Box::pin(pieces)),
                &["application/octet-stream"],
                1000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, first);
        let wrong = keep
            .keep(
                Body::Whole(Some(b"<html>oops</html>".to_vec())),
                &["image/jpeg"],
                1000,
            )
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(wrong.0, AttachStatus::WrongType);
        let large = keep
            .keep(Body::Whole(Some(vec![0; 2000])), &[], 1000)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(large.0, AttachStatus::TooLarge);
        // Nothing left behind but the one file.
        let partial: Vec<_> = std::fs::read_dir(dir.path().join(".partial"))
            .unwrap()
            .collect();
        assert!(partial.is_empty(), "{partial:?}");
        let stored: Vec<_> = std::fs::read_dir(dir.path().join("sha256").join(&first.sha256[..2]))
            .unwrap()
            .collect();
        assert_eq!(stored.len(), 1);
    }

    /// Links planted in the store: at `sha256` or `.partial` they are
    /// refused (nothing is written where they point); at a file's own
    /// name the link is replaced, the file it names left alone.
    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn links_planted_in_the_store_carry_nothing_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let png = || Body::Whole(Some(PNG.to_vec()));
        let hash = hex(&Sha256::digest(PNG));

        let store = dir.path().join("a");
        std::fs::create_dir(&store).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), store.join("sha256")).unwrap();
        let keep = Keep::new(store.to_str().unwrap()).unwrap();
        let e = keep.keep(png(), &[], 1000).await.unwrap_err();
        assert!(e.to_string().contains("not a folder"), "{e}");

        let store = dir.path().join("b");
        std::fs::create_dir(&store).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), store.join(PARTIAL)).unwrap();
        assert!(Keep::new(store.to_str().unwrap()).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

        let store = dir.path().join("c");
        let folder = store.join("sha256").join(&hash[..2]);
        std::fs::create_dir_all(&folder).unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"not yours").unwrap();
        let name = folder.join(format!("{hash}.png"));
        std::os::unix::fs::symlink(&victim, &name).unwrap();
        let keep = Keep::new(store.to_str().unwrap()).unwrap();
        keep.keep(png(), &[], 1000).await.unwrap().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
        assert!(std::fs::symlink_metadata(&name).unwrap().is_file());
        assert_eq!(std::fs::read(&name).unwrap(), PNG);
    }

    #[test]
    fn a_dead_runs_temporaries_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".partial");
        std::fs::create_dir_all(&partial).unwrap();
        // A pid no process has (above the kernel's maximum).
        std::fs::write(partial.join("4194304999-0.chatdump-attachment"), b"half").unwrap();
        let mine = partial.join(format!("{}-99.chatdump-attachment", std::process::id()));
        std::fs::write(&mine, b"mine").unwrap();
        Keep::new(dir.path().to_str().unwrap()).unwrap();
        let left: Vec<_> = std::fs::read_dir(&partial)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![mine]);
    }
}
