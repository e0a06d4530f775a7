//! The headers of a relayed event: what JetStream deduplicates and fences on, and what a
//! consumer in another service reads without decoding the body. Texts that come from
//! users (stream ids, event types) are written as subject tokens ([`token`]): plain words
//! as they are, anything else hex-encoded, so that no id can break a header line; the body
//! (the whole envelope as JSON) holds them exactly.

use annals::store::FeedEvent;
use async_nats::HeaderMap;

use crate::subject::token;

/// JetStream's deduplication key: the event id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// JetStream's fence: the publish is refused unless the stream's last sequence is this.
pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// The event's stored name, as a subject token.
pub const EVENT_TYPE: &str = "Annals-Event-Type";
/// The event's schema version.
pub const EVENT_VERSION: &str = "Annals-Event-Version";
/// The event's stream, as a subject token.
pub const STREAM: &str = "Annals-Stream";
/// The event's version in its stream.
pub const STREAM_VERSION: &str = "Annals-Stream-Version";
/// The event's global position in the source store.
pub const POSITION: &str = "Annals-Position";
/// The event's checkpoint in the source store's feed (`major:minor`): where a relay
/// resumes after the last message the JetStream stream holds.
pub const CHECKPOINT: &str = "Annals-Checkpoint";
/// `true` on the last event of each committed transaction, where the source store's
/// checkpoints tell transactions apart (PostgreSQL: its checkpoint's first part is the
/// transaction); absent otherwise. A consumer that applies whole transactions at once
/// waits for it.
pub const COMMIT_END: &str = "Annals-Commit-End";
/// The event's correlation id, when it has one.
pub const CORRELATION_ID: &str = "Annals-Correlation-Id";
/// The event's causation id, when it has one.
pub const CAUSATION_ID: &str = "Annals-Causation-Id";

/// The headers of `event`, published after JetStream sequence `last_sequence`; with
/// `commit_end`, marked as the last event of its transaction.
pub(crate) fn of(event: &FeedEvent, last_sequence: u64, commit_end: bool) -> HeaderMap {
    let envelope = &event.envelope;
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, envelope.event_id.to_string().as_str());
    headers.insert(EXPECTED_LAST_SEQUENCE, last_sequence.to_string().as_str());
    headers.insert(EVENT_TYPE, token(&envelope.event_type).as_str());
    headers.insert(EVENT_VERSION, envelope.event_version.to_string().as_str());
    headers.insert(STREAM, token(&envelope.stream_id).as_str());
    headers.insert(STREAM_VERSION, envelope.stream_version.to_string().as_str());
    headers.insert(POSITION, envelope.global_position.to_string().as_str());
    headers.insert(CHECKPOINT, event.checkpoint.to_string().as_str());
    if commit_end {
        headers.insert(COMMIT_END, "true");
    }
    if let Some(id) = envelope.metadata.correlation_id {
        headers.insert(CORRELATION_ID, id.to_string().as_str());
    }
    if let Some(id) = envelope.metadata.causation_id {
        headers.insert(CAUSATION_ID, id.to_string().as_str());
    }
    headers
}
