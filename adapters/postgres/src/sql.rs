//! The statements of the store, built once per store for its schema.
//!
//! The quoted, validated schema name is the only text formatted into them; every value
//! is a bind parameter. sqlx prepares each statement once per connection and reuses it.

use crate::schema::SchemaName;

/// The columns of an event [`crate::rows::stream_envelope`] decodes, in this order: all
/// but the stream id, which a stream read already knows.
const EVENT_COLUMNS: &str = "global_position, stream_version, event_type, event_version, payload, metadata, event_id, \
                             correlation_id, causation_id, recorded_at";

/// The columns [`crate::rows::envelope`] decodes: the stream id, then `EVENT_COLUMNS`.
pub(crate) fn columns() -> String {
    format!("stream_id, {EVENT_COLUMNS}")
}

#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) schema: SchemaName,
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
    /// `$1` event ids.
    pub(crate) events_by_id: String,
    /// `$1` stream, `$2` first version, `$3` last version.
    pub(crate) read_stream: String,
    /// `$1` after global position, `$2` batch size.
    pub(crate) read_all: String,
    /// `$1` stream.
    pub(crate) stream_version: String,
    pub(crate) head_position: String,
    pub(crate) record_migration: String,
    pub(crate) applied_migrations: String,
}

impl Statements {
    pub(crate) fn new(schema: SchemaName) -> Self {
        let s = schema.quoted();
        let columns = columns();
        Statements {
            append: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 SELECT $1, current.version + new.ordinal, new.event_id, new.event_type, new.event_version, \
                        new.payload, coalesce(new.metadata, '{{}}'::jsonb), new.correlation_id, new.causation_id \
                 FROM (SELECT coalesce(max(stream_version), 0) AS version FROM {s}.events WHERE stream_id = $1) \
                          AS current \
                 CROSS JOIN unnest($3::uuid[], $4::text[], $5::int4[], $6::jsonb[], $7::jsonb[], $8::uuid[], \
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
                 SELECT $1, current.version + 1, $3, $4, $5, $6, coalesce($7, '{{}}'::jsonb), $8, $9 \
                 FROM (SELECT coalesce(max(stream_version), 0) AS version FROM {s}.events WHERE stream_id = $1) \
                          AS current \
                 WHERE $2::int8 IS NULL OR current.version = $2::int8 \
                 RETURNING global_position, stream_version, recorded_at"
            ),
            append_first: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 VALUES ($1, 1, $2, $3, $4, $5, coalesce($6, '{{}}'::jsonb), $7, $8) \
                 RETURNING global_position, stream_version, recorded_at"
            ),
            events_by_id: format!("SELECT {columns} FROM {s}.events WHERE event_id = ANY($1::uuid[])"),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND stream_version BETWEEN $2 AND $3 ORDER BY stream_version"
            ),
            read_all: format!(
                "SELECT {columns} FROM {s}.events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
            ),
            stream_version: format!("SELECT coalesce(max(stream_version), 0) FROM {s}.events WHERE stream_id = $1"),
            head_position: format!("SELECT coalesce(max(global_position), 0) FROM {s}.events"),
            record_migration: format!("INSERT INTO {s}.annals_migrations (version, name) VALUES ($1, $2)"),
            applied_migrations: format!("SELECT version FROM {s}.annals_migrations"),
            schema,
        }
    }

    /// Creates the schema (when missing) and the migrations bookkeeping table.
    pub(crate) fn bootstrap(&self) -> String {
        let s = self.schema.quoted();
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.annals_migrations (\
                 version integer PRIMARY KEY, \
                 name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now()\
             )"
        )
    }

    pub(crate) fn create_schema(&self) -> String {
        format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema.quoted())
    }
}
