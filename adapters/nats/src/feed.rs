//! [`JetStreamFeed`]: a relay's JetStream stream, read in another service as an annals
//! [`EventFeed`], so that the projections, handlers and process managers of that service
//! consume another service's events with the code that consumes local ones.

use std::collections::VecDeque;
use std::sync::Arc;

use annals::store::{Checkpoint, EventFeed, FeedBatch, FeedEvent, Filter, StoreError};
use annals::Envelope;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::headers;
use crate::subject::{token, Partitions};

/// How long JetStream waits for an acknowledgement before it would redeliver: long, since
/// the feed acknowledges only when the next read starts (redeliveries are skipped anyway).
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How long the server may take to answer a fetch with what it has.
const FETCH_EXPIRES: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a fetch may take before the feed gives up on it and opens the consumer again.
const FETCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long fetches may come back empty before the feed asks whether it is stuck.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The events of JetStream stream `stream` (written by a [`Relay`](crate::Relay) with
/// subject prefix `prefix`), as an [`EventFeed`] whose checkpoints are stream sequences.
///
/// **Exactly once in the read model.** A feed checkpoint here is a JetStream *stream
/// sequence* (`0:{sequence}`). Fed to [`ExactlyOnce`](annals::subscription::ExactlyOnce)
/// over the consuming service's own store, it is stored in the transaction that writes the
/// read model, so the read model and the sequence it reflects commit together; a message
/// at or below it is never applied again, whatever JetStream redelivers.
///
/// **The consumer follows the checkpoint, not the other way round.** The feed reads
/// through a durable pull consumer (explicit acknowledgement of everything up to a
/// sequence, `AckPolicy::All`), named after the annals consumer, so `nats consumer info`
/// shows what is pending. It acknowledges a sequence once a read starts after it (the
/// consumer has processed it); acknowledgements only keep JetStream's view tidy. Whenever
/// the read asks for something else than what the durable consumer would deliver next (a
/// restart whose read model is older than the consumer's acknowledgements, e.g. restored
/// from a backup, or a batch retried after a failed commit), the durable consumer is
/// created again at the sequence after the checkpoint: nothing is skipped, nothing applied
/// twice.
///
/// **Poison messages** are events like any other: a body that is not an annals envelope
/// is handed out as a damaged event (its sequence, subject and headers say which), and a
/// consumer stops at it or parks it as its [`PoisonPolicy`](annals::subscription::PoisonPolicy)
/// says, in its own store. Nothing is redelivered forever.
///
/// **Partitions.** With [`Relay::partitions`](crate::Relay::partitions) the subject
/// carries a partition token; [`JetStreamFeed::partition`] binds a feed to one, so N
/// instances of a service (each with its own consumer name and checkpoint per partition)
/// share the load while every stream stays in one partition, in order.
///
/// ```no_run
/// use annals::prelude::*;
/// use annals::subscription::{ExactlyOnce, Subscription};
/// # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// # #[event(name = "cart.checked_out")]
/// # pub struct CheckedOut;
/// # #[derive(Projection, Default)]
/// # #[projection(name = "checkouts", events(CheckedOut))]
/// # struct Checkouts;
/// # impl On<CheckedOut> for Checkouts {
/// #     async fn on(&mut self, _: CheckedOut, _: &Envelope, _: &mut ()) -> Result<(), annals::BoxError> { Ok(()) }
/// # }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
/// // The shop's events, read in another service whose own store keeps the checkpoint:
/// let shop = annals_nats::JetStreamFeed::new(nats, "SHOP", "shop", "fulfillment-checkouts").category("cart");
/// let own_store = annals_memory::MemoryStore::new();
/// Subscription::new(shop, ExactlyOnce::new(own_store, Checkouts)).run().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamFeed {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
    durable: String,
    category: Option<String>,
    partition: Option<(u32, Partitions)>,
    reader: Arc<Mutex<Reader>>,
}

impl std::fmt::Debug for JetStreamFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamFeed")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("subject", &self.filter_subject())
            .finish()
    }
}

/// What the feed has fetched and not yet seen processed.
#[derive(Default)]
struct Reader {
    /// The durable consumer, once created for the current position.
    consumer: Option<PullConsumer>,
    /// Messages fetched after `served_after`, in sequence order.
    buffer: VecDeque<(u64, jetstream::Message)>,
    /// Every message at or below it was dropped from the buffer: a read from before it
    /// needs the consumer created again.
    served_after: u64,
    /// The highest sequence fetched.
    fetched_up_to: u64,
    /// Since when fetches have come back empty, when they have.
    empty_since: Option<std::time::Instant>,
}

impl JetStreamFeed {
    /// The events a relay with subject prefix `prefix` wrote to JetStream stream `stream`,
    /// read through the durable consumer `durable` (use the annals consumer's name: one
    /// durable consumer per checkpoint).
    pub fn new(
        client: async_nats::Client,
        stream: impl Into<String>,
        prefix: impl Into<String>,
        durable: impl Into<String>,
    ) -> Self {
        JetStreamFeed {
            jetstream: jetstream::new(client.clone()),
            client,
            stream: stream.into(),
            prefix: prefix.into(),
            durable: durable.into(),
            category: None,
            partition: None,
            reader: Arc::new(Mutex::new(Reader::default())),
        }
    }

