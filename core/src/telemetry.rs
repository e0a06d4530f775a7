//! What annals reports to `tracing` and to the `metrics` facade: every span and metric
//! name in one place. annals installs neither a subscriber nor a recorder; without one
//! each report costs a check of a flag.
//!
//! **Spans** (`tracing`; field names follow OpenTelemetry's conventions where they have
//! one):
//!
//! | span | level | fields |
//! | --- | --- | --- |
//! | `annals.command` | INFO | `aggregate`, `command`, `stream`, then `attempts`, `outcome`, `version` |
//! | `annals.load` | DEBUG | `stream`, then `from_snapshot`, `events`, `version` |
//! | `annals.append` | DEBUG | `stream`, `events`, `expected_version` (and `commands` when commands on a hot stream are appended together, see [`Repository::with_cache`](crate::Repository::with_cache); the append is then a child of the command that opened its batch), then `first_position`, `last_position` |
//! | `annals.batch` | DEBUG | `consumer`, `checkpoint`, `events`, `next` |
//! | `annals.handle` | DEBUG (INFO when the event carries a trace context, see below) | `projection`, `event_type`, `event_id`, `stream`, `version`, `position` |
//! | `annals.relay` | DEBUG | (annals-nats) one published batch: `messaging.system` (`nats`), `messaging.operation.type` (`send`), `messaging.destination.name` (the JetStream stream), `messaging.batch.message_count`, `after_sequence`, then `last_sequence` |
//! | `annals.react` | INFO | `process`, `instance`, `input` (event type, deadline type or `Rejected<Command>`), `trigger` (its id), then `outcome` (`reacted`, `carried_out_again`, `ignored`), `commands` |
//!
//! **Trace context** (feature `opentelemetry`, with `tracing-opentelemetry`'s layer in
//! the subscriber): a command stamps the W3C trace context of its `annals.command` span
//! into each new event's metadata ([`Metadata::TRACEPARENT`](crate::Metadata::TRACEPARENT),
//! and `tracestate` when not empty), unless the caller set one; a consumer handles such an
//! event in an INFO `annals.handle` span whose remote parent it is, so one trace follows a
//! request through the store into every projection, in this process or another. A
//! `traceparent` that does not parse is ignored (the span is the DEBUG one, in no trace).
//!
//! **Metrics** (`metrics`; Prometheus-style names):
//!
//! | metric | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `annals_commands_total` | counter | `aggregate`, `outcome` | commands by outcome: `committed`, `unchanged`, `rejected`, `conflict`, `failed` |
//! | `annals_command_retries_total` | counter | `aggregate`, `reason` | decisions taken again (`conflict`; `void`: decided on an append of the stream's earlier commands that failed), store calls retried (`unavailable`), and commands run again alone after the append they shared with others failed as a whole (`alone`) |
//! | `annals_command_batch_commands` | histogram | `aggregate` | commands appended together, in one append, on a hot stream of a repository with a cache |
//! | `annals_command_duration_seconds` | histogram | `aggregate` | from the call to the outcome, retries included |
//! | `annals_append_duration_seconds` | histogram | `aggregate` | one append to the store |
//! | `annals_events_appended_total` | counter | `aggregate` | events appended by commands |
//! | `annals_consumer_events_total` | counter | `consumer` | events a subscription handed to its consumer |
//! | `annals_consumer_lag_seconds` | gauge | `consumer` | age of the newest event of the last batch, when it was processed |
//! | `annals_consumer_waits_total` | counter | `consumer` | transient store failures a subscription waited out |
//! | `annals_parked_events_total` | counter | `consumer` | poison events parked |
//! | `annals_process_reactions_total` | counter | `process`, `outcome` | inputs a process runner handled: `reacted` (a new reaction recorded), `carried_out_again` (recorded before: a redelivery or a restart), `ignored` (the instance had completed) |
//! | `annals_relay_published_total` | counter | `stream` | (annals-nats) events a relay stored in the JetStream stream |
//! | `annals_feed_held_back_seconds` | gauge | `schema` | (annals-postgres) how long the feed's horizon has been held at one running transaction: what its subscribers wait for |
//! | `annals_group_commit_appends` | histogram | `schema` (PostgreSQL) | (annals-postgres, annals-sqlite) appends written together by one group commit (appends that queued behind one in flight) |
//! | `annals_group_commit_failures_total` | counter | `schema` (PostgreSQL) | (annals-postgres, annals-sqlite) group commits whose statement failed as a whole (a version taken by another process, a reused event id, a lost connection), so that each append ran again alone |

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Span names.
pub(crate) const COMMAND_SPAN: &str = "annals.command";
/// A process instance's reaction to one input.
pub(crate) const REACT_SPAN: &str = "annals.react";

