//! The body of a relayed JetStream message: the envelope as JSON, its payload as the
//! store holds it.
//!
//! The payload's stored text goes into the body as it is (after a syntax check), so the
//! relay neither parses nor re-serializes it, and a payload serde_json cannot hold as a
//! value (a number beyond `f64`, which PostgreSQL's `json` column accepts) is relayed like
//! any other and fails where it is decoded, on the consuming side, instead of stopping
//! the relay. The body has the shape `Envelope`'s own `Serialize` gives (a test checks),
//! which is what the consuming feed deserializes.

use annals::{Envelope, Metadata};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// [`Envelope`]'s fields, borrowed, with the payload as raw JSON.
#[derive(Serialize)]
struct Wire<'a> {
    event_id: Uuid,
    stream_id: &'a str,
    stream_version: u64,
    global_position: u64,
    recorded_at: DateTime<Utc>,
    event_type: &'a str,
    event_version: u32,
    payload: &'a RawValue,
    metadata: &'a Metadata,
}

/// The message body of `envelope`.
///
/// Fails only for a payload whose text is not JSON at all, which no store returns (each
/// checks or guarantees the syntax).
pub(crate) fn encode(envelope: &Envelope) -> Result<Vec<u8>, serde_json::Error> {
    let text = envelope.payload.json_text();
    let payload: &RawValue = serde_json::from_str(&text)?;
    serde_json::to_vec(&Wire {
        event_id: envelope.event_id,
        stream_id: &envelope.stream_id,
        stream_version: envelope.stream_version,
        global_position: envelope.global_position,
        recorded_at: envelope.recorded_at,
        event_type: &envelope.event_type,
        event_version: envelope.event_version,
        payload,
        metadata: &envelope.metadata,
    })
}

#[cfg(test)]
mod tests {
    use annals::Payload;
    use serde_json::json;

    use super::*;

    fn envelope(payload: Payload) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            stream_id: "cart-1".into(),
            stream_version: 2,
            global_position: 9,
            recorded_at: Utc::now(),
            event_type: "cart.item_added".into(),
            event_version: 1,
            payload,
            metadata: Metadata::default().correlation_id(Uuid::now_v7()).with("user", "u-1"),
        }
    }

    #[test]
    fn the_body_is_what_the_envelope_serializes_to() {
        for payload in [
            Payload::from(json!({"sku": "tea", "qty": 2, "tags": ["a", null, 1.5]})),
            Payload::from_json_text(r#"{ "sku" : "tea", "qty": 2, "tags": ["a", null, 1.5] }"#.to_owned()),
        ] {
            let envelope = envelope(payload);
            let body = encode(&envelope).unwrap();
            let as_value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(as_value, serde_json::to_value(&envelope).unwrap());
            let back: Envelope = serde_json::from_slice(&body).unwrap();
            assert_eq!(back, envelope);
        }
    }

    #[test]
    fn a_payload_serde_json_cannot_hold_is_relayed_as_stored() {
        let envelope = envelope(Payload::from_json_text(r#"{"qty": 1e400}"#.to_owned()));
        assert!(serde_json::to_vec(&envelope).is_err(), "as a value it does not encode");
        let body = String::from_utf8(encode(&envelope).unwrap()).unwrap();
        assert!(body.contains(r#""payload":{"qty": 1e400}"#), "{body}");
    }
}
