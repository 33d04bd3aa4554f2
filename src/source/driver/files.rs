//! Files that a page's elements ask for ([`Parsed::Wants`]: a UJET chat's
//! transcript, in the platform's external storage): read from the
//! source's folder, local or in a bucket, several at once on the run's
//! runtime, and handed to the provider's pure mapper in the page's order.
//! Providers name files; only this stage reads them.

use futures_util::stream::{self, StreamExt};

use crate::error::{Error, Kind, Result};
use crate::source::{ChatSource, FileFound, FilesAt, Parsed, Query, Wanted};
use crate::store::{Folder, FolderRead};

/// Files read at once: enough to hide an object store's round trips
/// (about 20 ms each to a bucket in the same region), few enough not to
/// flood a small store or the machine's blocking threads.
const FILES_IN_FLIGHT: usize = 16;

/// `items` with every element that asked for a file mapped again with it,
/// in the same order, and the bytes of files read (held with the page).
/// A store that cannot be asked (network, credentials) fails the window:
/// nothing of it is committed, and no chat is passed over for a hiccup.
pub(super) async fn resolve(
    source: &dyn ChatSource,
    query: &Query,
    want_raw: bool,
    items: Vec<Parsed>,
) -> Result<(Vec<Parsed>, usize)> {
    if !items.iter().any(|item| matches!(item, Parsed::Wants(_))) {
        return Ok((items, 0));
    }
    let Some(FilesAt { folder, limit, .. }) = source.files() else {
        return Err(Error::config(format!(
            "{}: records ask for files, but no folder is configured to read them from",
            source.kind().as_str()
        )));
    };
    let mut steps = stream::iter(items)
        .map(|item| async move {
            match item {
                Parsed::Wants(wanted) => {
                    let found = find(folder, limit, &wanted).await?;
                    Ok(Step::Found(*wanted, found))
                }
                other => Ok(Step::Ready(other)),
            }
        })
        .buffered(FILES_IN_FLIGHT);
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(step) = steps.next().await {
        match step? {
            Step::Ready(item) => out.push(item),
            Step::Found(wanted, found) => {
                if let FileFound::Read { bytes: read, .. } = &found {
                    bytes += read.len();
                }
                source.parse_with_file(query, wanted, found, want_raw, &mut |p| out.push(p));
            }
        }
    }
    Ok((out, bytes))
}

/// An item of the page, ready or with its file.
// At most FILES_IN_FLIGHT of them exist at once: their size is no matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Ready(Parsed),
    Found(Wanted, FileFound),
}

/// The first of `wanted`'s names found in the folder.
async fn find(folder: &Folder, limit: usize, wanted: &Wanted) -> Result<FileFound> {
    let mut looked_for = Vec::new();
    for name in &wanted.names {
        let (file, read) = folder.read(name, limit).await;
        match read {
            FolderRead::Missing => looked_for.push(file),
            FolderRead::Bytes(bytes) => {
                return Ok(FileFound::Read {
                    name: name.clone(),
                    file,
                    bytes,
                })
            }
            FolderRead::Bad(why) => return Ok(FileFound::Bad { file, why }),
            // Credentials refused stay so (77); anything else is the
            // store not answering (69).
            FolderRead::Failed(e) => {
                let e = match e.kind {
                    Kind::Auth => e,
                    _ => Error::unavailable(e.to_string()),
                };
                return Err(e.with_hint(
                    "nothing of this window was committed and the state was not advanced: rerun once the store answers",
                ));
            }
        }
    }
    Ok(FileFound::Missing { looked_for })
}
