//! What is particular to the SQLite store, beyond the exported conformance suites: JSON
//! stored exactly as written, byte-exact category filters, appends that fail or are
//! cancelled halfway, locks held by another connection, migrations, two pools on one file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use annals::store::{Checkpoint, CheckpointStore, EventFeed, Filter};
use annals::{EventStore, ExpectedVersion, NewEvent, StoreError};
use annals_sqlite::sqlx;
use annals_sqlite::testing::{fresh_store, TempDir};
use annals_sqlite::SqliteStore;
use futures::TryStreamExt;
use serde_json::json;

fn event(n: u64) -> NewEvent {
    NewEvent::new("sqlite.tested", 1, json!({ "n": n }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

async fn feed_all(store: &SqliteStore, filter: &Filter) -> Vec<annals::Envelope> {
    let mut at = Checkpoint::START;
    let mut all = Vec::new();
    loop {
        let batch = store.read_feed(at, filter, 100).await.unwrap();
        if batch.next == at {
            return all;
        }
        at = batch.next;
        all.extend(batch.events.into_iter().map(|e| e.envelope));
    }
}

#[test]
fn payloads_are_stored_as_the_exact_text_serde_json_writes_and_read_back_equal() {
    runtime().block_on(async {
        let store = fresh_store().await;
        let payload = json!({
            "u64_max": u64::MAX,
            "i64_min": i64::MIN,
            "floats": [0.1, 1.0, -0.0, 1e300, 5e-324, f64::MAX, f64::MIN_POSITIVE, 123456.789, 2.5e-8],
            "text": "quotes \" backslash \\ newline \n tab \t nul \u{0} unicode ß 漢字 🎉",
            "nested": { "empty_object": {}, "empty_array": [], "null": null, "bools": [true, false] },
        });
        let mut extra = NewEvent::new("sqlite.tested", 1, payload.clone());
        extra.metadata = extra.metadata.with("tenant", json!({ "id": u64::MAX, "name": "ß" }));
        let stored = store.append("json-1", ExpectedVersion::Exact(0), vec![extra.clone()]).await.unwrap();
        let text: String = sqlx::query_scalar("SELECT payload FROM events WHERE stream_id = 'json-1'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(text, serde_json::to_string(&payload).unwrap(), "the payload is stored exactly as serialized");
        let read: Vec<_> = store.read_stream("json-1", (..).into()).try_collect().await.unwrap();
        assert_eq!(read, stored);
        assert_eq!(read[0].payload, payload);
        assert_eq!(serde_json::to_string(&read[0].payload).unwrap(), text, "and reads back to the same text");
        assert_eq!(read[0].metadata, extra.metadata);
        assert_eq!(read[0].payload["u64_max"].as_u64(), Some(u64::MAX));
        assert_eq!(read[0].payload["i64_min"].as_i64(), Some(i64::MIN));
    });
}

/// serde_json is built with its `float_roundtrip` feature in this workspace: the text it
/// writes parses back to the same double, so every finite `f64` reads back bit for bit.
#[test]
fn random_doubles_read_back_bit_for_bit() {
    runtime().block_on(async {
        let store = fresh_store().await;
        let mut rng = fastrand::Rng::with_seed(7);
        let floats: Vec<f64> = (0..2_000).map(|_| f64::from_bits(rng.u64(..))).filter(|f| f.is_finite()).collect();
        let payload = json!({ "floats": floats });
        store
            .append("floats-1", ExpectedVersion::Exact(0), vec![NewEvent::new("f", 1, payload.clone())])
            .await
            .unwrap();
        let read: Vec<_> = store.read_stream("floats-1", (..).into()).try_collect().await.unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&serde_json::to_string(&payload).unwrap()).unwrap();
        assert_eq!(read[0].payload, reparsed);
        let back = read[0].payload["floats"].as_array().unwrap();
        let exact = floats.iter().zip(back).filter(|(f, b)| b.as_f64().map(f64::to_bits) == Some(f.to_bits())).count();
        assert_eq!(exact, floats.len(), "every random finite f64 reads back bit for bit");
    });
}

#[test]
fn category_filters_compare_bytes_so_like_wildcards_are_plain_characters() {
    runtime().block_on(async {
        let store = fresh_store().await;
        for stream in ["a_b-1", "axb-1", "a%-1", "a%x-1", "a_b-", "a_b", "A_B-1", "a_b-2"] {
            store.append(stream, ExpectedVersion::Any, vec![event(0)]).await.unwrap();
        }
        let streams = |events: Vec<annals::Envelope>| events.into_iter().map(|e| e.stream_id).collect::<Vec<_>>();
        assert_eq!(streams(feed_all(&store, &Filter::all().category("a_b")).await), ["a_b-1", "a_b-2"]);
        assert_eq!(streams(feed_all(&store, &Filter::all().category("a%")).await), ["a%-1"]);
        assert_eq!(streams(feed_all(&store, &Filter::all().category("a")).await), Vec::<String>::new());
        assert_eq!(streams(feed_all(&store, &Filter::all().stream("a_b")).await), ["a_b"]);
        assert_eq!(
            streams(feed_all(&store, &Filter::all().category("a_b").event_types(["other"])).await),
            Vec::<String>::new()
        );
    });
}

#[test]
fn an_append_failing_halfway_writes_nothing_and_the_lock_is_free_at_once() {
    runtime().block_on(async {
        let store = fresh_store().await;
        let taken = event(0);
        store.append("first-1", ExpectedVersion::Exact(0), vec![taken.clone()]).await.unwrap();
        // The third event's id is stored elsewhere: its insert fails after two succeeded.
        let batch = vec![event(1), event(2), taken.clone(), event(3)];
        let error = store.append("second-1", ExpectedVersion::Exact(0), batch).await.unwrap_err();
        assert!(
            matches!(error, StoreError::DuplicateEventId { ref existing_stream, .. } if existing_stream == "first-1"),
            "{error}"
        );
        assert_eq!(store.stream_version("second-1").await.unwrap(), 0);
        let started = Instant::now();
        let next = store.append("third-1", ExpectedVersion::Exact(0), vec![event(4)]).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "the failed append's transaction held the lock");
        assert_eq!(next[0].global_position, 2, "the positions of the failed append were never committed");
        assert_eq!(feed_all(&store, &Filter::all()).await.len(), 2);
    });
}

#[test]
fn a_cancelled_append_keeps_all_or_nothing_and_leaves_no_transaction_open() {
    runtime().block_on(async {
        let store = fresh_store().await;
        let batch = || (0..200).map(event).collect::<Vec<_>>();
        // How long one append of the batch takes here; cancel at points spread over it.
        let started = Instant::now();
        store.append("timed-1", ExpectedVersion::Exact(0), batch()).await.unwrap();
        let full = started.elapsed();
        let mut acknowledged = 200u64;
        let (mut cancelled, mut committed_anyway) = (0, 0);
        for round in 0..40u32 {
            let stream = format!("big-{round}");
            let delay = full * round / 30;
            match tokio::time::timeout(delay, store.append(&stream, ExpectedVersion::Exact(0), batch())).await {
                Ok(result) => {
                    result.unwrap();
                    acknowledged += 200;
                }
                Err(_) => cancelled += 1,
            }
            // The next write neither waits for a leftover transaction nor sees part of one.
            let probe = tokio::time::timeout(
                Duration::from_secs(2),
                store.append(&format!("probe-{round}"), ExpectedVersion::Exact(0), vec![event(0)]),
            )
            .await;
            probe.expect("a cancelled append left the write lock held").unwrap();
            acknowledged += 1;
            match store.stream_version(&stream).await.unwrap() {
                0 => {}
                200 => committed_anyway += 1,
                version => panic!("round {round}: `{stream}` holds {version} of the 200 events of one append"),
            }
        }
        let all = feed_all(&store, &Filter::all()).await;
        let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
        assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>(), "the feed has gaps");
        assert!(all.len() as u64 >= acknowledged, "{} events in the feed, {acknowledged} acknowledged", all.len());
        assert!(cancelled > 0, "no append was cancelled (one takes {full:?})");
        println!(
            "one append of 200 events: {full:?}; {cancelled} of 40 cancelled ({} of them had committed); {} events",
            committed_anyway - (40 - cancelled),
            all.len()
        );
    });
}

#[test]
fn a_write_lock_held_elsewhere_past_the_busy_timeout_is_unavailable() {
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(dir.database()).await.unwrap();
        let impatient = SqliteStore::connect_with(
            SqliteStore::file_options(dir.database()).busy_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let mut holder = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO checkpoints VALUES ('x', 0, 0, 0)").execute(&mut *holder).await.unwrap();
        let error = impatient.append("locked-1", ExpectedVersion::Any, vec![event(1)]).await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(error.to_string().contains("appending to stream `locked-1`"), "{error}");
        holder.rollback().await.unwrap();
        impatient.append("locked-1", ExpectedVersion::Any, vec![event(1)]).await.unwrap();
    });
}

