//! Relay throughput against raw async-nats publishing the same messages (same subjects,
//! headers and bodies, pipelined in batches of 256, each fenced on the sequence before
//! it, acknowledgements awaited), in one run against one throwaway `nats-server -js`
//! (file storage, the server's default sync): `cargo bench -p annals-nats --bench relay`.
//! Best of 3 rounds; each round publishes into a fresh JetStream stream.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::store::{Checkpoint, EventFeed, Filter};
use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_memory::MemoryStore;
use annals_nats::testing::Server;
use annals_nats::{headers, subject, Relay};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::json;

const EVENTS: u64 = 20_000;
const ROUNDS: usize = 3;

async fn wait_for(js: &jetstream::Context, name: &str, count: u64) {
    loop {
        if let Ok(stream) = js.get_stream(name).await {
            if stream.get_info().await.is_ok_and(|info| info.state.messages >= count) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn relay(store: &MemoryStore, client: &async_nats::Client, round: usize) -> Duration {
    let name = format!("RELAYED_{round}");
    let js = jetstream::new(client.clone());
    let started = Instant::now();
    let running =
        tokio::spawn(Relay::new(store.clone(), client.clone(), name.as_str(), format!("relayed{round}")).run());
    wait_for(&js, &name, EVENTS).await;
    let took = started.elapsed();
    running.abort();
    took
}

/// The same messages, published by hand: what a hand-written relay does per batch.
async fn raw(store: &MemoryStore, client: &async_nats::Client, round: usize) -> Duration {
    let name = format!("RAW_{round}");
    let prefix = format!("raw{round}");
    let js = jetstream::new(client.clone());
    let started = Instant::now();
    js.get_or_create_stream(stream::Config { name, subjects: vec![format!("{prefix}.>")], ..Default::default() })
        .await
        .unwrap();
    let (mut after, mut last) = (Checkpoint::START, 0u64);
    loop {
        let batch = store.read_feed(after, &Filter::all(), 256).await.unwrap();
        if batch.events.is_empty() {
            break;
        }
        let mut acks = Vec::new();
        for (offset, event) in (0u64..).zip(&batch.events) {
            let envelope = &event.envelope;
            let mut map = HeaderMap::new();
            map.insert(headers::MSG_ID, envelope.event_id.to_string().as_str());
            map.insert(headers::EXPECTED_LAST_SEQUENCE, (last + offset).to_string().as_str());
            map.insert(headers::EVENT_TYPE, subject::token(&envelope.event_type).as_str());
            map.insert(headers::EVENT_VERSION, envelope.event_version.to_string().as_str());
            map.insert(headers::STREAM, subject::token(&envelope.stream_id).as_str());
            map.insert(headers::STREAM_VERSION, envelope.stream_version.to_string().as_str());
            map.insert(headers::POSITION, envelope.global_position.to_string().as_str());
            map.insert(headers::CHECKPOINT, event.checkpoint.to_string().as_str());
            let body = Bytes::from(serde_json::to_vec(envelope).unwrap());
            acks.push(
                js.publish_with_headers(subject::subject(&prefix, &envelope.stream_id), map, body).await.unwrap(),
            );
        }
        for ack in acks {
            last = ack.await.unwrap().sequence;
        }
        after = batch.next;
    }
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Server::throwaway().await.unwrap();
        let client = server.connect().await.unwrap();
        let store = MemoryStore::new();
        for n in 0..EVENTS {
            let event = NewEvent::new("cart.item_added", 1, json!({ "sku": format!("sku-{}", n % 7), "qty": 1 }));
            store.append(&format!("cart-{}", n % 500), ExpectedVersion::Any, vec![event]).await.unwrap();
        }
        let (mut relayed, mut hand) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            relayed.push(relay(&store, &client, round).await);
            hand.push(raw(&store, &client, round).await);
        }
        let (relayed, hand) = (relayed.into_iter().min().unwrap(), hand.into_iter().min().unwrap());
        let rate = |t: Duration| EVENTS as f64 / t.as_secs_f64();
        println!("{EVENTS} events into JetStream, best of {ROUNDS}:");
        println!("   annals relay:   {:>8.0} events/s ({:.2} s)", rate(relayed), relayed.as_secs_f64());
        println!("   raw async-nats: {:>8.0} events/s ({:.2} s)", rate(hand), hand.as_secs_f64());
        println!("   relay / raw: {:.2}", hand.as_secs_f64() / relayed.as_secs_f64());
    });
}
