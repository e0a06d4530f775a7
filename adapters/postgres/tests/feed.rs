//! What only the PostgreSQL feed can get wrong, beyond the suites of `conformance.rs`:
//! transactions that commit out of position order, transactions held open or rolled
//! back, filters pushed down to SQL with characters `LIKE` would treat specially, and
//! LISTEN/NOTIFY wake-ups (see `annals_postgres::feed`).
//!
//! The server is `DATABASE_URL` when set, otherwise a throwaway server (see
//! `annals_postgres::testing`). Each test works in a schema of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use annals::store::{Checkpoint, EventFeed, FeedBatch, Filter};
use annals::{EventStore, ExpectedVersion, NewEvent};
use annals_postgres::sqlx::{self, PgConnection};
use annals_postgres::testing::fresh_store;
use annals_postgres::PostgresStore;
use futures::StreamExt;
use serde_json::json;

/// Tests that hold a writing transaction open hold back every feed reader on the server:
/// they run alone, the others together.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn store() -> PostgresStore {
    fresh_store().await.expect("a PostgreSQL store in a fresh schema")
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("e", 1, json!({ "n": n }))
}

/// Inserts an event with a raw statement inside the caller's transaction.
async fn insert_raw(conn: &mut PgConnection, store: &PostgresStore, stream: &str, version: i64, n: u64) {
    sqlx::query(&format!(
        "INSERT INTO {}.events (stream_id, stream_version, event_type, event_version, payload, event_id) \
         VALUES ($1, $2, 'e', 1, $3, gen_random_uuid())",
        store.schema().quoted()
    ))
    .bind(stream)
    .bind(version)
    .bind(json!({ "n": n }))
    .execute(conn)
    .await
    .unwrap();
}

fn ns(batch: &FeedBatch) -> Vec<u64> {
    batch.events.iter().map(|e| e.envelope.payload["n"].as_u64().unwrap()).collect()
}

/// A transaction that started writing first but takes its position last: while it is
/// open, the events committed after it are held back (a reader would otherwise resume past
/// the position it is about to fill); once it commits, both arrive, the older
/// transaction's first, and nothing is ever delivered behind a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_back_later_commits_and_nothing_is_skipped() {
    let _gate = GATE.write().await;
    let store = store().await;
    store.append("s-0", ExpectedVersion::Exact(0), vec![event(0)]).await.unwrap();
    let mut slow = store.pool().begin().await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::int8").fetch_one(&mut *slow).await.unwrap();
    store.append("s-1", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap(); // position 2, committed
    let first = store.read_feed(Checkpoint::START, &Filter::all(), 100).await.unwrap();
    assert_eq!(ns(&first), [0], "event 1 must wait for the open transaction");
    insert_raw(&mut slow, &store, "s-2", 1, 2).await; // position 3, but an older transaction
    let again = store.read_feed(first.next, &Filter::all(), 100).await.unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.next, first.next, "no progress while held back");
    slow.commit().await.unwrap();
    let rest = store.read_feed(first.next, &Filter::all(), 100).await.unwrap();
    assert_eq!(ns(&rest), [2, 1], "transaction order, not position order");
    let positions: Vec<u64> = rest.events.iter().map(|e| e.envelope.global_position).collect();
    assert_eq!(positions, [3, 2]);
    assert!(rest.events.windows(2).all(|w| w[0].checkpoint < w[1].checkpoint));
    assert!(rest.events[0].checkpoint > first.next);
    // A checkpoint's parts: the writing transaction's id and the event's global position.
    assert!(rest.events.iter().all(|e| e.checkpoint.parts().1 == e.envelope.global_position));
}

/// A rolled-back transaction blocks nobody and its events are never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_blocks_nobody() {
    let _gate = GATE.write().await;
    let store = store().await;
    let mut doomed = store.pool().begin().await.unwrap();
    insert_raw(&mut doomed, &store, "doomed", 1, 99).await;
    store.append("s", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    assert!(store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap().events.is_empty());
    doomed.rollback().await.unwrap();
    store.append("s", ExpectedVersion::Exact(1), vec![event(2)]).await.unwrap();
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
    assert_eq!(ns(&batch), [1, 2]);
}

