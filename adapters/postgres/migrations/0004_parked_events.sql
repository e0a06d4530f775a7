-- annals-postgres migration 4: consumers' dead letters.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. An event a consumer could not process and set aside (`PoisonPolicy::Park` or
-- `ParkStream`), per consumer, until it is retried or skipped. The event itself stays in
-- the events table; a row refers to it by id and keeps its place in the feed.

CREATE TABLE {schema}.parked_events (
    -- The consumer's name, as in `projection_checkpoints`.
    consumer  text        NOT NULL,
    event_id  uuid        NOT NULL,
    -- The event's place in the feed, the checkpoint's two parts: the writing
    -- transaction's id ...
    commit    bigint      NOT NULL,
    -- ... and the global position within it.
    position  bigint      NOT NULL,
    -- Why it was parked.
    reason    text        NOT NULL,
    parked_at timestamptz NOT NULL,
    -- With `ParkStream`: the earlier parked event of the same stream it waits behind.
    behind    uuid,
    PRIMARY KEY (consumer, event_id)
);