/// An append whose file is locked by another connection (another process, say) waits
/// for the lock instead of failing at once: a one-event append (a lone `INSERT ...
/// SELECT`) as much as a longer one (`BEGIN IMMEDIATE`).
#[test]
fn appends_wait_for_a_write_lock_held_elsewhere() {
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(dir.database()).await.unwrap();
        let other = SqliteStore::connect_with(SqliteStore::file_options(dir.database())).await.unwrap();
        for size in [1, 3] {
            let stream = format!("waiting-{size}");
            // The other connection reads the stream, then holds the write lock for 300 ms.
            let mut holder = other.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("SELECT count(*) FROM events").fetch_one(&mut *holder).await.unwrap();
            let started = Instant::now();
            let append = {
                let store = store.clone();
                let stream = stream.clone();
                tokio::spawn(async move {
                    let events = (0..size).map(event).collect();
                    store.append(&stream, ExpectedVersion::Exact(0), events).await
                })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query("INSERT INTO checkpoints VALUES (?1, 0, 0, 0)")
                .bind(&stream)
                .execute(&mut *holder)
                .await
                .unwrap();
            holder.commit().await.unwrap();
            let stored = append.await.unwrap().unwrap();
            assert!(started.elapsed() >= Duration::from_millis(300));
            assert_eq!(stored.len() as u64, size);
            assert_eq!(store.stream_version(&stream).await.unwrap(), size);
        }
    });
}

