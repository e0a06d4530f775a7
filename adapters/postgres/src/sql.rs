//! Every SQL statement of the adapter, built here and only here: once per store for its
//! schema ([`Statements`]), or as constants when they name no table.
//!
//! The quoted, validated schema name is the only text formatted into them; every value
//! is a bind parameter. sqlx prepares each statement once per connection and reuses it.

use crate::rows::{EVENT_COLUMNS, EVENT_COLUMN_TYPES, FOLD_COLUMNS, STREAM_READ_COLUMNS};
use crate::schema::SchemaName;

/// Whether a schema exists. `$1` schema name.
pub(crate) const SCHEMA_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";

/// Waits for the transaction-level advisory lock `$1` (text key).
pub(crate) const ADVISORY_XACT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";

/// Takes the session-level advisory lock `$1` (text key) if it is free; returns whether
/// it did. Released when the session ends.
pub(crate) const TRY_ADVISORY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";

/// A stream's partition hash in SQL, [`annals::store::stream_hash`]: `hashtext` of the
/// id's bytes (`COLLATE "C"`: whatever the column's collation) as an unsigned 32-bit
/// integer, in an `int8`.
const PARTITION_HASH: &str = r#"(hashtext(stream_id COLLATE "C")::int8 & 4294967295)"#;

/// [`PARTITION_HASH`] of `$1`: what the store compares with
/// [`stream_hash`](annals::store::stream_hash) before it reads a partition.
pub(crate) const PARTITION_HASH_OF: &str = r#"SELECT (hashtext($1 COLLATE "C")::int8 & 4294967295)"#;

/// Which filters a feed read applies, which picks its statement (see
/// [`Statements::feed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FeedShape {
    /// Only some event types.
    pub(crate) types: bool,
    /// Only one stream, or one category.
    pub(crate) streams: StreamShape,
    /// Only one partition (of more than one).
    pub(crate) partition: bool,
}

/// The stream part of a [`FeedShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamShape {
    All,
    Stream,
    Category,
}

impl FeedShape {
    /// Every shape, each at its [`index`](Self::index).
    pub(crate) const ALL: [FeedShape; 12] = {
        let streams = [StreamShape::All, StreamShape::Stream, StreamShape::Category];
        let mut all = [FeedShape { types: false, streams: StreamShape::All, partition: false }; 12];
        let mut i = 0;
        while i < 12 {
            all[i] = FeedShape { types: i % 2 == 1, streams: streams[(i / 2) % 3], partition: i >= 6 };
            i += 1;
        }
        all
    };

    /// Where the shape is in [`ALL`](Self::ALL) (and its statement in `Statements::feed`).
    pub(crate) fn index(self) -> usize {
        let streams = match self.streams {
            StreamShape::All => 0,
            StreamShape::Stream => 1,
            StreamShape::Category => 2,
        };
        usize::from(self.types) + 2 * streams + 6 * usize::from(self.partition)
    }
}

/// Releases the session-level advisory lock `$1` (text key) that
/// [`TRY_ADVISORY_LOCK`] took.
pub(crate) const ADVISORY_UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";

/// Takes the session-level advisory lock on the two `int4` keys `hashtext($1)` (the
/// instances of one partitioned consumer, [`Statements::consumer_members_key`]) and `$2`
/// (one instance) if it is free; returns whether it did.
pub(crate) const TRY_MEMBER_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext($1), $2)";

/// How many sessions of this database hold a [`TRY_MEMBER_LOCK`] lock of `$1`: the
/// instances running a partitioned consumer. A lock on two `int4` keys shows in
/// `pg_locks` with the first in `classid`, the second in `objid`, and `objsubid` 2.
pub(crate) const COUNT_MEMBERS: &str = "\
    SELECT count(*) FROM pg_locks \
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted \
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
      AND classid = hashtext($1)::oid";

/// The first transaction id not yet assigned when the statement's snapshot was taken.
pub(crate) const SNAPSHOT_XMAX: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8";

