//! What a process instance's stream records: one [`Reaction`] per input, and the ids
//! derived from it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};
use crate::store::Deadline;

/// The stored event type of a recorded reaction.
pub const REACTED: &str = "annals.process.reacted";

/// The namespace of the ids derived for reactions, commands, deadlines and rejections.
const NAMESPACE: Uuid = Uuid::from_u128(0x3f0e_51c4_9a2d_4b7e_8d16_c0a5_7e92_b418);

/// The input a process reacted to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// An event from the store's feed (a copy, so that the instance can be replayed alone).
    Event {
        /// The event's id.
        event_id: Uuid,
        /// Its stored type name.
        event_type: String,
        /// Its stored schema version.
        event_version: u32,
        /// Its stream.
        stream: String,
        /// Its version in the stream.
        stream_version: u64,
        /// Its global position.
        position: u64,
        /// When it was recorded.
        recorded_at: DateTime<Utc>,
        /// Its payload as stored.
        payload: crate::Payload,
        /// Its metadata.
        #[serde(default)]
        metadata: Metadata,
    },
    /// A deadline that came due.
    Deadline {
        /// The deadline's id.
        deadline_id: Uuid,
        /// Its type's name.
        deadline_type: String,
        /// When it was due.
        due_at: DateTime<Utc>,
        /// The deadline value.
        payload: serde_json::Value,
    },
    /// An aggregate rejected a command the process sent.
    Rejected {
        /// The command's id.
        command_id: Uuid,
        /// The command type's name.
        command_type: String,
        /// The aggregate id it was sent to.
        target: String,
        /// The command as sent.
        payload: serde_json::Value,
        /// The aggregate's error, as text.
        reason: String,
    },
}

impl Trigger {
    /// The trigger of a feed event.
    pub fn event(envelope: &Envelope) -> Self {
        Trigger::Event {
            event_id: envelope.event_id,
            event_type: envelope.event_type.clone(),
            event_version: envelope.event_version,
            stream: envelope.stream_id.clone(),
            stream_version: envelope.stream_version,
            position: envelope.global_position,
            recorded_at: envelope.recorded_at,
            payload: envelope.payload.clone(),
            metadata: envelope.metadata.clone(),
        }
    }

    /// The trigger of a due deadline.
    pub fn deadline(deadline: &Deadline) -> Self {
        Trigger::Deadline {
            deadline_id: deadline.id,
            deadline_type: deadline.deadline_type.clone(),
            due_at: deadline.due_at,
            payload: deadline.payload.clone(),
        }
    }

    /// The trigger of a rejected command.
    pub fn rejected(command: &SentCommand, reason: impl Into<String>) -> Self {
        Trigger::Rejected {
            command_id: command.id,
            command_type: command.command_type.clone(),
            target: command.target.clone(),
            payload: command.payload.clone(),
            reason: reason.into(),
        }
    }

    /// Identifies the input: the event id, the deadline id, or an id derived from the
    /// rejected command's. An instance reacts once per id.
    pub fn id(&self) -> Uuid {
        match self {
            Trigger::Event { event_id, .. } => *event_id,
            Trigger::Deadline { deadline_id, .. } => *deadline_id,
            Trigger::Rejected { command_id, .. } => rejection_id(*command_id),
        }
    }

    /// The envelope of an event trigger, rebuilt to decode it (with upcasting).
    pub fn envelope(&self) -> Option<Envelope> {
        match self {
            Trigger::Event {
                event_id,
                event_type,
                event_version,
                stream,
                stream_version,
                position,
                recorded_at,
                payload,
                metadata,
            } => Some(Envelope {
                event_id: *event_id,
                stream_id: stream.clone(),
                stream_version: *stream_version,
                global_position: *position,
                recorded_at: *recorded_at,
                event_type: event_type.clone(),
                event_version: *event_version,
                payload: payload.clone(),
                metadata: metadata.clone(),
            }),
            Trigger::Deadline { .. } | Trigger::Rejected { .. } => None,
        }
    }

