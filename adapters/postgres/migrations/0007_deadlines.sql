-- annals-postgres migration 7: process managers' deadlines.
--
-- `{schema}` stands for the quoted schema name (default "annals"); `migrate()` substitutes
-- it. A durable timer of a process instance (`DeadlineStore`): set by a recorded
-- reaction, removed when it fired (and the reaction to it is recorded) or was cancelled.

CREATE TABLE {schema}.deadlines (
    id            uuid        PRIMARY KEY,
    -- The process name and the instance (its correlation id).
    process       text        NOT NULL CHECK (process <> ''),
    instance      text        NOT NULL,
    due_at        timestamptz NOT NULL CHECK (isfinite(due_at)),
    -- The deadline type's name, and its value as the JSON serde_json writes.
    deadline_type text        NOT NULL CHECK (deadline_type <> ''),
    payload       json        NOT NULL
);

-- The due-time index: a process's due deadlines, earliest first.
CREATE INDEX deadlines_by_due_time ON {schema}.deadlines (process, due_at);
