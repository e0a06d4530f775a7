//! What the NATS suites share: names of their own per run, hostile stream ids, and
//! waiting for a JetStream stream to fill.
#![allow(dead_code, reason = "each suite uses some of these")]

use std::time::{Duration, Instant};

use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_memory::MemoryStore;
use async_nats::jetstream;
use serde_json::json;

/// A JetStream stream name of its own for each test run (a shared `NATS_URL` server keeps
/// streams between runs).
pub fn name(base: &str) -> String {
    format!("{base}_{}", uuid::Uuid::now_v7().simple())
}

/// The subject prefix of the relay into JetStream stream `name` (streams on one server
/// may not share subjects).
pub fn prefix(name: &str) -> String {
    name.to_lowercase()
}

/// Stream ids a subject cannot carry as they are, and plain ones.
pub const IDS: [&str; 10] = ["cart-1", "cart-2", "a.b", "a b", "*", ">", "ünï-1", "order-x.y", "order-x y", "~61"];

/// Appends `per_stream` events to each of [`IDS`], interleaved; returns the event ids in
/// commit order.
pub async fn append(store: &MemoryStore, per_stream: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 1..=per_stream {
        for stream in IDS {
            let event = NewEvent::new("test.happened", 1, json!({ "n": n, "stream": stream }));
            let stored = store.append(stream, ExpectedVersion::Exact(n - 1), vec![event]).await.unwrap();
            ids.push(stored[0].event_id.to_string());
        }
    }
    ids
}

/// Waits until JetStream stream `name` holds `count` messages.
pub async fn wait_for(client: &async_nats::Client, name: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(stream) = jetstream::new(client.clone()).get_stream(name).await {
            if stream.get_info().await.is_ok_and(|info| info.state.messages >= count) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "JetStream stream `{name}` did not reach {count} messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
