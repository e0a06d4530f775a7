//! Hostile stored rows: rows written straight into the store's tables with SQL, bypassing
//! the store, as a hand edit, an old backup or another tool would. The schema refuses
//! what it can; what gets in anyway (with `PRAGMA ignore_check_constraints` and the
//! triggers of migration 4 dropped, as an older schema or another tool would) reads as a
//! typed error naming the stream, version and position (`StoreError::Corrupt`), or a
//! `DecodeError` naming the event, or is read as it is; never a panic, never a wrong
//! state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests report failure by panicking")]

use annals::snapshot::SnapshotPolicy;
use annals::store::{Checkpoint, EventFeed, FeedBatch, Filter, SnapshotStore};
use annals::{DecodeError, Envelope, EventStore, ExpectedVersion, LoadError, NewEvent, Repository, StoreError};
use annals_sqlite::sqlx::sqlite::SqliteConnectOptions;
use annals_sqlite::sqlx::{self, ConnectOptions, SqliteConnection};
use annals_sqlite::testing::TempDir;
use annals_sqlite::SqliteStore;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use shopping_cart::{AddItem, Cart};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A migrated store in a file of its own, and a connection of "another tool" to it.
struct Db {
    store: SqliteStore,
    raw: SqliteConnection,
    _dir: TempDir,
}

impl Db {
    /// The schema as migrated: its CHECKs and triggers on.
    async fn guarded() -> Db {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(dir.database()).await.unwrap();
        let raw = SqliteConnectOptions::new().filename(dir.database()).connect().await.unwrap();
        Db { store, raw, _dir: dir }
    }

    /// The same, but this connection writes what the schema would refuse: CHECKs ignored
    /// (on this connection only) and the triggers of migration 4 dropped.
    async fn unguarded() -> Db {
        let mut db = Db::guarded().await;
        for statement in [
            "PRAGMA ignore_check_constraints = ON",
            "DROP TRIGGER events_refuse_invalid_insert",
            "DROP TRIGGER events_refuse_invalid_update",
            "DROP TRIGGER snapshots_refuse_invalid_insert",
            "DROP TRIGGER snapshots_refuse_invalid_update",
        ] {
            sqlx::query(statement).execute(&mut db.raw).await.unwrap();
        }
        db
    }

    fn carts(&self) -> Repository<Cart, SqliteStore> {
        Repository::new(self.store.clone())
    }

    /// Inserts an event row of `stream` at `version` by SQL; `overrides` replace the SQL
    /// expressions of a plain `cart.item_added` row, column by column. Returns the
    /// row's global position.
    async fn try_insert(&mut self, stream: &str, version: i64, overrides: Overrides<'_>) -> Result<i64, sqlx::Error> {
        let stream = format!("'{}'", stream.replace('\'', "''"));
        let version = version.to_string();
        let columns = [
            ("stream_id", stream.as_str()),
            ("stream_version", version.as_str()),
            ("event_id", "randomblob(16)"),
            ("event_type", "'cart.item_added'"),
            ("event_version", "1"),
            ("payload", r#"'{"sku":"tea","qty":1,"unit_price_cents":450}'"#),
            ("metadata", "NULL"),
            ("correlation_id", "NULL"),
            ("causation_id", "NULL"),
            ("recorded_at", "1700000000000000000"),
        ];
        let values: Vec<&str> = columns
            .iter()
            .map(|(name, default)| overrides.iter().find(|(n, _)| n == name).map_or(*default, |(_, v)| *v))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "INSERT INTO events ({}) VALUES ({}) RETURNING global_position",
            names.join(", "),
            values.join(", ")
        );
        sqlx::query_scalar(&sql).fetch_one(&mut self.raw).await
    }

    async fn insert(&mut self, stream: &str, version: i64, overrides: Overrides<'_>) -> u64 {
        let position = self.try_insert(stream, version, overrides).await.unwrap();
        u64::try_from(position).unwrap()
    }

    async fn read(&self, stream: &str) -> Result<Vec<Envelope>, StoreError> {
        self.store.read_stream(stream, (..).into()).try_collect().await
    }

    async fn feed(&self, after: Checkpoint) -> Result<FeedBatch, StoreError> {
        self.store.read_feed(after, &Filter::all(), 100).await
    }