/// Pages: a full page continues after its last event; events the filter skips are not
/// scanned again, and with nothing new the checkpoint stays put (no spinning), even when
/// unrelated transactions move the horizon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_skipped_events_advance_the_checkpoint_once() {
    let _gate = GATE.read().await;
    let store = store().await;
    for n in 0..5 {
        store.append("s", ExpectedVersion::Any, vec![event(n)]).await.unwrap();
    }
    // Tests running alongside write in this database too: wait for their transactions.
    store.settle().await.unwrap();
    let page = store.read_feed(Checkpoint::START, &Filter::all(), 3).await.unwrap();
    assert_eq!(ns(&page), [0, 1, 2]);
    assert_eq!(page.next, page.events[2].checkpoint);
    let rest = store.read_feed(page.next, &Filter::all(), 3).await.unwrap();
    assert_eq!(ns(&rest), [3, 4]);
    let none = Filter::all().event_types(["nothing.matches"]);
    let skipped = store.read_feed(Checkpoint::START, &none, 3).await.unwrap();
    assert!(skipped.events.is_empty());
    assert_eq!(skipped.next, rest.next, "past every skipped event");
    let other = format!("{}.other", store.schema().quoted());
    sqlx::raw_sql(&format!("CREATE TABLE {other} (x int); INSERT INTO {other} VALUES (1)"))
        .execute(store.pool())
        .await
        .unwrap();
    let idle = store.read_feed(rest.next, &Filter::all(), 3).await.unwrap();
    assert!(idle.events.is_empty());
    assert_eq!(idle.next, rest.next);
}

/// Stream and category filters are exact, whatever characters the names contain
/// (`%`, `_` and `\` mean nothing special), and agree with `Filter::matches`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_category_filters_match_names_literally() {
    let _gate = GATE.read().await;
    let store = store().await;
    let streams = ["a_b-1", "axb-1", "a%-1", "a%x-1", "a\\-1", "a_b", "a_b-", "A_b-2"];
    for (n, stream) in (0u64..).zip(streams) {
        store.append(stream, ExpectedVersion::Exact(0), vec![event(n)]).await.unwrap();
    }
    let read = |filter: Filter| {
        let store = store.clone();
        async move { ns(&store.read_feed(Checkpoint::START, &filter, 100).await.unwrap()) }
    };
    assert_eq!(read(Filter::all().category("a_b")).await, [0], "`a_b-` has no id after the category");
    assert_eq!(read(Filter::all().category("a%")).await, [2]);
    assert_eq!(read(Filter::all().category("a\\")).await, [4]);
    assert_eq!(read(Filter::all().stream("a_b")).await, [5]);
    assert_eq!(read(Filter::all().stream("a%-1")).await, [2]);
    for filter in [Filter::all().category("a_b"), Filter::all().category("a%"), Filter::all().stream("a_b")] {
        let delivered = read(filter.clone()).await;
        let expected: Vec<u64> =
            (0u64..).zip(streams).filter(|(_, s)| filter.matches(s, "e")).map(|(n, _)| n).collect();
        assert_eq!(delivered, expected, "{filter:?}: SQL and Filter::matches agree");
    }
}

/// Appends wake subscribers through LISTEN/NOTIFY; a rolled-back insert wakes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wake_subscribers() {
    let _gate = GATE.write().await;
    let store = store().await;
    let mut wakeups = store.wakeups().await.unwrap();
    store.append("s", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), wakeups.next()).await.expect("a wake-up within 5 s").unwrap();
    let mut doomed = store.pool().begin().await.unwrap();
    insert_raw(&mut doomed, &store, "doomed", 1, 9).await;
    doomed.rollback().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), wakeups.next()).await.is_err());
}

/// An append rejected for its expected version writes nothing and notifies nobody
/// (migration 8): the notification that follows it on the channel is the marker sent
/// after it, not an empty one from the rejected insert. Two conflicting appends of one
/// and of two events, then a written one: exactly one empty notification, after the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_append_notifies_nobody() {
    let _gate = GATE.write().await;
    let store = store().await;
    let channel = format!("annals:{}", store.schema().as_str());
    let mut listener = sqlx::postgres::PgListener::connect_with(store.pool()).await.unwrap();
    listener.listen(&channel).await.unwrap();
    store.append("s", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "", "a written append notifies");
    for events in [vec![event(2)], vec![event(3), event(4)]] {
        let rejected = store.append("s", ExpectedVersion::Exact(5), events).await;
        assert!(matches!(rejected, Err(annals::StoreError::Conflict { actual: 1, .. })), "{rejected:?}");
    }
    sqlx::query("SELECT pg_notify($1, 'marker')").bind(&channel).execute(store.pool()).await.unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "marker", "the rejected appends sent nothing");
    store.append("s", ExpectedVersion::Exact(1), vec![event(5), event(6)]).await.unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "", "a written batch notifies once");
    sqlx::query("SELECT pg_notify($1, 'marker')").bind(&channel).execute(store.pool()).await.unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "marker", "and only once");
}

