-- annals-postgres migration 5: refuse rows annals never writes, so a row edited by hand or
-- written by another tool fails at its INSERT or UPDATE instead of at every later read.
-- `NOT VALID`: rows already stored are not re-checked (reads report those as
-- `StoreError::Corrupt`, naming stream, version and position).

ALTER TABLE {schema}.events
    ADD CONSTRAINT events_recorded_at_finite CHECK (isfinite(recorded_at)
        AND recorded_at BETWEEN '1677-09-22' AND '2262-04-11') NOT VALID,
    ADD CONSTRAINT events_event_version_non_negative CHECK (event_version >= 0) NOT VALID,
    ADD CONSTRAINT events_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object') NOT VALID,
    ADD CONSTRAINT events_stream_id_valid CHECK (stream_id <> '' AND octet_length(stream_id) <= 1024) NOT VALID,
    ADD CONSTRAINT events_event_type_valid CHECK (event_type <> '' AND octet_length(event_type) <= 255) NOT VALID;

ALTER TABLE {schema}.snapshots
    ADD CONSTRAINT snapshots_taken_at_finite CHECK (isfinite(taken_at)) NOT VALID,
    ADD CONSTRAINT snapshots_schema_version_non_negative CHECK (schema_version >= 0) NOT VALID;