    /// Appends `n` good events to `stream` through the store; their positions.
    async fn append(&self, stream: &str, n: u64) -> Vec<u64> {
        let events = (0..n).map(|i| NewEvent::new("cart.item_added", 1, item(i))).collect();
        let stored = self.store.append(stream, ExpectedVersion::Any, events).await.unwrap();
        stored.iter().map(|e| e.global_position).collect()
    }
}

/// Column values replacing those of a plain row: `(column, SQL expression)`.
type Overrides<'a> = &'a [(&'a str, &'a str)];

fn item(i: u64) -> serde_json::Value {
    json!({ "sku": format!("sku-{i}"), "qty": 1, "unit_price_cents": 100 })
}

fn add_tea() -> AddItem {
    AddItem { sku: "tea".into(), qty: 1, unit_price_cents: 450 }
}

/// Expects `StoreError::Corrupt` at exactly this place, with `says` in its detail.
#[track_caller]
fn assert_corrupt(error: &StoreError, stream: &str, version: Option<u64>, position: Option<u64>, says: &str) {
    match error {
        StoreError::Corrupt { stream: s, version: v, position: p, detail } => {
            assert_eq!((s.as_str(), *v, *p), (stream, version, position), "where: {error}");
            assert!(detail.contains(says), "the detail says {says:?}: {detail}");
            let message = error.to_string();
            assert!(message.contains(stream) && message.contains("not what annals wrote"), "{message}");
        }
        other => panic!("expected Corrupt at {stream} v{version:?} p{position:?}, got {other:?}"),
    }
}

/// The error of a load that must fail with a store error.
#[track_caller]
fn load_store_error(result: Result<annals::Loaded<Cart>, LoadError>) -> StoreError {
    match result {
        Err(LoadError::Store(error)) => error,
        other => panic!("expected a store error, got {other:?}"),
    }
}

/// A stored row that does not decode: `read_stream` delivers the events before it, then
/// its Corrupt error; the load fails with it. The feed delivers the events before it,
/// then the row in its place as a damaged event when its id and type decode; otherwise
/// the read after the events before it fails with the Corrupt error.
async fn assert_row_corrupt(db: &Db, stream: &str, version: Option<u64>, position: u64, says: &str) {
    let read: Vec<Result<Envelope, StoreError>> = db.store.read_stream(stream, (..).into()).collect::<Vec<_>>().await;
    let (good, bad): (Vec<_>, Vec<_>) = read.into_iter().partition(Result::is_ok);
    assert_eq!(bad.len(), 1, "the read ends with one error");
    assert!(good.iter().flatten().all(|e| e.global_position < position), "only the events before it");
    assert_corrupt(bad[0].as_ref().unwrap_err(), stream, version, Some(position), says);
    let id = stream.strip_prefix("cart-").unwrap();
    let error = load_store_error(db.carts().load(id).await);
    assert_corrupt(&error, stream, version, Some(position), says);
    let mut at = Checkpoint::START;
    loop {
        match db.feed(at).await {
            Ok(batch) => {
                for event in &batch.events {
                    let envelope = &event.envelope;
                    if envelope.global_position == position {
                        let damage = event.damage.as_deref().unwrap_or_default();
                        assert!(damage.contains(says), "`{says}` in: {damage}");
                        assert_eq!((envelope.stream_id.as_str(), Some(envelope.stream_version)), (stream, version));
                        return;
                    }
                    assert!(envelope.global_position < position && event.damage.is_none(), "{batch:?}");
                }
                assert!(batch.next > at, "the feed stopped before position {position} without an error");
                at = batch.next;
            }
            Err(error) => {
                assert_eq!(at, Checkpoint::from_parts(0, position - 1), "the feed fails right at the row");
                assert_corrupt(&error, stream, version, Some(position), says);
                return;
            }
        }
    }
}

