-- annals-postgres migration 6: keep payloads, metadata and snapshot states as the exact
-- JSON text annals wrote (`json`), not PostgreSQL's parsed `jsonb`. `jsonb` stores numbers
-- as `numeric`: it turns `-0.0` into `0` and `1e300` into a 301-digit integer, so a double
-- did not read back bit for bit; and it cannot hold a NUL character (`\u0000`), which
-- `json` can. `json` is also cheaper to write (a validation, no conversion) and to read
-- (no conversion back to text). annals never queries inside these columns.
--
-- The ALTERs rewrite the two tables once, holding an exclusive lock while they do: on a
-- large store, run the migration in a maintenance window.

ALTER TABLE {schema}.events
    DROP CONSTRAINT events_metadata_is_object,
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE json USING metadata::json,
    ALTER COLUMN metadata SET DEFAULT '{}'::json,
    ADD CONSTRAINT events_metadata_is_object CHECK (json_typeof(metadata) = 'object') NOT VALID;

ALTER TABLE {schema}.snapshots
    ALTER COLUMN state TYPE json USING state::json;