/// The transactions holding the feed's horizon back that run in this database: the
/// running transactions of the statement's snapshot that are not confirmed running in
/// another database, with what `pg_stat_activity` (or, for prepared transactions,
/// `pg_prepared_xacts`) says about them, oldest first. Columns `pid` (NULL for a
/// prepared transaction), `xid`, `age_seconds`, `state`, `query`, `application_name`.
pub(crate) const FEED_BLOCKERS: &str = "\
     SELECT activity.pid, running.xid::text::int8 AS xid, \
            extract(epoch FROM now() - coalesce(activity.xact_start, prepared.prepared))::float8 AS age_seconds, \
            coalesce(activity.state, CASE WHEN prepared.gid IS NOT NULL THEN 'prepared' END) AS state, \
            left(coalesce(activity.query, 'PREPARE TRANSACTION ' || prepared.gid), 200) AS query, \
            activity.application_name::text AS application_name \
     FROM pg_snapshot_xip(pg_current_snapshot()) AS running(xid) \
     LEFT JOIN pg_stat_activity AS activity ON activity.backend_xid = running.xid::xid \
     LEFT JOIN pg_prepared_xacts AS prepared ON prepared.transaction = running.xid::xid \
     WHERE NOT coalesce(activity.datname <> current_database(), false) \
       AND NOT coalesce(prepared.database <> current_database(), false) \
     ORDER BY running.xid";

/// The names of the schemas starting with `$1`.
#[cfg(feature = "testing")]
pub(crate) const SCHEMAS_STARTING_WITH: &str = "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)";

/// Drops `schema` and everything in it.
#[cfg(feature = "testing")]
pub(crate) fn drop_schema(schema: &SchemaName) -> String {
    format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted())
}

/// The SQL of a migration template for `schema`: every `{schema}` becomes the quoted name.
pub(crate) fn migration(template: &str, schema: &SchemaName) -> String {
    template.replace("{schema}", &schema.quoted())
}

/// The statements (and the names they share with the database, such as lock keys and the
/// notification channel) of one store, for its schema.
/// Where a feed statement's page size goes (see [`Statements::feed_page`]).
const PAGE_SIZE: &str = "/* page size */";