#[test]
fn the_schema_refuses_values_annals_never_writes() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        let long = "x".repeat(1025);
        let refused: [(&str, Overrides<'_>, &str); 14] = [
            ("recorded_at 'infinity'", &[("recorded_at", "'infinity'")], "cannot store TEXT value in INTEGER column"),
            ("recorded_at 1e300", &[("recorded_at", "1e300")], "cannot store REAL value in INTEGER column"),
            ("version 0", &[("stream_version", "0")], "CHECK constraint failed"),
            ("version -1", &[("stream_version", "-1")], "CHECK constraint failed"),
            ("event_version -1", &[("event_version", "-1")], "CHECK constraint failed"),
            ("event_version 2^32", &[("event_version", "4294967296")], "CHECK constraint failed"),
            ("payload not JSON", &[("payload", "'not json'")], "CHECK constraint failed"),
            ("metadata []", &[("metadata", "'[]'")], "the metadata must be a JSON object"),
            ("event id of 2 bytes", &[("event_id", "x'0102'")], "CHECK constraint failed"),
            ("empty event type", &[("event_type", "''")], "an event type must be 1 to 255 bytes"),
            ("NUL in event type", &[("event_type", "'a' || char(0) || 'b'")], "an event type must be 1 to 255 bytes"),
            ("NUL in stream id", &[("stream_id", "'cart-a' || char(0) || 'b'")], "a stream id must be 1 to 1024"),
            ("1025-byte stream id", &[("stream_id", &format!("'{long}'"))], "a stream id must be 1 to 1024"),
            ("empty stream id", &[("stream_id", "''")], "CHECK constraint failed"),
        ];
        for (what, overrides, says) in refused {
            let error = db.try_insert("cart-h", 1, overrides).await.expect_err(what).to_string();
            assert!(error.contains(says), "{what}: {error}");
        }
        // Hand edits of stored rows are checked the same way.
        db.insert("cart-h", 1, &[]).await;
        let edit =
            sqlx::query("UPDATE events SET metadata = '[]' WHERE stream_id = 'cart-h'").execute(&mut db.raw).await;
        assert!(edit.unwrap_err().to_string().contains("the metadata must be a JSON object"));
        let snapshots: [(&str, &str, &str); 4] = [
            ("taken_at 'infinity'", "'cart-h', 1, 1, '{}', 'infinity'", "cannot store TEXT value in INTEGER column"),
            ("version -1", "'cart-h', -1, 1, '{}', 0", "CHECK constraint failed"),
            ("state not JSON", "'cart-h', 1, 1, 'nope', 0", "CHECK constraint failed"),
            ("NUL in stream id", "'cart-h' || char(0), 1, 1, '{}', 0", "a stream id must be 1 to 1024"),
        ];
        for (what, values, says) in snapshots {
            let sql = format!(
                "INSERT INTO snapshots (stream_id, stream_version, schema_version, state, taken_at) VALUES ({values})"
            );
            let error = sqlx::query(&sql).execute(&mut db.raw).await.expect_err(what).to_string();
            assert!(error.contains(says), "snapshot {what}: {error}");
        }
        // The one good row is all there is, and the cart loads and takes commands.
        assert_eq!(db.read("cart-h").await.unwrap().len(), 1);
        let committed = db.carts().execute("h", add_tea()).await.unwrap();
        assert_eq!((committed.version, committed.state.items["tea"].qty), (2, 2));
    });
}

#[test]
fn recorded_at_at_the_ends_of_the_stored_range_reads_back() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        db.insert("cart-t", 1, &[("recorded_at", &i64::MIN.to_string())]).await;
        db.insert("cart-t", 2, &[("recorded_at", &i64::MAX.to_string())]).await;
        let read = db.read("cart-t").await.unwrap();
        let times: Vec<DateTime<Utc>> = read.iter().map(|e| e.recorded_at).collect();
        assert_eq!(times, [DateTime::from_timestamp_nanos(i64::MIN), DateTime::from_timestamp_nanos(i64::MAX)]);
        assert_eq!(db.carts().load("t").await.unwrap().version, 2);
        assert_eq!(db.feed(Checkpoint::START).await.unwrap().events.len(), 2);
        // Time travel across them.
        let then = db.carts().load_as_of("t", DateTime::from_timestamp_nanos(0)).await.unwrap();
        assert_eq!(then.version, 1);
        assert_eq!(db.carts().execute("t", add_tea()).await.unwrap().version, 3);
    });
}

