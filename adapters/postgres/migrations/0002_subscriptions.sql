-- annals-postgres migration 2: subscriptions.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. See `annals_postgres::feed` for how subscriptions read the events table in commit
-- order without gaps.

-- Where each consumer (`ExactlyOnce`, `AtLeastOnce`) has got to: its checkpoint. An
-- `ExactlyOnce` consumer's read-model writes and its checkpoint commit in one transaction.
CREATE TABLE {schema}.projection_checkpoints (
    -- The consumer's name (`Projection::NAME`, or the name given to `named`).
    name       text        PRIMARY KEY,
    -- The last processed place in commit order, the checkpoint's two parts: the writing
    -- transaction's id ...
    commit     bigint      NOT NULL,
    -- ... and the global position within it.
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Wakes subscribers (`EventFeed::wakeups`, LISTEN on `annals:<schema>`) when events are
-- appended. One notification per insert statement; NOTIFY delivers it at commit, and
-- folds identical notifications of one transaction into one. Subscribers also poll, so
-- a lost notification only delays them.
--
-- NOTIFY has a cost under many concurrent writers: PostgreSQL serializes the commits of
-- notifying transactions (a cluster-wide lock held through the commit's WAL flush).
-- Writers that need every bit of append throughput set `annals.notify = off` on their
-- connections (e.g. `PgConnectOptions::options([("annals.notify", "off")])`); their
-- appends then notify nobody, and subscribers find them by polling.
CREATE FUNCTION {schema}.notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('annals:' || TG_TABLE_SCHEMA, 63), '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended_notify
    AFTER INSERT ON {schema}.events
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('annals.notify', true), 'on') <> 'off')
    EXECUTE FUNCTION {schema}.notify_events_appended();
