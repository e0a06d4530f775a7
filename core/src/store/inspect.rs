//! [`Inspect`]: what an operator asks a store (the `annals` CLI, an admin page): which
//! streams exist, and where each consumer stands.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::store::{Checkpoint, StoreError};

/// A stream as [`Inspect::streams`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream, e.g. `cart-42`.
    pub stream_id: String,
    /// Its version: the number of its events.
    pub version: u64,
    /// When its newest event was recorded.
    pub last_recorded_at: DateTime<Utc>,
}

/// A consumer as [`Inspect::consumers`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// The consumer's name (its checkpoint's key).
    pub name: String,
    /// Where it stands: it has processed every event up to here.
    pub checkpoint: Checkpoint,
    /// When it last moved, where the store records it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Who processes it now, where the store can tell (on PostgreSQL: the session holding
    /// its runner's lock, `pid N (application)`); `None` when nobody does or the store
    /// cannot tell.
    pub held_by: Option<String>,
    /// How many events the feed holds after its checkpoint, of every type (a consumer
    /// that handles only some types skips the others quickly): its lag in events. A
    /// blue/green live pointer (`{name}@live`) is listed too; its count means nothing.
    pub behind: u64,
}

/// Listings for operators. Not on any hot path: a listing may scan.
pub trait Inspect: Clone + Send + Sync + 'static {
    /// The streams, by id, up to `limit`; with `category`, only `{category}-...` streams.
    fn streams(
        &self,
        category: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StreamInfo>, StoreError>> + Send;

    /// Every consumer with a checkpoint in the store, by name.
    fn consumers(&self) -> impl Future<Output = Result<Vec<ConsumerInfo>, StoreError>> + Send;

    /// Every event whose metadata carries `correlation_id`, across all streams, in global
    /// order: everything one request or business transaction caused.
    fn correlated(&self, correlation_id: uuid::Uuid) -> impl Future<Output = Result<Vec<Envelope>, StoreError>> + Send;
}