/// Metric names.
pub(crate) const COMMANDS: &str = "annals_commands_total";
pub(crate) const COMMAND_RETRIES: &str = "annals_command_retries_total";
pub(crate) const COMMAND_DURATION: &str = "annals_command_duration_seconds";
pub(crate) const APPEND_DURATION: &str = "annals_append_duration_seconds";
pub(crate) const EVENTS_APPENDED: &str = "annals_events_appended_total";
pub(crate) const BATCH_COMMANDS: &str = "annals_command_batch_commands";
pub(crate) const CONSUMER_EVENTS: &str = "annals_consumer_events_total";
pub(crate) const CONSUMER_LAG: &str = "annals_consumer_lag_seconds";
pub(crate) const CONSUMER_WAITS: &str = "annals_consumer_waits_total";
pub(crate) const PARKED_EVENTS: &str = "annals_parked_events_total";
pub(crate) const PROCESS_REACTIONS: &str = "annals_process_reactions_total";

/// A command's outcome, as the `outcome` label and span field say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// New events were appended.
    Committed,
    /// The command decided nothing needed to change (or was executed before with its key).
    Unchanged,
    /// The aggregate refused it with its domain error.
    Rejected,
    /// It kept conflicting with other writers until its retry policy gave up.
    Conflict,
    /// The store failed, or an event did not encode or decode.
    Failed,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::Conflict => "conflict",
            Outcome::Failed => "failed",
        }
    }
}

