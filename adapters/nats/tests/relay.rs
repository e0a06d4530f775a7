//! The relay against a real `nats-server -js` (a throwaway one per test, or `NATS_URL`):
//! every event once, in commit order, with hostile stream ids; a relay killed mid-stream
//! and restarted; two relays at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use annals::store::{Checkpoint, EventFeed, Filter};
use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_memory::MemoryStore;
use annals_nats::testing::Server;
use annals_nats::{headers, subject, Relay, RelayStatus};
use async_nats::jetstream;
use serde_json::json;
use support::{append, name, prefix, wait_for, IDS};

mod support;

/// Every message of JetStream stream `name`: (subject, event id, checkpoint), in sequence order.
async fn messages(client: &async_nats::Client, name: &str) -> Vec<(String, String, Checkpoint)> {
    let stream = jetstream::new(client.clone()).get_stream(name).await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut found = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| message.headers.get(name).unwrap().as_str().to_owned();
        found.push((
            message.subject.to_string(),
            header(headers::MSG_ID),
            header(headers::CHECKPOINT).parse().unwrap(),
        ));
    }
    found
}

/// What the relay must have published: each event once, in commit order, on its subject.
async fn assert_exactly_once_in_order(client: &async_nats::Client, name: &str, store: &MemoryStore, ids: &[String]) {
    tokio::time::sleep(Duration::from_millis(300)).await; // anything extra would arrive now
    let published = messages(client, name).await;
    let published_ids: Vec<&str> = published.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(published_ids.len(), ids.len(), "every event once");
    assert_eq!(published_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "in commit order");
    let feed = store.read_feed(Checkpoint::START, &Filter::all(), 100_000).await.unwrap().events;
    for ((subject_of, _, checkpoint), event) in published.iter().zip(&feed) {
        assert_eq!(*checkpoint, event.checkpoint);
        assert_eq!(*subject_of, subject::subject(&prefix(name), &event.envelope.stream_id));
    }
    let subjects: HashSet<&str> = published.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(subjects.len(), IDS.len(), "one subject per stream, no collisions: {subjects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_in_commit_order_with_hostile_stream_ids() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let store = MemoryStore::new();
    let relay_once = &name("RELAY_ONCE");
    let mut ids = append(&store, 100).await;
    let relay = Relay::new(store.clone(), client.clone(), relay_once.as_str(), prefix(relay_once));
    let running = tokio::spawn(relay.run());
    wait_for(&client, relay_once, 1_000).await;
    // Events appended while it follows arrive too.
    for n in 0..50u64 {
        let event = NewEvent::new("test.happened", 1, json!({ "late": n }));
        ids.push(store.append("late-1", ExpectedVersion::Exact(n), vec![event]).await.unwrap()[0].event_id.to_string());
    }
    wait_for(&client, relay_once, 1_050).await;
    running.abort();
    let published = messages(&client, relay_once).await;
    assert_eq!(published.iter().map(|(_, id, _)| id.clone()).collect::<Vec<_>>(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_and_restarted_publishes_nothing_twice() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let store = MemoryStore::new();
    let relay_killed = &name("RELAY_KILLED");
    let ids = append(&store, 1_000).await; // 10,000 events
    for round in 0..3 {
        let running =
            tokio::spawn(Relay::new(store.clone(), client.clone(), relay_killed.as_str(), prefix(relay_killed)).run());
        wait_for(&client, relay_killed, 2_000 * (round + 1)).await;
        running.abort(); // mid-batch, acknowledgements in flight
        let _ = running.await;
    }
    let running =
        tokio::spawn(Relay::new(store.clone(), client.clone(), relay_killed.as_str(), prefix(relay_killed)).run());
    wait_for(&client, relay_killed, 10_000).await;
    running.abort();
    assert_exactly_once_in_order(&client, relay_killed, &store, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_each_event_once() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let other = server.connect().await.unwrap();
    let store = MemoryStore::new();
    let relay_two = &name("RELAY_TWO");
    let ids = append(&store, 200).await; // 2,000 events
    let first = tokio::spawn(Relay::new(store.clone(), client.clone(), relay_two.as_str(), prefix(relay_two)).run());
    let second = tokio::spawn(Relay::new(store.clone(), other, relay_two.as_str(), prefix(relay_two)).run());
    wait_for(&client, relay_two, 2_000).await;
    assert_exactly_once_in_order(&client, relay_two, &store, &ids).await;
    first.abort();
    second.abort();
}

/// The NATS server is killed while the relay publishes and comes back 2 s later: the relay
/// waits and goes on; every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_mid_stream_is_ridden_through() {
    let mut server = Server::throwaway().await.unwrap();
    let client = server.connect().await.unwrap();
    let store = MemoryStore::new();
    let relay_outage = &name("RELAY_OUTAGE");
    let ids = append(&store, 300).await; // 3,000 events
    let relay = Relay::new(store.clone(), server.connect().await.unwrap(), relay_outage.as_str(), prefix(relay_outage));
    let running = tokio::spawn(relay.run());
    wait_for(&client, relay_outage, 300).await;
    server.restart_after(Duration::from_secs(2)).await.unwrap();
    wait_for(&client, relay_outage, 3_000).await;
    assert!(!running.is_finished(), "the relay never exits on an outage");
    running.abort();
    assert_exactly_once_in_order(&client, relay_outage, &store, &ids).await;
}

/// Two relays with a lease: one publishes, the other stands by and reads nothing; when
/// the active one dies, the standby takes over within the lease; every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_when_the_active_one_dies() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let store = MemoryStore::new();
    let relay_leased = &name("RELAY_LEASED");
    let mut ids = append(&store, 100).await; // 1,000 events
    let lease = Duration::from_secs(1);
    let relay = |id: &str| {
        Relay::new(store.clone(), client.clone(), relay_leased.as_str(), prefix(relay_leased)).standby(lease, id)
    };
    let first = relay("first");
    let first_status = first.status();
    let first = tokio::spawn(first.run());
    wait_for(&client, relay_leased, 1).await;
    let second = relay("second");
    let second_status = second.status();
    let second = tokio::spawn(second.run());
    wait_for(&client, relay_leased, 1_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(*first_status.borrow(), RelayStatus::Following { .. }), "{:?}", *first_status.borrow());
    assert_eq!(*second_status.borrow(), RelayStatus::Standby { holder: "first".to_owned() });

    first.abort(); // the active relay dies; its lease is not renewed
    let died = Instant::now();
    for n in 0..200u64 {
        let event = NewEvent::new("test.happened", 1, json!({ "late": n }));
        let stored = store.append("cart-1", ExpectedVersion::Exact(100 + n), vec![event]).await.unwrap();
        ids.push(stored[0].event_id.to_string());
    }
    wait_for(&client, relay_leased, 1_200).await;
    println!(
        "the standby took over and published the rest {:.1} s after the active relay died",
        died.elapsed().as_secs_f64()
    );
    assert!(matches!(*second_status.borrow(), RelayStatus::Following { .. }), "{:?}", *second_status.borrow());
    assert_exactly_once_in_order(&client, relay_leased, &store, &ids).await;
    second.abort();
}

/// From PostgreSQL, whose checkpoints name the transaction, the last event of each append
/// carries `Annals-Commit-End: true`, and no other does; appends longer than the relay's
/// batch (256) too. From a store whose checkpoints do not tell (memory), none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_event_of_each_transaction_is_marked() {
    let server = Server::start().await.unwrap();
    let client = server.connect().await.unwrap();
    let store = annals_postgres::testing::fresh_store().await.unwrap();
    let relay_ends = &name("RELAY_ENDS");
    let mut expected = Vec::new();
    for (n, size) in [1usize, 3, 1, 5, 300, 2, 1, 1, 40].into_iter().enumerate() {
        let events = (0..size).map(|i| NewEvent::new("test.happened", 1, json!({ "append": n, "i": i }))).collect();
        store.append(&format!("tx-{n}"), ExpectedVersion::Exact(0), events).await.unwrap();
        expected.extend((0..size).map(|i| i + 1 == size));
    }
    let total = u64::try_from(expected.len()).unwrap();
    let running =
        tokio::spawn(Relay::new(store.clone(), client.clone(), relay_ends.as_str(), prefix(relay_ends)).run());
    wait_for(&client, relay_ends, total).await;
    running.abort();
    let stream = jetstream::new(client.clone()).get_stream(relay_ends).await.unwrap();
    let mut marked = Vec::new();
    for sequence in 1..=total {
        let message = stream.get_raw_message(sequence).await.unwrap();
        marked.push(message.headers.get(headers::COMMIT_END).is_some_and(|v| v.as_str() == "true"));
    }
    assert_eq!(marked, expected);

    let memory = MemoryStore::new();
    let relay_none = &name("RELAY_NO_ENDS");
    append(&memory, 3).await;
    let running = tokio::spawn(Relay::new(memory, client.clone(), relay_none.as_str(), prefix(relay_none)).run());
    wait_for(&client, relay_none, 30).await;
    running.abort();
    let stream = jetstream::new(client.clone()).get_stream(relay_none).await.unwrap();
    for sequence in 1..=30 {
        assert!(stream.get_raw_message(sequence).await.unwrap().headers.get(headers::COMMIT_END).is_none());
    }
}