#[test]
fn checkpoint_transactions_fence_each_other() {
    runtime().block_on(async {
        let store = fresh_store().await;
        let mut first = store.begin().await.unwrap();
        assert!(store.move_checkpoint(&mut first, "c", None, Checkpoint::from_parts(0, 5)).await.unwrap());
        let second = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut second = store.begin().await.unwrap();
                let moved = store.move_checkpoint(&mut second, "c", None, Checkpoint::from_parts(0, 9)).await.unwrap();
                store.commit(second).await.unwrap();
                moved
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "the second transaction began while the first held the checkpoint");
        store.commit(first).await.unwrap();
        assert!(!second.await.unwrap(), "the second transaction moved a checkpoint it did not see");
        assert_eq!(store.load_checkpoint("c").await.unwrap(), Some(Checkpoint::from_parts(0, 5)));
        let mut third = store.begin().await.unwrap();
        let from = Some(Checkpoint::from_parts(0, 5));
        assert!(store.move_checkpoint(&mut third, "c", from, Checkpoint::from_parts(0, 7)).await.unwrap());
        drop(third); // rolled back
        assert_eq!(store.load_checkpoint("c").await.unwrap(), Some(Checkpoint::from_parts(0, 5)));
    });
}

#[test]
fn migrations_are_idempotent_and_safe_from_several_pools_at_once() {
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        // Create the file (and its WAL mode) first; then four pools migrate at once.
        SqliteStore::connect_with(SqliteStore::file_options(dir.database())).await.unwrap().close().await;
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let path = dir.database();
            tasks.push(tokio::spawn(async move {
                let store = SqliteStore::connect_with(SqliteStore::file_options(path)).await.unwrap();
                store.migrate().await.unwrap();
                store.migrate().await.unwrap();
                store
            }));
        }
        let mut stores = Vec::new();
        for task in tasks {
            stores.push(task.await.unwrap());
        }
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, name FROM annals_migrations ORDER BY version")
                .fetch_all(stores[0].pool())
                .await
                .unwrap();
        let known: Vec<(i64, String)> =
            annals_sqlite::migrations().iter().map(|m| (m.version, m.name.to_owned())).collect();
        assert_eq!(applied, known);
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(stores[0].pool()).await.unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(stores[0].pool()).await.unwrap();
        assert_eq!((journal.as_str(), synchronous), ("wal", 2), "WAL, synchronous = FULL");
    });
}

#[test]
fn an_in_memory_database_is_refused_with_an_explanation() {
    runtime().block_on(async {
        let error = SqliteStore::connect("sqlite::memory:").await.unwrap_err();
        assert!(!error.is_transient());
        assert!(error.to_string().contains("in-memory"), "{error}");
    });
}

#[test]
fn a_url_opens_and_creates_the_file() {
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.database().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.append("url-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
        assert!(dir.database().exists());
        let missing = format!("sqlite://{}?mode=rw", dir.path().join("missing.db").display());
        assert!(SqliteStore::connect(&missing).await.is_err(), "`mode=rw` does not create the file");
    });
}

