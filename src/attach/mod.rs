//! Attachments (`--attachments DEST`): the photos, videos and files a
//! message carries, fetched and kept once each by their content
//! (`keep.rs`), from wherever the platform's record says they are: an
//! inline `data:` payload in the text, a link (fetched without the
//! source's credentials and only where it is safe, `fetch.rs`), or a file
//! in the source's own storage. Providers name attachments; only this
//! stage fetches them, driven a page at a time by the driver.
//!
//! An attachment that cannot be had is never silent: its row says why,
//! the run counts it, the rejects file lists it, and the run exits 65.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SourceTable;
use crate::error::{Error, Kind, Result};
use crate::http::pacer::Pacer;
use crate::media::{self, DataUri};
use crate::model::{AttachStatus, Attachment, Message, Origin};
use crate::store::{Folder, FolderOpen};

mod fetch;
mod keep;

pub use fetch::AllowList;
use fetch::Answer;
use keep::{Body, Keep, Kept, Refused};

/// What a source's configuration says of attachments.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where files are kept: a folder or an object-storage location.
    pub dest: String,
    /// `attachment_hosts`: hosts reached even at private addresses.
    pub hosts: Vec<String>,
    /// `max_attachment_size`.
    pub max_size: u64,
    /// `attachment_timeout`: the longest one attachment may take.
    pub timeout: Duration,
    /// `attachment_rate`: links asked for per second at most.
    pub per_second: f64,
    /// Attachments fetched at once.
    pub in_flight: usize,
}

impl Settings {
    pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_RATE: f64 = 20.0;
    pub const DEFAULT_IN_FLIGHT: usize = 8;

    /// The settings for keeping attachments at `dest`, with the source's
    /// `attachment_hosts`, `max_attachment_size`, `attachment_timeout`
    /// and `attachment_rate` (or their defaults).
    pub fn of(dest: String, table: Option<&SourceTable<'_>>) -> Result<Settings> {
        let mut settings = Settings {
            dest,
            hosts: Vec::new(),
            max_size: Self::DEFAULT_MAX_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            per_second: Self::DEFAULT_RATE,
            in_flight: Self::DEFAULT_IN_FLIGHT,
        };
        if let Some(table) = table {
            settings.hosts = table.string_list("attachment_hosts")?.unwrap_or_default();
            if let Some(size) = table.size("max_attachment_size", 1)? {
                settings.max_size = size as u64;
            }
            if let Some(timeout) = table.duration("attachment_timeout")? {
                settings.timeout = timeout.to_std().unwrap_or(Self::DEFAULT_TIMEOUT);
            }
            if let Some(rate) = table.rate("attachment_rate")? {
                settings.per_second = rate;
            }
        }
        Ok(settings)
    }
}

/// What a run's attachments came to, for the summary and the exit code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub stored: u64,
    pub missing: u64,
    /// Bytes of the files stored (or found stored already).
    pub bytes: u64,
}

/// Attachments fetched of one message; any more are refused.
const MOST_PER_MESSAGE: usize = 100;

/// Links asked again after a transient failure (network, 5xx, 429).
const ATTEMPTS: u32 = 3;

/// Links remembered with what they gave (kept, or refused for good), so a
/// link in many chats is fetched once a run.
const REMEMBERED: usize = 4096;

/// The attachment stage of one run.
pub struct Attach {
    keep: Keep,
    client: reqwest::Client,
    allowed: Arc<AllowList>,
    max_size: u64,
    timeout: Duration,
    pacer: Pacer,
    in_flight: usize,
    remembered: RefCell<HashMap<String, std::result::Result<Kept, Refused>>>,
    tally: Cell<Tally>,
    /// Links under the first prefix are fetched from the second instead
    /// (the demo's sample server stands in for a file host).
    redirected: Option<(String, String)>,
}

impl Attach {
    pub fn new(settings: &Settings) -> Result<Attach> {
        let allowed = Arc::new(AllowList::new(&settings.hosts));
        Ok(Attach {
            keep: Keep::new(&settings.dest)?,
            client: fetch::client(allowed.clone())?,
            allowed,
            max_size: settings.max_size,
            timeout: settings.timeout,
            pacer: Pacer::per_second(settings.per_second),
            in_flight: settings.in_flight.max(1),
            remembered: RefCell::new(HashMap::new()),
            tally: Cell::new(Tally::default()),
            redirected: None,
        })
    }

    /// Fetches links starting with `prefix` from `instead` (the rest of
    /// the link kept); rows still show the link as the platform gave it.
    pub fn fetching_links_from(mut self, prefix: &str, instead: &str) -> Attach {
        self.redirected = Some((prefix.to_string(), instead.to_string()));
        self
    }

