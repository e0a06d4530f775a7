-- annals-postgres migration 3: the snapshots table.
--
-- One row per stream: the latest snapshot of its aggregate. `save_snapshot` replaces a
-- row only with a snapshot at a later stream version, so a slow, stale writer never
-- overwrites a newer snapshot. Independent of the other tables: it applies with or
-- without the steps before it.

CREATE TABLE {schema}.snapshots (
    stream_id      text        PRIMARY KEY,
    -- How many events of the stream the state includes.
    stream_version bigint      NOT NULL,
    -- The aggregate's `Snapshot::SNAPSHOT_VERSION` when it was taken.
    schema_version integer     NOT NULL,
    -- The serialized aggregate state.
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL,
    CONSTRAINT snapshots_stream_version_non_negative CHECK (stream_version >= 0)
);