#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) schema: SchemaName,

    // Appending.
    /// `$1` stream, `$2` expected current version (NULL: any), `$3..$9` one array per
    /// column of the new events. Returns one row per inserted event, none when the stream
    /// was not at the expected version.
    pub(crate) append: String,
    /// `$1` stream, `$2` expected current version (NULL: any), `$3..$9` the columns of
    /// one new event: the statement of [`append`](Self::append) without arrays.
    pub(crate) append_one: String,
    /// `$1` stream, `$2..$8` the columns of one new event, for a stream expected to be
    /// empty: version 1, no lookup (the unique index rejects it if the stream exists).
    pub(crate) append_first: String,
    /// Appends to several streams at once (a group commit, `group_commit.rs`): `$1`
    /// stream, `$2` expected version (NULL: any) and `$3` the event's number within its
    /// append (1, 2, ...), then `$4..$10` the columns of [`append`](Self::append), one
    /// element per new event. Each stream's events are written only if it is at its
    /// expected version; returns one row per inserted event, with its `stream_id`.
    pub(crate) append_grouped: String,
    /// After a failed append, in one round trip: `$1` event ids, `$2` stream; the events
    /// stored under those ids (every column, `NULL`s when none is) and, on every row,
    /// the stream's current version as `actual`.
    pub(crate) rejected_append: String,

    // Reading.
    /// `$1` stream, `$2` first version, `$3` last version; the stream read columns.
    pub(crate) read_stream: String,
    /// `$1` stream, `$2` first version, `$3` last version; the [`FOLD_COLUMNS`] only.
    pub(crate) read_stream_to_fold: String,
    /// `$1` stream.
    pub(crate) stream_version: String,
    /// `$1` correlation id; every column, in global order.
    pub(crate) events_by_correlation: String,
    /// `$1` causation id; every column, in global order.
    pub(crate) events_by_causation: String,
    /// The feed reads, one per [`FeedShape`] (by [`FeedShape::index`]), see
    /// [`feed`](Self::feed), with [`PAGE_SIZE`] where the page size goes: read them with
    /// [`feed_page`](Self::feed_page).
    pub(crate) feed: Vec<String>,
    /// The channel the events table's trigger notifies (migration 2): at most 63 bytes,
    /// PostgreSQL's identifier limit.
    pub(crate) channel: String,

    // Snapshots.
    /// `$1` stream. The stored snapshot's columns, no row when there is none.
    pub(crate) load_snapshot: String,
    /// `$1` stream, `$2` stream version, `$3` schema version, `$4` state, `$5` taken at.
    pub(crate) save_snapshot: String,

    /// `$1` global position. Column `commit`: the writing transaction's id.
    pub(crate) transaction_of: String,
    /// The feed's horizon (migration 9's `feed_horizon()`, see `feed.rs`) as an `int8`.
    pub(crate) horizon: String,

    // Listings for operators (`Inspect`).
    /// `$1` category (NULL: all), `$2` limit. Columns `stream_id`, `version`, `last_recorded_at`.
    pub(crate) list_streams: String,
    /// `$1` the consumers' lock key prefix ([`consumer_lock_key`](Self::consumer_lock_key)
    /// of `""`). Columns `name`, `commit`, `position`, `updated_at`, and `held_by`: the
    /// session holding the consumer's runner lock (`pid N (application)`), or NULL; by name.
    pub(crate) list_consumers: String,

    // Consumers' checkpoints.
    /// `$1` name. Columns `commit`, `position`; no row when there is none.
    pub(crate) load_checkpoint: String,
    /// `$1` name, `$2`, `$3` the expected parts, `$4`, `$5` the new parts. Updates (and
    /// locks) the row only if it holds the expected parts.
    pub(crate) move_checkpoint: String,
    /// `$1` name, `$2`, `$3` the parts. Inserts the row unless one exists (waiting for a
    /// concurrent insert of the same name to end).
    pub(crate) insert_checkpoint: String,
    /// `$1` name.
    pub(crate) delete_checkpoint: String,

    // Consumers' dead letters.
    /// `$1` consumer, `$2` event id, `$3`, `$4` the event's checkpoint parts, `$5` reason,
    /// `$6` parked at, `$7` the event it waits behind. Replaces an existing row.
    pub(crate) park: String,
    /// `$1` consumer. Every event column, then `commit`, `position`, `reason`,
    /// `parked_at`, `behind`; in feed order.
    pub(crate) parked: String,
    /// `$1` consumer, `$2` event id.
    pub(crate) unpark: String,

    // Process managers' deadlines.
    /// `$1` id, `$2` process, `$3` instance, `$4` due time, `$5` type, `$6` payload (text).
    /// Keeps an existing row with the id.
    pub(crate) schedule_deadline: String,
    /// `$1` ids.
    pub(crate) remove_deadlines: String,
    /// `$1` process, `$2` now, `$3` limit: the due deadlines, earliest first.
    pub(crate) due_deadlines: String,
    /// `$1` process: when the earliest deadline is due.
    pub(crate) next_deadline: String,

    // Migrations.
    pub(crate) create_schema: String,
    /// Creates the migrations bookkeeping table when missing.
    pub(crate) bootstrap: String,
    pub(crate) applied_migrations: String,
    /// `$1` version, `$2` name.
    pub(crate) record_migration: String,
    /// The key of the advisory lock migrations of this schema take turns on.
    pub(crate) migrate_lock_key: String,
}