    /// Messages whose attachments are fetched at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn tally(&self) -> Tally {
        self.tally.get()
    }

    /// Where files are kept, for messages.
    pub fn shown(&self) -> String {
        self.keep.shown()
    }

    /// Fetches and keeps every attachment of `message` (its text's inline
    /// payloads that were kept are replaced once the message has its id:
    /// [`media::settle_inline`]). An error is the store's or the folder's:
    /// it fails the window.
    pub async fn message(&self, message: &mut Message, folder: Option<&Folder>) -> Result<()> {
        let uris = message
            .text
            .as_deref()
            .map(media::data_uris)
            .unwrap_or_default();
        let text = message.text.as_deref().unwrap_or("");
        for (n, attachment) in message.attachments.iter_mut().enumerate() {
            if n >= MOST_PER_MESSAGE {
                // A message a customer wrote full of links is not a way to
                // make chatdump fetch without end.
                attachment.status = AttachStatus::Refused;
                attachment.why = Some(format!(
                    "a message with more than {MOST_PER_MESSAGE} attachments: the rest are not fetched"
                ));
                self.count(|t| t.missing += 1);
                continue;
            }
            self.one(attachment, text, &uris, folder).await?;
        }
        Ok(())
    }

    /// One attachment, from the first of its origins that gives it.
    async fn one(
        &self,
        attachment: &mut Attachment,
        text: &str,
        uris: &[DataUri],
        folder: Option<&Folder>,
    ) -> Result<()> {
        let mut declared: Vec<String> = attachment.content_type.iter().cloned().collect();
        let mut last: Option<Refused> = None;
        for origin in attachment.origins.clone() {
            let got = match &origin {
                Origin::Inline(n) => {
                    let uri = uris.get(*n as usize);
                    match uri.and_then(|uri| uri.decode(text)) {
                        Some(bytes) => {
                            if let Some(uri) = uri {
                                declared.push(uri.content_type.clone());
                            }
                            let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
                            self.keep
                                .keep(Body::Whole(Some(bytes)), &declared, self.max_size)
                                .await?
                        }
                        None => Err((
                            AttachStatus::Unreadable,
                            "the inline payload is not base64".to_string(),
                        )),
                    }
                }
                Origin::Url(link) => self.link(link, &declared).await?,
                Origin::File(name) => match folder {
                    Some(folder) => self.file(folder, name, &declared).await?,
                    None => continue,
                },
            };
            match got {
                Ok(kept) => {
                    attachment.sha256 = Some(kept.sha256);
                    attachment.bytes = Some(kept.bytes);
                    attachment.content_type = Some(kept.content_type);
                    attachment.path = Some(kept.path);
                    attachment.status = AttachStatus::Stored;
                    attachment.why = None;
                    self.count(|t| {
                        t.stored += 1;
                        t.bytes += kept.bytes;
                    });
                    return Ok(());
                }
                Err(refused) => last = Some(refused),
            }
        }
        let (status, why) = last.unwrap_or((
            AttachStatus::Unavailable,
            "nowhere to fetch it from".to_string(),
        ));
        attachment.status = status;
        attachment.why = Some(why);
        self.count(|t| t.missing += 1);
        Ok(())
    }

    fn count(&self, change: impl FnOnce(&mut Tally)) {
        let mut tally = self.tally.get();
        change(&mut tally);
        self.tally.set(tally);
    }

    /// A file in the source's storage.
    async fn file(
        &self,
        folder: &Folder,
        name: &str,
        declared: &[String],
    ) -> Result<std::result::Result<Kept, Refused>> {
        let (shown, opened) = folder.open(name).await;
        match opened {
            FolderOpen::Stream(chunks, size) => {
                if size > self.max_size {
                    return Ok(Err((
                        AttachStatus::TooLarge,
                        format!(
                            "{shown} is over {} bytes (`max_attachment_size`)",
                            self.max_size
                        ),
                    )));
                }
                let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
                let kept = tokio::time::timeout(
                    self.timeout,
                    self.keep
                        .keep(Body::Stream(chunks), &declared, self.max_size),
                )
                .await;
                match kept {
                    Ok(kept) => kept,
                    Err(_) => Ok(Err(timed_out(self.timeout))),
                }
            }
            FolderOpen::Missing => Ok(Err((
                AttachStatus::Unavailable,
                format!("{shown} is not there"),
            ))),
            FolderOpen::Bad(why) => Ok(Err((AttachStatus::Refused, why))),
            // The store not answering is the run's trouble, not the file's.
            FolderOpen::Failed(e) => Err(match e.kind {
                Kind::Auth => e,
                _ => Error::unavailable(e.to_string()),
            }
            .with_hint("nothing of this window was committed: rerun once the store answers")),
        }
    }

    /// A link, asked again after a transient failure; each attempt within
    /// `attachment_timeout`.
    async fn link(
        &self,
        link: &str,
        declared: &[String],
    ) -> Result<std::result::Result<Kept, Refused>> {
        if let Some(known) = self.remembered.borrow().get(link) {
            return Ok(known.clone());
        }
        let mut outcome = Err((AttachStatus::Unavailable, String::new()));
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            self.pacer.wait().await;
            let tried = tokio::time::timeout(self.timeout, self.attempt(link, declared)).await;
            let (got, again) = match tried {
                Err(_) => (Err(timed_out(self.timeout)), false),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(got)) => got,
            };
            outcome = got;
            if !again {
                break;
            }
        }
        // What a later try may change (the host down, slow, the link not
        // yet there) is asked again the next time the link comes.
        let lasting = match &outcome {
            Ok(_) => true,
            Err((status, _)) => matches!(
                status,
                AttachStatus::Refused | AttachStatus::TooLarge | AttachStatus::WrongType
            ),
        };
        if lasting {
            let mut remembered = self.remembered.borrow_mut();
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
            remembered.insert(link.to_string(), outcome.clone());
        }
        Ok(outcome)
    }

    /// One request for a link and, if it answers, its body kept. The
    /// flag: worth asking again.
    async fn attempt(
        &self,
        link: &str,
        declared: &[String],
    ) -> Result<(std::result::Result<Kept, Refused>, bool)> {
        let link = match &self.redirected {
            Some((prefix, instead)) if link.starts_with(prefix.as_str()) => {
                format!("{instead}{}", &link[prefix.len()..])
            }
            _ => link.to_string(),
        };
        match fetch::get(&self.client, &link, &self.allowed).await {
            Answer::Body(response) => {
                // The answer's own type is checked too, where it names a
                // kind of file (servers label many files text/plain).
                let header = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(media::media_type)
                    .filter(|t| media::is_known(t));
                let mut declared: Vec<&str> = declared.iter().map(String::as_str).collect();
                declared.extend(header.as_deref());
                let kept = self
                    .keep
                    .keep(Body::Http(response), &declared, self.max_size)
                    .await?;
                // A download that broke off is worth another try.
                let broke = matches!(&kept, Err((AttachStatus::Unavailable, _)));
                Ok((kept, broke))
            }
            Answer::Failed(status, why) => Ok((Err((status, why)), false)),
            Answer::Transient(why) => Ok((Err((AttachStatus::Unavailable, why)), true)),
        }
    }
}

