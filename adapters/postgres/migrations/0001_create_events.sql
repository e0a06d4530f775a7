-- annals-postgres migration 1: the events table.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. Users who run their own migrations can take this file as it is, replacing `{schema}`.

CREATE TABLE {schema}.events (
    -- Position in the whole store: grows with every appended event.
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text        NOT NULL,
    -- Position inside the stream, from 1, contiguous.
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    -- The payload's schema version (`#[event(version = N)]`).
    event_version   integer     NOT NULL,
    payload         jsonb       NOT NULL,
    -- The free-form metadata keys (`Metadata::extra`), a JSON object.
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_id        uuid        NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction, for reading in commit order without gaps.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    -- Optimistic concurrency: two writers cannot both take a version. Also serves
    -- `max(stream_version)` and stream reads.
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version),
    -- Idempotent appends: an event id is stored once.
    CONSTRAINT events_event_id_unique UNIQUE (event_id)
);

CREATE INDEX events_correlation_id_idx ON {schema}.events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_causation_id_idx ON {schema}.events (causation_id) WHERE causation_id IS NOT NULL;
CREATE INDEX events_transaction_order_idx ON {schema}.events (transaction_id, global_position);
