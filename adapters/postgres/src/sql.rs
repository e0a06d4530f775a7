//! The statements of the store, built once per store for its schema.
//!
//! The quoted, validated schema name is the only text formatted into them; every value
//! is a bind parameter. sqlx prepares each statement once per connection and reuses it.

use crate::schema::SchemaName;

/// The columns [`crate::rows`] decodes, in this order.
const COLUMNS: &str = "global_position, stream_id, stream_version, event_type, event_version, payload, metadata, \
                       event_id, correlation_id, causation_id, recorded_at";

#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) schema: SchemaName,
    /// `$1` stream, `$2` expected current version (NULL: any), `$3..$9` one array per
    /// column of the new events. Returns one row per inserted event, none when the stream
    /// was not at the expected version.
    pub(crate) append: String,
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
        Statements {
            append: format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, event_version, \
                                         payload, metadata, correlation_id, causation_id) \
                 SELECT $1, current.version + new.ordinal, new.event_id, new.event_type, new.event_version, \
                        new.payload, new.metadata, new.correlation_id, new.causation_id \
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
            events_by_id: format!("SELECT {COLUMNS} FROM {s}.events WHERE event_id = ANY($1::uuid[])"),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND stream_version BETWEEN $2 AND $3 ORDER BY stream_version"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {s}.events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
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
