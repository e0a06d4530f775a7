//! [`Relay`]: every event of a store's feed, into a JetStream stream, exactly once and in
//! commit order, across crashes, restarts and concurrent relays.
//!
//! **Exactly once without a checkpoint table.** The JetStream stream itself says where
//! the relay stands: its last message carries the source checkpoint of the last event
//! published ([`CHECKPOINT`](crate::headers::CHECKPOINT)). On start (and after any
//! failure) the relay reads the stream's last sequence and that header, and reads the feed
//! after that checkpoint.
//!
//! **Fenced publishes.** Every publish carries `Nats-Expected-Last-Sequence`: the sequence
//! the stream must be at for the message to be stored. A relay publishes a feed batch in a
//! pipeline, message `i` expecting `last + i`, then awaits the acknowledgements in order.
//! If anything else wrote to the stream meanwhile (a second relay, a restarted one, a
//! publish that did get stored although its reply was lost), the fence refuses the rest
//! of the batch, and the relay resumes from what the stream holds: no event is stored twice
//! or skipped, whatever the dedup window (`Nats-Msg-Id`, the event id, is a second guard).
//!
//! **Never exits on a transient failure.** A lost NATS connection, a server restart or an
//! unreachable database is waited out with capped back-off, logged, and shown in
//! [`RelayStatus`].

use std::time::Duration;

use annals::store::{Checkpoint, EventFeed, FeedEvent, Filter};
use annals::RetryPolicy;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::headers;
use crate::lease::{Lease, Taken};
use crate::subject::{partitioned_subject, subject, Partitions};

/// The counter of events stored in the JetStream stream, by stream.
const RELAYED: &str = "annals_relay_published_total";

/// Events read from the feed per batch (and published per pipeline).
const BATCH: usize = 256;

/// How long a following relay waits for a wake-up before reading the feed anyway.
const POLL: Duration = Duration::from_millis(500);

/// What a relay is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayStatus {
    /// Starting: reading where the JetStream stream stands.
    Starting,
    /// Publishing, or waiting for new events; `published` is the stream's last sequence.
    Following {
        /// The source checkpoint of the last event in the JetStream stream.
        checkpoint: Checkpoint,
        /// The JetStream stream's last sequence.
        sequence: u64,
    },
    /// Standing by: another relay of the same stream holds the lease
    /// ([`Relay::standby`]); this one takes over if that one stops renewing it.
    Standby {
        /// The id of the relay that holds it.
        holder: String,
    },
    /// Waiting out a failure before resuming.
    Retrying {
        /// What failed.
        reason: String,
        /// Failures in a row.
        attempts: u32,
    },
}