    /// The input's type: the event type, the deadline type, or `Rejected<Command>`.
    pub fn input_type(&self) -> String {
        match self {
            Trigger::Event { event_type, .. } => event_type.clone(),
            Trigger::Deadline { deadline_type, .. } => deadline_type.clone(),
            Trigger::Rejected { command_type, .. } => format!("Rejected<{command_type}>"),
        }
    }

    /// What the trigger is, for error messages and logs.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Event { event_type, stream, stream_version, position, .. } => {
                format!(
                    "event `{event_type}` at stream `{stream}` version {stream_version} (global position {position})"
                )
            }
            Trigger::Deadline { deadline_type, deadline_id, due_at, .. } => {
                format!("deadline `{deadline_type}` {deadline_id} due at {due_at}")
            }
            Trigger::Rejected { command_type, target, reason, .. } => {
                format!("rejection of command `{command_type}` to `{target}` ({reason})")
            }
        }
    }

    /// The correlation id the trigger carries, if any: its own, or its id when it starts a
    /// correlation.
    pub(crate) fn correlation(&self) -> Option<Uuid> {
        match self {
            Trigger::Event { event_id, metadata, .. } => Some(metadata.correlation_id.unwrap_or(*event_id)),
            Trigger::Deadline { .. } | Trigger::Rejected { .. } => None,
        }
    }
}

/// A command a process sent, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentCommand {
    /// Derived from the instance, the trigger and the command's place in the reaction: the
    /// command's idempotency key.
    pub id: Uuid,
    /// The command type's name.
    pub command_type: String,
    /// The aggregate id it goes to.
    pub target: String,
    /// The command, as JSON.
    pub payload: serde_json::Value,
}

/// One recorded reaction: the event in an instance stream ([`REACTED`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// What the instance reacted to.
    pub trigger: Trigger,
    /// The instance's state after the reaction.
    pub state: serde_json::Value,
    /// The commands it sent, in order.
    #[serde(default)]
    pub commands: Vec<SentCommand>,
    /// The deadlines it set.
    #[serde(default)]
    pub deadlines: Vec<Deadline>,
    /// The ids of the pending deadlines it cancelled.
    #[serde(default)]
    pub cancelled: Vec<Uuid>,
    /// Whether the instance completed: it ignores later inputs.
    #[serde(default)]
    pub completed: bool,
}

impl Reaction {
    /// Updates an instance's pending deadlines with this reaction: the deadline that
    /// triggered it fired, those it cancelled are gone, those it set are added. (What the
    /// runner, `replay` and the test kit all fold over the reactions.)
    pub(crate) fn update_pending(&self, pending: &mut Vec<Deadline>) {
        if let Trigger::Deadline { deadline_id, .. } = &self.trigger {
            pending.retain(|deadline| deadline.id != *deadline_id);
        }
        pending.retain(|deadline| !self.cancelled.contains(&deadline.id));
        pending.extend(self.deadlines.iter().cloned());
    }
}

/// A uuid v5 of `parts`, each prefixed by its length so no two lists read alike.
pub(crate) fn derived_id(parts: &[&str]) -> Uuid {
    let mut name = String::new();
    for part in parts {
        name.push_str(&part.len().to_string());
        name.push(':');
        name.push_str(part);
    }
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The id of the reaction to a rejected command.
fn rejection_id(command_id: Uuid) -> Uuid {
    derived_id(&["rejected", &command_id.to_string()])
}

/// The event id of the reaction of instance stream `stream` to `trigger`: a second
/// recording of the same reaction is refused as a duplicate.
pub(crate) fn reaction_event_id(stream: &str, trigger: Uuid) -> Uuid {
    derived_id(&["reaction", stream, &trigger.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_differ_when_any_part_differs() {
        assert_eq!(derived_id(&["a", "b"]), derived_id(&["a", "b"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["ab", ""]));
        assert_ne!(derived_id(&["a:b"]), derived_id(&["a", "b"]));
        let command = Uuid::from_u128(7);
        assert_ne!(rejection_id(command), command);
        assert_ne!(reaction_event_id("p-1", command), reaction_event_id("p-2", command));
    }
}