/// Two stores (two pools, two writer queues) on one file, as two processes would be:
/// the write lock orders their appends, so positions are unique and gap-free, every
/// stream's versions are contiguous, and the feed holds every event once.
#[test]
fn two_pools_on_one_file_write_concurrently_without_losing_or_repeating_anything() {
    runtime().block_on(async {
        let dir = TempDir::new().unwrap();
        let a = SqliteStore::open(dir.database()).await.unwrap();
        let b = SqliteStore::open(dir.database()).await.unwrap();
        let mut tasks = Vec::new();
        for (t, store) in [a.clone(), b.clone(), a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = 0u64;
                for i in 0..60u64 {
                    let stream = format!("shared-{}", i % 5);
                    let batch = vec![event(t as u64 * 1000 + i), event(t as u64 * 1000 + i)];
                    store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
                    acknowledged += 2;
                }
                acknowledged
            }));
        }
        let mut acknowledged = 0;
        for task in tasks {
            acknowledged += task.await.unwrap();
        }
        let all = feed_all(&a, &Filter::all()).await;
        assert_eq!(all.len() as u64, acknowledged);
        let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
        assert_eq!(positions, (1..=acknowledged).collect::<Vec<_>>());
        let ids: HashSet<_> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), all.len());
        let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in &all {
            versions.entry(&e.stream_id).or_default().push(e.stream_version);
        }
        for (stream, versions) in versions {
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "{stream}");
        }
        // Both stores see the same feed.
        assert_eq!(feed_all(&b, &Filter::all()).await, all);
    });
}

/// Two pools on one file (two processes, as far as SQLite can tell) with 8 tasks each,
/// 800 one-event appends to 40 streams they share, each expecting the version it read and
/// reading again after a conflict: group commits in both write many appends per
/// transaction while the other pool's writes make their expected versions stale; every
/// append lands exactly once, with contiguous versions.
#[test]
fn group_commits_of_two_pools_on_one_file_lose_and_duplicate_nothing() {
    // One runtime thread, so that the recorder sees every group (SQLite works on sqlx's
    // own threads all the same).
    let recorded = annals::telemetry::Recorded::default();
    let _recorder = metrics::set_default_local_recorder(&recorded);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = TempDir::new().unwrap();
        let first = SqliteStore::open(dir.database()).await.unwrap();
        let second = SqliteStore::connect_with(SqliteStore::file_options(dir.database())).await.unwrap();
        let stream = |task: u64, n: u64| format!("s{}", (task * 7 + n) % 40);
        let mut tasks = Vec::new();
        for (pool, store) in [first.clone(), second.clone()].into_iter().enumerate() {
            for task in 0..8u64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut conflicts = 0u64;
                    for n in 0..50u64 {
                        let id = stream(task, n);
                        loop {
                            let version = store.stream_version(&id).await.unwrap();
                            let payload = json!({ "pool": pool, "task": task, "n": n });
                            let events = vec![NewEvent::new("sqlite.tested", 1, payload)];
                            match store.append(&id, ExpectedVersion::Exact(version), events).await {
                                Ok(_) => break,
                                Err(StoreError::Conflict { .. }) => conflicts += 1,
                                Err(error) => panic!("append to {id} failed: {error}"),
                            }
                        }
                    }
                    conflicts
                }));
            }
        }
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await.unwrap();
        }
        let mut expected = BTreeMap::<String, u64>::new();
        for task in 0..8 {
            for n in 0..50 {
                *expected.entry(stream(task, n)).or_default() += 2; // once per pool
            }
        }
        let mut seen = HashSet::new();
        for (id, appends) in &expected {
            let stored: Vec<annals::Envelope> =
                first.read_stream(id, annals::VersionRange::ALL).try_collect().await.unwrap();
            let versions: Vec<u64> = stored.iter().map(|e| e.stream_version).collect();
            assert_eq!(versions, (1..=*appends).collect::<Vec<_>>(), "{id}");
            for event in &stored {
                assert!(seen.insert(event.payload.to_string()), "{id}: stored twice: {}", event.payload);
            }
        }
        assert_eq!(seen.len(), 800);
        let groups = recorded.of("annals_group_commit_appends");
        let grouped: f64 = groups.iter().sum();
        assert!(!groups.is_empty(), "appends waiting for the writer were written in groups");
        println!("800 appends ({grouped} of them in {} groups), {conflicts} conflicts read again", groups.len());
        first.close().await;
        second.close().await;
    });
}
