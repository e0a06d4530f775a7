//! Read-your-writes: waiting until a consumer has applied a given event.
//!
//! A command's stored events ([`Committed::events`](crate::Committed)) name their place in
//! the feed through [`EventFeed::checkpoint_of`](crate::store::EventFeed::checkpoint_of);
//! a consumer whose checkpoint is at or past it has applied that event and every event
//! committed before it, on every store (on PostgreSQL too, where positions alone do not
//! tell commit order). So a client that has just written can be answered from a read
//! model only once it reflects the write.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Checkpoint, CheckpointStore, StoreError};

/// How often a wait looks at the consumer's checkpoint.
const STEP: Duration = Duration::from_millis(5);

/// A wait for a consumer's checkpoint that did not end in time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The consumer did not reach the checkpoint in time.
    #[error(
        "consumer `{consumer}` is at {reached:?}, not yet at {target} after {waited:?}; it may be behind or stopped: \
         check its subscription's status, then retry"
    )]
    TimedOut {
        /// The consumer.
        consumer: String,
        /// Where it was when the wait gave up (`None`: it has no checkpoint).
        reached: Option<Checkpoint>,
        /// Where it had to be.
        target: Checkpoint,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The store failed while the wait read the checkpoint.
    #[error("consumer `{consumer}`: reading its checkpoint failed: {source}")]
    Store {
        /// The consumer.
        consumer: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// Waits at most `timeout` until the checkpoint consumer `name` keeps in `store` is at or
/// past `target`; returns it.
///
/// ```
/// # use annals::prelude::*;
/// # use annals::store::{Checkpoint, CheckpointStore, EventFeed};
/// # use std::time::Duration;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = annals_memory::MemoryStore::new();
/// let written = store.append("bell-1", ExpectedVersion::Any, vec![annals::NewEvent::new("bell.rang", 1, serde_json::json!({}))]).await?;
/// let target = store.checkpoint_of(&written[0]).await?;
/// // ... a consumer named `bells` moves its checkpoint as it applies events:
/// let mut transaction = store.begin().await?;
/// store.move_checkpoint(&mut transaction, "bells", None, target).await?;
/// store.commit(transaction).await?;
/// let reached = annals::subscription::wait_for_checkpoint(&store, "bells", target, Duration::from_secs(5)).await?;
/// assert!(reached >= target);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn wait_for_checkpoint<K: CheckpointStore>(
    store: &K,
    name: &str,
    target: Checkpoint,
    timeout: Duration,
) -> Result<Checkpoint, WaitError> {
    let started = Instant::now();
    loop {
        let reached = store
            .load_checkpoint(name)
            .await
            .map_err(|source| WaitError::Store { consumer: name.to_owned(), source })?;
        match reached {
            Some(reached) if reached >= target => return Ok(reached),
            _ if started.elapsed() >= timeout => {
                return Err(WaitError::TimedOut {
                    consumer: name.to_owned(),
                    reached,
                    target,
                    waited: started.elapsed(),
                })
            }
            _ => tokio::time::sleep(STEP).await,
        }
    }
}

/// [`wait_for_checkpoint`] for a checkpoint read by `current`.
pub(crate) async fn wait_until<F, Fut>(
    name: &str,
    target: Checkpoint,
    timeout: Duration,
    mut current: F,
) -> Result<Checkpoint, WaitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Checkpoint>,
{
    let started = Instant::now();
    loop {
        let reached = current().await;
        if reached >= target {
            return Ok(reached);
        }
        if started.elapsed() >= timeout {
            return Err(WaitError::TimedOut {
                consumer: name.to_owned(),
                reached: Some(reached),
                target,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(STEP).await;
    }
}
