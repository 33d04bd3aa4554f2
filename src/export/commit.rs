//! The chunk's commit protocol: export one chunk into its output, make the
//! output durable, save the checkpoint together with the rename that
//! publishes it, then publish.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::targets::{check_objects, check_paths, spool_for};
use super::{expand_placeholders, render, run, Exporter};
use crate::error::Result;
use crate::log;
use crate::output::Output;
use crate::rejects::RejectLog;
use crate::source::Driving;
use crate::state::{with_suffix, LedgerEntry, PendingRename, State};
use crate::state_store::StateStore;
use crate::store::Place;
use crate::window::Window;

/// Where one chunk's records go: an object (written to a spool first), a
/// file, or stdout (no path).
struct Placement {
    object: Option<Place>,
    /// The spool's folder, removed when the chunk ends, however it ends.
    spool: Option<(tempfile::TempDir, PathBuf)>,
    path: Option<PathBuf>,
}

impl Exporter<'_> {
    /// The chunk's output, its placeholders expanded, checked against the
    /// state's own files before anything is created there.
    fn placement(&self, chunk: &Window) -> Result<Placement> {
        let (name, options, records) = (self.name, self.options, self.options.records);
        let expanded = options.output.as_deref().map(|t| {
            expand_placeholders(t, name, chunk, records)
                .to_string_lossy()
                .into_owned()
        });
        // An object is written to a file of this run's own first, and
        // uploaded once complete: the key holds the whole file or nothing.
        let object = match expanded.as_deref() {
            Some(url) if crate::store::is_object_url(url) => Some(Place::new(url)?),
            _ => None,
        };
        let spool = match &object {
            Some(place) => Some(spool_for(place)?),
            None => None,
        };
        let path: Option<PathBuf> = match (&spool, expanded) {
            (Some((_, spooled)), _) => Some(spooled.clone()),
            (None, Some(text)) => Some(PathBuf::from(
                text.strip_prefix("file://").unwrap_or(&text).to_string(),
            )),
            (None, None) => None,
        };
        match (&object, &path, self.state.as_ref()) {
            (Some(place), _, Some(StateStore::Object(state))) => {
                check_objects(place, state.place())?
            }
            (None, Some(p), Some(StateStore::Local(f))) => check_paths(p, Some(f.path()))?,
            (None, Some(p), _) => check_paths(p, None)?,
            _ => {}
        }
        Ok(Placement {
            object,
            spool,
            path,
        })
    }

    /// Where the chunk's rejected records go: beside the state, kept
    /// across runs (cron mail points there), else beside the output.
    fn rejects_for(&self, object: Option<&Place>, path: Option<&Path>) -> RejectLog {
        let name = self.name;
        match (self.state.as_ref().and_then(StateStore::local), object) {
            (Some(f), _) => RejectLog::appending(name, with_suffix(f.path(), ".rejects.jsonl")),
            (None, Some(place)) => {
                RejectLog::new(name, path).shown_as(place.with_suffix(".rejects.jsonl").url)
            }
            (None, None) => RejectLog::new(name, path),
        }
        .redacting(self.redactor.is_some())
    }

    /// Exports `chunk`, makes it durable, then moves the checkpoint.
    pub(super) async fn chunk(&mut self, chunk: Window) -> Result<()> {
        let (name, options, records) = (self.name, self.options, self.options.records);
        let Placement {
            object,
            spool: _spool,
            path,
        } = self.placement(&chunk)?;
        let rejects = self.rejects_for(object.as_ref(), path.as_deref());
        let streaming = options.follow.is_some() && path.is_none();
        let output = self.output_for(path.as_deref(), streaming)?;
        let memory = std::mem::take(&mut self.memory);
        let driving = Driving {
            source: self.source,
            http: &self.http,
            learned: &self.learned,
            attach: self.attach.as_ref(),
        };
        let (mut stats, memory, output) =
            run(driving, chunk, options, output, rejects, memory).await?;
        let own = if streaming {
            self.stream = Some(output);
            None
        } else {
            Some(output)
        };
        self.memory = memory;
        // The records are durable (or handed to the reader) before the
        // state may say so. A file's checkpoint is saved together with the
        // rename that publishes it (`pending`), so the two cannot part: a
        // run killed between them is finished by the next. Nothing below
        // awaits, so a signal cannot stop the run between the two.
        let mut prepared = match own {
            Some(out) => {
                self.targets.push(match &object {
                    Some(place) => place.url.clone(),
                    None => out.describe(),
                });
                let prepared = out.prepare()?;
                // What the file holds, not every version written to it.
                stats.records = stats.records.saturating_sub(prepared.superseded);
                Some(prepared)
            }
            None => {
                self.stream.as_mut().expect("created above").flush()?;
                None
            }
        };
        let upload = match (&object, &path) {
            (Some(place), Some(spool)) => prepared.take().map(|local| (place, spool, local)),
            _ => None,
        };
        if let Some((place, spool, local)) = upload {
            // The object first, then the state: a run stopped between the
            // two exports the window again, to the same key.
            local.publish()?;
            upload_spool(place, spool).await?;
        }
        if options.follow.is_some() {
            log::verbose(&format!(
                "{name}: {} new {}",
                stats.records,
                records.as_str()
            ));
        }
        let output = match &object {
            Some(place) => Some(place.url.clone()),
            None => path.as_ref().map(|p| p.display().to_string()),
        };
        let next = (self.state.as_ref())
            .map(|file| self.next_state(file.state(), &chunk, stats.records, output));
        if let (Some(file), Some(mut next)) = (self.state.as_mut(), next) {
            next.pending = prepared.as_ref().and_then(|p| {
                Some(PendingRename {
                    temp: p.temp.clone()?,
                    target: p.target.clone()?,
                })
            });
            file.save(next).await?;
            if let Some(prepared) = prepared.as_mut() {
                prepared.keep_for_state();
            }
        }
        if let Some(prepared) = prepared {
            prepared.publish()?;
        }
        self.checkpoint = Some(chunk.to);
        self.total += stats;
        Ok(())
    }

    /// The output a chunk is written to: a file of its own, or (following
    /// to standard output) the one stream every chunk shares.
    fn output_for(&mut self, path: Option<&Path>, streaming: bool) -> Result<Output> {
        let options = self.options;
        let create = |path: Option<&Path>| {
            Output::create(
                path,
                options.format(),
                options.records,
                render(self.name, self.source.kind().as_str(), options),
                self.redactor.cloned(),
            )
        };
        if !streaming {
            return create(path);
        }
        match self.stream.take() {
            Some(stream) => Ok(stream),
            None => create(None),
        }
    }

    /// The state once `chunk` is committed: its ledger entry, and what the
    /// pipeline must remember for the next chunk or run.
    fn next_state(
        &self,
        current: Option<&State>,
        chunk: &Window,
        records: u64,
        output: Option<String>,
    ) -> State {
        let kind = self.source.kind().as_str();
        let mut next = current.cloned().unwrap_or_else(|| {
            State::first(self.name, kind, self.options.records.as_str(), chunk.to)
        });
        next.record(LedgerEntry {
            from: chunk.from,
            to: chunk.to,
            records,
            output,
            finished_at: Utc::now(),
        });
        next.set_keys(
            self.memory
                .recent_since(chunk.to - self.source.memory_span()),
        );
        next.awaiting.clone_from(&self.memory.awaiting);
        next.chats = self.memory.open_chats(chunk.to);
        next
    }
}

/// Uploads a published spool file (and its rejects beside it) to its
/// object, and removes the spool whatever the upload did.
async fn upload_spool(place: &Place, spool: &Path) -> Result<()> {
    let rejected = with_suffix(spool, ".rejects.jsonl");
    let mut uploaded = place.upload(spool).await;
    if uploaded.is_ok() && rejected.exists() {
        uploaded = place.with_suffix(".rejects.jsonl").upload(&rejected).await;
    }
    for file in [spool, rejected.as_path()] {
        let _ = std::fs::remove_file(file);
    }
    if let Some(dir) = spool.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    uploaded
}
