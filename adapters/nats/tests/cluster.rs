//! A three-node JetStream cluster on loopback (three `nats-server` processes with routes
//! between them) and a stream with three replicas: one node is killed while the relay
//! publishes and a consumer in "another service" consumes; nothing is lost, nothing
//! doubled, and delivery goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::time::{Duration, Instant};

use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_memory::MemoryStore;
use annals_nats::testing::Cluster;
use annals_nats::{headers, JetStreamFeed, Relay};
use annals_sqlite::testing::TempDir;
use async_nats::jetstream;
use serde_json::json;
use support::{applied, assert_each_once_in_order, consumer, name, prefix, read_model, wait_until_applied, IDS};

mod support;

const PER_STREAM: u64 = 300;

/// Runs a read of the replicated stream until it succeeds, for up to 20 s: for a while
/// after the kill (a leader election), JetStream answers some requests with 503 "system
/// temporarily unavailable". Only the test's own check reads this way; the relay and the
/// consumer rode through on their own.
async fn settled<T, E, F, Fut>(what: &str, mut read: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match read().await {
            Ok(value) => return value,
            Err(error) if Instant::now() >= deadline => panic!("{what}: {error:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_of_three_stops_while_events_flow_and_nothing_is_lost_or_doubled() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let stream = &name("CLUSTERED");
    let source = MemoryStore::new();
    // Events keep coming while the relay and the consumer run: 3,000 over about 3 s.
    let writer = {
        let source = source.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 1..=PER_STREAM {
                for id in IDS {
                    let event = NewEvent::new("test.happened", 1, json!({ "n": n, "stream": id }));
                    let stored = source.append(id, ExpectedVersion::Exact(n - 1), vec![event]).await.unwrap();
                    ids.push(stored[0].event_id.to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    let relay_client = cluster.connect().await.unwrap();
    let relay = Relay::new(source.clone(), relay_client, stream.as_str(), prefix(stream)).replicas(3);
    let relay_status = relay.status();
    let relay = tokio::spawn(relay.run());
    let dir = TempDir::new().unwrap();
    let store = read_model(&dir.database()).await;
    let consumer_client = cluster.connect().await.unwrap();
    // The stream exists once the relay made it; the consumer waits for it meanwhile.
    let mut subscription =
        consumer(JetStreamFeed::new(consumer_client, stream.as_str(), prefix(stream), "seen"), &store);
    let consumer_status = subscription.status();
    let consuming = tokio::spawn(async move { subscription.run().await });

    wait_until_applied(&store, 800).await;
    let killed_at = applied(&store).await.len();
    cluster.kill(0);
    let killed = Instant::now();
    let ids = writer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied(&store).await.len() < 3_000 {
        if Instant::now() > deadline {
            let client = cluster.connect().await.unwrap();
            let js = jetstream::new(client);
            let info = js.get_stream(stream).await.map(|s| s.cached_info().state.messages);
            let consumer = match js.get_stream(stream).await {
                Ok(s) => {
                    format!("{:?}", s.consumer_info("seen").await.map(|i| (i.delivered, i.ack_floor, i.num_pending)))
                }
                Err(e) => e.to_string(),
            };
            panic!(
                "stalled: {} applied; stream holds {info:?}; relay {:?}; consumer {consumer}, {:?}",
                applied(&store).await.len(),
                *relay_status.borrow(),
                *consumer_status.borrow()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "node-0 killed after {killed_at} of 3,000 events were applied; the rest applied {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // anything doubled would show now
    assert!(!relay.is_finished() && !consuming.is_finished(), "relay and consumer ride through");
    relay.abort();
    consuming.abort();

    let rows = applied(&store).await;
    assert_eq!(rows.len(), 3_000);
    assert_each_once_in_order(&rows, i64::try_from(PER_STREAM).unwrap());
    // The replicated stream holds each event once, in commit order.
    let client = cluster.connect().await.unwrap();
    let jetstream = jetstream::new(client);
    let replicated = settled("getting the stream", || jetstream.get_stream(stream)).await;
    let info = settled("reading the stream's info", || replicated.get_info()).await;
    assert_eq!((info.state.messages, info.config.num_replicas), (3_000, 3));
    let mut published = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        let message = settled("reading a message", || replicated.get_raw_message(sequence)).await;
        published.push(message.headers.get(headers::MSG_ID).unwrap().as_str().to_owned());
    }
    assert_eq!(published, ids, "each event once, in commit order");
}
