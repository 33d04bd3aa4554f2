//! Outputs and state in object storage: `s3://bucket/key`, `gs://bucket/key`
//! and `az://container/key` (and `file://path`, a local path), through the
//! `object_store` crate.
//!
//! Credentials come from each cloud's own environment (`AWS_*` with
//! `AWS_ENDPOINT` for S3-compatible stores such as MinIO, Ceph or R2;
//! `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT`; `AZURE_*`):
//! nothing secret is in chatdump's own configuration.
//!
//! What chatdump needs of a store, and what every one of the three gives:
//! an object is complete or absent (a multipart upload is completed only
//! after its last byte, and aborted on failure), a create that fails when
//! the key exists, and a replace that fails when the object changed since
//! it was read (S3 `If-None-Match` / `If-Match` on the ETag, GCS
//! generation preconditions, Azure ETags).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as Key;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart};

use crate::error::{Error, Kind, Result};

/// Where an output or the state is.
pub enum Location {
    Local(PathBuf),
    Object(Place),
}

/// An object's key in a store.
#[derive(Clone)]
pub struct Place {
    /// As the user gave it, for messages.
    pub url: String,
    store: Arc<dyn ObjectStore>,
    key: Key,
}

/// The version of an object as read, to replace it only if unchanged.
pub type Version = UpdateVersion;

/// What a conditional write found.
pub enum Written {
    Done(Version),
    /// Create: the key exists. Replace: the object changed meanwhile.
    Conflict,
}

