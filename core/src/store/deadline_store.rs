//! [`DeadlineStore`]: the durable timers of process managers, indexed by due time.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::StoreError;

/// A durable timer of a process manager instance: when it is due, the process reacts to
/// `payload` (a value of the deadline type named `deadline_type`). A
/// [`ProcessRunner`](crate::process::ProcessRunner) schedules it after recording the
/// reaction that set it, fires it once due, and deletes it after recording the reaction
/// to it, so a timer survives restarts and fires in effect once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deadline {
    /// Derived from the reaction that set it: scheduling it again is a no-op.
    pub id: Uuid,
    /// The process manager's name ([`Process::NAME`](crate::process::Process::NAME)).
    pub process: String,
    /// The instance it belongs to (its correlation id).
    pub instance: String,
    /// When it fires.
    pub due_at: DateTime<Utc>,
    /// The deadline type's name, as listed in `#[process(deadlines(...))]`.
    pub deadline_type: String,
    /// The deadline value, as JSON.
    pub payload: serde_json::Value,
}

/// Where a store keeps process managers' deadlines: a table with a due-time index on
/// PostgreSQL and SQLite, a sorted map in memory.
///
/// Every operation is idempotent, because a runner that crashed repeats what it did not
/// finish: scheduling a deadline whose id is stored changes nothing, cancelling one that
/// is gone changes nothing.
pub trait DeadlineStore: Clone + Send + Sync + 'static {
    /// Stores `deadlines`, keeping any whose id is already stored as it is.
    fn schedule(&self, deadlines: &[Deadline]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the deadlines with these ids (fired or cancelled).
    fn remove(&self, ids: &[Uuid]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` deadlines of `process` due at or before `now`, earliest first.
    fn due(
        &self,
        process: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Deadline>, StoreError>> + Send;

    /// When the earliest deadline of `process` is due, if it has any.
    fn next_due(&self, process: &str) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
}
