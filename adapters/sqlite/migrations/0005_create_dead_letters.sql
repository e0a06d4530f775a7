-- Consumers' dead letters (`CheckpointStore::park`): events a consumer set aside because
-- its handler could not process them (`PoisonPolicy::Park` / `ParkStream`). `major` and
-- `minor` are the event's feed checkpoint, for listing in feed order; `parked` is the
-- whole `annals::subscription::Parked` (event, reason, time, what it waits behind) as the
-- JSON serde_json writes.
CREATE TABLE dead_letters (
    consumer TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    major    INTEGER NOT NULL CHECK (major >= 0),
    minor    INTEGER NOT NULL CHECK (minor >= 0),
    parked   TEXT    NOT NULL CHECK (json_valid(parked)),
    PRIMARY KEY (consumer, event_id)
) STRICT;

CREATE INDEX dead_letters_in_feed_order ON dead_letters (consumer, major, minor);
