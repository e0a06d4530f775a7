//! Every statement of the store, written once, here.
//!
//! Table names are fixed and every value is a bind parameter, so the statements are
//! constants: sqlx prepares each once per connection and reuses it. Rows are decoded by
//! column name ([`crate::rows`]).

/// The columns of an event but its stream, as [`crate::rows::EventColumns`] decodes them
/// (by name).
macro_rules! stream_event_columns {
    () => {
        "global_position, stream_version, event_id, event_type, event_version, payload, metadata, correlation_id, \
         causation_id, recorded_at"
    };
}

/// The columns of an event.
macro_rules! event_columns {
    () => {
        concat!("stream_id, ", stream_event_columns!())
    };
}

/// Starts the write transaction of an append, a snapshot write, a checkpoint transaction
/// or a migration: takes the database's write lock first, waiting for it up to the busy
/// timeout. (A deferred `BEGIN` that reads and then writes would fail with `SQLITE_BUSY`
/// at its first write, without waiting, whenever another connection wrote in between.)
pub(crate) const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// `?1` stream. The stream's version: its highest, 0 for none (an index lookup).
pub(crate) const STREAM_VERSION: &str =
    "SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = ?1";

/// The first (often the only) event of an append, and the expected-version check, in one
/// statement: inserts the event right after the stream's current version if that is the
/// expected one. `?1` stream, `?2` expected version (NULL: any), `?3` event id, `?4`
/// type, `?5` schema version, `?6` payload (JSON text), `?7` metadata (JSON text or
/// NULL), `?8` correlation id, `?9` causation id, `?10` recorded at (ns). Returns the new
/// event's position and version; no row when the stream is not at the expected version.
///
/// A lone `INSERT` takes the write lock when it starts, before it reads the version
/// (waiting for it up to the busy timeout), and commits on its own: a one-event append
/// is this one statement.
pub(crate) const INSERT_FIRST: &str = "\
    INSERT INTO events (stream_id, stream_version, event_id, event_type, event_version, payload, metadata, \
                        correlation_id, causation_id, recorded_at) \
    SELECT ?1, current.version + 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
    FROM (SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = ?1) AS current \
    WHERE ?2 IS NULL OR current.version = ?2 \
    RETURNING global_position, stream_version";

/// The next events of an append, after [`INSERT_FIRST`] in the same transaction. `?1`
/// stream, `?2` version, `?3`..`?10` as in [`INSERT_FIRST`]. The position is the new
/// rowid.
pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (stream_id, stream_version, event_id, event_type, \
                                       event_version, payload, metadata, correlation_id, causation_id, recorded_at) \
                                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// `?1` a JSON array of event ids as hex text. The events stored under those ids.
pub(crate) const EVENTS_BY_ID: &str =
    concat!("SELECT ", event_columns!(), " FROM events WHERE event_id IN (SELECT unhex(value) FROM json_each(?1))");

/// `?1` stream, `?2` first version, `?3` last version, `?4` page size. One page of a
/// stream read, in version order (the unique `(stream_id, stream_version)` index).
pub(crate) const READ_STREAM: &str = concat!(
    "SELECT ",
    stream_event_columns!(),
    " FROM events WHERE stream_id = ?1 AND stream_version BETWEEN ?2 AND ?3 ORDER BY stream_version LIMIT ?4"
);

/// One feed read, in one statement, hence in one snapshot of the database:
/// `?1` after position, `?2` last position to scan (the read scans at most a window of
/// positions, so a filter that matches little does not scan the whole table), `?3` event
/// types as a JSON array (NULL: all), `?4` stream (NULL: all), `?5` category prefix
/// `{category}-` as bytes (NULL: all), `?6` most events to return.
///
/// Returns the matching events in position order (a range scan of the primary key that
/// stops after `?6` matches: no sorting), then one more row, whose `head` is the highest
/// committed position in the snapshot and whose event columns are NULL: with it the read
/// knows how far it may move past skipped events. The category compares bytes (`CAST ...
/// AS BLOB`, `substr`, `length`): no `LIKE`, so `%` and `_` in a category are plain
/// characters.
pub(crate) const READ_FEED: &str = concat!(
    "SELECT * FROM (SELECT NULL AS head, ",
    event_columns!(),
    " FROM events \
      WHERE global_position > ?1 AND global_position <= ?2 \
        AND (?3 IS NULL OR event_type IN (SELECT value FROM json_each(?3))) \
        AND (?4 IS NULL OR stream_id = ?4) \
        AND (?5 IS NULL OR (length(CAST(stream_id AS BLOB)) > length(?5) \
                            AND substr(CAST(stream_id AS BLOB), 1, length(?5)) = ?5)) \
      ORDER BY global_position LIMIT ?6) \
    UNION ALL \
    SELECT coalesce(max(global_position), 0), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
    FROM events"
);

/// `?1` stream.
pub(crate) const LOAD_SNAPSHOT: &str =
    "SELECT stream_id, stream_version, schema_version, state, taken_at FROM snapshots WHERE stream_id = ?1";

/// `?1` stream, `?2` version, `?3` schema version, `?4` state (JSON text), `?5` taken at
/// (ns). Keeps a stored snapshot of a later version.
pub(crate) const SAVE_SNAPSHOT: &str = "\
    INSERT INTO snapshots (stream_id, stream_version, schema_version, state, taken_at) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, \
        schema_version = excluded.schema_version, state = excluded.state, taken_at = excluded.taken_at \
    WHERE excluded.stream_version >= snapshots.stream_version";

