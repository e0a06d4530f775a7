-- The events: one row per event, numbered in commit order.
--
-- `global_position` is the rowid. AUTOINCREMENT makes it strictly increasing: a
-- committed number is never handed out again, even if the row holding the highest one
-- were deleted (annals never deletes events). (A number taken by an append that rolls
-- back is taken again by the next one: no reader ever saw it.) Writers take the
-- database's write lock before they read a stream's version (`BEGIN IMMEDIATE`, or a
-- lone `INSERT ... SELECT`, which takes it when it starts), so one append commits at a
-- time and position order is commit order.
--
-- `payload` and `metadata` hold JSON text exactly as serde_json wrote it. Times are
-- nanoseconds since the Unix epoch, UTC (`datetime(recorded_at / 1e9, 'unixepoch')`).
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL CHECK (stream_id <> ''),
    stream_version  INTEGER NOT NULL CHECK (stream_version >= 1),
    event_id        BLOB    NOT NULL UNIQUE CHECK (length(event_id) = 16),
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL CHECK (event_version BETWEEN 0 AND 4294967295),
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    -- The free-form metadata keys as a JSON object; NULL when there are none.
    metadata        TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    correlation_id  BLOB    CHECK (correlation_id IS NULL OR length(correlation_id) = 16),
    causation_id    BLOB    CHECK (causation_id IS NULL OR length(causation_id) = 16),
    recorded_at     INTEGER NOT NULL,
    -- The expected-version check's backstop, and the index of stream reads.
    UNIQUE (stream_id, stream_version)
) STRICT;