/// Counts a finished command.
pub(crate) fn command_finished(aggregate: &'static str, outcome: Outcome, took: Duration) {
    metrics::counter!(COMMANDS, "aggregate" => aggregate, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!(COMMAND_DURATION, "aggregate" => aggregate).record(took.as_secs_f64());
}

/// Counts a retry of a command: `conflict` or `void` (decided again), `unavailable` (a
/// store call repeated) or `alone` (run again without the commands it was appended with).
pub(crate) fn command_retried(aggregate: &'static str, reason: &'static str) {
    metrics::counter!(COMMAND_RETRIES, "aggregate" => aggregate, "reason" => reason).increment(1);
}

/// Records how many commands one append of a hot stream's pipeline carried.
pub(crate) fn pipelined(aggregate: &'static str, commands: usize) {
    let commands = u32::try_from(commands).unwrap_or(u32::MAX);
    metrics::histogram!(BATCH_COMMANDS, "aggregate" => aggregate).record(f64::from(commands));
}

/// Records one append of `events` events.
pub(crate) fn appended(aggregate: &'static str, events: usize, took: Duration) {
    metrics::histogram!(APPEND_DURATION, "aggregate" => aggregate).record(took.as_secs_f64());
    metrics::counter!(EVENTS_APPENDED, "aggregate" => aggregate).increment(u64::try_from(events).unwrap_or(u64::MAX));
}

/// Records a batch a consumer processed: its size, and the age of its newest event.
pub(crate) fn batch_processed(consumer: &str, events: usize, newest: Option<DateTime<Utc>>) {
    let consumer = consumer.to_owned();
    metrics::counter!(CONSUMER_EVENTS, "consumer" => consumer.clone())
        .increment(u64::try_from(events).unwrap_or(u64::MAX));
    if let Some(newest) = newest {
        let lag = (Utc::now() - newest).to_std().unwrap_or_default();
        metrics::gauge!(CONSUMER_LAG, "consumer" => consumer).set(lag.as_secs_f64());
    }
}

/// Counts a transient failure a subscription waited out.
pub(crate) fn consumer_waited(consumer: &str) {
    metrics::counter!(CONSUMER_WAITS, "consumer" => consumer.to_owned()).increment(1);
}

/// Counts an input a process runner handled, by what became of it.
pub(crate) fn process_reaction(process: &'static str, outcome: &'static str) {
    metrics::counter!(PROCESS_REACTIONS, "process" => process, "outcome" => outcome).increment(1);
}

/// Counts a parked poison event.
pub(crate) fn parked(consumer: &str) {
    metrics::counter!(PARKED_EVENTS, "consumer" => consumer.to_owned()).increment(1);
}

/// The last segment of a type's path (`AddItem` for `shopping_cart::AddItem`), without
/// generic arguments' paths: a command's name in spans.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A `metrics` recorder for tests: what was reported, by metric name (labels dropped),
/// in order: each histogram value, each counter increment, each gauge value set.
///
/// Install it on the current thread with `metrics::set_default_local_recorder`; on a
/// single-threaded runtime (`#[tokio::test]`'s default) the store's own tasks report to it
/// too.
///
/// ```
/// let recorded = annals::telemetry::Recorded::default();
/// let _guard = metrics::set_default_local_recorder(&recorded);
/// metrics::histogram!("annals_group_commit_appends").record(3.0);
/// metrics::counter!("annals_group_commit_failures_total", "schema" => "annals").increment(1);
/// assert_eq!(recorded.of("annals_group_commit_appends"), [3.0]);
/// assert_eq!(recorded.of("annals_group_commit_failures_total"), [1.0]);
/// assert!(recorded.of("annals_commands_total").is_empty());
/// ```
#[cfg(feature = "testing")]
#[derive(Clone, Debug, Default)]
pub struct Recorded(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<f64>>>>);

#[cfg(feature = "testing")]
impl Recorded {
    /// The values reported under `name`, oldest first; empty when none was.
    pub fn of(&self, name: &str) -> Vec<f64> {
        self.values().get(name).cloned().unwrap_or_default()
    }

    fn values(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<f64>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn metric(&self, key: &metrics::Key) -> std::sync::Arc<RecordedMetric> {
        std::sync::Arc::new(RecordedMetric(key.name().to_owned(), self.clone()))
    }
}

/// One metric of a [`Recorded`].
#[cfg(feature = "testing")]
struct RecordedMetric(String, Recorded);

#[cfg(feature = "testing")]
impl RecordedMetric {
    fn push(&self, value: f64) {
        self.1.values().entry(self.0.clone()).or_default().push(value);
    }
}

#[cfg(feature = "testing")]
impl metrics::CounterFn for RecordedMetric {
    fn increment(&self, value: u64) {
        // Test counts stay far below 2^53, where f64 stops being exact.
        self.push(u32::try_from(value).map_or(f64::MAX, f64::from));
    }
    fn absolute(&self, value: u64) {
        self.increment(value);
    }
}

#[cfg(feature = "testing")]
impl metrics::GaugeFn for RecordedMetric {
    fn increment(&self, value: f64) {
        self.push(value);
    }
    fn decrement(&self, value: f64) {
        self.push(-value);
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

#[cfg(feature = "testing")]
impl metrics::HistogramFn for RecordedMetric {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

#[cfg(feature = "testing")]
impl metrics::Recorder for Recorded {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.metric(key))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.metric(key))
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.metric(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_are_the_last_path_segment() {
        struct AddItem;
        assert_eq!(short_type_name::<AddItem>(), "AddItem");
        assert_eq!(short_type_name::<Vec<String>>(), "Vec");
        assert_eq!(short_type_name::<u32>(), "u32");
    }
}