#[test]
fn versions_below_one_are_corrupt_where_they_are_read() {
    runtime().block_on(async {
        let mut db = Db::unguarded().await;
        db.append("cart-v", 1).await;
        let zero = db.insert("cart-v", 0, &[]).await;
        let negative = db.insert("cart-w", -1, &[]).await;
        // Stream reads ask for versions 1 and up: the cart holds its one good event.
        assert_eq!(db.read("cart-v").await.unwrap().len(), 1);
        assert_eq!(db.carts().load("v").await.unwrap().version, 1);
        // The version of a stream whose highest version is below 0 is corrupt.
        let error = db.store.stream_version("cart-w").await.unwrap_err();
        assert_corrupt(&error, "cart-w", None, None, "stream version -1 is out of range");
        // The feed reaches the rows and names them.
        let first = db.feed(Checkpoint::START).await.unwrap();
        assert_eq!(first.events.len(), 1, "the good event before them is delivered");
        let error = db.feed(first.next).await.unwrap_err();
        assert_corrupt(&error, "cart-v", None, Some(zero), "stream version 0 is out of range");
        let error = db.feed(Checkpoint::from_parts(0, zero)).await.unwrap_err();
        assert_corrupt(&error, "cart-w", None, Some(negative), "stream version -1 is out of range");
        // A command on the stream appends after version 1.
        assert_eq!(db.carts().execute("v", add_tea()).await.unwrap().version, 2);
    });
}

#[test]
fn a_schema_version_beyond_u32_is_corrupt() {
    runtime().block_on(async {
        for (id, value) in [("big", "4294967296"), ("neg", "-1")] {
            let mut db = Db::unguarded().await;
            let stream = format!("cart-{id}");
            db.append(&stream, 2).await;
            let position = db.insert(&stream, 3, &[("event_version", value)]).await;
            db.append(&stream, 1).await;
            let says = format!("schema version {value} is out of range");
            assert_row_corrupt(&db, &stream, Some(3), position, &says).await;
        }
    });
}

#[test]
fn payloads_that_do_not_read_back_are_corrupt() {
    runtime().block_on(async {
        let cases: [(&str, &str, &str); 3] = [
            ("text", "'not json'", "payload does not read back as JSON: expected ident"),
            ("utf8", "CAST(x'7b22ff223a317d' AS TEXT)", "column `payload` does not decode"),
            ("nul", "'{\"a\": \"' || char(0) || '\"}'", "control character"),
        ];
        for (id, payload, says) in cases {
            let mut db = Db::unguarded().await;
            let stream = format!("cart-{id}");
            db.append(&stream, 1).await;
            let position = db.insert(&stream, 2, &[("payload", payload)]).await;
            assert_row_corrupt(&db, &stream, Some(2), position, says).await;
        }
    });
}

