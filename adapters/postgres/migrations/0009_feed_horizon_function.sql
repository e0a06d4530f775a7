-- annals-postgres migration 9: the feed's horizon as a function.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. The feed reads only events below the horizon: the oldest transaction still running
-- at the reading statement's snapshot, skipping those confirmed running in another
-- database, or the snapshot's xmax when there is none (see the `feed` module of
-- annals-postgres for why no event is skipped). Written inline, the lookups in
-- `pg_stat_activity` and `pg_prepared_xacts` (views over several catalogs) made
-- PostgreSQL plan them again for every page of the feed: two thirds of a page's planning
-- time. A PL/pgSQL function is planned once per session, and `STABLE` makes it run on the
-- snapshot of the statement that calls it, so the horizon is still computed from the
-- same snapshot the events are read with.
CREATE FUNCTION {schema}.feed_horizon(OUT xmin xid8, OUT xmax xid8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    snapshot pg_snapshot := pg_current_snapshot();
BEGIN
    xmax := pg_snapshot_xmax(snapshot);
    SELECT coalesce(min(running.xid), xmax) INTO xmin
    FROM pg_snapshot_xip(snapshot) AS running(xid)
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS activity
                      WHERE activity.backend_xid = running.xid::xid
                        AND activity.datname <> current_database())
      AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts AS prepared
                      WHERE prepared.transaction = running.xid::xid
                        AND prepared.database <> current_database());
END
$$;