/// Why a relay stopped: only for what waiting cannot fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The JetStream stream holds a last message without a readable
    /// [`CHECKPOINT`](crate::headers::CHECKPOINT) header: something other than an annals
    /// relay writes to it.
    #[error(
        "JetStream stream `{stream}`: message {sequence} has no readable `{header}` header; \
         only an annals relay may publish to a relay's stream: give this relay a stream of its own",
        header = headers::CHECKPOINT
    )]
    ForeignMessage {
        /// The JetStream stream.
        stream: String,
        /// The message's sequence.
        sequence: u64,
    },
    /// The event's envelope does not encode as JSON (it cannot happen for envelopes a
    /// store returns).
    #[error("event {event_id} does not encode: {source}")]
    Encode {
        /// The event.
        event_id: uuid::Uuid,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A failure that ends one attempt: waited out, or the relay stops.
enum Failure {
    Transient(String),
    Fatal(RelayError),
}

/// Relays the feed of a store to a JetStream stream, exactly once and in commit order: each
/// publish is fenced with `Nats-Expected-Last-Sequence`, and the relay resumes from the
/// checkpoint in the stream's last message (see the [crate docs](crate)).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = annals_memory::MemoryStore::new();
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let relay = annals_nats::Relay::new(store, nats, "SHOP", "shop");
/// tokio::spawn(relay.run());
/// # Ok(()) }
/// ```
pub struct Relay<F> {
    feed: F,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
    partitions: Option<Partitions>,
    replicas: usize,
    /// With a lease: how long, and this relay's id.
    lease: Option<(Duration, String)>,
    status: watch::Sender<RelayStatus>,
}

impl<F: EventFeed> Relay<F> {
    /// A relay of `feed` into JetStream stream `stream` (created if missing, with subjects
    /// `{prefix}.>`), publishing each event to `{prefix}.{category}.{stream id}`
    /// ([`subject`](crate::subject::subject)).
    pub fn new(feed: F, client: async_nats::Client, stream: impl Into<String>, prefix: impl Into<String>) -> Self {
        Relay {
            feed,
            jetstream: jetstream::new(client),
            stream: stream.into(),
            prefix: prefix.into(),
            partitions: None,
            replicas: 1,
            lease: None,
            status: watch::channel(RelayStatus::Starting).0,
        }
    }

    /// One active relay among several: the relay publishes only while it holds the
    /// stream's lease (a key in JetStream bucket `ANNALS_RELAY_LEASES` that lives `lease`
    /// unless renewed, renewed every third of it); the others show
    /// [`RelayStatus::Standby`] and read nothing, and one of them takes over within
    /// `lease` of the holder's end. Safety does not depend on it: every publish is fenced
    /// anyway. `id` names this relay in the others' status (a host name, a pod name).
    pub fn standby(mut self, lease: Duration, id: impl Into<String>) -> Self {
        self.lease = Some((lease.max(Duration::from_millis(300)), id.into()));
        self
    }

    /// Creates the JetStream stream (when it does not exist yet) with `replicas` copies on
    /// a cluster (3: one node can fail without losing a message or stopping the relay).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Spreads streams over `partitions`: subjects become
    /// `{prefix}.{partition}.{category}.{stream id}`
    /// ([`partitioned_subject`](crate::subject::partitioned_subject)), so N consumers, each
    /// bound to one partition, share the load while every stream stays in order in one.
    /// Decide before the first event is relayed: a stream's partition is part of its
    /// subjects.
    pub fn partitions(mut self, partitions: Partitions) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// What the relay is doing now, updated as it goes.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    /// Relays until an error waiting cannot fix ([`RelayError`]); transient failures are
    /// waited out with capped back-off, however long they last.
    pub async fn run(self) -> Result<(), RelayError> {
        let mut tries = RetryPolicy::forever().start();
        let mut failures = 0u32;
        loop {
            let attempt = match &self.lease {
                None => self.follow(&mut failures).await,
                Some((duration, id)) => self.follow_holding(*duration, id, &mut failures).await,
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Transient(reason)) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(stream = %self.stream, failures, %reason, "the relay failed; retrying");
                    }
                    self.status.send_replace(RelayStatus::Retrying { reason, attempts: failures });
                    let wait = tries.failed().unwrap_or(RetryPolicy::forever().max_backoff);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// With a lease: stands by until this relay holds it, then follows while it keeps it.
    async fn follow_holding(&self, duration: Duration, id: &str, failures: &mut u32) -> Result<(), Failure> {
        let lease = loop {
            match Lease::take(&self.jetstream, &self.stream, id, duration, self.replicas).await {
                Ok(Taken::Held(lease)) => break lease,
                Ok(Taken::ByOther(holder)) => {
                    if !matches!(&*self.status.borrow(), RelayStatus::Standby { holder: h } if *h == holder) {
                        tracing::info!(stream = %self.stream, %holder, "another relay holds the lease; standing by");
                    }
                    self.status.send_replace(RelayStatus::Standby { holder });
                    tokio::time::sleep(duration / 3).await;
                }
                Err(reason) => return Err(Failure::Transient(reason)),
            }
        };
        tracing::info!(stream = %self.stream, relay = %id, "holding the relay lease; publishing");
        tokio::select! {
            lost = lease.keep() => Err(Failure::Transient(lost)),
            followed = self.follow(failures) => followed,
        }
    }

    /// One attempt: find where the JetStream stream stands, then publish the feed after it
    /// until something fails.
    async fn follow(&self, failures: &mut u32) -> Result<(), Failure> {
        let (mut sequence, mut after) = self.resume().await?;
        let mut wakeups = self.feed.wakeups().await.map_err(|e| Failure::Transient(e.to_string()))?;
        self.status.send_replace(RelayStatus::Following { checkpoint: after, sequence });
        loop {
            let batch = self.feed.read_feed(after, &Filter::all(), BATCH).await.map_err(transient)?;
            let (count, ends) = whole_transactions(&batch.events, batch.more);
            let events = batch.events.get(..count).unwrap_or(&batch.events);
            if !events.is_empty() {
                let span = tracing::debug_span!(
                    "annals.relay",
                    messaging.system = "nats",
                    messaging.operation.type = "send",
                    messaging.destination.name = %self.stream,
                    messaging.batch.message_count = events.len(),
                    after_sequence = sequence,
                    last_sequence = tracing::field::Empty,
                );
                sequence = self.publish(events, &ends, sequence).instrument(span.clone()).await?;
                span.record("last_sequence", sequence);
                metrics::counter!(RELAYED, "stream" => self.stream.clone())
                    .increment(u64::try_from(events.len()).unwrap_or(u64::MAX));
                after = events.last().map_or(after, |event| event.checkpoint);
                self.status.send_replace(RelayStatus::Following { checkpoint: after, sequence });
            }
            if *failures > 0 {
                tracing::info!(stream = %self.stream, failures = *failures, "the relay works again");
                *failures = 0;
            }
            if !batch.more {
                let _ = tokio::time::timeout(POLL, wakeups.next()).await;
            }
        }
    }

    /// The JetStream stream's last sequence and the source checkpoint of its last message
    /// (the start of the feed for an empty stream).
    async fn resume(&self) -> Result<(u64, Checkpoint), Failure> {
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            num_replicas: self.replicas,
            ..Default::default()
        };
        let stream = self.jetstream.get_or_create_stream(config).await.map_err(transient)?;
        let info = stream.get_info().await.map_err(transient)?;
        let last = info.state.last_sequence;
        if info.state.messages == 0 {
            return Ok((last, Checkpoint::START));
        }
        let message = stream.get_raw_message(last).await.map_err(transient)?;
        let checkpoint = message
            .headers
            .get(headers::CHECKPOINT)
            .and_then(|value| value.as_str().parse::<Checkpoint>().ok())
            .ok_or(Failure::Fatal(RelayError::ForeignMessage { stream: self.stream.clone(), sequence: last }))?;
        Ok((last, checkpoint))
    }

    /// Publishes `events` after stream sequence `last`, pipelined, each fenced on the
    /// sequence before it; returns the new last sequence.
    async fn publish(&self, events: &[FeedEvent], ends: &[bool], mut last: u64) -> Result<u64, Failure> {
        let mut acks = Vec::with_capacity(events.len());
        for (offset, event) in (0u64..).zip(events) {
            let body = crate::wire::encode(&event.envelope)
                .map_err(|source| Failure::Fatal(RelayError::Encode { event_id: event.envelope.event_id, source }))?;
            let end = usize::try_from(offset).ok().and_then(|i| ends.get(i)).copied().unwrap_or(false);
            let headers = headers::of(event, last.saturating_add(offset), end);
            let subject = match self.partitions {
                Some(partitions) => partitioned_subject(&self.prefix, partitions, &event.envelope.stream_id),
                None => subject(&self.prefix, &event.envelope.stream_id),
            };
            let ack =
                self.jetstream.publish_with_headers(subject, headers, Bytes::from(body)).await.map_err(transient)?;
            acks.push(ack);
        }
        for ack in acks {
            // A refused fence (another writer) or a lost connection: resume from what the
            // stream holds.
            let ack = ack.await.map_err(transient)?;
            if ack.duplicate {
                return Err(Failure::Transient(format!(
                    "JetStream reported message {} as a duplicate: resuming from what the stream holds",
                    ack.sequence
                )));
            }
            last = ack.sequence;
        }
        Ok(last)
    }
}

/// How many of a feed batch's `events` to publish now, and which of them end their
/// transaction. Only checkpoints with a transaction part (not 0) tell transactions apart:
/// an event ends its transaction when the next one belongs to another, or when it is the
/// last readable one (`!more`: a transaction's events become readable together). When
/// more may follow, the batch's trailing transaction is held back for the next read, so
/// its end is known then; a transaction that fills the whole batch is published
/// unmarked up to there (its end is marked in a later batch, unless it ends exactly at the
/// batch's end).
fn whole_transactions(events: &[FeedEvent], more: bool) -> (usize, Vec<bool>) {
    let major = |i: usize| events.get(i).map(|e| e.checkpoint.parts().0);
    let count = match (more, events.last()) {
        (true, Some(last)) if last.checkpoint.parts().0 != 0 => {
            let open = last.checkpoint.parts().0;
            let trailing = events.iter().rev().take_while(|e| e.checkpoint.parts().0 == open).count();
            if trailing < events.len() {
                events.len() - trailing
            } else {
                events.len()
            }
        }
        _ => events.len(),
    };
    let ends = (0..count)
        .map(|i| {
            let this = major(i).unwrap_or(0);
            this != 0
                && match major(i + 1) {
                    Some(next) => next != this,
                    None => !more,
                }
        })
        .collect();
    (count, ends)
}

fn transient(error: impl std::fmt::Display) -> Failure {
    Failure::Transient(error.to_string())
}