/// JSON that SQLite's `json_valid` accepts but serde_json cannot hold (a number beyond
/// `f64`, nesting deeper than 128) is read as the text it is (the store checks syntax, not
/// what a type can hold) and fails where the event is decoded, naming it.
#[test]
fn payloads_serde_json_cannot_hold_fail_where_decoded() {
    runtime().block_on(async {
        let deep = format!("'{}1{}'", "[".repeat(200), "]".repeat(200));
        for (id, payload, says) in
            [("huge", r#"'{"sku": 1e400}'"#, "number out of range"), ("deep", &deep, "invalid type: sequence")]
        {
            let mut db = Db::guarded().await;
            let stream = format!("cart-{id}");
            db.append(&stream, 1).await;
            db.insert(&stream, 2, &[("payload", payload)]).await;
            let read = db.read(&stream).await.unwrap();
            assert_eq!(read[1].payload.json_text(), payload.trim_matches('\''), "{id}: as stored");
            let feed = db.feed(Checkpoint::START).await.unwrap();
            assert!(feed.events.iter().all(|e| e.damage.is_none()), "{id}");
            match db.carts().load(id).await {
                Err(LoadError::Decode(DecodeError::Payload { stream: named, version, source, .. })) => {
                    assert_eq!((named.as_str(), version), (stream.as_str(), 2), "{id}");
                    assert!(source.to_string().contains(says), "{id}: {source}");
                }
                other => panic!("{id}: expected a payload decode error, got {other:?}"),
            }
        }
    });
}

#[test]
fn a_payload_of_another_shape_is_a_decode_error_naming_the_event() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        db.append("cart-s", 1).await;
        db.insert("cart-s", 2, &[("payload", r#"'{"sku": 5, "qty": -1}'"#)]).await;
        // The store reads it as it is: valid JSON.
        assert_eq!(db.read("cart-s").await.unwrap()[1].payload, json!({ "sku": 5, "qty": -1 }));
        assert_eq!(db.feed(Checkpoint::START).await.unwrap().events.len(), 2);
        match db.carts().load("s").await {
            Err(LoadError::Decode(DecodeError::Payload { stream, version, event_type, event_version, .. })) => {
                assert_eq!(
                    (stream.as_str(), version, event_type.as_str(), event_version),
                    ("cart-s", 2, "cart.item_added", 1)
                )
            }
            other => panic!("expected a payload decode error, got {other:?}"),
        }
    });
}

#[test]
fn metadata_that_is_not_an_object_is_corrupt() {
    runtime().block_on(async {
        for (id, metadata, says) in
            [("list", "'[]'", "invalid type: sequence"), ("null", "'null'", "invalid type: null")]
        {
            let mut db = Db::unguarded().await;
            let stream = format!("cart-{id}");
            db.append(&stream, 1).await;
            let position = db.insert(&stream, 2, &[("metadata", metadata)]).await;
            assert_row_corrupt(&db, &stream, Some(2), position, says).await;
        }
    });
}

#[test]
fn event_ids_and_text_that_do_not_decode_are_corrupt() {
    runtime().block_on(async {
        let cases: [(&str, &str, &str, &str); 3] = [
            ("id", "event_id", "x'0102'", "column `event_id` does not decode"),
            ("cause", "causation_id", "x'01'", "column `causation_id` does not decode"),
            ("type", "event_type", "CAST(x'ff' AS TEXT)", "column `event_type` does not decode"),
        ];
        for (id, column, value, says) in cases {
            let mut db = Db::unguarded().await;
            let stream = format!("cart-{id}");
            db.append(&stream, 1).await;
            let position = db.insert(&stream, 2, &[(column, value)]).await;
            assert_row_corrupt(&db, &stream, Some(2), position, says).await;
        }
    });
}

#[test]
fn a_gap_in_a_streams_versions_fails_the_load() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        db.insert("cart-g", 1, &[]).await;
        let fourth = db.insert("cart-g", 4, &[]).await;
        // Reads return what is stored, gap and all ...
        let read = db.read("cart-g").await.unwrap();
        assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(db.feed(Checkpoint::START).await.unwrap().events.len(), 2);
        assert_eq!(db.store.stream_version("cart-g").await.unwrap(), 4);
        // ... and a load, which would build a state without events 2 and 3, fails naming the gap.
        let error = load_store_error(db.carts().load("g").await);
        assert_corrupt(&error, "cart-g", Some(4), Some(fourth), "from version 1 to version 4");
        let error = db.carts().execute("g", add_tea()).await.unwrap_err();
        assert!(matches!(error, annals::ExecuteError::Store(StoreError::Corrupt { .. })), "{error:?}");
        // So does a version beyond what any stream reaches.
        let max = db.insert("cart-m", i64::MAX, &[]).await;
        let error = load_store_error(db.carts().load("m").await);
        assert_corrupt(&error, "cart-m", Some(i64::MAX.unsigned_abs()), Some(max), "from version 0 to version");
    });
}

#[test]
fn stream_ids_written_by_hand_read_back_and_take_no_new_events() {
    runtime().block_on(async {
        let mut db = Db::unguarded().await;
        let nul = "cart-a\0b";
        let long = format!("cart-{}", "y".repeat(2000));
        db.insert("x", 1, &[("stream_id", "'cart-a' || char(0) || 'b'")]).await;
        db.insert(&long, 1, &[]).await;
        for stream in [nul, long.as_str()] {
            let read = db.read(stream).await.unwrap();
            assert_eq!((read.len(), read[0].stream_id.as_str()), (1, stream));
            let id = stream.strip_prefix("cart-").unwrap();
            assert_eq!(db.carts().load(id).await.unwrap().version, 1);
            match db.carts().execute(id, add_tea()).await {
                Err(annals::ExecuteError::Store(StoreError::InvalidStreamId { stream: s, .. })) => {
                    assert_eq!(s, stream)
                }
                other => panic!("expected InvalidStreamId for {stream:?}, got {other:?}"),
            }
        }
        let feed = db.feed(Checkpoint::START).await.unwrap();
        let ids: Vec<&str> = feed.events.iter().map(|e| e.envelope.stream_id.as_str()).collect();
        assert_eq!(ids, [nul, long.as_str()]);
        // A stream id that is not UTF-8 is corrupt, named as far as it reads.
        let position = db.insert("x", 1, &[("stream_id", "CAST(x'636172742dff' AS TEXT)")]).await;
        let error = db.feed(feed.next).await.unwrap_err();
        assert_corrupt(&error, "cart-\u{fffd}", None, Some(position), "the stream id is not UTF-8");
    });
}