/// `?1` consumer.
pub(crate) const LOAD_CHECKPOINT: &str = "SELECT major, minor FROM checkpoints WHERE name = ?1";

/// `?1` consumer, `?2` major, `?3` minor, `?4` updated at (ns). Changes nothing when the
/// consumer has a checkpoint.
pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (name, major, minor, updated_at) \
                                            VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING";

/// `?1` consumer, `?2` new major, `?3` new minor, `?4` updated at (ns), `?5` expected
/// major, `?6` expected minor: the compare-and-set of a checkpoint.
pub(crate) const MOVE_CHECKPOINT: &str = "UPDATE checkpoints SET major = ?2, minor = ?3, updated_at = ?4 \
                                          WHERE name = ?1 AND major = ?5 AND minor = ?6";

/// `?1` consumer.
pub(crate) const DELETE_CHECKPOINT: &str = "DELETE FROM checkpoints WHERE name = ?1";

/// The journal mode of the database (`wal` for a store; `memory` for an in-memory one).
pub(crate) const JOURNAL_MODE: &str = "PRAGMA journal_mode";

/// The migrations' bookkeeping table.
pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS annals_migrations (\
                                                      version INTEGER PRIMARY KEY, \
                                                      name TEXT NOT NULL, \
                                                      applied_at INTEGER NOT NULL\
                                                  ) STRICT";

/// The applied migrations.
pub(crate) const APPLIED_MIGRATIONS: &str = "SELECT version, name FROM annals_migrations ORDER BY version";

/// `?1` version, `?2` name, `?3` applied at (ns).
pub(crate) const RECORD_MIGRATION: &str =
    "INSERT INTO annals_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)";

/// `?1` consumer, `?2` event id, `?3` major, `?4` minor, `?5` the `Parked` as JSON:
/// parks an event, or replaces the dead letter of an event already parked.
pub(crate) const PARK: &str = "INSERT INTO dead_letters (consumer, event_id, major, minor, parked) \
                               VALUES (?1, ?2, ?3, ?4, ?5) \
                               ON CONFLICT (consumer, event_id) DO UPDATE SET parked = excluded.parked";

/// `?1` consumer: its dead letters in feed order, each with its event as stored now
/// (NULL columns if the event's row is gone).
pub(crate) const PARKED: &str = "SELECT d.parked, e.stream_id, e.global_position, e.stream_version, e.event_id, \
                                        e.event_type, e.event_version, e.payload, e.metadata, e.correlation_id, \
                                        e.causation_id, e.recorded_at \
                                 FROM dead_letters AS d \
                                 LEFT JOIN events AS e ON d.major = 0 AND e.global_position = d.minor \
                                 WHERE d.consumer = ?1 ORDER BY d.major, d.minor, d.event_id";

/// `?1` consumer, `?2` event id.
pub(crate) const UNPARK: &str = "DELETE FROM dead_letters WHERE consumer = ?1 AND event_id = ?2";

/// `?1` category (NULL: all), `?2` limit. The streams: `stream_id`, `version`,
/// `last_recorded_at` (ns). The category is compared as bytes, like the feed's filter.
pub(crate) const LIST_STREAMS: &str = "SELECT stream_id, max(stream_version) AS version, \
                                              max(recorded_at) AS last_recorded_at \
                                       FROM events \
                                       WHERE ?1 IS NULL OR substr(CAST(stream_id AS BLOB), 1, length(CAST(?1 AS BLOB)) + 1) \
                                                           = CAST(?1 || '-' AS BLOB) \
                                       GROUP BY stream_id ORDER BY stream_id LIMIT ?2";

/// Every consumer's checkpoint: `name`, `major`, `minor`, `updated_at` (ns), by name.
pub(crate) const LIST_CONSUMERS: &str = "SELECT name, major, minor, updated_at, \
     (SELECT count(*) FROM events WHERE global_position > checkpoints.minor) AS behind \
     FROM checkpoints ORDER BY name";

/// `?1` correlation id (16 bytes): its events, in global order.
pub(crate) const EVENTS_BY_CORRELATION: &str =
    concat!("SELECT ", event_columns!(), " FROM events WHERE correlation_id = ?1 ORDER BY global_position");

/// `?1` id, `?2` process, `?3` instance, `?4` due time, `?5` type, `?6` payload. Stores a
/// deadline; one with the same id stays as it is.
pub(crate) const SCHEDULE_DEADLINE: &str = "INSERT INTO deadlines (id, process, instance, due_at, deadline_type, \
     payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING";

/// `?1` ids (a JSON array of hex text). Removes those deadlines.
pub(crate) const REMOVE_DEADLINES: &str = "DELETE FROM deadlines WHERE id IN (SELECT value FROM json_each(?1))";

/// `?1` process, `?2` now, `?3` limit. Its due deadlines, earliest first (the due-time index).
pub(crate) const DUE_DEADLINES: &str = "SELECT id, process, instance, due_at, deadline_type, payload FROM deadlines \
     WHERE process = ?1 AND due_at <= ?2 ORDER BY due_at, id LIMIT ?3";

/// `?1` process. When its earliest deadline is due (the due-time index).
pub(crate) const NEXT_DEADLINE: &str = "SELECT min(due_at) AS due_at FROM deadlines WHERE process = ?1";
