//! Consumers: catch up from a checkpoint in batches, then follow new events live,
//! feeding a [`Sink`] (a consumer with its checkpoint) without ever skipping or
//! repeating an event.
//!
//! # The ordering guarantee
//! A store's [`EventFeed`] hands out events in *commit order*: an event is handed out
//! only once every event that could precede it is committed (or rolled back), so a
//! subscriber never skips an event that commits late. The [`Checkpoint`] names a place in
//! that order; it is opaque, and each store defines it (see the adapters' docs for how
//! each one keeps the order).
//!
//! # Where the checkpoint lives decides the guarantee
//! One rule applies to every sink: an event at or before the sink's checkpoint is already
//! applied and is skipped. The sinks differ only in where they keep the checkpoint:
//!
//! | sink | checkpoint kept | guarantee |
//! | --- | --- | --- |
//! | [`InMemoryProjection`] | beside the read model in memory, under one lock | exactly once per process |
//! | [`ExactlyOnce`] | in the store's [`CheckpointStore`], in the transaction that runs the handlers | exactly once for writes through the transaction |
//! | [`AtLeastOnce`] | in the store's [`CheckpointStore`], after each handled event | at least once: handlers with outside effects use [`Envelope::event_id`](crate::Envelope) as idempotency key |
//!
//! # Read-your-writes
//! [`EventFeed::checkpoint_of`] gives a stored event's place in the feed; a consumer at or
//! past it has applied it: [`InMemoryProjection::wait_for`] and [`wait_for_checkpoint`]
//! wait for that.
//!
//! # Rebuilding without downtime
//! [`BlueGreen`] builds a new generation of a read model next to the live one and
//! switches readers to it in one transaction once it has caught up (see its docs).
//!
//! A [`Subscription`] feeds one sink: `Subscription::new(feed, sink)`, tuned with
//! [`filter`](Subscription::filter) (the one place to narrow what a consumer reads; by
//! default what the sink handles) and [`options`](Subscription::options).

mod blue_green;
mod checkpointed;
mod in_memory;
mod poison;
mod sink;
#[allow(clippy::module_inception, reason = "the module holds the `Subscription` type and its errors")]
mod subscription;
mod wait;

pub use blue_green::{BlueGreen, Prepared, RebuildError, Rebuildable, Rebuilt};
pub use checkpointed::{AtLeastOnce, CheckpointMoved, ExactlyOnce, Reset};
pub use in_memory::InMemoryProjection;
pub use poison::{Parked, PoisonPolicy, RetryReport};
pub use sink::{Sink, SinkError};
pub use subscription::{Subscription, SubscriptionError, SubscriptionOptions, SubscriptionState, SubscriptionStatus};
pub use wait::{wait_for_checkpoint, WaitError};

pub use crate::store::{Checkpoint, CheckpointStore, EventFeed, FeedBatch, FeedEvent, Filter, Partition, StreamFilter};
