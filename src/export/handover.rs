//! The pipeline on a thread of its own, fed through a channel.

use std::sync::mpsc::{Receiver, SyncSender};

use crate::error::{Error, Result};
use crate::output::{Output, BATCH, BATCH_BYTES};
use crate::pipeline::{Memory, Pipeline, Shape, Stats};
use crate::rejects::RejectLog;
use crate::source::{ConversationContext, Parsed, Sink};
use crate::window::Window;

// Items are handed over in the output's batches (a count, or a size of
// text): enough that the channel costs little per record, few enough
// that memory stays flat, and a batch of messages goes on to the
// writer whole.

/// What the driver hands over, in the order it happened.
pub enum Handed {
    Items(Vec<Parsed>),
    BeginResponse,
    EndWindow(Window),
}

/// Where batches go: the pipeline thread's channel, or the pipeline
/// itself when it runs on the driver's thread.
pub trait Receiving {
    fn take(&mut self, handed: Handed) -> Result<()>;
}

impl Receiving for SyncSender<Handed> {
    fn take(&mut self, handed: Handed) -> Result<()> {
        self.send(handed)
            .map_err(|_| Error::output("the pipeline", std::io::Error::other("it stopped")))
    }
}

impl Receiving for &mut Pipeline<'_> {
    fn take(&mut self, handed: Handed) -> Result<()> {
        apply(self, handed)
    }
}

/// The driver's [`Sink`] for a path that never asks whether a record
/// was new: batches what it is given, in order, for
/// [`Pipeline::accept_batch`].
pub struct Batching<T: Receiving> {
    to: T,
    batch: Vec<Parsed>,
    /// The message text the batch holds.
    text_bytes: usize,
    /// A failure met where the driver cannot be told at once.
    failed: Option<Error>,
}

impl<T: Receiving> Batching<T> {
    pub fn new(to: T) -> Self {
        Batching {
            to,
            batch: Vec::with_capacity(BATCH),
            text_bytes: 0,
            failed: None,
        }
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.text_bytes = 0;
        self.to.take(Handed::Items(batch))
    }

    /// Hands over what is left (a pipeline thread finishes once its
    /// channel is dropped with this).
    pub fn close(mut self) -> Result<()> {
        self.flush()
    }
}

impl<T: Receiving> Sink for Batching<T> {
    fn accept(&mut self, item: Parsed, _context: &ConversationContext) -> Result<bool> {
        if let Parsed::Record(record) = &item {
            self.text_bytes += record.text_len();
        }
        self.batch.push(item);
        // Bounded by text too, as the output's batches are: 512 large
        // messages would hold several megabytes at each step.
        if self.batch.len() >= BATCH || self.text_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        // Whether it was new is the pipeline's to know; this path never
        // asks.
        Ok(true)
    }

    fn begin_response(&mut self) {
        // A failure here shows at the next item or window.
        if let Err(e) = self
            .flush()
            .and_then(|()| self.to.take(Handed::BeginResponse))
        {
            self.failed = Some(e);
        }
    }

    fn end_window(&mut self, window: &Window, _context: &ConversationContext) -> Result<()> {
        // No per-window context on this path (see `run`).
        self.flush()?;
        self.to.take(Handed::EndWindow(*window))
    }
}

/// What the pipeline does with one thing handed over.
fn apply(pipeline: &mut Pipeline<'_>, handed: Handed) -> Result<()> {
    match handed {
        Handed::Items(items) => pipeline.accept_batch(items),
        Handed::BeginResponse => {
            pipeline.begin_response();
            Ok(())
        }
        Handed::EndWindow(window) => pipeline.end_window(&window, &ConversationContext::default()),
    }
}

/// The pipeline thread: everything handed over, in order; then what
/// the run needs back.
pub fn work(
    shape: Shape,
    mut output: Output,
    rejects: RejectLog,
    memory: Memory,
    receiver: Receiver<Handed>,
) -> Result<(Stats, Memory, Output)> {
    let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
    for handed in receiver {
        apply(&mut pipeline, handed)?;
    }
    let (stats, memory) = pipeline.finish()?;
    Ok((stats, memory, output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Item, Message, Record};

    /// What was handed over: the items of each batch, and their text.
    #[derive(Default)]
    struct Taken(Vec<(usize, usize)>);

    impl Receiving for &mut Taken {
        fn take(&mut self, handed: Handed) -> Result<()> {
            if let Handed::Items(items) = handed {
                let text = items
                    .iter()
                    .map(|item| match item {
                        Parsed::Record(Record::Message(m)) => {
                            m.record.text.as_ref().map_or(0, String::len)
                        }
                        _ => 0,
                    })
                    .sum();
                self.0.push((items.len(), text));
            }
            Ok(())
        }
    }

    fn message(text_len: usize) -> Parsed {
        Parsed::Record(Record::Message(Item {
            record: Message {
                conversation_id: "c".into(),
                text: Some("x".repeat(text_len)),
                ..Default::default()
            },
            raw: None,
        }))
    }

    /// Batches are a count of short messages, or a size of long ones,
    /// and nothing is lost or reordered either way.
    #[test]
    fn batches_are_bounded_by_count_and_by_text() {
        let mut taken = Taken::default();
        let mut sink = Batching::new(&mut taken);
        let none = ConversationContext::default();
        for _ in 0..BATCH + 10 {
            sink.accept(message(10), &none).unwrap();
        }
        for _ in 0..20 {
            sink.accept(message(300_000), &none).unwrap();
        }
        sink.close().unwrap();
        let sizes: Vec<usize> = taken.0.iter().map(|(n, _)| *n).collect();
        assert_eq!(sizes.iter().sum::<usize>(), BATCH + 30);
        assert_eq!(sizes[0], BATCH);
        for (n, text) in &taken.0 {
            assert!(*n <= BATCH && *text < BATCH_BYTES + 300_000, "{n} {text}");
        }
        // 300 kB messages: four to a batch.
        assert!(taken
            .0
            .iter()
            .skip(1)
            .take(4)
            .all(|(_, text)| *text >= BATCH_BYTES));
    }
}