    /// Only events of streams of `category` (`cart` for `cart-42`), filtered by the server.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only partition `partition` of a relay that writes `partitions` partitions
    /// ([`Relay::partitions`](crate::Relay::partitions)), filtered by the server.
    pub fn partition(mut self, partition: u32, partitions: Partitions) -> Self {
        self.partition = Some((partition, partitions));
        self
    }

    /// The subject filter of the durable consumer.
    pub fn filter_subject(&self) -> String {
        let mut subject = self.prefix.clone();
        if let Some((partition, _)) = self.partition {
            subject.push_str(&format!(".{partition}"));
        }
        match &self.category {
            Some(category) => subject.push_str(&format!(".{}.>", token(category))),
            None => subject.push_str(".>"),
        }
        subject
    }

    /// Creates the durable consumer again, delivering from the sequence after `after`
    /// (or keeps it, when it would deliver exactly that next).
    async fn consumer_after(&self, after: u64) -> Result<PullConsumer, StoreError> {
        let stream =
            self.jetstream.get_stream(&self.stream).await.map_err(|e| self.unavailable("finding the stream", e))?;
        let subject = self.filter_subject();
        if let Ok(info) = stream.consumer_info(&self.durable).await {
            let settled = info.delivered.stream_sequence == after && info.ack_floor.stream_sequence == after;
            if settled && info.config.filter_subject == subject {
                return stream
                    .get_consumer(&self.durable)
                    .await
                    .map_err(|e| self.unavailable("opening the consumer", e));
            }
            stream.delete_consumer(&self.durable).await.map_err(|e| self.unavailable("replacing the consumer", e))?;
        }
        let start = after.checked_add(1).ok_or_else(|| self.invalid(after))?;
        let config = pull::Config {
            durable_name: Some(self.durable.clone()),
            deliver_policy: if after == 0 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence { start_sequence: start }
            },
            ack_policy: AckPolicy::All,
            ack_wait: ACK_WAIT,
            filter_subject: subject,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        stream.create_consumer(config).await.map_err(|e| self.unavailable("creating the consumer", e))
    }

    /// After fetches have come back empty for [`STUCK_AFTER`], asks the server whether the
    /// consumer has messages pending; if it has, the consumer is opened again at the
    /// checkpoint on the next read. (Seen on a 2.9 cluster after its leader's node was
    /// killed: the consumer's new leader answered every fetch with nothing, with
    /// thousands of messages pending, until it was opened again.)
    async fn check_stuck(&self, reader: &mut Reader) {
        let since = *reader.empty_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < STUCK_AFTER {
            return;
        }
        reader.empty_since = None;
        let pending = match reader.consumer.as_mut() {
            Some(consumer) => consumer.info().await.map(|info| info.num_pending).unwrap_or(0),
            None => 0,
        };
        if pending > 0 {
            tracing::warn!(
                stream = %self.stream,
                consumer = %self.durable,
                pending,
                "the JetStream consumer delivers nothing although messages are pending; opening it again"
            );
            reader.consumer = None;
            reader.buffer.clear();
        }
    }

    /// Fetches up to `wanted` messages after those fetched before into the buffer;
    /// returns how many the server sent.
    async fn fetch(&self, reader: &mut Reader, wanted: usize) -> Result<usize, StoreError> {
        let consumer = reader.consumer.as_ref().ok_or_else(|| self.invalid(reader.fetched_up_to))?;
        let mut batch = consumer
            .fetch()
            .max_messages(wanted)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
            .map_err(|e| self.unavailable("fetching from the consumer", e))?;
        let mut got = 0;
        // A pull request whose answer never comes (the consumer's leader was on a node
        // that stopped) must not hold the feed: the fetch gets a deadline of its own.
        let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
        loop {
            let next = match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(next) => next,
                Err(_) if got > 0 => break,
                Err(_) => return Err(self.unavailable("fetching (no answer in time) from the consumer", "timed out")),
            };
            let Some(message) = next else { break };
            let message = message.map_err(|e| self.unavailable("fetching from the consumer", e))?;
            got += 1;
            let sequence =
                message.info().map_err(|e| self.unavailable("reading a message's sequence from", e))?.stream_sequence;
            // A redelivery of something fetched before: the buffer has it, or it is processed.
            if sequence > reader.fetched_up_to {
                reader.fetched_up_to = sequence;
                reader.buffer.push_back((sequence, message));
            }
        }
        Ok(got)
    }

    fn unavailable(&self, what: &str, error: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            operation: format!("{what} `{}` of JetStream stream `{}`", self.durable, self.stream),
            source: error.to_string().into(),
        }
    }

    fn invalid(&self, sequence: u64) -> StoreError {
        StoreError::Backend {
            operation: format!("reading JetStream stream `{}`", self.stream),
            source: format!("no sequence follows {sequence}").into(),
        }
    }
}

