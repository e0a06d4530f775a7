-- Finding the events of one request or business transaction by correlation id
-- (`Inspect::correlated`, `annals events --correlation`) without a scan; only events that
-- carry one are indexed.
CREATE INDEX events_by_correlation_id ON events (correlation_id) WHERE correlation_id IS NOT NULL;
