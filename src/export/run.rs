//! One chunk's records: the source driven into the pipeline and on to the
//! output, in the mode the source's answers call for (the pipeline on a
//! thread of its own for large streamed answers, batched, or one by one).

use super::handover;
use super::Options;
use crate::error::{Error, Result};
use crate::log;
use crate::model::RecordKind;
use crate::output::Output;
use crate::pipeline::{Memory, Pipeline, Shape, Stats};
use crate::rejects::RejectLog;
use crate::source::{drive, Driving};
use crate::window::Window;

/// Drives `source` over `window` into `output`; the caller commits. The
/// memory of earlier chunks (or runs) comes in and goes out.
pub async fn run(
    driving: Driving<'_>,
    window: Window,
    options: &Options,
    mut output: Output,
    rejects: RejectLog,
    memory: Memory,
) -> Result<(Stats, Memory, Output)> {
    let source = driving.source;
    let records = options.records;
    let aggregate =
        records == RecordKind::Conversations && source.traits().conversations_from_messages;
    let shape = Shape {
        records,
        messages_in_order: source.traits().messages_in_order,
        aggregate,
        keep_for: source.memory_span(),
        joined: source.traits().messages_need_conversations,
    };
    let fetch = if aggregate {
        RecordKind::Messages
    } else {
        records
    };
    // A platform that streams one large answer per window: nothing in this
    // path asks the pipeline whether a record was new, and there is no
    // per-window context to share, so records go to it in batches (its key
    // lookups then overlap). Parsing the answer keeps this thread busy, so
    // ids, de-duplication and `seq` run on a thread of their own, fed in
    // order. Not when redacting: then the writer thread is busy too, and a
    // third thread only takes the two cores' time from it (BENCHMARKS.md).
    let batched = source.answers_are_large()
        && !source.traits().messages_need_conversations
        && memory.awaiting.is_empty();
    let beside = batched && options.redact.is_none();
    let (mut stats, memory, output, driven) = if beside {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<handover::Handed>(2);
        let worker = std::thread::Builder::new()
            .name("chatdump-pipeline".into())
            .spawn(move || handover::work(shape, output, rejects, memory, receiver))
            .map_err(|e| Error::output("cannot start the pipeline thread", e))?;
        let mut sink = handover::Batching::new(sender);
        let driven = drive(driving, window, fetch, options.include_raw, &mut sink).await;
        let closed = sink.close();
        let worked = worker.join().map_err(|_| {
            Error::output("the pipeline", std::io::Error::other("its thread panicked"))
        })?;
        // The pipeline's own failure (a full disk) explains why handing
        // over stopped: it is the one to report.
        let (stats, memory, output) = worked?;
        let driven = driven?;
        closed?;
        (stats, memory, output, driven)
    } else if batched {
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
        let mut sink = handover::Batching::new(&mut pipeline);
        let driven = drive(driving, window, fetch, options.include_raw, &mut sink).await;
        // A failed write explains why the drive stopped: it comes first.
        sink.close()?;
        let driven = driven?;
        let (stats, memory) = pipeline.finish()?;
        (stats, memory, output, driven)
    } else {
        let mut pipeline = Pipeline::new(shape, &mut output, rejects, memory);
        // What an earlier run (or chunk) could not read yet comes first.
        let again = crate::source::Query {
            window,
            stream: fetch,
            variant: 0,
        };
        for entry in pipeline.take_retries() {
            let read = crate::source::read_again(
                source,
                driving.attach,
                &again,
                entry.raw.as_bytes(),
                options.include_raw,
            )
            .await?;
            for item in read {
                pipeline.retried(item, &entry)?;
            }
        }
        let driven = drive(driving, window, fetch, options.include_raw, &mut pipeline).await?;
        let (stats, memory) = pipeline.finish()?;
        (stats, memory, output, driven)
    };
    stats.windows = driven.windows;
    stats.requests = driven.requests;
    if stats.duplicates > 0 {
        log::verbose(&format!("skipped {} duplicate records", stats.duplicates));
    }
    Ok((stats, memory, output))
}