impl Statements {
    pub(crate) fn new(schema: SchemaName) -> Self {
        let s = schema.quoted();
        let all = EVENT_COLUMNS.join(", ");
        let stream_read = EVENT_COLUMNS[..STREAM_READ_COLUMNS].join(", ");
        let mut channel = format!("annals:{}", schema.as_str());
        channel.truncate(63); // schema names are ASCII
        let checkpoints = format!("{s}.projection_checkpoints");
        Statements {
            append: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 SELECT $1, current.version + new.ordinal, new.event_id, new.event_type, new.event_version, \
                        new.payload::json, coalesce(new.metadata::json, '{{}}'::json), new.correlation_id, new.causation_id \
                 FROM (SELECT coalesce(max(stream_version), 0) AS version FROM {s}.events WHERE stream_id = $1) \
                          AS current \
                 CROSS JOIN unnest($3::uuid[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::uuid[], \
                                   $9::uuid[]) \
                     WITH ORDINALITY AS new(event_id, event_type, event_version, payload, metadata, correlation_id, \
                                            causation_id, ordinal) \
                 WHERE $2::int8 IS NULL OR current.version = $2::int8 \
                 ORDER BY new.ordinal \
                 RETURNING global_position, stream_version, recorded_at"
            ),
            append_one: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 SELECT $1, current.version + 1, $3, $4, $5, $6::text::json, coalesce($7::text::json, '{{}}'::json), $8, $9 \
                 FROM (SELECT coalesce(max(stream_version), 0) AS version FROM {s}.events WHERE stream_id = $1) \
                          AS current \
                 WHERE $2::int8 IS NULL OR current.version = $2::int8 \
                 RETURNING global_position, stream_version, recorded_at"
            ),
            append_first: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 VALUES ($1, 1, $2, $3, $4, $5::text::json, coalesce($6::text::json, '{{}}'::json), $7, $8) \
                 RETURNING global_position, stream_version, recorded_at"
            ),
            // Rows go in by stream, then version: concurrent group commits in other
            // processes take the unique index's entries in the same order, so they wait
            // for each other instead of deadlocking.
            append_grouped: format!(
                "WITH new AS (\
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[], $4::uuid[], $5::text[], $6::int4[], \
                                          $7::text[], $8::text[], $9::uuid[], $10::uuid[]) \
                         AS new(stream_id, expected, step, event_id, event_type, event_version, payload, metadata, \
                                correlation_id, causation_id)), \
                 current AS (\
                     SELECT streams.stream_id, \
                            (SELECT coalesce(max(stream_version), 0) FROM {s}.events \
                             WHERE {s}.events.stream_id = streams.stream_id) AS version \
                     FROM (SELECT DISTINCT stream_id FROM new) AS streams) \
                 INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 SELECT new.stream_id, current.version + new.step, new.event_id, new.event_type, new.event_version, \
                        new.payload::json, coalesce(new.metadata::json, '{{}}'::json), new.correlation_id, new.causation_id \
                 FROM new JOIN current ON current.stream_id = new.stream_id \
                 WHERE new.expected IS NULL OR current.version = new.expected \
                 ORDER BY new.stream_id, new.step \
                 RETURNING stream_id, global_position, stream_version, recorded_at"
            ),
            rejected_append: format!(
                "SELECT {all}, current.actual FROM \
                 (SELECT coalesce(max(stream_version), 0) AS actual FROM {s}.events WHERE stream_id = $2) AS current \
                 LEFT JOIN {s}.events ON event_id = ANY($1::uuid[])"
            ),
            read_stream: format!(
                "SELECT {stream_read} FROM {s}.events \
                 WHERE stream_id = $1 AND stream_version BETWEEN $2 AND $3 ORDER BY stream_version"
            ),
            read_stream_to_fold: format!(
                "SELECT {fold} FROM {s}.events \
                 WHERE stream_id = $1 AND stream_version BETWEEN $2 AND $3 ORDER BY stream_version",
                fold = FOLD_COLUMNS.join(", ")
            ),
            stream_version: format!("SELECT coalesce(max(stream_version), 0) FROM {s}.events WHERE stream_id = $1"),
            // `column = $1` implies the partial index's `column IS NOT NULL`, so the index
            // serves generic plans too (a bitmap index scan, then a sort of the few matches).
            events_by_correlation: format!(
                "SELECT {all} FROM {s}.events WHERE correlation_id = $1 ORDER BY global_position"
            ),
            events_by_causation: format!(
                "SELECT {all} FROM {s}.events WHERE causation_id = $1 ORDER BY global_position"
            ),
            feed: FeedShape::ALL.iter().map(|&shape| Self::feed(&s, &all, shape)).collect(),
            channel,
            load_snapshot: format!(
                "SELECT stream_version, schema_version, state, taken_at FROM {s}.snapshots WHERE stream_id = $1"
            ),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots AS stored (stream_id, stream_version, schema_version, state, taken_at) \
                 VALUES ($1, $2, $3, $4::text::json, $5) \
                 ON CONFLICT (stream_id) DO UPDATE \
                     SET stream_version = excluded.stream_version, schema_version = excluded.schema_version, \
                         state = excluded.state, taken_at = excluded.taken_at \
                     WHERE stored.stream_version < excluded.stream_version \
                        OR (stored.stream_version = excluded.stream_version \
                            AND stored.schema_version <> excluded.schema_version)"
            ),
            horizon: format!("SELECT xmin::text::int8 FROM {s}.feed_horizon()"),
            transaction_of: format!(
                "SELECT transaction_id::text::int8 AS commit FROM {s}.events WHERE global_position = $1"
            ),
            list_streams: format!(
                "SELECT stream_id, max(stream_version) AS version, max(recorded_at) AS last_recorded_at \
                 FROM {s}.events WHERE $1::text IS NULL OR starts_with(stream_id, $1 || '-') \
                 GROUP BY stream_id ORDER BY stream_id LIMIT $2"
            ),
            // An advisory lock on a bigint key shows in `pg_locks` as its high and low 32
            // bits (`classid`, `objid`) with `objsubid` 1.
            list_consumers: format!(
                "SELECT c.name, c.commit, c.position, c.updated_at, \
                        (SELECT 'pid ' || a.pid || ' (' || coalesce(nullif(a.application_name, ''), 'no name') || ')' \
                         FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid \
                         WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted \
                           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                           AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1 || c.name, 0) \
                         LIMIT 1) AS held_by, \
                        (SELECT count(*) FROM {s}.events AS e \
                         WHERE (e.transaction_id, e.global_position) > (c.commit::text::xid8, c.position)) AS behind \
                 FROM {checkpoints} AS c ORDER BY c.name"
            ),
            load_checkpoint: format!("SELECT commit, position FROM {checkpoints} WHERE name = $1"),
            move_checkpoint: format!(
                "UPDATE {checkpoints} SET commit = $4, position = $5, updated_at = now() \
                 WHERE name = $1 AND commit = $2 AND position = $3"
            ),
            insert_checkpoint: format!(
                "INSERT INTO {checkpoints} (name, commit, position) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
            ),
            delete_checkpoint: format!("DELETE FROM {checkpoints} WHERE name = $1"),
            park: format!(
                "INSERT INTO {s}.parked_events AS stored \
                     (consumer, event_id, commit, position, reason, parked_at, behind) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (consumer, event_id) DO UPDATE \
                     SET commit = excluded.commit, position = excluded.position, reason = excluded.reason, \
                         parked_at = excluded.parked_at, behind = excluded.behind"
            ),
            // `event_id` is the joined column; every other event column is the events
            // table's alone.
            parked: format!(
                "SELECT {all}, parked.commit, parked.position, parked.reason, parked.parked_at, parked.behind \
                 FROM {s}.parked_events AS parked JOIN {s}.events USING (event_id) \
                 WHERE parked.consumer = $1 ORDER BY parked.commit, parked.position"
            ),
            unpark: format!("DELETE FROM {s}.parked_events WHERE consumer = $1 AND event_id = $2"),
            schedule_deadline: format!(
                "INSERT INTO {s}.deadlines (id, process, instance, due_at, deadline_type, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::json) ON CONFLICT (id) DO NOTHING"
            ),
            remove_deadlines: format!("DELETE FROM {s}.deadlines WHERE id = ANY($1::uuid[])"),
            due_deadlines: format!(
                "SELECT id, process, instance, due_at, deadline_type, payload::text AS payload FROM {s}.deadlines \
                 WHERE process = $1 AND due_at <= $2 ORDER BY due_at, id LIMIT $3"
            ),
            next_deadline: format!("SELECT min(due_at) AS due_at FROM {s}.deadlines WHERE process = $1"),
            create_schema: format!("CREATE SCHEMA IF NOT EXISTS {s}"),
            bootstrap: format!(
                "CREATE TABLE IF NOT EXISTS {s}.annals_migrations (\
                     version integer PRIMARY KEY, \
                     name text NOT NULL, \
                     applied_at timestamptz NOT NULL DEFAULT now()\
                 )"
            ),
            applied_migrations: format!("SELECT version FROM {s}.annals_migrations"),
            record_migration: format!("INSERT INTO {s}.annals_migrations (version, name) VALUES ($1, $2)"),
            migrate_lock_key: format!("annals-postgres migrate {}", schema.as_str()),
            schema,
        }
    }

    /// The feed read (see `feed.rs`), in schema `s` (quoted), selecting `all` event columns.
    ///
    /// The feed read of the filters in `shape`: `$1` checkpoint transaction id, `$2`
    /// checkpoint position (the page size is written in, see below), then the parameters
    /// of the filters the shape has, in this order (see [`FeedShape::parameters`]): the event types, the stream or
    /// the category, the partition count and index. One row per event
    /// (its transaction id, as `xid8`, in `feed_commit`), and one more with NULL event
    /// columns that carries the horizon (`horizon_xmin`, `horizon_xmax`) and the last
    /// event below it (`tail_commit`, `tail_position`; NULL when there is none), in no
    /// promised order: the reader orders the events. The horizon is computed once, in a
    /// materialized CTE both parts read (the page as an init plan, `(SELECT xmin FROM
    /// horizon)`: joined laterally it cost a nested loop, 10% of the page's execution);
    /// sending it and the tail with every event, and
    /// converting every event's transaction id to text and `int8`, cost 40% of a page's
    /// server time, and sorting the page again after the join another 10%.
    ///
    /// # One statement per shape of filter
    /// Written once for every filter (`$3::text[] IS NULL OR ...` for each), the
    /// statement carried the conditions of every absent filter into planning, which took
    /// a fifth of a page's server time. A statement per shape has only its filters'
    /// conditions: planning a page took 170–198 µs instead of 263 µs (`benches/catch_up.rs`,
    /// throwaway server). A category's streams are `{category}-{id}` with a
    /// non-empty id, as [`Filter::matches`](annals::store::Filter::matches) has it.
    ///
    /// # A plan that does not depend on statistics
    /// The page must be read in `(transaction_id, global_position)` index order, stopping
    /// after a page of matches: its cost is then proportional to the page (plus the events the
    /// filter skips), whatever the backlog. The one thing that made the planner prefer a
    /// bitmap scan of *everything* after the checkpoint plus a sort was the event type
    /// filter: written `event_type = ANY($3)`, a table without statistics (never analyzed:
    /// a bulk load, a restore, autovacuum off) gets PostgreSQL's default equality
    /// selectivity of 0.5%, so the planner expects a handful of matches, for which a sort
    /// looks cheaper than walking the index; catch-up over 206k events took 16 s instead
    /// of 2 s, growing with the square of the backlog. Written
    /// `array_position($3, event_type) IS NOT NULL`, the filter is an expression the
    /// planner cannot estimate from any statistics: it takes the fixed default for
    /// `IS NOT NULL` over an expression (99.5% pass), so the `LIMIT` always makes the
    /// ordered index scan the cheapest plan, analyzed or not (the remaining range
    /// conditions are estimated from the index's actual bounds when the statistics are
    /// stale, and with none at all from fixed defaults that still favour the index).
    /// Measured by `benches/catch_up_unanalyzed.rs`. The partition filter is written the
    /// same way, for the same reason: `hash % $count = $index` is an equality the planner puts at
    /// 0.5% whatever the statistics (it cannot know a hash's distribution), and chose the
    /// sort of everything after the checkpoint for it: a page cost 11 ms of server time
    /// instead of 1.8 ms over 40,000 events (`benches/partitions.rs`). Forcing the plan instead
    /// (`SET enable_bitmapscan = off` per statement) needs a transaction and more round
    /// trips per read, or a SQL function created by a migration; analyzing on the fly
    /// would not cover stale statistics.
    ///
    /// # A plan made once
    /// The page size is written into the statement (one prepared statement per size a
    /// process reads with), not bound: with `LIMIT $n` PostgreSQL estimates a tenth of the
    /// table for the generic plan, finds it dearer than the plans it makes for each page's
    /// values, and plans every page again (0.3 ms of a page's 0.75 ms of server time on a
    /// two-core machine). With a constant it takes the generic plan after five pages, the
    /// same index scan, planned once per connection.
    fn feed(s: &str, all: &str, shape: FeedShape) -> String {
        let no_event: Vec<String> = EVENT_COLUMNS
            .iter()
            .zip(EVENT_COLUMN_TYPES)
            .map(|(column, sql_type)| format!("NULL::{sql_type} AS {column}"))
            .collect();
        let no_event = no_event.join(", ");
        let mut parameter = 2;
        let mut next = || {
            parameter += 1;
            parameter
        };
        let mut filters = String::new();
        if shape.types {
            let types = next();
            filters += &format!(" AND array_position(${types}::text[], event_type) IS NOT NULL");
        }
        match shape.streams {
            StreamShape::All => {}
            StreamShape::Stream => filters += &format!(" AND stream_id = ${}::text", next()),
            StreamShape::Category => {
                let category = next();
                filters += &format!(
                    " AND starts_with(stream_id, ${category}::text || '-') \
                      AND length(stream_id) > length(${category}::text) + 1"
                );
            }
        }
        if shape.partition {
            let (count, index) = (next(), next());
            filters +=
                &format!(" AND array_position(ARRAY[${index}::int8], {PARTITION_HASH} % ${count}::int8) IS NOT NULL");
        }
        format!(
            "WITH horizon AS MATERIALIZED (SELECT xmin, xmax FROM {s}.feed_horizon()) \
             SELECT {no_event}, NULL::xid8 AS feed_commit, \
                    tail.commit AS tail_commit, tail.position AS tail_position, \
                    horizon.xmin AS horizon_xmin, horizon.xmax AS horizon_xmax \
             FROM horizon \
             LEFT JOIN LATERAL ( \
                 SELECT transaction_id AS commit, global_position AS position \
                 FROM {s}.events \
                 WHERE transaction_id < horizon.xmin \
                 ORDER BY transaction_id DESC, global_position DESC \
                 LIMIT 1 \
             ) AS tail ON true \
             UNION ALL ( \
                 SELECT {all}, transaction_id, NULL, NULL, NULL, NULL \
                 FROM {s}.events \
                 WHERE (transaction_id, global_position) > ($1::int8::text::xid8, $2::int8) \
                   AND transaction_id < (SELECT xmin FROM horizon){filters} \
                 ORDER BY transaction_id, global_position \
                 LIMIT {PAGE_SIZE} \
             )"
        )
    }

    /// The feed read of `shape` for pages of `limit` events (parameters: checkpoint
    /// transaction id and position, then the shape's filters); `None` for a shape
    /// without a statement.
    pub(crate) fn feed_page(&self, shape: FeedShape, limit: u64) -> Option<String> {
        let template = self.feed.get(shape.index())?;
        // `LIMIT` takes an `int8`: a larger page size reads everything, as it did bound.
        Some(template.replace(PAGE_SIZE, &annals::store::kit::bound_to_db(limit).to_string()))
    }

    /// The key of the session-level advisory lock one instance of consumer `name` holds
    /// while it runs (see `runner.rs`).
    pub(crate) fn consumer_lock_key(&self, name: &str) -> String {
        format!("annals projection {}.{name}", self.schema.as_str())
    }

    /// The first key of the locks the instances of consumer `name` split into `count`
    /// partitions hold while they run (see `partitioned.rs`).
    pub(crate) fn consumer_members_key(&self, name: &str, count: u32) -> String {
        format!("annals partitioned projection {}.{name} of {count}", self.schema.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_postgres_identifiers() {
        assert_eq!(Statements::new(SchemaName::default()).channel, "annals:annals");
        let long = SchemaName::new("a".repeat(63)).unwrap_or_default();
        assert_eq!(Statements::new(long).channel.len(), 63);
    }

    #[test]
    fn the_feed_reads_below_the_horizon_in_transaction_order() {
        let sql = Statements::new(SchemaName::default()).feed.concat();
        assert!(sql.contains("WITH horizon AS MATERIALIZED (SELECT xmin, xmax FROM \"annals\".feed_horizon())"));
        assert!(sql.contains("transaction_id < (SELECT xmin FROM horizon)"));
        assert!(sql.contains("ORDER BY transaction_id, global_position"));
        assert!(!sql.contains("LIKE"), "category filters need no escaping");
    }

    #[test]
    fn the_feed_plan_does_not_hinge_on_an_estimate_of_the_event_type_filter() {
        let sql = Statements::new(SchemaName::default()).feed.concat();
        assert!(sql.contains("array_position($3::text[], event_type) IS NOT NULL"));
        assert!(!sql.contains("event_type = ANY"), "estimated from statistics: see `Statements::feed`");
        assert!(!sql.contains("::int8 = $"), "an equality the planner puts at 0.5%: see `Statements::feed`");
    }

    #[test]
    fn each_feed_shape_has_its_statement_with_only_its_filters() {
        let sql = Statements::new(SchemaName::default());
        for (i, shape) in FeedShape::ALL.into_iter().enumerate() {
            assert_eq!(shape.index(), i);
            let feed = &sql.feed[i];
            assert_eq!(feed.contains("event_type) IS NOT NULL"), shape.types, "{shape:?}: {feed}");
            assert_eq!(feed.contains("stream_id = $"), shape.streams == StreamShape::Stream, "{shape:?}");
            assert_eq!(feed.contains("starts_with(stream_id"), shape.streams == StreamShape::Category, "{shape:?}");
            assert_eq!(feed.contains("hashtext(stream_id"), shape.partition, "{shape:?}");
            assert!(!feed.contains("IS NULL OR"), "no condition of an absent filter: {feed}");
            // The parameters are numbered without gaps: PostgreSQL must infer each one.
            let parameters = 2
                + usize::from(shape.types)
                + usize::from(shape.streams != StreamShape::All)
                + 2 * usize::from(shape.partition);
            assert!(feed.contains(&format!("${parameters}")), "{shape:?}: {feed}");
            assert!(!feed.contains(&format!("${}", parameters + 1)), "{shape:?}: {feed}");
        }
    }

    #[test]
    fn the_horizon_skips_only_transactions_confirmed_in_other_databases() {
        let first = include_str!("../migrations/0009_feed_horizon_function.sql");
        let horizon = include_str!("../migrations/0010_feed_horizon_when_nothing_runs.sql");
        for sql in [first, horizon, FEED_BLOCKERS] {
            assert!(sql.contains("pg_stat_activity") && sql.contains("pg_prepared_xacts"), "{sql}");
            assert!(sql.contains("current_database()"), "{sql}");
        }
        // Run on the calling statement's snapshot, the one the feed reads events with.
        assert!(horizon.contains("LANGUAGE plpgsql STABLE"));
        assert!(horizon.contains("pg_snapshot_xmax(snapshot)") && horizon.contains("pg_snapshot_xip(snapshot)"));
        // The shortcut answers xmax only when no transaction is running at all.
        assert!(horizon.contains("IF NOT EXISTS (SELECT FROM pg_snapshot_xip(snapshot)) THEN\n        xmin := xmax;"));
    }

    #[test]
    fn every_statement_names_the_schema_and_stream_reads_skip_the_stream_id() {
        let sql = Statements::new(SchemaName::new("s1").unwrap_or_default());
        let feed = sql.feed.concat();
        for statement in [&sql.append, &sql.read_stream, &feed, &sql.save_snapshot, &sql.move_checkpoint] {
            assert!(statement.contains("\"s1\"."), "{statement}");
        }
        assert!(
            !sql.read_stream.contains("stream_id,") && sql.rejected_append.contains(", stream_id, current.actual FROM")
        );
        assert_eq!(sql.consumer_lock_key("ledger"), "annals projection s1.ledger");
    }
}