impl EventFeed for JetStreamFeed {
    async fn read_feed(&self, after: Checkpoint, filter: &Filter, limit: usize) -> Result<FeedBatch, StoreError> {
        let after = sequence_of(after, &self.stream)?;
        let mut reader = self.reader.lock().await;
        let reader = &mut *reader;
        if reader.consumer.is_none() || after < reader.served_after || after > reader.fetched_up_to {
            // Not where the consumer stands: start it again right after the checkpoint.
            reader.consumer = None;
            reader.buffer.clear();
            reader.consumer = Some(self.consumer_after(after).await?);
            reader.served_after = after;
            reader.fetched_up_to = after;
        }
        // Everything at or below `after` is processed: acknowledge the last of it.
        let mut processed = None;
        while reader.buffer.front().is_some_and(|(sequence, _)| *sequence <= after) {
            processed = reader.buffer.pop_front();
        }
        reader.served_after = reader.served_after.max(after);
        if let Some((_, message)) = processed {
            // Only JetStream's bookkeeping: the checkpoint is what counts.
            if let Err(e) = message.ack_with(AckKind::Ack).await {
                tracing::debug!(stream = %self.stream, consumer = %self.durable, error = %e, "acknowledging failed");
            }
        }
        let limit = limit.max(1);
        let mut fetched_full = false;
        if reader.buffer.len() < limit {
            let wanted = limit - reader.buffer.len();
            match self.fetch(reader, wanted).await {
                Ok(0) => self.check_stuck(reader).await,
                Ok(got) => {
                    reader.empty_since = None;
                    fetched_full = got >= wanted;
                }
                Err(error) => {
                    // A lost connection, a consumer whose leader moved (a cluster node
                    // stopped): open the consumer again at the checkpoint on the next read.
                    reader.consumer = None;
                    return Err(error);
                }
            }
        }
        let mut events = Vec::new();
        let mut next = after;
        for (sequence, message) in reader.buffer.iter().take(limit) {
            next = *sequence;
            let event = decode(*sequence, message);
            if event.damage.is_some() || filter.matches(&event.envelope.stream_id, &event.envelope.event_type) {
                events.push(event);
            }
        }
        let more = fetched_full || reader.buffer.len() > limit;
        Ok(FeedBatch { events, next: Checkpoint::from_parts(0, next), more })
    }

    async fn wakeups(&self) -> Result<BoxStream<'static, ()>, StoreError> {
        // Every message the relay publishes on these subjects reaches core NATS
        // subscribers too: a wake-up.
        let subscriber = self
            .client
            .subscribe(self.filter_subject())
            .await
            .map_err(|e| self.unavailable("subscribing for wake-ups of", e))?;
        Ok(subscriber.map(|_| ()).boxed())
    }

    async fn checkpoint_of(&self, event: &Envelope) -> Result<Checkpoint, StoreError> {
        Err(StoreError::Backend {
            operation: format!("finding event {} in JetStream stream `{}`", event.event_id, self.stream),
            source: "a JetStream feed cannot look an event up by id (NATS 2.9); wait for the consumer's checkpoint \
                     to pass the sequence the relay published it at instead"
                .into(),
        })
    }
}

/// The stream sequence a feed checkpoint of a JetStream feed names.
fn sequence_of(checkpoint: Checkpoint, stream: &str) -> Result<u64, StoreError> {
    match checkpoint.parts() {
        (0, sequence) => Ok(sequence),
        (major, minor) => Err(StoreError::Backend {
            operation: format!("reading JetStream stream `{stream}`"),
            source: format!(
                "checkpoint {major}:{minor} is not a sequence of this stream (those are 0:N): it belongs to another \
                 feed; give this consumer a name of its own, or reset its checkpoint"
            )
            .into(),
        }),
    }
}

/// The event a message carries, or a damaged event naming the message when its body is
/// not an annals envelope.
fn decode(sequence: u64, message: &jetstream::Message) -> FeedEvent {
    let checkpoint = Checkpoint::from_parts(0, sequence);
    match serde_json::from_slice::<Envelope>(&message.payload) {
        Ok(envelope) => FeedEvent::new(checkpoint, envelope),
        Err(error) => {
            let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            let envelope = Envelope {
                event_id: header(headers::MSG_ID).and_then(|id| id.parse().ok()).unwrap_or_default(),
                stream_id: format!("(message {sequence} on `{}`)", message.subject),
                stream_version: header(headers::STREAM_VERSION).and_then(|v| v.parse().ok()).unwrap_or(0),
                global_position: header(headers::POSITION).and_then(|v| v.parse().ok()).unwrap_or(0),
                recorded_at: chrono::DateTime::UNIX_EPOCH,
                event_type: header(headers::EVENT_TYPE).unwrap_or_default(),
                event_version: 0,
                payload: annals::Payload::default(),
                metadata: annals::Metadata::default(),
            };
            FeedEvent::damaged(
                checkpoint,
                envelope,
                format!("JetStream message {sequence} is not an annals envelope: {error}"),
            )
        }
    }
}
