-- annals-postgres migration 8: the NOTIFY trigger fires only for inserts that wrote rows.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. Migration 2's statement-level trigger also notified for the conditional insert of
-- an append that found the stream at another version and wrote nothing: under contention
-- most notifications woke subscribers for nothing (2,302 for 800 events in one
-- measurement), and each put a writer through the commit lock of notifying transactions.
-- The trigger now sees the statement's new rows (a transition table) and notifies only
-- when there are any. `annals.notify = off` still turns it off per connection.
CREATE OR REPLACE FUNCTION {schema}.notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM appended) THEN
        PERFORM pg_notify(left('annals:' || TG_TABLE_SCHEMA, 63), '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER events_appended_notify ON {schema}.events;

CREATE TRIGGER events_appended_notify
    AFTER INSERT ON {schema}.events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('annals.notify', true), 'on') <> 'off')
    EXECUTE FUNCTION {schema}.notify_events_appended();