#[test]
fn snapshots_taken_at_the_ends_of_the_stored_range_load() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        let carts = db.carts().with_snapshots(SnapshotPolicy::Every(1000));
        carts.execute("snap", add_tea()).await.unwrap();
        let state = serde_json::to_string(&carts.load("snap").await.unwrap().state).unwrap().replace('\'', "''");
        for taken_at in [i64::MIN, i64::MAX] {
            let sql = format!(
                "INSERT OR REPLACE INTO snapshots (stream_id, stream_version, schema_version, state, taken_at) \
                 VALUES ('cart-snap', 1, 1, '{state}', {taken_at})"
            );
            sqlx::query(&sql).execute(&mut db.raw).await.unwrap();
            let stored = db.store.load_snapshot("cart-snap").await.unwrap().unwrap();
            assert_eq!(stored.taken_at, DateTime::from_timestamp_nanos(taken_at));
            let loaded = carts.load("snap").await.unwrap();
            assert_eq!((loaded.version, loaded.state.items["tea"].qty), (1, 1));
        }
    });
}

/// The store reports a snapshot row it cannot read back as `Corrupt`; the repository
/// ignores it (a snapshot is only a shortcut) and rebuilds the state from the events.
#[test]
fn snapshots_that_do_not_read_back_are_corrupt() {
    runtime().block_on(async {
        let cases: [(&str, &str, &str); 3] = [
            ("schema", "'cart-z', 1, 4294967296, '{}', 0", "schema version 4294967296, out of range"),
            ("state", "'cart-z', 1, 1, 'nope', 0", "the stored snapshot state does not read back as JSON"),
            ("huge", r#"'cart-z', 1, 1, '{"items": 1e999}', 0"#, "number out of range"),
        ];
        for (what, values, says) in cases {
            let mut db = Db::unguarded().await;
            let carts = db.carts().with_snapshots(SnapshotPolicy::Every(1000));
            carts.execute("z", add_tea()).await.unwrap();
            let sql = format!(
                "INSERT INTO snapshots (stream_id, stream_version, schema_version, state, taken_at) VALUES ({values})"
            );
            sqlx::query(&sql).execute(&mut db.raw).await.unwrap();
            let error = db.store.load_snapshot("cart-z").await.unwrap_err();
            assert_corrupt(&error, "cart-z", Some(1), None, says);
            let loaded = carts.load("z").await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((loaded.version, loaded.state.items["tea"].qty), (1, 1), "{what}");
        }
    });
}

#[test]
fn a_snapshot_ahead_of_its_stream_is_ignored() {
    runtime().block_on(async {
        let mut db = Db::guarded().await;
        let carts = db.carts().with_snapshots(SnapshotPolicy::Every(1000));
        carts.execute("ahead", add_tea()).await.unwrap();
        let bogus = r#"{"items": {"ghost": {"qty": 9, "unit_price_cents": 1}}, "checked_out": false}"#;
        for version in [1000, i64::MAX] {
            let sql = format!(
                "INSERT OR REPLACE INTO snapshots (stream_id, stream_version, schema_version, state, taken_at) \
                 VALUES ('cart-ahead', {version}, 1, '{bogus}', 0)"
            );
            sqlx::query(&sql).execute(&mut db.raw).await.unwrap();
            // The snapshot claims a version the stream does not reach: the state is rebuilt from the events.
            let loaded = carts.load("ahead").await.unwrap();
            assert_eq!(loaded.version, 1, "snapshot at {version}");
            assert!(!loaded.state.items.contains_key("ghost"));
        }
        // And commands work on the right version.
        let committed = carts.execute("ahead", add_tea()).await.unwrap();
        assert_eq!((committed.version, committed.state.items["tea"].qty), (2, 2));
    });
}

/// Random hostile values in every column (bounded: 300 rows), written unguarded: every
/// read gives events or a typed error, never a panic, and a load never returns a state
/// built from a row that does not decode.
#[test]
fn random_hostile_rows_read_as_events_or_typed_errors() {
    runtime().block_on(async {
        let mut db = Db::unguarded().await;
        let mut rng = fastrand::Rng::with_seed(133);
        let ints =
            ["0", "-1", "1", "2", "3", "4294967295", "4294967296", "9223372036854775807", "-9223372036854775808"];
        let payloads = [
            r#"'{"sku":"tea","qty":1,"unit_price_cents":450}'"#,
            r#"'{"sku":"tea","qty":4294967296,"unit_price_cents":1}'"#,
            r#"'{"sku":"tea","qty":1,"unit_price_cents":18446744073709551616}'"#,
            r#"'{"sku":"tea","qty":1.5,"unit_price_cents":-1}'"#,
            "'[]'",
            "'null'",
            "'{\"a\": 1e400}'",
            "'not json'",
            "CAST(randomblob(8) AS TEXT)",
        ];
        let metadata = ["NULL", "'{}'", "'[]'", "'{\"k\": [1]}'", "'7'", "'oops'"];
        let types =
            ["'cart.item_added'", "'cart.item_removed'", "'cart.checked_out'", "''", "'nope'", "CAST(x'ff' AS TEXT)"];
        let ids = ["randomblob(16)", "randomblob(3)"];
        let mut written = 0;
        for _ in 0..300 {
            let stream = format!("cart-r{}", rng.u8(..8));
            let version = ints[rng.usize(..ints.len())].parse::<i64>().unwrap();
            let overrides = [
                ("event_version", ints[rng.usize(..ints.len())]),
                ("payload", payloads[rng.usize(..payloads.len())]),
                ("metadata", metadata[rng.usize(..metadata.len())]),
                ("event_type", types[rng.usize(..types.len())]),
                ("event_id", ids[rng.usize(..ids.len())]),
                ("recorded_at", ints[rng.usize(..ints.len())]),
            ];
            // Unique (stream, version) pairs and event ids still hold.
            written += usize::from(db.try_insert(&stream, version, &overrides).await.is_ok());
        }
        assert!(written > 30, "only {written} rows got in");
        for n in 0..8 {
            let stream = format!("cart-r{n}");
            for item in db.store.read_stream(&stream, (..).into()).collect::<Vec<_>>().await {
                if let Err(error) = item {
                    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
                }
            }
            match db.carts().load(&format!("r{n}")).await {
                Ok(_) | Err(LoadError::Decode(_)) | Err(LoadError::Store(StoreError::Corrupt { .. })) => {}
                Err(other) => panic!("untyped load failure: {other:?}"),
            }
        }
        let mut at = Checkpoint::START;
        for _ in 0..1000 {
            match db.feed(at).await {
                Ok(batch) if batch.next == at => break,
                Ok(batch) => at = batch.next,
                Err(StoreError::Corrupt { position: Some(position), .. }) => at = Checkpoint::from_parts(0, position),
                Err(other) => panic!("untyped feed failure: {other:?}"),
            }
        }
    });
}

/// Metadata that is not an object (stored before the triggers of migration 4 refused it)
/// is a damaged event in the feed: a consumer stops at it or parks it, and after the row
/// is repaired, retrying applies it (the shared case of `annals::conformance::poison`).
#[test]
fn a_damaged_row_is_parked_and_retried_after_a_repair() {
    runtime().block_on(async {
        let db = Db::guarded().await;
        let edit = async |store: &SqliteStore, metadata: &str| {
            sqlx::raw_sql(&format!(
                "DROP TRIGGER IF EXISTS events_refuse_invalid_update; \
                 UPDATE events SET metadata = '{metadata}' WHERE stream_id = 's-1' AND stream_version = 2"
            ))
            .execute(store.pool())
            .await
            .unwrap();
        };
        annals::conformance::poison::a_damaged_row_stops_a_consumer_or_is_parked_and_retried_after_a_repair(
            db.store.clone(),
            async |store: &SqliteStore| edit(store, "[]").await,
            async |store: &SqliteStore| edit(store, "{}").await,
        )
        .await;
    });
}
