-- Consumers' checkpoints (`CheckpointStore`): the two parts of an annals `Checkpoint`
-- (`Checkpoint::from_parts(major, minor)`; this store's feed uses major 0 and the global
-- position as minor). `updated_at` in nanoseconds since the Unix epoch, UTC.
CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    major      INTEGER NOT NULL CHECK (major >= 0),
    minor      INTEGER NOT NULL CHECK (minor >= 0),
    updated_at INTEGER NOT NULL
) STRICT;