fn timed_out(timeout: Duration) -> Refused {
    (
        AttachStatus::TimedOut,
        format!(
            "not had within {} s (`attachment_timeout`)",
            timeout.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dest: &std::path::Path) -> Settings {
        let mut settings = Settings::of(dest.display().to_string(), None).unwrap();
        settings.per_second = 1000.0;
        settings
    }

    /// One message, many inline copies of one image: a hundred fetched (one
    /// file), the rest refused and said; a link nobody may reach is refused
    /// before any request.
    #[tokio::test(flavor = "current_thread")]
    async fn a_message_full_of_attachments_is_fetched_only_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let attach = Attach::new(&settings(dir.path())).unwrap();
        let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==";
        let text = format!(
            "{} <a href=\"https://169.254.169.254/latest\">x</a>",
            vec![png; MOST_PER_MESSAGE + 1].join(" ")
        );
        let mut message = Message {
            attachments: media::in_text(&text),
            text: Some(text),
            ..Default::default()
        };
        assert_eq!(message.attachments.len(), MOST_PER_MESSAGE + 2);
        attach.message(&mut message, None).await.unwrap();
        let statuses: Vec<AttachStatus> = message.attachments.iter().map(|a| a.status).collect();
        assert!(statuses[..MOST_PER_MESSAGE]
            .iter()
            .all(|s| *s == AttachStatus::Stored));
        assert_eq!(statuses[MOST_PER_MESSAGE..], [AttachStatus::Refused; 2]);
        assert_eq!(
            attach.tally(),
            Tally {
                stored: MOST_PER_MESSAGE as u64,
                missing: 2,
                bytes: 16 * MOST_PER_MESSAGE as u64,
            }
        );
        // Replaced as the message is written: kept ones only.
        media::settle_inline(&mut message);
        let text = message.text.unwrap();
        assert_eq!(
            text.matches("[attachment: sha256/").count(),
            MOST_PER_MESSAGE
        );
        assert_eq!(text.matches(png).count(), 1, "the one not fetched stays");
        let stored: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .collect();
        assert_eq!(stored.len(), 1, "one file for every copy");
    }
}