/// A writer whose connections set `annals.notify = off` wakes nobody (its appends skip
/// NOTIFY and its commit-serializing lock); readers still find its events by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_can_opt_out_of_notifications_and_subscribers_still_poll() {
    let _gate = GATE.write().await;
    let store = store().await;
    let url = annals_postgres::testing::database_url().unwrap();
    let quiet_options = PostgresStore::connect_options(&url).unwrap().options([("annals.notify", "off")]);
    let quiet_pool = PostgresStore::pool_options().connect_with(quiet_options).await.unwrap();
    let quiet_writer = PostgresStore::new(quiet_pool).with_schema(store.schema().clone());
    let mut wakeups = store.wakeups().await.unwrap();
    quiet_writer.append("quiet", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), wakeups.next()).await.is_err(),
        "no notification from an opted-out writer"
    );
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
    assert_eq!(batch.events.len(), 1, "the event is there for a polling reader");
    store.append("loud", ExpectedVersion::Exact(0), vec![event(2)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), wakeups.next()).await.expect("other writers still notify").unwrap();
}

/// A transaction that has written in *another* database of the server (idle in
/// transaction, holding its transaction id) cannot write this database's events: the
/// feed does not wait for it, and the status API does not list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transaction_in_another_database_does_not_hold_the_feed_back() {
    let _gate = GATE.write().await;
    let store = store().await;
    let other = format!("annals_other_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE {other}")).execute(store.pool()).await.unwrap();
    let url = annals_postgres::testing::database_url().unwrap();
    let options = PostgresStore::connect_options(&url).unwrap().database(&other).application_name("annals-elsewhere");
    let mut elsewhere = <PgConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
    sqlx::raw_sql("BEGIN; CREATE TABLE t (x int); INSERT INTO t VALUES (1)").execute(&mut elsewhere).await.unwrap();
    let xid: i64 =
        sqlx::query_scalar("SELECT pg_current_xact_id()::text::int8").fetch_one(&mut elsewhere).await.unwrap();

    store.append("s", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
    assert_eq!(ns(&batch), [1], "the other database's transaction must not hold the feed back");
    store.settle().await.unwrap(); // nor `settle`
    let blockers = store.feed_blockers().await.unwrap();
    assert!(blockers.iter().all(|b| b.xid != xid), "{blockers:?}");

    sqlx::raw_sql("ROLLBACK").execute(&mut elsewhere).await.unwrap();
    drop(elsewhere);
    sqlx::raw_sql(&format!("DROP DATABASE {other} WITH (FORCE)")).execute(store.pool()).await.unwrap();
}

/// A transaction in *this* database that has written and sits idle holds the feed back
/// (it may still append events that sort first); the status API names it (pid, xid, age,
/// state, query, application), and once it ends the held events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transaction_in_this_database_holds_the_feed_back_and_is_named() {
    let _gate = GATE.write().await;
    let store = store().await.warn_when_feed_held_back_for(Duration::ZERO);
    let url = annals_postgres::testing::database_url().unwrap();
    let options = PostgresStore::connect_options(&url).unwrap().application_name("annals-forgotten");
    let mut forgotten = <PgConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
    let table = format!("{}.scratch", store.schema().quoted());
    sqlx::raw_sql(&format!("CREATE TABLE {table} (x int)")).execute(store.pool()).await.unwrap();
    sqlx::raw_sql(&format!("BEGIN; INSERT INTO {table} VALUES (1)")).execute(&mut forgotten).await.unwrap();
    let (pid, xid): (i32, i64) = sqlx::query_as("SELECT pg_backend_pid(), pg_current_xact_id()::text::int8")
        .fetch_one(&mut forgotten)
        .await
        .unwrap();

    store.append("s", ExpectedVersion::Exact(0), vec![event(1)]).await.unwrap();
    for _ in 0..2 {
        // The second read is past the (zero) threshold: it also warns, naming the blocker.
        let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
        assert!(batch.events.is_empty(), "held back by the idle transaction");
    }
    let blockers = store.feed_blockers().await.unwrap();
    let blocker = blockers.iter().find(|b| b.pid == Some(pid)).unwrap_or_else(|| panic!("{blockers:?}"));
    assert_eq!(blocker.xid, xid);
    assert_eq!(blocker.state.as_deref(), Some("idle in transaction"));
    assert_eq!(blocker.application_name.as_deref(), Some("annals-forgotten"));
    assert!(blocker.query.as_deref().is_some_and(|q| q.contains("SELECT pg_backend_pid()")), "{blocker:?}");
    assert!(blocker.age.is_some());
    assert!(blocker.to_string().contains(&format!("pid {pid}")));

    sqlx::raw_sql("COMMIT").execute(&mut forgotten).await.unwrap();
    let batch = store.read_feed(Checkpoint::START, &Filter::all(), 10).await.unwrap();
    assert_eq!(ns(&batch), [1]);
}

/// The feed suite again, with two subscribers following each store, so that reads near
/// the head are answered from the window of the feed they share (`feed_window.rs`). The
/// followers are wake-up streams kept alive by a task on the case's runtime.
mod with_shared_reads {
    use annals::store::EventFeed;

