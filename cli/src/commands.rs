//! What each command does, on any store that implements the contracts it reads through.

use std::io::Write;
use std::time::Duration;

use annals::store::{Checkpoint, CheckpointStore, EventFeed, EventStore, Filter, Inspect, VersionRange};
use annals::StoreError;
use futures::{StreamExt, TryStreamExt};

use crate::args::Command;
use crate::output::Output;

/// How a command ended, besides printing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// It did what was asked.
    Ok,
    /// What it was asked about does not exist (exit code 3).
    NothingFound(String),
}

/// Runs `command` (any but `migrate`) on `store`, printing to `out`.
pub(crate) async fn run<S>(store: S, command: Command, out: &mut Output<impl Write>) -> Result<Done, StoreError>
where
    S: EventStore + EventFeed + CheckpointStore + Inspect,
{
    match command {
        Command::Migrate => Ok(Done::Ok),
        Command::Streams { category, limit } => {
            for stream in store.streams(category.as_deref(), limit).await? {
                out.stream(&stream);
            }
            Ok(Done::Ok)
        }
        Command::Stream { id, at, as_of } => {
            let range = match at {
                Some(at) => VersionRange::from(..=at),
                None => VersionRange::ALL,
            };
            let mut events: Vec<_> = store.read_stream(&id, range).try_collect().await?;
            if let Some(as_of) = as_of {
                events.retain(|event| event.recorded_at <= as_of);
            }
            if events.is_empty() {
                return Ok(Done::NothingFound(format!("stream `{id}` has no events")));
            }
            for event in &events {
                out.event(None, event);
            }
            Ok(Done::Ok)
        }
        Command::Tail { category, types, after, limit, follow } => {
            let mut filter = Filter::all();
            if let Some(category) = category {
                filter = filter.category(category);
            }
            if !types.is_empty() {
                filter = filter.event_types(types);
            }
            tail(&store, &filter, after, limit, follow, out).await?;
            Ok(Done::Ok)
        }
        Command::Correlated { id } => {
            let events = store.correlated(id).await?;
            if events.is_empty() {
                return Ok(Done::NothingFound(format!("no event carries correlation id {id}")));
            }
            for event in &events {
                out.event(None, event);
            }
            Ok(Done::Ok)
        }
        Command::Reset { consumer } => {
            let mut transaction = store.begin().await?;
            store.delete_checkpoint(&mut transaction, &consumer).await?;
            store.commit(transaction).await?;
            out.note(&format!("consumer `{consumer}` starts again from the first event"));
            Ok(Done::Ok)
        }
        Command::Watch { consumer, interval } => watch(&store, &consumer, interval, out).await,
        Command::Blockers => Ok(Done::Ok),
        Command::Consumers => {
            for consumer in store.consumers().await? {
                out.consumer(&consumer);
            }
            Ok(Done::Ok)
        }
        Command::DeadLetters { consumer } => {
            for parked in store.parked(&consumer).await? {
                out.parked(&parked);
            }
            Ok(Done::Ok)
        }
        Command::Skip { consumer, event } => {
            let mut transaction = store.begin().await?;
            let skipped = store.unpark(&mut transaction, &consumer, event).await?;
            store.commit(transaction).await?;
            if !skipped {
                return Ok(Done::NothingFound(format!("consumer `{consumer}` has no parked event {event}")));
            }
            out.note(&format!("skipped parked event {event} of consumer `{consumer}`"));
            Ok(Done::Ok)
        }
    }
}

/// Looks at `consumer` every `interval` until no event is left after its checkpoint:
/// a progress bar on a terminal (on stderr), a JSON line per look with `--json`.
async fn watch<S: Inspect>(
    store: &S,
    consumer: &str,
    interval: Duration,
    out: &mut Output<impl Write>,
) -> Result<Done, StoreError> {
    let started = std::time::Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut first_behind = None;
    loop {
        let found = store.consumers().await?.into_iter().find(|c| c.name == consumer);
        let Some(info) = found else {
            return Ok(Done::NothingFound(format!(
                "consumer `{consumer}` has no checkpoint yet (is it running? `consumers` lists them)"
            )));
        };
        let start = *first_behind.get_or_insert(info.behind);
        // Events appended meanwhile lengthen the way.
        let done = start.saturating_sub(info.behind);
        let length = done.saturating_add(info.behind);
        if out.is_json() {
            out.progress(&info, done);
        } else {
            let bar = bar.get_or_insert_with(|| progress_bar(consumer, length));
            bar.set_length(length);
            bar.set_position(done);
        }
        if info.behind == 0 {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            out.note(&format!(
                "consumer `{consumer}` has caught up at {} ({done} events in {:.1} s)",
                info.checkpoint,
                started.elapsed().as_secs_f64()
            ));
            return Ok(Done::Ok);
        }
        tokio::time::sleep(interval).await;
    }
}

fn progress_bar(consumer: &str, length: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(consumer.to_owned());
    bar
}

/// How long `tail --follow` waits for a wake-up before it reads again anyway.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Prints the feed after `after`; with `follow`, keeps reading as events commit.
async fn tail<S: EventFeed>(
    store: &S,
    filter: &Filter,
    mut after: Checkpoint,
    limit: usize,
    follow: bool,
    out: &mut Output<impl Write>,
) -> Result<(), StoreError> {
    let mut printed = 0usize;
    let mut wakeups = if follow { Some(store.wakeups().await?) } else { None };
    loop {
        let batch = store.read_feed(after, filter, limit.max(1)).await?;
        for event in &batch.events {
            out.event(Some(event.checkpoint), &event.envelope);
            printed = printed.saturating_add(1);
        }
        after = batch.next;
        match &mut wakeups {
            None if batch.more && printed < limit => {}
            None => return Ok(()),
            Some(_) if batch.more => {}
            Some(wakeups) => {
                // A wake-up, or the poll that catches what notified nobody.
                let _ = tokio::time::timeout(FOLLOW_POLL, wakeups.next()).await;
            }
        }
    }
}
