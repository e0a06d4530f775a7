-- The latest snapshot of each stream (`SnapshotStore`); `taken_at` in nanoseconds since
-- the Unix epoch, UTC.
CREATE TABLE snapshots (
    stream_id      TEXT    PRIMARY KEY CHECK (stream_id <> ''),
    stream_version INTEGER NOT NULL CHECK (stream_version >= 0),
    schema_version INTEGER NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    state          TEXT    NOT NULL CHECK (json_valid(state)),
    taken_at       INTEGER NOT NULL
) STRICT;
