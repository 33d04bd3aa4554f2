//! The attachments of a page's messages (`--attachments`), fetched and
//! kept by [`Attach`] a few messages at once, the page's order kept.

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::attach::Attach;
use crate::error::Result;
use crate::model::Record;
use crate::source::{ChatSource, FilesAt, Parsed};

fn carries(item: &Parsed) -> bool {
    matches!(item, Parsed::Record(Record::Message(m)) if !m.record.attachments.is_empty())
}

/// `items` with every message's attachments fetched (files named in the
/// source's own storage read from its folder).
pub(super) async fn resolve(
    source: &dyn ChatSource,
    attach: Option<&Attach>,
    items: Vec<Parsed>,
) -> Result<Vec<Parsed>> {
    let Some(attach) = attach else {
        return Ok(items);
    };
    if !items.iter().any(carries) {
        return Ok(items);
    }
    let folder = source.files().map(|FilesAt { folder, .. }| folder);
    stream::iter(items)
        .map(|item| async move {
            match item {
                Parsed::Record(Record::Message(mut m)) if !m.record.attachments.is_empty() => {
                    attach.message(&mut m.record, folder).await?;
                    Ok(Parsed::Record(Record::Message(m)))
                }
                other => Ok(other),
            }
        })
        .buffered(attach.in_flight())
        .try_collect()
        .await
}