/// `text` with the query of every URL in it cut off: a signed URL (an
/// Azure SAS, a presigned S3 request) carries its credential there.
fn without_queries(text: &str) -> String {
    text.split(' ')
        .map(|word| match (word.starts_with("http"), word.find('?')) {
            (true, Some(q)) => format!("{}?***", &word[..q]),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `text` names an object (a URL chatdump writes through a store)
/// rather than a local path.
pub fn is_object_url(text: &str) -> bool {
    ["s3://", "gs://", "az://"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
}

/// Reads `text` as a location: an object URL, `file://PATH`, or a path.
pub fn locate(text: &str) -> Result<Location> {
    if let Some(path) = text.strip_prefix("file://") {
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if !is_object_url(text) {
        return Ok(Location::Local(PathBuf::from(text)));
    }
    Place::new(text).map(Location::Object)
}

impl Place {
    pub fn new(url: &str) -> Result<Place> {
        Place::parse(url, false)
    }

    /// An object (`folder`: a key prefix, possibly empty) at `url`.
    fn parse(url: &str, folder: bool) -> Result<Place> {
        let bad = |what: &str| {
            Error::usage(format!("{url}: {what}")).with_hint(
                "object locations look like s3://BUCKET/KEY, gs://BUCKET/KEY or az://CONTAINER/KEY",
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
        let (bucket, key) = match rest.split_once('/') {
            Some(split) => split,
            None if folder => (rest, ""),
            None => return Err(bad("no key after the bucket")),
        };
        if bucket.is_empty() || (!folder && (key.is_empty() || key.ends_with('/'))) {
            return Err(bad("a bucket and an object key are needed"));
        }
        if !key.is_empty()
            && key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(bad("the key has an empty, `.` or `..` part"));
        }
        let key = if key.is_empty() {
            Key::default()
        } else {
            Key::parse(key).map_err(|e| bad(&e.to_string()))?
        };
        let root = format!("{scheme}://{bucket}");
        let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
            "s3" => object_store::aws::AmazonS3Builder::from_env()
                .with_url(&root)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "gs" => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(&root)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "az" => object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(&root)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            _ => return Err(bad("unknown scheme")),
        };
        let store = built.map_err(|e| {
            Error::config(format!("{url}: cannot use this store: {e}")).with_hint(match scheme {
                "s3" => "set AWS_REGION and credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile's web identity, or the instance role); AWS_ENDPOINT for an S3-compatible store",
                "gs" => "set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service account key",
                _ => "set AZURE_STORAGE_ACCOUNT_NAME and a credential (AZURE_STORAGE_ACCOUNT_KEY, a SAS, or a client secret)",
            })
        })?;
        Ok(Place {
            url: url.to_string(),
            store,
            key,
        })
    }

    /// A folder (a key prefix, possibly the bucket itself) whose objects
    /// are read by name with [`Place::child`].
    pub fn folder(url: &str) -> Result<Place> {
        Place::parse(url.trim_end_matches('/'), true)
    }

    /// The object `name` (one plain file name) in this folder.
    pub fn child(&self, name: &str) -> Place {
        let key = if self.key.as_ref().is_empty() {
            Key::from(name)
        } else {
            self.key.child(name)
        };
        Place {
            url: format!("{}/{name}", self.url.trim_end_matches('/')),
            store: self.store.clone(),
            key,
        }
    }

    /// The object beside this one whose key ends in `suffix` (the state's
    /// lock, the rejects).
    pub fn with_suffix(&self, suffix: &str) -> Place {
        let key = Key::from(format!("{}{suffix}", self.key));
        Place {
            url: format!("{}{suffix}", self.url),
            store: self.store.clone(),
            key,
        }
    }

    fn fail(&self, what: &str, e: object_store::Error) -> Error {
        let kind = match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Kind::Auth,
            _ => Kind::Output,
        };
        Error::new(
            kind,
            format!(
                "cannot {what} {}: {}",
                self.url,
                crate::log::escape_controls(&without_queries(&e.to_string()), false)
            ),
        )
    }

    /// Uploads `file` as this object: parts as they are read, completed
    /// after the last; on any failure the upload is aborted, so the key
    /// holds the previous object or none, never a part.
    pub async fn upload(&self, file: &Path) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let upload = self
            .store
            .put_multipart(&self.key)
            .await
            .map_err(|e| self.fail("start uploading", e))?;
        let mut writer = WriteMultipart::new(upload);
        let read = async {
            let mut source = tokio::fs::File::open(file).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = source.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                writer
                    .wait_for_capacity(4)
                    .await
                    .map_err(std::io::Error::other)?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        if let Err(e) = read {
            let _ = writer.abort().await;
            return Err(Error::output(format!("cannot upload to {}", self.url), e));
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("complete the upload of", e))
    }

    /// The object's bytes and version, or None when there is none. An
    /// object over `limit` bytes is an error, refused before it is read.
    pub async fn get(&self, limit: usize) -> Result<Option<(Vec<u8>, Version)>> {
        let got = match self.store.get(&self.key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail("read", e)),
        };
        if got.meta.size > limit as u64 {
            return Err(Error::data(format!(
                "{} is {} bytes, more than the {limit} chatdump reads of it",
                self.url, got.meta.size
            )));
        }
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| self.fail("read", e))?;
        Ok(Some((bytes.to_vec(), version)))
    }

    /// Writes `bytes` only if there is no object yet (`None`) or the object
    /// is still at `version`.
    pub async fn put_if(&self, bytes: Vec<u8>, version: Option<Version>) -> Result<Written> {
        let mode = match version {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v),
        };
        let put = self
            .store
            .put_opts(
                &self.key,
                PutPayload::from(bytes),
                PutOptions {
                    mode,
                    ..PutOptions::default()
                },
            )
            .await;
        match put {
            Ok(done) => Ok(Written::Done(UpdateVersion {
                e_tag: done.e_tag,
                version: done.version,
            })),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Written::Conflict),
            Err(e) => Err(self.fail("write", e)),
        }
    }

    /// How many objects are directly in this folder: a listing, which
    /// fails on a bucket that is not there or may not be read.
    pub async fn count(&self) -> Result<usize> {
        let prefix = (!self.key.as_ref().is_empty()).then_some(&self.key);
        self.store
            .list_with_delimiter(prefix)
            .await
            .map(|listing| listing.objects.len())
            .map_err(|e| self.fail("list", e))
    }

    /// Whether the object is there.
    pub async fn exists(&self) -> Result<bool> {
        match self.store.head(&self.key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail("look for", e)),
        }
    }

    /// The object's bytes as they arrive (None when there is none), and
    /// its size.
    pub async fn stream(
        &self,
    ) -> Result<
        Option<(
            futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>>,
            u64,
        )>,
    > {
        use futures_util::StreamExt;
        match self.store.get(&self.key).await {
            Ok(got) => {
                let size = got.meta.size;
                let chunks = got
                    .into_stream()
                    .map(|chunk| chunk.map(|c| c.to_vec()).map_err(std::io::Error::other));
                Ok(Some((chunks.boxed(), size)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("read", e)),
        }
    }

    /// Removes the object (none there is fine).
    pub async fn delete(&self) -> Result<()> {
        match self.store.delete(&self.key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", e)),
        }
    }
}

/// A folder that something else fills (the platform's external storage,
/// synced locally or read in its bucket): files are read from it by name,
/// each at most a limit, never outside it.
#[derive(Clone)]
pub enum Folder {
    Local(PathBuf),
    Object(Place),
}

/// What reading one file of a [`Folder`] gave.
pub enum FolderRead {
    Bytes(Vec<u8>),
    Missing,
    /// It cannot be read as a file (not a regular file, a link out of the
    /// folder, over the limit): the file's fault, said in its record.
    Bad(String),
    /// The store could not be asked (network, credentials): nothing can be
    /// said of the file yet.
    Failed(Error),
}

/// What opening one file of a [`Folder`] gave (see [`FolderRead`]).
pub enum FolderOpen {
    Stream(
        futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>>,
        u64,
    ),
    Missing,
    Bad(String),
    Failed(Error),
}

/// A local file's bytes, a chunk at a time.
fn local_chunks(
    file: tokio::fs::File,
) -> futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>> {
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut chunk = vec![0u8; 256 << 10];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(chunk), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

impl Folder {
    /// A local path, `file://PATH`, or a folder in a bucket.
    pub fn new(location: &str) -> Result<Folder> {
        if let Some((scheme, _)) = location.split_once("://") {
            if scheme != "file" && !is_object_url(location) {
                return Err(Error::config(format!(
                    "{scheme}:// is not a location chatdump reads: give a folder, or a gs://, s3:// or az:// URL"
                )));
            }
        }
        if is_object_url(location) {
            return Place::folder(location).map(Folder::Object);
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        Ok(Folder::Local(PathBuf::from(path)))
    }

    /// The folder, for messages.
    pub fn shown(&self) -> String {
        match self {
            Folder::Local(path) => path.display().to_string(),
            Folder::Object(place) => place.url.clone(),
        }
    }

    /// The file `name` in the folder (its place, for messages), and what
    /// reading it gave. A local file is read on the runtime's blocking
    /// threads, so that many reads overlap as object reads do.
    pub async fn read(&self, name: &str, limit: usize) -> (String, FolderRead) {
        match self {
            Folder::Local(path) => {
                let (folder, file_name) = (path.clone(), name.to_string());
                let shown = path.join(name).display().to_string();
                let read = tokio::task::spawn_blocking(move || {
                    crate::safefs::read_beneath(&folder, &file_name, limit)
                })
                .await;
                let read = match read {
                    Ok(Ok(Some(bytes))) => FolderRead::Bytes(bytes),
                    Ok(Ok(None)) => FolderRead::Missing,
                    Ok(Err(e)) => FolderRead::Bad(e.to_string()),
                    Err(e) => FolderRead::Failed(Error::output(
                        shown.as_str(),
                        std::io::Error::other(format!("the read was lost: {e}")),
                    )),
                };
                (shown, read)
            }
            Folder::Object(place) => {
                let object = place.child(name);
                let read = match object.get(limit).await {
                    Ok(Some((bytes, _))) => FolderRead::Bytes(bytes),
                    Ok(None) => FolderRead::Missing,
                    // Too big: the file itself, not the store.
                    Err(e) if e.kind == Kind::Data => FolderRead::Bad(e.to_string()),
                    Err(e) => FolderRead::Failed(e),
                };
                (object.url, read)
            }
        }
    }

    /// The file `name` as a stream of its bytes, for a file too large to
    /// hold (an attachment): its place, and the stream with its size.
    pub async fn open(&self, name: &str) -> (String, FolderOpen) {
        match self {
            Folder::Local(path) => {
                let shown = path.join(name).display().to_string();
                let (folder, file_name) = (path.clone(), name.to_string());
                let opened = tokio::task::spawn_blocking(move || {
                    crate::safefs::open_beneath(&folder, &file_name)
                })
                .await;
                let opened = match opened {
                    Ok(Ok(Some(file))) => {
                        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                        FolderOpen::Stream(local_chunks(tokio::fs::File::from_std(file)), size)
                    }
                    Ok(Ok(None)) => FolderOpen::Missing,
                    Ok(Err(e)) => FolderOpen::Bad(e.to_string()),
                    Err(e) => FolderOpen::Failed(Error::output(
                        shown.as_str(),
                        std::io::Error::other(format!("the read was lost: {e}")),
                    )),
                };
                (shown, opened)
            }
            Folder::Object(place) => {
                let object = place.child(name);
                let opened = match object.stream().await {
                    Ok(Some((chunks, size))) => FolderOpen::Stream(chunks, size),
                    Ok(None) => FolderOpen::Missing,
                    Err(e) => FolderOpen::Failed(e),
                };
                (object.url, opened)
            }
        }
    }

    /// How many files are directly in the folder: a listing, which fails
    /// on a folder or bucket that is not there or may not be read.
    pub async fn count(&self) -> std::result::Result<usize, String> {
        match self {
            Folder::Local(path) => std::fs::read_dir(path)
                .map(|entries| entries.count())
                .map_err(|e| e.to_string()),
            Folder::Object(place) => place.count().await.map_err(|e| e.to_string()),
        }
    }
}

/// Writes a small probe where outputs or a state will go (a location, or
/// beside it; inside it when it ends in `/`) and removes it again: can
/// this run write there?
pub async fn probe(location: &str) -> Result<String> {
    let name = format!(".chatdump-check-{}", std::process::id());
    let beside = |text: &str| -> String {
        if text.ends_with('/') {
            format!("{text}{name}")
        } else {
            match text.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{name}"),
                None => name.clone(),
            }
        }
    };
    if is_object_url(location) {
        let place = Place::new(&beside(location))?;
        match place.put_if(b"chatdump check\n".to_vec(), None).await? {
            Written::Done(_) | Written::Conflict => {}
        }
        place.delete().await?;
        return Ok(format!("wrote and removed {}", place.url));
    }
    let local = location.strip_prefix("file://").unwrap_or(location);
    let path = PathBuf::from(beside(local));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::safefs::create_new(&path, None).map(drop))
        .and_then(|()| std::fs::remove_file(&path))
        .map_err(|e| Error::output(format!("cannot write in {}", dir.display()), e))?;
    Ok(format!("wrote and removed {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(
            matches!(locate("out/a.jsonl").unwrap(), Location::Local(p) if p == Path::new("out/a.jsonl"))
        );
        assert!(
            matches!(locate("file:///var/x.state").unwrap(), Location::Local(p) if p == Path::new("/var/x.state"))
        );
        assert!(
            is_object_url("s3://b/k") && is_object_url("gs://b/k") && is_object_url("az://c/k")
        );
        assert!(!is_object_url("s3:/b/k") && !is_object_url("https://b/k"));
        for bad in [
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "gs://b/a//b",
            "gs://b/a/../b",
            "az://c/dir/",
        ] {
            let err = Place::new(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.is_empty(), "{bad} accepted");
        }
    }

    #[test]
    fn signed_urls_lose_their_query_in_messages() {
        assert_eq!(
            without_queries("PUT https://a.blob.core.windows.net/c/k?sv=2024&sig=SECRET failed"),
            "PUT https://a.blob.core.windows.net/c/k?*** failed"
        );
        assert_eq!(without_queries("no url here?"), "no url here?");
    }

    #[test]
    fn stores_are_configured_from_the_environment() {
        // A GCS bucket with no credentials in the environment still builds
        // (they are read at the first request); Azure needs an account.
        let gs = Place::new("gs://chats/hanoi/state.json");
        assert!(gs.is_ok(), "{}", gs.err().unwrap());
        let gs = gs.unwrap();
        assert_eq!(
            gs.with_suffix(".lock").url,
            "gs://chats/hanoi/state.json.lock"
        );
        assert_eq!(
            gs.with_suffix(".lock").key.as_ref(),
            "hanoi/state.json.lock"
        );
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            let az = Place::new("az://container/a/b.jsonl").err().unwrap();
            assert_eq!(az.kind, Kind::Config, "{az}");
        }
    }

    /// What chatdump does of GCS that no emulator from the registries can
    /// show (none serves object_store's XML-API requests whole): a replace
    /// conditional on the generation read, a create conditional on none,
    /// and refused credentials ending the run as such. A stand-in answers
    /// the few requests with GCS's documented headers.
    #[tokio::test]
    async fn gcs_writes_are_conditional_on_the_generation_read() {
        use wiremock::matchers::{header, method, path_regex};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let gcs = MockServer::start().await;
        let object = |generation: &str| {
            ResponseTemplate::new(200)
                .insert_header("ETag", "\"e1\"")
                .insert_header("Last-Modified", "Tue, 05 Mar 2024 10:00:00 GMT")
                .insert_header("x-goog-generation", generation)
        };
        Mock::given(method("GET"))
            .and(path_regex("/chats/state.*hanoi"))
            .respond_with(object("1700").set_body_string("{}"))
            .mount(&gcs)
            .await;
        Mock::given(method("PUT"))
            .and(header("x-goog-if-generation-match", "1700"))
            .respond_with(ResponseTemplate::new(412))
            .expect(1)
            .mount(&gcs)
            .await;
        Mock::given(method("PUT"))
            .and(header("x-goog-if-generation-match", "0"))
            .respond_with(object("1"))
            .expect(1)
            .mount(&gcs)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("/chats/forbidden"))
            .respond_with(ResponseTemplate::new(403))
            .mount(&gcs)
            .await;
        let key = serde_json::json!({
            "gcs_base_url": gcs.uri(), "disable_oauth": true,
            "client_email": "", "private_key": "", "private_key_id": ""
        });
        let store = object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name("chats")
            .with_service_account_key(key.to_string())
            .build()
            .unwrap();
        let place = |key: &str| Place {
            url: format!("gs://chats/{key}"),
            store: Arc::new(store.clone()),
            key: Key::from(key),
        };
        let state = place("state/hanoi.json");
        let (_, version) = state.get(1024).await.unwrap().expect("the object");
        assert_eq!(version.version.as_deref(), Some("1700"));
        // Changed since it was read: the replace is refused, not forced.
        assert!(matches!(
            state.put_if(b"{}".to_vec(), Some(version)).await.unwrap(),
            Written::Conflict
        ));
        let lock = place("state/hanoi.json.lock");
        match lock.put_if(b"lease".to_vec(), None).await.unwrap() {
            Written::Done(v) => assert_eq!(v.version.as_deref(), Some("1")),
            Written::Conflict => panic!("a create where there is nothing"),
        }
        let refused = place("forbidden").get(1024).await.expect_err("refused");
        assert_eq!(refused.kind, Kind::Auth, "{refused}");
        assert!(
            refused.to_string().contains("gs://chats/forbidden"),
            "{refused}"
        );
    }
}
