-- annals-postgres migration 10: the feed's horizon without catalog lookups when no
-- transaction is running.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. The same horizon as migration 9's: the oldest transaction of the snapshot's running
-- ones (`xip`) that is not confirmed running in another database, or the snapshot's xmax
-- when there is none. When `xip` is empty the answer is xmax whatever the catalogs say,
-- so the lookups in `pg_stat_activity` and `pg_prepared_xacts` (which gather every
-- backend's status: about half a millisecond per call on a two-core machine, most of a
-- feed page's time) are skipped. That is the common case of a catch-up or a rebuild on a
-- quiet server, and of every read between two writers' transactions.
CREATE OR REPLACE FUNCTION {schema}.feed_horizon(OUT xmin xid8, OUT xmax xid8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    snapshot pg_snapshot := pg_current_snapshot();
BEGIN
    xmax := pg_snapshot_xmax(snapshot);
    IF NOT EXISTS (SELECT FROM pg_snapshot_xip(snapshot)) THEN
        xmin := xmax;
        RETURN;
    END IF;
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
