//! What the NATS suites share: names of their own per run, hostile stream ids, waiting
//! for a JetStream stream to fill, and the consuming service's SQLite read model.
#![allow(dead_code, reason = "each suite uses some of these")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::subscription::{ExactlyOnce, Subscription, SubscriptionOptions};
use annals::{BoxError, NewEvent};
use annals_memory::MemoryStore;
use annals_nats::JetStreamFeed;
use annals_sqlite::{sqlx, SqliteConnection, SqliteStore};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
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

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "test.happened")]
pub struct Happened {
    pub n: u64,
    pub stream: String,
}

/// Every applied event in `seen` (its id is the primary key: applying one twice fails the
/// batch), in the order applied, with the partition it came from.
#[derive(Projection)]
#[projection(name = "seen", events(Happened), context = SqliteConnection)]
pub struct Seen {
    pub partition: i64,
}

impl On<Happened> for Seen {
    async fn on(&mut self, e: Happened, env: &Envelope, tx: &mut SqliteConnection) -> Result<(), BoxError> {
        sqlx::query("INSERT INTO seen (event_id, stream, version, n, partition) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(env.event_id.to_string())
            .bind(&env.stream_id)
            .bind(i64::try_from(env.stream_version)?)
            .bind(i64::try_from(e.n)?)
            .bind(self.partition)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

pub async fn read_model(path: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS seen (applied INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
             stream TEXT NOT NULL, version INTEGER NOT NULL, n INTEGER NOT NULL, partition INTEGER NOT NULL)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store
}

/// The read model: (stream, version) per event, in the order applied.
pub async fn applied(store: &SqliteStore) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT stream, version, partition FROM seen ORDER BY applied")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// Every event of every stream once, each stream in order.
pub fn assert_each_once_in_order(rows: &[(String, i64, i64)], per_stream: i64) {
    let mut versions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (stream, version, _) in rows {
        versions.entry(stream).or_default().push(*version);
    }
    assert_eq!(versions.len(), IDS.len(), "{versions:?}");
    for (stream, versions) in versions {
        assert_eq!(versions, (1..=per_stream).collect::<Vec<_>>(), "stream `{stream}`: once each, in order");
    }
}

pub fn options() -> SubscriptionOptions {
    SubscriptionOptions { batch_size: 50, poll_interval: Duration::from_millis(100), ..SubscriptionOptions::default() }
}

pub fn consumer(
    feed: JetStreamFeed,
    store: &SqliteStore,
) -> Subscription<JetStreamFeed, ExactlyOnce<Seen, SqliteStore>> {
    Subscription::new(feed, ExactlyOnce::new(store.clone(), Seen { partition: -1 })).options(options())
}

pub async fn wait_until_applied(store: &SqliteStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied(store).await.len() < count {
        assert!(Instant::now() < deadline, "the read model did not reach {count} events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
