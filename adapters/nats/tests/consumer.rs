//! The consuming side against a real `nats-server -js`: a relay's stream read in another
//! "service" through [`JetStreamFeed`] into a SQLite read model with [`ExactlyOnce`], whose
//! checkpoint is the JetStream sequence. Consumers killed at random moments, killed between
//! the read-model commit and the acknowledgement, restarted from a backup with an old
//! checkpoint; poison messages parked; partitions shared by three consumers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::store::{Checkpoint, EventFeed};
use annals::subscription::{ExactlyOnce, PoisonPolicy, Sink, Subscription, SubscriptionOptions};
use annals_memory::MemoryStore;
use annals_nats::testing::Server;
use annals_nats::{JetStreamFeed, Partitions, Relay};
use annals_sqlite::sqlx;
use annals_sqlite::testing::TempDir;
use async_nats::jetstream;
use support::{
    append, applied, assert_each_once_in_order, consumer, name, options, prefix, read_model, wait_for,
    wait_until_applied, Seen, IDS,
};

mod support;

/// 5,000 events relayed from a source store; the consumer is killed once it has applied
/// 500 (a backup of its database taken then) and five more times at random moments; it
/// ends with every event once, each stream in order; the backup, restarted with its old
/// checkpoint while the durable consumer has acknowledged far past it, catches up to the
/// same read model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumers_and_an_old_checkpoint_apply_every_event_once() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let source = MemoryStore::new();
    let stream = &name("CONSUMED");
    append(&source, 500).await;
    let relay = tokio::spawn(Relay::new(source.clone(), client.clone(), stream.as_str(), prefix(stream)).run());
    let dir = TempDir::new().unwrap();
    let store = read_model(&dir.database()).await;
    let backup = dir.path().join("backup.db");
    let feed = || JetStreamFeed::new(client.clone(), stream.as_str(), prefix(stream), "seen");
    let mut subscription = consumer(feed(), &store);
    let running = tokio::spawn(async move { subscription.run().await });
    wait_until_applied(&store, 500).await;
    running.abort();
    let _ = running.await;
    sqlx::query("VACUUM INTO ?1").bind(backup.to_str().unwrap()).execute(store.pool()).await.unwrap();
    let mut killed_at = Vec::new();
    for _ in 0..5 {
        let mut subscription = consumer(feed(), &store);
        let running = tokio::spawn(async move { subscription.run().await });
        tokio::time::sleep(Duration::from_millis(fastrand::u64(20..150))).await;
        running.abort();
        let _ = running.await;
        killed_at.push(applied(&store).await.len());
    }
    let mut subscription = consumer(feed(), &store);
    let running = tokio::spawn(async move { subscription.run().await });
    wait_until_applied(&store, 5_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // anything applied twice would show now
    running.abort();
    let rows = applied(&store).await;
    assert_eq!(rows.len(), 5_000);
    assert_each_once_in_order(&rows, 500);

    let old = read_model(&backup).await;
    let before = applied(&old).await.len();
    let info = jetstream::new(client.clone()).get_stream(stream).await.unwrap().consumer_info("seen").await.unwrap();
    println!(
        "killed after {killed_at:?} events; backup: {before} events applied; the durable consumer acknowledged up to {}",
        info.ack_floor.stream_sequence
    );
    assert!(before < 5_000);
    let mut subscription = consumer(feed(), &old);
    subscription.catch_up().await.unwrap();
    let again = applied(&old).await;
    assert_eq!(again.len(), 5_000, "from its old checkpoint, not from the consumer's acknowledgements");
    assert_each_once_in_order(&again, 500);
    relay.abort();
}

/// A consumer that committed a batch and died before acknowledging it: the durable
/// consumer still holds the batch as pending; the restarted consumer neither applies it
/// again nor waits for JetStream to redeliver it, and ends with the read model of a clean
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_between_its_commit_and_its_acknowledgement_applies_nothing_twice() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let source = MemoryStore::new();
    let stream = &name("UNACKED");
    append(&source, 30).await;
    let relay = tokio::spawn(Relay::new(source.clone(), client.clone(), stream.as_str(), prefix(stream)).run());
    wait_for(&client, stream, 300).await;
    let dir = TempDir::new().unwrap();
    let store = read_model(&dir.database()).await;

    // One batch, committed with its checkpoint; then the process dies: no further read,
    // so no acknowledgement.
    let feed = JetStreamFeed::new(client.clone(), stream.as_str(), prefix(stream), "seen");
    let mut sink = ExactlyOnce::new(store.clone(), Seen { partition: -1 });
    let batch = feed.read_feed(Checkpoint::START, &sink.filter(), 40).await.unwrap();
    assert_eq!(batch.events.len(), 40);
    sink.process(&batch.events, batch.next).await.unwrap();
    drop((feed, sink));
    let info = jetstream::new(client.clone()).get_stream(stream).await.unwrap().consumer_info("seen").await.unwrap();
    assert_eq!(
        (info.ack_floor.stream_sequence, info.delivered.stream_sequence),
        (0, 40),
        "committed, not acknowledged"
    );

    let started = Instant::now();
    let mut subscription =
        consumer(JetStreamFeed::new(client.clone(), stream.as_str(), prefix(stream), "seen"), &store);
    subscription.catch_up().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "no wait for a redelivery");
    let rows = applied(&store).await;
    assert_eq!(rows.len(), 300);
    assert_each_once_in_order(&rows, 30);

    // The same from a clean start, with another durable consumer: the same read model.
    let clean_dir = TempDir::new().unwrap();
    let clean = read_model(&clean_dir.database()).await;
    let feed = JetStreamFeed::new(client.clone(), stream.as_str(), prefix(stream), "seen-clean");
    Subscription::new(feed, ExactlyOnce::new(clean.clone(), Seen { partition: -1 })).catch_up().await.unwrap();
    assert_eq!(applied(&clean).await, rows, "identical to a clean run");
    relay.abort();
}

