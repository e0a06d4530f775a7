-- The schema refuses, for every writer (another tool, a hand edit, a restore script),
-- values the store itself refuses before they reach the database (`annals::store::kit`):
-- stream ids longer than 1024 bytes or holding a NUL, event types that are empty, longer
-- than 255 bytes or holding a NUL, metadata that is not a JSON object. (The columns'
-- CHECKs of 0001 and 0002 already refuse versions below 1, schema versions beyond
-- 32 bits, text that is not JSON and ids that are not 16 bytes; STRICT tables refuse
-- values of the wrong type, such as a time of 'infinity'.)
--
-- SQLite cannot add a CHECK constraint to an existing table, so these are triggers,
-- which check every new and every changed row (and never rows already stored: the store
-- reads those and names what is wrong with them). Lengths are in bytes (`CAST ... AS
-- BLOB`), and so is the NUL search: `length` and `instr` on text stop at a NUL.
CREATE TRIGGER events_refuse_invalid_insert BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'annals: a stream id must be 1 to 1024 bytes without NUL characters')
    WHERE length(CAST(NEW.stream_id AS BLOB)) > 1024 OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0;
    SELECT RAISE(ABORT, 'annals: an event type must be 1 to 255 bytes without NUL characters')
    WHERE length(CAST(NEW.event_type AS BLOB)) NOT BETWEEN 1 AND 255
       OR instr(CAST(NEW.event_type AS BLOB), x'00') > 0;
    SELECT RAISE(ABORT, 'annals: the metadata must be a JSON object or NULL')
    WHERE NEW.metadata IS NOT NULL AND json_valid(NEW.metadata) AND json_type(NEW.metadata) <> 'object';
END;

CREATE TRIGGER events_refuse_invalid_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'annals: a stream id must be 1 to 1024 bytes without NUL characters')
    WHERE length(CAST(NEW.stream_id AS BLOB)) > 1024 OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0;
    SELECT RAISE(ABORT, 'annals: an event type must be 1 to 255 bytes without NUL characters')
    WHERE length(CAST(NEW.event_type AS BLOB)) NOT BETWEEN 1 AND 255
       OR instr(CAST(NEW.event_type AS BLOB), x'00') > 0;
    SELECT RAISE(ABORT, 'annals: the metadata must be a JSON object or NULL')
    WHERE NEW.metadata IS NOT NULL AND json_valid(NEW.metadata) AND json_type(NEW.metadata) <> 'object';
END;

CREATE TRIGGER snapshots_refuse_invalid_insert BEFORE INSERT ON snapshots
BEGIN
    SELECT RAISE(ABORT, 'annals: a stream id must be 1 to 1024 bytes without NUL characters')
    WHERE length(CAST(NEW.stream_id AS BLOB)) > 1024 OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0;
END;

CREATE TRIGGER snapshots_refuse_invalid_update BEFORE UPDATE ON snapshots
BEGIN
    SELECT RAISE(ABORT, 'annals: a stream id must be 1 to 1024 bytes without NUL characters')
    WHERE length(CAST(NEW.stream_id AS BLOB)) > 1024 OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0;
END;