    annals::feed_conformance_tests!(async {
        // Like the other tests of this file that do not hold transactions open: together.
        let turn = crate::GATE.read().await;
        let store = annals_postgres::testing::fresh_store().await.expect("a PostgreSQL store in a fresh schema");
        let followers = (store.wakeups().await.expect("a wake-up stream"), store.wakeups().await.expect("another"));
        tokio::spawn(async move {
            let _kept = (turn, followers);
            std::future::pending::<()>().await
        });
        store
    });
}

/// The feed filters partitions in SQL and the shared window in Rust: both must place
/// every stream in the same partition. Compares the server's hash with
/// `annals::store::stream_hash` for ids of every length from 0 to 40 bytes, multi-byte
/// characters, and ids that differ only in case or a trailing byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_places_streams_in_partitions_as_annals_does() {
    let _shared = GATE.read().await;
    let store = store().await;
    let mut ids: Vec<String> = (0..=40).map(|n| "x".repeat(n)).collect();
    ids.extend((0..500).map(|n| format!("cart-{n}")));
    ids.extend((0..200).map(|n| format!("Ünïcödé-strëam-{n}-✓")));
    ids.extend(["CART-1", "cart-1 ", "a\\b", "%_", "\u{10FFFF}"].map(String::from));
    let server: Vec<(String, i64)> =
        sqlx::query_as(r#"SELECT id, hashtext(id COLLATE "C")::int8 & 4294967295 FROM unnest($1::text[]) AS id"#)
            .bind(&ids)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(server.len(), ids.len());
    for (id, hash) in server {
        assert_eq!(hash, i64::from(annals::store::stream_hash(&id)), "stream `{id}`");
    }
}

/// A partition's page is read in index order, stopping at the page: the planner must not
/// take the partition filter for a rare match and sort everything after the checkpoint
/// instead (what `hash % count = index` made it do: 11 ms per page over 40,000 events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_page_is_read_in_index_order_without_sorting_the_backlog() {
    let _shared = GATE.read().await;
    let store = store().await;
    let events = format!("{}.events", store.schema().quoted());
    sqlx::query(&format!(
        "INSERT INTO {events} (stream_id, stream_version, event_type, event_version, payload, event_id) \
         SELECT 'cart-' || (n % 400), n / 400 + 1, 'cart.item_added', 1, '{{}}', gen_random_uuid() \
         FROM generate_series(0, 39999) AS n"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE {events}")).execute(store.pool()).await.unwrap();
    let feed = annals_postgres::feed::page_sql_for_benchmarks(&store, true, 500);
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {feed}"))
        .bind(0i64)
        .bind(0i64)
        .bind(vec!["cart.item_added".to_owned()])
        .bind(4i64)
        .bind(1i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using"), "{plan}");
    assert!(!plan.contains("Bitmap Heap Scan"), "{plan}");
    // The outer sort orders the page's 500 rows; none sorts the backlog.
    let sorted: Vec<&str> = plan.lines().filter(|l| l.contains("Sort Method")).collect();
    assert!(sorted.len() <= 1, "{plan}");
    // And the page holds the partition's events only, 500 of them.
    let batch = store
        .read_feed(Checkpoint::START, &Filter::all().partition(annals::store::Partition::new(1, 4).unwrap()), 500)
        .await
        .unwrap();
    assert_eq!(batch.events.len(), 500);
    assert!(batch.events.iter().all(|e| annals::store::Partition::new(1, 4).unwrap().contains(&e.envelope.stream_id)));
}

/// The page size is written into the feed's statement: any size a caller asks for reads,
/// the largest ones as "everything" (PostgreSQL's `LIMIT` takes an `int8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_page_size_reads() {
    let store = store().await;
    let events = (0..3u64).map(|n| NewEvent::new("e", 1, json!({ "n": n }))).collect();
    store.append("s-1", ExpectedVersion::Exact(0), events).await.unwrap();
    let filter = Filter::all().stream("s-1");
    // Other tests of this binary hold transactions open, which holds back the horizon
    // (server-wide): wait until the three events are readable, then page through them.
    let mut everything = store.read_feed(Checkpoint::START, &filter, usize::MAX).await.unwrap();
    for _ in 0..300 {
        if everything.events.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        everything = store.read_feed(Checkpoint::START, &filter, usize::MAX).await.unwrap();
    }
    assert_eq!(everything.events.len(), 3, "a page of usize::MAX");
    for limit in [1, 2] {
        let batch = store.read_feed(Checkpoint::START, &filter, limit).await.unwrap();
        assert_eq!(batch.events.len(), limit, "page of {limit}");
    }
}
