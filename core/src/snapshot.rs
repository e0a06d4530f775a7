//! Snapshots: an aggregate's serialized state at a stream version, so loading a long
//! stream reads only the events after it.
//!
//! Opt in per aggregate: implement [`Snapshot`] (the state must be serde-serializable)
//! and configure the [`Repository`](crate::Repository) with a [`SnapshotPolicy`]; the
//! store must keep snapshots ([`SnapshotStore`](crate::store::SnapshotStore)):
//!
//! ```
//! # use annals::prelude::*;
//! # use annals::snapshot::{Snapshot, SnapshotPolicy};
//! # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! # pub struct Ticked;
//! #[derive(Aggregate, Default, serde::Serialize, serde::Deserialize)]
//! #[aggregate(events(Ticked))]
//! pub struct Clock { ticks: u64 }
//! # impl Apply<Ticked> for Clock { fn apply(&mut self, _: Ticked) { self.ticks += 1 } }
//!
//! // Bump this whenever `Clock`'s serialized shape changes: older snapshots are then
//! // ignored and the state is rebuilt from events.
//! impl Snapshot for Clock {
//!     const SNAPSHOT_VERSION: u32 = 1;
//! }
//!
//! let clocks = Repository::<Clock, _>::new(annals_memory::MemoryStore::new())
//!     .with_snapshots(SnapshotPolicy::Every(500));
//! ```
//!
//! A snapshot is only ever a shortcut: one with another schema version, or one that no
//! longer deserializes, is ignored and the aggregate is rebuilt from its events, so a
//! snapshot can make a load faster but never wrong. Snapshots are written in a
//! background task after the command's events are stored, off the command's critical
//! path; a failed snapshot write loses nothing.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aggregate::Aggregate;

/// An aggregate whose state can be snapshotted.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be snapshotted",
    note = "derive `serde::Serialize, serde::Deserialize` for `{Self}` and add `impl annals::snapshot::Snapshot for {Self} {{ const SNAPSHOT_VERSION: u32 = 1; }}`"
)]
pub trait Snapshot: Aggregate + Serialize + DeserializeOwned {
    /// The version of the state's serialized shape. Bump it when the shape changes.
    const SNAPSHOT_VERSION: u32;
}

/// When the repository takes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// After a command whose events carry the stream past a multiple of `n` events.
    Every(u64),
    /// After a load that had to apply more than `n` events on top of the latest snapshot.
    AfterReading(u64),
}

impl SnapshotPolicy {
    pub(crate) fn after_append(self, before: u64, after: u64) -> bool {
        match self {
            SnapshotPolicy::Every(n) => n > 0 && before / n != after / n,
            SnapshotPolicy::AfterReading(_) => false,
        }
    }

    pub(crate) fn after_load(self, applied: u64) -> bool {
        match self {
            SnapshotPolicy::Every(_) => false,
            SnapshotPolicy::AfterReading(n) => applied > n,
        }
    }
}
