use annals::Event;
use serde::{Deserialize, Serialize};

/// Born at version 2: no version 1 was ever stored, so it needs no upcaster.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", version = 2, oldest = 2)]
pub struct Opened {
    pub owner: String,
}

fn v3_to_v4(mut v3: serde_json::Value) -> Result<serde_json::Value, annals::BoxError> {
    v3["currency"] = "EUR".into();
    Ok(v3)
}

/// Versions 1 and 2 were migrated away: only versions 3 and 4 are stored, so only
/// version 3 needs an upcaster.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.credited", version = 4, oldest = 3, upcast(from = 3, with = v3_to_v4))]
pub struct Credited {
    pub cents: u64,
    pub currency: String,
}

fn main() {
    let stored = annals::Envelope {
        event_id: uuid::Uuid::nil(),
        stream_id: "account-1".into(),
        stream_version: 1,
        global_position: 1,
        recorded_at: chrono::Utc::now(),
        event_type: "account.credited".into(),
        event_version: 2,
        payload: annals::Payload::from_json_text(r#"{ "cents": 5 }"#.to_owned()),
        metadata: annals::Metadata::default(),
    };
    // A version older than `oldest` has no upcaster: a typed error, not a wrong value.
    assert!(matches!(stored.decode::<Credited>(), Err(annals::DecodeError::NoUpcaster { .. })));
    let v3 = annals::Envelope { event_version: 3, ..stored };
    assert_eq!(v3.decode::<Credited>().unwrap(), Credited { cents: 5, currency: "EUR".into() });
}
