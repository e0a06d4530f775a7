-- Process managers' deadlines (`DeadlineStore`): durable timers, found by due time.
-- `id` is the deadline's uuid as 32 hex digits; `due_at` is nanoseconds since the Unix
-- epoch, UTC; `payload` is the deadline value as the JSON serde_json writes.
CREATE TABLE deadlines (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
    process       TEXT    NOT NULL CHECK (process <> ''),
    instance      TEXT    NOT NULL,
    due_at        INTEGER NOT NULL,
    deadline_type TEXT    NOT NULL CHECK (deadline_type <> ''),
    payload       TEXT    NOT NULL CHECK (json_valid(payload))
) STRICT;

CREATE INDEX deadlines_by_due_time ON deadlines (process, due_at);