/// A message that is not an annals envelope, and an event whose payload does not decode
/// into the handler's type, are parked in the consumer's own store; everything else is
/// applied, and the consumer goes on (no redelivery loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_parked_and_the_rest_applied() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let stream = name("POISON");
    let prefix = prefix(&stream);
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let envelope = |n: u64, payload: serde_json::Value| {
        let envelope = Envelope {
            event_id: uuid::Uuid::now_v7(),
            stream_id: "cart-1".into(),
            stream_version: n,
            global_position: n,
            recorded_at: chrono::Utc::now(),
            event_type: "test.happened".into(),
            event_version: 1,
            payload: payload.into(),
            metadata: annals::Metadata::default(),
        };
        serde_json::to_vec(&envelope).unwrap()
    };
    let good = |n: u64| envelope(n, serde_json::json!({ "n": n, "stream": "cart-1" }));
    let bodies = [good(1), good(2), b"{not json".to_vec(), envelope(3, serde_json::json!({ "n": "three" })), good(4)];
    for body in bodies {
        js.publish(format!("{prefix}.cart.cart-1"), body.into()).await.unwrap().await.unwrap();
    }
    let dir = TempDir::new().unwrap();
    let store = read_model(&dir.database()).await;
    let feed = JetStreamFeed::new(client.clone(), stream.as_str(), prefix.as_str(), "seen");
    let sink = ExactlyOnce::new(store.clone(), Seen { partition: -1 }).poison(PoisonPolicy::Park);
    let mut subscription = Subscription::new(feed, sink).options(SubscriptionOptions {
        retry: annals::RetryPolicy { max_attempts: 2, backoff: Duration::from_millis(5), ..Default::default() },
        ..options()
    });
    tokio::time::timeout(Duration::from_secs(30), subscription.catch_up()).await.unwrap().unwrap();
    let rows = applied(&store).await;
    assert_eq!(rows.iter().map(|(_, v, _)| *v).collect::<Vec<_>>(), [1, 2, 4]);
    let parked = subscription.sink().parked().await.unwrap();
    let reasons: Vec<&str> = parked.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(parked.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("message 3") && reasons[0].contains("not an annals envelope"), "{reasons:?}");
    assert!(reasons[1].contains("test.happened"), "{reasons:?}");
    assert_eq!(subscription.sink().stored_checkpoint().await.unwrap(), Some(Checkpoint::from_parts(0, 5)));
}

/// A relay writing three partitions, and three consumers, one per partition, each with
/// its own checkpoint: every event once, each stream whole in one partition and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_partitions_share_the_streams_and_keep_each_in_order() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let source = MemoryStore::new();
    let stream = &name("PARTITIONED");
    let three = Partitions::new(3).unwrap();
    append(&source, 100).await;
    let relay = tokio::spawn(
        Relay::new(source.clone(), client.clone(), stream.as_str(), prefix(stream)).partitions(three).run(),
    );
    let dir = TempDir::new().unwrap();
    let store = read_model(&dir.database()).await;
    let consumers: Vec<_> = (0..3)
        .map(|partition| {
            let consumer_name = format!("seen-p{partition}");
            let feed = JetStreamFeed::new(client.clone(), stream.as_str(), prefix(stream), consumer_name.as_str())
                .partition(partition, three);
            let sink = ExactlyOnce::new(store.clone(), Seen { partition: i64::from(partition) }).named(consumer_name);
            let mut subscription = Subscription::new(feed, sink).options(options());
            tokio::spawn(async move { subscription.run().await })
        })
        .collect();
    wait_until_applied(&store, 1_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = applied(&store).await;
    assert_eq!(rows.len(), 1_000);
    assert_each_once_in_order(&rows, 100);
    let mut partitions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (id, _, partition) in &rows {
        partitions.entry(id).or_default().push(*partition);
    }
    for (id, seen_in) in partitions {
        let expected = i64::from(three.of(id));
        assert!(seen_in.iter().all(|p| *p == expected), "stream `{id}` only in partition {expected}: {seen_in:?}");
    }
    let used: std::collections::BTreeSet<u32> = IDS.iter().map(|id| three.of(id)).collect();
    assert!(used.len() > 1, "the streams spread over partitions: {used:?}");
    for consumer in consumers {
        consumer.abort();
    }
    relay.abort();
}
